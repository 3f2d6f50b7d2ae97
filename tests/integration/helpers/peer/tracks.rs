//! Media in and out of a [`TestPeer`](super::TestPeer): the codecs, the
//! published tracks and what is sent on them, and the recording of every
//! remote track.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::media::Sample;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::{register_default_interceptors, MediaEngine, Registry};

use super::{ivf, payload, vp8, Kind, RtpRecord, Shared, TrackReport, AUDIO_PT, VIDEO_PT};

/// How long received video may go without a keyframe before a PLI, with
/// [`PeerOptions::reassemble_vp8`](super::PeerOptions::reassemble_vp8).
const PLI_AFTER: Duration = Duration::from_millis(500);

/// One remote track as received: synthetic payloads accounted by their
/// sequence number, and what the options ask to keep.
pub(super) struct ReceivedTrack {
    /// The MediaStream id the track was announced with: its publisher.
    pub stream_id: String,
    track_id: String,
    pub kind: Kind,
    pub track: Arc<dyn TrackRemote>,
    rtp_packets: u64,
    pub packets: u64,
    /// Payload sequence numbers seen, per publisher instance (a participant
    /// who joins again is a new instance, counting from 0 again).
    seqs: BTreeMap<u32, BTreeSet<u32>>,
    pub duplicates: u64,
    pub foreign: u64,
    pub malformed: u64,
    /// A few of the foreign or malformed packets, described.
    oddities: Vec<String>,
    /// Every packet, with `record_packets`.
    rtp: Option<Vec<RtpRecord>>,
    /// VP8 reassembly, with `reassemble_vp8` (video only).
    assembler: Option<vp8::Assembler>,
    plis_sent: u64,
    pub last_ssrc: Option<u32>,
    last_at: Option<Instant>,
    pub ended: bool,
}

impl ReceivedTrack {
    fn record(&mut self, rtp: &rtc::rtp::Packet) {
        self.rtp_packets += 1;
        self.last_ssrc = Some(rtp.header.ssrc);
        self.last_at = Some(Instant::now());
        match payload::decode(&rtp.payload) {
            Ok(header) if header.sender == self.stream_id && header.kind == self.kind => {
                self.packets += 1;
                let seqs = self.seqs.entry(header.instance).or_default();
                if !seqs.insert(header.seq) {
                    self.duplicates += 1;
                }
            }
            Ok(header) => {
                self.foreign += 1;
                self.oddity(format!(
                    "foreign: {} {:?} #{}",
                    header.sender, header.kind, header.seq
                ));
            }
            Err(e) => {
                self.malformed += 1;
                self.oddity(format!("malformed: {e}"));
            }
        }
        if let Some(log) = &mut self.rtp {
            log.push(RtpRecord {
                seq: rtp.header.sequence_number,
                timestamp: rtp.header.timestamp,
                ssrc: rtp.header.ssrc,
                payload: rtp.payload.to_vec(),
                at: Instant::now(),
            });
        }
        if let Some(assembler) = &mut self.assembler {
            assembler.push(
                rtp.header.sequence_number,
                rtp.header.timestamp,
                rtp.header.marker,
                &rtp.payload,
            );
        }
    }

    fn oddity(&mut self, description: String) {
        if self.oddities.len() < 5 {
            self.oddities.push(description);
        }
    }

    pub fn clear(&mut self) {
        self.rtp_packets = 0;
        self.packets = 0;
        self.seqs.clear();
        self.duplicates = 0;
        self.foreign = 0;
        self.malformed = 0;
        self.oddities.clear();
        if let Some(log) = &mut self.rtp {
            log.clear();
        }
        if let Some(assembler) = &mut self.assembler {
            *assembler = vp8::Assembler::default();
        }
    }

    /// Sequence numbers missing between the lowest and highest of each instance.
    pub fn lost(&self) -> u64 {
        self.seqs
            .values()
            .filter_map(|seqs| Some((seqs.first()?, seqs.last()?, seqs.len())))
            .map(|(low, high, n)| u64::from(high - low) + 1 - n as u64)
            .sum()
    }

