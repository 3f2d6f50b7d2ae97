//! Who is connected to each live room, so that presence and mute state
//! reach everyone else in the room (and nobody outside it).
//!
//! A short critical section per join, leave or mute; never held across an
//! await, never on the media path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::mpsc;
use uuid::Uuid;

use super::message::{Participant, ServerMessage};
use crate::sfu::ConnId;

/// What a connection's writer is asked to do.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Send(ServerMessage),
    /// Send the message, then close the socket (replaced, removed, ended).
    Close(ServerMessage),
}

#[derive(Debug, Clone)]
pub struct Member {
    pub conn: ConnId,
    pub info: Participant,
    pub out: mpsc::UnboundedSender<Outgoing>,
}

#[derive(Default)]
pub struct Hub {
    rooms: Mutex<HashMap<Uuid, Vec<Member>>>,
    next_conn: AtomicU64,
}

impl Hub {
    pub fn next_conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Puts `member` in `room`, tells the others, and returns who was already
    /// there plus the earlier connection of the same participant, which the
    /// new one replaces (it is no longer a member).
    pub fn enter(&self, room: Uuid, member: Member) -> (Vec<Participant>, Option<Member>) {
        let mut rooms = self.rooms.lock().expect("hub lock");
        let members = rooms.entry(room).or_default();
        let replaced = members
            .iter()
            .position(|m| m.info.id == member.info.id)
            .map(|i| members.remove(i));
        let present = members.iter().map(|m| m.info.clone()).collect();
        for other in members.iter() {
            let _ = other
                .out
                .send(Outgoing::Send(ServerMessage::ParticipantJoined {
                    participant: member.info.clone(),
                }));
        }
        members.push(member);
        (present, replaced)
    }

    /// Takes connection `conn` out of `room` and tells the others. False when
    /// it was not a member (it had been replaced).
    pub fn leave(&self, room: Uuid, conn: ConnId) -> bool {
        let mut rooms = self.rooms.lock().expect("hub lock");
        let Some(members) = rooms.get_mut(&room) else {
            return false;
        };
        let Some(index) = members.iter().position(|m| m.conn == conn) else {
            return false;
        };
        let gone = members.remove(index);
        for other in members.iter() {
            let _ = other
                .out
                .send(Outgoing::Send(ServerMessage::ParticipantLeft {
                    participant: gone.info.clone(),
                }));
        }
        if members.is_empty() {
            rooms.remove(&room);
        }
        true
    }

    /// Records a participant's own mute state and tells the others.
    pub fn set_media(&self, room: Uuid, conn: ConnId, audio: bool, video: bool) {
        let mut rooms = self.rooms.lock().expect("hub lock");
        let Some(members) = rooms.get_mut(&room) else {
            return;
        };
        let Some(member) = members.iter_mut().find(|m| m.conn == conn) else {
            return;
        };
        member.info.audio = audio;
        member.info.video = video;
        let id = member.info.id.clone();
        for other in members.iter().filter(|m| m.conn != conn) {
            let _ = other.out.send(Outgoing::Send(ServerMessage::Media {
                participant: id.clone(),
                audio,
                video,
            }));
        }
    }

    /// How many connections are in live rooms.
    pub fn connections(&self) -> usize {
        self.rooms
            .lock()
            .expect("hub lock")
            .values()
            .map(Vec::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::RosterRole;

    fn member(hub: &Hub, id: &str) -> (Member, mpsc::UnboundedReceiver<Outgoing>) {
        let (out, rx) = mpsc::unbounded_channel();
        let info = Participant {
            id: id.into(),
            name: id.to_uppercase(),
            role: RosterRole::Patient,
            audio: true,
            video: true,
        };
        (
            Member {
                conn: hub.next_conn(),
                info,
                out,
            },
            rx,
        )
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Outgoing>) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(Outgoing::Send(m) | Outgoing::Close(m)) = rx.try_recv() {
            seen.push(
                serde_json::to_value(m).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        seen
    }

    #[test]
    fn presence_reaches_the_room_and_nobody_else() {
        let hub = Hub::default();
        let (room, other_room) = (Uuid::new_v4(), Uuid::new_v4());
        let (a, mut a_rx) = member(&hub, "a");
        let (b, mut b_rx) = member(&hub, "b");
        let (c, mut c_rx) = member(&hub, "c");
        let (a_conn, b_conn) = (a.conn, b.conn);
        assert!(hub.enter(room, a).0.is_empty());
        let (present, _) = hub.enter(room, b);
        assert_eq!(present.len(), 1);
        hub.enter(other_room, c);
        hub.set_media(room, b_conn, false, true);
        assert!(hub.leave(room, a_conn));
        assert_eq!(drain(&mut a_rx), ["participant_joined", "media"]);
        assert_eq!(drain(&mut b_rx), ["participant_left"]);
        assert!(drain(&mut c_rx).is_empty());
        assert_eq!(hub.connections(), 2);
    }

    #[test]
    fn a_second_connection_replaces_the_first() {
        let hub = Hub::default();
        let room = Uuid::new_v4();
        let (first, _rx1) = member(&hub, "a");
        let (second, _rx2) = member(&hub, "a");
        let first_conn = first.conn;
        hub.enter(room, first);
        let (_, replaced) = hub.enter(room, second);
        assert_eq!(replaced.unwrap().conn, first_conn);
        assert!(
            !hub.leave(room, first_conn),
            "the replaced connection is gone"
        );
        assert_eq!(hub.connections(), 1);
    }
}
