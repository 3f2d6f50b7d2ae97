//! What the browser check ([`crate::browser`]) needs besides the common test
//! server: a Rust participant that publishes real VP8 video and proves the
//! VP8 it receives is decodable, and the driver of the Node/Chromium side.
//!
//! - [`Vp8Peer`]: a webrtc-rs participant (signaling through the common
//!   [`SignalClient`]) that publishes the frames of an IVF clip on its `pub`
//!   connection (webrtc-rs packetizes them, RFC 7741) and reassembles the VP8
//!   frames it receives on `sub`: every frame from the packet with the start
//!   bit to the one with the marker bit, without a gap, with a frame header
//!   that holds together, and keyframes with the start code and dimensions.
//! - [`ivf`] and [`vp8`]: the container and bitstream facts, pure code.
//! - [`BrowserEnv`] and [`BrowserRun`]: whether Chromium, Node and
//!   playwright-core are here (the skip policy), and the child process
//!   `node web-client/tests/call.mjs`.
//! - [`spki_sha256_base64`]: the key pin Chromium is given for the test
//!   server's certificate.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rtc::media::Sample;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceGatheringState, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use super::peer::{opus_vp8_engine, vp8};
use super::signal_client::{
    summarize, type_of, MessageLog, ReaderGuard, SignalClient, SignalSender,
};
use super::TestApp;

/// Whether the browser check can run here: Chromium, Node and the
/// playwright-core package of web-client/tests.
pub struct BrowserEnv {
    pub chromium: PathBuf,
    pub node: PathBuf,
    /// web-client/tests, where call.mjs and node_modules are.
    pub dir: PathBuf,
}

/// Set (to 1) where the browser check must run (CI): missing tools fail
/// the test instead of skipping it.
pub const REQUIRE_VAR: &str = "REQUIRE_BROWSER_CHECK";

impl BrowserEnv {
    /// What is missing, if anything.
    pub fn detect() -> Result<BrowserEnv, String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("web-client/tests");
        let chromium = std::env::var_os("TANDEM_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        let mut missing = Vec::new();
        if !chromium.is_file() {
            missing.push(format!("no Chromium at {}", chromium.display()));
        }
        let node = PathBuf::from("node");
        match std::process::Command::new(&node).arg("--version").output() {
            Ok(out) if out.status.success() => {
                let version = String::from_utf8_lossy(&out.stdout);
                let major: u32 = version
                    .trim()
                    .trim_start_matches('v')
                    .split('.')
                    .next()
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(0);
                if major < 20 {
                    missing.push(format!(
                        "node {} is older than 20 (playwright-core needs 20)",
                        version.trim()
                    ));
                }
            }
            _ => missing.push("no `node` on PATH".to_owned()),
        }
        if !dir
            .join("node_modules/playwright-core/package.json")
            .is_file()
        {
            missing.push(format!("no {}/node_modules/playwright-core", dir.display()));
        }
        if missing.is_empty() {
            Ok(BrowserEnv {
                chromium,
                node,
                dir,
            })
        } else {
            Err(missing.join("; "))
        }
    }

    /// The environment, or `None` after saying why the test is skipped;
    /// panics instead when [`REQUIRE_VAR`] is set to 1.
    pub fn or_skip(test: &str) -> Option<BrowserEnv> {
        match Self::detect() {
            Ok(env) => Some(env),
            Err(missing) => {
                if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                    panic!("{test}: {REQUIRE_VAR}=1 but the browser check cannot run: {missing}");
                }
                // Straight to stderr, past the test harness's capture, so a
                // skip is seen even when the test "passes".
                let _ = writeln!(
                    std::io::stderr(),
                    "{test}: skipped: {missing}. Run .ci/run, or install chromium \
                     (apt-get install --no-install-recommends chromium) and run `npm ci` \
                     in web-client/tests; set {REQUIRE_VAR}=1 to make this a failure."
                );
                None
            }
        }
    }
}

