//! ICE over TCP (RFC 6544) with RFC 4571 framing: the fallback for networks
//! that block UDP. Each frame is a 16-bit big-endian length, then one STUN,
//! DTLS or SRTP packet, which the shard feeds to str0m exactly like a UDP
//! datagram.
//!
//! Reads are polled inside the shard loop (no task per packet). Writes go
//! through one small writer task per connection so that a slow TCP client
//! can never stall the loop: when its queue is full, packets are dropped, as
//! UDP would drop them.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::{StreamExt, StreamMap};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// Packets queued for one TCP client before new ones are dropped: about two
/// seconds of what a joint session sends one person (2.5 Mbit/s in packets
/// of about 1,150 bytes is some 270 a second). More would only deliver
/// stale media late to a client whose TCP path cannot keep up.
const WRITE_QUEUE: usize = 512;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u16>()
        .max_frame_length(usize::from(u16::MAX))
        .new_codec()
}

#[derive(Default)]
pub(super) struct TcpConnections {
    reads: StreamMap<SocketAddr, FramedRead<OwnedReadHalf, LengthDelimitedCodec>>,
    writes: HashMap<SocketAddr, mpsc::Sender<Bytes>>,
}

impl TcpConnections {
    pub fn accept(&mut self, stream: TcpStream, remote: SocketAddr) {
        let _ = stream.set_nodelay(true);
        // Connections that ended since the last accept leave the read map
        // by themselves; forget their writers too.
        let reads = &self.reads;
        self.writes.retain(|addr, _| reads.contains_key(addr));
        let (read, write) = stream.into_split();
        self.reads.insert(remote, FramedRead::new(read, codec()));
        let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        self.writes.insert(remote, tx);
        tokio::spawn(async move {
            let mut sink = FramedWrite::new(write, codec());
            while let Some(frame) = rx.recv().await {
                if sink.send(frame).await.is_err() {
                    break;
                }
            }
        });
    }

    pub fn is_empty(&self) -> bool {
        self.reads.is_empty()
    }

    /// The next frame from any connection; a closed or broken connection is
    /// forgotten and reported with an error.
    pub async fn next(&mut self) -> Option<(SocketAddr, io::Result<BytesMut>)> {
        let (remote, item) = self.reads.next().await?;
        if item.is_err() {
            self.close(remote);
        }
        Some((remote, item))
    }

    pub fn close(&mut self, remote: SocketAddr) {
        self.reads.remove(&remote);
        self.writes.remove(&remote);
    }

    /// Queues one packet for `remote`; false when there is no such
    /// connection or its queue is full.
    pub fn send(&self, remote: SocketAddr, packet: &[u8]) -> bool {
        self.writes
            .get(&remote)
            .is_some_and(|tx| tx.try_send(Bytes::copy_from_slice(packet)).is_ok())
    }
}