    pub fn report(&self) -> TrackReport {
        TrackReport {
            stream_id: self.stream_id.clone(),
            kind: self.kind,
            rtp_packets: self.rtp_packets,
            rtp: self.rtp.clone().unwrap_or_default(),
            vp8: self
                .assembler
                .as_ref()
                .map(|a| a.counts.clone())
                .unwrap_or_default(),
            frames: self
                .assembler
                .as_ref()
                .map(|a| a.kept.clone())
                .unwrap_or_default(),
        }
    }

    pub fn describe(&self) -> String {
        let ranges: Vec<String> = self
            .seqs
            .iter()
            .filter_map(|(instance, seqs)| {
                Some(format!(
                    "{instance:08x}: {}..={}",
                    seqs.first()?,
                    seqs.last()?
                ))
            })
            .collect();
        let range = format!("seq [{}], {} lost", ranges.join(", "), self.lost());
        let age = self
            .last_at
            .map_or("never".to_owned(), |t| format!("{:?} ago", t.elapsed()));
        let synthetic = if self.rtp_packets > 0 && self.malformed == self.rtp_packets {
            "no synthetic payloads".to_owned()
        } else {
            format!(
                "synthetic: {} packets, {range}, {} duplicates, {} foreign, {} malformed {:?}",
                self.packets, self.duplicates, self.foreign, self.malformed, self.oddities
            )
        };
        let mut out = format!(
            "{}/{:?} (track {}{}): {} RTP packets, last {age}; {synthetic}",
            self.stream_id,
            self.kind,
            self.track_id,
            if self.ended { ", ended" } else { "" },
            self.rtp_packets,
        );
        if let Some(assembler) = &self.assembler {
            out.push_str(&format!(
                "; {} PLIs sent, VP8 {:?}",
                self.plis_sent, assembler.counts
            ));
        }
        out
    }
}

/// Reads one remote track until it ends, recording every packet. With
/// `reassemble_vp8`, like a browser, asks for a keyframe (PLI) while video
/// flows without one.
pub(super) async fn read_track(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let stream_id = track.stream_id().await;
    let track_id = track.track_id().await;
    let kind = match track.kind().await {
        RtpCodecKind::Audio => Kind::Audio,
        RtpCodecKind::Video => Kind::Video,
        other => {
            shared.problem(format!(
                "track {track_id} of {stream_id} has kind {other:?}"
            ));
            return;
        }
    };
    let reassemble = shared.options.reassemble_vp8 && kind == Kind::Video;
    let index = {
        let mut received = shared.received.lock().expect("received");
        received.push(ReceivedTrack {
            stream_id,
            track_id,
            kind,
            track: track.clone(),
            rtp_packets: 0,
            packets: 0,
            seqs: BTreeMap::new(),
            duplicates: 0,
            foreign: 0,
            malformed: 0,
            oddities: Vec::new(),
            rtp: shared.options.record_packets.then(Vec::new),
            assembler: reassemble.then(vp8::Assembler::default),
            plis_sent: 0,
            last_ssrc: None,
            last_at: None,
            ended: false,
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
                    t.record(&rtp);
                    t.assembler
                        .as_ref()
                        .is_some_and(|a| a.counts.keyframes == 0)
                };
                if !reassemble {
                    continue;
                }
                let first = *first_packet.get_or_insert_with(Instant::now);
                let due = last_pli.map_or(first.elapsed() > PLI_AFTER, |t| t.elapsed() > PLI_AFTER);
                if no_keyframe_yet && due {
                    last_pli = Some(Instant::now());
                    let pli = PictureLossIndication {
                        sender_ssrc: shared.video_ssrcs[0],
                        media_ssrc: rtp.header.ssrc,
                    };
                    match track.write_rtcp(vec![Box::new(pli)]).await {
                        Ok(()) => shared.received.lock().expect("received")[index].plis_sent += 1,
                        Err(e) => shared.problem(format!("sending a PLI: {e}")),
                    }
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    shared.received.lock().expect("received")[index].ended = true;
}

/// Counts PLI and FIR arriving for our published video, by the SSRC they
/// name, and marks that SSRC as wanting a keyframe, as a real encoder
/// would. With a single video encoding every request is for it.
pub(super) async fn count_keyframe_requests(
    shared: Arc<Shared>,
    video: Arc<TrackLocalStaticSample>,
) {
    while let Some(event) = video.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        for packet in &packets {
            let any = packet.as_any();
            let named: Vec<u32> = if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                vec![pli.media_ssrc]
            } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                fir.fir.iter().map(|e| e.ssrc).collect()
            } else {
                continue;
            };
            shared.keyframe_requests.fetch_add(1, Ordering::SeqCst);
            let mut ours: Vec<u32> = named
                .into_iter()
                .filter(|s| shared.video_ssrcs.contains(s))
                .collect();
            if ours.is_empty() && shared.video_ssrcs.len() == 1 {
                ours = shared.video_ssrcs.clone();
            }
            for ssrc in ours {
                *shared
                    .keyframe_requests_by_ssrc
                    .lock()
                    .expect("keyframe requests")
                    .entry(ssrc)
                    .or_default() += 1;
                shared.want_keyframe(ssrc);
            }
        }
    }
}

