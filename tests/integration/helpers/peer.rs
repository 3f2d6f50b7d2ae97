//! A scripted participant for media tests: signaling plus two real WebRTC
//! peer connections (webrtc-rs), so every media test is also an
//! interoperability test between two independent WebRTC stacks (the server
//! runs str0m).
//!
//! [`TestPeer::join`] connects to `/v1/signal`, joins with a token and, once
//! `joined`, publishes Opus audio and VP8 video on its `pub` connection
//! (MediaStream id = its participant id) and answers every `sub` offer. A
//! background task does all the signaling: offers and answers, trickled
//! candidates both ways (buffered when they come before their description),
//! and renegotiation of `sub` when people come and go.
//!
//! The media is synthetic: each RTP payload starts with a small header (see
//! [`payload`]) naming the sender, the kind and a sequence number of the
//! sender's own. Receivers account for loss and duplicates with that number,
//! never with the RTP sequence number, because the SFU rewrites RTP sequence
//! numbers and timestamps per subscriber; and a payload whose sender is not
//! the participant the track was announced for is counted as foreign: that
//! is media forwarded to the wrong place, the worst bug an SFU for therapy
//! sessions can have.
//!
//! Video payloads start with a VP8 payload descriptor and frame header
//! (keyframe on the first packet and after every PLI/FIR), because the SFU
//! inspects them to find keyframes.
//!
//! Facts about webrtc 0.21 this relies on (checked in a scratch project):
//! sockets are bound to 127.0.0.1 explicitly and mDNS is off; `write_rtp`
//! silently drops packets without the declared SSRC and the negotiated
//! payload type; inbound PLI/FIR reach the application only when an
//! interceptor marks them (see [`KeyframeRequestForwarder`]); over ICE-TCP,
//! passive candidates inside an SDP are never dialled, so they are fed again
//! through `add_ice_candidate`; a remote track's event queue is bounded, so
//! it is polled continuously; and a connection must be closed explicitly.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use super::signal_client::{
    self, summarize, type_of, Closed, MessageLog, ReaderGuard, SignalClient, SignalSender,
};
use super::TestApp;

pub use payload::Kind;

/// How long [`TestPeer::join`] waits for the `pub` connection to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Payload types every test peer uses.
pub const AUDIO_PT: u8 = 111;
pub const VIDEO_PT: u8 = 96;
/// How often waits look again.
const POLL: Duration = Duration::from_millis(20);

/// How a [`TestPeer`] behaves.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// ICE over TCP only: no UDP socket at all, as behind a UDP-blocking
    /// firewall. The peer dials the server's passive TCP candidate.
    pub tcp_only: bool,
    /// Publish audio and video on a `pub` connection (default). Without it
    /// the peer only receives, and never creates `pub`.
    pub publish: bool,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            tcp_only: false,
            publish: true,
        }
    }
}

/// What one peer received from one publisher and kind, by payload sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets whose payload names this publisher and kind (duplicates included).
    pub packets: u64,
    /// Payload sequence numbers missing between the lowest and highest seen
    /// (of each publisher instance, see [`payload`]).
    pub lost: u64,
    pub duplicates: u64,
    /// Packets on this publisher's track whose payload names someone else
    /// or the other kind.
    pub foreign: u64,
    /// Packets on this publisher's track without a readable payload header.
    pub malformed: u64,
}

/// A participant with real peer connections; see the module documentation.
pub struct TestPeer {
    id: String,
    shared: Arc<Shared>,
    sender: SignalSender,
    log: MessageLog,
    closed: watch::Receiver<Option<Closed>>,
    driver: JoinHandle<()>,
    sending: Mutex<Option<JoinHandle<()>>>,
    _reader: ReaderGuard,
}

impl TestPeer {
    /// Connects, joins with `token` as `participant_id` and returns once
    /// the peer is either in the room with `pub` connected (or without
    /// `pub` when not publishing) or in the waiting room (then see
    /// [`wait_joined`](Self::wait_joined)). Fails when denied.
    pub async fn join(
        app: &TestApp,
        token: &str,
        participant_id: &str,
        options: PeerOptions,
    ) -> anyhow::Result<TestPeer> {
        let mut client = SignalClient::connect(app)
            .await
            .with_context(|| format!("{participant_id}: connecting to the signaling socket"))?;
        client
            .send_json(json!({"type": "join", "token": token}))
            .await?;
        let first = client
            .recv_until_any(
                &["joined", "waiting", "denied"],
                signal_client::JOIN_TIMEOUT,
            )
            .await
            .with_context(|| format!("{participant_id}: joining"))?;
        if type_of(&first) == "denied" {
            anyhow::bail!("{participant_id} was denied: {first}");
        }
        let peer = Self::start(client, participant_id, options, first.clone());
        if type_of(&first) == "joined" {
            peer.wait_connected(CONNECT_TIMEOUT).await?;
        }
        Ok(peer)
    }

