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

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::auth::RosterRole;
use crate::schedule::{RosterEntry, Session, SessionKind};
use crate::store::event::Reason;
use tandem_protocol::ConnId;
use tandem_protocol::{
    Attestation, DenialCode, ErrorCode, IceServer, MediaKind, Participant, ServerMessage,
    SessionInfo, WaitingPerson, WaitingReason, You,
};

/// Breakout groups: 0 is the main room.
pub type Group = u32;
pub const MAIN_ROOM: Group = 0;

/// Warnings before the room closes, in seconds.
const WARNINGS: [i64; 2] = [300, 60];

/// Why someone's presence ended, for the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// They left, or closed the page.
    Left,
    /// Their connection was lost; presence ends at the last sign of life
    /// the server had from them, not when it noticed.
    Network { last_seen: DateTime<Utc> },
}

/// What a clinician can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
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
    },
    EndBreakout {
        household: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An admitted-by-token participant's connection arrives.
    Arrive {
        conn: ConnId,
        person: RosterEntry,
        attestation: Option<Attestation>,
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
    /// The server is stopping: everyone's presence ends now
    /// (`server_restart`); they may come back once it is up again.
    Stop,
    /// Time passes (about once a second).
    Tick,
}

/// An event the attendance ledger records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
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
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
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
}

impl Member {
    fn is_clinician(&self) -> bool {
        self.person.role == RosterRole::Clinician
    }

    fn participant(&self) -> Participant {
        Participant {
            id: self.person.id.clone(),
            name: self.person.name.clone(),
            role: self.person.role,
            audio: self.audio,
            video: self.video,
        }
    }
}

#[derive(Debug, Clone)]
struct Breakout {
    household: String,
    group: Group,
    with_clinician: bool,
}

fn kind_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

/// Cheap to clone (a roster of at most a few dozen people): a live room
/// keeps a copy to go back to when a decision cannot be recorded.
#[derive(Clone)]
pub struct Room {
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
    finished: bool,
}

