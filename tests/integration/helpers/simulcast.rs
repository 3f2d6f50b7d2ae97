//! The standard synthetic simulcast of the tests: a publisher's three
//! layers of one video (rids `q`, `h`, `f`, each with its own SSRC and a
//! clearly different bitrate), written by the test itself through
//! [`super::layers`]. Shared by the simulcast tests and the group room
//! test.

use super::layers::{self, Layer};
use super::peer::MediaWriter;

/// Frames a second on every layer (one RTP packet per frame).
pub const FPS: u32 = 30;
/// A periodic keyframe every this many frames (1.5 s): deliberately not a
/// multiple of the SFU's 1 s rate window, so the switch to the best layer
/// needs the keyframe the SFU asks for rather than a periodic one.
const KEYFRAME_EVERY: u64 = 45;

/// The rates differ clearly (48, 144 and 264 kbit/s), and `f` is the best.
pub const LAYERS: [Layer; 3] = [
    Layer {
        rid: "q",
        marker: b'Q',
        size: 200,
        packets_per_frame: 1,
    },
    Layer {
        rid: "h",
        marker: b'H',
        size: 600,
        packets_per_frame: 1,
    },
    Layer {
        rid: "f",
        marker: b'F',
        size: 1100,
        packets_per_frame: 1,
    },
];

pub use super::layers::SDES_RID;

/// Sends all three layers (and audio) at [`FPS`] until aborted.
pub async fn send_layers(writer: MediaWriter) {
    layers::send(writer, LAYERS.to_vec(), FPS, KEYFRAME_EVERY).await;
}

/// The layer marker, the layer's own sequence number, and whether the
/// payload starts a keyframe.
pub fn parse_payload(payload: &[u8]) -> (Option<u8>, u32, bool) {
    layers::parse_video(&LAYERS, payload)
}
