//! The synthetic media payload: pure encoding and decoding.
//!
//! Layout: `"TNDM"`, u8 length + sender participant id (UTF-8), u8 kind
//! (0 audio, 1 video), u32 BE sequence, u64 BE send time in microseconds
//! since the UNIX epoch, u32 BE publisher instance (random per
//! [`TestPeer`](super::TestPeer): a participant who joins again with a new
//! peer counts from 0 again, so receivers keep each instance's sequence
//! apart), then zero padding to [`AUDIO_SIZE`] or [`VIDEO_SIZE`] bytes. Video has a minimal VP8 payload descriptor and
//! frame header in front (RFC 7741, RFC 6386), so that the SFU's keyframe
//! detection sees a keyframe when there is one; [`decode`] finds the header
//! after it.

pub const MAGIC: &[u8; 4] = b"TNDM";
pub const AUDIO_SIZE: usize = 100;
pub const VIDEO_SIZE: usize = 1000;

/// VP8 payload descriptor: S=1 (start of partition 0), no extensions.
const VP8_DESCRIPTOR: u8 = 0x10;
/// VP8 frame tag (show_frame=1, P=0) and keyframe start code, 320x240.
const VP8_KEYFRAME: [u8; 10] = [0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
/// VP8 frame tag of an interframe (P=1).
const VP8_INTERFRAME: [u8; 3] = [0x11, 0x00, 0x00];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Audio,
    Video,
}

impl Kind {
    pub fn index(self) -> usize {
        match self {
            Kind::Audio => 0,
            Kind::Video => 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub sender: String,
    pub kind: Kind,
    pub seq: u32,
    pub sent_at_us: u64,
    pub instance: u32,
}

/// A whole RTP payload for `header`; `keyframe` matters for video only.
pub fn encode(header: &Header, keyframe: bool) -> Vec<u8> {
    let id = header.sender.as_bytes();
    assert!(id.len() <= 255, "participant id too long for the payload");
    let size = match header.kind {
        Kind::Audio => AUDIO_SIZE,
        Kind::Video => VIDEO_SIZE,
    };
    let mut out = Vec::with_capacity(size);
    if header.kind == Kind::Video {
        out.push(VP8_DESCRIPTOR);
        out.extend_from_slice(if keyframe {
            &VP8_KEYFRAME
        } else {
            &VP8_INTERFRAME
        });
    }
    out.extend_from_slice(MAGIC);
    out.push(id.len() as u8);
    out.extend_from_slice(id);
    out.push(header.kind.index() as u8);
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.extend_from_slice(&header.sent_at_us.to_be_bytes());
    out.extend_from_slice(&header.instance.to_be_bytes());
    if out.len() < size {
        out.resize(size, 0);
    }
    out
}

/// Reads the header of a payload made by [`encode`].
pub fn decode(payload: &[u8]) -> Result<Header, String> {
    let start = (0..payload.len().min(16))
        .find(|&i| payload[i..].starts_with(MAGIC))
        .ok_or_else(|| format!("no {MAGIC:?} in the first bytes of {} bytes", payload.len()))?;
    let rest = &payload[start + MAGIC.len()..];
    let (&len, rest) = rest.split_first().ok_or("no sender length")?;
    let len = usize::from(len);
    if rest.len() < len + 1 + 4 + 8 + 4 {
        return Err(format!(
            "truncated header ({} bytes after the magic)",
            rest.len() + 1
        ));
    }
    let sender = std::str::from_utf8(&rest[..len])
        .map_err(|e| format!("sender id is not UTF-8: {e}"))?
        .to_owned();
    let rest = &rest[len..];
    let kind = match rest[0] {
        0 => Kind::Audio,
        1 => Kind::Video,
        other => return Err(format!("unknown kind {other}")),
    };
    let seq = u32::from_be_bytes(rest[1..5].try_into().expect("4 bytes"));
    let sent_at_us = u64::from_be_bytes(rest[5..13].try_into().expect("8 bytes"));
    let instance = u32::from_be_bytes(rest[13..17].try_into().expect("4 bytes"));
    Ok(Header {
        sender,
        kind,
        seq,
        sent_at_us,
        instance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_bad_ones_are_refused() {
        for (kind, keyframe, size) in [
            (Kind::Audio, false, AUDIO_SIZE),
            (Kind::Video, true, VIDEO_SIZE),
            (Kind::Video, false, VIDEO_SIZE),
        ] {
            let header = Header {
                sender: "pat-1".into(),
                kind,
                seq: 70_000,
                sent_at_us: 1_700_000_000_000_000,
                instance: 0xdead_beef,
            };
            let bytes = encode(&header, keyframe);
            assert_eq!(bytes.len(), size);
            assert_eq!(decode(&bytes).unwrap(), header);
            assert_eq!(
                crate::helpers::vp8::starts_keyframe(&bytes),
                kind == Kind::Video && keyframe
            );
        }
        let good = encode(
            &Header {
                sender: "x".into(),
                kind: Kind::Audio,
                seq: 1,
                sent_at_us: 2,
                instance: 3,
            },
            false,
        );
        assert!(decode(&good[..10]).is_err(), "truncated");
        assert!(decode(&[0u8; 100]).is_err(), "no magic");
        let mut bad_kind = good.clone();
        bad_kind[4 + 1 + 1] = 7;
        assert!(decode(&bad_kind).is_err(), "unknown kind");
    }
}