    fn start(
        client: SignalClient,
        participant_id: &str,
        options: PeerOptions,
        first: Value,
    ) -> TestPeer {
        let parts = client.into_parts();
        let audio_ssrc = rand::random::<u32>() | 1;
        let shared = Arc::new(Shared {
            participant: participant_id.to_owned(),
            options,
            ssrcs: [audio_ssrc, audio_ssrc.wrapping_add(2)],
            instance: rand::random(),
            media: Mutex::new(None),
            received: Mutex::new(Vec::new()),
            sub_offer: Mutex::new(None),
            keyframe_requests: AtomicUsize::new(0),
            keyframe_wanted: AtomicBool::new(true),
            next_seq: [AtomicU32::new(0), AtomicU32::new(0)],
            sent: [AtomicU64::new(0), AtomicU64::new(0)],
            problems: Mutex::new(Vec::new()),
        });
        let (local_tx, local_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            shared: shared.clone(),
            sender: parts.sender.clone(),
            local_tx,
            generation: 0,
            buffered: HashMap::new(),
            remote_set: HashSet::new(),
            dialled: HashSet::new(),
            first_mid: HashMap::new(),
        };
        let driver = tokio::spawn(driver.run(first, parts.incoming, local_rx));
        TestPeer {
            id: participant_id.to_owned(),
            shared,
            sender: parts.sender,
            log: parts.log,
            closed: parts.closed,
            driver,
            sending: Mutex::new(None),
            _reader: parts.reader,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits for `joined` (for a peer that was waiting) and then, when
    /// publishing, for `pub` to connect; returns the `joined` message.
    pub async fn wait_joined(&self, timeout: Duration) -> anyhow::Result<Value> {
        let joined = self.wait_for_message("joined", timeout).await?;
        self.wait_connected(timeout).await?;
        Ok(joined)
    }

    /// Waits until the peer connections made for the latest `joined` exist
    /// and, when publishing, `pub` is connected.
    pub async fn wait_connected(&self, timeout: Duration) -> anyhow::Result<()> {
        let publish = self.shared.options.publish;
        self.wait_until("the pub connection to connect", timeout, || {
            let media = self.shared.media()?;
            if !publish {
                return Some(Ok(()));
            }
            let state = *media.pub_state.borrow();
            match state {
                RTCPeerConnectionState::Connected => Some(Ok(())),
                RTCPeerConnectionState::Failed => Some(Err("the pub connection failed".to_owned())),
                _ => None,
            }
        })
        .await
    }

    /// Publishes `audio_pps` audio and `video_pps` video packets a second
    /// (0: none of that kind) until [`stop_sending`](Self::stop_sending).
    /// Payload sequence numbers continue across stops and starts.
    pub fn start_sending(&self, audio_pps: u32, video_pps: u32) {
        let task = tokio::spawn(send_loop(self.shared.clone(), audio_pps, video_pps));
        if let Some(old) = self.sending.lock().expect("sending").replace(task) {
            old.abort();
        }
    }

    pub async fn stop_sending(&self) {
        let task = self.sending.lock().expect("sending").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Packets of `kind` this peer has published.
    pub fn sent(&self, kind: Kind) -> u64 {
        self.shared.sent[kind.index()].load(Ordering::SeqCst)
    }

    /// What arrived from `participant`'s `kind` track(s) so far.
    pub fn received_from(&self, participant: &str, kind: Kind) -> Stats {
        let received = self.shared.received.lock().expect("received");
        let mut stats = Stats::default();
        for track in received
            .iter()
            .filter(|t| t.stream_id == participant && t.kind == kind)
        {
            stats.packets += track.packets;
            stats.duplicates += track.duplicates;
            stats.foreign += track.foreign;
            stats.malformed += track.malformed;
            stats.lost += track.lost();
        }
        stats
    }

    /// Waits until at least `n` packets of `participant`'s `kind` arrived.
    pub async fn wait_for_packets(
        &self,
        participant: &str,
        kind: Kind,
        n: u64,
        timeout: Duration,
    ) -> anyhow::Result<Stats> {
        let what = format!("{n} {kind:?} packets from {participant}");
        self.wait_until(&what, timeout, || {
            let stats = self.received_from(participant, kind);
            (stats.packets >= n).then_some(Ok(stats))
        })
        .await
    }

    /// Forgets what was received (the tracks stay known), to measure afresh.
    pub fn clear_received(&self) {
        for track in self.shared.received.lock().expect("received").iter_mut() {
            track.clear();
        }
    }

    /// The publishers whose tracks the latest `sub` offer carries, active
    /// (m-lines that are not inactive), by MediaStream id.
    pub fn remote_stream_ids(&self) -> BTreeSet<String> {
        match &*self.shared.sub_offer.lock().expect("sub offer") {
            Some(sdp) => sdp::active_stream_ids(sdp),
            None => BTreeSet::new(),
        }
    }

    pub async fn wait_for_stream(
        &self,
        participant: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let what = format!("an active stream of {participant} in a sub offer");
        self.wait_until(&what, timeout, || {
            self.remote_stream_ids()
                .contains(participant)
                .then_some(Ok(()))
        })
        .await
    }

    pub async fn wait_until_stream_gone(
        &self,
        participant: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let what = format!("{participant}'s stream to leave the sub offer");
        self.wait_until(&what, timeout, || {
            (!self.remote_stream_ids().contains(participant)).then_some(Ok(()))
        })
        .await
    }

    /// Sends a PLI for the video this peer receives from `from`.
    pub async fn request_keyframe(&self, from: &str) -> anyhow::Result<()> {
        let target = {
            let received = self.shared.received.lock().expect("received");
            received
                .iter()
                .rev()
                .find(|t| t.stream_id == from && t.kind == Kind::Video && !t.ended)
                .map(|t| (t.track.clone(), t.last_ssrc))
        };
        let Some((track, last_ssrc)) = target else {
            anyhow::bail!(
                "{}: no video track from {from} to request a keyframe on\n{}",
                self.id,
                self.describe()
            );
        };
        let media_ssrc = match last_ssrc {
            Some(ssrc) => ssrc,
            None => *track
                .ssrcs()
                .await
                .first()
                .context("the video track has no SSRC yet")?,
        };
        track
            .write_rtcp(vec![Box::new(PictureLossIndication {
                sender_ssrc: self.shared.ssrcs[Kind::Video.index()],
                media_ssrc,
            })])
            .await
            .context("sending a PLI")
    }

    /// PLI and FIR packets that arrived for this peer's published video.
    pub fn keyframe_requests_received(&self) -> usize {
        self.shared.keyframe_requests.load(Ordering::SeqCst)
    }

    /// Every signaling message received, in order.
    pub fn messages(&self) -> Vec<Value> {
        self.log.all()
    }

    /// The first message of type `kind` received (waiting for it).
    pub async fn wait_for_message(&self, kind: &str, timeout: Duration) -> anyhow::Result<Value> {
        self.wait_for_message_where(&format!("a {kind:?} message"), timeout, |m| {
            type_of(m) == kind
        })
        .await
    }

    /// The first message received for which `predicate` holds (waiting for it).
    pub async fn wait_for_message_where(
        &self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        self.wait_until(what, timeout, || self.log.find(&predicate).map(Ok))
            .await
    }

    pub async fn send_json(&self, value: Value) -> anyhow::Result<()> {
        self.sender.send_json(&value).await
    }

    /// Tells the room this peer's own mute state (media keeps flowing unless
    /// the test stops it).
    pub async fn send_media_state(&self, audio: bool, video: bool) -> anyhow::Result<()> {
        self.send_json(json!({"type": "media", "audio": audio, "video": video}))
            .await
    }

    /// Sends `leave`; the socket and connections stay until [`close`](Self::close).
    pub async fn leave(&self) -> anyhow::Result<()> {
        self.send_json(json!({"type": "leave"})).await
    }

    /// How the server ended the signaling socket, if it has.
    pub fn signal_closed(&self) -> Option<Closed> {
        self.closed.borrow().clone()
    }

    pub async fn wait_signal_closed(&self, timeout: Duration) -> anyhow::Result<Closed> {
        signal_client::wait_closed(self.closed.clone(), timeout, &self.log).await
    }

    /// What went wrong in the background (failed negotiation steps, ...).
    pub fn problems(&self) -> Vec<String> {
        self.shared.problems.lock().expect("problems").clone()
    }

    /// A readable account of this peer's state, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = format!("peer {}:", self.id);
        match self.shared.media() {
            Some(media) => out.push_str(&format!(
                " connections #{}: pub {}, sub {}\n",
                media.generation,
                media
                    .publisher
                    .as_ref()
                    .map_or("none".to_owned(), |_| media.pub_state.borrow().to_string()),
                *media.sub_state.borrow()
            )),
            None => out.push_str(" no peer connections (not joined)\n"),
        }
        out.push_str(&format!(
            "  active streams in the latest sub offer: {:?}\n",
            self.remote_stream_ids()
        ));
        for track in self.shared.received.lock().expect("received").iter() {
            out.push_str(&format!("  received {}\n", track.describe()));
        }
        out.push_str(&format!(
            "  sent: {} audio, {} video; keyframe requests received: {}\n",
            self.sent(Kind::Audio),
            self.sent(Kind::Video),
            self.keyframe_requests_received()
        ));
        let problems = self.problems();
        if !problems.is_empty() {
            out.push_str(&format!("  problems: {problems:#?}\n"));
        }
        if let Some(closed) = self.signal_closed() {
            out.push_str(&format!(
                "  signaling closed: code {:?} {:?}\n",
                closed.code, closed.reason
            ));
        }
        out.push_str(&format!("  signaling: [{}]", summarize(&self.messages())));
        out
    }

    /// Stops sending, closes both peer connections and the signaling
    /// socket (with a close frame; no `leave` is sent).
    pub async fn close(self) {
        self.stop_sending().await;
        self.driver.abort();
        let media = self.shared.media.lock().expect("media").take();
        if let Some(media) = media {
            media.close().await;
        }
        let _ = self.sender.close().await;
    }

    async fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<Result<T, String>>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            match check() {
                Some(Ok(value)) => return Ok(value),
                Some(Err(failure)) => {
                    anyhow::bail!(
                        "{}: {failure} while waiting for {what}\n{}",
                        self.id,
                        self.describe()
                    )
                }
                None if Instant::now() >= deadline => anyhow::bail!(
                    "{}: no {what} within {timeout:?}\n{}",
                    self.id,
                    self.describe()
                ),
                None => tokio::time::sleep(POLL).await,
            }
        }
    }
}

