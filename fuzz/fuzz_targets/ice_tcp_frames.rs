//! Any byte stream an ICE-TCP client may send, cut into reads anywhere:
//! the framing reader never panics, never hands on a frame over the limit,
//! and reads the same frames however the stream is cut.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tandem::sfu::fuzzing::ice_tcp_frames;

#[derive(Debug, Arbitrary)]
struct Stream {
    bytes: Vec<u8>,
    /// Where reads end (offsets into `bytes`, taken modulo its length).
    cuts: Vec<u16>,
}

fuzz_target!(|stream: Stream| {
    let bytes = &stream.bytes;
    let mut cuts: Vec<usize> = stream
        .cuts
        .iter()
        .map(|&c| usize::from(c) % (bytes.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push(&bytes[start..cut]);
        start = cut;
    }
    chunks.push(&bytes[start..]);
    let in_pieces = ice_tcp_frames(chunks);
    let whole = ice_tcp_frames([bytes.as_slice()]);
    assert_eq!(in_pieces, whole, "the frames depend on how reads were cut");
});
