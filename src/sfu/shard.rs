//! A shard: one event loop, on its own thread, that owns a UDP socket, an
//! ICE-TCP listener and every peer connection of the rooms pinned to it.
//!
//! The loop waits on four things: a datagram, a TCP frame (or a new TCP
//! connection), a command from signaling, and the earliest timeout any
//! `Rtc` asked for. Whatever wakes it is fed to the right `Rtc`, and that
//! `Rtc` is drained (`poll_output` until it returns a timeout, str0m's rule)
//! right away: datagrams go out on the socket, events go into a queue that is
//! handled before the loop waits again. A publisher's `RtpPacket` event is
//! written straight into each subscriber's `StreamTx`; the payload is shared
//! (`Arc`), so forwarding costs no task, lock, channel hop or heap
//! allocation of ours. A wake takes every datagram already waiting (up to a
//! batch) before the subscribers written to are drained, once each: under
//! load a burst costs one drain per subscriber, not one per packet.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::BweKind;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Rtc};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::keyframe::{is_h264_keyframe, is_vp8_keyframe};
use super::layers;
use super::peer::{Change, Peer, Published, Subscription, MAX_LAYERS};
use super::tcp::TcpConnections;
use super::{Command, ConnId, PeerEvent, ShardInput};
use crate::signal::message::{IceCandidate, Pc};

/// The largest datagram read from the socket.
const RECEIVE_BUFFER: usize = 2048;

/// The most datagrams one wake of the loop takes off the socket before it
/// forwards what they carried.
const RECEIVE_BATCH: usize = 32;

/// How far away "no timeout" is.
const IDLE: Duration = Duration::from_secs(3600);

/// Runs a shard on the current thread until it is told to shut down.
pub(super) fn run(
    index: usize,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    commands: mpsc::UnboundedReceiver<ShardInput>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime can be built");
    runtime.block_on(async move {
        let net = Net {
            udp: UdpSocket::from_std(udp).expect("a bound UDP socket"),
            tcp: TcpListener::from_std(tcp).expect("a bound TCP listener"),
            tcp_conns: TcpConnections::default(),
            udp_addr,
            tcp_addr,
        };
        let mut shard = Shard::new(index, net);
        shard.run(commands).await;
    });
}

/// The shard's sockets.
struct Net {
    udp: UdpSocket,
    tcp: TcpListener,
    tcp_conns: TcpConnections,
    /// The addresses candidates announce (and that str0m sees as the
    /// destination of what arrives).
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
}

impl Net {
    fn transmit(&self, t: &str0m::net::Transmit) {
        match t.proto {
            Protocol::Udp => {
                // A full socket buffer drops the datagram, as the network may.
                let _ = self.udp.try_send_to(&t.contents, t.destination);
            }
            Protocol::Tcp => {
                self.tcp_conns.send(t.destination, &t.contents);
            }
            _ => {}
        }
    }
}

/// An event that came out of one peer connection while it was drained.
struct Queued {
    conn: ConnId,
    pc: Pc,
    event: Event,
}

/// Drains `rtc` ([`super::drain`]): datagrams go out, events are queued.
/// A connection str0m gives up on is disconnected.
fn drain(rtc: &mut Rtc, conn: ConnId, pc: Pc, net: &Net, events: &mut VecDeque<Queued>) -> Instant {
    let drained = super::drain(
        rtc,
        |t| net.transmit(&t),
        |event| events.push_back(Queued { conn, pc, event }),
    );
    drained.unwrap_or_else(|error| {
        tracing::warn!(conn, ?pc, %error, "peer connection failed");
        rtc.disconnect();
        Instant::now() + IDLE
    })
}

enum Wake {
    Input(Option<ShardInput>),
    Datagram(usize, SocketAddr),
    TcpConnection(tokio::net::TcpStream, SocketAddr),
    TcpFrame(SocketAddr, bytes::BytesMut),
    Timeout,
    Nothing,
}