impl Drop for TestPeer {
    fn drop(&mut self) {
        self.driver.abort();
        if let Some(task) = self.sending.lock().ok().and_then(|mut s| s.take()) {
            task.abort();
        }
        // A peer dropped without close(): still release its sockets.
        let media = self.shared.media.lock().ok().and_then(|mut m| m.take());
        if let (Some(media), Ok(runtime)) = (media, tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move { media.close().await });
        }
    }
}

/// State shared by the peer, its signaling task, its track readers and its
/// sender.
struct Shared {
    participant: String,
    options: PeerOptions,
    /// SSRCs of the published audio and video (by [`Kind::index`]).
    ssrcs: [u32; 2],
    /// Identifies this peer's payload sequence (see [`payload`]).
    instance: u32,
    /// The peer connections of the latest `joined`.
    media: Mutex<Option<Arc<Media>>>,
    /// Every remote track seen, in order of arrival; never removed.
    received: Mutex<Vec<ReceivedTrack>>,
    /// The latest `sub` offer applied.
    sub_offer: Mutex<Option<String>>,
    keyframe_requests: AtomicUsize,
    /// The next video packet is a keyframe.
    keyframe_wanted: AtomicBool,
    next_seq: [AtomicU32; 2],
    sent: [AtomicU64; 2],
    problems: Mutex<Vec<String>>,
}

