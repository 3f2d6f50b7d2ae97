//! What a clinician may do in the room: admit, deny, remove, mute, end,
//! send households to breakouts (breakout.rs), lower hands and spotlight
//! someone (hands.rs). Only a clinician in the room may act; everyone else
//! is told so.

use super::*;

impl Room {
    pub(super) fn clinician(
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
                minutes,
            } => self.breakout(conn, household, with_clinician, minutes, now, out),
            Action::EndBreakout { household } => {
                if !self.end_breakout(&household, out) {
                    out.push(bad_state("that household is not in a breakout"));
                }
            }
            Action::EndAllBreakouts => self.end_all_breakouts(out),
            Action::BreakoutMessage(text) => self.message_breakouts(&by, text, out),
            Action::LowerHand(participant) => {
                if !self.lower_hand(&participant, out) {
                    out.push(bad_state("that person's hand is not raised"));
                }
            }
            Action::Spotlight(participant) => self.set_spotlight(conn, participant, out),
        }
    }
}
