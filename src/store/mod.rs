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
mod sign_in;
pub(crate) mod staff;
#[cfg(test)]
mod suite;
pub(crate) mod webhooks;

pub(crate) use api_keys::ApiKeyRecord;
pub(crate) use attendance::ExportRecord;
pub(crate) use sessions::Change;

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AnyPool, ConnectOptions, Connection, Executor};

pub use crate::config::Location;

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
    #[error("cannot connect to the PostgreSQL database {url} (database.url): {source}")]
    Unreachable { url: String, source: sqlx::Error },
    #[error("another writer appended to the attendance ledger first; chain the events again")]
    ChainMoved,
    #[error("this node no longer holds the room of session {session}: nothing was written for it")]
    Fenced { session: String },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("cannot apply database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database holds a value this version cannot read: {0}")]
    Corrupt(String),
}

/// Which engine a store runs on. The SQL is the same on both (`$N`
/// placeholders, `ON CONFLICT`, `RETURNING`, 64-bit integers); what
/// differs is how a writer excludes the others (SQLite: one write lock
/// per file; PostgreSQL: several nodes, so advisory locks and row locks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database of one Tandem node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// How many connections a node keeps to its database.
const MAX_CONNECTIONS: u32 = 8;

/// How long a request waits for a connection (and PostgreSQL for a
/// connection to be made) before it fails: a database that cannot be
/// reached is an error in words, not a request that hangs.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

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
        Self::connect(&Location::Sqlite(path.to_owned()), init).await
    }

    /// Opens the database at `location` (SQLite file or PostgreSQL URL)
    /// and brings its schema up to date. `init`: see [`Store::open_with`].
    pub async fn connect(location: &Location, init: bool) -> Result<Store, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (pool, backend) = match location {
            Location::Sqlite(path) => (open_sqlite(path, init).await?, Backend::Sqlite),
            Location::Postgres(url) => {
                let options: AnyConnectOptions =
                    url.parse().map_err(|source| StoreError::Unreachable {
                        url: location.to_string(),
                        source,
                    })?;
                let pool = pool_options()
                    .connect_with(options)
                    .await
                    .map_err(|source| StoreError::Unreachable {
                        url: location.to_string(),
                        source,
                    })?;
                (pool, Backend::Postgres)
            }
        };
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations-postgres").run(&pool).await?,
        }
        Ok(Store { pool, backend })
    }

    /// The engine this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
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

/// The pool's settings, the same on both engines.
fn pool_options() -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A connection whose transaction did not end cleanly (a failed
        // write on a full disk: SQLite rolls back by itself, sqlx's own
        // rollback then fails and it believes the transaction still
        // open) must never serve again: its next "transaction" would be
        // a savepoint inside a transaction that never commits, holding
        // the write lock (`database is locked` for everyone else),
        // acknowledging writes that are not on disk and reading a stale
        // snapshot. Closing it rolls back whatever the database still
        // holds.
        .after_release(|conn, _| {
            Box::pin(async move {
                let clean = !Connection::is_in_transaction(conn);
                if !clean {
                    tracing::warn!("a database connection left in a transaction is closed");
                }
                Ok(clean)
            })
        })
}

/// The SQLite file at `path`, checked (`files`), in WAL mode with
/// `synchronous=FULL` (a commit is on disk when it returns: the ledger
/// depends on it), foreign keys on and a 5 s busy timeout.
async fn open_sqlite(path: &Path, init: bool) -> Result<AnyPool, StoreError> {
    files::prepare(path, init)?;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    // The journal mode is the file's: set once, by a connection of its
    // own, before the pool's connections (which set the per-connection
    // settings below) share it.
    options.connect().await?.close().await?;
    let url = options.to_url_lossy();
    let any: AnyConnectOptions = url.as_str().parse()?;
    Ok(pool_options()
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(
                    "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                     PRAGMA busy_timeout = 5000;",
                )
                .await?;
                Ok(())
            })
        })
        .connect_with(any)
        .await?)
}

/// PostgreSQL advisory lock keys (transaction-scoped,
/// `pg_advisory_xact_lock`): one per kind of write that must not run on
/// two nodes at once. Arbitrary constants, distinct from each other.
pub(crate) mod locks {
    /// Placing sessions on calendars (no double booking).
    pub(crate) const PLACEMENT: i64 = 0x7464_6d00_0001;
    /// Appending to the attendance ledger's hash chain.
    pub(crate) const LEDGER: i64 = 0x7464_6d00_0002;
    /// Claiming webhook deliveries (the rows are locked too; the lock
    /// keeps SQLite's and PostgreSQL's paths alike).
    pub(crate) const OUTBOX: i64 = 0x7464_6d00_0003;
}

/// `$first, $first+1, …`: `count` numbered placeholders, for `IN (…)`
/// lists (the same text on both engines).
fn numbered(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms}")))
}