impl Shared {
    fn media(&self) -> Option<Arc<Media>> {
        self.media.lock().expect("media").clone()
    }

    fn problem(&self, problem: impl Into<String>) {
        let mut problems = self.problems.lock().expect("problems");
        // Bounded: a problem repeated per packet must not eat the memory.
        if problems.len() < 100 {
            problems.push(problem.into());
        }
    }
}

/// One generation of peer connections, made on `joined`.
struct Media {
    generation: u64,
    publisher: Option<Publisher>,
    sub: Arc<dyn PeerConnection>,
    pub_state: watch::Receiver<RTCPeerConnectionState>,
    sub_state: watch::Receiver<RTCPeerConnectionState>,
    tasks: Vec<JoinHandle<()>>,
}

struct Publisher {
    pc: Arc<dyn PeerConnection>,
    /// Audio and video, by [`Kind::index`].
    tracks: [Arc<TrackLocalStaticRTP>; 2],
    senders: [Arc<dyn RtpSender>; 2],
    /// Negotiated audio and video payload types, known once answered.
    payload_types: Mutex<Option<[u8; 2]>>,
}

impl Media {
    async fn close(&self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(publisher) = &self.publisher {
            let _ = publisher.pc.close().await;
        }
        let _ = self.sub.close().await;
    }

    fn pc(&self, side: Side) -> Option<&Arc<dyn PeerConnection>> {
        match side {
            Side::Pub => self.publisher.as_ref().map(|p| &p.pc),
            Side::Sub => Some(&self.sub),
        }
    }
}

/// Which of the two peer connections.
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

    fn parse(text: &str) -> Option<Side> {
        match text {
            "pub" => Some(Side::Pub),
            "sub" => Some(Side::Sub),
            _ => None,
        }
    }
}

/// A candidate gathered by one of our connections (`None`: gathering done).
struct LocalCandidate {
    generation: u64,
    side: Side,
    candidate: Option<RTCIceCandidateInit>,
}

/// The signaling task: applies what the server sends and sends what our
/// connections produce. Owns all negotiation state, so no locks are needed
/// for it.
struct Driver {
    shared: Arc<Shared>,
    sender: SignalSender,
    local_tx: mpsc::UnboundedSender<LocalCandidate>,
    generation: u64,
    /// Remote candidates that came before their description.
    buffered: HashMap<Side, Vec<RTCIceCandidateInit>>,
    /// Connections whose remote description is set.
    remote_set: HashSet<Side>,
    /// Passive TCP candidates already dialled ("side ip port").
    dialled: HashSet<String>,
    /// The first mid of each connection, for `sdpMid` of our candidates.
    first_mid: HashMap<Side, String>,
}

impl Driver {
    async fn run(
        mut self,
        first: Value,
        mut incoming: mpsc::UnboundedReceiver<Value>,
        mut local: mpsc::UnboundedReceiver<LocalCandidate>,
    ) {
        self.handle(first).await;
        loop {
            tokio::select! {
                message = incoming.recv() => match message {
                    Some(message) => self.handle(message).await,
                    None => break,
                },
                Some(candidate) = local.recv() => self.send_local_candidate(candidate).await,
            }
        }
    }

    async fn handle(&mut self, message: Value) {
        let kind = type_of(&message).to_owned();
        let side = message["pc"].as_str().and_then(Side::parse);
        let result = match (kind.as_str(), side) {
            ("joined", _) => self.on_joined(&message).await,
            ("offer", Some(Side::Sub)) => self.on_sub_offer(&message).await,
            ("answer", Some(Side::Pub)) => self.on_pub_answer(&message).await,
            ("candidate", Some(side)) => self.on_remote_candidate(side, &message).await,
            ("offer" | "answer" | "candidate", _) => Err(anyhow::anyhow!("unexpected")),
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.shared
                .problem(format!("handling {}: {e:#}", short(&message)));
        }
    }

