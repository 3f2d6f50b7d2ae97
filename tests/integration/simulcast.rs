//! Simulcast forwarding end to end: a publisher sends three layers of one
//! video (rids `q`, `h`, `f`, each with its own SSRC, told apart by the SFU
//! through the RTP stream id header extension), and a subscriber in a small
//! room receives one track carrying only the best layer once the SFU has
//! measured the layers' rates, switching at a keyframe it asked for with a
//! PLI, with RTP sequence numbers and timestamps continuous across the switch.
//!
//! Both participants are webrtc-rs peers written here rather than
//! [`crate::helpers::peer::TestPeer`]s: the publisher must announce simulcast
//! encodings and stamp each packet with the mid and rid header extensions,
//! and the subscriber must expose the RTP headers it received (TestPeer only
//! reports payload statistics). The facts about webrtc 0.21 that
//! tests/common/peer.rs relies on hold here too (loopback sockets, no mDNS,
//! `write_rtp` needs the declared SSRC and the negotiated payload type, PLI
//! reaches a sent track only through an interceptor that marks it). Found in
//! its sources for simulcast: a `MediaStreamTrack` with several codings that
//! all have a rid becomes `a=rid:<rid> send` lines plus `a=simulcast:send`
//! (without `a=ssrc` lines), the mid/rid header extensions are offered only
//! once registered (`configure_simulcast_extension_headers`), and the sender
//! never adds them by itself: each packet gets them with `set_extension`,
//! using the ids negotiated for the sender.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rtc::interceptor::Slot;
use rtc::peer_connection::configuration::interceptor_registry::configure_simulcast_extension_headers;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceGatheringState, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::helpers::peer::{opus, opus_vp8_engine, vp8, KeyframeRequestForwarder};
use crate::helpers::signal_client::{type_of, ReaderGuard, SignalClient, SignalSender};
use crate::helpers::{couple_session, TestApp};

const WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);

/// Frames a second on every layer (one RTP packet per frame).
const FPS: u32 = 30;
/// A periodic keyframe every this many frames (1.5 s): deliberately not a
/// multiple of the SFU's 1 s rate window, so the switch to the best layer
/// needs the keyframe the SFU asks for rather than a periodic one.
const KEYFRAME_EVERY: u64 = 45;
/// How long the layers are sent.
const SEND_FOR: Duration = Duration::from_secs(4);
/// The switch to the best layer must have happened by then (rates are
/// measured over the first second, then one PLI round trip).
const SWITCH_BY: Duration = Duration::from_millis(2500);

