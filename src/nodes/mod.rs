//! A node of a cluster at work: the I/O side of [`crate::cluster`]'s rules.
//!
//! Several nodes on one PostgreSQL database share no memory; they share
//! rows. This module is what a node does with them while it runs:
//!
//! - [`heartbeat`]: its heartbeat row every 2 s, with its load;
//! - [`owner`]: where a `join` goes (here, or a redirect to the node that
//!   holds the room), the leases this node claims, and the task that
//!   renews each one and gives the room up when it may no longer act;
//! - [`commands`]: REST revocations and cancellations for rooms held by
//!   another node, through the durable command table;
//! - [`sweep`]: presence left open by a node that died, in rooms nobody
//!   reopens, closed at its last heartbeat.
//!
//! A single node on SQLite (`alone`) has no [`Cluster`]: none of this runs.

pub(crate) mod commands;
pub(crate) mod heartbeat;
pub(crate) mod owner;
pub(crate) mod sweep;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::live::lease::RoomLease;
use crate::node::Node;
use crate::store::Store;

/// What this node knows of its cluster, shared by its tasks.
pub(crate) struct Cluster {
    pub(crate) store: Store,
    pub(crate) node: Node,
    /// The PostgreSQL URL (`database.url`), for `LISTEN`.
    pub(crate) database_url: String,
    /// `node.max_participants`, published with every heartbeat.
    pub(crate) max_participants: u32,
    /// The media shards' addresses, published with every heartbeat (JSON).
    pub(crate) media: String,
    pub(crate) started_at: DateTime<Utc>,
    /// The leases this node holds, by session.
    leases: Mutex<HashMap<Uuid, Arc<RoomLease>>>,
    /// One join routed at a time: two joins for a new room on this node
    /// claim it once.
    routing: tokio::sync::Mutex<()>,
}

impl Cluster {
    pub(crate) fn new(
        store: Store,
        node: Node,
        database_url: String,
        max_participants: u32,
        media: String,
    ) -> Arc<Cluster> {
        Arc::new(Cluster {
            store,
            node,
            database_url,
            max_participants,
            media,
            started_at: Utc::now(),
            leases: Mutex::new(HashMap::new()),
            routing: tokio::sync::Mutex::new(()),
        })
    }

    /// The lease this node holds for `session`'s room, if any.
    pub(crate) fn lease_of(&self, session: Uuid) -> Option<Arc<RoomLease>> {
        self.leases
            .lock()
            .expect("leases lock")
            .get(&session)
            .cloned()
    }
}
