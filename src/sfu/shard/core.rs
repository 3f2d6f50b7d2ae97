//! The shard's sans-I/O core: every peer connection of the shard's rooms and
//! every decision about them, with no socket, channel receiver or clock.
//!
//! Input goes in with the time it happened (a datagram, a signaling
//! command, a timeout); out come datagrams to send ([`ShardCore::poll_transmit`]),
//! events for each connection (on the channel its `Join` gave) and when the
//! core next wants a timeout ([`ShardCore::poll_timeout`]). The loop around
//! it ([`super::run`]) only moves bytes, commands and time in and
//! datagrams out, and the unit tests drive it with str0m clients in memory.
//!
//! Inputs are fed one by one and then acted on together by
//! [`ShardCore::flush`]: a batch of datagrams (a video frame, many rooms at
//! once) costs one drain per subscriber written to, not one per packet.
//! What the inputs decide lives in [`super::negotiate`] (peers, tracks and
//! SDP) and [`super::forward`] (media and keyframe requests); this file
//! routes datagrams by address and dispatches events.
//!
//! Only an ICE binding request for one of the shard's connections opens a
//! route from a new address ([`ShardCore::route`]): whatever else comes
//! from an address no connection has validated (junk, a flood of DTLS
//! ClientHellos) costs one parse and one map lookup, and no connection
//! sees it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use str0m::bwe::{Bitrate, BweKind};
use str0m::ice::StunMessage;
use str0m::media::Direction;
use str0m::net::{Protocol, Receive, TcpType, Transmit};
use str0m::{Candidate, Event, IceConnectionState, Input, Rtc};
use uuid::Uuid;

use crate::sfu::layers;
use crate::sfu::peer::{Peer, INITIAL_ESTIMATE_BPS};
use crate::sfu::{Command, ConnId, Pc, PeerEvent};

/// How far away "no timeout" is: an idle shard (no peers, or none that
/// asked) still wakes once an hour, which costs nothing and keeps the
/// deadline a plain `Instant` rather than an `Option`.
pub(super) const IDLE: Duration = Duration::from_secs(3600);

/// An event that came out of one peer connection while it was drained.
pub(super) struct Queued {
    pub conn: ConnId,
    pub pc: Pc,
    pub event: Event,
}

pub(crate) struct ShardCore {
    pub(super) index: usize,
    /// The shard's own ICE candidates (its UDP socket and ICE-TCP listener).
    pub(super) candidates: Vec<Candidate>,
    pub(super) peers: HashMap<ConnId, Peer>,
    /// The connections of each room on this shard, in order of arrival.
    pub(super) rooms: HashMap<Uuid, Vec<ConnId>>,
    /// Which peer connection a remote address belongs to, learned from the
    /// first packet str0m accepted from it.
    pub(super) routes: HashMap<(Protocol, SocketAddr), (ConnId, Pc)>,
    /// Which peer connection each of the shard's local ICE username
    /// fragments belongs to: a binding request names its connection.
    pub(super) ufrags: HashMap<String, (ConnId, Pc)>,
    /// Events of drained connections, waiting for [`ShardCore::flush`].
    pub(super) events: VecDeque<Queued>,
    /// Subscribers written to since they were last drained: drained once
    /// per batch of datagrams, not once per forwarded packet.
    pub(super) written: Vec<ConnId>,
    /// Datagrams to send, in order.
    pub(super) transmits: VecDeque<Transmit>,
    /// What forwarding did since the loop last took it (for the metrics,
    /// once per batch).
    pub(super) forwarded: crate::metrics::shard::Forwarded,
    pub(super) next_wake: Instant,
    /// The wall-clock time that corresponds to an `Instant`, as last told
    /// by the loop ([`ShardCore::sync_wall_clock`]): signs of life are
    /// wall-clock times because attendance is.
    wall_clock: (Instant, DateTime<Utc>),
}

impl ShardCore {
    /// A shard with no peers whose candidates announce `udp`, `tcp` and,
    /// when the HTTPS port also takes ICE-TCP, `https`.
    pub(crate) fn new(
        index: usize,
        udp: SocketAddr,
        tcp: SocketAddr,
        https: Option<SocketAddr>,
        now: Instant,
    ) -> ShardCore {
        let mut candidates = Vec::new();
        match Candidate::host(udp, "udp") {
            Ok(c) => candidates.push(c),
            Err(error) => tracing::error!(%error, addr = %udp, "unusable UDP candidate"),
        }
        for tcp in std::iter::once(tcp).chain(https) {
            match Candidate::builder()
                .tcp()
                .host(tcp)
                .tcptype(TcpType::Passive)
                .build()
            {
                Ok(c) => candidates.push(c),
                Err(error) => tracing::error!(%error, addr = %tcp, "unusable TCP candidate"),
            }
        }
        ShardCore {
            index,
            candidates,
            peers: HashMap::new(),
            rooms: HashMap::new(),
            routes: HashMap::new(),
            ufrags: HashMap::new(),
            events: VecDeque::new(),
            written: Vec::new(),
            transmits: VecDeque::new(),
            forwarded: Default::default(),
            next_wake: now + IDLE,
            wall_clock: (now, DateTime::<Utc>::UNIX_EPOCH),
        }
    }

