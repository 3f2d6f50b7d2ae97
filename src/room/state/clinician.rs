//! What a clinician may do in the room: admit, deny, remove, mute, end,
//! and send households to breakouts. Only a clinician in the room may act;
//! everyone else is told so.

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
}
