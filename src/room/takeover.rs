//! Who was in a room when the node that held it stopped, from the ledger.
//!
//! When a node takes over a room (the holder died, froze or was cut off,
//! and its lease expired), it starts from the attendance ledger, the one
//! record both nodes share: the people who were in the room go straight
//! back in when they reconnect while a clinician is present, instead of
//! knocking again; a patient is never sent to the waiting room by a
//! failover. Someone is "in the room" after being admitted (or joining)
//! until they left on purpose, were removed, denied, sent back to the
//! waiting room or the session closed; a presence ended by a lost
//! connection or a stopped server (`network`, `server_restart`) does not
//! take them out.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::event::{Event, EventKind};

/// What the ledger says of a room at a takeover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Takeover {
    /// Patients, partners and observers who were in the room.
    pub readmit: BTreeSet<String>,
    /// Whether a clinician was in the room.
    pub clinician_was_in: bool,
}

impl Takeover {
    /// Reads one session's events, in ledger order.
    pub(crate) fn from_ledger(events: &[Event]) -> Takeover {
        let mut inside: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
        for e in events {
            let e = &e.event;
            if e.kind == EventKind::SessionClosed {
                return Takeover::default();
            }
            let Some(participant) = e.participant.as_deref() else {
                continue;
            };
            let clinician = e.role.as_deref() == Some("clinician");
            let now_in = match e.kind {
                EventKind::Admitted | EventKind::Joined => Some(true),
                EventKind::Waiting | EventKind::Removed | EventKind::Denied => Some(false),
                EventKind::Left => match e.reason.as_deref() {
                    Some("network") | Some("server_restart") => None,
                    _ => Some(false),
                },
                _ => None,
            };
            if let Some(now_in) = now_in {
                inside.insert(participant, (now_in, clinician));
            }
        }
        let mut takeover = Takeover::default();
        for (participant, (was_in, clinician)) in inside {
            if !was_in {
                continue;
            }
            if clinician {
                takeover.clinician_was_in = true;
            } else {
                takeover.readmit.insert(participant.to_owned());
            }
        }
        takeover
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::event::NewEvent;

    fn event(kind: EventKind, participant: &str, role: &str, reason: Option<&str>) -> Event {
        Event {
            seq: 0,
            event: NewEvent {
                at: 0,
                session: "s1".into(),
                participant: Some(participant.into()),
                role: Some(role.into()),
                connection: Some(format!("{participant}-1")),
                kind,
                reason: reason.map(Into::into),
                modality: None,
                detail: None,
            },
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    use EventKind::*;

    #[test]
    fn people_in_the_room_when_its_node_stopped_go_back_in() {
        let events = [
            event(Joined, "clin-7", "clinician", None),
            event(Waiting, "pt-1", "patient", None),
            event(Admitted, "pt-1", "patient", None),
            event(Joined, "pt-1", "patient", None),
            event(Waiting, "pt-2", "partner", None),
            event(Admitted, "pt-2", "partner", None),
            // The old node's presence closed at its last heartbeat.
            event(Left, "pt-2", "partner", Some("server_restart")),
            event(Waiting, "obs-1", "observer", None),
        ];
        let takeover = Takeover::from_ledger(&events);
        assert!(takeover.clinician_was_in);
        assert_eq!(
            takeover.readmit.into_iter().collect::<Vec<_>>(),
            ["pt-1", "pt-2"],
            "the observer was still waiting"
        );
    }

    #[test]
    fn people_who_left_were_removed_or_sent_back_knock_again() {
        let events = [
            event(Joined, "clin-7", "clinician", None),
            event(Admitted, "pt-1", "patient", None),
            event(Left, "pt-1", "patient", Some("left")),
            event(Admitted, "pt-2", "partner", None),
            event(Removed, "pt-2", "partner", None),
            event(Admitted, "pt-3", "patient", None),
            event(Left, "pt-3", "patient", Some("clinician_away")),
            event(Waiting, "pt-3", "patient", None),
            event(Left, "clin-7", "clinician", Some("left")),
        ];
        assert_eq!(Takeover::from_ledger(&events), Takeover::default());
    }

    #[test]
    fn a_closed_session_has_nobody_to_bring_back() {
        let mut closed = event(SessionClosed, "", "", None);
        closed.event.participant = None;
        let events = [event(Admitted, "pt-1", "patient", None), closed];
        assert_eq!(Takeover::from_ledger(&events), Takeover::default());
    }
}
