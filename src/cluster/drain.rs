//! A node leaving the cluster without dropping a session.
//!
//! Draining (SIGTERM with `--drain`, or the admin endpoint) is a state
//! machine fed with the node's live rooms and the time:
//!
//! 1. From the start the node takes no new rooms (`/healthz` says
//!    `draining`, placement skips it); people of its live rooms still join
//!    them.
//! 2. A room with nobody connected is released at once (its lease given
//!    up; whoever comes next claims it on another node).
//! 3. A room that ends before the node's patience runs out runs to its end.
//! 4. After that, the rooms still live are handed over, each at its first
//!    quiet moment (nobody waiting to be admitted, no clinician action in
//!    flight: the caller says which rooms are quiet), and all of them once
//!    [`FORCE_AFTER`] more has passed: their people reconnect to the node
//!    that claims the room next and are back without the waiting room.
//! 5. With no room left, the node exits.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};

/// How long after its patience a room is handed over even if never quiet.
pub const FORCE_AFTER: TimeDelta = TimeDelta::seconds(60);

/// One live room of the draining node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRoom {
    pub session_id: String,
    /// People connected to it (in the room or waiting).
    pub connected: usize,
    /// When it closes by itself (scheduled end plus overrun grace).
    pub closes_at: DateTime<Utc>,
    /// No one waiting to be admitted, nothing in flight.
    pub quiet: bool,
}

/// What the node does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Give up the lease of an empty room.
    Release(String),
    /// Give the room to another node: its people reconnect there.
    HandOver(String),
    /// No room is left: exit.
    Exit,
}

/// The drain of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drain {
    Serving,
    Draining {
        since: DateTime<Utc>,
        /// Rooms ending before this run to their end; others are handed over.
        hand_over_from: DateTime<Utc>,
        /// Rooms already released or handed over.
        gone: BTreeSet<String>,
    },
    Done,
}

impl Drain {
    /// Starts draining at `now`, letting rooms run for `patience`. A second
    /// start changes nothing.
    pub fn start(&mut self, now: DateTime<Utc>, patience: TimeDelta) {
        if *self == Drain::Serving {
            *self = Drain::Draining {
                since: now,
                hand_over_from: now + patience,
                gone: BTreeSet::new(),
            };
        }
    }

    /// Whether the node takes rooms it does not hold yet.
    pub fn takes_new_rooms(&self) -> bool {
        *self == Drain::Serving
    }

    /// What to do now about `rooms`, the node's live rooms.
    pub fn tick(&mut self, now: DateTime<Utc>, rooms: &[LiveRoom]) -> Vec<Step> {
        let Drain::Draining {
            hand_over_from,
            gone,
            ..
        } = self
        else {
            return Vec::new();
        };
        let mut steps = Vec::new();
        let mut left = 0;
        for room in rooms {
            if gone.contains(&room.session_id) {
                continue;
            }
            let step = if room.connected == 0 {
                Some(Step::Release(room.session_id.clone()))
            } else if now >= *hand_over_from
                && room.closes_at > now
                && (room.quiet || now >= *hand_over_from + FORCE_AFTER)
            {
                Some(Step::HandOver(room.session_id.clone()))
            } else {
                None
            };
            match step {
                Some(step) => {
                    gone.insert(room.session_id.clone());
                    steps.push(step);
                }
                None => left += 1,
            }
        }
        if left == 0 {
            *self = Drain::Done;
            steps.push(Step::Exit);
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000 + s * 1000)
            .unwrap()
    }

    fn room(id: &str, connected: usize, closes_at: i64, quiet: bool) -> LiveRoom {
        LiveRoom {
            session_id: id.into(),
            connected,
            closes_at: at(closes_at),
            quiet,
        }
    }

    fn draining(patience: i64) -> Drain {
        let mut drain = Drain::Serving;
        drain.start(at(0), TimeDelta::seconds(patience));
        drain
    }

    #[test]
    fn a_serving_node_takes_rooms_and_does_nothing_on_a_tick() {
        let mut drain = Drain::Serving;
        assert!(drain.takes_new_rooms());
        assert!(drain.tick(at(0), &[room("s", 2, 600, true)]).is_empty());
    }

    #[test]
    fn a_draining_node_takes_no_new_rooms() {
        assert!(!draining(600).takes_new_rooms());
    }

    #[test]
    fn a_node_with_no_rooms_exits_at_once() {
        let mut drain = draining(600);
        assert_eq!(drain.tick(at(0), &[]), vec![Step::Exit]);
        assert_eq!(drain, Drain::Done);
    }

    #[test]
    fn empty_rooms_are_released_and_rooms_ending_soon_run_to_their_end() {
        let mut drain = draining(600);
        let rooms = [room("empty", 0, 900, true), room("ending", 3, 300, true)];
        assert_eq!(
            drain.tick(at(1), &rooms),
            vec![Step::Release("empty".into())]
        );
        // The session runs on; nothing more happens to it.
        assert!(drain.tick(at(200), &rooms[1..]).is_empty());
        // It ended (the room task is gone): the node exits.
        assert_eq!(drain.tick(at(301), &[]), vec![Step::Exit]);
    }

    #[test]
    fn a_long_room_is_handed_over_at_its_first_quiet_moment_after_the_patience() {
        let mut drain = draining(600);
        assert!(drain
            .tick(at(599), &[room("long", 4, 7200, true)])
            .is_empty());
        assert!(drain
            .tick(at(600), &[room("long", 4, 7200, false)])
            .is_empty());
        assert_eq!(
            drain.tick(at(610), &[room("long", 4, 7200, true)]),
            vec![Step::HandOver("long".into()), Step::Exit]
        );
    }

    #[test]
    fn a_room_that_is_never_quiet_is_handed_over_all_the_same() {
        let mut drain = draining(600);
        assert!(drain
            .tick(at(659), &[room("busy", 4, 7200, false)])
            .is_empty());
        assert_eq!(
            drain.tick(at(660), &[room("busy", 4, 7200, false)]),
            vec![Step::HandOver("busy".into()), Step::Exit]
        );
    }

    #[test]
    fn a_room_is_handed_over_once_even_if_it_lingers() {
        let mut drain = draining(0);
        let rooms = [room("a", 2, 7200, true), room("b", 2, 7200, false)];
        assert_eq!(drain.tick(at(1), &rooms), vec![Step::HandOver("a".into())]);
        // "a" is still listed while its people leave: not handed over again.
        assert!(drain.tick(at(2), &rooms).is_empty());
    }

    #[test]
    fn starting_twice_keeps_the_first_patience() {
        let mut drain = draining(600);
        drain.start(at(100), TimeDelta::seconds(0));
        assert!(drain
            .tick(at(101), &[room("long", 4, 7200, true)])
            .is_empty());
    }
}
