//! Arrivals and admission into the room: the waiting room, a clinician
//! admitting one person or everyone, a second device taking the place of
//! the first, and what a person is told when they enter.

use super::*;

/// Refuses an arrival: told, closed and recorded.
pub(super) fn refuse(conn: ConnId, participant: String, code: DenialCode, out: &mut Vec<Effect>) {
    out.push(Effect::Close {
        conn,
        message: ServerMessage::denied(code),
    });
    out.push(Effect::Record(RoomEvent::Denied {
        participant,
        conn,
        code,
    }));
}

impl Room {
    pub(super) fn arrive(
        &mut self,
        conn: ConnId,
        person: RosterEntry,
        sign_of_life: SignOfLife,
        e2ee: bool,
        now: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        if self.removed.contains(&person.id) {
            refuse(conn, person.id, DenialCode::Removed, out);
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
                at: None,
            }));
            let member = &mut self.members[i];
            member.conn = conn;
            member.joined = false;
            member.sign_of_life = sign_of_life;
            // A new connection makes a new key pair: the old one's public
            // key is gone with it.
            member.e2ee = e2ee;
            member.public_key = None;
            match member.place {
                Place::InRoom => {
                    let (group, blocked) = (member.group, member.blocked);
                    out.push(Effect::StopMedia { conn: old });
                    self.refresh_e2ee(Some(conn), out);
                    // `joined` before the media it announces.
                    let joined = self.joined_message(conn);
                    out.push(Effect::Send {
                        conn,
                        message: joined,
                    });
                    self.room_state_for(conn, out);
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
            sign_of_life,
            e2ee,
            public_key: None,
        });
        let index = self.members.len() - 1;
        let returning = self.readmit.contains(&self.members[index].person.id);
        if is_clinician || ((self.auto_admit || returning) && self.clinician_in_room()) {
            self.readmit.remove(&self.members[index].person.id);
            self.admit(index, None, out);
            if is_clinician {
                self.clinician_seen = true;
                self.clinician_away_since = None;
                if self.auto_admit {
                    self.admit_waiting(None, out);
                } else {
                    // People admitted before whose connection was lost
                    // (or whose node died) and who came back first.
                    self.admit_returning(out);
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
                household: me.person.household.clone(),
            },
            session: self.session.clone(),
            participants: self
                .in_room()
                .filter(|m| m.conn != conn)
                .map(|m| m.participant_for(me))
                .collect(),
            ice_servers: self.ice_servers.clone(),
            e2ee: self.e2ee_state(),
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
    pub(super) fn admit(&mut self, index: usize, by: Option<String>, out: &mut Vec<Effect>) {
        let group = self.group_of(&self.members[index].person);
        let member = &mut self.members[index];
        member.place = Place::InRoom;
        member.group = group;
        let (conn, blocked, id) = (member.conn, member.blocked, member.person.id.clone());
        self.refresh_e2ee(Some(conn), out);
        let joined = self.joined_message(conn);
        out.push(Effect::Send {
            conn,
            message: joined,
        });
        self.room_state_for(conn, out);
        self.enter_media(conn, group, blocked, out);
        let member = self.members[index].clone();
        self.tell_room_about(
            &member,
            |participant| ServerMessage::ParticipantJoined { participant },
            out,
        );
        out.push(Effect::Record(RoomEvent::Admitted {
            participant: id,
            conn,
            by,
        }));
    }

    /// Admits everyone waiting who had been admitted before and lost their
    /// connection (`readmit`), as a clinician enters.
    fn admit_returning(&mut self, out: &mut Vec<Effect>) {
        while let Some(i) = self.members.iter().position(|m| {
            matches!(m.place, Place::Waiting { .. }) && self.readmit.contains(&m.person.id)
        }) {
            self.readmit.remove(&self.members[i].person.id);
            self.admit(i, None, out);
        }
    }

    pub(super) fn admit_waiting(&mut self, by: Option<String>, out: &mut Vec<Effect>) {
        while let Some(i) = self
            .members
            .iter()
            .position(|m| matches!(m.place, Place::Waiting { .. }))
        {
            self.admit(i, by.clone(), out);
        }
    }
}
