//! The one webrtc-rs test peer, used by every media test: a scripted
//! participant with signaling and two real WebRTC peer connections
//! (webrtc-rs), so every media test is also an interoperability test
//! between two independent WebRTC stacks (the server runs str0m).
//!
//! [`TestPeer::join`] connects to `/v1/signal` and joins with a token. On
//! `joined` it makes a `sub` connection, which answers every `sub` offer,
//! and, unless [`PeerOptions::receive_only`], a `pub` connection that it
//! offers, publishing (MediaStream id = its participant id) one of:
//!
//! - synthetic Opus audio and VP8 video (the default), at the rates a test
//!   asks for with [`TestPeer::start_sending`]; see below;
//! - the VP8 frames of an IVF clip, video only, packetized by webrtc-rs
//!   (RFC 7741) and sent in a loop from the moment `pub` connects
//!   ([`PeerOptions::publish_clip`]), for a browser to decode;
//! - audio and simulcast video, one encoding per rid with an SSRC of its
//!   own, whose packets the test writes itself through a [`MediaWriter`]
//!   ([`PeerOptions::publish_simulcast`]).
//!
//! A background task does all the signaling: offers and answers, trickled
//! candidates both ways (buffered when they come before their description),
//! renegotiation of `sub` when people come and go, and fresh connections
//! after a return to the waiting room. A server `error` after the join is a
//! [problem](TestPeer::problems).
//!
//! What arrives on `sub` is recorded per track: always the accounting of
//! synthetic payloads ([`Stats`]); on request ([`TrackReport`]) every RTP
//! packet's header and payload ([`PeerOptions::record_packets`]) and the
//! VP8 frames, reassembled and checked, with a keyframe request (PLI) sent
//! while none has come, as a browser does ([`PeerOptions::reassemble_vp8`]).
//!
//! The synthetic media: each RTP payload starts with a small header (see
//! [`payload`]) naming the sender, the kind and a sequence number of the
//! sender's own. Receivers account for loss and duplicates with that number,
//! never with the RTP sequence number, because the SFU rewrites RTP sequence
//! numbers and timestamps per subscriber; and a payload whose sender is not
//! the participant the track was announced for is counted as foreign: that
//! is media forwarded to the wrong place, the worst bug an SFU for therapy
//! sessions can have. Video payloads start with a VP8 payload descriptor and
//! frame header (keyframe on the first packet and after every PLI/FIR),
//! because the SFU inspects them to find keyframes.
//!
//! Facts about webrtc 0.21 this relies on (checked in a scratch project):
//! sockets are bound to 127.0.0.1 explicitly and mDNS is off; `write_rtp`
//! silently drops packets without the declared SSRC and the negotiated
//! payload type; inbound PLI/FIR reach the application only when an
//! interceptor marks them (see `tracks::KeyframeRequestForwarder`); over ICE-TCP,
//! passive candidates inside an SDP are never dialled, so they are fed again
//! through `add_ice_candidate`; a remote track's event queue is bounded, so
//! it is polled continuously; and a connection must be closed explicitly.
//! For simulcast (found in its sources): a `MediaStreamTrack` with several
//! codings that all have a rid becomes `a=rid:<rid> send` lines plus
//! `a=simulcast:send` (without `a=ssrc` lines), the mid/rid header
//! extensions are offered only once registered
//! (`configure_simulcast_extension_headers`), and the sender never adds them
//! by itself: each packet gets them with `set_extension`, using the ids
//! negotiated for the sender ([`Negotiated::extension_id`]).

mod negotiation;
pub mod payload;
mod sdp;
mod tracks;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::RTCPeerConnectionState;

use super::ivf;
use super::signal_client::{
    self, summarize, type_of, Closed, MessageLog, ReaderGuard, SignalClient, SignalSender,
};
use super::vp8;
use super::TestApp;
use negotiation::{Driver, Media};
use tracks::ReceivedTrack;

pub use payload::Kind;

/// How long [`TestPeer::join`] waits for the `pub` connection to connect,
/// unless [`PeerOptions::connect_timeout`] says otherwise.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Payload types every test peer offers.
pub const AUDIO_PT: u8 = 111;
pub const VIDEO_PT: u8 = 96;
/// How often waits look again.
const POLL: Duration = Duration::from_millis(20);

