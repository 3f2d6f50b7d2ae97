//! The webhook tables: endpoints, the outbox of events and their
//! deliveries (migrations/0006_webhooks.sql).
//!
//! [`insert_events_in`] runs inside the transaction that records the fact
//! an event reports (a ledger batch, a session's scheduling), so the event
//! is durable exactly when the fact is: neither without the other. It fans
//! the event out at once to the endpoints subscribed then, one pending
//! delivery each; events nobody subscribed to are not kept.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use super::outbox::{self, Outgoing};
use super::{Backend, Store, StoreError};

/// A receiver, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointRecord {
    pub id: String,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub secret: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub failing_since: Option<i64>,
}

/// One event's delivery to one endpoint, for the admin's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeliveryRecord {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub session_id: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub next_try_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_status: Option<i64>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// A delivery the worker may try now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DueDelivery {
    pub id: i64,
    pub endpoint_id: String,
    pub url: String,
    pub secret: String,
    /// The secret before the last rotation, while it still signs too.
    pub previous_secret: Option<String>,
    pub attempts: i64,
    pub event_position: i64,
    pub event_id: String,
    pub event_type: String,
    pub session_id: Option<String>,
    pub at: i64,
    pub payload: Option<String>,
}

/// How an attempt ended, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempted {
    Delivered,
    /// Try again at this time (ms).
    Retry {
        at: i64,
        error: String,
    },
    /// Out of retries: the endpoint is failing.
    Failed {
        error: String,
    },
}

pub(crate) const PENDING: &str = "pending";
pub(crate) const DELIVERED: &str = "delivered";
pub(crate) const FAILED: &str = "failed";

/// The LIKE pattern that finds `name` in an endpoint's JSON list of
/// events (`_` escaped: it is a wildcard).
fn subscribed(name: &str) -> String {
    format!("%\"{}\"%", name.replace('_', "\\_"))
}

