//! The media engine: a selective forwarding unit on str0m (sans-IO WebRTC).
//!
//! Media is forwarded by [`shard`]s, one event loop per core by default, on
//! its own thread. A shard owns one UDP socket and one ICE-TCP listener and
//! every peer connection of the rooms pinned to it, so forwarding a packet
//! from a publisher to its subscribers is a direct call inside one loop: no
//! task, lock or channel per packet. Signaling talks to a shard through a
//! command channel ([`Command`]) and hears back through each connection's
//! event channel ([`PeerEvent`]).
//!
//! Each participant has two peer connections, as in LiveKit: `pub` (the
//! client offers its own audio and video) and `sub` (the server offers
//! everyone else's, renegotiated as people come and go).

mod drain;
#[cfg(fuzzing)]
pub mod fuzzing;
mod https_port;
mod keyframe;
mod layers;
mod loss_estimate;
mod peer;
mod rewrite;
mod shard;
mod speech;
mod tcp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::thread::JoinHandle;

use anyhow::Context;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::config::MediaSection;
use tandem_protocol::{ErrorCode, IceCandidate, Pc};

pub use drain::drain;
pub use keyframe::{is_h264_keyframe, is_vp8_keyframe};
pub(crate) use tandem_protocol::SignOfLife;

/// Identifies one signaling connection (a participant may have several over
/// time; a replacement is a new connection).
pub(crate) use tandem_protocol::ConnId;

/// Who is joining which room, and how their media is sent.
#[derive(Debug)]
pub(crate) struct Joining {
    pub room: Uuid,
    pub participant: String,
    pub events: mpsc::UnboundedSender<PeerEvent>,
    /// Raised by every packet its peer connections receive.
    pub sign_of_life: SignOfLife,
    /// Whether the link to this participant is estimated by str0m (its
    /// bandwidth estimation, and its pacer, on the `sub` connection): a
    /// group room's, where simulcast layers are chosen among eight or more
    /// videos that share one link. A joint session forwards as the
    /// publishers paced, and only a congested link needs an estimate: its
    /// receiver reports' loss gives one ([`loss_estimate`]). str0m's costs
    /// a full timeout round per paced packet, about a tenth of the shard's
    /// CPU (docs/benchmarks.md).
    pub estimate_bandwidth: bool,
}

/// What signaling asks of a shard.
#[derive(Debug)]
pub(crate) enum Command {
    /// A participant was admitted: create its peer connections.
    Join {
        conn: ConnId,
        joining: Joining,
    },
    Offer {
        conn: ConnId,
        pc: Pc,
        sdp: String,
    },
    Answer {
        conn: ConnId,
        pc: Pc,
        sdp: String,
    },
    /// A trickled remote candidate (`None`: the end of candidates).
    Candidate {
        conn: ConnId,
        pc: Pc,
        candidate: Option<String>,
    },
    /// The participant left or its socket closed: drop its peer connections
    /// and its tracks from everyone else.
    Leave {
        conn: ConnId,
    },
    /// Media flows only between peers of the same group (0: the main room;
    /// others: breakouts).
    SetGroup {
        conn: ConnId,
        group: u32,
    },
    /// Stops (or resumes) forwarding one kind of a peer's media: the
    /// clinician's mute is enforced here, whatever the client sends.
    Block {
        conn: ConnId,
        kind: tandem_protocol::MediaKind,
        blocked: bool,
    },
    /// The subscriber's layer preference per publisher (participant id),
    /// from its tile sizes; replaces the previous one.
    Prefer {
        conn: ConnId,
        layers: std::collections::BTreeMap<String, tandem_protocol::Layer>,
    },
}

/// What a shard tells a connection.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PeerEvent {
    Offer {
        pc: Pc,
        sdp: String,
    },
    Answer {
        pc: Pc,
        sdp: String,
    },
    Candidate {
        pc: Pc,
        candidate: Option<IceCandidate>,
    },
    /// ICE and DTLS are done on this peer connection.
    Connected {
        pc: Pc,
    },
    /// The peer connection lost its network path.
    Disconnected {
        pc: Pc,
    },
    /// The participant started or stopped speaking (the audio level in
    /// their packets' RFC 6464 header extension).
    Speaking {
        speaking: bool,
    },
    /// A client message could not be applied (bad SDP, out of order).
    Rejected {
        code: ErrorCode,
        message: String,
    },
}

struct ShardHandle {
    commands: mpsc::UnboundedSender<ShardInput>,
    udp: SocketAddr,
    tcp: SocketAddr,
}

enum ShardInput {
    Command(Command),
    /// An ICE-TCP connection that arrived on the HTTPS port.
    IceTcpOnHttps(std::net::TcpStream, SocketAddr),
    Shutdown,
}

