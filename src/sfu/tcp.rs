//! ICE over TCP (RFC 6544) with RFC 4571 framing: the fallback for networks
//! that block UDP. Each frame is a 16-bit big-endian length, then one STUN,
//! DTLS or SRTP packet, which the shard feeds to str0m exactly like a UDP
//! datagram.
//!
//! Each connection has a small reader task, woken only when its own socket
//! has something (a frame, or its end), which hands whole frames to the
//! shard over one channel: the shard never polls connections that have
//! nothing to read, however many are open. Writes go through one small
//! writer task per connection so that a slow TCP client can never stall
//! the loop: when its queue is full, packets are dropped, as UDP would drop
//! them.
//!
//! Nothing is held for free ([`TcpLimits`]): connections over the cap are
//! closed as soon as they are accepted; a connection must send a STUN
//! binding request that a peer connection accepts within its first
//! deadline, and one that then receives nothing for the idle timeout is
//! closed; a connection the peer closed is forgotten at once, and both of
//! its halves (its descriptor) go with it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// Packets queued for one TCP client before new ones are dropped: about two
/// seconds of what a joint session sends one person (2.5 Mbit/s in packets
/// of about 1,150 bytes is some 270 a second). More would only deliver
/// stale media late to a client whose TCP path cannot keep up.
const WRITE_QUEUE: usize = 512;

/// The largest frame a client may send. Browsers send over ICE-TCP the same
/// packets as over UDP, under the path MTU (about 1,200 bytes), and the UDP
/// path reads at most 2 KiB; twice that leaves room. A longer frame ends the
/// connection. (RFC 4571 allows 64 KiB, which an idle connection would then
/// be allowed to make the server buffer.)
pub(super) const MAX_FRAME: usize = 4 * 1024;

/// Frames from all connections waiting for the shard. When the shard falls
/// behind, readers wait, and TCP slows the clients down.
const FRAME_QUEUE: usize = 1024;

/// How often deadlines are checked: a connection outlives its deadline by
/// at most this much.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A cap's warning is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub(super) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u16>()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// The limits of one shard's ICE-TCP listener (`media.tcp_*`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpLimits {
    pub max_connections: usize,
    pub first_stun: Duration,
    pub idle: Duration,
}

/// What a reader task tells the shard.
pub(super) enum TcpEvent {
    Frame(u64, SocketAddr, BytesMut),
    Closed(u64, SocketAddr),
}

struct Conn {
    id: u64,
    writer: mpsc::Sender<Bytes>,
    reader: JoinHandle<()>,
    /// The shard's address it reached: the ICE-TCP port or the HTTPS port.
    local: SocketAddr,
    accepted: Instant,
    last_read: Instant,
    /// A peer connection accepted a STUN binding request from it.
    validated: bool,
    /// Counted in the open ICE-TCP connections while held.
    _open: crate::metrics::Held,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The read half goes with the task, the write half with the writer
        // task once its queue's sender (dropped here) is gone.
        self.reader.abort();
    }
}

pub(super) struct TcpConnections {
    limits: TcpLimits,
    conns: HashMap<SocketAddr, Conn>,
    events_tx: mpsc::Sender<TcpEvent>,
    events: mpsc::Receiver<TcpEvent>,
    next_id: u64,
    refused: u64,
    reported: Option<Instant>,
}

impl TcpConnections {
    pub(crate) fn new(limits: TcpLimits) -> TcpConnections {
        let (events_tx, events) = mpsc::channel(FRAME_QUEUE);
        TcpConnections {
            limits,
            conns: HashMap::new(),
            events_tx,
            events,
            next_id: 0,
            refused: 0,
            reported: None,
        }
    }