/// Writes `events` to the outbox inside the caller's transaction, with a
/// pending delivery (due `now`) for each endpoint subscribed to it.
pub(super) async fn insert_events_in(
    tx: &mut Transaction<'_, Any>,
    events: &[Outgoing],
    now: i64,
) -> Result<(), StoreError> {
    for e in events {
        let pattern = subscribed(e.kind.as_str());
        let id = format!("msg_{}", Uuid::new_v4().simple());
        let written = sqlx::query(
            "INSERT INTO webhook_events (id, type, session_id, at, payload)
             SELECT $1, $2, $3, $4, $5
             WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE events LIKE $6 ESCAPE '\\')",
        )
        .bind(&id)
        .bind(e.kind.as_str())
        .bind(&e.session)
        .bind(e.at)
        .bind(
            e.data
                .as_ref()
                .map(|d| outbox::body(&id, e.kind, e.at, d).to_string()),
        )
        .bind(&pattern)
        .execute(&mut **tx)
        .await?;
        if written.rows_affected() == 0 {
            continue;
        }
        sqlx::query(
            "INSERT INTO webhook_deliveries (endpoint_id, event, status, attempts, next_try_at, created_at)
             SELECT p.id, e.position, $1, 0, $2, $3
             FROM webhook_endpoints p, webhook_events e
             WHERE e.id = $4 AND p.events LIKE $5 ESCAPE '\\'",
        )
        .bind(PENDING)
        .bind(now)
        .bind(now)
        .bind(&id)
        .bind(&pattern)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The due deliveries (`$1`, `$3`: pending; `$2`: now): each the first
/// pending one of its endpoint and session.
const DUE: &str =
    "SELECT d.id, d.endpoint_id, p.url, p.secret, d.attempts, e.position, e.id AS event_id,
        e.type, e.session_id, e.at, e.payload,
        CASE WHEN p.previous_secret_until > $2 THEN p.previous_secret END AS previous_secret
     FROM webhook_deliveries d
     JOIN webhook_events e ON e.position = d.event
     JOIN webhook_endpoints p ON p.id = d.endpoint_id
     WHERE d.status = $1 AND d.next_try_at <= $2
       AND NOT EXISTS (
         SELECT 1 FROM webhook_deliveries d2 JOIN webhook_events e2 ON e2.position = d2.event
         WHERE d2.endpoint_id = d.endpoint_id AND d2.status = $3
           AND e2.session_id = e.session_id AND d2.event < d.event)";

fn due(r: &AnyRow) -> Result<DueDelivery, StoreError> {
    Ok(DueDelivery {
        id: r.try_get(0)?,
        endpoint_id: r.try_get(1)?,
        url: r.try_get(2)?,
        secret: r.try_get(3)?,
        attempts: r.try_get(4)?,
        event_position: r.try_get(5)?,
        event_id: r.try_get(6)?,
        event_type: r.try_get(7)?,
        session_id: r.try_get(8)?,
        at: r.try_get(9)?,
        payload: r.try_get(10)?,
        previous_secret: r.try_get(11)?,
    })
}

const ENDPOINT_COLUMNS: &str =
    "id, url, description, events, secret, created_at, updated_at, failing_since";

const DELIVERY_COLUMNS: &str = "d.id, e.id AS event_id, e.type AS event_type, e.session_id,
     d.status, d.attempts, d.next_try_at, d.last_error, d.last_status, d.created_at, d.delivered_at";

impl Store {
    /// Writes `events` in a transaction of their own (what no other write
    /// records, such as a failed verification).
    pub(crate) async fn record_webhook_events(
        &self,
        events: &[Outgoing],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_events_in(&mut tx, events, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn insert_webhook_endpoint(
        &self,
        e: &EndpointRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&e.id)
        .bind(&e.url)
        .bind(&e.description)
        .bind(serde_json::to_string(&e.events).expect("strings serialise"))
        .bind(&e.secret)
        .bind(e.created_at)
        .bind(e.updated_at)
        .bind(e.failing_since)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn webhook_endpoints(&self) -> Result<Vec<EndpointRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(endpoint)
        .collect()
    }

    pub(crate) async fn webhook_endpoint(
        &self,
        id: &str,
    ) -> Result<Option<EndpointRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(endpoint)
        .transpose()
    }

    /// Replaces an endpoint's url, events and description (the caller read
    /// it first and changed what it was asked to). Never its secret: only
    /// [`Store::rotate_webhook_secret`] changes that, so an edit racing a
    /// rotation cannot put the old secret back.
    pub(crate) async fn update_webhook_endpoint(
        &self,
        e: &EndpointRecord,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, description = $2, events = $3, updated_at = $4
             WHERE id = $5",
        )
        .bind(&e.url)
        .bind(&e.description)
        .bind(serde_json::to_string(&e.events).expect("strings serialise"))
        .bind(e.updated_at)
        .bind(&e.id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives endpoint `id` the secret `new`; the one it had keeps signing
    /// too until `previous_until` (ms; `None`: it stops at once). False
    /// when there is no such endpoint.
    pub(crate) async fn rotate_webhook_secret(
        &self,
        id: &str,
        new: &str,
        previous_until: Option<i64>,
        now: i64,
    ) -> Result<bool, StoreError> {
        // The right-hand sides read the row as it was: the old secret
        // moves over as the new one comes in, in one statement.
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = $1,
             secret = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(previous_until)
        .bind(new)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes an endpoint and its deliveries.
    pub(crate) async fn delete_webhook_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Pending deliveries due at `now`, each the first pending one of its
    /// endpoint and session (so a session's events go out in order), in
    /// outbox order; at most `limit`. Claimed ones included (a read for
    /// tests and tools; the worker claims: [`Store::claim_webhook_deliveries`]).
    #[cfg(test)]
    pub(crate) async fn due_webhook_deliveries(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let rows = sqlx::query(&format!("{DUE} ORDER BY e.position, d.id LIMIT $4"))
            .bind(PENDING)
            .bind(now)
            .bind(PENDING)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(due).collect()
    }

    /// Claims the deliveries due at `now` that no node holds (as
    /// [`Store::due_webhook_deliveries`] chooses them), for `hold`
    /// milliseconds: no other node sends them meanwhile. The attempt's
    /// outcome ([`Store::finish_webhook_attempt`]) or
    /// [`Store::release_webhook_delivery`] ends the claim; a node that dies
    /// holding one leaves it to the others once `hold` has passed.
    ///
    /// Two claimers never get the same row: SQLite's write lock serialises
    /// them; on PostgreSQL the rows are locked `FOR UPDATE SKIP LOCKED`, so
    /// a second node skips what the first is claiming instead of waiting.
    pub(crate) async fn claim_webhook_deliveries(
        &self,
        node: &str,
        now: i64,
        hold: i64,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE OF d SKIP LOCKED",
        };
        let claimable = format!("{DUE} AND (d.claimed_until IS NULL OR d.claimed_until <= $2)");
        // The worker asks several times a second: a plain read first, so
        // that the write lock (SQLite's for the whole file) is taken only
        // when there is something to claim.
        let anything = sqlx::query(&format!("{claimable} LIMIT $4"))
            .bind(PENDING)
            .bind(now)
            .bind(PENDING)
            .bind(1_i64)
            .fetch_optional(&self.pool)
            .await?;
        if anything.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_transaction(super::locks::OUTBOX).await?;
        let rows = sqlx::query(&format!(
            "{claimable} ORDER BY e.position, d.id LIMIT $4{lock}"
        ))
        .bind(PENDING)
        .bind(now)
        .bind(PENDING)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let claimed: Vec<DueDelivery> = rows.iter().map(due).collect::<Result<_, _>>()?;
        for d in &claimed {
            sqlx::query(
                "UPDATE webhook_deliveries SET claimed_until = $1, claimed_by = $2 WHERE id = $3",
            )
            .bind(now + hold)
            .bind(node)
            .bind(d.id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Gives back every claim `node` holds: called as its worker starts, so
    /// that what a node held when it was killed is sent again at once
    /// rather than when the claims run out.
    pub(crate) async fn release_webhook_claims_of(&self, node: &str) -> Result<u64, StoreError> {
        let released = sqlx::query(
            "UPDATE webhook_deliveries SET claimed_until = NULL, claimed_by = NULL
             WHERE claimed_by = $1",
        )
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(released.rows_affected())
    }

    /// Gives a claimed delivery back untried (its payload was not ready).
    pub(crate) async fn release_webhook_delivery(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET claimed_until = NULL, claimed_by = NULL WHERE id = $1",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores the body computed for an event (once: a later call keeps the
    /// first).
    pub(crate) async fn set_webhook_payload(
        &self,
        position: i64,
        payload: &str,
    ) -> Result<String, StoreError> {
        sqlx::query(
            "UPDATE webhook_events SET payload = $1 WHERE position = $2 AND payload IS NULL",
        )
        .bind(payload)
        .bind(position)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query("SELECT payload FROM webhook_events WHERE position = $1")
                .bind(position)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    /// Records the outcome of an attempt at delivery `id` (`status`: the
    /// receiver's HTTP status, if it answered); a success clears the
    /// endpoint's failing mark, a final failure sets it.
    pub(crate) async fn finish_webhook_attempt(
        &self,
        id: i64,
        endpoint: &str,
        outcome: &Attempted,
        status: Option<u16>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let (state, next, error) = match outcome {
            Attempted::Delivered => (DELIVERED, None, None),
            Attempted::Retry { at, error } => (PENDING, Some(*at), Some(error.as_str())),
            Attempted::Failed { error } => (FAILED, None, Some(error.as_str())),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, next_try_at = $2,
             last_error = $3, last_status = $4, claimed_until = NULL, claimed_by = NULL,
             delivered_at = CASE WHEN $5 = 'delivered' THEN $6 ELSE delivered_at END
             WHERE id = $7",
        )
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(status.map(i64::from))
        .bind(state)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        match outcome {
            Attempted::Delivered => {
                sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1")
                    .bind(endpoint)
                    .execute(&mut *tx)
                    .await?;
            }
            Attempted::Failed { .. } => {
                sqlx::query(
                    "UPDATE webhook_endpoints SET failing_since = $1 WHERE id = $2 AND failing_since IS NULL",
                )
                .bind(now)
                .bind(endpoint)
                .execute(&mut *tx)
                .await?;
            }
            Attempted::Retry { .. } => {}
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many endpoints are marked failing.
    pub(crate) async fn failing_webhook_endpoints(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM webhook_endpoints WHERE failing_since IS NOT NULL")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    /// Purges deliveries finished before `cutoff` (delivered then, or failed
    /// for good and created then), and events older than `cutoff` that no
    /// delivery needs any more; how many deliveries went. Pending ones are
    /// never touched. The newest delivery and event rows stay, so that
    /// SQLite never hands out their ids again (`INTEGER PRIMARY KEY` reuses
    /// the highest id once it is deleted).
    pub(crate) async fn purge_finished_webhook_deliveries(
        &self,
        cutoff: i64,
    ) -> Result<u64, StoreError> {
        // A plain read first: most hours there is nothing to purge, and a
        // write transaction would take SQLite's lock on the whole file.
        let finished = "(status = $1 AND delivered_at < $2) OR (status = $3 AND created_at < $2)";
        let any = sqlx::query(&format!(
            "SELECT 1 FROM webhook_deliveries WHERE {finished} LIMIT 1"
        ))
        .bind(DELIVERED)
        .bind(cutoff)
        .bind(FAILED)
        .fetch_optional(&self.pool)
        .await?;
        if any.is_none() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query(&format!(
            "DELETE FROM webhook_deliveries
             WHERE ({finished}) AND id < (SELECT MAX(id) FROM webhook_deliveries)"
        ))
        .bind(DELIVERED)
        .bind(cutoff)
        .bind(FAILED)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "DELETE FROM webhook_events
             WHERE at < $1
               AND position < (SELECT MAX(position) FROM webhook_events)
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event = webhook_events.position)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(gone)
    }

    /// An endpoint's deliveries, newest first, older than `before` (a
    /// delivery id) when given; at most `limit`.
    pub(crate) async fn webhook_deliveries(
        &self,
        endpoint: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_events e ON e.position = d.event
             WHERE d.endpoint_id = $1 AND d.id < $2 ORDER BY d.id DESC LIMIT $3"
        ))
        .bind(endpoint)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(delivery)
        .collect()
    }

    /// Sends delivery `id` of `endpoint` again from its first attempt, due
    /// `now`. `None` when there is no such delivery.
    pub(crate) async fn replay_webhook_delivery(
        &self,
        endpoint: &str,
        id: i64,
        now: i64,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = 0, next_try_at = $2, last_error = NULL,
             last_status = NULL WHERE id = $3 AND endpoint_id = $4",
        )
        .bind(PENDING)
        .bind(now)
        .bind(id)
        .bind(endpoint)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_events e ON e.position = d.event
             WHERE d.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(delivery)
        .transpose()
    }
}

fn endpoint(r: &AnyRow) -> Result<EndpointRecord, StoreError> {
    let events: String = r.try_get("events")?;
    Ok(EndpointRecord {
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        description: r.try_get("description")?,
        events: serde_json::from_str(&events)
            .map_err(|_| StoreError::Corrupt(format!("webhook events {events}")))?,
        secret: r.try_get("secret")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        failing_since: r.try_get("failing_since")?,
    })
}

fn delivery(r: &AnyRow) -> Result<DeliveryRecord, StoreError> {
    Ok(DeliveryRecord {
        id: r.try_get("id")?,
        event_id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        session_id: r.try_get("session_id")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        next_try_at: r.try_get("next_try_at")?,
        last_error: r.try_get("last_error")?,
        last_status: r.try_get("last_status")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
    })
}

/// A receiver subscribed to `events`, for tests (its id is new each time).
#[cfg(test)]
pub(crate) fn test_endpoint(events: &[&str]) -> EndpointRecord {
    EndpointRecord {
        id: Uuid::new_v4().to_string(),
        url: "https://ehr.example/hook".into(),
        description: String::new(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        created_at: 0,
        updated_at: 0,
        failing_since: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::event::{chain_hash, Event, EventKind, NewEvent, GENESIS};

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("tandem.db")).await.unwrap();
        (dir, store)
    }

    use super::test_endpoint as endpoint;

    fn knock(session: &str) -> Event {
        let event = NewEvent {
            at: 1_000,
            session: session.into(),
            participant: Some("pat-1".into()),
            role: Some("patient".into()),
            connection: Some("b-1".into()),
            kind: EventKind::Waiting,
            reason: None,
            modality: None,
            detail: None,
        };
        Event {
            seq: 1,
            hash: chain_hash(GENESIS, 1, &event),
            prev_hash: GENESIS.into(),
            event,
        }
    }

    #[tokio::test]
    async fn a_ledger_event_and_its_webhook_are_written_together_or_not_at_all() {
        let (_dir, store) = store().await;
        let hook = endpoint(&["participant.waiting"]);
        store.insert_webhook_endpoint(&hook).await.unwrap();
        store
            .insert_webhook_endpoint(&endpoint(&["session.ended"]))
            .await
            .unwrap();
        store.append_events(&[knock("s-1")]).await.unwrap();
        let due = store.due_webhook_deliveries(i64::MAX, 10).await.unwrap();
        assert_eq!(due.len(), 1, "only the subscribed endpoint gets it");
        assert_eq!(due[0].endpoint_id, hook.id);
        assert_eq!(due[0].event_type, "participant.waiting");

        // The outbox cannot be written: the ledger event is not either.
        sqlx::query("DROP TABLE webhook_deliveries")
            .execute(&store.pool)
            .await
            .unwrap();
        let first = knock("s-1");
        let mut second = knock("s-2");
        second.seq = 2;
        second.prev_hash = first.hash.clone();
        second.hash = chain_hash(&first.hash, 2, &second.event);
        assert!(store.append_events(&[second]).await.is_err());
        assert_eq!(store.events_after(0, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn events_nobody_subscribed_to_are_not_kept() {
        let (_dir, store) = store().await;
        store.append_events(&[knock("s-1")]).await.unwrap();
        let kept: i64 = sqlx::query("SELECT COUNT(*) FROM webhook_events")
            .fetch_one(&store.pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(kept, 0);
    }

    #[tokio::test]
    async fn a_session_s_later_event_waits_for_its_earlier_one() {
        let (_dir, store) = store().await;
        let hook = endpoint(&["participant.waiting"]);
        store.insert_webhook_endpoint(&hook).await.unwrap();
        let mut events = vec![knock("s-1"), knock("s-1"), knock("s-2")];
        let mut prev = GENESIS.to_owned();
        for (i, e) in events.iter_mut().enumerate() {
            e.seq = i as i64 + 1;
            e.prev_hash = prev.clone();
            e.hash = chain_hash(&prev, e.seq, &e.event);
            prev = e.hash.clone();
        }
        store.append_events(&events).await.unwrap();
        let due = store.due_webhook_deliveries(i64::MAX, 10).await.unwrap();
        let sessions: Vec<_> = due.iter().map(|d| d.session_id.clone().unwrap()).collect();
        assert_eq!(sessions, ["s-1", "s-2"], "one per session, the first");
        let first = &due[0];
        let later = chrono::Utc::now().timestamp_millis() + 60_000;
        let retry = Attempted::Retry {
            at: later,
            error: "HTTP 500".into(),
        };
        store
            .finish_webhook_attempt(first.id, &hook.id, &retry, Some(500), 1_000)
            .await
            .unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        let due = store.due_webhook_deliveries(now, 10).await.unwrap();
        let sessions: Vec<_> = due.iter().map(|d| d.session_id.clone().unwrap()).collect();
        assert_eq!(sessions, ["s-2"], "the retry still holds s-1 back");
        let due = store.due_webhook_deliveries(later, 10).await.unwrap();
        assert_eq!(due[0].id, first.id);
        store
            .finish_webhook_attempt(first.id, &hook.id, &Attempted::Delivered, Some(200), 6_000)
            .await
            .unwrap();
        let due = store.due_webhook_deliveries(i64::MAX, 10).await.unwrap();
        assert_eq!(due.len(), 2);
        assert_ne!(due[0].id, first.id, "then the next event of s-1 goes");
    }
}
