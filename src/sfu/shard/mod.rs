//! A shard: one event loop, on its own thread, that owns a UDP socket, an
//! ICE-TCP listener and every peer connection of the rooms pinned to it.
//!
//! The shard is split in two. [`core::ShardCore`] holds every peer
//! connection and makes every decision, sans I/O: routing datagrams by
//! address ([`core`]), negotiation ([`negotiate`]) and forwarding
//! ([`forward`]). This file is the loop around it. It waits on four things,
//! a datagram, a TCP frame (or a new TCP connection), a command from
//! signaling, and the core's next timeout (and, while ICE-TCP connections
//! are open, a once-a-second check of their deadlines), feeds whatever woke it to the
//! core with the time, lets the core act on it ([`ShardCore::flush`]), and
//! sends the datagrams the core produced.
//!
//! A wake takes every datagram already waiting (up to [`RECEIVE_BATCH`])
//! before the core flushes: under load a burst costs one drain per
//! subscriber, not one per packet. What the wake produced leaves in one
//! batch ([`send`]: `sendmmsg`, with UDP GSO for runs to one address).

mod core;
mod forward;
mod negotiate;
mod send;
#[cfg(any(test, fuzzing))]
pub(crate) mod sim;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Transmit};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

use self::core::ShardCore;
use super::tcp::{TcpConnections, TcpLimits, SWEEP_EVERY};
use super::ShardInput;
use crate::metrics::shard::{ShardMetrics, REPORT_EVERY};

/// The largest datagram read from the socket. WebRTC keeps its datagrams
/// under the path MTU (str0m aims at 1,150 bytes, browsers at about 1,200,
/// and nothing sensible exceeds Ethernet's 1,500), so 2 KiB holds anything
/// a client sends; a longer datagram is cut short and then refused by
/// str0m's parsers.
const RECEIVE_BUFFER: usize = 2048;

/// The most datagrams one wake of the loop takes off the socket before the
/// core forwards what they carried. A video frame arrives as a burst of a
/// few to a few dozen packets, and many rooms' bursts overlap, so a batch
/// of 32 lets one drain per subscriber cover most of a frame; the bound
/// keeps commands and timers from waiting long behind a full socket (at
/// about 12 µs per forwarded packet, docs/benchmarks.md, a batch forwarded
/// to two subscribers each takes under a millisecond). A bound, not a tuned
/// optimum.
const RECEIVE_BATCH: usize = 32;

