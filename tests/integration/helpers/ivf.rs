//! The IVF container (as written by libvpx and ffmpeg): a 32-byte file
//! header, then per frame a 12-byte header (u32 LE size, u64 LE pts) and
//! the frame.

use anyhow::{bail, ensure, Context};
use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub fourcc: [u8; 4],
    pub width: u16,
    pub height: u16,
    /// Time base numerator and denominator as stored: frames per
    /// second is `rate / scale`.
    pub rate: u32,
    pub scale: u32,
}

#[derive(Debug, Clone)]
pub struct Clip {
    pub header: Header,
    pub frames: Vec<Bytes>,
}

impl Clip {
    pub fn frame_duration(&self) -> std::time::Duration {
        let (rate, scale) = (self.header.rate.max(1), self.header.scale.max(1));
        std::time::Duration::from_secs(1) * scale / rate
    }
}

pub fn parse(bytes: &[u8]) -> anyhow::Result<Clip> {
    ensure!(
        bytes.len() >= 32,
        "{} bytes: too short for IVF",
        bytes.len()
    );
    ensure!(&bytes[0..4] == b"DKIF", "not IVF (no DKIF signature)");
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    let header_size = usize::from(u16_at(6));
    ensure!(header_size >= 32, "IVF header size {header_size}");
    let header = Header {
        fourcc: bytes[8..12].try_into().expect("4 bytes"),
        width: u16_at(12),
        height: u16_at(14),
        rate: u32_at(16),
        scale: u32_at(20),
    };
    let mut frames = Vec::new();
    let mut at = header_size;
    while at < bytes.len() {
        ensure!(at + 12 <= bytes.len(), "truncated frame header at {at}");
        let size = u32_at(at) as usize;
        let start = at + 12;
        let Some(frame) = bytes.get(start..start + size) else {
            bail!("frame {} at {at}: {size} bytes past the end", frames.len());
        };
        frames.push(Bytes::copy_from_slice(frame));
        at = start + size;
    }
    ensure!(!frames.is_empty(), "no frames");
    Ok(Clip { header, frames })
}

/// An IVF file of VP8 `frames` (for a look with ffmpeg or a player).
pub fn write(width: u16, height: u16, fps: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"DKIF");
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&32u16.to_le_bytes());
    out.extend_from_slice(b"VP80");
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&fps.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for (pts, frame) in frames.iter().enumerate() {
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(pts as u64).to_le_bytes());
        out.extend_from_slice(frame);
    }
    out
}

pub fn read(path: &std::path::Path) -> anyhow::Result<Clip> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes).with_context(|| format!("parsing {}", path.display()))
}