/// How a [`TestPeer`] behaves and what it records. The default publishes
/// synthetic audio and video over UDP and records payload statistics.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    tcp_only: bool,
    local_ip: std::net::IpAddr,
    publish: Publish,
    record_packets: bool,
    reassemble_vp8: bool,
    /// Says `"e2ee": true` in `join` (and then never sends a key).
    claims_e2ee: bool,
    connect_timeout: Duration,
}

/// What a [`TestPeer`] publishes on its `pub` connection.
#[derive(Debug, Clone)]
enum Publish {
    /// Nothing: no `pub` connection at all.
    Nothing,
    /// Synthetic audio and video, see the module documentation.
    Synthetic,
    /// An IVF clip's VP8 frames, video only.
    Clip(ivf::Clip),
    /// Audio, and video with one encoding per rid.
    Simulcast(Vec<String>),
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            tcp_only: false,
            local_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            publish: Publish::Synthetic,
            record_packets: false,
            reassemble_vp8: false,
            claims_e2ee: false,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }
}

impl PeerOptions {
    /// ICE over TCP only: no UDP socket at all, as behind a UDP-blocking
    /// firewall. The peer dials the server's passive TCP candidate.
    pub fn tcp_only(mut self) -> Self {
        self.tcp_only = true;
        self
    }

    /// Binds the peer's sockets to `ip` (a namespace's address) instead of
    /// 127.0.0.1.
    pub fn local_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.local_ip = ip;
        self
    }

    /// Publishes nothing and never creates `pub`: the peer only receives.
    pub fn receive_only(mut self) -> Self {
        self.publish = Publish::Nothing;
        self
    }

    /// Publishes `clip` (VP8, video only) in a loop, at its frame rate, from
    /// the moment `pub` connects, packetized by webrtc-rs.
    pub fn publish_clip(mut self, clip: ivf::Clip) -> Self {
        assert_eq!(&clip.header.fourcc, b"VP80", "the clip is not VP8");
        self.publish = Publish::Clip(clip);
        self
    }

    /// Publishes audio and a video track with one simulcast encoding per rid
    /// (in this order), each with its own SSRC; the test writes the packets
    /// through [`TestPeer::writer`].
    pub fn publish_simulcast(mut self, rids: &[&str]) -> Self {
        self.publish = Publish::Simulcast(rids.iter().map(|r| r.to_string()).collect());
        self
    }

    /// Keeps every RTP packet received (header fields and payload), see
    /// [`TrackReport::rtp`].
    pub fn record_packets(mut self) -> Self {
        self.record_packets = true;
        self
    }

    /// Reassembles the VP8 frames of received video and checks them (see
    /// [`vp8::Assembler`]), and, as a browser does, sends a PLI while video
    /// flows without a keyframe.
    /// Joins saying it can encrypt end to end, without ever publishing a
    /// key: a client with a valid link that nobody sends media keys to.
    pub fn claims_e2ee(mut self) -> Self {
        self.claims_e2ee = true;
        self
    }

    pub fn reassemble_vp8(mut self) -> Self {
        self.reassemble_vp8 = true;
        self
    }

    /// How long [`TestPeer::join`] waits for `pub` to connect.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
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

/// One RTP packet as received, kept with [`PeerOptions::record_packets`].
#[derive(Debug, Clone)]
pub struct RtpRecord {
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
    pub at: Instant,
}

/// What one remote track has delivered so far.
#[derive(Debug, Clone)]
pub struct TrackReport {
    /// The MediaStream id the track was announced with: its publisher.
    pub stream_id: String,
    pub kind: Kind,
    /// Every RTP packet, whatever its payload.
    pub rtp_packets: u64,
    /// Every packet, in order of arrival, with [`PeerOptions::record_packets`].
    pub rtp: Vec<RtpRecord>,
    /// What [`PeerOptions::reassemble_vp8`] made of video (empty otherwise).
    pub vp8: vp8::Counts,
    /// Complete VP8 frames from the first keyframe on: see [`vp8::Assembler::kept`].
    pub frames: Vec<Vec<u8>>,
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
    /// `pub` when receive-only) or in the waiting room (then see
    /// [`wait_joined`](Self::wait_joined)). Fails when denied. A clip starts
    /// playing once `pub` is connected.
    pub async fn join(
        app: &TestApp,
        token: &str,
        participant_id: &str,
        options: PeerOptions,
    ) -> anyhow::Result<TestPeer> {
        let (peer, _) = Self::join_following(&[app], 0, token, participant_id, options).await?;
        Ok(peer)
    }