impl Room {
    pub fn new(session: &Session, ice_servers: Vec<IceServer>) -> Room {
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
            finished: false,
        }
    }

    pub fn id(&self) -> Uuid {
        self.session.id.parse().expect("a session id is a UUID")
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Connections whose presence is open (for durable heartbeats).
    pub fn present(&self) -> Vec<ConnId> {
        self.members
            .iter()
            .filter(|m| m.joined)
            .map(|m| m.conn)
            .collect()
    }

    /// Applies `input` at `now`; returns what must happen, in order.
    pub fn handle(&mut self, input: Input, now: DateTime<Utc>) -> Vec<Effect> {
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
            } => {
                if let Some(attestation) = attestation {
                    out.push(Effect::Record(RoomEvent::Attestation {
                        participant: person.id.clone(),
                        conn,
                        attestation,
                    }));
                }
                self.arrive(conn, person, now, &mut out)
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

    fn arrive(
        &mut self,
        conn: ConnId,
        person: RosterEntry,
        now: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        if self.removed.contains(&person.id) {
            out.push(Effect::Close {
                conn,
                message: ServerMessage::denied(DenialCode::Removed),
            });
            out.push(Effect::Record(RoomEvent::Denied {
                participant: person.id,
                conn,
                code: DenialCode::Removed,
            }));
            return;
        }
        // A second device replaces the first and keeps its place.
        if let Some(i) = self.members.iter().position(|m| m.person.id == person.id) {
            let old = self.members[i].conn;
            out.push(Effect::Close {
                conn: old,
                message: ServerMessage::Replaced,
            });
            out.push(Effect::Record(RoomEvent::Replaced {
                participant: person.id.clone(),
                old,
                new: conn,
            }));
            let member = &mut self.members[i];
            member.conn = conn;
            member.joined = false;
            match member.place {
                Place::InRoom => {
                    let (group, blocked) = (member.group, member.blocked);
                    out.push(Effect::StopMedia { conn: old });
                    // `joined` before the media it announces.
                    let joined = self.joined_message(conn);
                    out.push(Effect::Send {
                        conn,
                        message: joined,
                    });
                    self.enter_media(conn, group, blocked, out);
                }
                Place::Waiting { .. } => out.push(Effect::Send {
                    conn,
                    message: ServerMessage::Waiting { reason: None },
                }),
            }
            return;
        }
        let is_clinician = person.role == RosterRole::Clinician;
        self.members.push(Member {
            conn,
            person,
            place: Place::Waiting { since: now },
            audio: true,
            video: true,
            locked: [false; 2],
            blocked: [false; 2],
            group: MAIN_ROOM,
            joined: false,
        });
        let index = self.members.len() - 1;
        let returning = self.readmit.remove(&self.members[index].person.id);
        if is_clinician || ((self.auto_admit || returning) && self.clinician_in_room()) {
            self.admit(index, None, out);
            if is_clinician {
                self.clinician_seen = true;
                self.clinician_away_since = None;
                if self.auto_admit {
                    self.admit_waiting(None, out);
                }
            }
            self.lobby(out);
        } else {
            let id = self.members[index].person.id.clone();
            out.push(Effect::Send {
                conn,
                message: ServerMessage::Waiting { reason: None },
            });
            out.push(Effect::Record(RoomEvent::Waiting {
                participant: id,
                conn,
            }));
            self.lobby(out);
        }
    }

    fn joined_message(&self, conn: ConnId) -> ServerMessage {
        let me = self
            .members
            .iter()
            .find(|m| m.conn == conn)
            .expect("a member");
        ServerMessage::Joined {
            you: You {
                id: me.person.id.clone(),
                name: me.person.name.clone(),
                role: me.person.role,
            },
            session: self.session.clone(),
            participants: self
                .in_room()
                .filter(|m| m.conn != conn)
                .map(Member::participant)
                .collect(),
            ice_servers: self.ice_servers.clone(),
        }
    }

    fn enter_media(&self, conn: ConnId, group: Group, blocked: [bool; 2], out: &mut Vec<Effect>) {
        out.push(Effect::StartMedia { conn });
        if group != MAIN_ROOM {
            out.push(Effect::SetGroup { conn, group });
        }
        for (kind, blocked) in [
            (MediaKind::Audio, blocked[0]),
            (MediaKind::Video, blocked[1]),
        ] {
            if blocked {
                out.push(Effect::Block {
                    conn,
                    kind,
                    blocked,
                });
            }
        }
    }

    /// Moves member `index` into the room.
    fn admit(&mut self, index: usize, by: Option<String>, out: &mut Vec<Effect>) {
        let group = self.group_of(&self.members[index].person);
        let member = &mut self.members[index];
        member.place = Place::InRoom;
        member.group = group;
        let (conn, blocked) = (member.conn, member.blocked);
        let participant = member.participant();
        let joined = self.joined_message(conn);
        out.push(Effect::Send {
            conn,
            message: joined,
        });
        self.enter_media(conn, group, blocked, out);
        self.tell_room(
            conn,
            ServerMessage::ParticipantJoined {
                participant: participant.clone(),
            },
            out,
        );
        out.push(Effect::Record(RoomEvent::Admitted {
            participant: participant.id,
            conn,
            by,
        }));
    }

    fn admit_waiting(&mut self, by: Option<String>, out: &mut Vec<Effect>) {
        while let Some(i) = self
            .members
            .iter()
            .position(|m| matches!(m.place, Place::Waiting { .. }))
        {
            self.admit(i, by.clone(), out);
        }
    }

    /// Takes member `i` out of the room state, stopping its media and telling
    /// the others if it was in the room.
    fn take(&mut self, i: usize, out: &mut Vec<Effect>) -> Member {
        let member = self.members.remove(i);
        if member.place == Place::InRoom {
            out.push(Effect::StopMedia { conn: member.conn });
            self.tell_room(
                member.conn,
                ServerMessage::ParticipantLeft {
                    participant: member.participant(),
                },
                out,
            );
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

    fn clinician(
        &mut self,
        conn: ConnId,
        action: Action,
        now: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        let Some(by) = self
            .members
            .iter()
            .find(|m| m.conn == conn && m.is_clinician() && m.place == Place::InRoom)
            .map(|m| m.person.id.clone())
        else {
            out.push(Effect::Send {
                conn,
                message: ServerMessage::error(
                    ErrorCode::NotAllowed,
                    "Only the clinician can do this.",
                ),
            });
            return;
        };
        let find = |room: &Room, id: &str| room.members.iter().position(|m| m.person.id == id);
        let bad_state = |message: &str| Effect::Send {
            conn,
            message: ServerMessage::error(ErrorCode::BadState, message),
        };
        match action {
            Action::Admit(id) => match find(self, &id) {
                Some(i) if matches!(self.members[i].place, Place::Waiting { .. }) => {
                    self.admit(i, Some(by), out);
                    self.lobby(out);
                }
                _ => out.push(bad_state("nobody with that id is waiting")),
            },
            Action::AdmitAll => {
                self.admit_waiting(Some(by), out);
                self.lobby(out);
            }
            Action::Deny(id) => match find(self, &id) {
                Some(i) if matches!(self.members[i].place, Place::Waiting { .. }) => {
                    let m = self.members.remove(i);
                    out.push(Effect::Close {
                        conn: m.conn,
                        message: ServerMessage::denied(DenialCode::DeniedByClinician),
                    });
                    out.push(Effect::Record(RoomEvent::Denied {
                        participant: m.person.id,
                        conn: m.conn,
                        code: DenialCode::DeniedByClinician,
                    }));
                    self.lobby(out);
                }
                _ => out.push(bad_state("nobody with that id is waiting")),
            },
            Action::Remove(id) => {
                let on_roster = self
                    .roster
                    .iter()
                    .any(|p| p.id == id && p.role != RosterRole::Clinician);
                if !on_roster {
                    out.push(bad_state("that participant is not on the roster"));
                    return;
                }
                if self.removed.insert(id.clone()) {
                    out.push(Effect::PersistRemoval {
                        participant: id.clone(),
                    });
                }
                if let Some(i) = find(self, &id) {
                    let m = self.take(i, out);
                    out.push(Effect::Close {
                        conn: m.conn,
                        message: ServerMessage::Removed,
                    });
                    out.push(Effect::Record(RoomEvent::Left {
                        participant: m.person.id.clone(),
                        conn: m.conn,
                        reason: Reason::Removed,
                        at: None,
                    }));
                }
                out.push(Effect::Record(RoomEvent::Removed {
                    participant: id,
                    by,
                }));
                self.lobby(out);
            }
            Action::Mute {
                participant,
                kind,
                allow_unmute,
            } => match find(self, &participant) {
                Some(i)
                    if self.members[i].place == Place::InRoom
                        && !self.members[i].is_clinician() =>
                {
                    let k = kind_index(kind);
                    let m = &mut self.members[i];
                    m.blocked[k] = true;
                    m.locked[k] = !allow_unmute;
                    match kind {
                        MediaKind::Audio => m.audio = false,
                        MediaKind::Video => m.video = false,
                    }
                    let (target, id, audio, video) =
                        (m.conn, m.person.id.clone(), m.audio, m.video);
                    out.push(Effect::Block {
                        conn: target,
                        kind,
                        blocked: true,
                    });
                    out.push(Effect::Send {
                        conn: target,
                        message: ServerMessage::Muted { kind, allow_unmute },
                    });
                    out.push(Effect::Record(RoomEvent::MediaChanged {
                        participant: id.clone(),
                        conn: target,
                        audio,
                        video,
                    }));
                    self.tell_room(
                        target,
                        ServerMessage::Media {
                            participant: id,
                            audio,
                            video,
                        },
                        out,
                    );
                }
                _ => out.push(bad_state("nobody with that id is in the room")),
            },
            Action::AllowUnmute { participant, kind } => match find(self, &participant) {
                Some(i) => {
                    let m = &mut self.members[i];
                    m.locked[kind_index(kind)] = false;
                    out.push(Effect::Send {
                        conn: m.conn,
                        message: ServerMessage::UnmuteAllowed { kind },
                    });
                }
                None => out.push(bad_state("nobody with that id is connected")),
            },
            Action::End => self.finish(Reason::EndedByClinician, now, out),
            Action::Breakout {
                household,
                with_clinician,
            } => {
                if self.kind != SessionKind::Group {
                    out.push(bad_state("breakouts are for group sessions"));
                    return;
                }
                if !self
                    .roster
                    .iter()
                    .any(|p| p.household.as_deref() == Some(household.as_str()))
                {
                    out.push(bad_state("no household with that id is on the roster"));
                    return;
                }
                if with_clinician && self.breakouts.iter().any(|b| b.with_clinician) {
                    out.push(bad_state("the clinician is already in a breakout"));
                    return;
                }
                let group = match self.breakouts.iter_mut().find(|b| b.household == household) {
                    Some(b) => {
                        b.with_clinician = with_clinician;
                        b.group
                    }
                    None => {
                        let group = self.next_group;
                        self.next_group += 1;
                        self.breakouts.push(Breakout {
                            household: household.clone(),
                            group,
                            with_clinician,
                        });
                        group
                    }
                };
                self.regroup(out);
                self.tell_breakout(&household, Some(group), with_clinician, out);
            }
            Action::EndBreakout { household } => {
                let before = self.breakouts.len();
                self.breakouts.retain(|b| b.household != household);
                if self.breakouts.len() == before {
                    out.push(bad_state("that household is not in a breakout"));
                    return;
                }
                self.regroup(out);
                self.tell_breakout(&household, None, false, out);
            }
        }
    }

    /// Puts everyone in the room into the group their household belongs to.
    fn regroup(&mut self, out: &mut Vec<Effect>) {
        for i in 0..self.members.len() {
            let group = self.group_of(&self.members[i].person);
            let m = &mut self.members[i];
            if m.place == Place::InRoom && m.group != group {
                m.group = group;
                out.push(Effect::SetGroup {
                    conn: m.conn,
                    group,
                });
            } else {
                m.group = group;
            }
        }
    }

    fn tell_breakout(
        &self,
        household: &str,
        group: Option<Group>,
        with_clinician: bool,
        out: &mut Vec<Effect>,
    ) {
        let message = ServerMessage::Breakout {
            household: household.to_owned(),
            active: group.is_some(),
            with_clinician,
        };
        for m in self.in_room() {
            out.push(Effect::Send {
                conn: m.conn,
                message: message.clone(),
            });
        }
    }

    fn tick(&mut self, now: DateTime<Utc>, out: &mut Vec<Effect>) {
        if now >= self.closes_at {
            self.finish(Reason::SessionEnd, now, out);
            return;
        }
        let left = (self.closes_at - now).num_seconds();
        // The smallest threshold crossed wins, so a late start warns once.
        for (i, threshold) in WARNINGS.into_iter().enumerate().rev() {
            if left <= threshold && !self.warned[i] {
                self.warned[..=i].iter_mut().for_each(|w| *w = true);
                for m in &self.members {
                    out.push(Effect::Send {
                        conn: m.conn,
                        message: ServerMessage::SessionEnding {
                            seconds_left: left.max(0) as u64,
                        },
                    });
                }
                break;
            }
        }
        if let Some(since) = self.clinician_away_since {
            if now - since >= self.clinician_grace && !self.clinician_in_room() {
                self.clinician_away_since = None;
                self.readmit.clear();
                let back: Vec<usize> = (0..self.members.len())
                    .filter(|&i| self.members[i].place == Place::InRoom)
                    .collect();
                for i in back {
                    let m = &mut self.members[i];
                    m.place = Place::Waiting { since: now };
                    m.joined = false;
                    let (conn, id) = (m.conn, m.person.id.clone());
                    out.push(Effect::StopMedia { conn });
                    out.push(Effect::Send {
                        conn,
                        message: ServerMessage::Waiting {
                            reason: Some(WaitingReason::ClinicianAway),
                        },
                    });
                    out.push(Effect::Record(RoomEvent::Left {
                        participant: id.clone(),
                        conn,
                        reason: Reason::ClinicianAway,
                        at: None,
                    }));
                    out.push(Effect::Record(RoomEvent::Waiting {
                        participant: id,
                        conn,
                    }));
                }
            }
        }
    }

    /// Everyone out for a server stop; the session goes on after it.
    fn stop(&mut self, out: &mut Vec<Effect>) {
        for m in std::mem::take(&mut self.members) {
            if m.place == Place::InRoom {
                out.push(Effect::StopMedia { conn: m.conn });
            }
            out.push(Effect::Close {
                conn: m.conn,
                message: ServerMessage::error(
                    ErrorCode::ServerRestart,
                    "The server is restarting. Please reconnect in a moment.",
                ),
            });
            out.push(Effect::Record(RoomEvent::Left {
                participant: m.person.id,
                conn: m.conn,
                reason: Reason::ServerRestart,
                at: None,
            }));
        }
    }

    /// Ends the session for everyone.
    fn finish(&mut self, reason: Reason, _now: DateTime<Utc>, out: &mut Vec<Effect>) {
        // Stored before anyone is told, so no join can slip in after `ended`.
        if reason == Reason::EndedByClinician {
            out.push(Effect::PersistEnd);
        }
        for m in std::mem::take(&mut self.members) {
            if m.place == Place::InRoom {
                out.push(Effect::StopMedia { conn: m.conn });
            }
            out.push(Effect::Close {
                conn: m.conn,
                message: ServerMessage::Ended,
            });
            out.push(Effect::Record(RoomEvent::Left {
                participant: m.person.id,
                conn: m.conn,
                reason: Reason::SessionEnd,
                at: None,
            }));
        }
        out.push(Effect::Record(RoomEvent::SessionEnded { reason }));
        out.push(Effect::Finished);
        self.finished = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::SessionSettings;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn person(id: &str, role: RosterRole, household: Option<&str>) -> RosterEntry {
        RosterEntry {
            id: id.into(),
            name: id.to_uppercase(),
            role,
            household: household.map(Into::into),
            mrn: None,
            revoked_at: None,
            removed_at: None,
        }
    }

    fn session(kind: SessionKind, auto_admit: bool) -> Session {
        Session {
            id: Uuid::new_v4(),
            title: "S".into(),
            kind,
            starts_at: t("2026-03-02T15:00:00Z"),
            ends_at: t("2026-03-02T16:00:00Z"),
            timezone: chrono_tz::UTC,
            roster: vec![
                person("c", RosterRole::Clinician, None),
                person("p", RosterRole::Patient, Some("h1")),
                person("q", RosterRole::Partner, Some("h1")),
                person("r", RosterRole::Patient, Some("h2")),
            ],
            settings: SessionSettings {
                auto_admit,
                early_join_minutes: 15,
                overrun_grace_minutes: 30,
                clinician_grace_minutes: 5,
            },
            created_at: t("2026-03-01T00:00:00Z"),
            cancelled_at: None,
            ended_at: None,
        }
    }

    /// A room and a clock in seconds after 15:00.
    struct Script {
        room: Room,
        roster: Vec<RosterEntry>,
    }

    impl Script {
        fn new(kind: SessionKind, auto_admit: bool) -> Script {
            let s = session(kind, auto_admit);
            Script {
                roster: s.roster.clone(),
                room: Room::new(&s, vec![]),
            }
        }

        fn at(secs: i64) -> DateTime<Utc> {
            t("2026-03-02T15:00:00Z") + Duration::seconds(secs)
        }

        fn arrive(&mut self, conn: ConnId, id: &str, secs: i64) -> Vec<Effect> {
            let person = self.roster.iter().find(|p| p.id == id).unwrap().clone();
            self.room.handle(
                Input::Arrive {
                    conn,
                    person,
                    attestation: None,
                },
                Self::at(secs),
            )
        }

        fn act(&mut self, conn: ConnId, action: Action, secs: i64) -> Vec<Effect> {
            self.room
                .handle(Input::Clinician { conn, action }, Self::at(secs))
        }
    }

    /// The message types sent to `conn` (closes marked with "close:").
    fn to(effects: &[Effect], conn: ConnId) -> Vec<String> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { conn: c, message } if *c == conn => Some(kind(message)),
                Effect::Close { conn: c, message } if *c == conn => {
                    Some(format!("close:{}", kind(message)))
                }
                _ => None,
            })
            .collect()
    }

    fn kind(message: &ServerMessage) -> String {
        let value = serde_json::to_value(message).unwrap();
        match value["code"].as_str() {
            Some(code) => format!("{}({code})", value["type"].as_str().unwrap()),
            None => value["type"].as_str().unwrap().to_owned(),
        }
    }

    fn media(effects: &[Effect]) -> Vec<Effect> {
        effects
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Effect::StartMedia { .. }
                        | Effect::StopMedia { .. }
                        | Effect::SetGroup { .. }
                        | Effect::Block { .. }
                )
            })
            .cloned()
            .collect()
    }

    #[test]
    fn a_patient_alone_waits_and_the_clinician_admits() {
        let mut s = Script::new(SessionKind::Couple, false);
        let e = s.arrive(2, "p", 0);
        assert_eq!(to(&e, 2), ["waiting"]);
        assert!(
            media(&e).is_empty(),
            "nobody but a clinician is in a room without one"
        );

        let e = s.arrive(1, "c", 10);
        assert_eq!(to(&e, 1), ["joined", "lobby"]);
        assert_eq!(media(&e), [Effect::StartMedia { conn: 1 }]);
        assert!(
            to(&e, 2).is_empty(),
            "still waiting: the clinician has not admitted"
        );

        let e = s.act(1, Action::Admit("p".into()), 20);
        assert_eq!(to(&e, 2), ["joined"]);
        assert_eq!(to(&e, 1), ["participant_joined", "lobby"]);
        assert_eq!(media(&e), [Effect::StartMedia { conn: 2 }]);
        assert!(e.contains(&Effect::Record(RoomEvent::Admitted {
            participant: "p".into(),
            conn: 2,
            by: Some("c".into())
        })));
    }

    #[test]
    fn deny_admit_all_and_who_may_act() {
        let mut s = Script::new(SessionKind::Couple, false);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        s.arrive(3, "q", 2);
        // A patient cannot admit anyone.
        let e = s.act(2, Action::AdmitAll, 3);
        assert_eq!(to(&e, 2), ["error(not_allowed)"]);
        let e = s.act(1, Action::Deny("q".into()), 4);
        assert_eq!(to(&e, 3), ["close:denied(denied_by_clinician)"]);
        let e = s.act(1, Action::Admit("nobody".into()), 5);
        assert_eq!(to(&e, 1), ["error(bad_state)"]);
        // The denied partner may knock again.
        s.arrive(4, "q", 6);
        let e = s.act(1, Action::AdmitAll, 7);
        assert_eq!(to(&e, 2), ["joined", "participant_joined"]);
        assert_eq!(to(&e, 4), ["joined"]);
        assert_eq!(
            media(&e),
            [
                Effect::StartMedia { conn: 2 },
                Effect::StartMedia { conn: 4 }
            ]
        );
    }

    #[test]
    fn auto_admit_lets_people_in_only_while_a_clinician_is_present() {
        let mut s = Script::new(SessionKind::Couple, true);
        let e = s.arrive(2, "p", 0);
        assert_eq!(to(&e, 2), ["waiting"], "no clinician yet");
        let e = s.arrive(1, "c", 5);
        assert_eq!(to(&e, 2), ["joined"], "admitted when the clinician arrives");
        let e = s.arrive(3, "q", 6);
        assert_eq!(to(&e, 3), ["joined"]);
    }

    #[test]
    fn the_clinician_drops_then_the_grace_runs_out() {
        let mut s = Script::new(SessionKind::Couple, false);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        s.act(1, Action::Admit("p".into()), 2);
        let e = s.room.handle(
            Input::Leave {
                conn: 1,
                reason: LeaveReason::Left,
            },
            Script::at(100),
        );
        assert_eq!(to(&e, 2), ["participant_left"]);
        // New arrivals wait while the clinician is away.
        let e = s.arrive(3, "q", 110);
        assert_eq!(to(&e, 3), ["waiting"]);
        // Within the grace (5 minutes) the patient stays.
        let e = s.room.handle(Input::Tick, Script::at(100 + 299));
        assert!(to(&e, 2).is_empty());
        let e = s.room.handle(Input::Tick, Script::at(100 + 300));
        assert_eq!(to(&e, 2), ["waiting"]);
        assert_eq!(media(&e), [Effect::StopMedia { conn: 2 }]);
        let waiting = e.iter().find_map(|e| match e {
            Effect::Send {
                conn: 2,
                message: ServerMessage::Waiting { reason },
            } => *reason,
            _ => None,
        });
        assert_eq!(waiting, Some(WaitingReason::ClinicianAway));
        // The clinician comes back and sees both waiting.
        let e = s.arrive(5, "c", 500);
        let lobby = e.iter().find_map(|e| match e {
            Effect::Send {
                conn: 5,
                message: ServerMessage::Lobby { waiting },
            } => Some(waiting.len()),
            _ => None,
        });
        assert_eq!(lobby, Some(2));
    }

    #[test]
    fn a_clinician_back_within_the_grace_keeps_the_room() {
        let mut s = Script::new(SessionKind::Couple, false);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        s.act(1, Action::Admit("p".into()), 2);
        s.room.handle(
            Input::Leave {
                conn: 1,
                reason: LeaveReason::Left,
            },
            Script::at(100),
        );
        s.arrive(3, "c", 200);
        let e = s.room.handle(Input::Tick, Script::at(1000));
        assert!(to(&e, 2).is_empty(), "{e:?}");
    }

    #[test]
    fn a_removed_participant_stays_out() {
        let mut s = Script::new(SessionKind::Couple, true);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        let e = s.act(1, Action::Remove("p".into()), 2);
        assert_eq!(to(&e, 2), ["close:removed"]);
        assert_eq!(to(&e, 1), ["participant_left", "lobby"]);
        assert!(e.contains(&Effect::StopMedia { conn: 2 }));
        assert!(e.contains(&Effect::PersistRemoval {
            participant: "p".into()
        }));
        let e = s.arrive(3, "p", 3);
        assert_eq!(to(&e, 3), ["close:denied(removed)"]);
        // Someone not connected can be removed too (and cannot come).
        s.act(1, Action::Remove("q".into()), 4);
        let e = s.arrive(4, "q", 5);
        assert_eq!(to(&e, 4), ["close:denied(removed)"]);
        let e = s.act(1, Action::Remove("c".into()), 6);
        assert_eq!(to(&e, 1), ["error(bad_state)"]);
    }

    #[test]
    fn a_second_device_replaces_the_first_and_keeps_its_place() {
        let mut s = Script::new(SessionKind::Couple, true);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        let e = s.arrive(3, "p", 2);
        assert_eq!(to(&e, 2), ["close:replaced"]);
        assert_eq!(to(&e, 3), ["joined"]);
        assert!(to(&e, 1).is_empty(), "no leave and join for the others");
        assert_eq!(
            media(&e),
            [
                Effect::StopMedia { conn: 2 },
                Effect::StartMedia { conn: 3 }
            ]
        );
        assert!(e.contains(&Effect::Record(RoomEvent::Replaced {
            participant: "p".into(),
            old: 2,
            new: 3
        })));
        // The old connection's late leave changes nothing.
        let e = s.room.handle(
            Input::Leave {
                conn: 2,
                reason: LeaveReason::Left,
            },
            Script::at(3),
        );
        assert!(e.is_empty());
    }

    #[test]
    fn mute_is_enforced_and_unmuting_needs_permission_when_asked() {
        let mut s = Script::new(SessionKind::Couple, true);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        let e = s.act(
            1,
            Action::Mute {
                participant: "p".into(),
                kind: MediaKind::Audio,
                allow_unmute: false,
            },
            2,
        );
        assert_eq!(to(&e, 2), ["muted"]);
        assert_eq!(to(&e, 1), ["media"]);
        assert_eq!(
            media(&e),
            [Effect::Block {
                conn: 2,
                kind: MediaKind::Audio,
                blocked: true
            }]
        );
        let e = s.room.handle(
            Input::Media {
                conn: 2,
                audio: true,
                video: true,
            },
            Script::at(3),
        );
        assert_eq!(to(&e, 2), ["error(not_allowed)"]);
        assert!(media(&e).is_empty(), "still blocked");
        let e = s.act(
            1,
            Action::AllowUnmute {
                participant: "p".into(),
                kind: MediaKind::Audio,
            },
            4,
        );
        assert_eq!(to(&e, 2), ["unmute_allowed"]);
        let e = s.room.handle(
            Input::Media {
                conn: 2,
                audio: true,
                video: true,
            },
            Script::at(5),
        );
        assert_eq!(
            media(&e),
            [Effect::Block {
                conn: 2,
                kind: MediaKind::Audio,
                blocked: false
            }]
        );
        assert_eq!(to(&e, 1), ["media"]);
        // With permission to unmute, the participant may unmute at once.
        s.act(
            1,
            Action::Mute {
                participant: "p".into(),
                kind: MediaKind::Video,
                allow_unmute: true,
            },
            6,
        );
        let e = s.room.handle(
            Input::Media {
                conn: 2,
                audio: true,
                video: true,
            },
            Script::at(7),
        );
        assert_eq!(
            media(&e),
            [Effect::Block {
                conn: 2,
                kind: MediaKind::Video,
                blocked: false
            }]
        );
    }

    #[test]
    fn end_closes_the_room_for_everyone() {
        let mut s = Script::new(SessionKind::Couple, false);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        s.arrive(3, "q", 2);
        s.act(1, Action::Admit("p".into()), 3);
        let e = s.act(1, Action::End, 4);
        for conn in [1, 2, 3] {
            assert_eq!(to(&e, conn), ["close:ended"], "conn {conn}");
        }
        assert!(e.contains(&Effect::PersistEnd));
        assert!(e.contains(&Effect::Finished));
        assert!(s.room.is_finished());
        let e = s.arrive(4, "p", 5);
        assert_eq!(to(&e, 4), ["close:denied(session_ended)"]);
    }

    #[test]
    fn warnings_before_the_room_closes_then_ended() {
        let mut s = Script::new(SessionKind::Couple, true);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        // The room closes at 16:30 (end + 30 min grace) = 5400 s after 15:00.
        let close = 5400;
        let cases = [
            (close - 301, vec![]),
            (close - 300, vec!["session_ending"]),
            (close - 200, vec![]),
            (close - 61, vec![]),
            (close - 60, vec!["session_ending"]),
            (close - 1, vec![]),
            (close, vec!["close:ended"]),
        ];
        for (secs, expected) in cases {
            let e = s.room.handle(Input::Tick, Script::at(secs));
            assert_eq!(to(&e, 2), expected, "at {secs}");
        }
        assert!(s.room.is_finished());
    }

    #[test]
    fn a_breakout_groups_one_household_and_ends() {
        let mut s = Script::new(SessionKind::Group, true);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        s.arrive(3, "q", 2);
        s.arrive(4, "r", 3);
        let e = s.act(
            1,
            Action::Breakout {
                household: "h1".into(),
                with_clinician: false,
            },
            4,
        );
        assert_eq!(
            media(&e),
            [
                Effect::SetGroup { conn: 2, group: 1 },
                Effect::SetGroup { conn: 3, group: 1 }
            ]
        );
        // A household member who arrives later goes straight to the breakout.
        let e = s.room.handle(
            Input::Leave {
                conn: 3,
                reason: LeaveReason::Left,
            },
            Script::at(5),
        );
        assert!(media(&e).contains(&Effect::StopMedia { conn: 3 }));
        let e = s.arrive(5, "q", 6);
        assert_eq!(
            media(&e),
            [
                Effect::StartMedia { conn: 5 },
                Effect::SetGroup { conn: 5, group: 1 }
            ]
        );
        let e = s.act(
            1,
            Action::Breakout {
                household: "h2".into(),
                with_clinician: true,
            },
            7,
        );
        assert_eq!(
            media(&e),
            [
                Effect::SetGroup { conn: 1, group: 2 },
                Effect::SetGroup { conn: 4, group: 2 }
            ]
        );
        let e = s.act(
            1,
            Action::EndBreakout {
                household: "h1".into(),
            },
            8,
        );
        assert_eq!(
            media(&e),
            [
                Effect::SetGroup { conn: 2, group: 0 },
                Effect::SetGroup { conn: 5, group: 0 }
            ]
        );
        let e = s.act(
            1,
            Action::Breakout {
                household: "nope".into(),
                with_clinician: false,
            },
            9,
        );
        assert_eq!(to(&e, 1), ["error(bad_state)"]);
    }

    #[test]
    fn presence_starts_when_media_connects_and_once() {
        let mut s = Script::new(SessionKind::Couple, true);
        s.arrive(1, "c", 0);
        let person = s.roster[1].clone();
        let attestation = Attestation {
            state: "NY".into(),
            at_home: true,
            private: true,
        };
        let e = s.room.handle(
            Input::Arrive {
                conn: 2,
                person,
                attestation: Some(attestation.clone()),
            },
            Script::at(1),
        );
        assert_eq!(
            e.first(),
            Some(&Effect::Record(RoomEvent::Attestation {
                participant: "p".into(),
                conn: 2,
                attestation
            }))
        );
        let e = s.room.handle(Input::Connected { conn: 2 }, Script::at(2));
        assert_eq!(
            e,
            [Effect::Record(RoomEvent::Joined {
                participant: "p".into(),
                conn: 2,
                video: true
            })]
        );
        assert!(s
            .room
            .handle(Input::Connected { conn: 2 }, Script::at(3))
            .is_empty());
        assert_eq!(s.room.present(), [2]);
        // Someone waiting has no presence even if a peer connection connects.
        let mut w = Script::new(SessionKind::Couple, false);
        w.arrive(5, "p", 0);
        assert!(w
            .room
            .handle(Input::Connected { conn: 5 }, Script::at(1))
            .is_empty());
    }

    #[test]
    fn a_lost_connection_ends_presence_at_its_last_sign_of_life() {
        let mut s = Script::new(SessionKind::Couple, true);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        s.room.handle(Input::Connected { conn: 2 }, Script::at(2));
        let last_seen = Script::at(40);
        let e = s.room.handle(
            Input::Leave {
                conn: 2,
                reason: LeaveReason::Network { last_seen },
            },
            Script::at(70),
        );
        assert!(e.contains(&Effect::Record(RoomEvent::Left {
            participant: "p".into(),
            conn: 2,
            reason: Reason::Network,
            at: Some(last_seen),
        })));
        assert!(s.room.present().is_empty());
    }

    #[test]
    fn a_network_drop_does_not_send_an_admitted_person_back_to_wait() {
        let mut s = Script::new(SessionKind::Couple, false);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        s.act(1, Action::Admit("p".into()), 2);
        let lost = LeaveReason::Network {
            last_seen: Script::at(3),
        };
        s.room.handle(
            Input::Leave {
                conn: 2,
                reason: lost,
            },
            Script::at(5),
        );
        let e = s.arrive(3, "p", 6);
        assert_eq!(to(&e, 3), ["joined"], "back in at once after a drop");
        // Leaving on purpose and coming back means knocking again.
        s.room.handle(
            Input::Leave {
                conn: 3,
                reason: LeaveReason::Left,
            },
            Script::at(7),
        );
        let e = s.arrive(4, "p", 8);
        assert_eq!(to(&e, 4), ["waiting"]);
        // Without a clinician in the room a returning person waits.
        let mut s = Script::new(SessionKind::Couple, false);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        s.act(1, Action::Admit("p".into()), 2);
        s.room.handle(
            Input::Leave {
                conn: 2,
                reason: lost,
            },
            Script::at(5),
        );
        s.room.handle(
            Input::Leave {
                conn: 1,
                reason: LeaveReason::Left,
            },
            Script::at(6),
        );
        let e = s.arrive(3, "p", 7);
        assert_eq!(to(&e, 3), ["waiting"]);
    }

    #[test]
    fn breakouts_are_for_group_sessions() {
        let mut s = Script::new(SessionKind::Couple, true);
        s.arrive(1, "c", 0);
        let e = s.act(
            1,
            Action::Breakout {
                household: "h1".into(),
                with_clinician: false,
            },
            1,
        );
        assert_eq!(to(&e, 1), ["error(bad_state)"]);
    }

    #[test]
    fn revocation_and_cancellation_take_people_out() {
        let mut s = Script::new(SessionKind::Couple, true);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        let e = s.room.handle(
            Input::Revoked {
                participant: "p".into(),
            },
            Script::at(2),
        );
        assert_eq!(to(&e, 2), ["close:denied(revoked)"]);
        assert_eq!(to(&e, 1), ["participant_left", "lobby"]);
        let e = s.room.handle(Input::Cancelled, Script::at(3));
        assert_eq!(to(&e, 1), ["close:ended"]);
        assert!(
            !e.contains(&Effect::PersistEnd),
            "a cancellation is already stored"
        );
    }

    #[test]
    fn a_media_message_that_changes_nothing_is_neither_recorded_nor_told() {
        let mut s = Script::new(SessionKind::Couple, false);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        s.act(1, Action::Admit("p".into()), 2);
        s.arrive(3, "q", 3);
        let media = |audio, video| Input::Media {
            conn: 3,
            audio,
            video,
        };
        // The waiting partner repeats its state: nothing, however often.
        for i in 0..1000 {
            assert_eq!(s.room.handle(media(true, true), Script::at(4)), [], "{i}");
        }
        let e = s.room.handle(media(false, true), Script::at(5));
        assert!(matches!(
            e.as_slice(),
            [Effect::Record(RoomEvent::MediaChanged { audio: false, .. })]
        ));
        assert_eq!(s.room.handle(media(false, true), Script::at(6)), []);
        // In the room, a change is told once.
        let e = s.room.handle(
            Input::Media {
                conn: 2,
                audio: true,
                video: false,
            },
            Script::at(7),
        );
        assert_eq!(to(&e, 1), ["media"]);
        let e = s.room.handle(
            Input::Media {
                conn: 2,
                audio: true,
                video: false,
            },
            Script::at(8),
        );
        assert_eq!(e, []);
    }

    #[test]
    fn a_stop_ends_everyones_presence_with_server_restart_and_not_the_session() {
        let mut s = Script::new(SessionKind::Couple, false);
        s.arrive(1, "c", 0);
        s.arrive(2, "p", 1);
        s.act(1, Action::Admit("p".into()), 2);
        s.arrive(3, "q", 3);
        let e = s.room.handle(Input::Stop, Script::at(4));
        for conn in [1, 2, 3] {
            assert_eq!(to(&e, conn), ["close:error(server_restart)"], "{conn}");
        }
        let left: Vec<(&str, ConnId, Reason, Option<DateTime<Utc>>)> = e
            .iter()
            .filter_map(|e| match e {
                Effect::Record(RoomEvent::Left {
                    participant,
                    conn,
                    reason,
                    at,
                }) => Some((participant.as_str(), *conn, *reason, *at)),
                _ => None,
            })
            .collect();
        assert_eq!(
            left,
            [
                ("c", 1, Reason::ServerRestart, None),
                ("p", 2, Reason::ServerRestart, None),
                ("q", 3, Reason::ServerRestart, None),
            ]
        );
        assert_eq!(
            media(&e),
            [Effect::StopMedia { conn: 1 }, Effect::StopMedia { conn: 2 }]
        );
        assert!(!e.iter().any(|e| matches!(
            e,
            Effect::Finished | Effect::PersistEnd | Effect::Record(RoomEvent::SessionEnded { .. })
        )));
        assert!(!s.room.is_finished());
    }
}
