//! A live session as a state machine: who is waiting, who is in the room,
//! what the clinician decided, and what must happen as time passes.
//!
//! [`Room::handle`] takes an [`Input`] and the current time and returns the
//! [`Effect`]s to carry out (messages to connections, media to start or stop,
//! events for the attendance ledger). It does no I/O and reads no clock, so
//! every rule of the trust model is tested here with plain values.
//!
//! The rules (docs/security.md):
//! - A clinician is admitted on arrival. Everyone else waits until a
//!   clinician admits them, or, with `auto_admit`, until a clinician is in
//!   the room.
//! - Nobody but a clinician is ever in a room that has not had its clinician
//!   present.
//! - If the clinician drops, admitted people stay for `clinician_grace`;
//!   after that they go back to the waiting room (`clinician_away`). New
//!   arrivals wait meanwhile.
//! - `remove` bans for the rest of the session; `deny` refuses for now.
//! - A second connection of the same participant replaces the first and
//!   keeps its place.
//! - `session_ending` at 5 and 1 minutes before the room closes, then `ended`.
//! - Every presence the room ends, ends at the connection's last sign of
//!   life; one silent for more than 5 s had been lost (docs/compliance.md,
//!   rule 1).

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::auth::RosterRole;
use crate::schedule::{RosterEntry, Session, SessionKind};
use crate::store::event::Reason;
use tandem_protocol::{
    Attestation, DenialCode, ErrorCode, IceServer, MediaKind, Participant, RaisedHand,
    ServerMessage, SessionInfo, WaitingPerson, WaitingReason, You,
};
use tandem_protocol::{ConnId, SignOfLife};

use presence::end_at_last_sign_of_life;

mod arrival;
mod breakout;
mod clinician;
mod e2ee;
mod hands;
mod presence;
mod timers;

/// Breakout groups: 0 is the main room.
pub(crate) type Group = u32;
pub(crate) const MAIN_ROOM: Group = 0;

/// Warnings before the room closes, in seconds.
const WARNINGS: [i64; 2] = [300, 60];

/// A connection in the room with no sign of life (signaling frame, media
/// or ICE packet) for longer than this is silent: a live client sends media
/// many times a second and the web client pings every 5 s. When the room
/// ends the presence of a silent connection, it ends at its last sign of
/// life as a loss (`network`), and a silent connection gets no heartbeat.
pub(crate) const SILENT_AFTER_MS: i64 = 5_000;

/// Why someone's presence ended, for the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaveReason {
    /// They left, or closed the page.
    Left,
    /// Their connection was lost; presence ends at the last sign of life
    /// the server had from them, not when it noticed.
    Network { last_seen: DateTime<Utc> },
}

/// What a clinician can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Admit(String),
    Deny(String),
    AdmitAll,
    Remove(String),
    Mute {
        participant: String,
        kind: MediaKind,
        allow_unmute: bool,
    },
    AllowUnmute {
        participant: String,
        kind: MediaKind,
    },
    End,
    Breakout {
        household: String,
        with_clinician: bool,
        /// Returns by itself after this many minutes.
        minutes: Option<u32>,
    },
    EndBreakout {
        household: String,
    },
    /// "Bring everyone back".
    EndAllBreakouts,
    /// "Message to breakouts".
    BreakoutMessage(String),
    /// Lowers someone else's hand.
    LowerHand(String),
    /// Shows one person large to everyone, or nobody.
    Spotlight(Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    /// An admitted-by-token participant's connection arrives.
    Arrive {
        conn: ConnId,
        person: RosterEntry,
        attestation: Option<Attestation>,
        /// Its last sign of life, raised by signaling and the media shard.
        sign_of_life: SignOfLife,
        /// The client said it can encrypt media end to end.
        e2ee: bool,
    },
    /// A connection's media is up (its first peer connection connected):
    /// presence starts.
    Connected {
        conn: ConnId,
    },
    Leave {
        conn: ConnId,
        reason: LeaveReason,
    },
    /// The participant's own mute state.
    Media {
        conn: ConnId,
        audio: bool,
        video: bool,
    },
    Clinician {
        conn: ConnId,
        action: Action,
    },
    /// The participant's links were revoked (REST): out, now.
    Revoked {
        participant: String,
    },
    /// The session was cancelled (REST): everyone out.
    Cancelled,
    /// The server is stopping: everyone's presence ends now (at their last
    /// sign of life, `server_restart`); they may come back once it is up
    /// again, and the session goes on.
    Stop,
    /// Time passes (about once a second).
    Tick,
    /// "Raise hand" or "Lower hand" for oneself.
    Hand {
        conn: ConnId,
        raised: bool,
    },
    /// Whether the connection's person is speaking, from the audio levels
    /// the media shard reads in their packets.
    Speaking {
        conn: ConnId,
        speaking: bool,
    },
    /// `e2ee_public_key`: the connection's ECDH public key.
    PublicKey {
        conn: ConnId,
        public_key: String,
    },
    /// `e2ee_media_key`: a media key wrapped for `to` alone.
    MediaKey {
        conn: ConnId,
        to: String,
        key_id: u32,
        wrapped: String,
    },
}

