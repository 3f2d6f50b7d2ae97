//! Peers and their SDP: joining and leaving, the client's `pub` offer, the
//! server-driven `sub` offers and their answers, tracks appearing and going,
//! groups (breakouts) and blocked kinds.
//!
//! `sub` negotiation is driven by the server: changes (a track to add, an
//! m-line to deactivate) queue per subscriber ([`Peer::wanted`]) and become
//! one offer when no offer is outstanding (str0m allows one at a time); the
//! answer releases the next.

use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid, Simulcast};
use str0m::Candidate;
use uuid::Uuid;

use super::core::ShardCore;
use crate::sfu::peer::{Change, Layer, Peer, Published, Subscription, MAX_LAYERS};
use crate::sfu::{ConnId, IceCandidate, Joining, Pc, PeerEvent};
use tandem_protocol::ErrorCode;

/// The m-line index a trickled candidate names: the first, whose `a=mid` it
/// names too. ICE runs once per connection (BUNDLE), so any m-line of it
/// would do; the first always exists.
const TRICKLE_MLINE_INDEX: u16 = 0;

impl ShardCore {
    pub(super) fn on_join(&mut self, now: Instant, conn: ConnId, joining: Joining) {
        let room = joining.room;
        let mut peer = Peer::new(now, joining, self.index, &self.candidates);
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
        for pc in [Pc::Pub, Pc::Sub] {
            let ufrag = peer
                .connection(pc)
                .0
                .direct_api()
                .local_ice_credentials()
                .ufrag;
            self.ufrags.insert(ufrag, (conn, pc));
        }
        self.peers.insert(conn, peer);
        self.drain(now, conn, Pc::Pub);
        self.negotiate(now, conn);
    }