/// How long accepting ICE-TCP connections pauses when the process is out
/// of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Resolves at `until`, or never when there is nothing to wait for.
async fn resume_accepting(until: Option<tokio::time::Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

/// A shard's bound sockets and the addresses its candidates announce.
pub(super) struct Sockets {
    pub udp: std::net::UdpSocket,
    pub tcp: std::net::TcpListener,
    pub udp_addr: SocketAddr,
    pub tcp_addr: SocketAddr,
    /// The HTTPS port, when it takes ICE-TCP too.
    pub https_addr: Option<SocketAddr>,
}

/// Runs a shard on the current thread until it is told to shut down.
pub(super) fn run(
    index: usize,
    sockets: Sockets,
    tcp_limits: TcpLimits,
    commands: mpsc::UnboundedReceiver<ShardInput>,
) {
    let Sockets {
        udp,
        tcp,
        udp_addr,
        tcp_addr,
        https_addr,
    } = sockets;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime can be built");
    runtime.block_on(async move {
        let mut net = Net {
            udp: UdpSocket::from_std(udp).expect("a bound UDP socket"),
            tcp: TcpListener::from_std(tcp).expect("a bound TCP listener"),
            tcp_conns: TcpConnections::new(tcp_limits),
            batcher: send::Batcher::new(index, udp_addr),
            outgoing: Vec::new(),
            udp_addr,
            tcp_addr,
            https_addr,
        };
        let mut core = ShardCore::new(index, udp_addr, tcp_addr, https_addr, Instant::now());
        net.run(&mut core, commands).await;
    });
}

/// The shard's sockets.
struct Net {
    udp: UdpSocket,
    tcp: TcpListener,
    tcp_conns: TcpConnections,
    /// Sends the UDP datagrams of a wake together.
    batcher: send::Batcher,
    /// The UDP datagrams of this wake, in order, waiting for the batch.
    outgoing: Vec<(SocketAddr, Vec<u8>)>,
    /// The addresses candidates announce (and that str0m sees as the
    /// destination of what arrives).
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    /// The HTTPS port's address, when it takes ICE-TCP too
    /// ([`super::https_port`]).
    https_addr: Option<SocketAddr>,
}

enum Wake {
    Input(Option<ShardInput>),
    Datagram(usize, SocketAddr),
    TcpConnection(tokio::net::TcpStream, SocketAddr),
    TcpFrame(SocketAddr, SocketAddr, bytes::BytesMut),
    TcpSweep,
    Report,
    AcceptFailed(std::io::Error),
    Timeout,
    Nothing,
}

impl Net {
    async fn run(
        &mut self,
        core: &mut ShardCore,
        mut commands: mpsc::UnboundedReceiver<ShardInput>,
    ) {
        let mut buf = vec![0u8; RECEIVE_BUFFER];
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        // Set while accepting ICE-TCP connections is paused (out of file
        // descriptors): until when.
        let mut accepting: Option<tokio::time::Instant> = None;
        let mut out_of_fds_reported: Option<Instant> = None;
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut figures = ShardMetrics::new(core.index, Instant::now());
        let mut report = tokio::time::interval(REPORT_EVERY);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = {
                let sleep = tokio::time::sleep_until(core.poll_timeout().into());
                let tcp_open = self.tcp_conns.len() > 0;
                tokio::select! {
                    input = commands.recv() => Wake::Input(input),
                    received = self.udp.recv_from(&mut buf) => match received {
                        Ok((n, source)) => Wake::Datagram(n, source),
                        Err(_) => Wake::Nothing,
                    },
                    accepted = self.tcp.accept(), if accepting.is_none() => match accepted {
                        Ok((stream, remote)) => Wake::TcpConnection(stream, remote),
                        Err(error) => Wake::AcceptFailed(error),
                    },
                    () = resume_accepting(accepting) => {
                        accepting = None;
                        Wake::Nothing
                    }
                    (remote, local, frame) = self.tcp_conns.next(Instant::now) => {
                        Wake::TcpFrame(remote, local, frame)
                    }
                    _ = sweep.tick(), if tcp_open => Wake::TcpSweep,
                    _ = report.tick() => Wake::Report,
                    () = sleep => Wake::Timeout,
                }
            };
            let woke = Instant::now();
            core.sync_wall_clock(Instant::now(), chrono::Utc::now());
            match wake {
                Wake::Input(Some(ShardInput::Command(command))) => {
                    core.handle_command(Instant::now(), command);
                }
                Wake::Input(Some(ShardInput::IceTcpOnHttps(stream, remote))) => {
                    match (self.https_addr, tokio::net::TcpStream::from_std(stream)) {
                        (Some(local), Ok(stream)) => {
                            self.tcp_conns.accept(stream, remote, local, Instant::now());
                        }
                        (None, _) => {}
                        (_, Err(error)) => {
                            tracing::warn!(%error, "cannot take an ICE-TCP connection");
                        }
                    }
                }
                Wake::Input(Some(ShardInput::Shutdown) | None) => {
                    core.close_all(Instant::now());
                    self.send(core);
                    self.tcp_conns.close_all();
                    return;
                }
                Wake::Datagram(n, source) => {
                    let local = self.udp_addr;
                    core.handle_datagram(Instant::now(), Protocol::Udp, source, local, &buf[..n]);
                    // Whatever else is already waiting joins this batch.
                    for _ in 1..RECEIVE_BATCH {
                        let Ok((n, source)) = self.udp.try_recv_from(&mut buf) else {
                            break;
                        };
                        core.handle_datagram(
                            Instant::now(),
                            Protocol::Udp,
                            source,
                            local,
                            &buf[..n],
                        );
                    }
                }
                Wake::TcpConnection(stream, remote) => {
                    let local = self.tcp_addr;
                    self.tcp_conns.accept(stream, remote, local, Instant::now());
                }
                Wake::TcpFrame(remote, local, frame) => {
                    core.handle_datagram(Instant::now(), Protocol::Tcp, remote, local, &frame);
                    // A peer connection took it: the connection is in use,
                    // past its first deadline.
                    if core.routes.contains_key(&(Protocol::Tcp, remote)) {
                        self.tcp_conns.validated(remote);
                    }
                }
                Wake::TcpSweep => self.tcp_conns.sweep(Instant::now()),
                Wake::Report => figures.report(woke, commands.len()),
                Wake::AcceptFailed(error) => {
                    // Out of descriptors, accept fails at once every time:
                    // pause it rather than spin, and say so.
                    if matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        accepting = Some(tokio::time::Instant::now() + ACCEPT_PAUSE);
                        let now = Instant::now();
                        if out_of_fds_reported
                            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10))
                        {
                            out_of_fds_reported = Some(now);
                            tracing::error!(
                                shard = core.index,
                                %error,
                                "out of file descriptors: ICE-TCP connections wait in the \
                                 kernel's queue; raise LimitNOFILE or lower \
                                 media.tcp_max_connections"
                            );
                        }
                    }
                }
                Wake::Timeout => core.handle_timeout(Instant::now()),
                Wake::Nothing => {}
            }
            core.flush(Instant::now());
            self.send(core);
            figures.after_wake(&mut core.forwarded, woke.elapsed());
        }
    }

    /// Sends every datagram the core produced: ICE-TCP frames at once, UDP
    /// datagrams in one batch, in the order the core produced them.
    fn send(&mut self, core: &mut ShardCore) {
        while let Some(t) = core.poll_transmit() {
            self.transmit(t);
        }
        if !self.outgoing.is_empty() {
            // A full socket buffer drops datagrams, as the network may.
            self.batcher.send(self.udp.as_raw_fd(), &self.outgoing);
            self.outgoing.clear();
        }
    }

    fn transmit(&mut self, t: Transmit) {
        match t.proto {
            Protocol::Udp => self.outgoing.push((t.destination, t.contents.into())),
            Protocol::Tcp => {
                self.tcp_conns.send(t.destination, &t.contents);
            }
            _ => {}
        }
    }
}