struct Shard {
    index: usize,
    net: Net,
    candidates: Vec<Candidate>,
    peers: HashMap<ConnId, Peer>,
    rooms: HashMap<Uuid, Vec<ConnId>>,
    /// Which peer connection a remote address belongs to, learned from the
    /// first packet str0m accepted from it.
    routes: HashMap<(Protocol, SocketAddr), (ConnId, Pc)>,
    events: VecDeque<Queued>,
    /// Subscribers written to since they were last drained: drained once
    /// per batch of datagrams, not once per forwarded packet.
    written: Vec<ConnId>,
    next_wake: Instant,
}

impl Shard {
    fn new(index: usize, net: Net) -> Shard {
        let mut candidates = Vec::new();
        match Candidate::host(net.udp_addr, "udp") {
            Ok(c) => candidates.push(c),
            Err(error) => tracing::error!(%error, addr = %net.udp_addr, "unusable UDP candidate"),
        }
        match Candidate::builder()
            .tcp()
            .host(net.tcp_addr)
            .tcptype(TcpType::Passive)
            .build()
        {
            Ok(c) => candidates.push(c),
            Err(error) => tracing::error!(%error, addr = %net.tcp_addr, "unusable TCP candidate"),
        }
        Shard {
            index,
            net,
            candidates,
            peers: HashMap::new(),
            rooms: HashMap::new(),
            routes: HashMap::new(),
            events: VecDeque::new(),
            written: Vec::new(),
            next_wake: Instant::now() + IDLE,
        }
    }

    async fn run(&mut self, mut commands: mpsc::UnboundedReceiver<ShardInput>) {
        let mut buf = vec![0u8; RECEIVE_BUFFER];
        loop {
            let wake = {
                let sleep = tokio::time::sleep_until(self.next_wake.into());
                let tcp_idle = self.net.tcp_conns.is_empty();
                tokio::select! {
                    input = commands.recv() => Wake::Input(input),
                    received = self.net.udp.recv_from(&mut buf) => match received {
                        Ok((n, source)) => Wake::Datagram(n, source),
                        Err(_) => Wake::Nothing,
                    },
                    accepted = self.net.tcp.accept() => match accepted {
                        Ok((stream, remote)) => Wake::TcpConnection(stream, remote),
                        Err(_) => Wake::Nothing,
                    },
                    Some((remote, frame)) = self.net.tcp_conns.next(), if !tcp_idle => match frame {
                        Ok(frame) => Wake::TcpFrame(remote, frame),
                        Err(_) => Wake::Nothing,
                    },
                    () = sleep => Wake::Timeout,
                }
            };
            let now = Instant::now();
            match wake {
                Wake::Input(Some(ShardInput::Command(command))) => self.on_command(now, command),
                Wake::Input(Some(ShardInput::Shutdown) | None) => {
                    self.close_all();
                    return;
                }
                Wake::Datagram(n, source) => {
                    let local = self.net.udp_addr;
                    self.on_datagram(now, Protocol::Udp, source, local, &buf[..n]);
                    // Whatever else is already waiting joins this batch, so
                    // that a burst (a video frame, many rooms at once) costs
                    // one drain per subscriber instead of one per packet.
                    for _ in 1..RECEIVE_BATCH {
                        let Ok((n, source)) = self.net.udp.try_recv_from(&mut buf) else {
                            break;
                        };
                        self.on_datagram(now, Protocol::Udp, source, local, &buf[..n]);
                    }
                }
                Wake::TcpConnection(stream, remote) => self.net.tcp_conns.accept(stream, remote),
                Wake::TcpFrame(remote, frame) => {
                    let local = self.net.tcp_addr;
                    self.on_datagram(now, Protocol::Tcp, remote, local, &frame);
                }
                Wake::Timeout => self.on_timeout(now),
                Wake::Nothing => {}
            }
            self.handle_events(now);
        }
    }

    fn rtc_mut(&mut self, conn: ConnId, pc: Pc) -> Option<&mut Rtc> {
        Some(self.peers.get_mut(&conn)?.connection(pc).0)
    }

