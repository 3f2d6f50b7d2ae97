//! Placing sessions on people's calendars: who is busy when, and writes
//! that place sessions (a new session, a whole series, a move) only when
//! none of them double-books anyone.
//!
//! The check and the write run in one transaction, so a series is created
//! whole or not at all, and a refused write leaves nothing behind. The
//! transaction excludes every other placing write, of this node or of
//! another one on the same PostgreSQL ([`Store::write_transaction`]), so
//! two requests cannot both pass the check for the same hour.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use super::outbox::{self as event, EventType};
use super::session::{Session, SessionSettings};
use super::webhooks;
use super::{from_millis, to_millis, Backend, Store, StoreError};

/// The advisory lock key of placing writes on PostgreSQL (any constant
/// no other lock of Tandem's uses: `locks` in src/store/mod.rs).
const PLACEMENT_LOCK: i64 = super::locks::PLACEMENT;

/// One person's time in a scheduled session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Busy {
    pub session: Uuid,
    pub participant: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// A session that would double-book a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    /// The session being placed.
    pub session: Uuid,
    pub starts_at: DateTime<Utc>,
    pub participant: String,
    /// The session already holding that time.
    pub other: Uuid,
}

/// A recurring series as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesRecord {
    pub id: Uuid,
    pub title: String,
    pub kind: String,
    pub timezone: String,
    pub rrule: String,
    pub first_starts_at: String,
    pub duration_minutes: u32,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// How a session came to be: alone or in a series, over another or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Placement {
    pub series_id: Option<Uuid>,
    pub allow_overlap: bool,
    /// When the session was last moved to another time.
    pub moved_at: Option<DateTime<Utc>>,
}

/// The sessions (not cancelled, not ended, person not revoked) of any of
/// `people` that overlap `[from, to)` and are still open at `now`.
async fn busy_in(
    tx: &mut Transaction<'_, Any>,
    people: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<Busy>, StoreError> {
    if people.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT s.id, r.participant_id, s.starts_at, s.ends_at, s.settings
         FROM sessions s JOIN roster r ON r.session_id = s.id
         WHERE s.cancelled_at IS NULL AND s.ended_at IS NULL AND r.revoked_at IS NULL
         AND s.starts_at < $1 AND s.ends_at > $2 AND r.participant_id IN ({})
         ORDER BY s.starts_at, s.id",
        super::numbered(3, people.len())
    );
    let mut query = sqlx::query(&sql).bind(to_millis(to)).bind(to_millis(from));
    for id in people {
        query = query.bind(id);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    let mut busy = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("id")?;
        let ends_at = from_millis(row.try_get("ends_at")?)?;
        let settings: String = row.try_get("settings")?;
        let settings: SessionSettings = serde_json::from_str(&settings)
            .map_err(|e| StoreError::Corrupt(format!("session settings {e}")))?;
        // Past its overrun grace a session has ended by time.
        if ends_at + Duration::minutes(settings.overrun_grace_minutes.into()) <= now {
            continue;
        }
        busy.push(Busy {
            session: id
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("session id {id}")))?,
            participant: row.try_get("participant_id")?,
            starts_at: from_millis(row.try_get("starts_at")?)?,
            ends_at,
        });
    }
    Ok(busy)
}

/// What `sessions` would double-book, against the stored sessions other
/// than `moving`.
async fn clashes(
    tx: &mut Transaction<'_, Any>,
    sessions: &[Session],
    moving: &[Uuid],
    now: DateTime<Utc>,
) -> Result<Vec<Clash>, StoreError> {
    let mut found = Vec::new();
    for session in sessions {
        let people: Vec<String> = session
            .roster
            .iter()
            .filter(|p| p.revoked_at.is_none())
            .map(|p| p.id.clone())
            .collect();
        for busy in busy_in(tx, &people, session.starts_at, session.ends_at, now).await? {
            if busy.session != session.id && !moving.contains(&busy.session) {
                found.push(Clash {
                    session: session.id,
                    starts_at: session.starts_at,
                    participant: busy.participant,
                    other: busy.session,
                });
            }
        }
    }
    Ok(found)
}