    /// [`TestPeer::join`] through `nodes[via]`, following `redirect`s (up to
    /// 3, as the web client does) to the node of a cluster that holds the
    /// room; the peer and the index of the node it joined.
    pub async fn join_following(
        nodes: &[&TestApp],
        via: usize,
        token: &str,
        participant_id: &str,
        options: PeerOptions,
    ) -> anyhow::Result<(TestPeer, usize)> {
        let mut at = via;
        let mut redirects = 0;
        let (client, first) = loop {
            let mut client = SignalClient::connect(nodes[at])
                .await
                .with_context(|| format!("{participant_id}: connecting to the signaling socket"))?;
            let mut join = json!({"type": "join", "token": token});
            if options.claims_e2ee {
                join["e2ee"] = json!(true);
            }
            client.send_json(join).await?;
            let first = client
                .recv_until_any(
                    &["joined", "waiting", "denied", "redirect"],
                    signal_client::JOIN_TIMEOUT,
                )
                .await
                .with_context(|| format!("{participant_id}: joining"))?;
            if type_of(&first) != "redirect" {
                break (client, first);
            }
            redirects += 1;
            anyhow::ensure!(redirects <= 3, "{participant_id}: more than 3 redirects");
            let url = url::Url::parse(first["url"].as_str().unwrap_or_default())?;
            at = nodes
                .iter()
                .position(|n| Some(n.https_addr.port()) == url.port())
                .with_context(|| format!("{participant_id}: redirected to no known node: {url}"))?;
        };
        if type_of(&first) == "denied" {
            anyhow::bail!("{participant_id} was denied: {first}");
        }
        let connect_timeout = options.connect_timeout;
        let peer = Self::start(client, participant_id, options, first.clone());
        if type_of(&first) == "joined" {
            peer.wait_connected(connect_timeout).await?;
            if let Publish::Clip(clip) = &peer.shared.options.publish {
                peer.replace_sending(tokio::spawn(tracks::play_clip(
                    peer.shared.clone(),
                    clip.clone(),
                )));
            }
        }
        Ok((peer, at))
    }

