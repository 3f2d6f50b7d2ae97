//! Staff accounts, their one-time links, console sessions and the sign-in
//! audit (`migrations/0005_staff_console.sql`). Secrets (cookies, links)
//! are stored by hash only.

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{from_millis, to_millis, Store, StoreError};
use crate::console::account::{parse_roles, roles_text, StaffAccount};
use crate::console::session::{ConsoleSession, Stage};

/// What a one-time link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkPurpose {
    /// Set a password (and get the TOTP secret).
    Setup,
    /// Sign in at once (the demo's link).
    SignIn,
}

impl LinkPurpose {
    fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::Setup => "setup",
            LinkPurpose::SignIn => "signin",
        }
    }
}

/// One row of the sign-in audit.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct SignInRecord {
    pub at: DateTime<Utc>,
    pub account_id: Option<Uuid>,
    pub email: String,
    pub address: String,
    pub event: String,
}

const ACCOUNT_COLUMNS: &str = "id, email, name, roles, roster_id, password_hash, totp_secret, \
     totp_last_step, created_at, disabled_at";

impl Store {
    /// Adds an account; false when the email is taken.
    pub(crate) async fn insert_staff(&self, account: &StaffAccount) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO staff_accounts (id, email, name, roles, roster_id, password_hash, \
             totp_secret, totp_last_step, created_at, disabled_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (email) DO NOTHING",
        )
        .bind(account.id.to_string())
        .bind(&account.email)
        .bind(&account.name)
        .bind(roles_text(&account.roles))
        .bind(&account.roster_id)
        .bind(&account.password_hash)
        .bind(&account.totp_secret)
        .bind(account.totp_last_step)
        .bind(to_millis(account.created_at))
        .bind(account.disabled_at.map(to_millis))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn staff_by_email(
        &self,
        email: &str,
    ) -> Result<Option<StaffAccount>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM staff_accounts WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| account(&r))
        .transpose()
    }

    pub(crate) async fn staff_by_id(&self, id: Uuid) -> Result<Option<StaffAccount>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM staff_accounts WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| account(&r))
        .transpose()
    }

    pub(crate) async fn staff_accounts(&self) -> Result<Vec<StaffAccount>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM staff_accounts ORDER BY email"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(account)
        .collect()
    }

    /// Sets the password and the TOTP secret (set-up, or a reset's set-up).
    pub(crate) async fn set_staff_credentials(
        &self,
        id: Uuid,
        password_hash: &str,
        totp_secret: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE staff_accounts SET password_hash = $1, totp_secret = $2, totp_last_step = NULL \
             WHERE id = $3",
        )
        .bind(password_hash)
        .bind(totp_secret)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the TOTP step just used, unless a later one was (two
    /// requests racing with one code): false then.
    pub(crate) async fn use_totp_step(&self, id: Uuid, step: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE staff_accounts SET totp_last_step = $1 \
             WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $3)",
        )
        .bind(step)
        .bind(id.to_string())
        .bind(step)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Disables an account (or enables it again) and, when disabling, ends
    /// its console sessions. False when there is no such account.
    pub(crate) async fn set_staff_disabled(
        &self,
        id: Uuid,
        disabled_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE staff_accounts SET disabled_at = $1 WHERE id = $2")
            .bind(disabled_at.map(to_millis))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if let Some(at) = disabled_at {
            end_all(&mut tx, id, at).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Clears the second factor (and the password when `password` too),
    /// ends the account's sessions: the person sets them again with a new
    /// set-up link.
    pub(crate) async fn reset_staff(
        &self,
        id: Uuid,
        password: bool,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let sql = if password {
            "UPDATE staff_accounts SET totp_secret = NULL, totp_last_step = NULL, \
             password_hash = NULL WHERE id = $1"
        } else {
            "UPDATE staff_accounts SET totp_secret = NULL, totp_last_step = NULL WHERE id = $1"
        };
        sqlx::query(sql)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        end_all(&mut tx, id, at).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn insert_staff_link(
        &self,
        token_hash: &str,
        account: Uuid,
        purpose: LinkPurpose,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO staff_links (token_hash, account_id, purpose, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(account.to_string())
        .bind(purpose.as_str())
        .bind(to_millis(now))
        .bind(to_millis(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Uses a one-time link: the account it is for, when it exists, has
    /// this purpose, is unused and unexpired at `now`. Once only, also
    /// when two requests race.
    pub(crate) async fn use_staff_link(
        &self,
        token_hash: &str,
        purpose: LinkPurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<Uuid>, StoreError> {
        let row = sqlx::query(
            "UPDATE staff_links SET used_at = $1 \
             WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $4 \
             RETURNING account_id",
        )
        .bind(to_millis(now))
        .bind(token_hash)
        .bind(purpose.as_str())
        .bind(to_millis(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| uuid(&r, "account_id")).transpose()
    }

    pub(crate) async fn insert_console_session(
        &self,
        session: &ConsoleSession,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_sessions (id, token_hash, account_id, csrf_token, stage, \
             created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(session.id.to_string())
        .bind(token_hash)
        .bind(session.account_id.to_string())
        .bind(&session.csrf_token)
        .bind(session.stage.as_str())
        .bind(to_millis(session.created_at))
        .bind(to_millis(session.last_seen_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn console_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        let row = sqlx::query(
            "SELECT id, account_id, csrf_token, stage, created_at, last_seen_at, ended_at \
             FROM console_sessions WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<ConsoleSession, StoreError> {
            let stage: String = r.try_get("stage")?;
            Ok(ConsoleSession {
                id: uuid(&r, "id")?,
                account_id: uuid(&r, "account_id")?,
                csrf_token: r.try_get("csrf_token")?,
                stage: Stage::parse(&stage)
                    .ok_or_else(|| StoreError::Corrupt(format!("console stage {stage}")))?,
                created_at: from_millis(r.try_get("created_at")?)?,
                last_seen_at: from_millis(r.try_get("last_seen_at")?)?,
                ended_at: r
                    .try_get::<Option<i64>, _>("ended_at")?
                    .map(from_millis)
                    .transpose()?,
            })
        })
        .transpose()
    }

    /// Activity: the idle timeout starts again from `at`.
    pub(crate) async fn touch_console_session(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE console_sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $3",
        )
        .bind(to_millis(at))
        .bind(id.to_string())
        .bind(to_millis(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The second factor passed.
    pub(crate) async fn promote_console_session(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE console_sessions SET stage = 'signed_in', last_seen_at = $1 WHERE id = $2",
        )
        .bind(to_millis(at))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a session; false when it had already ended.
    pub(crate) async fn end_console_session(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE console_sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL",
        )
        .bind(to_millis(at))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn record_sign_in(&self, record: &SignInRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO staff_signin_audit (id, at, account_id, email, address, event) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(to_millis(record.at))
        .bind(record.account_id.map(|a| a.to_string()))
        .bind(&record.email)
        .bind(&record.address)
        .bind(&record.event)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest `limit` rows of the sign-in audit, newest first.
    pub(crate) async fn sign_in_audit(&self, limit: u32) -> Result<Vec<SignInRecord>, StoreError> {
        sqlx::query(
            "SELECT at, account_id, email, address, event FROM staff_signin_audit \
             ORDER BY at DESC, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| -> Result<SignInRecord, StoreError> {
            Ok(SignInRecord {
                at: from_millis(r.try_get("at")?)?,
                account_id: r
                    .try_get::<Option<String>, _>("account_id")?
                    .map(|a| a.parse())
                    .transpose()
                    .map_err(|_| StoreError::Corrupt("sign-in audit account id".into()))?,
                email: r.try_get("email")?,
                address: r.try_get("address")?,
                event: r.try_get("event")?,
            })
        })
        .collect()
    }
}

async fn end_all(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account: Uuid,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE console_sessions SET ended_at = $1 WHERE account_id = $2 AND ended_at IS NULL",
    )
    .bind(to_millis(at))
    .bind(account.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn uuid(row: &sqlx::any::AnyRow, column: &str) -> Result<Uuid, StoreError> {
    let raw: String = row.try_get(column)?;
    raw.parse()
        .map_err(|_| StoreError::Corrupt(format!("{column} {raw}")))
}

fn account(row: &sqlx::any::AnyRow) -> Result<StaffAccount, StoreError> {
    let roles: String = row.try_get("roles")?;
    Ok(StaffAccount {
        id: uuid(row, "id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        roles: parse_roles(&roles).map_err(StoreError::Corrupt)?,
        roster_id: row.try_get("roster_id")?,
        password_hash: row.try_get("password_hash")?,
        totp_secret: row.try_get("totp_secret")?,
        totp_last_step: row.try_get("totp_last_step")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        disabled_at: row
            .try_get::<Option<i64>, _>("disabled_at")?
            .map(from_millis)
            .transpose()?,
    })
}
