//! One room, one node, at run time: routing a join, claiming a room's
//! lease, keeping it, and giving the room up.
//!
//! A `join` that passed the link check asks [`Cluster::route`] where its
//! room is. The answer comes from the lease row and the heartbeat rows,
//! decided by [`crate::cluster::routing::route`]: here (this node holds
//! the lease, or has just claimed it by a conditional write), a redirect
//! to the node that holds it, or busy.
//!
//! A lease this node holds is a [`RoomLease`] (`live::lease`), shared by the room's task
//! (which asks [`RoomLease::may_act`] before every decision and writes
//! the ledger under its [`Fence`]) and by a keeper task that renews it
//! every 2 s ([`crate::cluster::lease::Held::tick`]). When a renewal finds
//! the row taken, or renewals failed until the safety margin, the keeper
//! marks the lease lost: the room stops, writes nothing more and closes
//! its people's sockets so that they reconnect and reach the holder.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Cluster;
use crate::cluster::lease::{Keep, Lease, LEASE_TERM};
use crate::cluster::placement::{place, NodeLoad};
use crate::cluster::routing::{route, Route};
use crate::cluster::NodeState;
use crate::live::lease::RoomLease;
use crate::store::StoreError;

/// How often a keeper looks at its lease (renewals are due every 2 s).
const KEEPER_TICK: Duration = Duration::from_millis(500);

/// How long a renewal may take before it counts as failed (tried again at
/// the next tick, while the safety margin allows).
const RENEWAL_TIMEOUT: Duration = Duration::from_millis(1500);

/// Where a join goes.
pub(crate) enum Routed {
    /// This node holds the room.
    Here(Arc<RoomLease>),
    /// Another node holds it: its signaling URL (`wss://…/v1/signal`).
    Redirect(String),
    /// No node can take it now.
    Busy,
}

impl Cluster {
    /// Where a join for `session`'s room goes; claims the room when it
    /// falls to this node.
    pub(crate) async fn route(self: &Arc<Self>, session: Uuid) -> Result<Routed, StoreError> {
        let _one = self.routing.lock().await;
        if let Some(lease) = self.lease_of(session) {
            if lease.may_act(Utc::now()) {
                return Ok(Routed::Here(lease));
            }
        }
        let id = session.to_string();
        // A claim lost to a faster node is routed again, on fresh rows.
        for _ in 0..3 {
            let row = self.store.room_lease(&id).await?;
            let mut members = self.store.cluster_nodes().await?;
            if self.node.state() == NodeState::Draining {
                // Not yet in its heartbeat row, perhaps: a draining node
                // opens no room.
                for member in members.iter_mut().filter(|m| *m.load.node == *self.node.id) {
                    member.load.draining = true;
                }
            }
            let now = Utc::now();
            let decided = route(&self.node.id, row.as_ref(), &members, now);
            let draining = self.node.state() == NodeState::Draining;
            if draining && matches!(decided, Route::Here | Route::Claim { .. }) {
                // Not even its own lease back: the room goes elsewhere.
                let loads: Vec<NodeLoad> = members.iter().map(|m| m.load.clone()).collect();
                let chosen = place(&loads, now).map(|n| n.node.clone());
                return Ok(
                    match members
                        .iter()
                        .find(|m| Some(&m.load.node) == chosen.as_ref())
                    {
                        Some(member) => Routed::Redirect(signal_url(&member.url)),
                        None => Routed::Busy,
                    },
                );
            }
            let (lease, replaces) = match decided {
                // The row names this node but no room here holds it: a
                // previous run's, or one given up. Claimed anew, so that
                // the previous writer is fenced off.
                Route::Here => {
                    let row = row.expect("a lease routed here exists");
                    let lease = Lease {
                        holder: self.node.id.to_string(),
                        epoch: row.epoch + 1,
                        expires_at: now + LEASE_TERM,
                    };
                    (lease, Some(row.epoch))
                }
                Route::Claim { lease, replaces } => (lease, replaces),
                Route::Redirect { url, .. } => return Ok(Routed::Redirect(signal_url(&url))),
                Route::Busy => return Ok(Routed::Busy),
            };
            if self
                .store
                .claim_room_lease(&id, &lease, replaces, now)
                .await?
            {
                tracing::info!(session = %id, epoch = lease.epoch, "room claimed");
                return Ok(Routed::Here(self.hold(session, lease, now)));
            }
        }
        Ok(Routed::Busy)
    }

