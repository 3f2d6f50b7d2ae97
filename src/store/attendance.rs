//! The attendance ledger's tables: events (append-only), presence
//! heartbeats, and the export audit log.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::event::{Event, EventKind, NewEvent};
use super::{Store, StoreError};

/// One line of the export audit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ExportRecord {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub what: String,
    pub filter: String,
    pub format: String,
    pub rows: i64,
    pub sha256: String,
}

const EVENT_COLUMNS: &str = "seq, at, session_id, participant_id, role, connection_id, kind, reason, modality, detail, prev_hash, hash";

impl Store {
    /// The last event's sequence number and hash, if any.
    pub(crate) async fn ledger_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM attendance_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Appends already-chained events in one transaction, with the webhook
    /// events they report: all or none, and on disk (synchronous=FULL) when
    /// this returns.
    ///
    /// The chain is global and serialised: the transaction excludes every
    /// other appender (SQLite's write lock; on PostgreSQL, where several
    /// nodes append, an advisory lock), and the events are written only
    /// when they continue the head actually stored. Otherwise nothing is
    /// written and [`StoreError::ChainMoved`] says so: the caller reads the
    /// head again and chains anew. Two writers can therefore never fork
    /// the chain (the primary key on `seq` would refuse it too).
    #[cfg(test)]
    pub(crate) async fn append_events(&self, events: &[Event]) -> Result<(), StoreError> {
        self.append_events_fenced(events, &[]).await
    }

