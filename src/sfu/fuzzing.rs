//! Entry points for the fuzz targets in `fuzz/` (docs/security.md,
//! "Fuzzing"): the two places where the media path takes bytes from
//! anyone on the network. Compiled only under cargo-fuzz (`--cfg
//! fuzzing`), so a normal build's public surface does not grow.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use str0m::net::Protocol;
use tokio_util::codec::Decoder;
use uuid::Uuid;

use super::shard::sim::{Sim, SHARD_TCP};
use super::tcp;

/// Reads an ICE-TCP byte stream that arrives in `chunks`, as the reader
/// task does (RFC 4571 framing, `sfu::tcp`): the lengths of the frames
/// handed to the shard, up to the first framing error, which ends the
/// connection. Panics if a frame longer than the limit gets through.
pub fn ice_tcp_frames<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<usize> {
    let mut codec = tcp::codec();
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= tcp::MAX_FRAME, "an oversized frame");
                    frames.push(frame.len());
                }
                Ok(None) => break,
                Err(_) => return frames,
            }
        }
    }
    // The client closed: a partial frame is dropped, never handed on.
    if let Ok(Some(frame)) = codec.decode_eof(&mut buffer) {
        assert!(frame.len() <= tcp::MAX_FRAME, "an oversized frame");
        frames.push(frame.len());
    }
    frames
}

/// Who a fuzzed datagram claims to come from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// One of the connected clients' own addresses (ICE validated it), so
    /// the bytes reach that peer connection's STUN, DTLS and SRTP.
    Client(u8),
    /// An address the shard has never seen.
    Stranger(u16),
}

/// A shard with two participants in one room, connected (ICE, DTLS) and
/// publishing, fed arbitrary datagrams on a fake clock.
pub struct ConnectedShard {
    sim: Sim,
}

impl Default for ConnectedShard {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnectedShard {
    pub fn new() -> ConnectedShard {
        let mut sim = Sim::new();
        let room = Uuid::nil();
        for _ in 0..2 {
            let i = sim.join(room);
            sim.publish(i, true, true, &[]);
        }
        sim.run(Duration::from_secs(2));
        ConnectedShard { sim }
    }

    /// The shard receives `data` from `source` over UDP or ICE-TCP, then
    /// `advance_ms` pass; everything it would send is taken and dropped.
    pub fn datagram(&mut self, source: Source, tcp: bool, data: &[u8], advance_ms: u8) {
        let sim = &mut self.sim;
        let from: SocketAddr = match source {
            Source::Client(i) => {
                let sides: Vec<SocketAddr> = sim
                    .clients
                    .iter()
                    .flat_map(|c| [c.publish.addr, c.subscribe.addr])
                    .collect();
                sides[usize::from(i) % sides.len()]
            }
            Source::Stranger(port) => SocketAddr::from(([203, 0, 113, 7], port)),
        };
        let (proto, to) = if tcp {
            (Protocol::Tcp, SHARD_TCP.parse().expect("an address"))
        } else {
            (Protocol::Udp, sim.udp)
        };
        let now = sim.now;
        sim.core.handle_datagram(now, proto, from, to, data);
        sim.now += Duration::from_millis(u64::from(advance_ms));
        let now = sim.now;
        if sim.core.poll_timeout() <= now {
            sim.core.handle_timeout(now);
        }
        sim.core.flush(now);
        while sim.core.poll_transmit().is_some() {}
    }
}