/// An event the attendance ledger records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoomEvent {
    Waiting {
        participant: String,
        conn: ConnId,
    },
    /// Presence in the room starts (media connected).
    Joined {
        participant: String,
        conn: ConnId,
        video: bool,
    },
    Attestation {
        participant: String,
        conn: ConnId,
        attestation: Attestation,
    },
    Admitted {
        participant: String,
        conn: ConnId,
        by: Option<String>,
    },
    Denied {
        participant: String,
        conn: ConnId,
        code: DenialCode,
    },
    Removed {
        participant: String,
        by: String,
    },
    Replaced {
        participant: String,
        old: ConnId,
        new: ConnId,
        /// When the old connection's presence ended (its last sign of
        /// life), if it had one.
        at: Option<DateTime<Utc>>,
    },
    /// Presence in the room (or the waiting room) ended.
    Left {
        participant: String,
        conn: ConnId,
        reason: Reason,
        /// When presence ended, if earlier than the decision (a lost
        /// connection's last sign of life).
        at: Option<DateTime<Utc>>,
    },
    MediaChanged {
        participant: String,
        conn: ConnId,
        audio: bool,
        video: bool,
    },
    SessionEnded {
        reason: Reason,
    },
    /// A household's breakout started (or changed: with or without the
    /// clinician, a new length).
    BreakoutStarted {
        household: String,
        with_clinician: bool,
        ends_at: Option<DateTime<Utc>>,
    },
    /// It ended: the clinician brought them back, its time was up, or the
    /// session ended.
    BreakoutEnded {
        household: String,
    },
    /// The room's media became end-to-end encrypted (`active`), or fell
    /// back to DTLS-SRTP only. Never a key.
    E2ee {
        active: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    Send {
        conn: ConnId,
        message: ServerMessage,
    },
    /// Send, then close the socket.
    Close {
        conn: ConnId,
        message: ServerMessage,
    },
    /// The participant's own departure is recorded: let its socket close.
    Release {
        conn: ConnId,
    },
    /// Create the connection's peer connections (it entered the room).
    StartMedia {
        conn: ConnId,
    },
    /// Drop them (it left the room, went back to waiting, was removed).
    StopMedia {
        conn: ConnId,
    },
    /// Forward its media only within this group (breakouts).
    SetGroup {
        conn: ConnId,
        group: Group,
    },
    /// Stop (or resume) forwarding one kind of its media (clinician mute).
    Block {
        conn: ConnId,
        kind: MediaKind,
        blocked: bool,
    },
    /// Persist a removal so that it survives a restart.
    PersistRemoval {
        participant: String,
    },
    /// Persist the end of the session.
    PersistEnd,
    Record(RoomEvent),
    /// The room is over; nothing more will happen in it.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Waiting { since: DateTime<Utc> },
    InRoom,
}

