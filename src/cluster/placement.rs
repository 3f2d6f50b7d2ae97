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
}

impl NodeLoad {
    /// The load figure, 0.0 (idle) to 1.0 (full).
    pub fn load(&self) -> f64 {
        let share = if self.max_participants == 0 {
            1.0
        } else {
            f64::from(self.participants) / f64::from(self.max_participants)
        };
        share.max(self.busy_ratio.clamp(0.0, 1.0))
    }

    /// Whether the node may take a new room at `now`.
    pub fn takes_rooms(&self, now: DateTime<Utc>) -> bool {
        liveness(self.last_beat, now) == Liveness::Alive
            && !self.draining
            && self.participants < self.max_participants
    }
}

/// The node for a new room, or `None` when every node is dead, draining or
/// full (the participant is told the service is busy).
pub fn place(nodes: &[NodeLoad], now: DateTime<Utc>) -> Option<&NodeLoad> {
    nodes.iter().filter(|n| n.takes_rooms(now)).min_by(|a, b| {
        a.load()
            .partial_cmp(&b.load())
            .unwrap_or(Ordering::Equal)
            .then(a.participants.cmp(&b.participants))
            .then(a.node.cmp(&b.node))
    })
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
    fn a_node_with_no_room_for_anyone_is_full() {
        let mut zero = node("a", 0, 0.0);
        zero.max_participants = 0;
        assert_eq!(zero.load(), 1.0);
        assert!(!zero.takes_rooms(now()));
    }
}
