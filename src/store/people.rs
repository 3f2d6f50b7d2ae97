//! People the clinic schedules (patients, partners, clinicians) and their
//! availability document, keyed by the clinic's own id (the id it uses in
//! rosters).
//!
//! The availability is kept as the validated JSON document the API takes
//! and returns: the store does not interpret it (`schedule::availability`
//! does), so the row stays portable to PostgreSQL as plain text.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_millis, to_millis, Store, StoreError};
use crate::auth::RosterRole;

/// One person as the clinic described them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Person {
    pub id: String,
    pub name: String,
    pub role: RosterRole,
    /// IANA name.
    pub timezone: String,
    pub household: Option<String>,
    pub mrn: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// Creates or replaces a person (their availability is left as it is).
    /// True when the person is new.
    pub(crate) async fn put_person(&self, person: &Person) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE people SET name = $1, role = $2, timezone = $3, household = $4, mrn = $5, updated_at = $6
             WHERE id = $7",
        )
        .bind(&person.name)
        .bind(person.role.as_str())
        .bind(&person.timezone)
        .bind(&person.household)
        .bind(&person.mrn)
        .bind(to_millis(person.updated_at))
        .bind(&person.id)
        .execute(&mut *tx)
        .await?;
        let created = updated.rows_affected() == 0;
        if created {
            sqlx::query(
                "INSERT INTO people (id, name, role, timezone, household, mrn, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&person.id)
            .bind(&person.name)
            .bind(person.role.as_str())
            .bind(&person.timezone)
            .bind(&person.household)
            .bind(&person.mrn)
            .bind(to_millis(person.created_at))
            .bind(to_millis(person.updated_at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    pub(crate) async fn person(&self, id: &str) -> Result<Option<Person>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT id, name, role, timezone, household, mrn, created_at, updated_at FROM people WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let role: String = row.try_get("role")?;
        Ok(Some(Person {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            role: role
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("person role {role}")))?,
            timezone: row.try_get("timezone")?,
            household: row.try_get("household")?,
            mrn: row.try_get("mrn")?,
            created_at: from_millis(row.try_get("created_at")?)?,
            updated_at: from_millis(row.try_get("updated_at")?)?,
        }))
    }

    /// Replaces a person's availability document. False when there is no
    /// such person.
    pub(crate) async fn set_availability(
        &self,
        id: &str,
        document: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE people SET availability = $1, updated_at = $2 WHERE id = $3")
                .bind(document)
                .bind(to_millis(at))
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The availability documents on file for `ids` (people without one,
    /// or unknown, are absent from the map).
    pub(crate) async fn availability(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, String>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT id, availability FROM people WHERE availability IS NOT NULL AND id IN ({})",
            super::numbered(1, ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("availability")?)))
            .collect()
    }
}