#[derive(Debug, Clone)]
struct Member {
    conn: ConnId,
    person: RosterEntry,
    place: Place,
    audio: bool,
    video: bool,
    /// The clinician muted this kind and did not allow unmuting: [audio, video].
    locked: [bool; 2],
    /// The clinician muted this kind: forwarding is blocked until unmuted.
    blocked: [bool; 2],
    group: Group,
    /// Presence started (media connected) since it last entered the room.
    joined: bool,
    sign_of_life: SignOfLife,
    /// The client said it can encrypt end to end.
    e2ee: bool,
    /// Its connection's ECDH public key, while it is in the room.
    public_key: Option<String>,
}

impl Member {
    fn is_clinician(&self) -> bool {
        self.person.role == RosterRole::Clinician
    }

    /// How `viewer` sees this member: clinicians learn everyone's
    /// household, others only their own (so they can tell their partner).
    fn participant_for(&self, viewer: &Member) -> Participant {
        let own =
            viewer.person.household.is_some() && viewer.person.household == self.person.household;
        Participant {
            id: self.person.id.clone(),
            name: self.person.name.clone(),
            role: self.person.role,
            audio: self.audio,
            video: self.video,
            household: (viewer.is_clinician() || own)
                .then(|| self.person.household.clone())
                .flatten(),
        }
    }
}

#[derive(Debug, Clone)]
struct Breakout {
    household: String,
    group: Group,
    with_clinician: bool,
    /// When a timed breakout returns by itself.
    ends_at: Option<DateTime<Utc>>,
    /// The one-minute warning was given.
    warned: bool,
}

fn kind_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

/// Who waits and who is in a live room, by participant id.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Occupancy {
    pub waiting: Vec<String>,
    pub in_room: Vec<String>,
}

/// Cheap to clone (a roster of at most a few dozen people): a live room
/// keeps a copy to go back to when a decision cannot be recorded.
#[derive(Clone)]
pub(crate) struct Room {
    session: SessionInfo,
    kind: SessionKind,
    auto_admit: bool,
    clinician_grace: Duration,
    closes_at: DateTime<Utc>,
    ice_servers: Vec<IceServer>,
    roster: Vec<RosterEntry>,
    members: Vec<Member>,
    removed: HashSet<String>,
    /// People admitted whose connection was lost: when they come back while
    /// a clinician is in the room they go straight in (a network blip does
    /// not send anyone back to the waiting room). Cleared when the room
    /// returns to the waiting room for lack of a clinician.
    readmit: HashSet<String>,
    clinician_seen: bool,
    clinician_away_since: Option<DateTime<Utc>>,
    warned: [bool; 2],
    breakouts: Vec<Breakout>,
    next_group: Group,
    /// Raised hands, oldest first.
    hands: Vec<RaisedHand>,
    /// The person everyone sees large.
    spotlight: Option<String>,
    e2ee_mode: tandem_protocol::E2eeMode,
    /// The room's media is end-to-end encrypted now.
    e2ee_active: bool,
    finished: bool,
}

impl Room {
    pub(crate) fn new(session: &Session, ice_servers: Vec<IceServer>) -> Room {
        Room {
            session: SessionInfo {
                id: session.id.to_string(),
                title: session.title.clone(),
                kind: session.kind.as_str().into(),
                starts_at: session.starts_at,
                ends_at: session.ends_at,
            },
            kind: session.kind,
            auto_admit: session.settings.auto_admit,
            clinician_grace: Duration::minutes(session.settings.clinician_grace_minutes.into()),
            closes_at: session.closes_at(),
            ice_servers,
            roster: session.roster.clone(),
            members: Vec::new(),
            removed: session
                .roster
                .iter()
                .filter(|p| p.removed_at.is_some())
                .map(|p| p.id.clone())
                .collect(),
            readmit: HashSet::new(),
            clinician_seen: false,
            clinician_away_since: None,
            warned: [false; 2],
            breakouts: Vec::new(),
            next_group: MAIN_ROOM + 1,
            hands: Vec::new(),
            spotlight: None,
            e2ee_mode: session.settings.e2ee,
            e2ee_active: false,
            finished: false,
        }
    }

