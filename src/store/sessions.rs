//! Sessions and rosters.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use super::session::{RosterEntry, Session, SessionKind};
use super::{from_millis, to_millis, Store, StoreError};

/// What happened to a cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Done,
    /// It was already so; nothing changed.
    AlreadyDone,
    NotFound,
}

const SESSION_COLUMNS: &str =
    "id, title, kind, starts_at, ends_at, timezone, settings, created_at, cancelled_at, ended_at";

impl Store {
    /// Stores a new session with its roster in one transaction.
    pub async fn insert_session(&self, session: &Session) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        Self::insert_session_in(&mut tx, session).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes a session and its roster inside the caller's transaction.
    pub(super) async fn insert_session_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        session: &Session,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id, title, kind, starts_at, ends_at, timezone, settings, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(session.id.to_string())
        .bind(&session.title)
        .bind(session.kind.as_str())
        .bind(to_millis(session.starts_at))
        .bind(to_millis(session.ends_at))
        .bind(session.timezone.name())
        .bind(serde_json::to_string(&session.settings).expect("settings serialise"))
        .bind(to_millis(session.created_at))
        .execute(&mut **tx)
        .await?;
        Self::insert_roster_in(tx, session).await
    }

    /// Writes a session's roster (with any revocation or removal it
    /// carries) inside the caller's transaction.
    pub(super) async fn insert_roster_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        session: &Session,
    ) -> Result<(), StoreError> {
        for (position, person) in session.roster.iter().enumerate() {
            sqlx::query(
                "INSERT INTO roster (session_id, participant_id, position, name, role, household, mrn,
                                     revoked_at, removed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(session.id.to_string())
            .bind(&person.id)
            .bind(position as i64)
            .bind(&person.name)
            .bind(person.role.as_str())
            .bind(&person.household)
            .bind(&person.mrn)
            .bind(person.revoked_at.map(to_millis))
            .bind(person.removed_at.map(to_millis))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    pub(crate) async fn session(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let roster = sqlx::query("SELECT * FROM roster WHERE session_id = $1 ORDER BY position")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(roster_entry)
            .collect::<Result<Vec<_>, _>>()?;
        session(&row, roster).map(Some)
    }

    /// Sessions that overlap `[from, to)`, by start time. Either bound may be
    /// open. At most `limit` sessions.
    pub(crate) async fn sessions_between(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<Session>, StoreError> {
        let from = from.map_or(i64::MIN, to_millis);
        let to = to.map_or(i64::MAX, to_millis);
        let rows = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE ends_at > $1 AND starts_at < $2
             ORDER BY starts_at, id LIMIT $3"
        ))
        .bind(from)
        .bind(to)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut rosters: HashMap<String, Vec<RosterEntry>> = HashMap::new();
        let roster_rows = sqlx::query(
            "SELECT roster.* FROM roster JOIN sessions ON sessions.id = roster.session_id
             WHERE sessions.ends_at > $1 AND sessions.starts_at < $2
             ORDER BY roster.session_id, roster.position",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        for row in &roster_rows {
            rosters
                .entry(row.try_get("session_id")?)
                .or_default()
                .push(roster_entry(row)?);
        }
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                session(row, rosters.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    pub(crate) async fn cancel_session(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<Change, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET cancelled_at = $1 WHERE id = $2 AND cancelled_at IS NULL",
        )
        .bind(to_millis(at))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            let cancelled = super::outbox::session_cancelled(&id.to_string(), at);
            super::webhooks::insert_events_in(&mut tx, &[cancelled], to_millis(at)).await?;
            tx.commit().await?;
            return Ok(Change::Done);
        }
        tx.rollback().await?;
        self.exists(id).await
    }

    pub(crate) async fn revoke_participant(
        &self,
        session: Uuid,
        participant: &str,
        at: DateTime<Utc>,
    ) -> Result<Change, StoreError> {
        let done = sqlx::query(
            "UPDATE roster SET revoked_at = $1 WHERE session_id = $2 AND participant_id = $3 AND revoked_at IS NULL",
        )
        .bind(to_millis(at))
        .bind(session.to_string())
        .bind(participant)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Change::Done);
        }
        let known =
            sqlx::query("SELECT 1 FROM roster WHERE session_id = $1 AND participant_id = $2")
                .bind(session.to_string())
                .bind(participant)
                .fetch_optional(&self.pool)
                .await?;
        Ok(if known.is_some() {
            Change::AlreadyDone
        } else {
            Change::NotFound
        })
    }

    /// Bans a participant from the rest of the session (a clinician's
    /// removal). Idempotent; the first removal's time stands.
    pub(crate) async fn mark_removed(
        &self,
        session: Uuid,
        participant: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE roster SET removed_at = $1 WHERE session_id = $2 AND participant_id = $3 AND removed_at IS NULL",
        )
        .bind(to_millis(at))
        .bind(session.to_string())
        .bind(participant)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that the clinician ended the session. Idempotent.
    pub(crate) async fn end_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
            .bind(to_millis(at))
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn exists(&self, id: Uuid) -> Result<Change, StoreError> {
        let found = sqlx::query("SELECT 1 FROM sessions WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(if found.is_some() {
            Change::AlreadyDone
        } else {
            Change::NotFound
        })
    }
}

fn corrupt(what: &str, value: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what} {value}"))
}

fn session(row: &AnyRow, roster: Vec<RosterEntry>) -> Result<Session, StoreError> {
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let timezone: String = row.try_get("timezone")?;
    let settings: String = row.try_get("settings")?;
    Ok(Session {
        id: id.parse().map_err(|_| corrupt("session id", &id))?,
        title: row.try_get("title")?,
        kind: SessionKind::parse(&kind).ok_or_else(|| corrupt("session kind", &kind))?,
        starts_at: from_millis(row.try_get("starts_at")?)?,
        ends_at: from_millis(row.try_get("ends_at")?)?,
        timezone: timezone
            .parse()
            .map_err(|_| corrupt("time zone", &timezone))?,
        roster,
        settings: serde_json::from_str(&settings).map_err(|e| corrupt("session settings", e))?,
        created_at: from_millis(row.try_get("created_at")?)?,
        cancelled_at: row
            .try_get::<Option<i64>, _>("cancelled_at")?
            .map(from_millis)
            .transpose()?,
        ended_at: row
            .try_get::<Option<i64>, _>("ended_at")?
            .map(from_millis)
            .transpose()?,
    })
}

fn roster_entry(row: &AnyRow) -> Result<RosterEntry, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(RosterEntry {
        id: row.try_get("participant_id")?,
        name: row.try_get("name")?,
        role: role.parse().map_err(|_| corrupt("roster role", &role))?,
        household: row.try_get("household")?,
        mrn: row.try_get("mrn")?,
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")?
            .map(from_millis)
            .transpose()?,
        removed_at: row
            .try_get::<Option<i64>, _>("removed_at")?
            .map(from_millis)
            .transpose()?,
    })
}
