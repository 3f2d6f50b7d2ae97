//! Whether a node is alive, from its heartbeats.
//!
//! Every node writes its heartbeat row every [`HEARTBEAT_EVERY`]; a node
//! whose last heartbeat is [`DEAD_AFTER`] old or older counts as dead: three
//! beats missed, so one slow write or a short pause of the database does not
//! declare a node dead, and a dead node is noticed well inside the 15 s a
//! failover may take. Nothing is taken from a node for being dead: its
//! rooms move only when their leases expire ([`super::lease`]), which is
//! what keeps two nodes from acting for one room.

use chrono::{DateTime, TimeDelta, Utc};

/// How often a node writes its heartbeat.
pub const HEARTBEAT_EVERY: TimeDelta = TimeDelta::seconds(2);

/// How old a heartbeat may be before its node counts as dead.
pub const DEAD_AFTER: TimeDelta = TimeDelta::seconds(6);

/// A node's liveness at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
}

/// The liveness of a node whose last heartbeat was at `last_beat`, seen at
/// `now`. A heartbeat from the future (another node's clock a little
/// ahead) counts as fresh.
pub fn liveness(last_beat: DateTime<Utc>, now: DateTime<Utc>) -> Liveness {
    if now - last_beat < DEAD_AFTER {
        Liveness::Alive
    } else {
        Liveness::Dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000 + ms).unwrap()
    }

    #[test]
    fn a_node_stays_alive_through_two_missed_beats() {
        let beat = at(0);
        assert_eq!(liveness(beat, at(0)), Liveness::Alive);
        assert_eq!(liveness(beat, at(2_000)), Liveness::Alive);
        assert_eq!(liveness(beat, at(5_999)), Liveness::Alive);
    }

    #[test]
    fn a_node_is_dead_six_seconds_after_its_last_beat() {
        assert_eq!(liveness(at(0), at(6_000)), Liveness::Dead);
        assert_eq!(liveness(at(0), at(60_000)), Liveness::Dead);
    }

    #[test]
    fn a_beat_from_a_clock_slightly_ahead_counts_as_fresh() {
        assert_eq!(liveness(at(1_500), at(0)), Liveness::Alive);
    }

    #[test]
    fn three_beats_fit_in_the_dead_time() {
        assert_eq!(DEAD_AFTER, HEARTBEAT_EVERY * 3);
    }
}