    /// Keeps `lease`, just claimed, until the room finishes or loses it.
    fn hold(self: &Arc<Self>, session: Uuid, lease: Lease, now: DateTime<Utc>) -> Arc<RoomLease> {
        let held = Arc::new(RoomLease::new(session, lease, now));
        if let Some(previous) = self
            .leases
            .lock()
            .expect("leases lock")
            .insert(session, held.clone())
        {
            previous.give_up(Some("claimed again"));
        }
        tokio::spawn(keep(self.clone(), held.clone()));
        held
    }

    fn forget(&self, lease: &Arc<RoomLease>) {
        let mut leases = self.leases.lock().expect("leases lock");
        if leases
            .get(&lease.session())
            .is_some_and(|held| Arc::ptr_eq(held, lease))
        {
            leases.remove(&lease.session());
        }
    }
}

/// `wss://HOST/v1/signal` for a node reached at `public_url`.
fn signal_url(public_url: &str) -> String {
    match url::Url::parse(public_url) {
        Ok(mut url) => {
            let _ = url.set_scheme("wss");
            url.set_path("/v1/signal");
            url.set_query(None);
            url.to_string()
        }
        Err(_) => public_url.to_owned(),
    }
}

/// Renews `lease` while the room may act; releases it when the room
/// finishes; marks it lost when it may no longer act.
async fn keep(cluster: Arc<Cluster>, lease: Arc<RoomLease>) {
    let id = lease.session().to_string();
    let mut tick = tokio::time::interval(KEEPER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut finished = lease.finished();
    let mut lost = lease.lost();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = async { finished.wait_for(|f| *f).await.is_ok() } => {
                let held = lease.lease();
                if !lease.is_lost() {
                    if let Err(error) = cluster.store.release_room_lease(&id, &held, Utc::now()).await {
                        tracing::warn!(session = %id, %error, "lease not released: it expires by itself");
                    }
                }
                lease.give_up(None);
                cluster.forget(&lease);
                return;
            }
            _ = async { lost.wait_for(|l| *l).await.is_ok() } => {
                cluster.forget(&lease);
                return;
            }
        }
        let now = Utc::now();
        let keep = lease.tick(now);
        match keep {
            Keep::Wait => {}
            Keep::Renew { expires_at } => {
                let current = lease.lease();
                let renewed = tokio::time::timeout(
                    RENEWAL_TIMEOUT,
                    cluster.store.renew_room_lease(&id, &current, expires_at),
                )
                .await;
                match renewed {
                    Ok(Ok(true)) => lease.renewed(expires_at, now),
                    Ok(Ok(false)) => lease.give_up(Some("another node claimed the room")),
                    Ok(Err(error)) => {
                        tracing::warn!(session = %id, %error, "lease not renewed; trying again")
                    }
                    Err(_) => {
                        tracing::warn!(session = %id, "lease renewal timed out; trying again")
                    }
                }
            }
            Keep::GiveUp => lease.give_up(Some("the lease could not be renewed in time")),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_node_url_becomes_its_signaling_socket() {
        assert_eq!(
            super::signal_url("https://node-2.clinic.example/"),
            "wss://node-2.clinic.example/v1/signal"
        );
        assert_eq!(
            super::signal_url("https://localhost:8443"),
            "wss://localhost:8443/v1/signal"
        );
    }
}
