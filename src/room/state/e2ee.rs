//! End-to-end encryption in the room (issue 19): whether the room's media
//! is end-to-end encrypted now, and the relay of the key material clients
//! exchange through the server.
//!
//! The server is not trusted with media keys. It relays each participant's
//! ECDH public key to everyone in the room (and the current keys to someone
//! entering), and each wrapped media key to its one named recipient. It
//! stores neither (a public key lives as long as its connection is in the
//! room) and never records or logs them: the ledger learns only that E2EE
//! started or stopped in the room (`e2ee_started`, `e2ee_ended`).
//!
//! In a `required` room a client that does not say it can encrypt is
//! refused (`e2ee_required`). In a `preferred` room such a client makes the
//! whole room fall back to DTLS-SRTP only while it is in the room: everyone
//! is told (`e2ee` with `active: false`) so every client shows the mode.

use super::*;
use tandem_protocol::{E2eeMode, E2eeState};

impl Room {
    /// Whether the room's media is end-to-end encrypted now: the mode
    /// allows it, someone is in the room, and all of them can encrypt.
    fn e2ee_possible(&self) -> bool {
        self.e2ee_mode != E2eeMode::Off
            && self.in_room().next().is_some()
            && self.in_room().all(|m| m.e2ee)
    }

    pub(super) fn e2ee_state(&self) -> E2eeState {
        E2eeState {
            mode: self.e2ee_mode,
            active: self.e2ee_active,
        }
    }

    /// Whether a `required` room refuses this arrival.
    pub(super) fn e2ee_refuses(&self, e2ee: bool) -> bool {
        self.e2ee_mode == E2eeMode::Required && !e2ee
    }

    /// Brings `e2ee_active` up to date after the room's membership changed:
    /// records the change and tells everyone in the room but `except` (who
    /// learns it in its `joined`).
    pub(super) fn refresh_e2ee(&mut self, except: Option<ConnId>, out: &mut Vec<Effect>) {
        let active = self.e2ee_possible();
        if active == self.e2ee_active {
            return;
        }
        self.e2ee_active = active;
        out.push(Effect::Record(RoomEvent::E2ee { active }));
        let message = ServerMessage::E2ee {
            mode: self.e2ee_mode,
            active,
        };
        for m in self.in_room().filter(|m| Some(m.conn) != except) {
            out.push(Effect::Send {
                conn: m.conn,
                message: message.clone(),
            });
        }
    }

    /// The in-room sender of a key message, or the error it gets.
    fn key_sender(&self, conn: ConnId, out: &mut Vec<Effect>) -> Option<String> {
        let refusal = if self.e2ee_mode == E2eeMode::Off {
            Some((
                ErrorCode::NotAllowed,
                "End-to-end encryption is off for this session.",
            ))
        } else if !self.in_room().any(|m| m.conn == conn) {
            Some((
                ErrorCode::BadState,
                "Keys are exchanged once you are in the room.",
            ))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            out.push(Effect::Send {
                conn,
                message: ServerMessage::error(code, message),
            });
            return None;
        }
        self.in_room()
            .find(|m| m.conn == conn)
            .map(|m| m.person.id.clone())
    }

    /// `e2ee_public_key`: kept for the connection's time in the room and
    /// relayed to everyone else in the room who can encrypt.
    pub(super) fn public_key(&mut self, conn: ConnId, public_key: String, out: &mut Vec<Effect>) {
        let Some(id) = self.key_sender(conn, out) else {
            return;
        };
        let member = self
            .members
            .iter_mut()
            .find(|m| m.conn == conn)
            .expect("the sender is a member");
        if member.public_key.as_deref() == Some(public_key.as_str()) {
            return;
        }
        member.public_key = Some(public_key.clone());
        let message = ServerMessage::E2eePublicKey {
            participant: id,
            public_key,
        };
        for m in self.in_room().filter(|m| m.conn != conn && m.e2ee) {
            out.push(Effect::Send {
                conn: m.conn,
                message: message.clone(),
            });
        }
    }

    /// `e2ee_media_key`: relayed to the one person it is wrapped for, if
    /// they are in the room; never kept.
    pub(super) fn media_key(
        &mut self,
        conn: ConnId,
        to: String,
        key_id: u32,
        wrapped: String,
        out: &mut Vec<Effect>,
    ) {
        let Some(from) = self.key_sender(conn, out) else {
            return;
        };
        match self.in_room().find(|m| m.person.id == to && m.conn != conn) {
            Some(recipient) => out.push(Effect::Send {
                conn: recipient.conn,
                message: ServerMessage::E2eeMediaKey {
                    from,
                    key_id,
                    wrapped,
                },
            }),
            None => out.push(Effect::Send {
                conn,
                message: ServerMessage::error(
                    ErrorCode::BadState,
                    "nobody else with that id is in the room",
                ),
            }),
        }
    }

    /// The current public keys of everyone else in the room, for someone
    /// entering it (never keys of people who have left).
    pub(super) fn public_keys_for(&self, conn: ConnId, out: &mut Vec<Effect>) {
        if !self.in_room().any(|m| m.conn == conn && m.e2ee) {
            return;
        }
        for m in self.in_room().filter(|m| m.conn != conn) {
            if let Some(public_key) = &m.public_key {
                out.push(Effect::Send {
                    conn,
                    message: ServerMessage::E2eePublicKey {
                        participant: m.person.id.clone(),
                        public_key: public_key.clone(),
                    },
                });
            }
        }
    }
}
