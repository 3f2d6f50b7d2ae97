//! Which node takes a new room.
//!
//! Each node publishes a load figure with its heartbeat: the participants
//! it holds and its media shards' busy ratio (the share of time the
//! busiest shard loop spent working). A new room goes to the least-loaded
//! live node that is not draining and is below its participant limit. The
//! load of a node is the larger of its participants as a share of its
//! limit and its busy ratio, so a node full of quiet rooms and a node with
//! few but busy rooms both count as loaded. Ties go to the node with fewer
//! participants, then the smaller id: every node that reads the same rows
//! picks the same node.
//!
//! A heartbeat is up to 2 s old, and rooms open in bursts (a program's
//! sessions start on the hour): a room placed on a node since its last
//! heartbeat counts as [`ROOM_ESTIMATE`] people until the node reports it,
//! so that a burst spreads instead of following one stale figure. A node
//! that is asked to take a room takes it if its load is within
//! [`CLOSE_ENOUGH`] of the least loaded one's: a join that was sent to it
//! is not sent on again because the figures moved meanwhile.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use super::liveness::{liveness, Liveness};

/// One node as its heartbeat row describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLoad {
    pub node: String,
    pub last_beat: DateTime<Utc>,
    pub draining: bool,
    /// People connected to the node's rooms now.
    pub participants: u32,
    /// The node's `node.max_participants`.
    pub max_participants: u32,
    /// 0.0 (idle) to 1.0 (its busiest shard never rests).
    pub busy_ratio: f64,
    /// Rooms placed on it since its last heartbeat (not in `participants`
    /// yet).
    pub fresh_rooms: u32,
}

/// The people a room placed since a node's last heartbeat counts as: a
/// joint session.
pub const ROOM_ESTIMATE: u32 = 3;

/// How much more loaded than the least loaded node a node may be and still
/// take a room it was asked for (a share of its capacity).
pub const CLOSE_ENOUGH: f64 = 0.05;

impl NodeLoad {
    /// The load figure, 0.0 (idle) to 1.0 (full).
    pub fn load(&self) -> f64 {
        let share = if self.max_participants == 0 {
            1.0
        } else {
            f64::from(self.expected_participants()) / f64::from(self.max_participants)
        };
        share.max(self.busy_ratio.clamp(0.0, 1.0))
    }

    /// Its people, with the rooms placed since its heartbeat as estimates.
    fn expected_participants(&self) -> u32 {
        self.participants
            .saturating_add(self.fresh_rooms.saturating_mul(ROOM_ESTIMATE))
    }

    /// Whether the node may take a new room at `now`.
    pub fn takes_rooms(&self, now: DateTime<Utc>) -> bool {
        liveness(self.last_beat, now) == Liveness::Alive
            && !self.draining
            && self.expected_participants() < self.max_participants
    }
}

/// The node for a new room, or `None` when every node is dead, draining or
/// full (the participant is told the service is busy).
pub fn place(nodes: &[NodeLoad], now: DateTime<Utc>) -> Option<&NodeLoad> {
    nodes.iter().filter(|n| n.takes_rooms(now)).min_by(|a, b| {
        a.load()
            .partial_cmp(&b.load())
            .unwrap_or(Ordering::Equal)
            .then(a.expected_participants().cmp(&b.expected_participants()))
            .then(a.node.cmp(&b.node))
    })
}

