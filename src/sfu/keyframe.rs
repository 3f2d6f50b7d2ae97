//! Keyframes: recognising them in RTP payloads, and throttling requests.
//!
//! A simulcast layer switch waits for a keyframe of the new layer, and every
//! subscriber's picture-loss indication becomes a request to the publisher.
//! Twenty subscribers losing a packet at once must not become twenty
//! keyframes (each is several times the size of a normal frame), so requests
//! per published track are throttled.

use std::time::{Duration, Instant};

/// At most one keyframe request per published track (and layer) this often.
/// A keyframe takes the publisher's encoder a frame or so and then a trip
/// across two networks to reach the subscriber, usually 100 to 300 ms; a
/// request sooner than that would only ask for the keyframe already on its
/// way. Half a second covers a slow path and still shows a lost picture
/// again within about half a second.
pub(crate) const REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// True when a VP8 RTP payload starts a keyframe (RFC 7741).
pub fn is_vp8_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    // Payload descriptor: X bit extends it; S bit and PID 0 mark the start of
    // a partition 0.
    let start_of_partition = first & 0x10 != 0 && first & 0x07 == 0;
    if !start_of_partition {
        return false;
    }
    let mut i = 1;
    if first & 0x80 != 0 {
        let Some(&ext) = payload.get(i) else {
            return false;
        };
        i += 1;
        if ext & 0x80 != 0 {
            // PictureID: one or two bytes.
            let Some(&pid) = payload.get(i) else {
                return false;
            };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    // VP8 payload header: the P bit (lowest) is 0 for a keyframe.
    payload.get(i).is_some_and(|b| b & 0x01 == 0)
}

/// True when an H.264 RTP payload carries an IDR slice or parameter sets
/// (RFC 6184: single NAL, STAP-A, or the first FU-A fragment).
pub fn is_h264_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let is_key = |nal_type: u8| matches!(nal_type, 5 | 7);
    match first & 0x1f {
        24 => {
            // STAP-A: 16-bit sizes, then NAL units.
            let mut i = 1;
            while i + 2 < payload.len() {
                let size = usize::from(u16::from_be_bytes([payload[i], payload[i + 1]]));
                if is_key(payload[i + 2] & 0x1f) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && is_key(fu & 0x1f)),
        nal => is_key(nal),
    }
}

/// Decides whether a keyframe request may go to the publisher now.
#[derive(Debug, Clone, Default)]
pub(crate) struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    /// True (and remembers `now`) when the last request is at least
    /// [`REQUEST_INTERVAL`] old.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < REQUEST_INTERVAL => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframes_are_recognised() {
        // S=1, PID=0, no extension; payload header P=0: keyframe.
        assert!(is_vp8_keyframe(&[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        // P=1: interframe.
        assert!(!is_vp8_keyframe(&[0x10, 0x01]));
        // Not the start of a partition.
        assert!(!is_vp8_keyframe(&[0x00, 0x00]));
        // Extended descriptor with a 15-bit PictureID.
        assert!(is_vp8_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x00]));
        assert!(!is_vp8_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x01]));
        assert!(!is_vp8_keyframe(&[]));
    }

    #[test]
    fn h264_keyframes_are_recognised() {
        assert!(is_h264_keyframe(&[0x65, 0x88])); // IDR
        assert!(is_h264_keyframe(&[0x67, 0x42])); // SPS
        assert!(!is_h264_keyframe(&[0x41, 0x9a])); // non-IDR
        assert!(is_h264_keyframe(&[0x7c, 0x85, 0x00])); // FU-A start of IDR
        assert!(!is_h264_keyframe(&[0x7c, 0x05, 0x00])); // FU-A continuation
        assert!(is_h264_keyframe(&[
            0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce
        ]));
        assert!(!is_h264_keyframe(&[0x78, 0x00, 0x02, 0x41, 0x9a]));
    }

    #[test]
    fn requests_are_throttled_per_interval() {
        let t0 = Instant::now();
        let mut throttle = Throttle::default();
        assert!(throttle.allow(t0));
        assert!(!throttle.allow(t0 + Duration::from_millis(100)));
        assert!(!throttle.allow(t0 + Duration::from_millis(499)));
        assert!(throttle.allow(t0 + Duration::from_millis(500)));
        assert!(!throttle.allow(t0 + Duration::from_millis(600)));
    }
}