/// rid, marker byte in the payload, payload size: the rates differ clearly
/// (48, 144 and 264 kbit/s), and `f` is the best.
const LAYERS: [(&str, u8, usize); 3] = [("q", b'Q', 200), ("h", b'H', 600), ("f", b'F', 1100)];
const BEST: usize = 2;

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
const SDES_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_room_receives_only_the_best_simulcast_layer_as_one_continuous_track() {
    let started = Instant::now();
    let app = TestApp::spawn().await;
    let mut body = couple_session(-5, 60);
    body["settings"] = json!({"auto_admit": true});
    let session = app.create_session(&body).await;
    let links: HashMap<String, String> = app.invite_tokens(session["id"].as_str().unwrap()).await;

    // The clinician first (rostered people are admitted once they are in).
    let clinician = Peer::join(&app, &links["clin-1"], "clin-1", false)
        .await
        .expect("the clinician joins");
    let patient = Peer::join(&app, &links["pat-1"], "pat-1", true)
        .await
        .expect("the patient joins");
    patient
        .wait("the pub connection to connect", || {
            patient.pub_connected().then_some(())
        })
        .await
        .unwrap();

    // The offer announces the three layers and the rid header extension,
    // and the SFU's answer accepts both.
    let offer = patient.shared.pub_offer.lock().unwrap().clone().unwrap();
    let answer = patient
        .wait("the pub answer", || {
            patient.shared.pub_answer.lock().unwrap().clone()
        })
        .await
        .unwrap();
    let video_offer = video_section(&offer);
    let video_answer = video_section(&answer);
    for rid in ["q", "h", "f"] {
        assert!(
            video_offer.contains(&format!("a=rid:{rid} send")),
            "{video_offer}"
        );
    }
    assert!(
        video_offer.contains("a=simulcast:send q;h;f"),
        "{video_offer}"
    );
    for (what, section) in [("offer", &video_offer), ("answer", &video_answer)] {
        assert!(
            section
                .lines()
                .any(|l| l.starts_with("a=extmap:") && l.ends_with(SDES_RID)),
            "no rtp-stream-id extmap in the pub {what}:\n{section}"
        );
    }
    assert!(
        video_answer.contains("a=simulcast:recv q;h;f"),
        "the SFU did not accept the simulcast layers:\n{video_answer}"
    );

    // The clinician is offered the patient's video and is connected.
    clinician
        .wait("the patient's video in a sub offer, connected", || {
            let offer = clinician.shared.sub_offer.lock().unwrap().clone()?;
            (video_msids(&offer).contains(&"pat-1".to_owned()) && clinician.sub_connected())
                .then_some(())
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let sending_from = Instant::now();
    let sending = tokio::spawn(send_layers(patient.shared.clone()));
    tokio::time::sleep(SEND_FOR).await;
    sending.abort();
    let _ = sending.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sending_took = sending_from.elapsed();

    let publisher_problems = patient.shared.problems.lock().unwrap().clone();
    assert!(publisher_problems.is_empty(), "{publisher_problems:?}");
    let sent = patient.shared.sent.load(Ordering::SeqCst);
    assert!(sent >= 3 * 90, "the patient sent only {sent} video packets");

    // (1) One video track from the patient, in the offer and on the wire.
    let sub_offer = clinician.shared.sub_offer.lock().unwrap().clone().unwrap();
    let video_lines: Vec<String> = video_msids(&sub_offer);
    assert_eq!(
        video_lines.iter().filter(|m| *m == "pat-1").count(),
        1,
        "video m-lines of the clinician's sub offer by msid: {video_lines:?}"
    );
    let tracks = clinician.shared.received.lock().unwrap().clone();
    let videos: Vec<&Received> = tracks
        .iter()
        .filter(|t| t.stream_id == "pat-1" && t.kind == RtpCodecKind::Video)
        .collect();
    assert_eq!(
        videos.len(),
        1,
        "video tracks from the patient: {:?}",
        tracks.iter().map(Received::summary).collect::<Vec<_>>()
    );
    let video = videos[0];
    let packets = &video.packets;
    let summary = video.summary();
    let ssrcs: std::collections::BTreeSet<u32> = packets.iter().map(|p| p.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "one SSRC on the track: {summary}");
    assert!(
        packets.iter().all(|p| p.layer.is_some()),
        "unreadable payloads: {summary}"
    );

    // (2) Once the best layer arrives, only the best layer arrives, from
    // a keyframe on, soon after the rates could be measured.
    let best = LAYERS[BEST].1;
    let first_best = packets
        .iter()
        .position(|p| p.layer == Some(best))
        .unwrap_or_else(|| panic!("the best layer never arrived: {summary}"));
    let switch = &packets[first_best];
    let after: Vec<&Rx> = packets[first_best..].iter().collect();
    let intruders = after.iter().filter(|p| p.layer != Some(best)).count();
    assert_eq!(
        intruders, 0,
        "other layers interleaved after the switch to {}: {summary}",
        best as char
    );
    assert!(
        switch.keyframe,
        "the switch to {} was not at a keyframe: {summary}",
        best as char
    );
    let switched_after = switch.at.duration_since(sending_from);
    assert!(
        switched_after <= SWITCH_BY,
        "switched to the best layer only after {switched_after:?}: {summary}"
    );
    // No packet of the best layer lost after the switch.
    for pair in after.windows(2) {
        assert_eq!(
            pair[1].layer_seq,
            pair[0].layer_seq + 1,
            "a gap in layer {}: {summary}",
            best as char
        );
    }
    let expected = (SEND_FOR.saturating_sub(SWITCH_BY).as_secs_f64() * f64::from(FPS)) as usize;
    assert!(
        after.len() >= expected,
        "only {} packets of the best layer: {summary}",
        after.len()
    );

    // (3) One continuous RTP stream: every sequence number follows the one
    // before and every timestamp advances by one frame, across the switch.
    for (i, pair) in packets.windows(2).enumerate() {
        assert_eq!(
            (
                pair[1].seq.wrapping_sub(pair[0].seq),
                pair[1].timestamp.wrapping_sub(pair[0].timestamp)
            ),
            (1, 90_000 / FPS),
            "RTP packet {} -> {} ({} -> {}): {summary}",
            i,
            i + 1,
            pair[0].describe(),
            pair[1].describe()
        );
    }

    // (4) The switch asked the publisher for a keyframe of the best layer.
    let plis = patient.shared.plis.lock().unwrap().clone();
    assert!(
        plis.get(&BEST).copied().unwrap_or(0) >= 1,
        "no keyframe request for layer {}; requests by layer: {plis:?}",
        LAYERS[BEST].0
    );

    eprintln!(
        "simulcast: {summary}; switched to {} at packet {first_best}, {switched_after:?} \
         after sending started; keyframe requests by layer index: {plis:?}; sent {sent} video \
         packets in {sending_took:?}; test took {:?}",
        best as char,
        started.elapsed()
    );
    patient.close().await;
    clinician.close().await;
    app.stop().await;
}

/// The lines of the first video m-section of `sdp`.
fn video_section(sdp: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            inside = line.starts_with("m=video") && out.is_empty();
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The msid stream of every active video m-section, in order.
fn video_msids(sdp: &str) -> Vec<String> {
    let mut sections: Vec<Vec<&str>> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            sections.push(vec![line]);
        } else if let Some(section) = sections.last_mut() {
            section.push(line);
        }
    }
    sections
        .iter()
        .filter(|s| s[0].starts_with("m=video") && !s.contains(&"a=inactive"))
        .filter_map(|s| {
            let msid = s
                .iter()
                .find_map(|l| l.strip_prefix("a=msid:"))
                .or_else(|| {
                    s.iter()
                        .filter(|l| l.starts_with("a=ssrc:"))
                        .find_map(|l| l.split_once(" msid:").map(|(_, m)| m))
                })?;
            msid.split_whitespace().next().map(str::to_owned)
        })
        .collect()
}

/// One received RTP packet, as the subscriber saw it.
#[derive(Debug, Clone)]
struct Rx {
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    /// The layer marker of the payload (`Q`, `H`, `F`), if readable.
    layer: Option<u8>,
    layer_seq: u32,
    keyframe: bool,
    at: Instant,
}

impl Rx {
    fn describe(&self) -> String {
        format!(
            "seq {} ts {} layer {}#{}{}",
            self.seq,
            self.timestamp,
            self.layer.map_or('?', char::from),
            self.layer_seq,
            if self.keyframe { " key" } else { "" }
        )
    }
}

#[derive(Debug, Clone)]
struct Received {
    stream_id: String,
    kind: RtpCodecKind,
    packets: Vec<Rx>,
}

impl Received {
    /// `pat-1/video: 120 packets, layers Q×31 F×89`: the runs of layers.
    fn summary(&self) -> String {
        let mut runs: Vec<(char, usize)> = Vec::new();
        for p in &self.packets {
            let layer = p.layer.map_or('?', char::from);
            match runs.last_mut() {
                Some((l, n)) if *l == layer => *n += 1,
                _ => runs.push((layer, 1)),
            }
        }
        let runs: Vec<String> = runs.iter().map(|(l, n)| format!("{l}x{n}")).collect();
        format!(
            "{}/{:?}: {} packets, layer runs [{}]",
            self.stream_id,
            self.kind,
            self.packets.len(),
            runs.join(" ")
        )
    }
}

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

fn parse_payload(payload: &[u8]) -> (Option<u8>, u32, bool) {
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

/// State shared by a peer, its signaling task and its media tasks.
#[derive(Default)]
struct Shared {
    participant: String,
    received: Mutex<Vec<Received>>,
    sub_offer: Mutex<Option<String>>,
    pub_offer: Mutex<Option<String>>,
    pub_answer: Mutex<Option<String>>,
    /// The publisher's video sending state, once the pub answer is applied.
    sending: Mutex<Option<SendParams>>,
    /// Keyframe requests received, by layer index.
    plis: Mutex<HashMap<usize, usize>>,
    keyframe_wanted: [AtomicBool; 3],
    sent: AtomicU64,
    problems: Mutex<Vec<String>>,
}

impl Shared {
    fn problem(&self, problem: impl Into<String>) {
        let mut problems = self.problems.lock().unwrap();
        if problems.len() < 50 {
            problems.push(problem.into());
        }
    }
}

/// What sending needs after negotiation.
#[derive(Clone)]
struct SendParams {
    audio: Arc<TrackLocalStaticRTP>,
    video: Arc<TrackLocalStaticRTP>,
    audio_ssrc: u32,
    video_ssrcs: [u32; 3],
    audio_pt: u8,
    video_pt: u8,
    mid: String,
    mid_ext: u8,
    rid_ext: u8,
}

struct Publisher {
    pc: Arc<dyn PeerConnection>,
    audio: Arc<TrackLocalStaticRTP>,
    video: Arc<TrackLocalStaticRTP>,
    senders: [Arc<dyn RtpSender>; 2],
    audio_ssrc: u32,
    video_ssrcs: [u32; 3],
}

/// A participant with webrtc-rs peer connections; see the module docs.
struct Peer {
    shared: Arc<Shared>,
    sender: SignalSender,
    sub: Arc<dyn PeerConnection>,
    publisher: Option<Arc<dyn PeerConnection>>,
    pub_state: watch::Receiver<RTCPeerConnectionState>,
    sub_state: watch::Receiver<RTCPeerConnectionState>,
    tasks: Vec<JoinHandle<()>>,
    _reader: ReaderGuard,
}

impl Peer {
    /// Joins (expecting `joined` at once: auto-admit, clinician first),
    /// makes the connections and, when `publish`, offers `pub`.
    async fn join(
        app: &TestApp,
        token: &str,
        participant: &str,
        publish: bool,
    ) -> anyhow::Result<Peer> {
        let mut client = SignalClient::connect(app).await?;
        let joined = client.join(token).await?;
        anyhow::ensure!(type_of(&joined) == "joined", "{participant}: {joined}");
        let parts = client.into_parts();
        let shared = Arc::new(Shared {
            participant: participant.to_owned(),
            ..Default::default()
        });
        let (local_tx, local_rx) = mpsc::unbounded_channel();
        let (sub, sub_state) = build_pc(&shared, Side::Sub, local_tx.clone()).await?;
        let mut tasks = Vec::new();
        let (publisher, pub_state) = if publish {
            let (pc, state) = build_pc(&shared, Side::Pub, local_tx).await?;
            let publisher = add_simulcast_tracks(participant, pc).await?;
            tasks.push(tokio::spawn(count_keyframe_requests(
                shared.clone(),
                publisher.video.clone(),
                publisher.video_ssrcs,
            )));
            (Some(publisher), state)
        } else {
            (None, watch::channel(RTCPeerConnectionState::New).1)
        };
        let publisher_pc = publisher.as_ref().map(|p| p.pc.clone());
        let driver = Driver {
            shared: shared.clone(),
            sender: parts.sender.clone(),
            sub: sub.clone(),
            publisher,
            remote_set: HashMap::new(),
            buffered: HashMap::new(),
            first_mid: HashMap::new(),
        };
        tasks.push(tokio::spawn(driver.run(parts.incoming, local_rx)));
        Ok(Peer {
            shared,
            sender: parts.sender,
            sub,
            publisher: publisher_pc,
            pub_state,
            sub_state,
            tasks,
            _reader: parts.reader,
        })
    }

    fn pub_connected(&self) -> bool {
        *self.pub_state.borrow() == RTCPeerConnectionState::Connected
    }

    fn sub_connected(&self) -> bool {
        *self.sub_state.borrow() == RTCPeerConnectionState::Connected
    }

    async fn wait<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(value) = check() {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{}: no {what} within {WAIT:?}; pub {}, sub {}; problems {:?}",
                    self.shared.participant,
                    *self.pub_state.borrow(),
                    *self.sub_state.borrow(),
                    self.shared.problems.lock().unwrap()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn close(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(pc) = &self.publisher {
            let _ = pc.close().await;
        }
        let _ = self.sub.close().await;
        let _ = self.sender.close().await;
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

async fn build_pc(
    shared: &Arc<Shared>,
    side: Side,
    candidates: mpsc::UnboundedSender<(Side, Option<RTCIceCandidateInit>)>,
) -> anyhow::Result<(
    Arc<dyn PeerConnection>,
    watch::Receiver<RTCPeerConnectionState>,
)> {
    let (mut media_engine, mut registry) = opus_vp8_engine()?;
    if side == Side::Pub {
        // mid, rid and repaired-rid extmaps in the offer (video).
        configure_simulcast_extension_headers(&mut media_engine)?;
        registry = registry.with(Slot::from(14_000), KeyframeRequestForwarder::default());
    }
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_network_types(vec![rtc::ice::network_type::NetworkType::Udp4])
        .build();
    let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
    let handler = Arc::new(Events {
        side,
        shared: shared.clone(),
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

/// A sendonly audio track and a sendonly video track with three simulcast
/// encodings (rids q, h, f), each with its own SSRC.
async fn add_simulcast_tracks(
    participant: &str,
    pc: Arc<dyn PeerConnection>,
) -> anyhow::Result<Publisher> {
    let base = rand::random::<u32>() | 1;
    let audio_ssrc = base;
    let video_ssrcs = [
        base.wrapping_add(2),
        base.wrapping_add(4),
        base.wrapping_add(6),
    ];
    let encoding = |rid: &str, ssrc: u32, codec: RTCRtpCodec| RTCRtpEncodingParameters {
        rtp_coding_parameters: RTCRtpCodingParameters {
            rid: rid.to_owned(),
            ssrc: Some(ssrc),
            ..Default::default()
        },
        codec,
        ..Default::default()
    };
    let audio = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        participant.to_owned(),
        format!("{participant}-audio"),
        format!("{participant}-audio"),
        RtpCodecKind::Audio,
        vec![encoding("", audio_ssrc, opus())],
    )));
    let video = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        participant.to_owned(),
        format!("{participant}-video"),
        format!("{participant}-video"),
        RtpCodecKind::Video,
        LAYERS
            .iter()
            .zip(video_ssrcs)
            .map(|((rid, _, _), ssrc)| encoding(rid, ssrc, vp8()))
            .collect(),
    )));
    let mut senders = Vec::new();
    for track in [&audio, &video] {
        let transceiver = pc
            .add_transceiver_from_track(
                track.clone() as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    ..Default::default()
                }),
            )
            .await
            .context("adding a track")?;
        senders.push(
            transceiver
                .sender()
                .await?
                .context("a transceiver without sender")?,
        );
    }
    let senders: [Arc<dyn RtpSender>; 2] = senders
        .try_into()
        .map_err(|_| anyhow::anyhow!("two senders"))?;
    Ok(Publisher {
        pc,
        audio,
        video,
        senders,
        audio_ssrc,
        video_ssrcs,
    })
}