    fn start(
        client: SignalClient,
        participant_id: &str,
        options: PeerOptions,
        first: Value,
    ) -> TestPeer {
        let parts = client.into_parts();
        let video_encodings = match &options.publish {
            Publish::Simulcast(rids) => rids.len(),
            _ => 1,
        };
        let audio_ssrc = rand::random::<u32>() | 1;
        let video_ssrcs = (1..=video_encodings as u32)
            .map(|i| audio_ssrc.wrapping_add(2 * i))
            .collect();
        let shared = Arc::new(Shared {
            participant: participant_id.to_owned(),
            options,
            audio_ssrc,
            video_ssrcs,
            instance: rand::random(),
            media: Mutex::new(None),
            received: Mutex::new(Vec::new()),
            pub_offer: Mutex::new(None),
            pub_answer: Mutex::new(None),
            sub_offer: Mutex::new(None),
            keyframe_requests: AtomicUsize::new(0),
            keyframe_requests_by_ssrc: Mutex::new(HashMap::new()),
            keyframe_wanted: Mutex::new(HashSet::new()),
            next_seq: [AtomicU32::new(0), AtomicU32::new(0)],
            sent: [AtomicU64::new(0), AtomicU64::new(0)],
            keyframes_sent: AtomicU64::new(0),
            problems: Mutex::new(Vec::new()),
        });
        let (local_tx, local_rx) = mpsc::unbounded_channel();
        let driver = Driver::new(shared.clone(), parts.sender.clone(), local_tx);
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
    async fn wait_connected(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until("the pub connection to connect", timeout, || {
            let media = self.shared.media()?;
            if media.publisher.is_none() {
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

    /// Whether the `sub` connection of the latest `joined` is connected.
    pub fn sub_connected(&self) -> bool {
        self.shared
            .media()
            .is_some_and(|m| *m.sub_state.borrow() == RTCPeerConnectionState::Connected)
    }

    /// Publishes `audio_pps` audio and `video_pps` video packets a second
    /// (0: none of that kind) of synthetic media until
    /// [`stop_sending`](Self::stop_sending). Payload sequence numbers
    /// continue across stops and starts.
    pub fn start_sending(&self, audio_pps: u32, video_pps: u32) {
        assert!(
            matches!(self.shared.options.publish, Publish::Synthetic),
            "{}: start_sending is for synthetic media",
            self.id
        );
        self.replace_sending(tokio::spawn(tracks::send_synthetic(
            self.shared.clone(),
            audio_pps,
            video_pps,
        )));
    }

    fn replace_sending(&self, task: JoinHandle<()>) {
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

    /// Writes this peer's own packets on its published tracks (simulcast).
    pub fn writer(&self) -> MediaWriter {
        MediaWriter {
            shared: self.shared.clone(),
        }
    }

    /// Packets of `kind` this peer has published (for a clip: frames, each
    /// packetized by webrtc-rs).
    pub fn sent(&self, kind: Kind) -> u64 {
        self.shared.sent[kind.index()].load(Ordering::SeqCst)
    }

    /// VP8 keyframes this peer has published.
    pub fn keyframes_sent(&self) -> u64 {
        self.shared.keyframes_sent.load(Ordering::SeqCst)
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

    /// Every remote track seen, in order of arrival.
    pub fn tracks(&self) -> Vec<TrackReport> {
        let received = self.shared.received.lock().expect("received");
        received.iter().map(ReceivedTrack::report).collect()
    }

    /// The remote tracks of `participant` and `kind`.
    pub fn tracks_of(&self, participant: &str, kind: Kind) -> Vec<TrackReport> {
        let received = self.shared.received.lock().expect("received");
        received
            .iter()
            .filter(|t| t.stream_id == participant && t.kind == kind)
            .map(ReceivedTrack::report)
            .collect()
    }

    /// Waits until a track of `participant` and `kind` satisfies `done`.
    pub async fn wait_for_track_where(
        &self,
        participant: &str,
        kind: Kind,
        what: &str,
        timeout: Duration,
        done: impl Fn(&TrackReport) -> bool,
    ) -> anyhow::Result<TrackReport> {
        let what = format!("{what} from {participant}");
        self.wait_for(&what, timeout, || {
            self.tracks_of(participant, kind).into_iter().find(&done)
        })
        .await
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

    /// The latest `sub` offer applied.
    pub fn sub_offer(&self) -> Option<String> {
        self.shared.sub_offer.lock().expect("sub offer").clone()
    }

    /// The latest `pub` offer made.
    pub fn pub_offer(&self) -> Option<String> {
        self.shared.pub_offer.lock().expect("pub offer").clone()
    }

    /// The latest `pub` answer applied.
    pub fn pub_answer(&self) -> Option<String> {
        self.shared.pub_answer.lock().expect("pub answer").clone()
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
                sender_ssrc: self.shared.video_ssrcs[0],
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

    /// What went wrong in the background (failed negotiation steps, errors
    /// from the server, failed writes, ...).
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
            "  sent: {} audio, {} video ({} keyframes); keyframe requests received: {} {:?}\n",
            self.sent(Kind::Audio),
            self.sent(Kind::Video),
            self.keyframes_sent(),
            self.keyframe_requests_received(),
            self.shared
                .keyframe_requests_by_ssrc
                .lock()
                .expect("keyframe requests")
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

    /// Waits until `check` gives a value; fails after `timeout`, describing
    /// the peer.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> anyhow::Result<T> {
        self.wait_until(what, timeout, || check().map(Ok)).await
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

/// What the `pub` answer settled for the published tracks.
#[derive(Debug, Clone, Default)]
pub struct Negotiated {
    /// Payload types by [`Kind::index`] (`None`: that kind is not published).
    pub payload_types: [Option<u8>; 2],
    /// The mid of the video m-line.
    pub video_mid: Option<String>,
    /// The video sender's header extensions: URI and id.
    pub video_extensions: Vec<(String, u8)>,
}

impl Negotiated {
    pub fn payload_type(&self, kind: Kind) -> Option<u8> {
        self.payload_types[kind.index()]
    }

    /// The id negotiated for the video header extension `uri`.
    pub fn extension_id(&self, uri: &str) -> Option<u8> {
        self.video_extensions
            .iter()
            .find(|(u, _)| u == uri)
            .map(|(_, id)| *id)
    }
}

/// Writes a [`TestPeer`]'s packets for a test that makes its own media
/// (simulcast layers); cheap to clone and `'static`, for a sending task.
#[derive(Clone)]
pub struct MediaWriter {
    shared: Arc<Shared>,
}

impl MediaWriter {
    /// What the latest `pub` answer settled, once there was one.
    pub fn negotiated(&self) -> Option<Negotiated> {
        let media = self.shared.media()?;
        let publisher = media.publisher.as_ref()?;
        let negotiated = publisher.negotiated.lock().expect("negotiated").clone();
        negotiated
    }

    pub fn audio_ssrc(&self) -> u32 {
        self.shared.audio_ssrc
    }

    /// The video SSRCs, one per encoding, in the order of the rids.
    pub fn video_ssrcs(&self) -> &[u32] {
        &self.shared.video_ssrcs
    }

    /// Writes `packet` on the published track of `kind` (it must carry one
    /// of the track's SSRCs and the negotiated payload type) and counts it
    /// as sent.
    pub async fn write_rtp(&self, kind: Kind, packet: rtc::rtp::Packet) -> anyhow::Result<()> {
        let media = self.shared.media().context("not joined")?;
        let publisher = media.publisher.as_ref().context("not publishing")?;
        let track = publisher
            .track(kind)
            .with_context(|| format!("no published {kind:?} track"))?;
        let keyframe = kind == Kind::Video && vp8::starts_keyframe(&packet.payload);
        track.write_rtp(packet).await?;
        self.shared.sent[kind.index()].fetch_add(1, Ordering::SeqCst);
        if keyframe {
            self.shared.keyframes_sent.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Keyframe requests (PLI, FIR) that arrived for the video SSRC `ssrc`,
    /// by [`video_ssrcs`](Self::video_ssrcs).
    pub fn keyframe_requests(&self, ssrc: u32) -> usize {
        self.shared
            .keyframe_requests_by_ssrc
            .lock()
            .expect("keyframe requests")
            .get(&ssrc)
            .copied()
            .unwrap_or(0)
    }

    /// True (once) when a keyframe request arrived for `ssrc` since the last
    /// call, as an encoder learns it must make a keyframe. Every video SSRC
    /// starts with a keyframe wanted.
    pub fn take_keyframe_wanted(&self, ssrc: u32) -> bool {
        self.shared.take_keyframe_wanted(ssrc)
    }

    /// Records a problem with sending, for [`TestPeer::problems`].
    pub fn problem(&self, problem: impl Into<String>) {
        self.shared.problem(problem);
    }
}

/// State shared by the peer, its signaling task, its track readers and its
/// sender.
struct Shared {
    participant: String,
    options: PeerOptions,
    /// The SSRC of the published audio.
    audio_ssrc: u32,
    /// The SSRCs of the published video, one per encoding.
    video_ssrcs: Vec<u32>,
    /// Identifies this peer's payload sequence (see [`payload`]).
    instance: u32,
    /// The peer connections of the latest `joined`.
    media: Mutex<Option<Arc<Media>>>,
    /// Every remote track seen, in order of arrival; never removed.
    received: Mutex<Vec<ReceivedTrack>>,
    pub_offer: Mutex<Option<String>>,
    pub_answer: Mutex<Option<String>>,
    /// The latest `sub` offer applied.
    sub_offer: Mutex<Option<String>>,
    /// PLI and FIR packets for the published video.
    keyframe_requests: AtomicUsize,
    /// Keyframe requests by the video SSRC they name.
    keyframe_requests_by_ssrc: Mutex<HashMap<u32, usize>>,
    /// Video SSRCs whose next packet is to be a keyframe.
    keyframe_wanted: Mutex<HashSet<u32>>,
    /// The next synthetic payload sequence number, by [`Kind::index`].
    next_seq: [AtomicU32; 2],
    sent: [AtomicU64; 2],
    keyframes_sent: AtomicU64,
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

    fn take_keyframe_wanted(&self, ssrc: u32) -> bool {
        self.keyframe_wanted
            .lock()
            .expect("keyframe wanted")
            .remove(&ssrc)
    }

    fn want_keyframe(&self, ssrc: u32) {
        self.keyframe_wanted
            .lock()
            .expect("keyframe wanted")
            .insert(ssrc);
    }
}
