//! The ledger when the machine misbehaves: a full disk and a graceful stop.
//!
//! The disk is a real one: a 3 MiB tmpfs mounted for the test and filled
//! with a file until the kernel says `ENOSPC`, then freed by deleting that
//! file, exactly as an operator would. Mounting needs root; without it the
//! tests say so and pass, unless `REQUIRE_ROOT_TESTS=1` makes that a
//! failure (CI runs as root).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::helpers::peer::payload::Kind;
use crate::helpers::peer::{PeerOptions, TestPeer};
use crate::helpers::serve::{self, ServeOptions, ServeProcess, TANDEM};
use crate::helpers::signal_client::{type_of, SignalClient};
use crate::helpers::{couple_session, TestApp};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row, SqliteConnection};
use tandem::attendance::event::{EventKind, NewEvent};
use tandem::attendance::ledger::{verify, Ledger, Verification};
use tandem::store::Store;

/// For media (ICE, DTLS) and signaling on a busy two-core machine.
const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// A small disk
// ---------------------------------------------------------------------------

/// A tmpfs mounted on a temporary directory; unmounted when dropped.
pub(crate) struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "3m"), or `None` when this process may
    /// not mount (the test is then skipped, unless REQUIRE_ROOT_TESTS=1).
    pub(crate) fn mount(size: &str) -> Option<Tmpfs> {
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

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full; returns its path.
    pub(crate) fn fill(&self) -> PathBuf {
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

/// A connection held open for the whole test, as a backup or an operator's
/// `sqlite3` would be: without one, once the server had closed each of its
/// connections after their failed writes, the last to close would fold the
/// WAL into the database and delete it, handing its space back and making
/// the disk "less full" at random.
pub(crate) async fn hold_open(db: &Path) -> SqliteConnection {
    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(db))
        .await
        .unwrap();
    // A first read opens the WAL (and holds it open).
    sqlx::query("SELECT count(*) FROM attendance_events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn
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
        let heartbeat = store.heartbeat(&[("c-1".into(), 1)]).await;
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
        store.heartbeat(&[("c-2".into(), 2)]).await.unwrap();
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

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn millis(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .timestamp_millis()
}

/// GET `path` with the admin key: status and JSON body.
async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.get(path).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"));
    (status, body)
}

/// `/healthz` until it answers `status` (within 10 s); its body.
async fn health_becomes(app: &TestApp, status: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.client.get(app.url("/healthz")).send().await.unwrap();
        let got = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz still {got} {body} after 10 s (expected {status})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn row<'a>(report: &'a Value, who: &str) -> &'a Value {
    report["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["participant_id"] == who)
        .unwrap_or_else(|| panic!("{who} not in {report:#}"))
}

/// The reproduction of the hardening issue: a disk filled while a session
/// runs. Nothing that cannot be recorded is carried out (a join, a
/// `leave`), the people asking are told `unavailable`, the session running
/// keeps its media, `/healthz` says why it is unhealthy, no report is
/// served as complete, and once space is freed everything works again
/// without a restart, with the presence that ended during the outage
/// recorded at its own time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_what_it_cannot_record_keeps_media_and_recovers_by_itself() {
    let Some(disk) = Tmpfs::mount("3m") else {
        return;
    };
    let data = disk.path().join("data");
    let app = TestApp::spawn_with(|c| {
        c.data_dir = data.clone();
        c.attendance.heartbeat_secs = 1;
    })
    .await;
    let mut body = couple_session(-5, 60);
    body["settings"] = json!({"auto_admit": true});
    let session = app.create_session(&body).await;
    let id = session["id"].as_str().unwrap().to_owned();
    let links = app.invite_tokens(&id).await;
    let join = |who: &'static str| {
        let (app, token) = (&app, links[who].clone());
        async move {
            TestPeer::join(app, &token, who, PeerOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{who}: {e:#}"))
        }
    };
    let clin = join("clin-1").await;
    let pat = join("pat-1").await;
    let joined = now_ms();
    health_becomes(&app, 200).await;
    let held = hold_open(&app.config.database_path()).await;

    let filler = disk.fill();
    let filled = now_ms();
    println!("disk filled {} ms after the joins", filled - joined);
    let health = health_becomes(&app, 503).await;
    assert_eq!(health["reason"], "ledger", "{health}");

    // Nobody enters while entering cannot be recorded: told, then closed
    // (the client may try again).
    let mut par = SignalClient::connect(&app).await.unwrap();
    par.send_json(json!({"type": "join", "token": links["par-1"]}))
        .await
        .unwrap();
    let reply = par
        .recv_until_any(&["error", "joined", "waiting", "denied"], WAIT)
        .await
        .unwrap();
    assert_eq!(type_of(&reply), "error", "{reply}");
    assert_eq!(reply["code"], "unavailable", "{reply}");
    let closed = par.wait_closed(WAIT).await.unwrap();
    assert_eq!(closed.code, Some(1013), "{closed:?}");

    // The session already running keeps its media.
    clin.start_sending(50, 0);
    pat.clear_received();
    pat.wait_for_packets("clin-1", Kind::Audio, 25, WAIT)
        .await
        .expect("media flows on a full disk");

    // A removal that cannot be stored is not carried out: the clinician
    // is told, and the patient stays, media and all.
    clin.send_json(json!({"type": "remove", "participant": "pat-1"}))
        .await
        .unwrap();
    let refused = clin
        .wait_for_message_where("unavailable", WAIT, |m| {
            type_of(m) == "error" && m["code"] == "unavailable"
        })
        .await
        .unwrap();
    println!("removal refused: {refused}");
    pat.clear_received();
    pat.wait_for_packets("clin-1", Kind::Audio, 10, WAIT)
        .await
        .expect("the patient is still in the call");
    assert!(pat.signal_closed().is_none(), "the patient was removed");

    // A leave that cannot be recorded is not carried out: told, and the
    // connection stays.
    pat.leave().await.unwrap();
    let refused = pat
        .wait_for_message_where("unavailable", WAIT, |m| {
            type_of(m) == "error" && m["code"] == "unavailable"
        })
        .await
        .unwrap();
    println!("leave refused: {refused}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        pat.signal_closed().is_none(),
        "the socket closed after a refused leave"
    );

    // The patient closes the page during the outage: that happened, and
    // is recorded, at its own time, once the disk takes it.
    pat.close().await;
    let dropped = now_ms();

    // No report is served as complete meanwhile.
    for path in [
        format!("/v1/attendance/sessions/{id}?format=json"),
        "/v1/attendance/verify".to_owned(),
    ] {
        let (status, body) = get(&app, &path).await;
        assert_eq!(status, 503, "GET {path}: {body}");
        assert_eq!(body["error"]["code"], "unavailable", "GET {path}: {body}");
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    std::fs::remove_file(&filler).unwrap();
    let freed = now_ms();
    health_becomes(&app, 200).await;
    println!("healthy {} ms after space was freed", now_ms() - freed);

    // Reads are consistent again and the partner can enter.
    for _ in 0..10 {
        let (status, body) = get(&app, &format!("/v1/sessions/{id}")).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut par = SignalClient::connect(&app).await.unwrap();
    let reply = par.join(&links["par-1"]).await.unwrap();
    assert_eq!(type_of(&reply), "joined", "{reply}");

    let (status, report) = get(&app, &format!("/v1/attendance/sessions/{id}?format=json")).await;
    assert_eq!(status, 200, "{report}");
    let patient = row(&report, "pat-1");
    let intervals = patient["intervals"].as_array().unwrap();
    assert_eq!(intervals.len(), 1, "{patient:#}");
    assert!(millis(&intervals[0]["start"]) < filled, "{patient:#}");
    let end = millis(&intervals[0]["end"]);
    assert!(
        (dropped - 1500..=dropped + 1000).contains(&end) && end < freed,
        "the patient's presence ended {} ms after the drop ({} ms before space was freed)",
        end - dropped,
        freed - end
    );
    assert_eq!(intervals[0]["end_reason"], "left", "{patient:#}");
    assert_eq!(row(&report, "clin-1")["still_present"], true, "{report:#}");
    let (status, verified) = get(&app, "/v1/attendance/verify").await;
    assert_eq!(
        (status, &verified["status"]),
        (200, &json!("ok")),
        "{verified}"
    );

    par.close().await.unwrap();
    clin.close().await;
    app.stop().await;
    held.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// 2. A graceful stop of the real binary
// ---------------------------------------------------------------------------

/// A `tandem serve` child process and the [`TestApp`] that reaches it.
struct Serve {
    process: ServeProcess,
    app: TestApp,
}

impl Serve {
    /// Starts `tandem serve` with its database in `data` (2 s of shutdown
    /// grace, an INFO log) and waits until `/healthz` answers.
    async fn start(dir: &Path, data: &Path) -> Serve {
        let options = ServeOptions {
            shutdown_grace_secs: 2,
            log_filter: "info",
            port: None,
            ..ServeOptions::default()
        };
        let (config, app) = serve::prepare(dir, data, &options);
        let process = ServeProcess::start(&config, &dir.join("serve.log"), &app).await;
        Serve { process, app }
    }

    fn log_text(&self) -> String {
        self.process.log_text()
    }

    async fn sigterm(&mut self) -> ExitStatus {
        self.process.sigterm().await
    }
}

/// Every stored event: (participant, connection, kind, reason, at).
type Row5 = (Option<String>, Option<String>, String, Option<String>, i64);

async fn stored(db: &Path) -> Vec<Row5> {
    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(db))
        .await
        .unwrap();
    let rows = sqlx::query_as(
        "SELECT participant_id, connection_id, kind, reason, at FROM attendance_events ORDER BY seq",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    rows
}

/// SIGTERM with people in a session: every departure is recorded with
/// reason `server_restart` at the moment of the stop (not `network` at
/// their last frame, and not lost to a pool closed first), every client is
/// told before its socket closes, the database is closed after the ledger
/// was flushed, and the exit status is 0. Nothing is left for the next
/// start to recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_records_every_leave_before_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut serve = Serve::start(dir.path(), &data).await;
    let app = &serve.app;
    let mut body = couple_session(-5, 60);
    body["settings"] = json!({"auto_admit": true});
    let session = app.create_session(&body).await;
    let id = session["id"].as_str().unwrap().to_owned();
    let links = app.invite_tokens(&id).await;
    let clin = TestPeer::join(app, &links["clin-1"], "clin-1", PeerOptions::default())
        .await
        .unwrap();
    let pat = TestPeer::join(app, &links["pat-1"], "pat-1", PeerOptions::default())
        .await
        .unwrap();
    let mut par = SignalClient::connect(app).await.unwrap();
    par.send_json(json!({"type": "join", "token": links["par-1"],
        "attestation": {"state": "NY", "at_home": true, "private": true}}))
        .await
        .unwrap();
    par.recv_until("joined", WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let stopped = now_ms();
    let status = serve.sigterm().await;
    let log = serve.log_text();
    println!("tandem serve's log:\n{log}");
    assert!(status.success(), "exit status {status}");
    assert!(
        !log.contains("closed pool"),
        "the pool closed before a write"
    );

    for peer in [&clin, &pat] {
        let closed = peer.wait_signal_closed(WAIT).await.unwrap();
        assert_eq!(closed.code, Some(1012), "{}: {closed:?}", peer.id());
        assert!(
            peer.messages()
                .iter()
                .any(|m| type_of(m) == "error" && m["code"] == "server_restart"),
            "{}",
            peer.id()
        );
    }
    let closed = par.wait_closed(WAIT).await.unwrap();
    assert_eq!(closed.code, Some(1012), "{closed:?}");

    let events = stored(&data.join("tandem.db")).await;
    for who in ["clin-1", "pat-1", "par-1"] {
        let last = events
            .iter()
            .rev()
            .find(|e| e.0.as_deref() == Some(who))
            .unwrap_or_else(|| panic!("no event of {who}: {events:#?}"));
        assert_eq!(
            (last.2.as_str(), last.3.as_deref()),
            ("left", Some("server_restart")),
            "{who}: {last:?}"
        );
        // Presence ends at the connection's last sign of life (never after
        // the stop), and a connection live until the stop showed one
        // within the last 5 s.
        assert!(
            (stopped - 5_000..=stopped + 1_000).contains(&last.4),
            "{who}: left {} ms after the SIGTERM",
            last.4 - stopped
        );
    }
    let output = std::process::Command::new(TANDEM)
        .args(["attendance", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Nothing was left open for the next start to close.
    drop(serve);
    let mut again = Serve::start(dir.path(), &data).await;
    assert_eq!(stored(&data.join("tandem.db")).await, events);
    assert!(again.sigterm().await.success());
    clin.close().await;
    pat.close().await;
}

/// A stop that cannot record the departures (the disk is full) waits for
/// the disk as long as the grace allows, names what is lost in its log,
/// and exits with status 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_cannot_record_the_departures_exits_non_zero() {
    let Some(disk) = Tmpfs::mount("3m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = disk.path().join("data");
    let mut serve = Serve::start(dir.path(), &data).await;
    let app = &serve.app;
    let session = app.create_session(&couple_session(-5, 60)).await;
    let id = session["id"].as_str().unwrap().to_owned();
    let links = app.invite_tokens(&id).await;
    let mut clin = SignalClient::connect(app).await.unwrap();
    assert_eq!(
        type_of(&clin.join(&links["clin-1"]).await.unwrap()),
        "joined"
    );

    let held = hold_open(&data.join("tandem.db")).await;
    let _filler = disk.fill();
    let status = serve.sigterm().await;
    held.close().await.unwrap();
    let log = serve.log_text();
    println!("tandem serve's log:\n{log}");
    assert_eq!(status.code(), Some(1), "exit status {status}");
    assert!(
        log.lines().any(|l| l.contains("attendance event lost")
            && l.contains("clin-1")
            && l.contains("server_restart")),
        "the lost departure is not in the log"
    );
    assert_eq!(clin.wait_closed(WAIT).await.unwrap().code, Some(1012));
}

/// docs/security.md: no body is ever logged. Room events are logged by
/// kind and ids; an attestation's contents (state, at home, private) never
/// reach the log, however many events a session has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_events_are_logged_by_kind_and_ids_never_an_attestation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut serve = Serve::start(dir.path(), &data).await;
    let app = &serve.app;
    let mut body = couple_session(-5, 60);
    body["settings"] = json!({"auto_admit": true});
    let session = app.create_session(&body).await;
    let id = session["id"].as_str().unwrap().to_owned();
    let links = app.invite_tokens(&id).await;
    let mut clin = SignalClient::connect(app).await.unwrap();
    assert_eq!(
        type_of(&clin.join(&links["clin-1"]).await.unwrap()),
        "joined"
    );
    for who in ["pat-1", "par-1"] {
        let mut client = SignalClient::connect(app).await.unwrap();
        client
            .send_json(json!({"type": "join", "token": links[who],
                "attestation": {"state": "WY", "at_home": false, "private": true}}))
            .await
            .unwrap();
        client.recv_until("joined", WAIT).await.unwrap();
        client
            .send_json(json!({"type": "media", "audio": false, "video": true}))
            .await
            .unwrap();
        client.send_json(json!({"type": "leave"})).await.unwrap();
        client.wait_closed(WAIT).await.unwrap();
    }
    assert!(serve.sigterm().await.success());
    let log = serve.log_text();
    let room_events: Vec<&str> = log.lines().filter(|l| l.contains("room event")).collect();
    println!("{}", room_events.join("\n"));
    assert!(
        room_events.iter().any(|l| l.contains("attestation")),
        "the attestation events are not logged at all"
    );
    for secret in ["WY", "at_home", "private: "] {
        assert!(
            !log.contains(secret),
            "{secret:?} is in the log:\n{}",
            log.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