impl Store {
    /// A transaction in which no other placing write runs, so that what it
    /// reads is still true when it writes.
    ///
    /// SQLite: `BEGIN IMMEDIATE` holds the file's write lock from the first
    /// statement. (A deferred transaction that reads, then writes after
    /// another connection committed, fails with "database is locked" at
    /// once.) PostgreSQL, where several nodes write at once: a
    /// transaction-scoped advisory lock, taken first, serialises every
    /// placing write of every node; it is released at commit or rollback,
    /// also when the connection is lost. (SERIALIZABLE would also refuse
    /// a double booking, but by failing one of two racing requests, to be
    /// retried by the caller: the lock makes the second wait a few
    /// milliseconds and then see the first's sessions.)
    ///
    /// `lock` names the kind of write (`locks`); on SQLite there is one
    /// write lock for all.
    pub(super) async fn write_transaction(
        &self,
        lock: i64,
    ) -> Result<Transaction<'static, Any>, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(lock)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// The busy times of `people` overlapping `[from, to)` at `now`.
    pub(crate) async fn busy(
        &self,
        people: &[String],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Busy>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let busy = busy_in(&mut tx, people, from, to, now).await?;
        tx.commit().await?;
        Ok(busy)
    }

    /// Stores `sessions` (and their `series`, when given) in one
    /// transaction, unless one of them would double-book someone and
    /// `allow_overlap` is false: then nothing is written and the clashes
    /// are returned.
    pub(crate) async fn place_sessions(
        &self,
        sessions: &[Session],
        series: Option<&SeriesRecord>,
        allow_overlap: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<Clash>, StoreError> {
        let mut tx = self.write_transaction(PLACEMENT_LOCK).await?;
        if !allow_overlap {
            let found = clashes(&mut tx, sessions, &[], now).await?;
            if !found.is_empty() {
                tx.rollback().await?;
                return Ok(found);
            }
        }
        if let Some(series) = series {
            sqlx::query(
                "INSERT INTO series (id, title, kind, timezone, rrule, first_starts_at, duration_minutes, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(series.id.to_string())
            .bind(&series.title)
            .bind(&series.kind)
            .bind(&series.timezone)
            .bind(&series.rrule)
            .bind(&series.first_starts_at)
            .bind(i64::from(series.duration_minutes))
            .bind(to_millis(series.created_at))
            .execute(&mut *tx)
            .await?;
        }
        for session in sessions {
            Self::insert_session_in(&mut tx, session).await?;
            sqlx::query("UPDATE sessions SET series_id = $1, allow_overlap = $2 WHERE id = $3")
                .bind(series.map(|s| s.id.to_string()))
                .bind(i64::from(allow_overlap))
                .bind(session.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let scheduled: Vec<_> = sessions
            .iter()
            .map(|s| event::session_event(EventType::SessionScheduled, s, now))
            .collect();
        webhooks::insert_events_in(&mut tx, &scheduled, to_millis(now)).await?;
        tx.commit().await?;
        Ok(Vec::new())
    }

    /// Writes new times for `changed` sessions (and, with
    /// `replace_roster`, their new rosters), unless one would double-book
    /// someone and `allow_overlap` is false. All or nothing, like
    /// [`Store::place_sessions`].
    pub(crate) async fn update_sessions(
        &self,
        changed: &[Session],
        replace_roster: bool,
        allow_overlap: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<Clash>, StoreError> {
        let mut tx = self.write_transaction(PLACEMENT_LOCK).await?;
        if !allow_overlap {
            let ids: Vec<Uuid> = changed.iter().map(|s| s.id).collect();
            let found = clashes(&mut tx, changed, &ids, now).await?;
            if !found.is_empty() {
                tx.rollback().await?;
                return Ok(found);
            }
        }
        for session in changed {
            sqlx::query(
                "UPDATE sessions SET starts_at = $1, ends_at = $2, moved_at = $3,
                 allow_overlap = CASE WHEN $4 = 1 THEN 1 ELSE allow_overlap END
                 WHERE id = $5",
            )
            .bind(to_millis(session.starts_at))
            .bind(to_millis(session.ends_at))
            .bind(to_millis(now))
            .bind(i64::from(allow_overlap))
            .bind(session.id.to_string())
            .execute(&mut *tx)
            .await?;
            if replace_roster {
                sqlx::query("DELETE FROM roster WHERE session_id = $1")
                    .bind(session.id.to_string())
                    .execute(&mut *tx)
                    .await?;
                Self::insert_roster_in(&mut tx, session).await?;
            }
        }
        let updated: Vec<_> = changed
            .iter()
            .map(|s| event::session_event(EventType::SessionUpdated, s, now))
            .collect();
        webhooks::insert_events_in(&mut tx, &updated, to_millis(now)).await?;
        tx.commit().await?;
        Ok(Vec::new())
    }

    /// The series and allow-overlap marks of `ids`.
    pub(crate) async fn placements(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Placement>, StoreError> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT id, series_id, allow_overlap, moved_at FROM sessions WHERE id IN ({})",
            super::numbered(1, ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id.to_string());
        }
        for row in query.fetch_all(&self.pool).await? {
            let id: String = row.try_get("id")?;
            let series: Option<String> = row.try_get("series_id")?;
            let overlap: i64 = row.try_get("allow_overlap")?;
            let corrupt = |v: &str| StoreError::Corrupt(format!("session id {v}"));
            out.insert(
                id.parse().map_err(|_| corrupt(&id))?,
                Placement {
                    series_id: series
                        .map(|s| s.parse().map_err(|_| corrupt(&s)))
                        .transpose()?,
                    allow_overlap: overlap != 0,
                    moved_at: row
                        .try_get::<Option<i64>, _>("moved_at")?
                        .map(from_millis)
                        .transpose()?,
                },
            );
        }
        Ok(out)
    }

    pub(crate) async fn series(&self, id: Uuid) -> Result<Option<SeriesRecord>, StoreError> {
        let Some(row) = sqlx::query("SELECT * FROM series WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let minutes: i64 = row.try_get("duration_minutes")?;
        Ok(Some(SeriesRecord {
            id,
            title: row.try_get("title")?,
            kind: row.try_get("kind")?,
            timezone: row.try_get("timezone")?,
            rrule: row.try_get("rrule")?,
            first_starts_at: row.try_get("first_starts_at")?,
            duration_minutes: u32::try_from(minutes)
                .map_err(|_| StoreError::Corrupt(format!("series duration {minutes}")))?,
            created_at: from_millis(row.try_get("created_at")?)?,
            cancelled_at: row
                .try_get::<Option<i64>, _>("cancelled_at")?
                .map(from_millis)
                .transpose()?,
        }))
    }

    /// Every session of a series, cancelled ones included, by start.
    pub(crate) async fn series_sessions(&self, id: Uuid) -> Result<Vec<Session>, StoreError> {
        let ids: Vec<String> =
            sqlx::query("SELECT id FROM sessions WHERE series_id = $1 ORDER BY starts_at, id")
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|row| row.try_get("id"))
                .collect::<Result<_, _>>()?;
        self.sessions_by_id(ids).await
    }

    /// Cancels the series and its occurrences that start after `now`, in
    /// one transaction; past and running ones stay. Returns the sessions it
    /// cancelled.
    pub(crate) async fn cancel_series(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut tx = self.write_transaction(PLACEMENT_LOCK).await?;
        let ids: Vec<String> = sqlx::query(
            "SELECT id FROM sessions WHERE series_id = $1 AND starts_at > $2 AND cancelled_at IS NULL",
        )
        .bind(id.to_string())
        .bind(to_millis(now))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<_, _>>()?;
        sqlx::query(
            "UPDATE sessions SET cancelled_at = $1
             WHERE series_id = $2 AND starts_at > $3 AND cancelled_at IS NULL",
        )
        .bind(to_millis(now))
        .bind(id.to_string())
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE series SET cancelled_at = $1 WHERE id = $2 AND cancelled_at IS NULL")
            .bind(to_millis(now))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let cancelled: Vec<_> = ids
            .iter()
            .map(|s| event::session_cancelled(s, now))
            .collect();
        webhooks::insert_events_in(&mut tx, &cancelled, to_millis(now)).await?;
        tx.commit().await?;
        ids.iter()
            .map(|s| {
                s.parse()
                    .map_err(|_| StoreError::Corrupt(format!("session id {s}")))
            })
            .collect()
    }

    /// `participant`'s sessions still to end after `now` (not cancelled,
    /// not ended, not revoked), by start; at most `limit`.
    pub(crate) async fn person_sessions(
        &self,
        participant: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Session>, StoreError> {
        let ids: Vec<String> = sqlx::query(
            "SELECT s.id FROM sessions s JOIN roster r ON r.session_id = s.id
             WHERE r.participant_id = $1 AND r.revoked_at IS NULL
             AND s.cancelled_at IS NULL AND s.ended_at IS NULL AND s.ends_at > $2
             ORDER BY s.starts_at, s.id LIMIT $3",
        )
        .bind(participant)
        .bind(to_millis(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<_, _>>()?;
        self.sessions_by_id(ids).await
    }

    async fn sessions_by_id(&self, ids: Vec<String>) -> Result<Vec<Session>, StoreError> {
        let mut sessions = Vec::with_capacity(ids.len());
        for sid in ids {
            let sid: Uuid = sid
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("session id {sid}")))?;
            if let Some(session) = self.session(sid).await? {
                sessions.push(session);
            }
        }
        Ok(sessions)
    }
}