/// The signaling task of one peer.
struct Driver {
    shared: Arc<Shared>,
    sender: SignalSender,
    sub: Arc<dyn PeerConnection>,
    publisher: Option<Publisher>,
    remote_set: HashMap<Side, bool>,
    buffered: HashMap<Side, Vec<RTCIceCandidateInit>>,
    first_mid: HashMap<Side, String>,
}

impl Driver {
    async fn run(
        mut self,
        mut incoming: mpsc::UnboundedReceiver<Value>,
        mut local: mpsc::UnboundedReceiver<(Side, Option<RTCIceCandidateInit>)>,
    ) {
        if let Err(e) = self.offer_pub().await {
            self.shared.problem(format!("offering pub: {e:#}"));
        }
        loop {
            tokio::select! {
                message = incoming.recv() => match message {
                    Some(message) => {
                        if let Err(e) = self.handle(&message).await {
                            self.shared.problem(format!("handling {}: {e:#}", type_of(&message)));
                        }
                    }
                    None => break,
                },
                Some((side, candidate)) = local.recv() => {
                    let candidate = candidate.map(|c| json!({
                        "candidate": c.candidate,
                        "sdpMid": self.first_mid.get(&side).map_or("0", String::as_str),
                        "sdpMLineIndex": 0,
                    }));
                    let message = json!({"type": "candidate", "pc": side.as_str(), "candidate": candidate});
                    if let Err(e) = self.sender.send_json(&message).await {
                        self.shared.problem(format!("sending a candidate: {e:#}"));
                    }
                }
            }
        }
    }