/// All shards of this node.
pub(crate) struct Sfu {
    shards: Vec<ShardHandle>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Sfu {
    /// Binds every shard's sockets and starts the shard threads. With
    /// `https_port` (the public HTTPS port, when `media.tcp_on_https`),
    /// every peer connection also announces a passive ICE-TCP candidate on
    /// it, which the HTTPS listener hands over ([`Sfu::take_ice_tcp`]).
    pub(crate) fn start(config: &MediaSection, https_port: Option<u16>) -> anyhow::Result<Sfu> {
        let bind_ip = config.bind_ip.unwrap_or_else(detect_ip);
        let announce_ip = config.public_ip.unwrap_or(bind_ip);
        let https_announce = https_port.map(|port| SocketAddr::new(announce_ip, port));
        let count = if config.shards == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.shards
        };
        let mut shards = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let port = |base: u16| if base == 0 { 0 } else { base + index as u16 };
            let udp = UdpSocket::bind((bind_ip, port(config.udp_port))).with_context(|| {
                format!(
                    "cannot bind media UDP port {} on {bind_ip} (media.udp_port)",
                    port(config.udp_port)
                )
            })?;
            let tcp = std::net::TcpListener::bind((bind_ip, port(config.tcp_port))).with_context(
                || {
                    format!(
                        "cannot bind ICE-TCP port {} on {bind_ip} (media.tcp_port)",
                        port(config.tcp_port)
                    )
                },
            )?;
            udp.set_nonblocking(true)?;
            tcp.set_nonblocking(true)?;
            socket_buffers(&udp);
            let udp_local = udp.local_addr()?;
            let tcp_local = tcp.local_addr()?;
            let udp_announce = SocketAddr::new(announce_ip, udp_local.port());
            let tcp_announce = SocketAddr::new(announce_ip, tcp_local.port());
            let (tx, rx) = mpsc::unbounded_channel();
            let tcp_limits = tcp::TcpLimits {
                max_connections: config.tcp_max_connections,
                first_stun: std::time::Duration::from_secs(config.tcp_first_stun_secs),
                idle: std::time::Duration::from_secs(config.tcp_idle_secs),
            };
            let thread = std::thread::Builder::new()
                .name(format!("sfu-shard-{index}"))
                .spawn(move || {
                    let sockets = shard::Sockets {
                        udp,
                        tcp,
                        udp_addr: udp_announce,
                        tcp_addr: tcp_announce,
                        https_addr: https_announce,
                    };
                    shard::run(index, sockets, tcp_limits, rx)
                })?;
            tracing::info!(shard = index, udp = %udp_announce, tcp = %tcp_announce, "media shard started");
            shards.push(ShardHandle {
                commands: tx,
                udp: udp_announce,
                tcp: tcp_announce,
            });
            threads.push(thread);
        }
        Ok(Sfu {
            shards,
            threads: Mutex::new(threads),
        })
    }

    /// The shard that carries `room`: every peer of a room is on one shard,
    /// so forwarding never crosses threads.
    fn shard(&self, room: Uuid) -> &ShardHandle {
        let index = (room.as_u128() % self.shards.len() as u128) as usize;
        &self.shards[index]
    }

    /// Sends `command` to the shard of `room`.
    pub(crate) fn send(&self, room: Uuid, command: Command) {
        if self
            .shard(room)
            .commands
            .send(ShardInput::Command(command))
            .is_err()
        {
            tracing::error!("a media shard has stopped");
        }
    }

    /// Looks at the first bytes of a connection to the HTTPS port and gives
    /// it back when it is TLS. ICE-TCP goes to the shard its first binding
    /// request names ([`https_port`]); anything else, or nothing within
    /// `within`, is closed.
    pub(crate) async fn on_https_port(
        &self,
        tcp: tokio::net::TcpStream,
        remote: SocketAddr,
        within: std::time::Duration,
    ) -> Option<tokio::net::TcpStream> {
        let first = tokio::time::timeout(within, https_port::first_bytes(&tcp)).await;
        match first {
            Ok(https_port::FirstBytes::Tls) => Some(tcp),
            Ok(https_port::FirstBytes::IceTcp { shard }) => {
                let handle = self.shards.get(shard)?;
                // The shard runs its own runtime: the socket moves there.
                let stream = tcp.into_std().ok()?;
                let _ = handle
                    .commands
                    .send(ShardInput::IceTcpOnHttps(stream, remote));
                None
            }
            Ok(_) | Err(_) => {
                tracing::debug!("a connection to the HTTPS port that is neither TLS nor ICE-TCP");
                None
            }
        }
    }

    /// The media addresses (UDP, ICE-TCP) each shard announces.
    pub(crate) fn addresses(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.shards.iter().map(|s| (s.udp, s.tcp)).collect()
    }

    /// Closes every peer connection and waits for the shard threads.
    pub(crate) fn shutdown(&self) {
        for shard in &self.shards {
            let _ = shard.commands.send(ShardInput::Shutdown);
        }
        let threads = std::mem::take(&mut *self.threads.lock().expect("not poisoned"));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// The address of the interface that routes outward, or loopback on a
/// machine without a route. Nothing is sent: connecting a UDP socket only
/// asks the kernel which source address it would use.
fn detect_ip() -> IpAddr {
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect(("192.0.2.1", 9)).map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// What a shard's UDP socket asks for as its receive and send buffers.
/// Every participant's video arrives in frame-sized bursts; with the
/// kernel's default (about 208 KiB) a few dozen rooms whose frames happen to
/// line up overflow it while the shard is busy, and those packets are lost.
/// The kernel caps the request at `net.core.rmem_max` / `wmem_max`
/// (docs/deployment.md).
pub(crate) const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// Asks for [`SOCKET_BUFFER_BYTES`] on `socket`; a refusal leaves the
/// kernel's default, which still works.
pub fn socket_buffers(socket: &UdpSocket) {
    let socket = socket2::SockRef::from(socket);
    if let Err(error) = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!(%error, "cannot enlarge the media socket's receive buffer");
    }
    if let Err(error) = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!(%error, "cannot enlarge the media socket's send buffer");
    }
}
