//! The stamp every synthetic packet carries, and the pre-built payloads it
//! is written into.
//!
//! A receiver can only measure loss, reordering and added latency if each
//! packet says who sent it, which of their tracks it belongs to, its place in
//! that track and when it left. The SFU rewrites RTP sequence numbers and
//! timestamps per subscriber, so those cannot be used; the stamp rides in the
//! payload, which the server forwards untouched. It sits at the end, so the
//! front of a video payload can look like VP8 (a payload descriptor and a
//! frame header), as a real one would.

/// Marks a payload as the load generator's.
const MAGIC: [u8; 4] = *b"TDLT";

/// Bytes the stamp takes at the end of a payload.
pub const STAMP_LEN: usize = 4 + 4 + 1 + 3 + 4 + 8;

/// Bytes of an Opus packet at 64 kbit/s and 20 ms, the audio every
/// participant sends.
pub const AUDIO_PAYLOAD: usize = 160;

/// The largest payload the generator writes: with RTP, SRTP and UDP/IP
/// headers it stays within a 1,500-byte Ethernet frame.
pub const MAX_PAYLOAD: usize = 1_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Track {
    Audio,
    Video,
}

impl Track {
    pub const ALL: [Track; 2] = [Track::Audio, Track::Video];

    pub fn index(self) -> usize {
        match self {
            Track::Audio => 0,
            Track::Video => 1,
        }
    }
}

/// What a packet says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The publishing participant's number in this run.
    pub publisher: u32,
    pub track: Track,
    /// The simulcast layer (0 lowest) of a video packet; 0 without
    /// simulcast.
    pub layer: u8,
    /// The packet's place in its track (its layer), from 0.
    pub seq: u32,
    /// When it was handed to the sender, in nanoseconds since the run began.
    pub sent_ns: u64,
}

impl Stamp {
    /// Writes the stamp over the last [`STAMP_LEN`] bytes of `payload`.
    ///
    /// # Panics
    /// If `payload` is shorter than the stamp.
    pub fn write(&self, payload: &mut [u8]) {
        let at = payload.len() - STAMP_LEN;
        let out = &mut payload[at..];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..8].copy_from_slice(&self.publisher.to_be_bytes());
        out[8] = self.track.index() as u8;
        out[9] = self.layer;
        out[10..12].fill(0);
        out[12..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..24].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// The stamp at the end of `payload`, if it carries one.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let at = payload.len().checked_sub(STAMP_LEN)?;
        let s = &payload[at..];
        if s[0..4] != MAGIC {
            return None;
        }
        let track = match s[8] {
            0 => Track::Audio,
            1 => Track::Video,
            _ => return None,
        };
        Some(Stamp {
            publisher: u32::from_be_bytes(s[4..8].try_into().ok()?),
            track,
            layer: s[9],
            seq: u32::from_be_bytes(s[12..16].try_into().ok()?),
            sent_ns: u64::from_be_bytes(s[16..24].try_into().ok()?),
        })
    }
}

