//! Persistence behind one interface.
//!
//! SQLite is the default: one file, WAL so that readers never block the
//! writer, `synchronous=FULL` so that a commit is on disk when it returns
//! (the attendance ledger depends on that), foreign keys on. The schema is
//! versioned by sqlx migrations embedded in the binary, applied at open.

mod api_keys;
mod attendance;
pub mod cluster;
pub mod event;
mod files;
pub(crate) mod outbox;
pub(crate) mod people;
pub(crate) mod placement;
pub(crate) mod session;
mod sessions;
pub(crate) mod staff;
pub(crate) mod webhooks;

pub(crate) use api_keys::ApiKeyRecord;
pub(crate) use attendance::ExportRecord;
pub(crate) use sessions::Change;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the database directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cannot open the database {path} for reading and writing: {source}. Tandem needs \
         read and write access to the database file and to its directory (for its -wal \
         and -shm files)"
    )]
    NotWritable {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the database {path} is empty (0 bytes): it may have been truncated or restored \
         badly, and starting would begin a new, empty database. Restore it from a backup, \
         or, to create a new database there, start once with --init"
    )]
    Empty { path: String },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("cannot apply database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database holds a value this version cannot read: {0}")]
    Corrupt(String),
}

/// The database of one Tandem node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating when absent) the SQLite file at `path` and brings its
    /// schema up to date. A 0-byte file is refused ([`Store::open_with`]).
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, false).await
    }

    /// [`Store::open`]; with `init`, a 0-byte file becomes a new database
    /// (`--init`). The files are checked and made owner-only first
    /// (`files`).
    pub(crate) async fn open_with(path: &Path, init: bool) -> Result<Store, StoreError> {
        files::prepare(path, init)?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A connection whose transaction did not end cleanly (a failed
            // write on a full disk: SQLite rolls back by itself, sqlx's own
            // rollback then fails and it believes the transaction still
            // open) must never serve again: its next "transaction" would be
            // a savepoint inside a transaction that never commits, holding
            // the write lock (`database is locked` for everyone else),
            // acknowledging writes that are not on disk and reading a stale
            // snapshot. Closing it rolls back whatever SQLite still holds.
            .after_release(|conn, _| {
                Box::pin(async move {
                    let clean = !sqlx::Connection::is_in_transaction(conn);
                    if !clean {
                        tracing::warn!("a database connection left in a transaction is closed");
                    }
                    Ok(clean)
                })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// A trivial query: answers whether the database is usable.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms}")))
}
