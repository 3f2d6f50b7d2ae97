//! VP8 over RTP (RFC 7741) and the VP8 frame header (RFC 6386, 9.1).

/// The uncompressed data chunk at the start of every VP8 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub keyframe: bool,
    pub version: u8,
    pub show_frame: bool,
    pub first_partition_size: u32,
    /// Keyframes only: dimensions (without the scaling bits).
    pub width: u16,
    pub height: u16,
}

/// Reads and checks a whole frame's header: a known version, the
/// keyframe start code, non-zero dimensions, and a first partition that
/// fits in the frame.
pub fn parse_frame(frame: &[u8]) -> Result<FrameHeader, String> {
    if frame.len() < 3 {
        return Err(format!("{} bytes: no frame tag", frame.len()));
    }
    let tag = u32::from(frame[0]) | u32::from(frame[1]) << 8 | u32::from(frame[2]) << 16;
    let mut header = FrameHeader {
        keyframe: tag & 1 == 0,
        version: ((tag >> 1) & 7) as u8,
        show_frame: (tag >> 4) & 1 == 1,
        first_partition_size: tag >> 5,
        width: 0,
        height: 0,
    };
    if header.version > 3 {
        return Err(format!("version {}", header.version));
    }
    let mut header_len = 3;
    if header.keyframe {
        if frame.len() < 10 {
            return Err(format!("a keyframe of {} bytes", frame.len()));
        }
        if frame[3..6] != [0x9d, 0x01, 0x2a] {
            return Err(format!("keyframe start code {:02x?}", &frame[3..6]));
        }
        header.width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
        header.height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
        if header.width == 0 || header.height == 0 {
            return Err(format!("keyframe of {}x{}", header.width, header.height));
        }
        header_len = 10;
    }
    let available = frame.len() - header_len;
    if header.first_partition_size == 0 || header.first_partition_size as usize > available {
        return Err(format!(
            "first partition of {} bytes in a frame of {} bytes",
            header.first_partition_size,
            frame.len()
        ));
    }
    Ok(header)
}

/// The VP8 payload descriptor of one RTP payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// S: the payload starts a partition.
    pub start: bool,
    /// PID: the partition index.
    pub partition: u8,
    /// Bytes of descriptor before the VP8 data.
    pub len: usize,
}

pub fn parse_descriptor(payload: &[u8]) -> Result<Descriptor, String> {
    let first = *payload.first().ok_or("an empty payload")?;
    let mut len = 1;
    if first & 0x80 != 0 {
        // X: an extension byte with I, L, T, K.
        let ext = *payload.get(1).ok_or("truncated descriptor")?;
        len = 2;
        if ext & 0x80 != 0 {
            // I: a 7- or 15-bit picture id.
            let pic = *payload.get(len).ok_or("truncated picture id")?;
            len += if pic & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            len += 1; // L: TL0PICIDX
        }
        if ext & 0x30 != 0 {
            len += 1; // T or K: TID/Y/KEYIDX
        }
    }
    if payload.len() <= len {
        return Err(format!(
            "{} bytes with a {len}-byte descriptor",
            payload.len()
        ));
    }
    Ok(Descriptor {
        start: first & 0x10 != 0,
        partition: first & 0x07,
        len,
    })
}

/// True when `payload` starts a VP8 keyframe: the start of partition 0
/// with a frame tag whose P bit is clear.
pub fn starts_keyframe(payload: &[u8]) -> bool {
    parse_descriptor(payload).is_ok_and(|d| {
        d.start && d.partition == 0 && payload.get(d.len).is_some_and(|tag| tag & 1 == 0)
    })
}

/// What an [`Assembler`] made of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    /// Packets without VP8 data (padding).
    pub empty: u64,
    /// Complete frames whose header holds together.
    pub frames: u64,
    pub keyframes: u64,
    /// Frames started but not finished without a gap.
    pub incomplete: u64,
    /// Complete frames whose header is wrong.
    pub bad: u64,
    /// Dimensions of the keyframes seen, in order, deduplicated in a row.
    pub keyframe_sizes: Vec<(u16, u16)>,
    /// A few descriptions of what was wrong.
    pub oddities: Vec<String>,
}

/// How many frames an [`Assembler`] keeps.
pub const KEPT_FRAMES: usize = 300;