    pub(super) fn on_leave(&mut self, now: Instant, conn: ConnId) {
        let Some(mut peer) = self.peers.remove(&conn) else {
            return;
        };
        peer.publish.disconnect();
        peer.subscribe.disconnect();
        self.routes.retain(|_, (c, _)| *c != conn);
        self.ufrags.retain(|_, (c, _)| *c != conn);
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
            self.negotiate(now, other);
        }
        tracing::debug!(shard = self.index, conn, "peer left");
    }

    /// The client's offer for its `pub` connection: answered at once.
    pub(super) fn on_offer(&mut self, now: Instant, conn: ConnId, pc: Pc, sdp: &str) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if pc == Pc::Sub {
            peer.tell(PeerEvent::Rejected {
                code: ErrorCode::BadState,
                message: "the server makes the offers for the sub connection; answer them".into(),
            });
            return;
        }
        if let Err(message) = check_fingerprint(sdp) {
            peer.tell(PeerEvent::Rejected {
                code: ErrorCode::BadMessage,
                message: format!("the pub offer is refused: {message}"),
            });
            return;
        }
        let offer = match SdpOffer::from_sdp_string(sdp) {
            Ok(offer) => offer,
            Err(error) => {
                // str0m's parse errors name memory addresses: the client
                // gets plain words, the log the detail.
                tracing::debug!(conn, %error, "pub offer not parsed");
                peer.tell(PeerEvent::Rejected {
                    code: ErrorCode::BadMessage,
                    message: "the pub offer is not valid SDP".into(),
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
            Err(error) => {
                tracing::debug!(conn, %error, "pub offer not accepted");
                peer.tell(PeerEvent::Rejected {
                    code: ErrorCode::BadMessage,
                    message: "the pub offer cannot be accepted (its media or transport \
                              parameters are not supported)"
                        .into(),
                })
            }
        }
        self.drain(now, conn, Pc::Pub);
    }

    /// The client's answer to the outstanding `sub` offer. A refused answer
    /// voids the offer: its new tracks are offered again.
    pub(super) fn on_answer(&mut self, now: Instant, conn: ConnId, pc: Pc, sdp: &str) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let pending = match (pc, peer.pending.take()) {
            (Pc::Sub, Some(pending)) => pending,
            (_, pending) => {
                peer.pending = pending;
                peer.tell(PeerEvent::Rejected {
                    code: ErrorCode::BadState,
                    message: "no offer is waiting for this answer".into(),
                });
                return;
            }
        };
        let accepted = check_fingerprint(sdp).and_then(|()| {
            let answer = SdpAnswer::from_sdp_string(sdp).map_err(|error| {
                tracing::debug!(conn, %error, "sub answer not parsed");
                "it is not valid SDP".to_string()
            })?;
            peer.subscribe
                .sdp_api()
                .accept_answer(pending, answer)
                .map_err(|error| {
                    tracing::debug!(conn, %error, "sub answer not accepted");
                    "it does not match the offer, or its parameters are not supported".to_string()
                })
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
                peer.tell(PeerEvent::Rejected {
                    code: ErrorCode::BadMessage,
                    message: format!("the sub answer is refused: {error}"),
                });
                let (lost, kept): (Vec<Subscription>, _) = std::mem::take(&mut peer.subscriptions)
                    .into_iter()
                    .partition(|s| !s.negotiated);
                peer.subscriptions = kept;
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
        self.drain(now, conn, Pc::Sub);
        if self.peers.get(&conn).is_some_and(|p| p.subscribe_connected) {
            for (publisher, source) in fresh_videos {
                self.request_keyframe(now, publisher, source, None);
            }
        }
        self.negotiate(now, conn);
    }

    /// A trickled remote candidate. The end of candidates, mDNS (`.local`)
    /// and other candidates str0m cannot use are ignored: an ICE-lite server
    /// learns the client's addresses from its checks anyway.
    pub(super) fn on_candidate(
        &mut self,
        now: Instant,
        conn: ConnId,
        pc: Pc,
        candidate: Option<String>,
    ) {
        let Some(line) = candidate else { return };
        let line = line.trim().trim_start_matches("a=");
        match Candidate::from_sdp_string(line) {
            Ok(candidate) => {
                if let Some(rtc) = self.rtc_mut(conn, pc) {
                    rtc.add_remote_candidate(candidate);
                    self.drain(now, conn, pc);
                }
            }
            Err(_) => tracing::debug!(conn, ?pc, "remote candidate ignored"),
        }
    }

    pub(super) fn on_set_group(&mut self, now: Instant, conn: ConnId, group: u32) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if peer.group != group {
            peer.group = group;
            let room = peer.room;
            self.resync(now, room);
        }
    }

    /// A participant started publishing a track: offer it to everyone else
    /// in its group.
    pub(super) fn on_published(
        &mut self,
        now: Instant,
        conn: ConnId,
        mid: Mid,
        kind: MediaKind,
        simulcast: Option<Simulcast>,
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
                track.layers.push(Layer {
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
            self.negotiate(now, other);
        }
    }

    /// A participant stopped publishing a track (renegotiated it away).
    pub(super) fn on_unpublished(&mut self, now: Instant, conn: ConnId, mid: Mid) {
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
            self.negotiate(now, other);
        }
    }

    /// Makes every peer of `room` subscribe to exactly the tracks of the
    /// other peers in its group (after a breakout starts or ends).
    fn resync(&mut self, now: Instant, room: Uuid) {
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
            self.negotiate(now, conn);
        }
    }

    /// Sends the subscriber a new `sub` offer when changes wait and no offer
    /// is outstanding (str0m allows one pending offer at a time).
    pub(super) fn negotiate(&mut self, now: Instant, conn: ConnId) {
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
                    // Unique per publishing connection (a participant who
                    // rejoins publishes new tracks, not the old ones again)
                    // and per offer of it: a track offered again after a
                    // breakout sits beside its old, inactive m-line, and
                    // browsers refuse two m-lines with the same msid.
                    peer.offered += 1;
                    let track_id = format!(
                        "{participant}-{kind_name}-{publisher}-{source}-{}",
                        peer.offered
                    );
                    let preferred = peer.preferred.get(&participant).copied();
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
                        preferred,
                        layer: None,
                        target: None,
                        wanted_bps: (0, 0),
                        stream: None,
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
        self.drain(now, conn, Pc::Sub);
    }
}

/// The DTLS fingerprint hash functions str0m can check a certificate with,
/// and their lengths in bytes.
const FINGERPRINT_HASHES: &[(&str, usize)] = &[("sha-256", 32), ("sha-1", 20)];

/// Refuses SDP whose DTLS fingerprint is missing or unusable: without one
/// the DTLS handshake cannot be tied to this signaling session, and media
/// could be keyed with whoever answers first. Every `a=fingerprint` line
/// must be well formed (`sha-256 AB:CD:…`, the right length) and at least
/// one must be there (session or media level).
fn check_fingerprint(sdp: &str) -> Result<(), String> {
    let mut found = false;
    for line in sdp.lines() {
        let Some(value) = line.trim().strip_prefix("a=fingerprint:") else {
            continue;
        };
        let (hash, hex) = value.trim().split_once(' ').unwrap_or((value, ""));
        let Some(&(_, length)) = FINGERPRINT_HASHES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(hash))
        else {
            return Err(format!("its DTLS fingerprint uses {hash:?}; use sha-256"));
        };
        let pairs: Vec<&str> = hex.trim().split(':').collect();
        let well_formed = pairs.len() == length
            && pairs
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
        if !well_formed {
            return Err(format!("its DTLS fingerprint is not a {hash} fingerprint"));
        }
        found = true;
    }
    if found {
        Ok(())
    } else {
        Err("it has no DTLS fingerprint (a=fingerprint)".into())
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
                sdp_mline_index: Some(TRICKLE_MLINE_INDEX),
                username_fragment: None,
            }),
        });
    }
    peer.tell(PeerEvent::Candidate {
        pc,
        candidate: None,
    });
}