    /// `joined`: make fresh peer connections (replacing those of an earlier
    /// `joined`, after a return to the waiting room) and offer `pub`.
    async fn on_joined(&mut self, joined: &Value) -> anyhow::Result<()> {
        let you = joined["you"]["id"].as_str().unwrap_or_default();
        if you != self.shared.participant {
            self.shared.problem(format!(
                "joined as {you:?}, but this peer is {:?}",
                self.shared.participant
            ));
        }
        let old = self.shared.media.lock().expect("media").take();
        if let Some(old) = old {
            old.close().await;
        }
        self.generation += 1;
        self.buffered.clear();
        self.remote_set.clear();
        self.dialled.clear();
        self.first_mid.clear();
        *self.shared.sub_offer.lock().expect("sub offer") = None;
        self.shared.keyframe_wanted.store(true, Ordering::SeqCst);

        let (sub, sub_state) = self.build_pc(Side::Sub).await?;
        let (publisher, pub_state, tasks) = if self.shared.options.publish {
            let (pc, pub_state) = self.build_pc(Side::Pub).await?;
            let (publisher, tasks) = self.add_tracks(pc).await?;
            (Some(publisher), pub_state, tasks)
        } else {
            (
                None,
                watch::channel(RTCPeerConnectionState::New).1,
                Vec::new(),
            )
        };
        let offer_pc = publisher.as_ref().map(|p| p.pc.clone());
        *self.shared.media.lock().expect("media") = Some(Arc::new(Media {
            generation: self.generation,
            publisher,
            sub,
            pub_state,
            sub_state,
            tasks,
        }));
        if let Some(pc) = offer_pc {
            let offer = pc
                .create_offer(None)
                .await
                .context("creating the pub offer")?;
            pc.set_local_description(offer.clone())
                .await
                .context("setting the pub offer")?;
            self.first_mid.insert(
                Side::Pub,
                sdp::first_mid(&offer.sdp).unwrap_or("0").to_owned(),
            );
            self.sender
                .send_json(&json!({"type": "offer", "pc": "pub", "sdp": offer.sdp}))
                .await?;
        }
        Ok(())
    }

    async fn build_pc(
        &self,
        side: Side,
    ) -> anyhow::Result<(
        Arc<dyn PeerConnection>,
        watch::Receiver<RTCPeerConnectionState>,
    )> {
        let (media_engine, mut registry) = opus_vp8_engine()?;
        if side == Side::Pub {
            // Last in the chain (a high slot), after the interceptors that
            // consume RTCP, so that PLI/FIR reach the published track.
            registry = registry.with(Slot::from(14_000), KeyframeRequestForwarder::default());
        }
        let tcp_only = self.shared.options.tcp_only;
        let network = if tcp_only {
            rtc::ice::network_type::NetworkType::Tcp4
        } else {
            rtc::ice::network_type::NetworkType::Udp4
        };
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_network_types(vec![network])
            .build();
        // A concrete loopback address: a wildcard would skip loopback.
        let loopback = || vec!["127.0.0.1:0".to_owned()];
        let (udp, tcp) = if tcp_only {
            (Vec::new(), loopback())
        } else {
            (loopback(), Vec::new())
        };
        let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let handler = Arc::new(Events {
            side,
            generation: self.generation,
            shared: self.shared.clone(),
            candidates: self.local_tx.clone(),
            state: state_tx,
        });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .with_handler(handler)
            .with_udp_addrs(udp)
            .with_tcp_addrs(tcp)
            .build()
            .await
            .with_context(|| format!("building the {} connection", side.as_str()))?;
        Ok((Arc::new(pc), state_rx))
    }

    /// Adds the sendonly audio and video tracks (stream id: our participant
    /// id) and starts counting keyframe requests on the video.
    async fn add_tracks(
        &self,
        pc: Arc<dyn PeerConnection>,
    ) -> anyhow::Result<(Publisher, Vec<JoinHandle<()>>)> {
        let id = &self.shared.participant;
        let audio = local_track(id, Kind::Audio, self.shared.ssrcs[0]);
        let video = local_track(id, Kind::Video, self.shared.ssrcs[1]);
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
        let tasks = vec![tokio::spawn(count_keyframe_requests(
            self.shared.clone(),
            video.clone(),
        ))];
        let [audio_sender, video_sender]: [Arc<dyn RtpSender>; 2] = senders
            .try_into()
            .map_err(|_| anyhow::anyhow!("two senders"))?;
        Ok((
            Publisher {
                pc,
                tracks: [audio, video],
                senders: [audio_sender, video_sender],
                payload_types: Mutex::new(None),
            },
            tasks,
        ))
    }

    async fn on_pub_answer(&mut self, message: &Value) -> anyhow::Result<()> {
        let sdp = message["sdp"].as_str().context("an answer without sdp")?;
        let media = self.shared.media().context("a pub answer before joined")?;
        let publisher = media
            .publisher
            .as_ref()
            .context("a pub answer, but not publishing")?;
        publisher
            .pc
            .set_remote_description(RTCSessionDescription::answer(sdp.to_owned())?)
            .await
            .context("setting the pub answer")?;
        self.after_remote_description(Side::Pub, &publisher.pc, sdp)
            .await;
        let mut payload_types = [AUDIO_PT, VIDEO_PT];
        for (i, sender) in publisher.senders.iter().enumerate() {
            let parameters = sender.get_parameters().await?;
            payload_types[i] = parameters
                .rtp_parameters
                .codecs
                .first()
                .map(|c| c.payload_type)
                .context("no codec negotiated")?;
        }
        *publisher.payload_types.lock().expect("payload types") = Some(payload_types);
        Ok(())
    }