    async fn offer_pub(&mut self) -> anyhow::Result<()> {
        let Some(publisher) = &self.publisher else {
            return Ok(());
        };
        let offer = publisher.pc.create_offer(None).await?;
        publisher.pc.set_local_description(offer.clone()).await?;
        self.first_mid.insert(Side::Pub, first_mid(&offer.sdp));
        *self.shared.pub_offer.lock().unwrap() = Some(offer.sdp.clone());
        self.sender
            .send_json(&json!({"type": "offer", "pc": "pub", "sdp": offer.sdp}))
            .await
    }

    async fn handle(&mut self, message: &Value) -> anyhow::Result<()> {
        match (type_of(message), message["pc"].as_str()) {
            ("offer", Some("sub")) => self.on_sub_offer(message).await,
            ("answer", Some("pub")) => self.on_pub_answer(message).await,
            ("candidate", Some(pc)) => {
                let side = if pc == "pub" { Side::Pub } else { Side::Sub };
                let candidate = &message["candidate"];
                let Some(text) = candidate["candidate"].as_str() else {
                    return Ok(()); // the end of candidates
                };
                if !text.to_ascii_lowercase().contains(" udp ") {
                    return Ok(());
                }
                let init = RTCIceCandidateInit {
                    candidate: text.to_owned(),
                    sdp_mid: candidate["sdpMid"].as_str().map(str::to_owned),
                    sdp_mline_index: candidate["sdpMLineIndex"].as_u64().map(|i| i as u16),
                    ..Default::default()
                };
                if self.remote_set.contains_key(&side) {
                    self.add_candidate(side, init).await;
                } else {
                    self.buffered.entry(side).or_default().push(init);
                }
                Ok(())
            }
            ("error", _) => anyhow::bail!("the server said {message}"),
            _ => Ok(()),
        }
    }