/// Reassembles VP8 frames from RTP packets in arrival order (loopback:
/// no reordering expected; a gap inside a frame makes it incomplete).
#[derive(Debug, Default)]
pub struct Assembler {
    pub counts: Counts,
    current: Option<Partial>,
    /// Complete frames from the first keyframe on (at most
    /// [`KEPT_FRAMES`]): a stream a decoder can play.
    pub kept: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct Partial {
    timestamp: u32,
    next_seq: u16,
    data: Vec<u8>,
}

impl Assembler {
    pub fn push(&mut self, seq: u16, timestamp: u32, marker: bool, payload: &[u8]) {
        self.counts.packets += 1;
        if payload.is_empty() {
            self.counts.empty += 1;
            return;
        }
        let descriptor = match parse_descriptor(payload) {
            Ok(d) => d,
            Err(e) => {
                self.oddity(format!("seq {seq}: {e}"));
                self.abandon();
                return;
            }
        };
        let data = &payload[descriptor.len..];
        if descriptor.start && descriptor.partition == 0 {
            self.abandon();
            self.current = Some(Partial {
                timestamp,
                next_seq: seq,
                data: Vec::new(),
            });
        }
        let Some(partial) = self.current.as_mut() else {
            return; // the middle of a frame whose start we never saw
        };
        if partial.next_seq != seq || partial.timestamp != timestamp {
            let gap = format!(
                "gap: expected seq {} ts {}, got seq {seq} ts {timestamp}",
                partial.next_seq, partial.timestamp
            );
            self.oddity(gap);
            self.abandon();
            return;
        }
        partial.data.extend_from_slice(data);
        partial.next_seq = seq.wrapping_add(1);
        if marker {
            let frame = self.current.take().expect("checked above").data;
            self.finish(frame);
        }
    }

    fn finish(&mut self, frame: Vec<u8>) {
        match parse_frame(&frame) {
            Ok(header) => {
                self.counts.frames += 1;
                if header.keyframe {
                    self.counts.keyframes += 1;
                    let size = (header.width, header.height);
                    if self.counts.keyframe_sizes.last() != Some(&size) {
                        self.counts.keyframe_sizes.push(size);
                    }
                }
                if (header.keyframe || !self.kept.is_empty()) && self.kept.len() < KEPT_FRAMES {
                    self.kept.push(frame);
                }
            }
            Err(e) => {
                self.counts.bad += 1;
                self.oddity(format!("bad frame: {e}"));
            }
        }
    }

    fn abandon(&mut self) {
        if self.current.take().is_some() {
            self.counts.incomplete += 1;
        }
    }

    fn oddity(&mut self, text: String) {
        if self.counts.oddities.len() < 5 {
            self.counts.oddities.push(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_320X240: [u8; 10] = [0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];

    fn keyframe() -> Vec<u8> {
        // first partition size 18 (0x50 >> 5 = 2, | 0x02 << 3 = 16: 18).
        let mut frame = KEY_320X240.to_vec();
        frame.resize(40, 0xaa);
        frame
    }

    #[test]
    fn frame_headers_are_read_and_checked() {
        let header = parse_frame(&keyframe()).unwrap();
        assert!(header.keyframe && header.show_frame);
        assert_eq!((header.width, header.height), (320, 240));
        assert_eq!(header.first_partition_size, 18);
        let mut bad = keyframe();
        bad[3] = 0;
        assert!(parse_frame(&bad).is_err(), "start code");
        assert!(
            parse_frame(&keyframe()[..20]).is_err(),
            "partition past the end"
        );
        let inter = [0x91, 0x00, 0x00, 1, 2, 3];
        assert!(parse_frame(&inter).is_err(), "partition of 4 in 3 bytes");
        let inter = [0x31, 0x00, 0x00, 1, 2, 3];
        assert!(!parse_frame(&inter).unwrap().keyframe);
    }

    #[test]
    fn descriptors_with_extensions() {
        assert_eq!(
            parse_descriptor(&[0x10, 9]).unwrap(),
            Descriptor {
                start: true,
                partition: 0,
                len: 1
            }
        );
        // X, I with a 15-bit picture id, L, T.
        let d = parse_descriptor(&[0x90, 0xe0, 0x80, 0x01, 0x05, 0x40, 9]).unwrap();
        assert_eq!((d.start, d.len), (true, 6));
        assert!(parse_descriptor(&[0x90, 0x80]).is_err());
        assert!(parse_descriptor(&[0x10]).is_err());
        assert!(starts_keyframe(&[0x10, 0x10, 0x00]));
        assert!(!starts_keyframe(&[0x10, 0x11, 0x00]), "an interframe");
        assert!(!starts_keyframe(&[0x00, 0x10, 0x00]), "not the start");
    }

    #[test]
    fn frames_are_reassembled_and_gaps_detected() {
        let frame = keyframe();
        let mut a = Assembler::default();
        let mut first = vec![0x10];
        first.extend_from_slice(&frame[..25]);
        let mut second = vec![0x00];
        second.extend_from_slice(&frame[25..]);
        a.push(65535, 7, false, &first);
        a.push(0, 7, true, &second);
        assert_eq!((a.counts.frames, a.counts.keyframes), (1, 1));
        assert_eq!(a.counts.keyframe_sizes, vec![(320, 240)]);
        // A lost middle packet: the frame is incomplete, not bad.
        a.push(10, 8, false, &first);
        a.push(12, 8, true, &second);
        assert_eq!(
            (a.counts.frames, a.counts.incomplete, a.counts.bad),
            (1, 1, 0)
        );
        assert_eq!(a.kept, vec![frame]);
    }
}
