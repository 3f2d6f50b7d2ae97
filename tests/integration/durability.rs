//! The ledger when the machine misbehaves: a full disk and a graceful stop.
//!
//! The disk is a real one: a 3 MiB tmpfs mounted for the test and filled
//! with a file until the kernel says `ENOSPC`, then freed by deleting that
//! file, exactly as an operator would. Mounting needs root; without it the
//! tests say so and pass, unless `REQUIRE_ROOT_TESTS=1` makes that a
//! failure (CI runs as root).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row, SqliteConnection};
use tandem::attendance::event::{EventKind, NewEvent};
use tandem::attendance::ledger::{verify, Ledger, Verification};
use tandem::store::Store;

// ---------------------------------------------------------------------------
// A small disk
// ---------------------------------------------------------------------------

/// A tmpfs mounted on a temporary directory; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "3m"), or `None` when this process may
    /// not mount (the test is then skipped, unless REQUIRE_ROOT_TESTS=1).
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        let problem = match output {
            Ok(o) if o.status.success() => return Some(Tmpfs { dir }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        let required = std::env::var("REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "REQUIRE_ROOT_TESTS=1 but a tmpfs cannot be mounted: {problem}"
        );
        eprintln!("SKIPPED: this test needs a real full disk (mount -t tmpfs, as root): {problem}");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // Whatever is left is smaller than a page: take it too.
        while file.write(&[0u8]).is_ok_and(|n| n == 1) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// How many events a separate connection, opened now, finds on disk.
async fn events_on_disk(db: &Path) -> i64 {
    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(db))
        .await
        .unwrap();
    let count = sqlx::query("SELECT count(*) FROM attendance_events")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    conn.close().await.unwrap();
    count
}

fn event(at: i64, connection: &str) -> NewEvent {
    NewEvent {
        at,
        session: "s-1".into(),
        participant: Some("pat-1".into()),
        role: Some("patient".into()),
        connection: Some(connection.into()),
        kind: EventKind::Waiting,
        reason: None,
        modality: None,
        detail: None,
    }
}

// ---------------------------------------------------------------------------
// 1. A full disk
// ---------------------------------------------------------------------------

/// A failed write must leave no connection of the pool inside a
/// transaction: such a connection acknowledged later "commits" that were
/// savepoints inside a transaction that never committed, held the write
/// lock (`database is locked` for every other writer, even after space was
/// freed) and read a stale snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_acknowledges_no_event_that_is_not_on_disk_and_writing_resumes() {
    let Some(disk) = Tmpfs::mount("3m") else {
        return;
    };
    let db = disk.path().join("tandem.db");
    let store = Store::open(&db).await.unwrap();
    let ledger = Ledger::start(store.clone()).await.unwrap();
    for i in 0..5 {
        ledger.append(vec![event(i, "c-0")]).await.unwrap();
    }
    let mut acknowledged = 5;
    assert_eq!(events_on_disk(&db).await, acknowledged);

    let filler = disk.fill();
    for round in 0..4 {
        let batch: Vec<NewEvent> = (0..200).map(|i| event(1000 + i, "c-1")).collect();
        let result = ledger.append(batch).await;
        assert!(
            result.is_err(),
            "round {round}: 200 events acknowledged on a full disk ({result:?}); on disk: {}",
            events_on_disk(&db).await
        );
        let heartbeat = store.heartbeat(&["c-1".into()], 1).await;
        assert!(
            heartbeat.is_err(),
            "round {round}: a heartbeat on a full disk"
        );
        assert_eq!(
            store.events_after(0, 10_000).await.unwrap().len() as i64,
            acknowledged,
            "round {round}: what the server reads is what is on disk"
        );
    }

    std::fs::remove_file(&filler).unwrap();
    for round in 0..10 {
        let started = Instant::now();
        let seq = ledger
            .append(vec![event(2000 + round, "c-2")])
            .await
            .unwrap_or_else(|e| panic!("round {round}, space freed: {e}"));
        acknowledged += 1;
        assert_eq!(seq, acknowledged, "round {round}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "round {round}: an append took {:?} (a connection stuck in a transaction?)",
            started.elapsed()
        );
        store.heartbeat(&["c-2".into()], 2).await.unwrap();
        assert_eq!(events_on_disk(&db).await, acknowledged, "round {round}");
        assert_eq!(
            store.events_after(0, 10_000).await.unwrap().len() as i64,
            acknowledged,
            "round {round}: a pooled connection reads a stale snapshot"
        );
    }
    assert!(matches!(
        verify(&store).await.unwrap(),
        Verification::Ok { events, .. } if events == acknowledged
    ));
    store.close().await;
}
