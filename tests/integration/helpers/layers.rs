//! Simulcast the test writes itself: a publisher's layers (rids), each a
//! stream of VP8-looking frames of a chosen size, with the mid and rid
//! header extensions negotiated for the sender, plus Opus-sized audio. Each
//! video payload carries a marker naming its layer and a sequence number of
//! the layer's own, so that a subscriber can tell which layer reached it and
//! what was lost, whatever the SFU rewrote in the RTP header.

use std::time::{Duration, Instant};

use super::peer::{Kind, MediaWriter, RtpRecord};

/// One simulcast layer as sent.
#[derive(Debug, Clone, Copy)]
pub struct Layer {
    pub rid: &'static str,
    /// The byte in every payload that names the layer.
    pub marker: u8,
    /// Payload bytes per packet.
    pub size: usize,
    /// Packets per frame: the layer's rate is `fps × packets × size × 8`.
    pub packets_per_frame: usize,
}

/// VP8 payload descriptor: S=1 (start of partition 0), no extensions.
const VP8_START: u8 = 0x10;
/// The descriptor of a frame's later packets (S=0).
const VP8_CONTINUATION: u8 = 0x00;
/// VP8 frame tag (show_frame=1, P=0) and keyframe start code, 320x240.
const VP8_KEYFRAME: [u8; 10] = [0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
/// VP8 frame tag of an interframe (P=1), zero-padded to the keyframe
/// header's length so that the layer marker sits at a fixed offset.
const VP8_INTERFRAME: [u8; 10] = [0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// Where the layer marker and the layer's own u32 sequence number start.
const MARKER_AT: usize = 1 + VP8_KEYFRAME.len();
/// Every byte of an audio payload (an Opus TOC byte, repeated).
const AUDIO_TOC: u8 = 0xfc;

const SDES_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
pub const SDES_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// A payload of `layer`: VP8 descriptor and frame header, marker, the
/// layer's own sequence number, padding.
fn layer_payload(layer: &Layer, seq: u32, first: bool, keyframe: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(layer.size);
    out.push(if first { VP8_START } else { VP8_CONTINUATION });
    out.extend_from_slice(if keyframe {
        &VP8_KEYFRAME
    } else {
        &VP8_INTERFRAME
    });
    out.push(layer.marker);
    out.extend_from_slice(&seq.to_be_bytes());
    out.resize(layer.size, 0);
    out
}

/// What a received video payload says: its layer marker (if it is one of
/// `layers`), the layer's sequence number, and whether it starts a
/// keyframe.
pub fn parse_video(layers: &[Layer], payload: &[u8]) -> (Option<u8>, u32, bool) {
    let keyframe = payload.len() > 1 && payload[0] == VP8_START && payload[1] & 0x01 == 0;
    match payload.get(MARKER_AT..MARKER_AT + 5) {
        Some(bytes) if layers.iter().any(|l| l.marker == bytes[0]) => (
            Some(bytes[0]),
            u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes")),
            keyframe,
        ),
        _ => (None, 0, keyframe),
    }
}

/// Sends every layer of `layers` (and audio, one packet per frame) at
/// `fps` until aborted, a keyframe every `keyframe_every` frames and
/// whenever one is asked for.
pub async fn send(writer: MediaWriter, layers: Vec<Layer>, fps: u32, keyframe_every: u64) {
    let Some(params) = SendParams::of(&writer) else {
        writer.problem("sending before the pub answer (or without mid and rid extensions)");
        return;
    };
    let video_ssrcs = writer.video_ssrcs().to_vec();
    let mut interval = tokio::time::interval(Duration::from_secs(1) / fps);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seqs: Vec<u16> = (0..=layers.len()).map(|_| rand::random()).collect();
    let timestamps: Vec<u32> = (0..=layers.len()).map(|_| rand::random()).collect();
    let mut layer_seqs = vec![0u32; layers.len()];
    let audio = layers.len();
    for frame in 0u64.. {
        interval.tick().await;
        for (i, layer) in layers.iter().enumerate() {
            let wanted = writer.take_keyframe_wanted(video_ssrcs[i]);
            let keyframe = frame % keyframe_every == 0 || wanted;
            for part in 0..layer.packets_per_frame {
                let mut packet = rtc::rtp::Packet {
                    header: rtc::rtp::header::Header {
                        version: 2,
                        marker: part + 1 == layer.packets_per_frame,
                        payload_type: params.video_pt,
                        sequence_number: seqs[i],
                        timestamp: timestamps[i].wrapping_add((frame as u32) * (90_000 / fps)),
                        ssrc: video_ssrcs[i],
                        ..Default::default()
                    },
                    payload: layer_payload(layer, layer_seqs[i], part == 0, keyframe).into(),
                };
                let stamped = packet
                    .header
                    .set_extension(params.mid_ext, params.mid.as_bytes().to_vec().into())
                    .and_then(|()| {
                        packet
                            .header
                            .set_extension(params.rid_ext, layer.rid.as_bytes().to_vec().into())
                    });
                if let Err(e) = stamped {
                    writer.problem(format!("header extensions: {e}"));
                    return;
                }
                if let Err(e) = writer.write_rtp(Kind::Video, packet).await {
                    writer.problem(format!("write_rtp {}: {e:#}", layer.rid));
                }
                seqs[i] = seqs[i].wrapping_add(1);
                layer_seqs[i] += 1;
            }
        }
        // The same bytes every time: a browser decodes them to a level that
        // makes no synthetic publisher the active speaker.
        let payload = vec![AUDIO_TOC; 80];
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: params.audio_pt,
                sequence_number: seqs[audio],
                timestamp: timestamps[audio].wrapping_add((frame as u32) * (48_000 / fps)),
                ssrc: writer.audio_ssrc(),
                ..Default::default()
            },
            payload: payload.into(),
        };
        if let Err(e) = writer.write_rtp(Kind::Audio, packet).await {
            writer.problem(format!("write_rtp audio: {e:#}"));
        }
        seqs[audio] = seqs[audio].wrapping_add(1);
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

/// The layer whose packets reached a subscriber at each moment, from its
/// recorded RTP: `(when, marker)` per packet that starts a frame.
pub fn layer_timeline(layers: &[Layer], rtp: &[RtpRecord]) -> Vec<(Instant, u8)> {
    rtp.iter()
        .filter_map(|p| {
            let (layer, _, _) = parse_video(layers, &p.payload);
            let first = p.payload.first() == Some(&VP8_START);
            layer.filter(|_| first).map(|l| (p.at, l))
        })
        .collect()
}
