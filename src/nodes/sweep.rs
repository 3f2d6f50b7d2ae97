//! Presence left open by a node that stopped, in rooms nobody reopens.
//!
//! When a room's node dies, the room's presence stays open in the ledger
//! until someone closes it: the node that reopens the room does (a
//! takeover), but if nobody comes back (the session was ending anyway),
//! no room reopens, and a report would count the open presence up to the
//! time it is read, inventing minutes. So every node looks, every
//! [`SWEEP_EVERY`], at the leases that expired lately; for a room whose
//! presence is still open, it claims the lease like a takeover would
//! (epoch + 1: the dead node is fenced off), closes that presence at each
//! connection's last heartbeat (`server_restart`) under its fence, and
//! releases the lease again. A node that reopens the room meanwhile claims
//! the next epoch, and the sweep's write is fenced off: one of them closes
//! the presence, never both.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tokio::sync::watch;

use super::Cluster;
use crate::attendance::ledger::{recover_session_presence, Ledger};
use crate::cluster::lease::{claim, Claim};
use crate::store::cluster::Fence;
use crate::store::StoreError;

/// How often a node looks for presence left open.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// How far back expired leases are looked at: long enough for the cluster
/// to have had a node running meanwhile.
const LOOK_BACK: TimeDelta = TimeDelta::minutes(30);

/// Sweeps until the server stops.
pub(crate) async fn run(cluster: Arc<Cluster>, ledger: Ledger, mut stopped: watch::Receiver<bool>) {
    // Leases found with nothing open: no write can open presence under an
    // expired lease, so they are not read again.
    let mut clean = HashSet::new();
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = async { stopped.wait_for(|stop| *stop).await.is_ok() } => return,
        }
        if let Err(error) = sweep(&cluster, &ledger, &mut clean).await {
            tracing::warn!(%error, "presence left open by stopped nodes not checked; trying again");
        }
    }
}

async fn sweep(
    cluster: &Cluster,
    ledger: &Ledger,
    clean: &mut HashSet<(String, i64)>,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let expired = cluster
        .store
        .leases_expired_between(now - LOOK_BACK, now)
        .await?;
    clean.retain(|(session, epoch)| {
        expired
            .iter()
            .any(|(s, lease)| s == session && lease.epoch == *epoch)
    });
    for (session, lease) in expired {
        let Ok(id) = session.parse() else { continue };
        let key = (session.clone(), lease.epoch);
        if cluster.lease_of(id).is_some() || clean.contains(&key) {
            continue;
        }
        if cluster
            .store
            .open_presence_in(Some(&session))
            .await?
            .is_empty()
        {
            clean.insert(key);
            continue;
        }
        let Claim::Take {
            lease: taken,
            replaces,
        } = claim(Some(&lease), &cluster.node.id, now)
        else {
            continue;
        };
        if !cluster
            .store
            .claim_room_lease(&session, &taken, replaces, now)
            .await?
        {
            continue;
        }
        match recover_session_presence(ledger, Fence::of(&session, &taken)).await {
            Ok(closed) => {
                tracing::warn!(%session, closed, "presence left open by a stopped node closed at its last heartbeat")
            }
            Err(error) => tracing::warn!(%session, %error, "presence left open not closed"),
        }
        cluster
            .store
            .release_room_lease(&session, &taken, Utc::now())
            .await?;
    }
    Ok(())
}
