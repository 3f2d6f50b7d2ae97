//! The cluster's rows: node heartbeats, room leases, room commands.
//!
//! These are the only shared state of a cluster (no Redis, no coordinator):
//! what the rules in `crate::cluster` decide is made atomic here.
//!
//! - A heartbeat is an upsert of the node's row.
//! - A lease is claimed by a conditional write: an insert that does nothing
//!   when a row exists, or an update that only matches the epoch the
//!   claimant read, so of two nodes that read the same expired lease one
//!   wins and the other learns it lost. A lease row is never deleted; a
//!   release only expires it, so that the next claim increments the epoch.
//! - A command is durable when `queue_room_command` returns; the holder
//!   reads the pending ones, carries them out and marks them done with its
//!   epoch.
//!
//! The SQL is written once for SQLite and PostgreSQL (`$N` placeholders,
//! `ON CONFLICT`, `RETURNING`).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_millis, to_millis, Store, StoreError};
use crate::cluster::lease::Lease;
use crate::cluster::placement::NodeLoad;
use crate::cluster::routing::Member;

/// What a node publishes with each heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub node: String,
    pub public_url: String,
    /// JSON list of the shards' `{"udp", "tcp"}` addresses.
    pub media: String,
    pub started_at: DateTime<Utc>,
    pub draining: bool,
    pub participants: u32,
    pub max_participants: u32,
    /// 0.0 to 1.0.
    pub busy_ratio: f64,
}

/// The lease a ledger write is made under: the session's lease row must
/// still name `node` with `epoch` when the write commits
/// ([`Store::append_events_fenced`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    pub session: String,
    pub node: String,
    pub epoch: i64,
}

impl Fence {
    /// The fence of `lease`, held for `session`.
    pub fn of(session: &str, lease: &Lease) -> Fence {
        Fence {
            session: session.to_owned(),
            node: lease.holder.clone(),
            epoch: lease.epoch,
        }
    }
}

/// The PostgreSQL channel that wakes the readers of the command table.
pub const ROOM_COMMANDS_CHANNEL: &str = "tandem_room_commands";

/// A command for a live room, as queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomCommand {
    pub id: i64,
    pub session_id: String,
    pub kind: RoomCommandKind,
    pub participant: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What the holder of a room is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomCommandKind {
    /// A participant's links were revoked: disconnect them.
    Revoke,
    /// A participant was removed: disconnect them.
    Remove,
    /// The session was ended: everyone gets `ended`.
    End,
    /// The session was cancelled: everyone gets `ended`.
    Cancel,
}

impl RoomCommandKind {
    fn as_str(self) -> &'static str {
        match self {
            RoomCommandKind::Revoke => "revoke",
            RoomCommandKind::Remove => "remove",
            RoomCommandKind::End => "end",
            RoomCommandKind::Cancel => "cancel",
        }
    }

    fn parse(text: &str) -> Result<RoomCommandKind, StoreError> {
        Ok(match text {
            "revoke" => RoomCommandKind::Revoke,
            "remove" => RoomCommandKind::Remove,
            "end" => RoomCommandKind::End,
            "cancel" => RoomCommandKind::Cancel,
            other => return Err(StoreError::Corrupt(format!("room command kind {other:?}"))),
        })
    }
}

/// A `session_id, node_id, epoch, expires_at` row.
fn session_lease(row: &sqlx::any::AnyRow) -> Result<(String, Lease), StoreError> {
    Ok((
        row.get(0),
        Lease {
            holder: row.get(1),
            epoch: row.get(2),
            expires_at: from_millis(row.get(3))?,
        },
    ))
}