/// base64(SHA-256(SubjectPublicKeyInfo DER)) of the key in `key_pem`: the
/// value of Chromium's `--ignore-certificate-errors-spki-list`, which makes
/// it accept a certificate for exactly that key and no other.
pub fn spki_sha256_base64(key_pem: &Path) -> anyhow::Result<String> {
    use base64::Engine as _;
    use rcgen::PublicKeyData as _;
    use sha2::Digest as _;
    let pem = std::fs::read_to_string(key_pem)
        .with_context(|| format!("reading {}", key_pem.display()))?;
    let key = rcgen::KeyPair::from_pem(&pem).context("parsing the server key")?;
    let digest = sha2::Sha256::digest(key.subject_public_key_info());
    Ok(base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The IVF container (as written by libvpx and ffmpeg): a 32-byte file
/// header, then per frame a 12-byte header (u32 LE size, u64 LE pts) and
/// the frame.
pub mod ivf {
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
}

/// VP8 over RTP (RFC 7741) and the VP8 frame header (RFC 6386, 9.1).
pub mod vp8 {
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
}

/// How long received video may go without a keyframe before a PLI.
const PLI_AFTER: Duration = Duration::from_millis(500);

/// What one remote track delivered.
#[derive(Debug, Clone)]
pub struct Received {
    pub packets: u64,
    /// Video only.
    pub vp8: vp8::Counts,
    /// Complete frames from the first keyframe on: see [`vp8::Assembler::kept`].
    pub frames: Vec<Vec<u8>>,
}

/// What the peer published.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    pub frames: u64,
    pub keyframes: u64,
}

/// A participant publishing a VP8 clip in a loop; see the module docs.
pub struct Vp8Peer {
    id: String,
    shared: Arc<Shared>,
    sender: SignalSender,
    log: MessageLog,
    pub_pc: Arc<dyn PeerConnection>,
    sub_pc: Arc<dyn PeerConnection>,
    pub_state: watch::Receiver<RTCPeerConnectionState>,
    sub_state: watch::Receiver<RTCPeerConnectionState>,
    tasks: Vec<JoinHandle<()>>,
    _reader: ReaderGuard,
}

struct Shared {
    problems: Mutex<Vec<String>>,
    /// Negotiated VP8 payload type on `pub`, once answered.
    payload_type: Mutex<Option<u8>>,
    received: Mutex<Vec<Track>>,
    frames_sent: AtomicU64,
    keyframes_sent: AtomicU64,
    sub_offers: AtomicUsize,
}

struct Track {
    stream_id: String,
    kind: RtpCodecKind,
    packets: u64,
    /// Keyframe requests sent.
    plis: u64,
    assembler: vp8::Assembler,
}

impl Shared {
    fn problem(&self, problem: impl Into<String>) {
        let mut problems = self.problems.lock().expect("problems");
        if problems.len() < 50 {
            problems.push(problem.into());
        }
    }
}

impl Vp8Peer {
    /// Joins with `token` as `participant_id`, publishes `clip` (video only)
    /// once `pub` connects, and answers every `sub` offer. Returns once
    /// `pub` is connected.
    pub async fn join(
        app: &TestApp,
        token: &str,
        participant_id: &str,
        clip: ivf::Clip,
        timeout: Duration,
    ) -> anyhow::Result<Vp8Peer> {
        anyhow::ensure!(&clip.header.fourcc == b"VP80", "the clip is not VP8");
        let mut client = SignalClient::connect(app)
            .await
            .context("connecting to the signaling socket")?;
        let joined = client.join(token).await?;
        anyhow::ensure!(type_of(&joined) == "joined", "not admitted: {joined}");
        let parts = client.into_parts();
        let shared = Arc::new(Shared {
            problems: Mutex::new(Vec::new()),
            payload_type: Mutex::new(None),
            received: Mutex::new(Vec::new()),
            frames_sent: AtomicU64::new(0),
            keyframes_sent: AtomicU64::new(0),
            sub_offers: AtomicUsize::new(0),
        });
        let (local_tx, local_rx) = mpsc::unbounded_channel();
        let (sub_pc, sub_state) = build_pc(Side::Sub, shared.clone(), local_tx.clone()).await?;
        let (pub_pc, mut pub_state) = build_pc(Side::Pub, shared.clone(), local_tx).await?;

        let ssrc = rand::random::<u32>() | 1;
        let video = Arc::new(TrackLocalStaticSample::new(
            Instant::now(),
            MediaStreamTrack::new(
                participant_id.to_owned(),
                format!("{participant_id}-video"),
                format!("{participant_id}-video"),
                RtpCodecKind::Video,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: vp8(),
                    ..Default::default()
                }],
            ),
        )?);
        let transceiver = pub_pc
            .add_transceiver_from_track(
                video.clone() as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    ..Default::default()
                }),
            )
            .await
            .context("adding the video track")?;
        let rtp_sender = transceiver
            .sender()
            .await?
            .context("a transceiver without sender")?;

        let offer = pub_pc.create_offer(None).await?;
        pub_pc.set_local_description(offer.clone()).await?;
        let mut first_mid = HashMap::new();
        first_mid.insert(Side::Pub, first_mid_of(&offer.sdp));
        parts
            .sender
            .send_json(&json!({"type": "offer", "pc": "pub", "sdp": offer.sdp}))
            .await?;

        let driver = Driver {
            shared: shared.clone(),
            sender: parts.sender.clone(),
            pub_pc: pub_pc.clone(),
            sub_pc: sub_pc.clone(),
            rtp_sender,
            buffered: HashMap::new(),
            remote_set: HashSet::new(),
            first_mid,
        };
        let driver = tokio::spawn(driver.run(parts.incoming, local_rx));
        let mut peer = Vp8Peer {
            id: participant_id.to_owned(),
            shared: shared.clone(),
            sender: parts.sender,
            log: parts.log,
            pub_pc,
            sub_pc,
            pub_state: pub_state.clone(),
            sub_state,
            tasks: vec![driver],
            _reader: parts.reader,
        };
        let connected = tokio::time::timeout(
            timeout,
            pub_state.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed
                )
            }),
        )
        .await;
        let state = connected.ok().and_then(|r| r.ok().map(|s| *s));
        if state != Some(RTCPeerConnectionState::Connected) {
            let text = peer.describe();
            peer.close().await;
            anyhow::bail!("pub did not connect within {timeout:?} ({state:?})\n{text}");
        }
        peer.tasks
            .push(tokio::spawn(send_clip(shared, video, ssrc, clip)));
        Ok(peer)
    }

    pub fn sent(&self) -> Sent {
        Sent {
            frames: self.shared.frames_sent.load(Ordering::SeqCst),
            keyframes: self.shared.keyframes_sent.load(Ordering::SeqCst),
        }
    }

    /// Everything received from `participant` of `kind`.
    pub fn received(&self, participant: &str, kind: RtpCodecKind) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .expect("received")
            .iter()
            .filter(|t| t.stream_id == participant && t.kind == kind)
            .map(|t| Received {
                packets: t.packets,
                vp8: t.assembler.counts.clone(),
                frames: t.assembler.kept.clone(),
            })
            .collect()
    }

    /// Waits until a video track of `participant` satisfies `done`.
    pub async fn wait_for_video_where(
        &self,
        participant: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Received) -> bool,
    ) -> anyhow::Result<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let video = self.received(participant, RtpCodecKind::Video);
            if let Some(track) = video.iter().find(|t| done(t)) {
                return Ok(track.clone());
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "no {what} from {participant} within {timeout:?}\n{}",
                    self.describe()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn problems(&self) -> Vec<String> {
        self.shared.problems.lock().expect("problems").clone()
    }

    pub fn describe(&self) -> String {
        let mut out = format!(
            "rust peer {}: pub {}, sub {}, {} sub offers; sent {:?}\n",
            self.id,
            self.pub_pc_state(),
            self.sub_pc_state(),
            self.shared.sub_offers.load(Ordering::SeqCst),
            self.sent()
        );
        for t in self.shared.received.lock().expect("received").iter() {
            out.push_str(&format!(
                "  received {}/{:?}: {} packets, {} PLIs sent, {:?}\n",
                t.stream_id, t.kind, t.packets, t.plis, t.assembler.counts
            ));
        }
        let problems = self.problems();
        if !problems.is_empty() {
            out.push_str(&format!("  problems: {problems:#?}\n"));
        }
        out.push_str(&format!("  signaling: [{}]", summarize(&self.log.all())));
        out
    }

    fn pub_pc_state(&self) -> String {
        self.pub_state.borrow().to_string()
    }

    fn sub_pc_state(&self) -> String {
        self.sub_state.borrow().to_string()
    }

    /// Closes both connections and the signaling socket.
    pub async fn close(self) {
        for task in &self.tasks {
            task.abort();
        }
        let _ = self.pub_pc.close().await;
        let _ = self.sub_pc.close().await;
        let _ = self.sender.close().await;
    }
}