    fn pc(&self, side: Side) -> Option<Arc<dyn PeerConnection>> {
        match side {
            Side::Sub => Some(self.sub.clone()),
            Side::Pub => self.publisher.as_ref().map(|p| p.pc.clone()),
        }
    }

    async fn add_candidate(&self, side: Side, init: RTCIceCandidateInit) {
        if let Some(pc) = self.pc(side) {
            if let Err(e) = pc.add_ice_candidate(init).await {
                self.shared
                    .problem(format!("{}: add_ice_candidate: {e}", side.as_str()));
            }
        }
    }

    async fn remote_set(&mut self, side: Side) {
        self.remote_set.insert(side, true);
        for init in self.buffered.remove(&side).unwrap_or_default() {
            self.add_candidate(side, init).await;
        }
    }

    async fn on_sub_offer(&mut self, message: &Value) -> anyhow::Result<()> {
        let sdp = message["sdp"].as_str().context("an offer without sdp")?;
        self.sub
            .set_remote_description(RTCSessionDescription::offer(sdp.to_owned())?)
            .await?;
        *self.shared.sub_offer.lock().unwrap() = Some(sdp.to_owned());
        self.remote_set(Side::Sub).await;
        let answer = self.sub.create_answer(None).await?;
        self.sub.set_local_description(answer.clone()).await?;
        self.first_mid
            .entry(Side::Sub)
            .or_insert_with(|| first_mid(&answer.sdp));
        self.sender
            .send_json(&json!({"type": "answer", "pc": "sub", "sdp": answer.sdp}))
            .await
    }

