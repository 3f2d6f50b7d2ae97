//! Synthetic simulcast for the tests: a publisher's three layers of one
//! video (rids `q`, `h`, `f`, each with its own SSRC and a clearly
//! different bitrate), written by the test itself with the mid and rid
//! header extensions, and the marker in each payload that tells a
//! subscriber which layer reached it. Shared by the simulcast tests and
//! the group room test.

use std::time::Duration;

use crate::helpers::peer::{Kind, MediaWriter};

/// Frames a second on every layer (one RTP packet per frame).
pub const FPS: u32 = 30;
/// A periodic keyframe every this many frames (1.5 s): deliberately not a
/// multiple of the SFU's 1 s rate window, so the switch to the best layer
/// needs the keyframe the SFU asks for rather than a periodic one.
const KEYFRAME_EVERY: u64 = 45;

/// rid, marker byte in the payload, payload size: the rates differ clearly
/// (48, 144 and 264 kbit/s), and `f` is the best.
pub const LAYERS: [(&str, u8, usize); 3] = [("q", b'Q', 200), ("h", b'H', 600), ("f", b'F', 1100)];

/// VP8 payload descriptor: S=1 (start of partition 0), no extensions.
const VP8_DESCRIPTOR: u8 = 0x10;
/// VP8 frame tag (show_frame=1, P=0) and keyframe start code, 320x240.
const VP8_KEYFRAME: [u8; 10] = [0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
/// VP8 frame tag of an interframe (P=1), zero-padded to the keyframe
/// header's length so that the layer marker sits at a fixed offset.
const VP8_INTERFRAME: [u8; 10] = [0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// Where the layer marker and the layer's own u32 sequence number start.
const MARKER_AT: usize = 1 + VP8_KEYFRAME.len();

const SDES_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
pub const SDES_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// A payload of layer `index`: VP8 descriptor and frame header, marker,
/// the layer's own sequence number, padding.
fn layer_payload(index: usize, seq: u32, keyframe: bool) -> Vec<u8> {
    let (_, marker, size) = LAYERS[index];
    let mut out = Vec::with_capacity(size);
    out.push(VP8_DESCRIPTOR);
    out.extend_from_slice(if keyframe {
        &VP8_KEYFRAME
    } else {
        &VP8_INTERFRAME
    });
    out.push(marker);
    out.extend_from_slice(&seq.to_be_bytes());
    out.resize(size, 0);
    out
}

pub fn parse_payload(payload: &[u8]) -> (Option<u8>, u32, bool) {
    let keyframe = payload.len() > 1 && payload[0] == VP8_DESCRIPTOR && payload[1] & 0x01 == 0;
    match payload.get(MARKER_AT..MARKER_AT + 5) {
        Some(bytes) if LAYERS.iter().any(|l| l.1 == bytes[0]) => (
            Some(bytes[0]),
            u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes")),
            keyframe,
        ),
        _ => (None, 0, keyframe),
    }
}

/// Sends all three layers (and audio) at [`FPS`] until aborted: one packet
/// per frame and layer, with the mid and rid header extensions.
pub async fn send_layers(writer: MediaWriter) {
    let Some(params) = SendParams::of(&writer) else {
        writer.problem("sending before the pub answer (or without mid and rid extensions)");
        return;
    };
    let video_ssrcs = writer.video_ssrcs().to_vec();
    let mut interval = tokio::time::interval(Duration::from_secs(1) / FPS);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seqs: [u16; 4] = rand::random();
    let timestamps: [u32; 4] = rand::random();
    for frame in 0u64.. {
        interval.tick().await;
        for (i, (rid, _, _)) in LAYERS.iter().enumerate() {
            let wanted = writer.take_keyframe_wanted(video_ssrcs[i]);
            let keyframe = frame % KEYFRAME_EVERY == 0 || wanted;
            let mut packet = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: true,
                    payload_type: params.video_pt,
                    sequence_number: seqs[i],
                    timestamp: timestamps[i].wrapping_add((frame as u32) * (90_000 / FPS)),
                    ssrc: video_ssrcs[i],
                    ..Default::default()
                },
                payload: layer_payload(i, frame as u32, keyframe).into(),
            };
            let stamped = packet
                .header
                .set_extension(params.mid_ext, params.mid.as_bytes().to_vec().into())
                .and_then(|()| {
                    packet
                        .header
                        .set_extension(params.rid_ext, rid.as_bytes().to_vec().into())
                });
            if let Err(e) = stamped {
                writer.problem(format!("header extensions: {e}"));
                return;
            }
            if let Err(e) = writer.write_rtp(Kind::Video, packet).await {
                writer.problem(format!("write_rtp {rid}: {e:#}"));
            }
            seqs[i] = seqs[i].wrapping_add(1);
        }
        let audio = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: params.audio_pt,
                sequence_number: seqs[3],
                timestamp: timestamps[3].wrapping_add((frame as u32) * (48_000 / FPS)),
                ssrc: writer.audio_ssrc(),
                ..Default::default()
            },
            payload: vec![0xfc; 80].into(),
        };
        if let Err(e) = writer.write_rtp(Kind::Audio, audio).await {
            writer.problem(format!("write_rtp audio: {e:#}"));
        }
        seqs[3] = seqs[3].wrapping_add(1);
    }
}

/// What sending needs from the negotiation of `pub`.
struct SendParams {
    audio_pt: u8,
    video_pt: u8,
    mid: String,
    mid_ext: u8,
    rid_ext: u8,
}

impl SendParams {
    fn of(writer: &MediaWriter) -> Option<SendParams> {
        let negotiated = writer.negotiated()?;
        Some(SendParams {
            audio_pt: negotiated.payload_type(Kind::Audio)?,
            video_pt: negotiated.payload_type(Kind::Video)?,
            mid: negotiated.video_mid.clone()?,
            mid_ext: negotiated.extension_id(SDES_MID)?,
            rid_ext: negotiated.extension_id(SDES_RID)?,
        })
    }
}