impl Drop for Vp8Peer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Writes the clip's frames at its frame rate, in a loop, until aborted.
async fn send_clip(
    shared: Arc<Shared>,
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    clip: ivf::Clip,
) {
    let duration = clip.frame_duration();
    let mut ticker = tokio::time::interval(duration);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for frame in clip.frames.iter().cycle() {
        ticker.tick().await;
        let Some(payload_type) = *shared.payload_type.lock().expect("payload type") else {
            continue;
        };
        let sample = Sample {
            data: frame.clone(),
            duration,
            ..Sample::new(Instant::now())
        };
        match track.write_sample(ssrc, payload_type, &sample, &[]).await {
            Ok(()) => {
                shared.frames_sent.fetch_add(1, Ordering::SeqCst);
                if frame.first().is_some_and(|b| b & 1 == 0) {
                    shared.keyframes_sent.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(e) => shared.problem(format!("write_sample: {e}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Pub,
    Sub,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Pub => "pub",
            Side::Sub => "sub",
        }
    }
}

/// Negotiation: applies what the server sends, sends our candidates.
struct Driver {
    shared: Arc<Shared>,
    sender: SignalSender,
    pub_pc: Arc<dyn PeerConnection>,
    sub_pc: Arc<dyn PeerConnection>,
    rtp_sender: Arc<dyn RtpSender>,
    buffered: HashMap<Side, Vec<RTCIceCandidateInit>>,
    remote_set: HashSet<Side>,
    first_mid: HashMap<Side, String>,
}

impl Driver {
    async fn run(
        mut self,
        mut incoming: mpsc::UnboundedReceiver<Value>,
        mut local: mpsc::UnboundedReceiver<(Side, Option<RTCIceCandidateInit>)>,
    ) {
        loop {
            tokio::select! {
                message = incoming.recv() => match message {
                    Some(message) => {
                        if let Err(e) = self.handle(&message).await {
                            let mut text = message.to_string();
                            text.truncate(200);
                            self.shared.problem(format!("handling {text}: {e:#}"));
                        }
                    }
                    None => break,
                },
                Some((side, candidate)) = local.recv() => {
                    if let Err(e) = self.send_candidate(side, candidate).await {
                        self.shared.problem(format!("sending a candidate: {e:#}"));
                    }
                }
            }
        }
    }

    fn pc(&self, side: Side) -> Arc<dyn PeerConnection> {
        match side {
            Side::Pub => self.pub_pc.clone(),
            Side::Sub => self.sub_pc.clone(),
        }
    }

    async fn handle(&mut self, message: &Value) -> anyhow::Result<()> {
        let side = match message["pc"].as_str() {
            Some("pub") => Some(Side::Pub),
            Some("sub") => Some(Side::Sub),
            _ => None,
        };
        match (type_of(message), side) {
            ("answer", Some(Side::Pub)) => {
                let sdp = message["sdp"].as_str().context("no sdp")?;
                self.pub_pc
                    .set_remote_description(RTCSessionDescription::answer(sdp.to_owned())?)
                    .await
                    .context("setting the pub answer")?;
                self.remote_description_set(Side::Pub).await;
                let parameters = self.rtp_sender.get_parameters().await?;
                let payload_type = parameters
                    .rtp_parameters
                    .codecs
                    .first()
                    .map(|c| c.payload_type)
                    .context("no video codec negotiated on pub")?;
                *self.shared.payload_type.lock().expect("payload type") = Some(payload_type);
            }
            ("offer", Some(Side::Sub)) => {
                let sdp = message["sdp"].as_str().context("no sdp")?;
                self.sub_pc
                    .set_remote_description(RTCSessionDescription::offer(sdp.to_owned())?)
                    .await
                    .context("setting the sub offer")?;
                self.remote_description_set(Side::Sub).await;
                let answer = self.sub_pc.create_answer(None).await?;
                self.sub_pc.set_local_description(answer.clone()).await?;
                self.first_mid
                    .entry(Side::Sub)
                    .or_insert_with(|| first_mid_of(&answer.sdp));
                self.sender
                    .send_json(&json!({"type": "answer", "pc": "sub", "sdp": answer.sdp}))
                    .await?;
                self.shared.sub_offers.fetch_add(1, Ordering::SeqCst);
            }
            ("candidate", Some(side)) => {
                let candidate = &message["candidate"];
                if candidate.is_null() {
                    return Ok(());
                }
                let init = RTCIceCandidateInit {
                    candidate: candidate["candidate"]
                        .as_str()
                        .context("a candidate without text")?
                        .to_owned(),
                    sdp_mid: candidate["sdpMid"].as_str().map(str::to_owned),
                    sdp_mline_index: candidate["sdpMLineIndex"].as_u64().map(|i| i as u16),
                    username_fragment: candidate["usernameFragment"].as_str().map(str::to_owned),
                    ..Default::default()
                };
                if self.remote_set.contains(&side) {
                    self.add_candidate(side, init).await;
                } else {
                    self.buffered.entry(side).or_default().push(init);
                }
            }
            ("offer" | "answer", _) => anyhow::bail!("unexpected"),
            ("error" | "denied", _) => anyhow::bail!("the server said so"),
            _ => {}
        }
        Ok(())
    }

    async fn remote_description_set(&mut self, side: Side) {
        self.remote_set.insert(side);
        for candidate in self.buffered.remove(&side).unwrap_or_default() {
            self.add_candidate(side, candidate).await;
        }
    }

    /// UDP candidates only: this peer has only a UDP socket.
    async fn add_candidate(&mut self, side: Side, init: RTCIceCandidateInit) {
        let transport = init
            .candidate
            .split_whitespace()
            .nth(2)
            .map(str::to_ascii_lowercase);
        if transport.as_deref() != Some("udp") {
            return;
        }
        if let Err(e) = self.pc(side).add_ice_candidate(init.clone()).await {
            self.shared.problem(format!(
                "{}: add_ice_candidate({:?}): {e}",
                side.as_str(),
                init.candidate
            ));
        }
    }

    async fn send_candidate(
        &mut self,
        side: Side,
        candidate: Option<RTCIceCandidateInit>,
    ) -> anyhow::Result<()> {
        let candidate = match candidate {
            Some(c) => json!({
                "candidate": c.candidate,
                "sdpMid": self.first_mid.get(&side).map_or("0", String::as_str),
                "sdpMLineIndex": 0,
            }),
            None => Value::Null,
        };
        self.sender
            .send_json(&json!({"type": "candidate", "pc": side.as_str(), "candidate": candidate}))
            .await
    }
}

fn first_mid_of(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
        .unwrap_or("0")
        .to_owned()
}

/// A connection on 127.0.0.1 over UDP, mDNS off (see [`super::peer`]
/// for why), with Opus and VP8.
async fn build_pc(
    side: Side,
    shared: Arc<Shared>,
    candidates: mpsc::UnboundedSender<(Side, Option<RTCIceCandidateInit>)>,
) -> anyhow::Result<(
    Arc<dyn PeerConnection>,
    watch::Receiver<RTCPeerConnectionState>,
)> {
    let (media_engine, registry) = opus_vp8_engine()?;
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_network_types(vec![rtc::ice::network_type::NetworkType::Udp4])
        .build();
    let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
    let handler = Arc::new(Events {
        side,
        shared,
        candidates,
        state: state_tx,
    });
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_handler(handler)
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await
        .with_context(|| format!("building the {} connection", side.as_str()))?;
    Ok((Arc::new(pc), state_rx))
}

struct Events {
    side: Side,
    shared: Arc<Shared>,
    candidates: mpsc::UnboundedSender<(Side, Option<RTCIceCandidateInit>)>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let _ = self.candidates.send((self.side, Some(init)));
            }
            Err(e) => self.shared.problem(format!("a local candidate: {e}")),
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.candidates.send((self.side, None));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if self.side == Side::Sub {
            tokio::spawn(read_track(self.shared.clone(), track));
        } else {
            self.shared.problem("a remote track on the pub connection");
        }
    }
}

/// Reads one remote track until it ends (continuously: its event queue is
/// bounded), reassembling VP8 frames of video. Like a browser, asks for a
/// keyframe (PLI) while video flows without one.
async fn read_track(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let stream_id = track.stream_id().await;
    let kind = track.kind().await;
    let index = {
        let mut received = shared.received.lock().expect("received");
        received.push(Track {
            stream_id,
            kind,
            packets: 0,
            plis: 0,
            assembler: vp8::Assembler::default(),
        });
        received.len() - 1
    };
    let mut first_packet: Option<Instant> = None;
    let mut last_pli: Option<Instant> = None;
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(rtp) => {
                let no_keyframe_yet = {
                    let mut received = shared.received.lock().expect("received");
                    let t = &mut received[index];
                    t.packets += 1;
                    if kind != RtpCodecKind::Video {
                        continue;
                    }
                    t.assembler.push(
                        rtp.header.sequence_number,
                        rtp.header.timestamp,
                        rtp.header.marker,
                        &rtp.payload,
                    );
                    t.assembler.counts.keyframes == 0
                };
                let first = *first_packet.get_or_insert_with(Instant::now);
                let due = last_pli.map_or(first.elapsed() > PLI_AFTER, |t| t.elapsed() > PLI_AFTER);
                if no_keyframe_yet && due {
                    last_pli = Some(Instant::now());
                    let pli = PictureLossIndication {
                        sender_ssrc: 1,
                        media_ssrc: rtp.header.ssrc,
                    };
                    match track.write_rtcp(vec![Box::new(pli)]).await {
                        Ok(()) => shared.received.lock().expect("received")[index].plis += 1,
                        Err(e) => shared.problem(format!("sending a PLI: {e}")),
                    }
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

/// The arguments of call.mjs.
pub struct CallArgs<'a> {
    pub url: &'a str,
    pub session: &'a str,
    pub token: &'a str,
    pub spki: &'a str,
    pub expect_stream: &'a str,
    pub frames: u32,
    pub timeout: Duration,
}

/// `node call.mjs …` running: Chromium in a room.
pub struct BrowserRun {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr_lines: Arc<Mutex<Vec<String>>>,
    stderr_task: JoinHandle<()>,
}

impl BrowserRun {
    pub fn start(env: &BrowserEnv, args: &CallArgs<'_>) -> anyhow::Result<BrowserRun> {
        let mut child = tokio::process::Command::new(&env.node)
            .arg("call.mjs")
            .args(["--url", args.url])
            .args(["--session", args.session])
            .args(["--token", args.token])
            .args(["--spki", args.spki])
            .args(["--expect-stream", args.expect_stream])
            .args(["--frames", &args.frames.to_string()])
            .args(["--timeout-ms", &args.timeout.as_millis().to_string()])
            .current_dir(&env.dir)
            .env("TANDEM_CHROMIUM", &env.chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting node call.mjs")?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let mut stderr = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr_lines.clone();
        let stderr_task = tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                // Captured by the test harness: shown when the test fails
                // (or always with --nocapture).
                eprintln!("{line}");
                lines.lock().expect("stderr lines").push(line);
            }
        });
        Ok(BrowserRun {
            child,
            stdin,
            stdout,
            stderr_lines,
            stderr_task,
        })
    }

    /// Waits for the `RESULT {json}` line: Chromium decoded the frames.
    pub async fn wait_result(&mut self, timeout: Duration) -> anyhow::Result<Value> {
        let outcome = tokio::time::timeout(timeout, async {
            loop {
                match self.stdout.next_line().await {
                    Ok(Some(line)) => {
                        if let Some(json) = line.strip_prefix("RESULT ") {
                            return serde_json::from_str::<Value>(json)
                                .with_context(|| format!("unreadable result {json}"));
                        }
                        if let Some(json) = line.strip_prefix("FAILED ") {
                            anyhow::bail!("the browser side failed: {json}");
                        }
                        eprintln!("[browser stdout] {line}");
                    }
                    Ok(None) => anyhow::bail!("node exited without a result"),
                    Err(e) => anyhow::bail!("reading node's output: {e}"),
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(e.context(self.transcript())),
            Err(_) => Err(anyhow::anyhow!(
                "no result from the browser within {timeout:?}\n{}",
                self.transcript()
            )),
        }
    }

    /// Lets the browser go (closes its stdin) and waits for a clean exit;
    /// stops it (SIGTERM, then SIGKILL) if it does not exit in `timeout`.
    pub async fn finish(mut self, timeout: Duration) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.stop().await;
                anyhow::bail!(
                    "node did not exit within {timeout:?}\n{}",
                    self.transcript()
                );
            }
        };
        // Let the stderr forwarder drain.
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.stderr_task).await;
        anyhow::ensure!(
            status.success(),
            "node exited with {status}\n{}",
            self.transcript()
        );
        Ok(())
    }

    /// Asks node to close Chromium (SIGTERM: playwright closes the browser
    /// on it), then kills it.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }

    /// What node said on stderr, for failure messages.
    pub fn transcript(&self) -> String {
        let lines = self.stderr_lines.lock().expect("stderr lines");
        format!("browser log:\n  {}", lines.join("\n  "))
    }
}