    /// Drains one peer connection after a change to it.
    fn drain(&mut self, conn: ConnId, pc: Pc) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let (rtc, deadline) = peer.connection(pc);
        *deadline = drain(rtc, conn, pc, &self.net, &mut self.events);
        self.next_wake = self.next_wake.min(*deadline);
    }

    fn on_datagram(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        local: SocketAddr,
        data: &[u8],
    ) {
        let Ok(receive) = Receive::new(proto, source, local, data) else {
            return;
        };
        let input = Input::Receive(now, receive);
        let cached = self.routes.get(&(proto, source)).copied();
        let key = match cached {
            Some((conn, pc))
                if self.peers.get(&conn).is_some_and(|p| match pc {
                    Pc::Pub => p.publish.accepts(&input),
                    Pc::Sub => p.subscribe.accepts(&input),
                }) =>
            {
                (conn, pc)
            }
            _ => {
                let found = self.peers.iter().find_map(|(&conn, p)| {
                    if p.publish.accepts(&input) {
                        Some((conn, Pc::Pub))
                    } else if p.subscribe.accepts(&input) {
                        Some((conn, Pc::Sub))
                    } else {
                        None
                    }
                });
                let Some(key) = found else {
                    return;
                };
                self.routes.insert((proto, source), key);
                key
            }
        };
        // Any packet from the client's address is a sign of life.
        if let Some(peer) = self.peers.get(&key.0) {
            peer.sign_of_life.seen_now();
        }
        if let Some(rtc) = self.rtc_mut(key.0, key.1) {
            if let Err(error) = rtc.handle_input(input) {
                tracing::debug!(conn = key.0, pc = ?key.1, %error, "packet refused");
            }
        }
        self.drain(key.0, key.1);
    }

    fn on_timeout(&mut self, now: Instant) {
        let mut next = now + IDLE;
        for (&conn, peer) in self.peers.iter_mut() {
            for pc in [Pc::Pub, Pc::Sub] {
                let (rtc, deadline) = peer.connection(pc);
                if *deadline <= now {
                    let _ = rtc.handle_input(Input::Timeout(now));
                    *deadline = drain(rtc, conn, pc, &self.net, &mut self.events);
                }
                next = next.min(*deadline);
            }
        }
        self.next_wake = next;
    }

    /// Handles queued events, then drains the subscribers that forwarding
    /// wrote to (which may queue more events), until both are empty.
    fn handle_events(&mut self, now: Instant) {
        loop {
            self.handle_queued(now);
            if self.written.is_empty() {
                return;
            }
            let mut written = std::mem::take(&mut self.written);
            written.sort_unstable();
            written.dedup();
            for conn in written {
                self.drain(conn, Pc::Sub);
            }
            if self.events.is_empty() {
                return;
            }
        }
    }

    fn handle_queued(&mut self, now: Instant) {
        while let Some(Queued { conn, pc, event }) = self.events.pop_front() {
            match (pc, event) {
                (Pc::Pub, Event::RtpPacket(packet)) => self.forward(now, conn, packet),
                (_, Event::Connected) => self.on_connected(now, conn, pc),
                (_, Event::IceConnectionStateChange(IceConnectionState::Disconnected)) => {
                    if let Some(peer) = self.peers.get(&conn) {
                        peer.tell(PeerEvent::Disconnected { pc });
                    }
                }
                (Pc::Pub, Event::MediaAdded(added)) => {
                    if matches!(added.direction, Direction::RecvOnly | Direction::SendRecv) {
                        self.on_published(conn, added.mid, added.kind, added.simulcast);
                    }
                }
                (Pc::Pub, Event::MediaChanged(changed)) => {
                    if matches!(changed.direction, Direction::Inactive | Direction::SendOnly) {
                        self.on_unpublished(conn, changed.mid);
                    }
                }
                (Pc::Sub, Event::KeyframeRequest(request)) => {
                    self.on_keyframe_request(now, conn, request.mid);
                }
                (
                    Pc::Sub,
                    Event::EgressBitrateEstimate(
                        BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. },
                    ),
                ) => {
                    if let Some(peer) = self.peers.get_mut(&conn) {
                        peer.egress_bps = estimate.as_u64();
                    }
                }
                _ => {}
            }
        }
    }

    fn on_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Join {
                conn,
                room,
                participant,
                events,
                sign_of_life,
            } => self.on_join(now, conn, room, participant, events, sign_of_life),
            Command::Offer { conn, pc, sdp } => self.on_offer(conn, pc, &sdp),
            Command::Answer { conn, pc, sdp } => self.on_answer(now, conn, pc, &sdp),
            Command::Candidate {
                conn,
                pc,
                candidate,
            } => {
                let Some(line) = candidate else { return };
                let line = line.trim().trim_start_matches("a=");
                match Candidate::from_sdp_string(line) {
                    Ok(candidate) => {
                        if let Some(rtc) = self.rtc_mut(conn, pc) {
                            rtc.add_remote_candidate(candidate);
                            self.drain(conn, pc);
                        }
                    }
                    // mDNS (.local) and other candidates an ICE-lite server
                    // does not need: it learns addresses from the checks.
                    Err(_) => tracing::debug!(conn, ?pc, "remote candidate ignored"),
                }
            }
            Command::Leave { conn } => self.on_leave(conn),
            Command::SetGroup { conn, group } => {
                let Some(peer) = self.peers.get_mut(&conn) else {
                    return;
                };
                if peer.group != group {
                    peer.group = group;
                    let room = peer.room;
                    self.resync(room);
                }
            }
            Command::Block {
                conn,
                kind,
                blocked,
            } => {
                let kind = match kind {
                    crate::signal::message::MediaKind::Audio => MediaKind::Audio,
                    crate::signal::message::MediaKind::Video => MediaKind::Video,
                };
                let Some(peer) = self.peers.get_mut(&conn) else {
                    return;
                };
                peer.blocked[usize::from(kind == MediaKind::Video)] = blocked;
                if !blocked && kind == MediaKind::Video {
                    // Subscribers need a keyframe to show the video again.
                    let tracks: Vec<Mid> = peer
                        .published
                        .iter()
                        .filter(|t| t.kind == kind)
                        .map(|t| t.mid)
                        .collect();
                    for mid in tracks {
                        self.request_keyframe(now, conn, mid, None);
                    }
                }
            }
        }
    }

    fn on_join(
        &mut self,
        now: Instant,
        conn: ConnId,
        room: Uuid,
        participant: String,
        events: mpsc::UnboundedSender<PeerEvent>,
        sign_of_life: super::SignOfLife,
    ) {
        let mut peer = Peer::new(
            now,
            room,
            participant,
            events,
            sign_of_life,
            &self.candidates,
        );
        let members = self.rooms.entry(room).or_default();
        for other in members.iter() {
            let Some(publisher) = self.peers.get(other) else {
                continue;
            };
            for track in &publisher.published {
                peer.wanted.push(Change::Add {
                    publisher: *other,
                    participant: publisher.participant.clone(),
                    source: track.mid,
                    kind: track.kind,
                });
            }
        }
        members.push(conn);
        tracing::debug!(shard = self.index, conn, room = %room, "peer joined");
        self.peers.insert(conn, peer);
        self.drain(conn, Pc::Pub);
        self.negotiate(conn);
    }

    fn on_leave(&mut self, conn: ConnId) {
        let Some(mut peer) = self.peers.remove(&conn) else {
            return;
        };
        peer.publish.disconnect();
        peer.subscribe.disconnect();
        self.routes.retain(|_, (c, _)| *c != conn);
        let members = match self.rooms.get_mut(&peer.room) {
            Some(members) => {
                members.retain(|&c| c != conn);
                members.clone()
            }
            None => Vec::new(),
        };
        if members.is_empty() {
            self.rooms.remove(&peer.room);
        }
        for other in members {
            if let Some(subscriber) = self.peers.get_mut(&other) {
                drop_publisher(subscriber, conn, None);
            }
            self.negotiate(other);
        }
        tracing::debug!(shard = self.index, conn, "peer left");
    }

    /// A participant started publishing a track: offer it to everyone else.
    fn on_published(
        &mut self,
        conn: ConnId,
        mid: Mid,
        kind: MediaKind,
        simulcast: Option<str0m::media::Simulcast>,
    ) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if peer.published.iter().any(|t| t.mid == mid) {
            return;
        }
        let mut track = Published {
            mid,
            kind,
            layers: Vec::new(),
        };
        if let Some(simulcast) = simulcast {
            for layer in simulcast.recv.iter().take(MAX_LAYERS) {
                track.layers.push(super::peer::Layer {
                    rid: Some(layer.rid),
                    ..Default::default()
                });
            }
        }
        peer.published.push(track);
        let participant = peer.participant.clone();
        let group = peer.group;
        let members = self.rooms.get(&peer.room).cloned().unwrap_or_default();
        for other in members.into_iter().filter(|&c| c != conn) {
            if let Some(subscriber) = self.peers.get_mut(&other).filter(|s| s.group == group) {
                subscriber.wanted.push(Change::Add {
                    publisher: conn,
                    participant: participant.clone(),
                    source: mid,
                    kind,
                });
            }
            self.negotiate(other);
        }
    }

    /// A participant stopped publishing a track (renegotiated it away).
    fn on_unpublished(&mut self, conn: ConnId, mid: Mid) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let before = peer.published.len();
        peer.published.retain(|t| t.mid != mid);
        if peer.published.len() == before {
            return;
        }
        let members = self.rooms.get(&peer.room).cloned().unwrap_or_default();
        for other in members.into_iter().filter(|&c| c != conn) {
            if let Some(subscriber) = self.peers.get_mut(&other) {
                drop_publisher(subscriber, conn, Some(mid));
            }
            self.negotiate(other);
        }
    }

    /// Makes every peer of `room` subscribe to exactly the tracks of the
    /// other peers in its group (after a breakout starts or ends).
    fn resync(&mut self, room: Uuid) {
        let members = self.rooms.get(&room).cloned().unwrap_or_default();
        let tracks: Vec<(ConnId, u32, String, Mid, MediaKind)> = members
            .iter()
            .filter_map(|c| self.peers.get(c).map(|p| (c, p)))
            .flat_map(|(c, p)| {
                p.published
                    .iter()
                    .map(move |t| (*c, p.group, p.participant.clone(), t.mid, t.kind))
            })
            .collect();
        for &conn in &members {
            let Some(subscriber) = self.peers.get_mut(&conn) else {
                continue;
            };
            for (publisher, group, participant, source, kind) in &tracks {
                if *publisher == conn {
                    continue;
                }
                let subscribed = subscriber
                    .subscriptions
                    .iter()
                    .any(|s| s.publisher == *publisher && s.source == *source)
                    || subscriber.wanted.iter().any(|c| {
                        matches!(c, Change::Add { publisher: p, source: m, .. } if p == publisher && m == source)
                    });
                if *group == subscriber.group && !subscribed {
                    subscriber.wanted.push(Change::Add {
                        publisher: *publisher,
                        participant: participant.clone(),
                        source: *source,
                        kind: *kind,
                    });
                } else if *group != subscriber.group && subscribed {
                    drop_publisher(subscriber, *publisher, Some(*source));
                }
            }
            self.negotiate(conn);
        }
    }

    /// Sends the subscriber a new `sub` offer when changes wait and no offer
    /// is outstanding (str0m allows one pending offer at a time).
    fn negotiate(&mut self, conn: ConnId) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if peer.pending.is_some() || peer.wanted.is_empty() {
            return;
        }
        let mut api = peer.subscribe.sdp_api();
        for change in peer.wanted.drain(..) {
            match change {
                Change::Add {
                    publisher,
                    participant,
                    source,
                    kind,
                } => {
                    let kind_name = if kind == MediaKind::Audio {
                        "audio"
                    } else {
                        "video"
                    };
                    // Unique per publishing connection: a participant who
                    // rejoins publishes new tracks, not the old ones again.
                    let track_id = format!("{participant}-{kind_name}-{publisher}-{source}");
                    let mid = api.add_media(
                        kind,
                        Direction::SendOnly,
                        Some(participant),
                        Some(track_id),
                        None,
                    );
                    peer.subscriptions.push(Subscription {
                        publisher,
                        source,
                        mid,
                        kind,
                        negotiated: false,
                        rewriter: Default::default(),
                        layer: None,
                        target: None,
                    });
                }
                Change::Deactivate { mid } => {
                    api.set_direction(mid, Direction::Inactive);
                }
            }
        }
        if let Some((offer, pending)) = api.apply() {
            peer.pending = Some(pending);
            let sdp = offer.to_sdp_string();
            peer.tell(PeerEvent::Offer {
                pc: Pc::Sub,
                sdp: sdp.clone(),
            });
            trickle(peer, Pc::Sub, &sdp, &self.candidates);
        }
        self.drain(conn, Pc::Sub);
    }

    fn on_offer(&mut self, conn: ConnId, pc: Pc, sdp: &str) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if pc == Pc::Sub {
            peer.tell(PeerEvent::Rejected {
                code: "bad_state",
                message: "the server makes the offers for the sub connection; answer them".into(),
            });
            return;
        }
        let offer = match SdpOffer::from_sdp_string(sdp) {
            Ok(offer) => offer,
            Err(error) => {
                peer.tell(PeerEvent::Rejected {
                    code: "bad_message",
                    message: format!("the pub offer is not valid SDP: {error}"),
                });
                return;
            }
        };
        match peer.publish.sdp_api().accept_offer(offer) {
            Ok(answer) => {
                let sdp = answer.to_sdp_string();
                peer.tell(PeerEvent::Answer {
                    pc: Pc::Pub,
                    sdp: sdp.clone(),
                });
                trickle(peer, Pc::Pub, &sdp, &self.candidates);
            }
            Err(error) => peer.tell(PeerEvent::Rejected {
                code: "bad_message",
                message: format!("the pub offer cannot be accepted: {error}"),
            }),
        }
        self.drain(conn, Pc::Pub);
    }

    fn on_answer(&mut self, now: Instant, conn: ConnId, pc: Pc, sdp: &str) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let pending = match (pc, peer.pending.take()) {
            (Pc::Sub, Some(pending)) => pending,
            (_, pending) => {
                peer.pending = pending;
                peer.tell(PeerEvent::Rejected {
                    code: "bad_state",
                    message: "no offer is waiting for this answer".into(),
                });
                return;
            }
        };
        let accepted = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| e.to_string())
            .and_then(|answer| {
                peer.subscribe
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .map_err(|e| e.to_string())
            });
        let mut fresh_videos = Vec::new();
        match accepted {
            Ok(()) => {
                for sub in peer.subscriptions.iter_mut().filter(|s| !s.negotiated) {
                    sub.negotiated = true;
                    if sub.kind == MediaKind::Video {
                        fresh_videos.push((sub.publisher, sub.source));
                    }
                }
            }
            Err(error) => {
                // The offer is void: offer its new tracks again.
                peer.tell(PeerEvent::Rejected {
                    code: "bad_message",
                    message: format!("the sub answer cannot be accepted: {error}"),
                });
                let lost: Vec<Subscription> = {
                    let (lost, kept) = std::mem::take(&mut peer.subscriptions)
                        .into_iter()
                        .partition(|s| !s.negotiated);
                    peer.subscriptions = kept;
                    lost
                };
                for sub in lost {
                    let participant = self
                        .peers
                        .get(&sub.publisher)
                        .map(|p| p.participant.clone());
                    if let (Some(participant), Some(peer)) =
                        (participant, self.peers.get_mut(&conn))
                    {
                        peer.wanted.push(Change::Add {
                            publisher: sub.publisher,
                            participant,
                            source: sub.source,
                            kind: sub.kind,
                        });
                    }
                }
            }
        }
        self.drain(conn, Pc::Sub);
        if self.peers.get(&conn).is_some_and(|p| p.subscribe_connected) {
            for (publisher, source) in fresh_videos {
                self.request_keyframe(now, publisher, source, None);
            }
        }
        self.negotiate(conn);
    }

    fn on_connected(&mut self, now: Instant, conn: ConnId, pc: Pc) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        peer.tell(PeerEvent::Connected { pc });
        if pc == Pc::Sub {
            peer.subscribe_connected = true;
            let videos: Vec<(ConnId, Mid)> = peer
                .subscriptions
                .iter()
                .filter(|s| s.kind == MediaKind::Video && s.negotiated)
                .map(|s| (s.publisher, s.source))
                .collect();
            for (publisher, source) in videos {
                self.request_keyframe(now, publisher, source, None);
            }
        }
    }

    fn on_keyframe_request(&mut self, now: Instant, conn: ConnId, mid: Mid) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        let Some(sub) = peer.subscriptions.iter().find(|s| s.mid == mid) else {
            return;
        };
        let (publisher, source, layer) = (sub.publisher, sub.source, sub.layer.or(sub.target));
        self.request_keyframe(now, publisher, source, layer);
    }

    /// Asks a publisher for a keyframe of one track (and layer), at most once
    /// per [`super::keyframe::REQUEST_INTERVAL`].
    fn request_keyframe(
        &mut self,
        now: Instant,
        publisher: ConnId,
        source: Mid,
        layer: Option<usize>,
    ) {
        let Some(peer) = self.peers.get_mut(&publisher) else {
            return;
        };
        let Some(track) = peer.published.iter_mut().find(|t| t.mid == source) else {
            return;
        };
        let layers: Vec<usize> = match layer {
            Some(l) => vec![l],
            None => (0..track.layers.len().max(1)).collect(),
        };
        let mut requested = false;
        for l in layers {
            if track.layers.is_empty() {
                track.layers.push(Default::default());
            }
            let Some(entry) = track.layers.get_mut(l) else {
                continue;
            };
            if !entry.keyframes.allow(now) {
                continue;
            }
            let rid = entry.rid;
            if let Some(rx) = peer.publish.direct_api().stream_rx_by_mid(source, rid) {
                rx.request_keyframe(KeyframeRequestKind::Pli);
                requested = true;
            }
        }
        if requested {
            self.drain(publisher, Pc::Pub);
        }
    }

    /// Forwards one packet of `publisher` to every subscriber in its room.
    fn forward(&mut self, now: Instant, publisher: ConnId, packet: RtpPacket) {
        let Some(peer) = self.peers.get_mut(&publisher) else {
            return;
        };
        let ssrc = packet.header.ssrc;
        // The track and layer of this SSRC: learned once per SSRC.
        let known = peer
            .published
            .iter()
            .position(|t| t.layers.iter().any(|l| l.ssrc == Some(ssrc)));
        let (track_index, rid) = match known {
            Some(i) => (i, None),
            None => {
                let (mid, rid) = match peer.publish.direct_api().stream_rx(&ssrc) {
                    Some(rx) => (rx.mid(), rx.rid()),
                    None => return,
                };
                match peer.published.iter().position(|t| t.mid == mid) {
                    Some(i) => (i, rid),
                    None => return,
                }
            }
        };
        let Some(params) = peer
            .publish
            .codec_config()
            .params()
            .iter()
            .find(|p| p.pt() == packet.header.payload_type)
            .copied()
        else {
            return;
        };
        let track = &mut peer.published[track_index];
        let Some(layer) = track.layer_of(ssrc, rid) else {
            return;
        };
        track.layers[layer].meter.add(now, packet.payload.len());
        let (rates, layer_count) = track.rates();
        let source = track.mid;
        let kind = track.kind;
        let simulcast = layer_count > 1;
        let keyframe = simulcast
            && match params.spec().codec {
                Codec::Vp8 => is_vp8_keyframe(&packet.payload),
                Codec::H264 => is_h264_keyframe(&packet.payload),
                _ => false,
            };
        if peer.is_blocked(kind) {
            return;
        }
        let ts_step = if kind == MediaKind::Audio { 960 } else { 3000 };
        let room = peer.room;
        let group = peer.group;
        let mut wanted_keyframes = [false; MAX_LAYERS];

        let Some(members) = self.rooms.get(&room) else {
            return;
        };
        let room_size = members.len();
        for &conn in members {
            if conn == publisher {
                continue;
            }
            let Some(subscriber) = self.peers.get_mut(&conn) else {
                continue;
            };
            if !subscriber.subscribe_connected || subscriber.group != group {
                continue;
            }
            let budget = subscriber.egress_bps / subscriber.video_subscriptions().max(1) as u64;
            let Some(sub) = subscriber
                .subscriptions
                .iter_mut()
                .find(|s| s.publisher == publisher && s.source == source && s.negotiated)
            else {
                continue;
            };
            if simulcast {
                let choice = layers::choose(&rates[..layer_count], room_size, budget);
                sub.target = if choice == sub.layer { None } else { choice };
                if let Some(target) = sub.target {
                    if target == layer && keyframe {
                        sub.layer = Some(target);
                        sub.target = None;
                    } else {
                        wanted_keyframes[target] = true;
                    }
                }
                if sub.layer != Some(layer) {
                    continue;
                }
            }
            let Some(out_pt) = subscriber
                .subscribe
                .codec_config()
                .match_params(params)
                .map(|p| p.pt())
            else {
                continue;
            };
            let Some(out) =
                sub.rewriter
                    .rewrite(*ssrc, *packet.seq_no, packet.header.timestamp, ts_step)
            else {
                continue;
            };
            let mut api = subscriber.subscribe.direct_api();
            let Some(tx) = api.stream_tx_by_mid(sub.mid, None) else {
                continue;
            };
            tx.write_rtp(
                RtpWrite::new(
                    out_pt,
                    out.seq.into(),
                    out.timestamp,
                    packet.timestamp,
                    packet.payload.clone(),
                )
                .marker(packet.header.marker)
                .nackable(kind == MediaKind::Video),
            );
            self.written.push(conn);
        }
        for (layer, wanted) in wanted_keyframes.into_iter().enumerate() {
            if wanted {
                self.request_keyframe(now, publisher, source, Some(layer));
            }
        }
    }

    /// Closes every peer connection (DTLS close_notify) before the shard ends.
    fn close_all(&mut self) {
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for conn in conns {
            if let Some(peer) = self.peers.get_mut(&conn) {
                let _ = peer.publish.close();
                let _ = peer.subscribe.close();
            }
            self.drain(conn, Pc::Pub);
            self.drain(conn, Pc::Sub);
        }
        self.peers.clear();
        self.rooms.clear();
        tracing::debug!(shard = self.index, "media shard stopped");
    }
}