    async fn on_pub_answer(&mut self, message: &Value) -> anyhow::Result<()> {
        let sdp = message["sdp"].as_str().context("an answer without sdp")?;
        let publisher = self.publisher.as_mut().context("not publishing")?;
        publisher
            .pc
            .set_remote_description(RTCSessionDescription::answer(sdp.to_owned())?)
            .await?;
        *self.shared.pub_answer.lock().unwrap() = Some(sdp.to_owned());
        let audio = publisher.senders[0].get_parameters().await?;
        let video = publisher.senders[1].get_parameters().await?;
        let ext = |uri: &str| {
            video
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|e| e.uri == uri)
                .map(|e| e.id as u8)
                .with_context(|| format!("{uri} not negotiated"))
        };
        let mid = video_section(sdp)
            .lines()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .context("no video mid in the answer")?
            .to_owned();
        let params = SendParams {
            audio: publisher.audio.clone(),
            video: publisher.video.clone(),
            audio_ssrc: publisher.audio_ssrc,
            video_ssrcs: publisher.video_ssrcs,
            audio_pt: audio
                .rtp_parameters
                .codecs
                .first()
                .context("no audio codec")?
                .payload_type,
            video_pt: video
                .rtp_parameters
                .codecs
                .first()
                .context("no video codec")?
                .payload_type,
            mid,
            mid_ext: ext(SDES_MID)?,
            rid_ext: ext(SDES_RID)?,
        };
        *self.shared.sending.lock().unwrap() = Some(params);
        self.remote_set(Side::Pub).await;
        Ok(())
    }
}

