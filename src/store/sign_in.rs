//! Failed console sign-ins and lock-outs (`migrations/0010_sign_in_lockouts.sql`),
//! in the database rather than in one node's memory: with several nodes
//! behind a load balancer, each would otherwise allow its own five tries.
//!
//! A failure is a row added before anything is counted, so two nodes
//! failing the same account at once both see both failures: no count is
//! lost to a read-modify-write race, and a lock-out written twice is the
//! same lock-out. The rules themselves are [`crate::console::throttle`].

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_millis, to_millis, Store, StoreError};
use crate::console::throttle::{Locked, Subject, WINDOW};

impl Store {
    /// The lock-out in force at `now` for `email` or `address`, if any
    /// (the account's first).
    pub(crate) async fn sign_in_lockout(
        &self,
        email: &str,
        address: IpAddr,
        now: DateTime<Utc>,
    ) -> Result<Option<Locked>, StoreError> {
        for subject in [Subject::Account(email), Subject::Address(address)] {
            let until: Option<i64> = sqlx::query(
                "SELECT locked_until FROM sign_in_lockouts WHERE subject = $1 AND locked_until > $2",
            )
            .bind(subject.key())
            .bind(to_millis(now))
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
            if let Some(until) = until {
                return Ok(Some(subject.locked(from_millis(until)?)));
            }
        }
        Ok(None)
    }

    /// Counts a failed attempt at `now` against the account and the
    /// address; the lock-out it started, if any (the account's first).
    pub(crate) async fn sign_in_failed(
        &self,
        email: &str,
        address: IpAddr,
        now: DateTime<Utc>,
    ) -> Result<Option<Locked>, StoreError> {
        let since = to_millis(now - WINDOW);
        // Failures too old to count, and lock-outs that are over.
        sqlx::query("DELETE FROM sign_in_failures WHERE at <= $1")
            .bind(since)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM sign_in_lockouts WHERE locked_until <= $1")
            .bind(to_millis(now))
            .execute(&self.pool)
            .await?;
        let mut started = None;
        for subject in [Subject::Account(email), Subject::Address(address)] {
            let key = subject.key();
            sqlx::query("INSERT INTO sign_in_failures (subject, at) VALUES ($1, $2)")
                .bind(&key)
                .bind(to_millis(now))
                .execute(&self.pool)
                .await?;
            let recent: i64 =
                sqlx::query("SELECT COUNT(*) FROM sign_in_failures WHERE subject = $1 AND at > $2")
                    .bind(&key)
                    .bind(since)
                    .fetch_one(&self.pool)
                    .await?
                    .try_get(0)?;
            let Some(locked) = subject.lockout(u32::try_from(recent).unwrap_or(u32::MAX), now)
            else {
                continue;
            };
            sqlx::query(
                "INSERT INTO sign_in_lockouts (subject, locked_until) VALUES ($1, $2) \
                 ON CONFLICT (subject) DO UPDATE SET locked_until = excluded.locked_until",
            )
            .bind(&key)
            .bind(to_millis(locked.until()))
            .execute(&self.pool)
            .await?;
            // The lock-out replaces the count: after it, one starts again.
            sqlx::query("DELETE FROM sign_in_failures WHERE subject = $1")
                .bind(&key)
                .execute(&self.pool)
                .await?;
            started = started.or(Some(locked));
        }
        Ok(started)
    }

    /// Clears an account's failures and lock-out: it signed in, or an
    /// administrator reset it.
    pub(crate) async fn sign_in_cleared(&self, email: &str) -> Result<(), StoreError> {
        let key = Subject::Account(email).key();
        sqlx::query("DELETE FROM sign_in_failures WHERE subject = $1")
            .bind(&key)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM sign_in_lockouts WHERE subject = $1")
            .bind(&key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