    /// [`Store::append_events`], only while each of `fences` still holds:
    /// in the same transaction, the session's lease row must still name
    /// the writing node with the epoch it claimed (read `FOR SHARE`, so a
    /// claim by another node waits for this commit, and every event of
    /// the old holder is in the chain before the new holder's first).
    /// Otherwise nothing is written and [`StoreError::Fenced`] names the
    /// session (docs/compliance.md, "Fencing"). A single node passes no
    /// fences and pays for no check.
    pub(crate) async fn append_events_fenced(
        &self,
        events: &[Event],
        fences: &[super::cluster::Fence],
    ) -> Result<(), StoreError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let mut tx = self.write_transaction(super::locks::LEDGER).await?;
        for fence in fences {
            let lock = if self.backend == super::Backend::Postgres {
                " FOR SHARE"
            } else {
                ""
            };
            let holder = sqlx::query(&format!(
                "SELECT node_id, epoch FROM room_leases WHERE session_id = $1{lock}"
            ))
            .bind(&fence.session)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| -> Result<(String, i64), sqlx::Error> { Ok((r.try_get(0)?, r.try_get(1)?)) })
            .transpose()?;
            if holder.as_ref() != Some(&(fence.node.clone(), fence.epoch)) {
                tx.rollback().await?;
                return Err(StoreError::Fenced {
                    session: fence.session.clone(),
                });
            }
        }
        let head = sqlx::query("SELECT seq, hash FROM attendance_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| -> Result<(i64, String), sqlx::Error> { Ok((r.try_get(0)?, r.try_get(1)?)) })
            .transpose()?
            .unwrap_or((0, super::event::GENESIS.to_owned()));
        if head != (first.seq - 1, first.prev_hash.clone()) {
            tx.rollback().await?;
            return Err(StoreError::ChainMoved);
        }
        for e in events {
            sqlx::query(
                "INSERT INTO attendance_events (seq, at, session_id, participant_id, role, connection_id, kind, reason, modality, detail, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(e.seq)
            .bind(e.event.at)
            .bind(&e.event.session)
            .bind(&e.event.participant)
            .bind(&e.event.role)
            .bind(&e.event.connection)
            .bind(e.event.kind.as_str())
            .bind(&e.event.reason)
            .bind(&e.event.modality)
            .bind(e.event.detail.as_ref().map(|d| d.to_string()))
            .bind(&e.prev_hash)
            .bind(&e.hash)
            .execute(&mut *tx)
            .await?;
        }
        // The webhooks these events report, durable with them or not at all.
        let outgoing: Vec<_> = events.iter().flat_map(super::outbox::from_ledger).collect();
        super::webhooks::insert_events_in(
            &mut tx,
            &outgoing,
            chrono::Utc::now().timestamp_millis(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every event of one session, in ledger order.
    pub(crate) async fn session_events(&self, session: &str) -> Result<Vec<Event>, StoreError> {
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM attendance_events WHERE session_id = $1 ORDER BY seq"
        ))
        .bind(session)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(event)
        .collect()
    }

    /// Events in ledger order from `after` (exclusive), at most `limit`.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>, StoreError> {
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM attendance_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(event)
        .collect()
    }

    /// `joined` events whose presence was never closed (by a `left`,
    /// `removed` or `replaced` of the same connection, or the session's
    /// `session_closed`), with the connection's last heartbeat.
    pub(crate) async fn open_presence(&self) -> Result<Vec<(Event, Option<i64>)>, StoreError> {
        self.open_presence_in(None).await
    }

    /// [`Store::open_presence`] of one session (`Some`), or of all.
    pub(crate) async fn open_presence_in(
        &self,
        session: Option<&str>,
    ) -> Result<Vec<(Event, Option<i64>)>, StoreError> {
        let sql = format!(
            "SELECT {cols}, (SELECT h.at FROM presence_heartbeats h WHERE h.connection_id = j.connection_id) AS heartbeat
             FROM attendance_events j
             WHERE j.kind = 'joined'
               AND NOT EXISTS (SELECT 1 FROM attendance_events c WHERE c.connection_id = j.connection_id
                               AND c.seq > j.seq AND c.kind IN ('left', 'removed', 'replaced', 'joined'))
               AND NOT EXISTS (SELECT 1 FROM attendance_events s WHERE s.session_id = j.session_id
                               AND s.seq > j.seq AND s.kind = 'session_closed')
               {of_session}
             ORDER BY j.seq",
            cols = EVENT_COLUMNS.split(", ").map(|c| format!("j.{c}")).collect::<Vec<_>>().join(", "),
            // One session's (a takeover) reads its events only.
            of_session = if session.is_some() { "AND j.session_id = $1" } else { "" },
        );
        let mut query = sqlx::query(&sql);
        if let Some(session) = session {
            query = query.bind(session);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((event(r)?, r.try_get::<Option<i64>, _>("heartbeat")?)))
            .collect()
    }

    /// Records the last sign of life (`(connection, at)`) of connections
    /// with open presence; a value never moves back.
    pub async fn heartbeat(&self, beats: &[(String, i64)]) -> Result<(), StoreError> {
        if beats.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (connection, at) in beats {
            sqlx::query(
                "INSERT INTO presence_heartbeats (connection_id, at) VALUES ($1, $2)
                 ON CONFLICT (connection_id) DO UPDATE SET at = CASE WHEN excluded.at > presence_heartbeats.at
                                         THEN excluded.at ELSE presence_heartbeats.at END",
            )
            .bind(connection)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Writes a row and removes it in one transaction: fails as a real
    /// write would (a full disk, a read-only file) and changes nothing.
    pub(crate) async fn probe_write(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO presence_heartbeats (connection_id, at) VALUES ('', 0)
             ON CONFLICT (connection_id) DO UPDATE SET at = excluded.at",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM presence_heartbeats WHERE connection_id = ''")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn clear_heartbeats(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM presence_heartbeats")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn record_export(&self, record: &ExportRecord) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO export_audit (at, actor, what, filter, format, rows, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(record.at)
            .bind(&record.actor)
            .bind(&record.what)
            .bind(&record.filter)
            .bind(&record.format)
            .bind(record.rows)
            .bind(&record.sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn exports(&self) -> Result<Vec<ExportRecord>, StoreError> {
        let rows = sqlx::query("SELECT id, at, actor, what, filter, format, rows, sha256 FROM export_audit ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| ExportRecord {
                id: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                what: r.get(3),
                filter: r.get(4),
                format: r.get(5),
                rows: r.get(6),
                sha256: r.get(7),
            })
            .collect())
    }
}

fn kind(s: &str) -> Result<EventKind, StoreError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| StoreError::Corrupt(format!("event kind {s}")))
}

fn event(row: &AnyRow) -> Result<Event, StoreError> {
    let detail: Option<String> = row.try_get("detail")?;
    Ok(Event {
        seq: row.try_get("seq")?,
        event: NewEvent {
            at: row.try_get("at")?,
            session: row.try_get("session_id")?,
            participant: row.try_get("participant_id")?,
            role: row.try_get("role")?,
            connection: row.try_get("connection_id")?,
            kind: kind(&row.try_get::<String, _>("kind")?)?,
            reason: row.try_get("reason")?,
            modality: row.try_get("modality")?,
            detail: detail
                .map(|d| serde_json::from_str(&d))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("event detail: {e}")))?,
        },
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}
