//! Several Tandem nodes on one PostgreSQL database: the rules, pure.
//!
//! A cluster has no coordinator of its own: the database holds a heartbeat
//! row per node, a lease row per live room and a table of commands, and
//! every node applies the same rules to what it reads there. The rules are
//! here, as plain functions of what was read and of `now`, so that they are
//! tested without sockets, clocks or a database:
//!
//! - [`liveness`]: a node is alive while its heartbeat is younger than
//!   [`liveness::DEAD_AFTER`];
//! - [`lease`]: one room, one node: claiming, renewing and the question a
//!   node asks before every decision for a room, "may I still act for it?";
//! - [`placement`]: which live node takes a new room;
//! - [`routing`]: where a join goes (here, a claim, or a redirect);
//! - [`drain`]: a node leaving the cluster without dropping a session.
//!
//! A single node on SQLite is `alone` ([`NodeState::Alone`]): it takes no
//! leases and writes no heartbeats, and none of this slows it down.

pub mod drain;
pub mod lease;
pub mod liveness;
pub mod placement;
pub mod routing;

/// What `/healthz` says about the node's part in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// A single node (SQLite): every room is its own, no leases.
    Alone,
    /// A node of a cluster that takes new rooms.
    Ready,
    /// A node of a cluster that takes no new rooms and leaves once its
    /// rooms have ended or been handed over.
    Draining,
}

impl NodeState {
    /// The word `/healthz` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Alone => "alone",
            NodeState::Ready => "ready",
            NodeState::Draining => "draining",
        }
    }
}