fn first_mid(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
        .unwrap_or("0")
        .to_owned()
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
            Ok(init) if !init.candidate.contains("tcptype passive") => {
                let _ = self.candidates.send((self.side, Some(init)));
            }
            Ok(_) => {}
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

/// Records every RTP packet of one remote track until it ends.
async fn read_track(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let index = {
        let received = Received {
            stream_id: track.stream_id().await,
            kind: track.kind().await,
            packets: Vec::new(),
        };
        let mut all = shared.received.lock().unwrap();
        all.push(received);
        all.len() - 1
    };
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(rtp) => {
                let (layer, layer_seq, keyframe) = parse_payload(&rtp.payload);
                shared.received.lock().unwrap()[index].packets.push(Rx {
                    seq: rtp.header.sequence_number,
                    timestamp: rtp.header.timestamp,
                    ssrc: rtp.header.ssrc,
                    layer,
                    layer_seq,
                    keyframe,
                    at: Instant::now(),
                });
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

/// Counts PLI/FIR for the published video by layer (the PLI's media SSRC)
/// and makes the next frame of that layer a keyframe, as an encoder would.
async fn count_keyframe_requests(
    shared: Arc<Shared>,
    video: Arc<TrackLocalStaticRTP>,
    ssrcs: [u32; 3],
) {
    while let Some(event) = video.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        for packet in &packets {
            let any = packet.as_any();
            let layers: Vec<usize> = if let Some(pli) = any.downcast_ref::<PictureLossIndication>()
            {
                ssrcs
                    .iter()
                    .position(|&s| s == pli.media_ssrc)
                    .into_iter()
                    .collect()
            } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                fir.fir
                    .iter()
                    .filter_map(|e| ssrcs.iter().position(|&s| s == e.ssrc))
                    .collect()
            } else {
                continue;
            };
            for layer in layers {
                *shared.plis.lock().unwrap().entry(layer).or_default() += 1;
                shared.keyframe_wanted[layer].store(true, Ordering::SeqCst);
            }
        }
    }
}

/// Sends all three layers (and audio) at [`FPS`] until aborted: one packet
/// per frame and layer, with the mid and rid header extensions.
async fn send_layers(shared: Arc<Shared>) {
    let Some(params) = shared.sending.lock().unwrap().clone() else {
        shared.problem("sending before the pub answer");
        return;
    };
    let mut interval = tokio::time::interval(Duration::from_secs(1) / FPS);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seqs: [u16; 4] = rand::random();
    let timestamps: [u32; 4] = rand::random();
    for frame in 0u64.. {
        interval.tick().await;
        for (i, (rid, _, _)) in LAYERS.iter().enumerate() {
            let wanted = shared.keyframe_wanted[i].swap(false, Ordering::SeqCst);
            let keyframe = frame % KEYFRAME_EVERY == 0 || wanted;
            let mut packet = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: true,
                    payload_type: params.video_pt,
                    sequence_number: seqs[i],
                    timestamp: timestamps[i].wrapping_add((frame as u32) * (90_000 / FPS)),
                    ssrc: params.video_ssrcs[i],
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
                shared.problem(format!("header extensions: {e}"));
                return;
            }
            match params.video.write_rtp(packet).await {
                Ok(()) => {
                    shared.sent.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => shared.problem(format!("write_rtp {rid}: {e}")),
            }
            seqs[i] = seqs[i].wrapping_add(1);
        }
        let audio = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: params.audio_pt,
                sequence_number: seqs[3],
                timestamp: timestamps[3].wrapping_add((frame as u32) * (48_000 / FPS)),
                ssrc: params.audio_ssrc,
                ..Default::default()
            },
            payload: vec![0xfc; 80].into(),
        };
        if let Err(e) = params.audio.write_rtp(audio).await {
            shared.problem(format!("write_rtp audio: {e}"));
        }
        seqs[3] = seqs[3].wrapping_add(1);
    }
}