/// Publishes synthetic media at the given rates until aborted.
pub(super) async fn send_synthetic(shared: Arc<Shared>, audio_pps: u32, video_pps: u32) {
    let ticker = |pps: u32| {
        (pps > 0).then(|| {
            let mut interval = tokio::time::interval(Duration::from_secs(1) / pps);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        })
    };
    let mut tickers = [ticker(audio_pps), ticker(video_pps)];
    // RTP state is per sending run; the payload sequence is per peer.
    let mut rtp_seq = [rand::random::<u16>(), rand::random::<u16>()];
    let mut rtp_ts = [rand::random::<u32>(), rand::random::<u32>()];
    let ts_step = [48_000 / audio_pps.max(1), 90_000 / video_pps.max(1)];
    loop {
        let [audio, video] = &mut tickers;
        let kind = tokio::select! {
            _ = tick(audio) => Kind::Audio,
            _ = tick(video) => Kind::Video,
        };
        let i = kind.index();
        if send_one(&shared, kind, rtp_seq[i], rtp_ts[i]).await {
            rtp_seq[i] = rtp_seq[i].wrapping_add(1);
            rtp_ts[i] = rtp_ts[i].wrapping_add(ts_step[i]);
        }
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The published track of `kind` and its negotiated payload type, once
/// `pub` is answered.
fn published(shared: &Shared, kind: Kind) -> Option<(Arc<TrackLocalStaticSample>, u8)> {
    let media = shared.media()?;
    let publisher = media.publisher.as_ref()?;
    let payload_type = publisher
        .negotiated
        .lock()
        .expect("negotiated")
        .as_ref()?
        .payload_type(kind)?;
    Some((publisher.track(kind)?.clone(), payload_type))
}

/// Sends one synthetic packet of `kind` if `pub` is negotiated; true when
/// sent.
async fn send_one(shared: &Shared, kind: Kind, rtp_seq: u16, rtp_ts: u32) -> bool {
    let Some((track, payload_type)) = published(shared, kind) else {
        return false; // not answered yet
    };
    let i = kind.index();
    let seq = shared.next_seq[i].load(Ordering::SeqCst);
    let header = payload::Header {
        sender: shared.participant.clone(),
        kind,
        seq,
        sent_at_us: now_us(),
        instance: shared.instance,
    };
    let video_ssrc = shared.video_ssrcs[0];
    let keyframe = kind == Kind::Video && shared.take_keyframe_wanted(video_ssrc);
    let ssrc = match kind {
        Kind::Audio => shared.audio_ssrc,
        Kind::Video => video_ssrc,
    };
    let packet = rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            // Each video packet is a whole frame here.
            marker: kind == Kind::Video,
            payload_type,
            sequence_number: rtp_seq,
            timestamp: rtp_ts,
            ssrc,
            ..Default::default()
        },
        payload: payload::encode(&header, keyframe).into(),
    };
    match track.write_rtp(packet).await {
        Ok(()) => {
            shared.next_seq[i].store(seq + 1, Ordering::SeqCst);
            shared.sent[i].fetch_add(1, Ordering::SeqCst);
            if keyframe {
                shared.keyframes_sent.fetch_add(1, Ordering::SeqCst);
            }
            true
        }
        Err(e) => {
            if keyframe {
                shared.want_keyframe(video_ssrc);
            }
            shared.problem(format!("write_rtp {kind:?}: {e}"));
            false
        }
    }
}

