//! A room's lease, as the room's task sees it (in a cluster only).
//!
//! The node that claims a room (`nodes::owner`) hands the room a
//! [`RoomLease`]: the room asks [`RoomLease::may_act`] before every
//! decision and writes the ledger under its [`RoomLease::fence`]; it stops
//! when [`RoomLease::lost`] turns true, and calls [`RoomLease::finish`]
//! when it ends, so that the lease is released. A keeper task of the node
//! renews it meanwhile, by the rules of [`crate::cluster::lease::Held`].

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use crate::cluster::lease::{Held, Keep, Lease};
use crate::store::cluster::Fence;

/// A room's lease held by this node.
#[derive(Debug)]
pub(crate) struct RoomLease {
    session: Uuid,
    held: Mutex<Held>,
    /// True once the room may no longer act (given up or taken).
    lost: watch::Sender<bool>,
    /// True once the room has finished: the keeper releases the lease.
    finished: watch::Sender<bool>,
}

impl RoomLease {
    /// `lease`, just written (claimed) at `now`, for `session`'s room.
    pub(crate) fn new(session: Uuid, lease: Lease, now: DateTime<Utc>) -> RoomLease {
        RoomLease {
            session,
            held: Mutex::new(Held::new(lease, now)),
            lost: watch::Sender::new(false),
            finished: watch::Sender::new(false),
        }
    }

    pub(crate) fn session(&self) -> Uuid {
        self.session
    }

    /// Whether the room may act at `now`.
    pub(crate) fn may_act(&self, now: DateTime<Utc>) -> bool {
        !self.is_lost() && self.held.lock().expect("lease lock").may_act(now)
    }

    /// The lease as last written.
    pub(crate) fn lease(&self) -> Lease {
        self.held.lock().expect("lease lock").lease.clone()
    }

    /// What the room's ledger writes carry.
    pub(crate) fn fence(&self) -> Fence {
        Fence::of(&self.session.to_string(), &self.lease())
    }

    pub(crate) fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Changes to true when the room must stop acting.
    pub(crate) fn lost(&self) -> watch::Receiver<bool> {
        self.lost.subscribe()
    }

    /// The room has finished (ended, or stopped with the server): the
    /// lease is released, so the next claim needs no wait.
    pub(crate) fn finish(&self) {
        self.finished.send_replace(true);
    }

    /// Changes to true when the room has finished.
    pub(crate) fn finished(&self) -> watch::Receiver<bool> {
        self.finished.subscribe()
    }

    /// What to do about the lease at `now` (the keeper's tick).
    pub(crate) fn tick(&self, now: DateTime<Utc>) -> Keep {
        self.held.lock().expect("lease lock").tick(now)
    }

    /// The renewal decided at `at` was written.
    pub(crate) fn renewed(&self, expires_at: DateTime<Utc>, at: DateTime<Utc>) {
        self.held
            .lock()
            .expect("lease lock")
            .renewed(expires_at, at);
    }

    /// The room may no longer act; `why` is logged (nothing when it had
    /// already stopped, or `why` is `None`: it finished).
    pub(crate) fn give_up(&self, why: Option<&str>) {
        if !self.lost.send_replace(true) {
            if let Some(why) = why {
                let lease = self.lease();
                tracing::warn!(session = %self.session, epoch = lease.epoch, why, "this node no longer acts for the room");
            }
        }
    }
}
