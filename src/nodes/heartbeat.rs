//! This node's heartbeat: its row in `cluster_nodes`, written every 2 s.
//!
//! The row says the node is alive (the others count it dead 6 s after its
//! last beat, `cluster::liveness`), where it is reached, whether it drains,
//! and its load for placement: the people connected to its rooms and its
//! busiest media shard's busy ratio. A beat that cannot be written makes
//! `/healthz` answer 503 (`reason: "heartbeat"`), so that a load balancer
//! stops sending people to a node the others think dead.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::Cluster;
use crate::cluster::liveness::HEARTBEAT_EVERY;
use crate::cluster::NodeState;
use crate::live::Rooms;
use crate::store::cluster::Heartbeat;

/// How long a beat may take before it counts as failed.
const BEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// Writes one heartbeat now, and notes its outcome for `/healthz`.
pub(crate) async fn beat(cluster: &Cluster, rooms: &Rooms) {
    let participants: usize = rooms.live_rooms().iter().map(|(_, n)| n).sum();
    let beat = Heartbeat {
        node: cluster.node.id.to_string(),
        public_url: cluster.node.public_url.to_string(),
        media: cluster.media.clone(),
        started_at: cluster.started_at,
        draining: cluster.node.state() == NodeState::Draining,
        participants: u32::try_from(participants).unwrap_or(u32::MAX),
        max_participants: cluster.max_participants,
        busy_ratio: crate::metrics::shard::busiest(),
    };
    match tokio::time::timeout(BEAT_TIMEOUT, cluster.store.beat(&beat, Utc::now())).await {
        Ok(Ok(())) => {
            cluster.node.beat_written();
            // The pages' connect-src names every node (a redirect crosses
            // origins).
            if let Ok(members) = cluster.store.cluster_nodes().await {
                let mut origins: Vec<String> = members
                    .iter()
                    .filter_map(|m| url::Url::parse(&m.url).ok())
                    .filter_map(|mut u| u.set_scheme("wss").ok().map(|_| u))
                    .map(|u| u.origin().ascii_serialization())
                    .collect();
                origins.sort();
                origins.dedup();
                cluster.node.set_cluster_origins(origins);
            }
        }
        Ok(Err(error)) => cluster.node.beat_failed(error.to_string()),
        Err(_) => cluster
            .node
            .beat_failed("the database did not answer within 2 s".into()),
    }
}

/// Beats every 2 s until the server stops.
pub(crate) async fn run(
    cluster: Arc<Cluster>,
    rooms: Arc<Rooms>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(HEARTBEAT_EVERY.to_std().expect("positive"));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state = cluster.node.watch();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            // A drain is published at once: the other nodes stop placing
            // new rooms here (they would be sent back).
            changed = state.changed() => if changed.is_err() { return },
            _ = async { stopped.wait_for(|stop| *stop).await.is_ok() } => return,
        }
        beat(&cluster, &rooms).await;
    }
}