/// A payload of `len` bytes for `track`, ready for its stamp. Video payloads
/// start with a VP8 payload descriptor (RFC 7741) and an interframe header;
/// `frame_start` sets the descriptor's start-of-partition bit. `opaque`
/// (end-to-end encrypted rooms): after the bytes an E2EE client leaves in
/// the clear (the descriptor and 3 bytes of a VP8 delta frame; 1 of Opus),
/// an SFrame header and pseudo-random bytes, as a server would see them.
pub fn template(track: Track, len: usize, frame_start: bool, opaque: bool) -> Vec<u8> {
    let len = len.clamp(STAMP_LEN + 2, MAX_PAYLOAD);
    let mut payload = vec![0xA5; len];
    let clear = match track {
        Track::Video => {
            payload[0] = if frame_start { 0x10 } else { 0x00 };
            // P bit set: an interframe, so the SFU never takes it for a keyframe.
            payload[1] = 0x01;
            1 + 3
        }
        Track::Audio => 1,
    };
    if opaque && len > clear + STAMP_LEN {
        // SFrame header: a 4-byte KID, a 1-byte counter.
        payload[clear] = 0x80 | (3 << 4) | 0x08;
        let mut x: u32 = 0x9E37_79B9 ^ len as u32;
        for b in &mut payload[clear + 1..len - STAMP_LEN] {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
    }
    payload
}

/// The first packet of a VP8 keyframe of `len` bytes: the descriptor's
/// start-of-partition bit, the frame header's P bit clear and the keyframe
/// start code, as an SFU checks before it switches a subscriber's layer.
pub fn keyframe_template(len: usize, opaque: bool) -> Vec<u8> {
    let mut payload = template(Track::Video, len, true, opaque);
    payload[1] = 0x00;
    if payload.len() >= 7 + STAMP_LEN && !opaque {
        payload[4..7].copy_from_slice(&[0x9d, 0x01, 0x2a]);
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_the_round_trip_at_the_end_of_any_payload() {
        let stamp = Stamp {
            publisher: 70_001,
            track: Track::Video,
            layer: 2,
            seq: u32::MAX - 1,
            sent_ns: 1_234_567_890_123,
        };
        for len in [STAMP_LEN, 160, 1_364] {
            let mut payload = template(Track::Video, len, true, false);
            stamp.write(&mut payload);
            assert_eq!(Stamp::read(&payload), Some(stamp), "len {len}");
        }
    }

    #[test]
    fn opaque_payloads_keep_only_what_the_sfu_reads_and_the_stamp() {
        let plain = template(Track::Video, 1_000, true, false);
        let opaque = template(Track::Video, 1_000, true, true);
        assert_eq!(
            opaque[..4],
            plain[..4],
            "descriptor and VP8 header in the clear"
        );
        assert_eq!(opaque[4] & 0x80, 0x80, "an SFrame header follows");
        assert!(
            opaque[5..1_000 - STAMP_LEN]
                .iter()
                .filter(|b| **b == 0xA5)
                .count()
                < 20
        );
        let mut opaque = opaque;
        let stamp = Stamp {
            publisher: 3,
            track: Track::Video,
            layer: 0,
            seq: 9,
            sent_ns: 1,
        };
        stamp.write(&mut opaque);
        assert_eq!(Stamp::read(&opaque), Some(stamp));
    }

    #[test]
    fn a_keyframe_starts_a_partition_with_the_p_bit_clear() {
        let key = keyframe_template(1_250, false);
        assert_eq!((key[0], key[1]), (0x10, 0x00));
        assert_eq!(&key[4..7], &[0x9d, 0x01, 0x2a]);
        let delta = template(Track::Video, 1_250, true, false);
        assert_eq!((delta[0], delta[1] & 1), (0x10, 1));
    }

    #[test]
    fn payloads_without_a_stamp_are_not_mistaken_for_one() {
        assert_eq!(Stamp::read(&[0; 10]), None);
        assert_eq!(Stamp::read(&[0xA5; 200]), None);
        let mut payload = template(Track::Audio, 160, false, false);
        Stamp {
            publisher: 1,
            track: Track::Audio,
            layer: 0,
            seq: 0,
            sent_ns: 0,
        }
        .write(&mut payload);
        let at = payload.len() - STAMP_LEN + 8;
        payload[at] = 7;
        assert_eq!(Stamp::read(&payload), None, "unknown track");
    }

    #[test]
    fn video_templates_look_like_vp8_interframes() {
        let start = template(Track::Video, 1_364, true, false);
        assert_eq!(start.len(), 1_364);
        assert!(!tandem::sfu::is_vp8_keyframe(&start));
        assert_eq!(start[0] & 0x10, 0x10);
        assert_eq!(template(Track::Video, 1_364, false, false)[0] & 0x10, 0);
        assert_eq!(
            template(Track::Audio, 5_000, false, false).len(),
            MAX_PAYLOAD
        );
    }
}