impl Store {
    /// Writes this node's heartbeat row at `now`.
    pub async fn beat(&self, beat: &Heartbeat, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cluster_nodes (node_id, public_url, media, started_at, last_beat, draining, participants, max_participants, busy_permille)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (node_id) DO UPDATE SET public_url = $2, media = $3, started_at = $4,
                 last_beat = $5, draining = $6, participants = $7, max_participants = $8,
                 busy_permille = $9",
        )
        .bind(&beat.node)
        .bind(&beat.public_url)
        .bind(&beat.media)
        .bind(to_millis(beat.started_at))
        .bind(to_millis(now))
        .bind(i64::from(beat.draining))
        .bind(i64::from(beat.participants))
        .bind(i64::from(beat.max_participants))
        .bind((beat.busy_ratio.clamp(0.0, 1.0) * 1000.0).round() as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every node that has ever beaten, dead ones included (the rules say
    /// which are alive).
    pub async fn cluster_nodes(&self) -> Result<Vec<Member>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.node_id, n.public_url, n.last_beat, n.draining, n.participants, n.max_participants,
                    n.busy_permille,
                    (SELECT COUNT(*) FROM room_leases l
                     WHERE l.node_id = n.node_id AND l.claimed_at > n.last_beat) AS fresh_rooms
             FROM cluster_nodes n ORDER BY n.node_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let count = |i: usize| u32::try_from(r.get::<i64, _>(i)).unwrap_or(u32::MAX);
                Ok(Member {
                    load: NodeLoad {
                        node: r.get(0),
                        last_beat: from_millis(r.get(2))?,
                        draining: r.get::<i64, _>(3) != 0,
                        participants: count(4),
                        max_participants: count(5),
                        busy_ratio: r.get::<i64, _>(6) as f64 / 1000.0,
                        fresh_rooms: count(7),
                    },
                    url: r.get(1),
                })
            })
            .collect()
    }

    /// The lease of a session's room, if it was ever claimed.
    pub async fn room_lease(&self, session: &str) -> Result<Option<Lease>, StoreError> {
        let row =
            sqlx::query("SELECT node_id, epoch, expires_at FROM room_leases WHERE session_id = $1")
                .bind(session)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(Lease {
                holder: r.get(0),
                epoch: r.get(1),
                expires_at: from_millis(r.get(2))?,
            })
        })
        .transpose()
    }

    /// Every room's lease, by session.
    pub async fn room_leases(
        &self,
    ) -> Result<std::collections::HashMap<String, Lease>, StoreError> {
        let rows = sqlx::query("SELECT session_id, node_id, epoch, expires_at FROM room_leases")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_lease).collect()
    }

    /// The leases that expired in `(since, until]`: rooms that finished, or
    /// whose holder stopped acting (died, froze, lost the database).
    pub async fn leases_expired_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(String, Lease)>, StoreError> {
        let rows = sqlx::query(
            "SELECT session_id, node_id, epoch, expires_at FROM room_leases
             WHERE expires_at > $1 AND expires_at <= $2",
        )
        .bind(to_millis(since))
        .bind(to_millis(until))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_lease).collect()
    }

    /// Writes `lease` (a claim decided by `cluster::lease::claim`) if the
    /// row still is as the claimant read it: absent (`replaces` `None`) or
    /// at epoch `replaces`. False: another node was faster.
    pub async fn claim_room_lease(
        &self,
        session: &str,
        lease: &Lease,
        replaces: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let written = match replaces {
            None => sqlx::query(
                "INSERT INTO room_leases (session_id, node_id, epoch, expires_at, claimed_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id) DO NOTHING",
            ),
            Some(_) => sqlx::query(
                "UPDATE room_leases SET node_id = $2, epoch = $3, expires_at = $4, claimed_at = $5
                 WHERE session_id = $1 AND epoch = $6",
            ),
        }
        .bind(session)
        .bind(&lease.holder)
        .bind(lease.epoch)
        .bind(to_millis(lease.expires_at))
        .bind(to_millis(now))
        .bind(replaces.unwrap_or_default())
        .execute(&self.pool)
        .await?;
        Ok(written.rows_affected() == 1)
    }

    /// Moves the expiry of a lease its holder still has (same node, same
    /// epoch). False: the lease was taken; the holder must stop acting.
    pub async fn renew_room_lease(
        &self,
        session: &str,
        lease: &Lease,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let written = sqlx::query(
            "UPDATE room_leases SET expires_at = $4
             WHERE session_id = $1 AND node_id = $2 AND epoch = $3",
        )
        .bind(session)
        .bind(&lease.holder)
        .bind(lease.epoch)
        .bind(to_millis(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(written.rows_affected() == 1)
    }

    /// Gives a lease up (an empty room, a hand-over): it expires now and
    /// keeps its epoch, so whoever claims next gets a higher one.
    pub async fn release_room_lease(
        &self,
        session: &str,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let expired = Lease {
            expires_at: now,
            ..lease.clone()
        };
        self.renew_room_lease(session, &expired, now).await?;
        Ok(())
    }

    /// Queues a command for a session's live room; durable when this
    /// returns. Its id.
    pub async fn queue_room_command(
        &self,
        session: &str,
        kind: RoomCommandKind,
        participant: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO room_commands (session_id, kind, participant_id, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(session)
        .bind(kind.as_str())
        .bind(participant)
        .bind(to_millis(now))
        .fetch_one(&self.pool)
        .await?;
        if self.backend == super::Backend::Postgres {
            // Only wakes the holder; it also reads the table every second,
            // since a notification sent while it does not listen is lost.
            let _ = sqlx::query(&format!("NOTIFY {ROOM_COMMANDS_CHANNEL}"))
                .execute(&self.pool)
                .await;
        }
        Ok(row.get(0))
    }

    /// The commands not yet carried out for the rooms whose leases `node`
    /// holds, oldest first.
    pub async fn pending_room_commands(&self, node: &str) -> Result<Vec<RoomCommand>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.id, c.session_id, c.kind, c.participant_id, c.created_at
             FROM room_commands c JOIN room_leases l ON l.session_id = c.session_id
             WHERE c.done_at IS NULL AND l.node_id = $1 ORDER BY c.id",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RoomCommand {
                    id: r.get(0),
                    session_id: r.get(1),
                    kind: RoomCommandKind::parse(r.get(2))?,
                    participant: r.get(3),
                    created_at: from_millis(r.get(4))?,
                })
            })
            .collect()
    }

    /// Marks a command carried out by the holder of `lease`; only while
    /// that lease is still the room's (a fenced-off holder marks nothing,
    /// and the command stays for the new holder). False when fenced off.
    pub async fn complete_room_command(
        &self,
        id: i64,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let written = sqlx::query(
            "UPDATE room_commands SET done_at = $2, done_by = $3, done_epoch = $4
             WHERE id = $1 AND done_at IS NULL AND EXISTS (
                 SELECT 1 FROM room_leases l
                 WHERE l.session_id = room_commands.session_id AND l.node_id = $3 AND l.epoch = $4)",
        )
        .bind(id)
        .bind(to_millis(now))
        .bind(&lease.holder)
        .bind(lease.epoch)
        .execute(&self.pool)
        .await?;
        Ok(written.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::lease::{claim, renewal, Claim};
    use chrono::{TimeDelta, TimeZone};

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000 + s * 1000)
            .unwrap()
    }

    async fn store_with_session() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("tandem.db")).await.unwrap();
        sqlx::query(
            "INSERT INTO sessions (id, title, kind, starts_at, ends_at, timezone, settings, created_at)
             VALUES ('s1', 'Joint session', 'couple', 0, 1, 'UTC', '{}', 0)",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        (dir, store)
    }

    /// What a node does on a join: read, decide, write conditionally.
    async fn try_claim(store: &Store, node: &str, now: DateTime<Utc>) -> Option<Lease> {
        let current = store.room_lease("s1").await.unwrap();
        match claim(current.as_ref(), node, now) {
            Claim::Take { lease, replaces } => store
                .claim_room_lease("s1", &lease, replaces, now)
                .await
                .unwrap()
                .then_some(lease),
            Claim::HeldBy { .. } => None,
        }
    }

    #[tokio::test]
    async fn one_room_has_one_holder_and_every_claim_a_higher_epoch() {
        let (_dir, store) = store_with_session().await;
        let a = try_claim(&store, "a", at(0)).await.expect("free room");
        assert_eq!(a.epoch, 1);
        assert_eq!(try_claim(&store, "b", at(1)).await, None, "held by a");
        // a renews, then stops (frozen); b takes it once it has expired.
        let until = renewal(&a, "a", at(2)).unwrap();
        assert!(store.renew_room_lease("s1", &a, until).await.unwrap());
        assert_eq!(
            try_claim(&store, "b", at(11)).await,
            None,
            "renewed to 12 s"
        );
        let b = try_claim(&store, "b", at(12)).await.expect("expired");
        assert_eq!(b.epoch, 2);
        // a wakes: its renewal matches nothing.
        assert!(!store.renew_room_lease("s1", &a, at(22)).await.unwrap());
        assert_eq!(store.room_lease("s1").await.unwrap().unwrap().holder, "b");
    }

    #[tokio::test]
    async fn of_two_nodes_that_read_the_same_expired_lease_one_wins() {
        let (_dir, store) = store_with_session().await;
        let first = try_claim(&store, "a", at(0)).await.unwrap();
        let seen = store.room_lease("s1").await.unwrap();
        let now = first.expires_at + TimeDelta::seconds(1);
        let mut winners = 0;
        for node in ["b", "c"] {
            let Claim::Take { lease, replaces } = claim(seen.as_ref(), node, now) else {
                panic!("expired")
            };
            winners += usize::from(
                store
                    .claim_room_lease("s1", &lease, replaces, now)
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(winners, 1);
        assert_eq!(store.room_lease("s1").await.unwrap().unwrap().epoch, 2);
    }

    #[tokio::test]
    async fn a_released_lease_is_free_and_keeps_counting_epochs() {
        let (_dir, store) = store_with_session().await;
        let a = try_claim(&store, "a", at(0)).await.unwrap();
        store.release_room_lease("s1", &a, at(1)).await.unwrap();
        let b = try_claim(&store, "b", at(1)).await.expect("released");
        assert_eq!(b.epoch, 2);
    }

    #[tokio::test]
    async fn a_command_waits_for_the_holder_and_only_the_holder_completes_it() {
        let (_dir, store) = store_with_session().await;
        let a = try_claim(&store, "a", at(0)).await.unwrap();
        let id = store
            .queue_room_command("s1", RoomCommandKind::Revoke, Some("pt-1"), at(1))
            .await
            .unwrap();
        assert!(store.pending_room_commands("b").await.unwrap().is_empty());
        let pending = store.pending_room_commands("a").await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, id);
        assert_eq!(pending[0].kind, RoomCommandKind::Revoke);
        assert_eq!(pending[0].participant.as_deref(), Some("pt-1"));
        // a is fenced off by b's claim before it carries it out.
        let b = try_claim(&store, "b", at(11)).await.unwrap();
        assert!(!store.complete_room_command(id, &a, at(12)).await.unwrap());
        assert_eq!(store.pending_room_commands("b").await.unwrap().len(), 1);
        assert!(store.complete_room_command(id, &b, at(12)).await.unwrap());
        assert!(store.pending_room_commands("b").await.unwrap().is_empty());
    }

    /// Event `seq` of the chain, after `prev`.
    fn knock(seq: i64, prev: &str, participant: &str) -> crate::store::event::Event {
        let event = crate::store::event::NewEvent {
            at: 1_800_000_000_000 + seq,
            session: "s1".into(),
            participant: Some(participant.into()),
            role: Some("patient".into()),
            connection: Some("run-1".into()),
            kind: crate::store::event::EventKind::Waiting,
            reason: None,
            modality: None,
            detail: None,
        };
        crate::store::event::Event {
            seq,
            hash: crate::store::event::chain_hash(prev, seq, &event),
            prev_hash: prev.into(),
            event,
        }
    }

    #[tokio::test]
    async fn a_node_whose_lease_was_taken_writes_nothing_more_to_the_ledger() {
        let (_dir, store) = store_with_session().await;
        let a = try_claim(&store, "a", at(0)).await.unwrap();
        let first = knock(1, crate::store::event::GENESIS, "pt-1");
        store
            .append_events_fenced(std::slice::from_ref(&first), &[Fence::of("s1", &a)])
            .await
            .expect("the holder writes");
        // a freezes; b claims the expired lease: a's next write is refused
        // whole, and b's continues the chain.
        let b = try_claim(&store, "b", at(11)).await.unwrap();
        let second = knock(2, &first.hash, "pt-2");
        let refused = store
            .append_events_fenced(std::slice::from_ref(&second), &[Fence::of("s1", &a)])
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, StoreError::Fenced { session } if session == "s1"),
            "{refused}"
        );
        let by_b = knock(2, &first.hash, "pt-3");
        store
            .append_events_fenced(&[by_b], &[Fence::of("s1", &b)])
            .await
            .expect("the new holder writes");
        let written: Vec<_> = store
            .session_events("s1")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event.participant.unwrap())
            .collect();
        assert_eq!(written, ["pt-1", "pt-3"]);
    }

    #[tokio::test]
    async fn heartbeats_publish_the_load_that_placement_reads() {
        let (_dir, store) = store_with_session().await;
        let mut beat = Heartbeat {
            node: "a".into(),
            public_url: "https://node-a.example".into(),
            media: "[]".into(),
            started_at: at(0),
            draining: false,
            participants: 12,
            max_participants: 500,
            busy_ratio: 0.25,
        };
        store.beat(&beat, at(0)).await.unwrap();
        beat.draining = true;
        store.beat(&beat, at(2)).await.unwrap();
        let nodes = store.cluster_nodes().await.unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].url, "https://node-a.example");
        assert_eq!(nodes[0].load.last_beat, at(2));
        assert!(nodes[0].load.draining);
        assert_eq!(nodes[0].load.participants, 12);
        assert_eq!(nodes[0].load.busy_ratio, 0.25);
    }
}