    /// The room opens again at `now` after it was live before: on this
    /// node before a restart, or (in a cluster) on another node that died,
    /// froze or was cut off and whose lease expired. `before` is what the
    /// ledger says of the room then
    /// ([`super::takeover::Takeover::from_ledger`]): the people who were in
    /// it go straight back in when they reconnect while a clinician is in
    /// the room, or as soon as one enters; if a clinician was in the room,
    /// the clinician's grace runs from `now`, as after a drop.
    pub(crate) fn take_over(&mut self, before: super::takeover::Takeover, now: DateTime<Utc>) {
        self.readmit.extend(before.readmit);
        if before.clinician_was_in {
            self.clinician_seen = true;
            self.clinician_away_since = Some(now);
        }
    }

    /// A joint, group or individual session.
    pub(crate) fn kind(&self) -> SessionKind {
        self.kind
    }

    pub(crate) fn id(&self) -> Uuid {
        self.session.id.parse().expect("a session id is a UUID")
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Connections with open presence and a recent sign of life, each with
    /// the time of that sign, for durable heartbeats: crash recovery closes
    /// presence at the last heartbeat, so a heartbeat must never claim more
    /// than the connection showed. A silent connection gets none.
    pub(crate) fn heartbeats(&self, now: DateTime<Utc>) -> Vec<(ConnId, DateTime<Utc>)> {
        self.members
            .iter()
            .filter(|m| m.joined)
            .filter_map(|m| {
                let last = m.sign_of_life.last().min(now);
                ((now - last).num_milliseconds() <= SILENT_AFTER_MS).then_some((m.conn, last))
            })
            .collect()
    }

    /// Who waits and who is in the room, by participant id (the staff
    /// console's live view).
    pub(crate) fn occupancy(&self) -> Occupancy {
        let mut occupancy = Occupancy::default();
        for m in &self.members {
            match m.place {
                Place::Waiting { .. } => occupancy.waiting.push(m.person.id.clone()),
                Place::InRoom => occupancy.in_room.push(m.person.id.clone()),
            }
        }
        occupancy
    }

    /// How many people are connected: (in the waiting room, in the room).
    pub(crate) fn headcount(&self) -> (usize, usize) {
        let waiting = self
            .members
            .iter()
            .filter(|m| matches!(m.place, Place::Waiting { .. }))
            .count();
        (waiting, self.members.len() - waiting)
    }

    /// Connections whose presence is open.
    #[cfg(test)]
    pub(crate) fn present(&self) -> Vec<ConnId> {
        self.members
            .iter()
            .filter(|m| m.joined)
            .map(|m| m.conn)
            .collect()
    }

    /// Applies `input` at `now`; returns what must happen, in order.
    pub(crate) fn handle(&mut self, input: Input, now: DateTime<Utc>) -> Vec<Effect> {
        let open: Vec<(ConnId, SignOfLife)> = self
            .members
            .iter()
            .filter(|m| m.joined)
            .map(|m| (m.conn, m.sign_of_life.clone()))
            .collect();
        let mut out = self.decide(input, now);
        end_at_last_sign_of_life(&open, now, &mut out);
        out
    }

    fn decide(&mut self, input: Input, now: DateTime<Utc>) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.finished {
            if let Input::Arrive { conn, .. } = input {
                out.push(Effect::Close {
                    conn,
                    message: ServerMessage::denied(DenialCode::SessionEnded),
                });
            }
            return out;
        }
        match input {
            Input::Arrive {
                conn,
                person,
                attestation,
                sign_of_life,
                e2ee,
            } => {
                if self.e2ee_refuses(e2ee) {
                    arrival::refuse(conn, person.id, DenialCode::E2eeRequired, &mut out);
                    return out;
                }
                if let Some(attestation) = attestation {
                    out.push(Effect::Record(RoomEvent::Attestation {
                        participant: person.id.clone(),
                        conn,
                        attestation,
                    }));
                }
                self.arrive(conn, person, sign_of_life, e2ee, now, &mut out)
            }
            Input::Connected { conn } => {
                if let Some(m) = self
                    .members
                    .iter_mut()
                    .find(|m| m.conn == conn && m.place == Place::InRoom && !m.joined)
                {
                    m.joined = true;
                    out.push(Effect::Record(RoomEvent::Joined {
                        participant: m.person.id.clone(),
                        conn,
                        video: m.video,
                    }));
                }
            }
            Input::Leave { conn, reason } => self.leave(conn, reason, now, &mut out),
            Input::Media { conn, audio, video } => self.media(conn, audio, video, &mut out),
            Input::Clinician { conn, action } => self.clinician(conn, action, now, &mut out),
            Input::Revoked { participant } => {
                if let Some(i) = self.members.iter().position(|m| m.person.id == participant) {
                    let m = self.take(i, &mut out);
                    out.push(Effect::Close {
                        conn: m.conn,
                        message: ServerMessage::denied(DenialCode::Revoked),
                    });
                    out.push(Effect::Record(RoomEvent::Left {
                        participant: m.person.id,
                        conn: m.conn,
                        reason: Reason::Revoked,
                        at: None,
                    }));
                    self.lobby(&mut out);
                }
            }
            Input::Cancelled => self.finish(Reason::SessionCancelled, now, &mut out),
            Input::Stop => self.stop(&mut out),
            Input::Tick => self.tick(now, &mut out),
            Input::Hand { conn, raised } => self.own_hand(conn, raised, now, &mut out),
            Input::Speaking { conn, speaking } => self.speaking(conn, speaking, &mut out),
            Input::PublicKey { conn, public_key } => self.public_key(conn, public_key, &mut out),
            Input::MediaKey {
                conn,
                to,
                key_id,
                wrapped,
            } => self.media_key(conn, to, key_id, wrapped, &mut out),
        }
        out
    }