/// Removes from `subscriber` what it receives from `publisher` (one track,
/// or all of them), queueing the m-lines to become inactive.
fn drop_publisher(subscriber: &mut Peer, publisher: ConnId, only: Option<Mid>) {
    let matches = |p: ConnId, m: Mid| p == publisher && only.is_none_or(|o| o == m);
    subscriber
        .wanted
        .retain(|c| !matches!(c, Change::Add { publisher: p, source, .. } if matches(*p, *source)));
    let mut kept = Vec::with_capacity(subscriber.subscriptions.len());
    for sub in subscriber.subscriptions.drain(..) {
        if matches(sub.publisher, sub.source) {
            subscriber.wanted.push(Change::Deactivate { mid: sub.mid });
        } else {
            kept.push(sub);
        }
    }
    subscriber.subscriptions = kept;
}

/// Sends the shard's candidates as trickle messages once per peer
/// connection (they are also in the SDP), then the end of candidates.
fn trickle(peer: &mut Peer, pc: Pc, sdp: &str, candidates: &[Candidate]) {
    let done = match pc {
        Pc::Pub => &mut peer.trickled_pub,
        Pc::Sub => &mut peer.trickled_sub,
    };
    if *done {
        return;
    }
    *done = true;
    let mid = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .map(|m| m.trim().to_owned());
    for candidate in candidates {
        peer.tell(PeerEvent::Candidate {
            pc,
            candidate: Some(IceCandidate {
                candidate: candidate.to_sdp_string(),
                sdp_mid: mid.clone(),
                sdp_mline_index: Some(0),
                username_fragment: None,
            }),
        });
    }
    peer.tell(PeerEvent::Candidate {
        pc,
        candidate: None,
    });
}