/// The node for a new room that node `me` was asked to open: `me` itself
/// when it takes rooms and is within [`CLOSE_ENOUGH`] of the least loaded,
/// otherwise [`place`]'s choice.
pub fn place_from<'a>(me: &str, nodes: &'a [NodeLoad], now: DateTime<Utc>) -> Option<&'a NodeLoad> {
    let best = place(nodes, now)?;
    let mine = nodes.iter().find(|n| n.node == me && n.takes_rooms(now));
    match mine {
        Some(mine) if mine.load() <= best.load() + CLOSE_ENOUGH => Some(mine),
        _ => Some(best),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000).unwrap()
    }

    fn node(id: &str, participants: u32, busy: f64) -> NodeLoad {
        NodeLoad {
            node: id.into(),
            last_beat: now(),
            draining: false,
            participants,
            max_participants: 100,
            busy_ratio: busy,
            fresh_rooms: 0,
        }
    }

    fn chosen(nodes: &[NodeLoad]) -> Option<&str> {
        place(nodes, now()).map(|n| n.node.as_str())
    }

    #[test]
    fn the_least_loaded_node_takes_the_room() {
        let nodes = [node("a", 40, 0.1), node("b", 10, 0.1), node("c", 30, 0.1)];
        assert_eq!(chosen(&nodes), Some("b"));
    }

    #[test]
    fn a_busy_media_engine_counts_as_load() {
        // b has fewer people but its shards work 90 % of the time.
        let nodes = [node("a", 40, 0.1), node("b", 10, 0.9)];
        assert_eq!(chosen(&nodes), Some("a"));
    }

    #[test]
    fn dead_draining_and_full_nodes_take_no_rooms() {
        let mut dead = node("a", 0, 0.0);
        dead.last_beat = now() - chrono::TimeDelta::seconds(6);
        let mut draining = node("b", 0, 0.0);
        draining.draining = true;
        let full = node("c", 100, 0.0);
        let busy = node("d", 90, 0.5);
        assert_eq!(
            chosen(&[dead.clone(), draining.clone(), full.clone(), busy]),
            Some("d")
        );
        assert_eq!(chosen(&[dead, draining, full]), None);
    }

    #[test]
    fn equal_nodes_are_chosen_the_same_way_by_everyone() {
        let nodes = [node("b", 10, 0.1), node("a", 10, 0.1)];
        assert_eq!(chosen(&nodes), Some("a"));
        let reversed = [node("a", 10, 0.1), node("b", 10, 0.1)];
        assert_eq!(chosen(&reversed), Some("a"));
    }

    #[test]
    fn rooms_placed_since_a_heartbeat_count_until_it_reports_them() {
        // Both reported nobody; a was given two rooms since.
        let mut a = node("a", 0, 0.0);
        a.fresh_rooms = 2;
        let nodes = [a.clone(), node("b", 0, 0.0)];
        assert_eq!(chosen(&nodes), Some("b"));
        // A burst of rooms alternates instead of piling onto one node.
        let mut nodes = [node("a", 0, 0.0), node("b", 0, 0.0), node("c", 0, 0.0)];
        let mut placed = Vec::new();
        for _ in 0..6 {
            let at = place(&nodes, now()).unwrap().node.clone();
            nodes.iter_mut().find(|n| n.node == at).unwrap().fresh_rooms += 1;
            placed.push(at);
        }
        assert_eq!(placed, ["a", "b", "c", "a", "b", "c"]);
        // Rooms count against the limit too.
        let mut full = node("c", 97, 0.0);
        full.fresh_rooms = 1;
        assert!(!full.takes_rooms(now()));
    }

    #[test]
    fn a_node_asked_for_a_room_takes_it_when_close_enough_to_the_least_loaded() {
        let nodes = [node("a", 10, 0.0), node("b", 14, 0.0), node("c", 40, 0.0)];
        let from = |me| place_from(me, &nodes, now()).map(|n| n.node.as_str());
        assert_eq!(from("b"), Some("b"), "4 % more loaded: keeps it");
        assert_eq!(from("c"), Some("a"), "30 % more loaded: sends it on");
        assert_eq!(from("z"), Some("a"), "not a member: the least loaded");
    }

    #[test]
    fn a_node_with_no_room_for_anyone_is_full() {
        let mut zero = node("a", 0, 0.0);
        zero.max_participants = 0;
        assert_eq!(zero.load(), 1.0);
        assert!(!zero.takes_rooms(now()));
    }
}