/// Writes the clip's frames at its frame rate, in a loop, until aborted;
/// webrtc-rs packetizes them.
pub(super) async fn play_clip(shared: Arc<Shared>, clip: ivf::Clip) {
    let ssrc = shared.video_ssrcs[0];
    let duration = clip.frame_duration();
    let mut ticker = tokio::time::interval(duration);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for frame in clip.frames.iter().cycle() {
        ticker.tick().await;
        let Some((track, payload_type)) = published(&shared, Kind::Video) else {
            continue;
        };
        let sample = Sample {
            data: frame.clone(),
            duration,
            ..Sample::new(Instant::now())
        };
        match track.write_sample(ssrc, payload_type, &sample, &[]).await {
            Ok(()) => {
                shared.sent[Kind::Video.index()].fetch_add(1, Ordering::SeqCst);
                if frame.first().is_some_and(|b| b & 1 == 0) {
                    shared.keyframes_sent.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(e) => shared.problem(format!("write_sample: {e}")),
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A media engine with Opus and VP8 at the payload types the tests use,
/// and webrtc-rs's default interceptors (NACK, RTCP reports, TWCC), ready
/// for more.
pub(super) fn opus_vp8_engine() -> anyhow::Result<(MediaEngine, Registry)> {
    let mut media_engine = MediaEngine::default();
    for (codec, payload_type, kind) in [
        (opus(), AUDIO_PT, RtpCodecKind::Audio),
        (vp8(), VIDEO_PT, RtpCodecKind::Video),
    ] {
        media_engine.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: codec,
                payload_type,
            },
            kind,
        )?;
    }
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)?;
    Ok((media_engine, registry))
}

/// Opus as the test peers register it.
fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// VP8 with the feedback browsers offer, so the server may send PLI/FIR.
fn vp8() -> RTCRtpCodec {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![
            feedback("goog-remb", ""),
            feedback("ccm", "fir"),
            feedback("nack", ""),
            feedback("nack", "pli"),
        ],
    }
}

/// A sendonly track with stream id `participant` and one encoding per
/// `(ssrc, rid)` (rid empty: no simulcast); every packet written to it must
/// carry one of those SSRCs. It takes whole RTP packets (`write_rtp`) or
/// frames it packetizes itself (`write_sample`).
pub(super) fn local_track(
    participant: &str,
    kind: Kind,
    encodings: &[(u32, String)],
) -> anyhow::Result<Arc<TrackLocalStaticSample>> {
    let (name, codec, codec_kind) = match kind {
        Kind::Audio => ("audio", opus(), RtpCodecKind::Audio),
        Kind::Video => ("video", vp8(), RtpCodecKind::Video),
    };
    let track_id = format!("{participant}-{name}");
    let track = MediaStreamTrack::new(
        participant.to_owned(),
        track_id.clone(),
        track_id,
        codec_kind,
        encodings
            .iter()
            .map(|(ssrc, rid)| RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    rid: rid.clone(),
                    ssrc: Some(*ssrc),
                    ..Default::default()
                },
                codec: codec.clone(),
                ..Default::default()
            })
            .collect(),
    );
    Ok(Arc::new(TrackLocalStaticSample::new(
        Instant::now(),
        track,
    )?))
}

/// Inbound RTCP stops at the end of webrtc-rs's interceptor chain unless an
/// interceptor marks it for the application. This one, last in the chain,
/// marks PLI and FIR (they then arrive as `TrackLocalEvent::OnRtcpPacket`
/// on the published track) and drops the rest, which the interceptors
/// before it have already used.
#[derive(Default)]
pub struct KeyframeRequestForwarder {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut message: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &message.message.packet {
            let keep: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| {
                    let any = p.as_any();
                    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
                })
                .cloned()
                .collect();
            if keep.is_empty() {
                return Ok(());
            }
            message.message.packet = Packet::Rtcp(keep);
            message.message.add(Attribute::DeliverToApplication);
        }
        self.reads.push_back(message);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, message: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(message);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
}

impl Interceptor for KeyframeRequestForwarder {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}
