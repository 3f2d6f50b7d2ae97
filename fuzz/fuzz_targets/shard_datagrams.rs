//! Any datagrams (UDP or ICE-TCP frames) from a connected client's own
//! address or from a stranger, into a shard with two participants
//! connected and publishing: STUN, DTLS, SRTP and RTCP parsing and routing
//! never panic. The connected shard is built once and reused for many
//! inputs (a DTLS handshake per input would leave little time to fuzz),
//! then rebuilt, so that state cannot grow without bound.
#![no_main]

use std::cell::RefCell;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tandem::sfu::fuzzing::{ConnectedShard, Source};

#[derive(Debug, Arbitrary)]
struct Datagram {
    from_client: Option<u8>,
    stranger_port: u16,
    tcp: bool,
    advance_ms: u8,
    data: Vec<u8>,
}

/// Inputs before the shard is rebuilt.
const REUSE: u32 = 5_000;

thread_local! {
    static SHARD: RefCell<(ConnectedShard, u32)> = RefCell::new((ConnectedShard::new(), 0));
}

fuzz_target!(|datagrams: Vec<Datagram>| {
    SHARD.with(|shard| {
        let mut shard = shard.borrow_mut();
        if shard.1 >= REUSE {
            *shard = (ConnectedShard::new(), 0);
        }
        shard.1 += 1;
        for d in datagrams.iter().take(64) {
            let source = match d.from_client {
                Some(i) => Source::Client(i),
                None => Source::Stranger(d.stranger_port),
            };
            shard.0.datagram(source, d.tcp, &d.data, d.advance_ms);
        }
    });
});