    async fn on_sub_offer(&mut self, message: &Value) -> anyhow::Result<()> {
        let sdp = message["sdp"].as_str().context("an offer without sdp")?;
        let media = self.shared.media().context("a sub offer before joined")?;
        let pc = &media.sub;
        pc.set_remote_description(RTCSessionDescription::offer(sdp.to_owned())?)
            .await
            .context("setting the sub offer")?;
        *self.shared.sub_offer.lock().expect("sub offer") = Some(sdp.to_owned());
        self.after_remote_description(Side::Sub, pc, sdp).await;
        let answer = pc
            .create_answer(None)
            .await
            .context("creating the sub answer")?;
        pc.set_local_description(answer.clone())
            .await
            .context("setting the sub answer")?;
        self.first_mid
            .entry(Side::Sub)
            .or_insert_with(|| sdp::first_mid(&answer.sdp).unwrap_or("0").to_owned());
        self.sender
            .send_json(&json!({"type": "answer", "pc": "sub", "sdp": answer.sdp}))
            .await
    }

    /// Dials passive TCP candidates of the SDP (webrtc-rs does not) and
    /// applies the candidates that came early.
    async fn after_remote_description(
        &mut self,
        side: Side,
        pc: &Arc<dyn PeerConnection>,
        sdp: &str,
    ) {
        self.remote_set.insert(side);
        if self.shared.options.tcp_only {
            for candidate in sdp::passive_tcp_candidates(sdp) {
                self.add_remote_candidate(side, pc, candidate_init(candidate))
                    .await;
            }
        }
        for candidate in self.buffered.remove(&side).unwrap_or_default() {
            self.add_remote_candidate(side, pc, candidate).await;
        }
    }

    async fn on_remote_candidate(&mut self, side: Side, message: &Value) -> anyhow::Result<()> {
        let candidate = &message["candidate"];
        if candidate.is_null() {
            return Ok(()); // the end of candidates: nothing to do for webrtc-rs
        }
        let init = RTCIceCandidateInit {
            candidate: candidate["candidate"]
                .as_str()
                .context("a candidate without \"candidate\"")?
                .to_owned(),
            sdp_mid: candidate["sdpMid"].as_str().map(str::to_owned),
            sdp_mline_index: candidate["sdpMLineIndex"].as_u64().map(|i| i as u16),
            username_fragment: candidate["usernameFragment"].as_str().map(str::to_owned),
            ..Default::default()
        };
        let media = self.shared.media();
        match media.as_ref().and_then(|m| m.pc(side)) {
            Some(pc) if self.remote_set.contains(&side) => {
                let pc = pc.clone();
                self.add_remote_candidate(side, &pc, init).await;
            }
            _ => self.buffered.entry(side).or_default().push(init),
        }
        Ok(())
    }

    /// Adds a remote candidate that our transport can use: UDP ones, or in
    /// TCP-only mode passive TCP ones (each address dialled once).
    async fn add_remote_candidate(
        &mut self,
        side: Side,
        pc: &Arc<dyn PeerConnection>,
        init: RTCIceCandidateInit,
    ) {
        let Some(parsed) = sdp::ParsedCandidate::parse(&init.candidate) else {
            self.shared
                .problem(format!("unreadable remote candidate {:?}", init.candidate));
            return;
        };
        if self.shared.options.tcp_only {
            if !parsed.is_passive_tcp() {
                return;
            }
            let key = format!("{} {} {}", side.as_str(), parsed.address, parsed.port);
            if !self.dialled.insert(key) {
                return;
            }
        } else if parsed.transport != "udp" {
            return;
        }
        if let Err(e) = pc.add_ice_candidate(init.clone()).await {
            self.shared.problem(format!(
                "{}: add_ice_candidate({:?}): {e}",
                side.as_str(),
                init.candidate
            ));
        }
    }

    async fn send_local_candidate(&mut self, local: LocalCandidate) {
        if local.generation != self.generation {
            return; // from connections already replaced
        }
        let candidate = match &local.candidate {
            // Our passive TCP candidates are not sent: the server never dials out.
            Some(c)
                if sdp::ParsedCandidate::parse(&c.candidate)
                    .is_some_and(|p| p.is_passive_tcp()) =>
            {
                return;
            }
            Some(c) => json!({
                "candidate": c.candidate,
                "sdpMid": self.first_mid.get(&local.side).map_or("0", String::as_str),
                "sdpMLineIndex": 0,
            }),
            None => Value::Null,
        };
        let message =
            json!({"type": "candidate", "pc": local.side.as_str(), "candidate": candidate});
        if let Err(e) = self.sender.send_json(&message).await {
            self.shared.problem(format!("sending a candidate: {e:#}"));
        }
    }
}

