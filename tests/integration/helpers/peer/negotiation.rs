//! The peer connections of a [`TestPeer`](super::TestPeer) and the
//! signaling task that negotiates them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rtc::interceptor::Slot;
use rtc::peer_connection::configuration::interceptor_registry::configure_simulcast_extension_headers;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceGatheringState, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use super::signal_client::{type_of, SignalSender};
use super::tracks::{self, KeyframeRequestForwarder};
use super::{sdp, Kind, Negotiated, Publish, Shared};

/// One generation of peer connections, made on `joined`.
pub(super) struct Media {
    pub generation: u64,
    pub publisher: Option<Publisher>,
    pub sub: Arc<dyn PeerConnection>,
    pub pub_state: watch::Receiver<RTCPeerConnectionState>,
    pub sub_state: watch::Receiver<RTCPeerConnectionState>,
    tasks: Vec<JoinHandle<()>>,
}

/// The `pub` connection and what it publishes.
pub(super) struct Publisher {
    pub pc: Arc<dyn PeerConnection>,
    /// In the order of their m-lines.
    tracks: Vec<PublishedTrack>,
    /// Known once answered.
    pub negotiated: Mutex<Option<Negotiated>>,
}

struct PublishedTrack {
    kind: Kind,
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
}

impl Publisher {
    pub fn track(&self, kind: Kind) -> Option<&Arc<TrackLocalStaticSample>> {
        self.tracks
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| &t.track)
    }
}

impl Media {
    pub async fn close(&self) {
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
pub(super) struct LocalCandidate {
    generation: u64,
    side: Side,
    candidate: Option<RTCIceCandidateInit>,
}

/// The signaling task: applies what the server sends and sends what our
/// connections produce. Owns all negotiation state, so no locks are needed
/// for it.
pub(super) struct Driver {
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
    pub fn new(
        shared: Arc<Shared>,
        sender: SignalSender,
        local_tx: mpsc::UnboundedSender<LocalCandidate>,
    ) -> Driver {
        Driver {
            shared,
            sender,
            local_tx,
            generation: 0,
            buffered: HashMap::new(),
            remote_set: HashSet::new(),
            dialled: HashSet::new(),
            first_mid: HashMap::new(),
        }
    }

    pub async fn run(
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
            ("error" | "denied", _) => Err(anyhow::anyhow!("the server said so")),
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
        for &ssrc in &self.shared.video_ssrcs {
            self.shared.want_keyframe(ssrc);
        }

        let (sub, sub_state) = self.build_pc(Side::Sub).await?;
        let (publisher, pub_state, tasks) =
            if matches!(self.shared.options.publish, Publish::Nothing) {
                let (_, pub_state) = watch::channel(RTCPeerConnectionState::New);
                (None, pub_state, Vec::new())
            } else {
                let (pc, pub_state) = self.build_pc(Side::Pub).await?;
                let (publisher, tasks) = self.add_tracks(pc).await?;
                (Some(publisher), pub_state, tasks)
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
            *self.shared.pub_offer.lock().expect("pub offer") = Some(offer.sdp.clone());
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
        let (mut media_engine, mut registry) = tracks::opus_vp8_engine()?;
        if side == Side::Pub {
            if matches!(self.shared.options.publish, Publish::Simulcast(_)) {
                // mid, rid and repaired-rid extmaps in the offer (video).
                configure_simulcast_extension_headers(&mut media_engine)?;
            }
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
        // A concrete address (loopback unless told otherwise): a wildcard
        // would skip loopback.
        let local = || vec![format!("{}:0", self.shared.options.local_ip)];
        let (udp, tcp) = if tcp_only {
            (Vec::new(), local())
        } else {
            (local(), Vec::new())
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

    /// Adds the sendonly tracks of what the peer publishes (stream id: our
    /// participant id) and starts counting keyframe requests on the video.
    async fn add_tracks(
        &self,
        pc: Arc<dyn PeerConnection>,
    ) -> anyhow::Result<(Publisher, Vec<JoinHandle<()>>)> {
        let id = &self.shared.participant;
        let audio = (self.shared.audio_ssrc, String::new());
        let video: Vec<(u32, String)> = match &self.shared.options.publish {
            Publish::Simulcast(rids) => self
                .shared
                .video_ssrcs
                .iter()
                .copied()
                .zip(rids.iter().cloned())
                .collect(),
            _ => vec![(self.shared.video_ssrcs[0], String::new())],
        };
        let kinds: &[Kind] = match self.shared.options.publish {
            Publish::Clip(_) => &[Kind::Video],
            _ => &[Kind::Audio, Kind::Video],
        };
        let mut published = Vec::new();
        let mut tasks = Vec::new();
        for &kind in kinds {
            let encodings = match kind {
                Kind::Audio => vec![audio.clone()],
                Kind::Video => video.clone(),
            };
            let track = tracks::local_track(id, kind, &encodings)?;
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
            let sender = transceiver
                .sender()
                .await?
                .context("a transceiver without sender")?;
            if kind == Kind::Video {
                tasks.push(tokio::spawn(tracks::count_keyframe_requests(
                    self.shared.clone(),
                    track.clone(),
                )));
            }
            published.push(PublishedTrack {
                kind,
                track,
                sender,
            });
        }
        Ok((
            Publisher {
                pc,
                tracks: published,
                negotiated: Mutex::new(None),
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
        *self.shared.pub_answer.lock().expect("pub answer") = Some(sdp.to_owned());
        self.after_remote_description(Side::Pub, &publisher.pc, sdp)
            .await;
        let mut negotiated = Negotiated {
            video_mid: sdp::mid_of_first(sdp, "video").map(str::to_owned),
            ..Negotiated::default()
        };
        for track in &publisher.tracks {
            let parameters = track.sender.get_parameters().await?;
            negotiated.payload_types[track.kind.index()] = Some(
                parameters
                    .rtp_parameters
                    .codecs
                    .first()
                    .map(|c| c.payload_type)
                    .context("no codec negotiated")?,
            );
            if track.kind == Kind::Video {
                negotiated.video_extensions = parameters
                    .rtp_parameters
                    .header_extensions
                    .iter()
                    .map(|e| (e.uri.clone(), e.id as u8))
                    .collect();
            }
        }
        *publisher.negotiated.lock().expect("negotiated") = Some(negotiated);
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
            tokio::spawn(tracks::read_track(self.shared.clone(), track));
        } else {
            self.shared.problem("a remote track on the pub connection");
        }
    }
}