    /// Takes a new connection that reached the shard's `local` address, or
    /// closes it at once when the shard holds its cap.
    pub(crate) fn accept(
        &mut self,
        stream: TcpStream,
        remote: SocketAddr,
        local: SocketAddr,
        now: Instant,
    ) {
        if self.conns.len() >= self.limits.max_connections {
            self.refused += 1;
            if self
                .reported
                .is_none_or(|at| now.duration_since(at) >= LOG_EVERY)
            {
                tracing::warn!(
                    limit = self.limits.max_connections,
                    refused_since_last_report = self.refused,
                    "ICE-TCP connection limit reached (media.tcp_max_connections): \
                     refusing new connections until some close"
                );
                self.reported = Some(now);
                self.refused = 0;
            }
            return;
        }
        let _ = stream.set_nodelay(true);
        self.next_id += 1;
        let id = self.next_id;
        let (read, write) = stream.into_split();
        let events = self.events_tx.clone();
        let reader = tokio::spawn(async move {
            let mut frames = FramedRead::with_capacity(read, codec(), 2 * 1024);
            while let Some(Ok(frame)) = frames.next().await {
                if events
                    .send(TcpEvent::Frame(id, remote, frame))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = events.send(TcpEvent::Closed(id, remote)).await;
        });
        let (writer, mut queue) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        tokio::spawn(async move {
            let mut sink = FramedWrite::new(write, codec());
            while let Some(frame) = queue.recv().await {
                if sink.send(frame).await.is_err() {
                    break;
                }
            }
        });
        // A new connection from an address still held (its port reused)
        // replaces the old one.
        self.conns.insert(
            remote,
            Conn {
                id,
                writer,
                reader,
                local,
                accepted: now,
                last_read: now,
                validated: false,
                _open: crate::metrics::Held::connection(crate::metrics::ICE_TCP),
            },
        );
    }

    /// The next frame from any connection: `(remote, local, frame)`. A
    /// connection that ended is forgotten on the way.
    pub(crate) async fn next(
        &mut self,
        now: impl Fn() -> Instant,
    ) -> (SocketAddr, SocketAddr, BytesMut) {
        loop {
            let event = self
                .events
                .recv()
                .await
                .expect("the shard holds a sender itself");
            match event {
                TcpEvent::Frame(id, remote, frame) => {
                    if let Some(conn) = self.conns.get_mut(&remote).filter(|c| c.id == id) {
                        conn.last_read = now();
                        return (remote, conn.local, frame);
                    }
                }
                TcpEvent::Closed(id, remote) => {
                    if self.conns.get(&remote).is_some_and(|c| c.id == id) {
                        self.conns.remove(&remote);
                    }
                }
            }
        }
    }

    /// Records that a peer connection accepted what `remote` sent.
    pub(crate) fn validated(&mut self, remote: SocketAddr) {
        if let Some(conn) = self.conns.get_mut(&remote) {
            conn.validated = true;
        }
    }

    /// Closes every connection past its deadline: no accepted STUN within
    /// the first deadline, or nothing received for the idle timeout.
    pub(crate) fn sweep(&mut self, now: Instant) {
        let limits = self.limits;
        self.conns.retain(|_, conn| {
            let keep = if conn.validated {
                now.duration_since(conn.last_read) < limits.idle
            } else {
                now.duration_since(conn.accepted) < limits.first_stun
            };
            if !keep {
                tracing::debug!(
                    validated = conn.validated,
                    "ICE-TCP connection closed: unused"
                );
            }
            keep
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn close_all(&mut self) {
        self.conns.clear();
    }

    /// Queues one packet for `remote`; false when there is no such
    /// connection or its queue is full.
    pub(crate) fn send(&self, remote: SocketAddr, packet: &[u8]) -> bool {
        self.conns
            .get(&remote)
            .is_some_and(|conn| conn.writer.try_send(Bytes::copy_from_slice(packet)).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMITS: TcpLimits = TcpLimits {
        max_connections: 3,
        first_stun: Duration::from_millis(300),
        idle: Duration::from_millis(600),
    };

    const LOCAL: SocketAddr = SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)),
        443,
    );

    async fn pair(listener: &tokio::net::TcpListener) -> (TcpStream, TcpStream, SocketAddr) {
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, remote) = listener.accept().await.unwrap();
        (client, server, remote)
    }

    /// True when the other end closed `stream` within a second.
    async fn closed(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut conns = TcpConnections::new(LIMITS);
        let mut clients = Vec::new();
        for _ in 0..4 {
            let (client, server, remote) = pair(&listener).await;
            conns.accept(server, remote, LOCAL, Instant::now());
            clients.push(client);
        }
        assert_eq!(conns.len(), 3);
        assert!(closed(&mut clients[3]).await, "the fourth is closed");
    }

    #[tokio::test]
    async fn frames_arrive_and_a_closed_connection_is_forgotten_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut conns = TcpConnections::new(LIMITS);
        let (mut client, server, remote) = pair(&listener).await;
        conns.accept(server, remote, LOCAL, Instant::now());
        client.write_all(&[0, 3, b'a', b'b', b'c']).await.unwrap();
        let (from, local, frame) = conns.next(Instant::now).await;
        assert_eq!((from, local, &frame[..]), (remote, LOCAL, &b"abc"[..]));
        assert!(conns.send(remote, b"xy"));
        let mut reply = [0u8; 4];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply, [0, 2, b'x', b'y']);

        drop(client);
        // The end of the connection is an event like a frame: forgotten
        // without waiting for a deadline or another accept.
        let next = tokio::time::timeout(Duration::from_millis(300), conns.next(Instant::now));
        assert!(next.await.is_err(), "no frame after the close");
        assert_eq!(conns.len(), 0);
        assert!(!conns.send(remote, b"late"));
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_ends_the_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut conns = TcpConnections::new(LIMITS);
        let (mut client, server, remote) = pair(&listener).await;
        conns.accept(server, remote, LOCAL, Instant::now());
        client.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(300), conns.next(Instant::now)).await;
        assert_eq!(conns.len(), 0);
        assert!(closed(&mut client).await);
    }

    #[tokio::test]
    async fn unvalidated_and_idle_connections_are_closed_at_their_deadlines() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut conns = TcpConnections::new(LIMITS);
        let start = Instant::now();
        let (mut silent, server, remote) = pair(&listener).await;
        conns.accept(server, remote, LOCAL, start);
        let (mut valid, server, valid_remote) = pair(&listener).await;
        conns.accept(server, valid_remote, LOCAL, start);
        conns.validated(valid_remote);

        conns.sweep(start + Duration::from_millis(200));
        assert_eq!(conns.len(), 2);
        // No accepted STUN within the first deadline.
        conns.sweep(start + Duration::from_millis(400));
        assert_eq!(conns.len(), 1);
        assert!(closed(&mut silent).await);
        // Validated, then silent past the idle timeout.
        conns.sweep(start + Duration::from_millis(500));
        assert_eq!(conns.len(), 1);
        conns.sweep(start + Duration::from_millis(700));
        assert_eq!(conns.len(), 0);
        assert!(closed(&mut valid).await);
    }
}
