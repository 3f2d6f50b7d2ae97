//! Raised hands and the spotlight: the etiquette of a group room, where
//! people signal that they want to speak rather than interrupt, and the
//! clinician shows one person large to everyone.
//!
//! Everyone in the room gets the whole list of raised hands, oldest first,
//! each time it changes, and the spotlight each time it changes. Leaving
//! the room lowers one's hand and ends one's spotlight.

use super::*;

impl Room {
    /// "Raise hand" / "Lower hand" for oneself.
    pub(super) fn own_hand(
        &mut self,
        conn: ConnId,
        raised: bool,
        now: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        let Some(id) = self
            .in_room()
            .find(|m| m.conn == conn)
            .map(|m| m.person.id.clone())
        else {
            out.push(Effect::Send {
                conn,
                message: ServerMessage::error(
                    ErrorCode::BadState,
                    "You can raise your hand once you are in the room.",
                ),
            });
            return;
        };
        let up = self.hands.iter().any(|h| h.id == id);
        if raised && !up {
            self.hands.push(RaisedHand { id, since: now });
            self.tell_hands(out);
        } else if !raised && up {
            self.lower_hand(&id, out);
        }
    }

    /// Lowers `participant`'s hand; false when it was not raised.
    pub(super) fn lower_hand(&mut self, participant: &str, out: &mut Vec<Effect>) -> bool {
        let before = self.hands.len();
        self.hands.retain(|h| h.id != participant);
        if self.hands.len() == before {
            return false;
        }
        self.tell_hands(out);
        true
    }

    pub(super) fn set_spotlight(
        &mut self,
        conn: ConnId,
        participant: Option<String>,
        out: &mut Vec<Effect>,
    ) {
        if let Some(id) = &participant {
            if !self.in_room().any(|m| &m.person.id == id) {
                out.push(Effect::Send {
                    conn,
                    message: ServerMessage::error(
                        ErrorCode::BadState,
                        "nobody with that id is in the room",
                    ),
                });
                return;
            }
        }
        if self.spotlight == participant {
            return;
        }
        self.spotlight = participant;
        self.tell_everyone(
            ServerMessage::Spotlight {
                participant: self.spotlight.clone(),
            },
            out,
        );
    }

    /// Someone left the room: their hand and their spotlight go with them.
    pub(super) fn out_of_room(&mut self, participant: &str, out: &mut Vec<Effect>) {
        self.lower_hand(participant, out);
        if self.spotlight.as_deref() == Some(participant) {
            self.spotlight = None;
            self.tell_everyone(ServerMessage::Spotlight { participant: None }, out);
        }
    }

    /// What someone entering the room must know besides `joined`: raised
    /// hands, the spotlight, the breakouts they may know of, the others'
    /// public keys (end-to-end encryption).
    pub(super) fn room_state_for(&self, conn: ConnId, out: &mut Vec<Effect>) {
        if !self.hands.is_empty() {
            out.push(Effect::Send {
                conn,
                message: ServerMessage::Hands {
                    raised: self.hands.clone(),
                },
            });
        }
        if self.spotlight.is_some() {
            out.push(Effect::Send {
                conn,
                message: ServerMessage::Spotlight {
                    participant: self.spotlight.clone(),
                },
            });
        }
        self.breakouts_for(conn, out);
        self.public_keys_for(conn, out);
    }

    fn tell_hands(&self, out: &mut Vec<Effect>) {
        self.tell_everyone(
            ServerMessage::Hands {
                raised: self.hands.clone(),
            },
            out,
        );
    }
}