    fn clinician_in_room(&self) -> bool {
        self.members
            .iter()
            .any(|m| m.is_clinician() && m.place == Place::InRoom)
    }

    fn in_room(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.place == Place::InRoom)
    }

    /// Tells everyone in the room but `except`.
    fn tell_room(&self, except: ConnId, message: ServerMessage, out: &mut Vec<Effect>) {
        for m in self.in_room().filter(|m| m.conn != except) {
            out.push(Effect::Send {
                conn: m.conn,
                message: message.clone(),
            });
        }
    }

    /// Tells everyone in the room.
    fn tell_everyone(&self, message: ServerMessage, out: &mut Vec<Effect>) {
        for m in self.in_room() {
            out.push(Effect::Send {
                conn: m.conn,
                message: message.clone(),
            });
        }
    }

    /// Tells everyone in the room but `except` about `member`, each as they
    /// may see them.
    fn tell_room_about(
        &self,
        member: &Member,
        message: impl Fn(Participant) -> ServerMessage,
        out: &mut Vec<Effect>,
    ) {
        for m in self.in_room().filter(|m| m.conn != member.conn) {
            out.push(Effect::Send {
                conn: m.conn,
                message: message(member.participant_for(m)),
            });
        }
    }

    /// The waiting list, to every clinician in the room.
    fn lobby(&self, out: &mut Vec<Effect>) {
        let waiting: Vec<WaitingPerson> = self
            .members
            .iter()
            .filter_map(|m| match m.place {
                Place::Waiting { since } => Some(WaitingPerson {
                    id: m.person.id.clone(),
                    name: m.person.name.clone(),
                    role: m.person.role,
                    since,
                    household: m.person.household.clone(),
                }),
                Place::InRoom => None,
            })
            .collect();
        for m in self.in_room().filter(|m| m.is_clinician()) {
            out.push(Effect::Send {
                conn: m.conn,
                message: ServerMessage::Lobby {
                    waiting: waiting.clone(),
                },
            });
        }
    }

    fn group_of(&self, person: &RosterEntry) -> Group {
        let household = person.household.as_deref();
        self.breakouts
            .iter()
            .find(|b| {
                household == Some(b.household.as_str())
                    || (person.role == RosterRole::Clinician && b.with_clinician)
            })
            .map_or(MAIN_ROOM, |b| b.group)
    }

    /// Takes member `i` out of the room state, stopping its media and telling
    /// the others if it was in the room.
    fn take(&mut self, i: usize, out: &mut Vec<Effect>) -> Member {
        let member = self.members.remove(i);
        if member.place == Place::InRoom {
            out.push(Effect::StopMedia { conn: member.conn });
            self.tell_room_about(
                &member,
                |participant| ServerMessage::ParticipantLeft { participant },
                out,
            );
            self.out_of_room(&member.person.id, out);
            self.refresh_e2ee(None, out);
        }
        member
    }

    fn leave(
        &mut self,
        conn: ConnId,
        reason: LeaveReason,
        now: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        let Some(i) = self.members.iter().position(|m| m.conn == conn) else {
            return; // replaced or removed already
        };
        let member = self.take(i, out);
        if member.place == Place::InRoom && matches!(reason, LeaveReason::Network { .. }) {
            self.readmit.insert(member.person.id.clone());
        }
        out.push(Effect::Record(RoomEvent::Left {
            participant: member.person.id.clone(),
            conn,
            reason: match reason {
                LeaveReason::Left => Reason::Left,
                LeaveReason::Network { .. } => Reason::Network,
            },
            at: match reason {
                LeaveReason::Left => None,
                LeaveReason::Network { last_seen } => Some(last_seen.min(now)),
            },
        }));
        if reason == LeaveReason::Left {
            out.push(Effect::Release { conn });
        }
        if member.is_clinician() && member.place == Place::InRoom && !self.clinician_in_room() {
            self.clinician_away_since = Some(now);
        }
        if matches!(member.place, Place::Waiting { .. }) {
            self.lobby(out);
        }
    }

    fn media(&mut self, conn: ConnId, audio: bool, video: bool, out: &mut Vec<Effect>) {
        let Some(member) = self.members.iter_mut().find(|m| m.conn == conn) else {
            return;
        };
        let wants = [audio, video];
        for (i, kind) in [MediaKind::Audio, MediaKind::Video].into_iter().enumerate() {
            if wants[i] && member.locked[i] {
                out.push(Effect::Send {
                    conn,
                    message: ServerMessage::error(
                        ErrorCode::NotAllowed,
                        "Your clinician has muted you; they can allow you to unmute.",
                    ),
                });
                continue;
            }
            if wants[i] && member.blocked[i] {
                member.blocked[i] = false;
                if member.place == Place::InRoom {
                    out.push(Effect::Block {
                        conn,
                        kind,
                        blocked: false,
                    });
                }
            }
        }
        let before = (member.audio, member.video);
        member.audio = audio && !member.locked[0];
        member.video = video && !member.locked[1];
        if (member.audio, member.video) == before {
            // Nothing changed: nothing to record or tell.
            return;
        }
        let (participant, a, v, place) = (
            member.person.id.clone(),
            member.audio,
            member.video,
            member.place,
        );
        out.push(Effect::Record(RoomEvent::MediaChanged {
            participant: participant.clone(),
            conn,
            audio: a,
            video: v,
        }));
        if place == Place::InRoom {
            self.tell_room(
                conn,
                ServerMessage::Media {
                    participant,
                    audio: a,
                    video: v,
                },
                out,
            );
        }
    }
}

#[cfg(test)]
mod tests;
