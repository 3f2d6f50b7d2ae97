//! API keys: stored by hash, looked up by hash.

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{from_millis, to_millis, Store, StoreError};
use crate::auth::ApiRole;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub label: String,
    pub role: ApiRole,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Store {
    pub(crate) async fn insert_api_key(
        &self,
        record: &ApiKeyRecord,
        key_hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, label, role, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(record.id.to_string())
        .bind(&record.label)
        .bind(record.role.as_str())
        .bind(key_hash)
        .bind(to_millis(record.created_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a new `key` (just issued) with `role` and `label`; its record.
    pub(crate) async fn insert_new_api_key(
        &self,
        key: &str,
        role: ApiRole,
        label: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let record = ApiKeyRecord {
            id: Uuid::new_v4(),
            label: label.to_owned(),
            role,
            created_at: now,
            revoked_at: None,
        };
        self.insert_api_key(&record, &crate::auth::api_key::hash(key))
            .await?;
        Ok(record)
    }

    /// The active (not revoked) key with this hash.
    pub(crate) async fn active_api_key(
        &self,
        key_hash: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, label, role, created_at, revoked_at FROM api_keys
             WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| record(&r)).transpose()
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sqlx::query(
            "SELECT id, label, role, created_at, revoked_at FROM api_keys ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(record)
        .collect()
    }

    /// Revokes the key; false when no such active key exists.
    pub async fn revoke_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(to_millis(at))
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }
}

fn record(row: &sqlx::any::AnyRow) -> Result<ApiKeyRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let role: String = row.try_get("role")?;
    Ok(ApiKeyRecord {
        id: id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("api key id {id}")))?,
        label: row.try_get("label")?,
        role: role
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("api key role {role}")))?,
        created_at: from_millis(row.try_get("created_at")?)?,
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")?
            .map(from_millis)
            .transpose()?,
    })
}