/// A message shortened for problem reports (SDPs are long).
fn short(message: &Value) -> String {
    let mut text = message.to_string();
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

fn candidate_init(candidate: String) -> RTCIceCandidateInit {
    RTCIceCandidateInit {
        candidate,
        ..Default::default()
    }
}

/// Connection callbacks. They run on the connection's own driver task, so
/// they only forward into channels and spawn readers; they never wait on
/// the connection.
struct Events {
    side: Side,
    generation: u64,
    shared: Arc<Shared>,
    candidates: mpsc::UnboundedSender<LocalCandidate>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let _ = self.candidates.send(LocalCandidate {
                    generation: self.generation,
                    side: self.side,
                    candidate: Some(init),
                });
            }
            Err(e) => self.shared.problem(format!("a local candidate: {e}")),
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.candidates.send(LocalCandidate {
                generation: self.generation,
                side: self.side,
                candidate: None,
            });
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

/// One remote track as received, accounted by payload sequence number.
struct ReceivedTrack {
    /// The MediaStream id the track was announced with: its publisher.
    stream_id: String,
    track_id: String,
    kind: Kind,
    track: Arc<dyn TrackRemote>,
    packets: u64,
    /// Payload sequence numbers seen, per publisher instance (a participant
    /// who joins again is a new instance, counting from 0 again).
    seqs: BTreeMap<u32, BTreeSet<u32>>,
    duplicates: u64,
    foreign: u64,
    malformed: u64,
    /// A few of the foreign or malformed packets, described.
    oddities: Vec<String>,
    last_ssrc: Option<u32>,
    last_at: Option<Instant>,
    ended: bool,
}

impl ReceivedTrack {
    fn record(&mut self, rtp: &rtc::rtp::Packet) {
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
    }

    fn oddity(&mut self, description: String) {
        if self.oddities.len() < 5 {
            self.oddities.push(description);
        }
    }

    fn clear(&mut self) {
        self.packets = 0;
        self.seqs.clear();
        self.duplicates = 0;
        self.foreign = 0;
        self.malformed = 0;
        self.oddities.clear();
    }

    /// Sequence numbers missing between the lowest and highest of each instance.
    fn lost(&self) -> u64 {
        self.seqs
            .values()
            .filter_map(|seqs| Some((seqs.first()?, seqs.last()?, seqs.len())))
            .map(|(low, high, n)| u64::from(high - low) + 1 - n as u64)
            .sum()
    }

    fn describe(&self) -> String {
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
        format!(
            "{}/{:?} (track {}{}): {} packets, {range}, {} duplicates, {} foreign, {} malformed, last {age} {:?}",
            self.stream_id,
            self.kind,
            self.track_id,
            if self.ended { ", ended" } else { "" },
            self.packets,
            self.duplicates,
            self.foreign,
            self.malformed,
            self.oddities
        )
    }
}

/// Reads one remote track until it ends, recording every packet.
async fn read_track(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
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
    let index = {
        let mut received = shared.received.lock().expect("received");
        received.push(ReceivedTrack {
            stream_id,
            track_id,
            kind,
            track: track.clone(),
            packets: 0,
            seqs: BTreeMap::new(),
            duplicates: 0,
            foreign: 0,
            malformed: 0,
            oddities: Vec::new(),
            last_ssrc: None,
            last_at: None,
            ended: false,
        });
        received.len() - 1
    };
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(rtp) => {
                shared.received.lock().expect("received")[index].record(&rtp);
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    shared.received.lock().expect("received")[index].ended = true;
}

/// Counts PLI and FIR arriving for our published video and asks the sender
/// for a keyframe, as a real encoder would.
async fn count_keyframe_requests(shared: Arc<Shared>, video: Arc<TrackLocalStaticRTP>) {
    while let Some(event) = video.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        for packet in &packets {
            let any = packet.as_any();
            if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                shared.keyframe_requests.fetch_add(1, Ordering::SeqCst);
                shared.keyframe_wanted.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// Publishes at the given rates until aborted.
async fn send_loop(shared: Arc<Shared>, audio_pps: u32, video_pps: u32) {
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

/// Sends one packet of `kind` if `pub` is negotiated; true when sent.
async fn send_one(shared: &Shared, kind: Kind, rtp_seq: u16, rtp_ts: u32) -> bool {
    let Some(media) = shared.media() else {
        return false;
    };
    let Some(publisher) = &media.publisher else {
        return false;
    };
    let Some(payload_types) = *publisher.payload_types.lock().expect("payload types") else {
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
    let keyframe = kind == Kind::Video && shared.keyframe_wanted.swap(false, Ordering::SeqCst);
    let packet = rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            // Each video packet is a whole frame here.
            marker: kind == Kind::Video,
            payload_type: payload_types[i],
            sequence_number: rtp_seq,
            timestamp: rtp_ts,
            ssrc: shared.ssrcs[i],
            ..Default::default()
        },
        payload: payload::encode(&header, keyframe).into(),
    };
    match publisher.tracks[i].write_rtp(packet).await {
        Ok(()) => {
            shared.next_seq[i].store(seq + 1, Ordering::SeqCst);
            shared.sent[i].fetch_add(1, Ordering::SeqCst);
            true
        }
        Err(e) => {
            if keyframe {
                shared.keyframe_wanted.store(true, Ordering::SeqCst);
            }
            shared.problem(format!("write_rtp {kind:?}: {e}"));
            false
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Opus as the test peers register it.
/// A media engine with Opus and VP8 at the payload types the tests use,
/// and webrtc-rs's default interceptors (NACK, RTCP reports, TWCC), ready
/// for more.
pub fn opus_vp8_engine() -> anyhow::Result<(MediaEngine, Registry)> {
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

pub fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// VP8 with the feedback browsers offer, so the server may send PLI/FIR.
pub fn vp8() -> RTCRtpCodec {
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

/// A sendonly track with stream id `participant` and a fixed SSRC (which
/// every packet written to it must carry).
fn local_track(participant: &str, kind: Kind, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    let (name, codec, codec_kind) = match kind {
        Kind::Audio => ("audio", opus(), RtpCodecKind::Audio),
        Kind::Video => ("video", vp8(), RtpCodecKind::Video),
    };
    let track_id = format!("{participant}-{name}");
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        participant.to_owned(),
        track_id.clone(),
        track_id,
        codec_kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )))
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

/// The synthetic media payload: pure encoding and decoding.
///
/// Layout: `"TNDM"`, u8 length + sender participant id (UTF-8), u8 kind
/// (0 audio, 1 video), u32 BE sequence, u64 BE send time in microseconds
/// since the UNIX epoch, u32 BE publisher instance (random per
/// [`TestPeer`](super::TestPeer): a participant who joins again with a new
/// peer counts from 0 again, so receivers keep each instance's sequence
/// apart), then zero padding to [`AUDIO_SIZE`] or [`VIDEO_SIZE`] bytes. Video has a minimal VP8 payload descriptor and
/// frame header in front (RFC 7741, RFC 6386), so that the SFU's keyframe
/// detection sees a keyframe when there is one; [`decode`] finds the header
/// after it.
pub mod payload {
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

    /// True when a video payload made by [`encode`] is a VP8 keyframe.
    pub fn is_keyframe(payload: &[u8]) -> bool {
        payload.len() > 1 && payload[0] == VP8_DESCRIPTOR && payload[1] & 0x01 == 0
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
                assert_eq!(is_keyframe(&bytes), kind == Kind::Video && keyframe);
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
}

/// The few SDP and candidate facts the peer needs, read from text.
mod sdp {
    use std::collections::BTreeSet;

    /// MediaStream ids of the m-lines that are not inactive (or rejected).
    pub fn active_stream_ids(sdp: &str) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for section in media_sections(sdp) {
            let rejected = section[0].split_whitespace().nth(1) == Some("0");
            if rejected || section.contains(&"a=inactive") {
                continue;
            }
            let msid = section
                .iter()
                .find_map(|l| l.strip_prefix("a=msid:"))
                .or_else(|| {
                    section
                        .iter()
                        .filter(|l| l.starts_with("a=ssrc:"))
                        .find_map(|l| l.split_once(" msid:").map(|(_, m)| m))
                });
            if let Some(stream) = msid.and_then(|m| m.split_whitespace().next()) {
                if stream != "-" {
                    ids.insert(stream.to_owned());
                }
            }
        }
        ids
    }

    pub fn first_mid(sdp: &str) -> Option<&str> {
        sdp.lines()
            .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
    }

    /// `candidate:...` of every passive TCP candidate line.
    pub fn passive_tcp_candidates(sdp: &str) -> Vec<String> {
        let mut seen = BTreeSet::new();
        sdp.lines()
            .filter_map(|l| l.trim_end().strip_prefix("a="))
            .filter(|c| ParsedCandidate::parse(c).is_some_and(|p| p.is_passive_tcp()))
            .filter(|c| seen.insert(c.to_string()))
            .map(str::to_owned)
            .collect()
    }

    /// Lines of each media section, its `m=` line first.
    fn media_sections(sdp: &str) -> Vec<Vec<&str>> {
        let mut sections: Vec<Vec<&str>> = Vec::new();
        for line in sdp.lines().map(str::trim_end) {
            if line.starts_with("m=") {
                sections.push(vec![line]);
            } else if let Some(section) = sections.last_mut() {
                section.push(line);
            }
        }
        sections
    }

    /// The parts of `candidate:FOUNDATION COMPONENT TRANSPORT PRIORITY
    /// ADDRESS PORT typ TYPE [tcptype T]` that matter here.
    pub struct ParsedCandidate {
        pub transport: String,
        pub address: String,
        pub port: u16,
        pub tcptype: Option<String>,
    }

    impl ParsedCandidate {
        pub fn parse(candidate: &str) -> Option<ParsedCandidate> {
            let text = candidate.strip_prefix("a=").unwrap_or(candidate);
            let text = text.strip_prefix("candidate:")?;
            let fields: Vec<&str> = text.split_whitespace().collect();
            let tcptype = fields
                .iter()
                .position(|f| *f == "tcptype")
                .and_then(|i| fields.get(i + 1))
                .map(|t| t.to_ascii_lowercase());
            Some(ParsedCandidate {
                transport: fields.get(2)?.to_ascii_lowercase(),
                address: fields.get(4)?.to_string(),
                port: fields.get(5)?.parse().ok()?,
                tcptype,
            })
        }

        pub fn is_passive_tcp(&self) -> bool {
            self.transport == "tcp" && self.tcptype.as_deref() == Some("passive")
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn sub_offers_are_read() {
            let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n\
                m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a1\r\na=sendonly\r\na=msid:pat-1 t1\r\n\
                m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v1\r\na=inactive\r\na=msid:par-1 t2\r\n\
                m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v2\r\na=sendonly\r\na=ssrc:5 msid:clin-1 t3\r\n\
                a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n\
                a=candidate:2 1 tcp 2130706431 127.0.0.1 5001 typ host tcptype passive\r\n\
                a=candidate:2 1 tcp 2130706431 127.0.0.1 5001 typ host tcptype passive\r\n";
            let ids: Vec<_> = active_stream_ids(sdp).into_iter().collect();
            assert_eq!(ids, ["clin-1", "pat-1"]);
            assert_eq!(first_mid(sdp), Some("a1"));
            assert_eq!(
                passive_tcp_candidates(sdp),
                ["candidate:2 1 tcp 2130706431 127.0.0.1 5001 typ host tcptype passive"]
            );
            let udp = ParsedCandidate::parse("candidate:1 1 UDP 1 10.0.0.1 9 typ host").unwrap();
            assert_eq!((udp.transport.as_str(), udp.port), ("udp", 9));
            assert!(!udp.is_passive_tcp());
        }
    }
}