    /// Tells the core which wall-clock time `now` is. The loop calls it once
    /// per wake, so the core itself never reads a clock.
    pub(crate) fn sync_wall_clock(&mut self, now: Instant, wall: DateTime<Utc>) {
        self.wall_clock = (now, wall);
    }

    fn wall(&self, now: Instant) -> DateTime<Utc> {
        let (base, wall) = self.wall_clock;
        match now.checked_duration_since(base) {
            Some(later) => wall + later,
            None => wall - (base - now),
        }
    }

    /// The next datagram to send.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`ShardCore::handle_timeout`] is next due.
    pub(crate) fn poll_timeout(&self) -> Instant {
        self.next_wake
    }

    /// Feeds one datagram (or ICE-TCP frame) that `source` sent to the
    /// shard's `destination` to the peer connection it belongs to; one that
    /// belongs to none is dropped. Its events wait for [`ShardCore::flush`].
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let Ok(receive) = Receive::new(proto, source, destination, data) else {
            return;
        };
        let input = Input::Receive(now, receive);
        let Some((conn, pc)) = self.route(proto, source, data, &input) else {
            return;
        };
        let wall = self.wall(now);
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        // Any packet from the client's address is a sign of life: stamped
        // in the same lookup that hands the packet on (one relaxed atomic
        // max per packet).
        peer.sign_of_life.seen(wall);
        if let Err(error) = peer.connection(pc).0.handle_input(input) {
            tracing::debug!(conn, ?pc, %error, "packet refused");
        }
        self.drain(now, conn, pc);
    }

    /// The peer connection a datagram from `source` belongs to: the one
    /// learned for that address while it still accepts it, otherwise (a new
    /// address, or ICE moved to another) the one a binding request's
    /// USERNAME names, if it accepts it. An ICE-lite server learns every
    /// path a client uses from a binding request the client sends on it,
    /// so nothing else needs a route from a new address.
    fn route(
        &mut self,
        proto: Protocol,
        source: SocketAddr,
        data: &[u8],
        input: &Input,
    ) -> Option<(ConnId, Pc)> {
        let accepts = |peer: &Peer, pc: Pc| match pc {
            Pc::Pub => peer.publish.accepts(input),
            Pc::Sub => peer.subscribe.accepts(input),
        };
        if let Some(&(conn, pc)) = self.routes.get(&(proto, source)) {
            if self.peers.get(&conn).is_some_and(|p| accepts(p, pc)) {
                return Some((conn, pc));
            }
        }
        let stun = StunMessage::parse(data).ok()?;
        let (local, _remote) = stun.split_username()?;
        let found = *self.ufrags.get(local)?;
        if !self
            .peers
            .get(&found.0)
            .is_some_and(|p| accepts(p, found.1))
        {
            return None;
        }
        self.routes.insert((proto, source), found);
        Some(found)
    }

    /// Applies a command from signaling. Its events wait for
    /// [`ShardCore::flush`].
    pub(crate) fn handle_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Join { conn, joining } => self.on_join(now, conn, joining),
            Command::Offer { conn, pc, sdp } => self.on_offer(now, conn, pc, &sdp),
            Command::Answer { conn, pc, sdp } => self.on_answer(now, conn, pc, &sdp),
            Command::Candidate {
                conn,
                pc,
                candidate,
            } => self.on_candidate(now, conn, pc, candidate),
            Command::Leave { conn } => self.on_leave(now, conn),
            Command::SetGroup { conn, group } => self.on_set_group(now, conn, group),
            Command::Block {
                conn,
                kind,
                blocked,
            } => self.on_block(now, conn, kind, blocked),
            Command::Prefer { conn, layers } => self.on_prefer(conn, layers),
        }
    }

    /// Gives every peer connection whose timeout is due its timeout.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let mut next = now + IDLE;
        for (&conn, peer) in self.peers.iter_mut() {
            for pc in [Pc::Pub, Pc::Sub] {
                let (rtc, deadline) = peer.connection(pc);
                if *deadline <= now {
                    let _ = rtc.handle_input(Input::Timeout(now));
                    *deadline = drain(rtc, now, conn, pc, &mut self.transmits, &mut self.events);
                }
                next = next.min(*deadline);
            }
        }
        self.next_wake = next;
    }

    /// Acts on what the inputs since the last flush produced: forwards the
    /// media that arrived, answers connection events, then drains every
    /// subscriber that forwarding wrote to, until nothing is left. Call it
    /// after each input or batch of inputs, before taking the transmits.
    pub(crate) fn flush(&mut self, now: Instant) {
        loop {
            self.handle_queued(now);
            if self.written.is_empty() {
                return;
            }
            let mut written = std::mem::take(&mut self.written);
            written.sort_unstable();
            written.dedup();
            for &conn in &written {
                self.drain(now, conn, Pc::Sub);
            }
            // Give the allocation back: forwarding fills it again.
            written.clear();
            self.written = written;
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
                        self.on_published(now, conn, added.mid, added.kind, added.simulcast);
                    }
                }
                (Pc::Pub, Event::MediaChanged(changed)) => {
                    if matches!(changed.direction, Direction::Inactive | Direction::SendOnly) {
                        self.on_unpublished(now, conn, changed.mid);
                    }
                }
                (Pc::Sub, Event::KeyframeRequest(request)) => {
                    self.on_keyframe_request(now, conn, request.mid);
                }
                (Pc::Sub, Event::MediaEgressStats(stats)) => {
                    if let (Some(loss), Some(peer)) = (stats.loss, self.peers.get_mut(&conn)) {
                        if loss >= layers::CONGESTED_LOSS {
                            peer.congested_at = Some(now);
                        }
                        if let Some(estimate) = peer.loss_estimate.as_mut() {
                            estimate.on_report(now, loss);
                            let limit = estimate.limit().unwrap_or(INITIAL_ESTIMATE_BPS);
                            if limit != peer.egress_bps {
                                tracing::debug!(conn = ?conn, bps = limit, "egress limit from loss");
                            }
                            peer.egress_bps = limit;
                        }
                    }
                }
                (
                    Pc::Sub,
                    Event::EgressBitrateEstimate(
                        BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. },
                    ),
                ) => {
                    if let Some(peer) = self.peers.get_mut(&conn) {
                        peer.egress_bps = estimate.as_u64();
                        tracing::debug!(conn = ?conn, bps = peer.egress_bps, "egress estimate");
                        // A congested link below its best layers probes for
                        // them: the estimate grows only with traffic to
                        // measure. Nobody else pads: a group room's small
                        // tiles are small by choice, not for want of
                        // bandwidth.
                        let (sustain, best) = if peer.congested_at.is_some() {
                            peer.wanted_bitrate()
                        } else {
                            (0, 0)
                        };
                        if peer.bwe_wanted != (sustain, best) {
                            peer.bwe_wanted = (sustain, best);
                            peer.subscribe
                                .bwe()
                                .set_bitrate(Bitrate::bps(sustain), Bitrate::bps(best));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Closes every peer connection (DTLS close_notify, which goes out with
    /// the transmits) before the shard ends.
    pub(crate) fn close_all(&mut self, now: Instant) {
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for conn in conns {
            if let Some(peer) = self.peers.get_mut(&conn) {
                let _ = peer.publish.close();
                let _ = peer.subscribe.close();
            }
            self.drain(now, conn, Pc::Pub);
            self.drain(now, conn, Pc::Sub);
        }
        self.peers.clear();
        self.rooms.clear();
        self.routes.clear();
        self.ufrags.clear();
        self.events.clear();
        tracing::debug!(shard = self.index, "media shard stopped");
    }

    pub(super) fn rtc_mut(&mut self, conn: ConnId, pc: Pc) -> Option<&mut Rtc> {
        Some(self.peers.get_mut(&conn)?.connection(pc).0)
    }

    /// Drains one peer connection after a change to it.
    pub(super) fn drain(&mut self, now: Instant, conn: ConnId, pc: Pc) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let (rtc, deadline) = peer.connection(pc);
        *deadline = drain(rtc, now, conn, pc, &mut self.transmits, &mut self.events);
        self.next_wake = self.next_wake.min(*deadline);
    }
}

/// Drains `rtc` ([`crate::sfu::drain`]): datagrams join the transmits,
/// events the queue. A connection str0m gives up on is disconnected.
fn drain(
    rtc: &mut Rtc,
    now: Instant,
    conn: ConnId,
    pc: Pc,
    transmits: &mut VecDeque<Transmit>,
    events: &mut VecDeque<Queued>,
) -> Instant {
    let drained = crate::sfu::drain::drain_at(
        rtc,
        now,
        |t| transmits.push_back(t),
        |event| events.push_back(Queued { conn, pc, event }),
    );
    drained.unwrap_or_else(|error| {
        tracing::warn!(conn, ?pc, %error, "peer connection failed");
        rtc.disconnect();
        now + IDLE
    })
}
