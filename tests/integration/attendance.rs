//! The attendance ledger end to end (docs: ATTENDANCE.md): what the room
//! records over real signaling and real WebRTC media, what the reports make
//! of it (checked against the test's own clock, never against the server's
//! arithmetic), that tampering with the SQLite file is named by `tandem
//! attendance verify`, that a `kill -9` loses no acknowledged event and
//! closes open presence at the last heartbeat, and who may read what (every
//! export audited with the SHA-256 of the bytes received).
//!
//! Times: the test notes `Utc::now()` right after each action is
//! acknowledged (a peer's `pub` connection connected, a socket closed by the
//! server, another participant told of a change) and computes every
//! expected number from those moments with its own naive interval counting
//! ([`measure`]). Reports are compared within one second.
//!
//! The crash test runs `tandem serve` as a child process and reaches it
//! through [`TestApp::attach`]. The weekly test appends a long, already
//! finished stay to the ledger directly, chained as any other writer
//! would, because a test cannot wait half an hour for minutes to accrue.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Days, Utc, Weekday};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row, SqliteConnection};
use tandem::attendance::event::{chain_hash, EventKind, NewEvent};

use crate::helpers::peer::{PeerOptions, TestPeer};
use crate::helpers::serve::{
    self, free_port_outside_the_ephemeral_range, ServeOptions, ServeProcess, TANDEM,
};
use crate::helpers::signal_client::{type_of, SignalClient};
use crate::helpers::{couple_session, TestApp};

/// For media (ICE, DTLS) and signaling on a busy two-core machine.
const WAIT: Duration = Duration::from_secs(15);
/// The beginning of the default 42 CFR Part 2 notice.
const NOTICE_START: &str =
    "This record is protected by federal confidentiality rules (42 CFR part 2).";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn millis(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .timestamp_millis()
}

/// Sleeps until `secs` seconds after `base` (at once when already past).
async fn at(base: Instant, secs: u64) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(
        base + Duration::from_secs(secs),
    ))
    .await;
}

/// Schedules a couple session running now (started 5 minutes ago, 60
/// minutes long) with `settings`; its id and a link per participant id.
async fn schedule(app: &TestApp, settings: Value) -> (String, HashMap<String, String>) {
    let mut body = couple_session(-5, 60);
    body["settings"] = settings;
    schedule_body(app, &body).await
}

/// Schedules `body`; its id and a link per participant id.
async fn schedule_body(app: &TestApp, body: &Value) -> (String, HashMap<String, String>) {
    let session = app.create_session(body).await;
    let id = session["id"].as_str().unwrap().to_owned();
    let links = app.invite_tokens(&id).await;
    (id, links)
}

/// Joins with real media; returns once `pub` is connected. The peer then
/// sends audio (50 packets a second) as a real client does, muted or not:
/// presence ends at a connection's last sign of life, so a peer that sent
/// nothing would be seen ending early.
async fn join(app: &TestApp, links: &HashMap<String, String>, id: &str) -> TestPeer {
    let peer = TestPeer::join(app, &links[id], id, PeerOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{id} could not join: {e:#}"));
    peer.start_sending(50, 0);
    peer
}

/// Sends `leave`, waits for the server to close the socket, and returns the
/// moment it did (the peer's connections are closed afterwards).
async fn leave(peer: TestPeer) -> i64 {
    peer.leave().await.unwrap();
    peer.wait_signal_closed(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{}: not closed after leave: {e:#}", peer.id()));
    let t = now_ms();
    peer.close().await;
    t
}

/// Waits until `peer` has been told that `who` left the room.
async fn wait_told_left(peer: &TestPeer, who: &str) {
    peer.wait_for_message_where(&format!("{who} left"), WAIT, |m| {
        type_of(m) == "participant_left" && m["participant"]["id"] == who
    })
    .await
    .unwrap_or_else(|e| panic!("{}: never told that {who} left: {e:#}", peer.id()));
}

/// Waits until `peer` has been told `who`'s video state is `video`.
async fn wait_told_video(peer: &TestPeer, who: &str, video: bool) {
    peer.wait_for_message_where(&format!("{who} video {video}"), WAIT, |m| {
        type_of(m) == "media" && m["participant"] == who && m["video"] == video
    })
    .await
    .unwrap_or_else(|e| panic!("{}: never told {who}'s video is {video}: {e:#}", peer.id()));
}

/// GET with the admin key; the JSON body of a 200.
async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"))
}

async fn fetch_report(app: &TestApp, session: &str) -> Value {
    get_json(
        app,
        &format!("/v1/attendance/sessions/{session}?format=json"),
    )
    .await
}

/// The session report once nobody is still present: the room records a
/// `left` just after it closed the socket, so a report made at once may
/// still see the presence open.
async fn settled_report(app: &TestApp, session: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let report = fetch_report(app, session).await;
        let open = report["participants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["still_present"] == true);
        if !open {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "presence still open 5 s after everyone left: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn person<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["participant_id"] == id)
        .unwrap_or_else(|| panic!("{id} has no row: {report:#}"))
}

fn intervals(row: &Value) -> &Vec<Value> {
    row["intervals"].as_array().unwrap()
}

/// Milliseconds during which `keep` holds of the membership of a moment in
/// each of `sets` (half-open `[start, end)` spans). Deliberately naive and
/// independent of the server's interval arithmetic: every boundary cuts the
/// time line and each piece is tested at its start.
fn measure(sets: &[&[(i64, i64)]], keep: impl Fn(&[bool]) -> bool) -> i64 {
    let mut cuts: Vec<i64> = sets
        .iter()
        .flat_map(|s| s.iter().flat_map(|&(a, b)| [a, b]))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .filter(|w| {
            let member: Vec<bool> = sets
                .iter()
                .map(|s| s.iter().any(|&(a, b)| a <= w[0] && w[0] < b))
                .collect();
            keep(&member)
        })
        .map(|w| w[1] - w[0])
        .sum()
}

/// A report's whole seconds against the test clock's milliseconds: within
/// one second of their floor.
fn assert_secs(actual: &Value, expected_ms: i64, what: &str) {
    let actual = actual
        .as_i64()
        .unwrap_or_else(|| panic!("{what}: not a number: {actual}"));
    let expected = expected_ms.div_euclid(1000);
    assert!(
        (actual - expected).abs() <= 1,
        "{what}: the report says {actual} s, the test's clock {expected_ms} ms"
    );
    println!("{what}: report {actual} s, test clock {expected_ms} ms");
}

/// A time in a report against the test clock, within one second.
fn assert_time(actual: &Value, expected_ms: i64, what: &str) {
    let actual = millis(actual);
    let off = actual - expected_ms;
    assert!(
        off.abs() <= 1000,
        "{what}: the ledger says {actual}, the test's clock {expected_ms} ({off:+} ms)"
    );
    println!("{what}: ledger {off:+} ms from the test clock");
}

/// Checks one interval of a report: start, end (test clock), end reason,
/// modality.
fn assert_interval(
    interval: &Value,
    (start, end): (i64, i64),
    end_reason: &str,
    modality: &str,
    what: &str,
) {
    assert_eq!(interval["end_reason"], end_reason, "{what}: {interval}");
    assert_eq!(interval["modality"], modality, "{what}: {interval}");
    assert_time(&interval["start"], start, &format!("{what} start"));
    assert_time(&interval["end"], end, &format!("{what} end"));
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Runs the real `tandem` binary.
async fn tandem(args: &[&str]) -> Output {
    tokio::process::Command::new(TANDEM)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("tandem runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `tandem attendance verify --data-dir DIR`: success and stdout+stderr.
async fn cli_verify(data_dir: &Path) -> (bool, String) {
    let output = tandem(&[
        "attendance",
        "verify",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
    .await;
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    println!(
        "tandem attendance verify ({}): {}",
        data_dir.display(),
        said.trim()
    );
    (output.status.success(), said)
}

/// `tandem token issue` on `data_dir` (the server's signing key).
async fn staff_token(data_dir: &Path, role: &str, subject: &str) -> String {
    let output = tandem(&[
        "token",
        "issue",
        "--role",
        role,
        "--subject",
        subject,
        "--hours",
        "1",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
    .await;
    assert!(
        output.status.success(),
        "tandem token issue: {}",
        text(&output.stderr)
    );
    text(&output.stdout).trim().to_owned()
}

async fn open_db(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
}

/// One stored event, every column.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredEvent {
    seq: i64,
    at: i64,
    session: String,
    participant: Option<String>,
    connection: Option<String>,
    kind: String,
    reason: Option<String>,
    modality: Option<String>,
    detail: Option<String>,
    prev_hash: String,
    hash: String,
}

async fn stored_events(db: &mut SqliteConnection) -> Vec<StoredEvent> {
    sqlx::query(
        "SELECT seq, at, session_id, participant_id, connection_id, kind, reason, modality, detail, prev_hash, hash
         FROM attendance_events ORDER BY seq",
    )
    .fetch_all(db)
    .await
    .unwrap()
    .iter()
    .map(|r| StoredEvent {
        seq: r.get(0),
        at: r.get(1),
        session: r.get(2),
        participant: r.get(3),
        connection: r.get(4),
        kind: r.get(5),
        reason: r.get(6),
        modality: r.get(7),
        detail: r.get(8),
        prev_hash: r.get(9),
        hash: r.get(10),
    })
    .collect()
}

/// Copies the database file `db` (and its WAL, if one was left) into a new
/// data directory `to`.
fn copy_data_dir(db: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    let name = db.file_name().unwrap().to_str().unwrap();
    for suffix in ["", "-wal"] {
        let from = db.with_file_name(format!("{name}{suffix}"));
        if from.exists() {
            std::fs::copy(&from, to.join(format!("tandem.db{suffix}"))).unwrap();
        }
    }
    to.to_path_buf()
}

// ---------------------------------------------------------------------------
// 1. A scripted session, to the second
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_couple_session_is_reported_to_the_second() {
    let app = TestApp::spawn().await;
    let (id, links) = schedule(&app, json!({"auto_admit": true})).await;

    // The script. Each moment is noted once the server has acknowledged it.
    let clin = join(&app, &links, "clin-1").await;
    let t0 = now_ms();
    let base = Instant::now();

    at(base, 1).await;
    let pat = join(&app, &links, "pat-1").await;
    let t1 = now_ms();

    at(base, 2).await;
    let par = join(&app, &links, "par-1").await;
    let t2 = now_ms();

    // Audio-only stretch: the clinician is told of each change after the
    // room recorded it.
    at(base, 4).await;
    par.send_media_state(true, false).await.unwrap();
    wait_told_video(&clin, "par-1", false).await;
    let t4 = now_ms();
    at(base, 6).await;
    par.send_media_state(true, true).await.unwrap();
    wait_told_video(&clin, "par-1", true).await;
    let t6 = now_ms();

    // The patient leaves and comes back (a new connection, same link).
    at(base, 7).await;
    let t7 = leave(pat).await;
    at(base, 8).await;
    let pat = join(&app, &links, "pat-1").await;
    let t8 = now_ms();

    // A second device of the partner replaces the first.
    at(base, 9).await;
    let (par2, t9_replaced) = tokio::join!(join(&app, &links, "par-1"), async {
        par.wait_for_message("replaced", WAIT)
            .await
            .unwrap_or_else(|e| panic!("the first device was not replaced: {e:#}"));
        now_ms()
    });
    let t9 = now_ms();
    par.wait_signal_closed(WAIT)
        .await
        .expect("the replaced device's socket closes");
    par.close().await;

    // The clinician's connection drops (no leave), then the others leave.
    at(base, 10).await;
    clin.close().await;
    wait_told_left(&pat, "clin-1").await;
    let t10 = now_ms();
    at(base, 11).await;
    let t11 = leave(pat).await;
    at(base, 12).await;
    let t12 = leave(par2).await;
    println!(
        "script (ms after t0): pat {} left {} back {}; par {} audio-only {}..{} replaced {} second device {} left {}; clin dropped {}; pat left {}",
        t1 - t0, t7 - t0, t8 - t0, t2 - t0, t4 - t0, t6 - t0, t9_replaced - t0, t9 - t0, t12 - t0, t10 - t0, t11 - t0
    );

    let report = settled_report(&app, &id).await;
    println!("{report:#}");

    // What the script means, by the test's own clock.
    let clinician = [(t0, t10)];
    let patient = [(t1, t7), (t8, t11)];
    let partner = [(t2, t9_replaced), (t9, t12)];
    let audio_only = [(t4, t6)];
    let all = |m: &[bool]| m.iter().all(|&b| b);
    let len = |set: &[(i64, i64)]| measure(&[set], all);
    let both = |a: &[(i64, i64)], b: &[(i64, i64)]| measure(&[a, b], all);

    let session_starts = millis(&report["session"]["starts_at"]);
    let session_ends = millis(&report["session"]["ends_at"]);
    assert_eq!(report["session"]["kind"], "couple");
    assert_eq!(report["head_count"], 1);
    assert!(report["notice"].as_str().unwrap().starts_with(NOTICE_START));

    // The clinician: present from t0 to closing the page.
    let c = person(&report, "clin-1");
    assert_eq!(c["role"], "clinician");
    assert_secs(&c["present_seconds"], len(&clinician), "clin-1 present");
    assert_secs(&c["attended_seconds"], len(&clinician), "clin-1 attended");
    assert_eq!(c["audio_only_seconds"], 0);
    // Closing the socket (a close frame, as a browser closing the tab)
    // is leaving; only a connection lost without one is a disconnect.
    assert_eq!(c["disconnects"], 0, "closing the page is not a disconnect");
    let ci = intervals(c);
    assert_eq!(ci.len(), 1, "{c:#}");
    assert_interval(&ci[0], (t0, t10), "left", "audio_video", "clin-1 #1");

    // The patient: two stays (left, reconnected, left), attended only while
    // the clinician was there.
    let p = person(&report, "pat-1");
    assert_secs(&p["present_seconds"], len(&patient), "pat-1 present");
    assert_secs(
        &p["attended_seconds"],
        both(&patient, &clinician),
        "pat-1 attended",
    );
    assert_eq!(p["audio_only_seconds"], 0);
    assert_eq!(p["disconnects"], 0);
    let pi = intervals(p);
    assert_eq!(pi.len(), 2, "{p:#}");
    assert_interval(&pi[0], (t1, t7), "left", "audio_video", "pat-1 #1");
    assert_interval(&pi[1], (t8, t11), "left", "audio_video", "pat-1 #2");
    assert_ne!(pi[0]["connection"], pi[1]["connection"], "a new connection");
    assert_secs(&p["late_seconds"], t1 - session_starts, "pat-1 late");
    let late = p["late_seconds"].as_i64().unwrap();
    assert!(
        (295..=320).contains(&late),
        "late {late} s: joined ~5 min after the start"
    );
    assert_secs(
        &p["early_leave_seconds"],
        session_ends - t11,
        "pat-1 early leave",
    );
    assert_time(&p["first_join"], t1, "pat-1 first join");
    assert_time(&p["last_leave"], t11, "pat-1 last leave");

    // The partner: video off and on again (three pieces on one connection,
    // split at the changes), then a second device that replaced the first.
    let r = person(&report, "par-1");
    assert_secs(&r["present_seconds"], len(&partner), "par-1 present");
    assert_secs(
        &r["attended_seconds"],
        both(&partner, &clinician),
        "par-1 attended",
    );
    assert_secs(
        &r["audio_only_seconds"],
        len(&audio_only),
        "par-1 audio-only",
    );
    assert_secs(
        &r["attended_audio_only_seconds"],
        both(&audio_only, &clinician),
        "par-1 attended audio-only",
    );
    assert_eq!(r["disconnects"], 0);
    let ri = intervals(r);
    assert_eq!(ri.len(), 4, "{r:#}");
    assert_interval(&ri[0], (t2, t4), "media_changed", "audio_video", "par-1 #1");
    assert_interval(&ri[1], (t4, t6), "media_changed", "audio_only", "par-1 #2");
    assert_interval(
        &ri[2],
        (t6, t9_replaced),
        "replaced",
        "audio_video",
        "par-1 #3",
    );
    assert_interval(&ri[3], (t9, t12), "left", "audio_video", "par-1 #4");
    assert_eq!(ri[0]["connection"], ri[1]["connection"]);
    assert_eq!(ri[1]["connection"], ri[2]["connection"]);
    assert_ne!(
        ri[2]["connection"], ri[3]["connection"],
        "the second device"
    );

    // Couple numbers: 90847 (everyone) and 90846 (partner without patient).
    assert_secs(
        &report["conjoint_seconds"],
        measure(&[&patient, &partner, &clinician], all),
        "conjoint",
    );
    assert_secs(
        &report["partner_only_seconds"],
        measure(&[&partner, &clinician, &patient], |m| m[0] && m[1] && !m[2]),
        "partner only",
    );

    // Minutes are floored seconds, never rounded up.
    for row in report["participants"].as_array().unwrap() {
        let seconds = row["attended_seconds"].as_i64().unwrap();
        assert_eq!(
            row["attended_minutes"].as_i64().unwrap(),
            seconds / 60,
            "{row}"
        );
        assert_eq!(row["still_present"], false, "{row}");
        assert!(
            row["attended_seconds"].as_i64() <= row["present_seconds"].as_i64(),
            "{row}"
        );
    }
    assert_eq!(
        report["conjoint_minutes"].as_i64().unwrap(),
        report["conjoint_seconds"].as_i64().unwrap() / 60
    );

    // The same report as CSV, read by an RFC 4180 reader.
    let response = app
        .get(&format!("/v1/attendance/sessions/{id}?format=csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv_bytes = response.bytes().await.unwrap();
    let csv_text = std::str::from_utf8(&csv_bytes).expect("UTF-8");
    println!("--- session CSV ---\n{csv_text}--- end of CSV ---");
    assert!(!csv_text.starts_with('\u{feff}'), "no byte-order mark");
    assert!(csv_text.starts_with("session_id,"), "header first");
    assert!(
        csv_text.trim_end_matches("\r\n").split("\r\n").count() > 1
            && !csv_text.replace("\r\n", "").contains('\n'),
        "CRLF line ends"
    );
    let records: Vec<csv::StringRecord> = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(&csv_bytes[..])
        .records()
        .collect::<Result<_, _>>()
        .expect("RFC 4180");
    let header = &records[0];
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name} column in {header:?}"))
    };
    let rows: Vec<&csv::StringRecord> = records[1..]
        .iter()
        .filter(|r| !(r.len() == 1 && r[0].is_empty()))
        .collect();
    assert_eq!(rows.len(), 4, "header, 3 participants, notice: {records:?}");
    for row in &rows[..3] {
        assert_eq!(row.len(), header.len(), "{row:?}");
    }
    let ids: Vec<&str> = rows[..3]
        .iter()
        .map(|r| &r[column("participant_id")])
        .collect();
    assert_eq!(ids, ["clin-1", "pat-1", "par-1"]);
    for row in &rows[..3] {
        let json = person(&report, &row[column("participant_id")]);
        for name in [
            "attended_seconds",
            "attended_minutes",
            "present_seconds",
            "audio_only_seconds",
            "late_seconds",
            "disconnects",
        ] {
            assert_eq!(
                row[column(name)],
                json[name].to_string(),
                "{name} in {row:?}"
            );
        }
        assert_eq!(row[column("session_id")], id);
        assert_eq!(
            row[column("conjoint_seconds")],
            report["conjoint_seconds"].to_string()
        );
    }
    let notice = rows[3];
    assert_eq!(notice.len(), 1, "the notice row has one cell: {notice:?}");
    assert!(notice[0].starts_with(NOTICE_START), "{notice:?}");
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 2. Removal and clinician away
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_and_a_clinician_away_stretch_end_presence_with_their_reasons() {
    let app = TestApp::spawn().await;
    let (id, links) = schedule(
        &app,
        json!({"auto_admit": true, "clinician_grace_minutes": 0}),
    )
    .await;
    let clin = join(&app, &links, "clin-1").await;

    // The patient attests on a first connection that never starts media;
    // the real device then replaces it: no presence from the first.
    let mut attesting = SignalClient::connect(&app).await.unwrap();
    attesting
        .send_json(json!({
            "type": "join",
            "token": links["pat-1"],
            "attestation": {"state": "NY", "at_home": true, "private": true}
        }))
        .await
        .unwrap();
    attesting.recv_until("joined", WAIT).await.unwrap();
    let attested = now_ms();
    let pat = join(&app, &links, "pat-1").await;
    let t_pat = now_ms();
    attesting.recv_until("replaced", WAIT).await.unwrap();
    let par = join(&app, &links, "par-1").await;
    let t_par = now_ms();

    // The clinician turns the patient's video off (the patient may turn it
    // on again, and does): an audio-only stretch.
    tokio::time::sleep(Duration::from_secs(1)).await;
    clin.send_json(json!({
        "type": "mute", "participant": "pat-1", "kind": "video", "allow_unmute": true
    }))
    .await
    .unwrap();
    pat.wait_for_message("muted", WAIT).await.unwrap();
    let t_muted = now_ms();

    tokio::time::sleep(Duration::from_millis(500)).await;
    clin.send_json(json!({"type": "remove", "participant": "par-1"}))
        .await
        .unwrap();
    par.wait_for_message("removed", WAIT).await.unwrap();
    par.wait_signal_closed(WAIT).await.unwrap();
    let t_removed = now_ms();
    par.close().await;

    tokio::time::sleep(Duration::from_millis(500)).await;
    pat.send_media_state(true, true).await.unwrap();
    wait_told_video(&clin, "pat-1", true).await;
    let t_unmuted = now_ms();

    // The removed partner cannot come back: a denial, no presence.
    let mut again = SignalClient::connect(&app).await.unwrap();
    let denied = again.join(&links["par-1"]).await.unwrap();
    assert_eq!(denied["code"], "removed", "{denied}");

    // The clinician drops; with a grace of 0 the patient goes back to the
    // waiting room at the next tick.
    tokio::time::sleep(Duration::from_secs(1)).await;
    clin.close().await;
    wait_told_left(&pat, "clin-1").await;
    let t_gone = now_ms();
    pat.wait_for_message_where("waiting (clinician_away)", WAIT, |m| {
        type_of(m) == "waiting" && m["reason"] == "clinician_away"
    })
    .await
    .unwrap();
    let t_away = now_ms();
    println!(
        "script (ms after the patient joined): partner {} video muted {} removed {} unmuted {}; clinician gone {}; back to waiting {}",
        t_par - t_pat, t_muted - t_pat, t_removed - t_pat, t_unmuted - t_pat, t_gone - t_pat, t_away - t_pat
    );

    let report = settled_report(&app, &id).await;
    println!("{report:#}");
    let r = person(&report, "par-1");
    let ri = intervals(r);
    assert_eq!(ri.len(), 1, "{r:#}");
    assert_interval(
        &ri[0],
        (t_par, t_removed),
        "removed",
        "audio_video",
        "par-1",
    );
    assert_eq!(r["disconnects"], 0);

    let p = person(&report, "pat-1");
    let pi = intervals(p);
    assert_eq!(pi.len(), 3, "the attesting connection never joined: {p:#}");
    assert_interval(
        &pi[0],
        (t_pat, t_muted),
        "media_changed",
        "audio_video",
        "pat-1 #1",
    );
    assert_interval(
        &pi[1],
        (t_muted, t_unmuted),
        "media_changed",
        "audio_only",
        "pat-1 #2",
    );
    assert_interval(
        &pi[2],
        (t_unmuted, t_away),
        "clinician_away",
        "audio_video",
        "pat-1 #3",
    );
    assert_secs(
        &p["audio_only_seconds"],
        t_unmuted - t_muted,
        "pat-1 audio-only",
    );
    assert_eq!(p["still_present"], false, "waiting is not presence");
    assert_time(&p["last_leave"], t_away, "pat-1 last leave");
    assert_secs(&p["present_seconds"], t_away - t_pat, "pat-1 present");
    assert_secs(&p["attended_seconds"], t_gone - t_pat, "pat-1 attended");
    assert_eq!(
        p["attestation"]["state"], "NY",
        "the attestation is reported: {p:#}"
    );
    assert_eq!(p["attestation"]["at_home"], true);
    assert_eq!(p["attestation"]["private"], true);
    assert_time(&p["attestation"]["at"], attested, "attestation");

    let c = person(&report, "clin-1");
    assert_eq!(intervals(c).len(), 1);
    assert_eq!(intervals(c)[0]["end_reason"], "left");
    assert_eq!(c["disconnects"], 0);

    // Time in the waiting room adds nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = report_without_time(&fetch_report(&app, &id).await);
    assert_eq!(
        later,
        report_without_time(&report),
        "waiting added presence"
    );
    pat.close().await;
    app.stop().await;
}

/// A report without the fields that move with the clock of the request.
fn report_without_time(report: &Value) -> Value {
    let mut report = report.clone();
    let object = report.as_object_mut().unwrap();
    object.remove("generated_at");
    object.remove("status");
    report
}

// ---------------------------------------------------------------------------
// 3. Tampering
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_the_first_edited_deleted_or_swapped_event() {
    let mut app = TestApp::spawn().await;
    // Waiting room on: every step is its own event.
    let (id, links) = schedule(&app, json!({})).await;
    let mut clin = SignalClient::connect(&app).await.unwrap();
    assert_eq!(
        type_of(&clin.join(&links["clin-1"]).await.unwrap()),
        "joined"
    );
    let mut pat = SignalClient::connect(&app).await.unwrap();
    pat.send_json(json!({
        "type": "join",
        "token": links["pat-1"],
        "attestation": {"state": "NJ", "at_home": false, "private": true}
    }))
    .await
    .unwrap();
    pat.recv_until("waiting", WAIT).await.unwrap();
    clin.send_json(json!({"type": "admit", "participant": "pat-1"}))
        .await
        .unwrap();
    pat.recv_until("joined", WAIT).await.unwrap();
    let mut par = SignalClient::connect(&app).await.unwrap();
    par.send_json(json!({"type": "join", "token": links["par-1"]}))
        .await
        .unwrap();
    par.recv_until("waiting", WAIT).await.unwrap();
    clin.send_json(json!({"type": "deny", "participant": "par-1"}))
        .await
        .unwrap();
    par.recv_until("denied", WAIT).await.unwrap();
    for client in [&pat, &clin] {
        client.send_json(json!({"type": "leave"})).await.unwrap();
        client.wait_closed(WAIT).await.unwrap();
    }
    for text in ["first note", "second note"] {
        app.annotate(&id, "pat-1", text).await;
    }
    let online = get_json(&app, "/v1/attendance/verify").await;
    assert_eq!(online["status"], "ok", "{online}");
    let online_events = online["events"].as_i64().unwrap();
    assert!(
        online_events >= 8,
        "too few events to tamper with: {online}"
    );

    // Stop the server but keep its files.
    let db = app.config.database_path();
    let dir = std::mem::replace(&mut app.dir, tempfile::tempdir().unwrap());
    app.stop().await;
    println!(
        "after stop: WAL file left: {}",
        db.with_file_name("tandem.db-wal").exists()
    );
    let work = dir.path().join("copies");

    // Untouched: OK with the count and the head, the same the API gave.
    let pristine = copy_data_dir(&db, &work.join("pristine"));
    let events = {
        let mut conn = open_db(&pristine.join("tandem.db")).await;
        let events = stored_events(&mut conn).await;
        conn.close().await.unwrap();
        events
    };
    let n = events.len() as i64;
    let head = &events.last().unwrap().hash;
    assert_eq!(
        events[(online_events - 1) as usize].hash,
        online["head"],
        "the API's head is in the file"
    );
    let (ok, said) = cli_verify(&pristine).await;
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!("OK: {n} events, head {head}")),
        "{said}"
    );

    // The triggers refuse edits and deletions made through SQLite.
    {
        let mut conn = open_db(&pristine.join("tandem.db")).await;
        for statement in [
            "UPDATE attendance_events SET at = at + 1000 WHERE seq = 5",
            "DELETE FROM attendance_events WHERE seq = 5",
        ] {
            let error = sqlx::query(statement)
                .execute(&mut conn)
                .await
                .expect_err(statement);
            assert!(
                error.to_string().contains("append-only"),
                "{statement}: {error}"
            );
        }
        conn.close().await.unwrap();
    }

    // Each tampering on a fresh copy, with the triggers dropped first.
    async fn tamper(db: &Path, to: &Path, statements: &[&str]) -> PathBuf {
        let dir = copy_data_dir(db, to);
        let mut conn = open_db(&dir.join("tandem.db")).await;
        for statement in [
            "DROP TRIGGER attendance_events_no_update",
            "DROP TRIGGER attendance_events_no_delete",
        ]
        .iter()
        .chain(statements)
        {
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        conn.close().await.unwrap();
        dir
    }

    // (a) One field of event 5 edited.
    let edited = tamper(
        &db,
        &work.join("edited"),
        &["UPDATE attendance_events SET at = at + 1000 WHERE seq = 5"],
    )
    .await;
    let (ok, said) = cli_verify(&edited).await;
    assert!(!ok, "an edit must fail verify: {said}");
    assert!(said.contains("event 5 (expected 5)"), "{said}");
    assert!(said.contains("edited"), "{said}");

    // (b) Event 5 deleted: the first bad one is the missing 5.
    let deleted = tamper(
        &db,
        &work.join("deleted"),
        &["DELETE FROM attendance_events WHERE seq = 5"],
    )
    .await;
    let (ok, said) = cli_verify(&deleted).await;
    assert!(!ok, "a deletion must fail verify: {said}");
    assert!(said.contains("event 5 is missing"), "{said}");

    // (c) Events 4 and 6 swapped (everything but their numbers): 4 is named.
    let columns = "at, session_id, participant_id, role, connection_id, kind, reason, modality, detail, prev_hash, hash";
    let swap = format!(
        "UPDATE attendance_events SET ({columns}) = (SELECT {columns} FROM original o
             WHERE o.seq = CASE attendance_events.seq WHEN 4 THEN 6 ELSE 4 END)
         WHERE seq IN (4, 6)"
    );
    let swapped = tamper(
        &db,
        &work.join("swapped"),
        &[
            "CREATE TEMP TABLE original AS SELECT * FROM attendance_events WHERE seq IN (4, 6)",
            swap.as_str(),
        ],
    )
    .await;
    {
        let mut conn = open_db(&swapped.join("tandem.db")).await;
        let after = stored_events(&mut conn).await;
        conn.close().await.unwrap();
        assert_eq!(after[3].hash, events[5].hash, "swapped");
        assert_eq!(after[5].hash, events[3].hash, "swapped");
    }
    let (ok, said) = cli_verify(&swapped).await;
    assert!(!ok, "a swap must fail verify: {said}");
    assert!(said.contains("event 4 (expected 4)"), "{said}");

    // The documented limit: the last event cut off still chains, and only
    // the head kept from an earlier verify reveals it.
    let truncated = tamper(
        &db,
        &work.join("truncated"),
        &["DELETE FROM attendance_events WHERE seq = (SELECT MAX(seq) FROM attendance_events)"],
    )
    .await;
    let (ok, said) = cli_verify(&truncated).await;
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!("OK: {} events, head", n - 1)),
        "{said}"
    );
    assert!(!said.contains(head.as_str()), "a different head: {said}");
    drop(dir);
}

// ---------------------------------------------------------------------------
// 4. Crash (kill -9) and restart of the real binary
// ---------------------------------------------------------------------------

/// A `tandem serve` child process to kill and start again, on a port
/// outside the ephemeral range (so that no client socket takes it
/// meanwhile).
fn prepare_to_crash(dir: &Path, data: &Path) -> (PathBuf, TestApp) {
    let options = ServeOptions {
        shutdown_grace_secs: 1,
        log_filter: "warn",
        port: Some(free_port_outside_the_ephemeral_range()),
        ..ServeOptions::default()
    };
    serve::prepare(dir, data, &options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_loses_no_event_and_closes_presence_at_the_last_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (config, app) = prepare_to_crash(dir.path(), &data);

    let first_log = dir.path().join("serve-1.log");
    let server = ServeProcess::start(&config, &first_log, &app).await;

    let (id, links) = schedule(&app, json!({"auto_admit": true})).await;
    let clin = join(&app, &links, "clin-1").await;
    let pat = join(&app, &links, "pat-1").await;
    let joined = now_ms();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // What was acknowledged before the kill.
    let before_report = fetch_report(&app, &id).await;
    let before = get_json(&app, "/v1/attendance/verify").await;
    assert_eq!(before["status"], "ok", "{before}");
    let db_path = data.join("tandem.db");
    let (before_events, heartbeats) = {
        let mut conn = open_db(&db_path).await;
        let events = stored_events(&mut conn).await;
        let heartbeats: Vec<(String, i64)> =
            sqlx::query_as("SELECT connection_id, at FROM presence_heartbeats")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        conn.close().await.unwrap();
        (events, heartbeats)
    };
    assert_eq!(
        before_events.len() as i64,
        before["events"].as_i64().unwrap()
    );
    assert_eq!(before_events.last().unwrap().hash, before["head"]);
    let open_connections: Vec<String> = ["clin-1", "pat-1"]
        .iter()
        .map(|who| {
            let row = person(&before_report, who);
            assert_eq!(row["still_present"], true, "{row}");
            intervals(row)[0]["connection"].as_str().unwrap().to_owned()
        })
        .collect();
    for connection in &open_connections {
        assert!(
            heartbeats.iter().any(|(c, _)| c == connection),
            "no heartbeat for {connection} after 3 s: {heartbeats:?}"
        );
    }
    // Each connection's heartbeat is its own last sign of life.
    let heartbeat_of = |connection: &str| {
        heartbeats
            .iter()
            .find(|(c, _)| c == connection)
            .map(|h| h.1)
            .unwrap()
    };
    let last_heartbeat_seen = heartbeats.iter().map(|h| h.1).max().unwrap();

    let killed = now_ms();
    server.kill();
    println!(
        "killed {} ms after the joins; last heartbeat read {} ms before the kill",
        killed - joined,
        killed - last_heartbeat_seen
    );
    clin.close().await;
    pat.close().await;

    // Restart well after the kill, so restart time is told apart.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second_log = dir.path().join("serve-2.log");
    let restarted = now_ms();
    let server = ServeProcess::start(&config, &second_log, &app).await;

    let after = get_json(&app, "/v1/attendance/verify").await;
    assert_eq!(after["status"], "ok", "{after}");
    let after_events = {
        let mut conn = open_db(&db_path).await;
        let events = stored_events(&mut conn).await;
        conn.close().await.unwrap();
        events
    };
    assert_eq!(after_events.len() as i64, after["events"].as_i64().unwrap());
    assert_eq!(
        &after_events[..before_events.len()],
        &before_events[..],
        "every event acknowledged before the kill is there, unchanged"
    );
    let recovered = &after_events[before_events.len()..];
    assert_eq!(
        recovered.len(),
        2,
        "one closing per open presence: {recovered:#?}"
    );
    for event in recovered {
        assert_eq!(event.session, id);
        assert_eq!(event.kind, "left");
        assert_eq!(event.reason.as_deref(), Some("server_restart"));
        assert!(
            open_connections.contains(event.connection.as_ref().unwrap()),
            "{event:?}"
        );
        let heartbeat = heartbeat_of(event.connection.as_deref().unwrap());
        assert!(
            event.at >= heartbeat && event.at <= killed,
            "closed at {} ms before the kill, its last heartbeat read {} ms before it",
            killed - event.at,
            killed - heartbeat
        );
        assert!(
            killed - event.at <= 1500,
            "closed {} ms before the kill",
            killed - event.at
        );
        assert!(restarted - event.at >= 2500, "closed at restart time");
    }

    let report = settled_report(&app, &id).await;
    for who in ["clin-1", "pat-1"] {
        let row = person(&report, who);
        let iv = intervals(row);
        assert_eq!(iv.len(), 1, "{row:#}");
        assert_eq!(iv[0]["end_reason"], "server_restart", "{row:#}");
        let end = millis(&iv[0]["end"]);
        assert!(
            (0..=1500).contains(&(killed - end)),
            "{who}: ended {} ms before the kill",
            killed - end
        );
        assert_eq!(row["last_leave"], iv[0]["end"]);
        println!(
            "{who}: closed by the restart {} ms before the kill, {} ms before the restart",
            killed - end,
            restarted - end
        );
    }
    let log = std::fs::read_to_string(&second_log).unwrap_or_default();
    println!("second run's log:\n{log}");

    // Recovery is done once: another kill and start close nothing more.
    server.kill();
    let third_log = dir.path().join("serve-3.log");
    let server = ServeProcess::start(&config, &third_log, &app).await;
    let again = get_json(&app, "/v1/attendance/verify").await;
    assert_eq!(again, after, "no event added by a second recovery");
    drop(server);
    app.stop().await;
}

/// The mechanism of a failover to another node (issue 17), on one node:
/// the room that opens again reads from the ledger who was in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_people_who_were_in_the_room_go_back_in_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (config, app) = prepare_to_crash(dir.path(), &data);
    let server = ServeProcess::start(&config, &dir.path().join("serve-1.log"), &app).await;
    let (_id, links) = schedule(&app, json!({})).await;
    let knock = |who: &'static str| SignalClient::knock(&app, &links[who]);
    let mut clin = knock("clin-1").await;
    clin.recv_until("joined", WAIT).await.unwrap();
    let mut pat = knock("pat-1").await;
    pat.recv_until("waiting", WAIT).await.unwrap();
    let mut par = knock("par-1").await;
    par.recv_until("waiting", WAIT).await.unwrap();
    clin.send_json(json!({"type": "admit", "participant": "pat-1"}))
        .await
        .unwrap();
    pat.recv_until("joined", WAIT).await.unwrap();

    server.kill();
    let server = ServeProcess::start(&config, &dir.path().join("serve-2.log"), &app).await;
    // The patient's client is back first: nobody but a clinician is ever
    // alone in a room, so it waits...
    let mut pat = knock("pat-1").await;
    pat.recv_until("waiting", WAIT).await.unwrap();
    let mut par = knock("par-1").await;
    par.recv_until("waiting", WAIT).await.unwrap();
    // ...and is in the room as the clinician comes back, with no admit.
    let mut clin = knock("clin-1").await;
    clin.recv_until("joined", WAIT).await.unwrap();
    pat.recv_until("joined", WAIT).await.unwrap();
    // The partner, never admitted, still waits for the clinician.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lobby = clin
        .log()
        .all()
        .into_iter()
        .rfind(|m| type_of(m) == "lobby")
        .expect("the clinician sees the waiting room");
    let waiting: Vec<&str> = lobby["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert_eq!(waiting, ["par-1"], "{lobby}");
    assert!(par.log().find(|m| type_of(m) == "joined").is_none());
    drop(server);
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 5. Access and the export audit log
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_compliance_exports_and_every_export_is_audited_with_its_hash() {
    let app = TestApp::spawn().await;
    let (id, links) = schedule(&app, json!({"auto_admit": true})).await;
    let mut clin = SignalClient::connect(&app).await.unwrap();
    assert_eq!(
        type_of(&clin.join(&links["clin-1"]).await.unwrap()),
        "joined"
    );

    let data_dir = app.config.data_dir.clone();
    // The session's own clinician (a clinician may annotate only those).
    let clinician = staff_token(&data_dir, "clinician", "clin-1").await;
    let compliance = staff_token(&data_dir, "compliance", "cm-1").await;
    let from = (Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (Utc::now() + chrono::Duration::hours(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let week = week_of(
        (Utc::now() - chrono::Duration::minutes(5))
            .with_timezone(&chrono_tz::America::New_York)
            .date_naive(),
    );
    let exports = [
        (
            "session",
            format!("/v1/attendance/sessions/{id}?format=json"),
        ),
        (
            "session",
            format!("/v1/attendance/sessions/{id}?format=csv"),
        ),
        (
            "range",
            format!("/v1/attendance?from={from}&to={to}&format=json"),
        ),
        (
            "weekly",
            format!("/v1/attendance/weekly?week={week}&format=csv"),
        ),
        ("verify", "/v1/attendance/verify".to_owned()),
    ];
    let annotations = format!("/v1/attendance/sessions/{id}/annotations");
    let note = json!({"participant_id": "pat-1", "text": "left early: crisis"});
    let url = |path: &str| app.url(path);

    // Invite links are not API credentials: 401 everywhere.
    for invite in [&links["pat-1"], &links["clin-1"]] {
        let paths = exports.iter().map(|(_, p)| p.as_str());
        for path in paths.chain(["/v1/audit/exports"]) {
            let response = app
                .client
                .get(url(path))
                .bearer_auth(invite)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "invite on {path}");
        }
        let response = app
            .client
            .post(url(&annotations))
            .bearer_auth(invite)
            .json(&note)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "invite on annotations");
    }

    // A clinician's staff token annotates but does not export.
    for (_, path) in &exports {
        let response = app
            .client
            .get(url(path))
            .bearer_auth(&clinician)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "clinician on {path}");
    }
    let response = app
        .client
        .post(url(&annotations))
        .bearer_auth(&clinician)
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "clinician annotates");
    let seq = response.json::<Value>().await.unwrap()["seq"].as_i64();
    assert!(seq.is_some_and(|s| s > 0));

    // A compliance staff token exports, and neither annotates nor reads
    // the audit log.
    let mut received = Vec::new();
    for (what, path) in &exports {
        let response = app
            .client
            .get(url(path))
            .bearer_auth(&compliance)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "compliance on {path}");
        let header = response
            .headers()
            .get("x-content-sha256")
            .map(|h| h.to_str().unwrap().to_owned());
        let body = response.bytes().await.unwrap();
        let sha = sha256_hex(&body);
        if *what != "verify" {
            assert_eq!(
                header.as_deref(),
                Some(sha.as_str()),
                "X-Content-Sha256 of {path}"
            );
        }
        received.push((*what, path.clone(), body, sha));
    }
    // Refused requests produce no file and no audit entry.
    let unknown = uuid::Uuid::new_v4();
    for (path, status, field) in [
        (
            format!("/v1/attendance?from={to}&to={from}"),
            422,
            Some("to"),
        ),
        (format!("/v1/attendance?to={to}"), 422, Some("from")),
        (
            format!("/v1/attendance/sessions/{id}?format=xml"),
            422,
            Some("format"),
        ),
        (format!("/v1/attendance/sessions/{unknown}"), 404, None),
    ] {
        let response = app
            .client
            .get(url(&path))
            .bearer_auth(&compliance)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
        let error: Value = response.json().await.unwrap();
        if let Some(field) = field {
            assert_eq!(error["error"]["field"], field, "{path}: {error}");
        }
    }
    let response = app
        .client
        .get(url("/v1/audit/exports"))
        .bearer_auth(&compliance)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "compliance on the audit log");
    let response = app
        .client
        .post(url(&annotations))
        .bearer_auth(&compliance)
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "compliance annotates");

    // The audit log: exactly the successful exports, in order, each with
    // who, what, rows and the SHA-256 of the bytes received.
    let log = get_json(&app, "/v1/audit/exports").await;
    let entries = log["exports"].as_array().unwrap();
    println!("{log:#}");
    assert_eq!(entries.len(), received.len(), "{log:#}");
    for (entry, (what, path, body, sha)) in entries.iter().zip(&received) {
        assert_eq!(entry["actor"], "staff:cm-1", "{path}");
        assert_eq!(entry["what"], *what, "{path}");
        assert_eq!(entry["sha256"], sha.as_str(), "{path}: the file received");
        let rows = entry["rows"].as_i64().unwrap();
        let expected_rows = match (*what, entry["format"].as_str().unwrap()) {
            ("session", "json") => serde_json::from_slice::<Value>(body).unwrap()["participants"]
                .as_array()
                .unwrap()
                .len() as i64,
            ("range", "json") => serde_json::from_slice::<Value>(body).unwrap()["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["participants"].as_array().unwrap().len() as i64)
                .sum(),
            ("verify", _) => serde_json::from_slice::<Value>(body).unwrap()["events"]
                .as_i64()
                .unwrap(),
            // CSV: data rows, without the header, blank line and notice.
            (_, "csv") => csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(&body[..])
                .records()
                .filter(|r| r.as_ref().unwrap().len() > 1)
                .count() as i64,
            other => panic!("unexpected export {other:?}"),
        };
        assert_eq!(rows, expected_rows, "{path}: {entry}");
        let filter: Value = serde_json::from_str(entry["filter"].as_str().unwrap()).unwrap();
        match *what {
            "session" => assert_eq!(filter["session"], id.as_str()),
            "weekly" => assert_eq!(filter["week"], week.as_str()),
            "range" => assert!(filter["from"].is_string() && filter["to"].is_string()),
            _ => {}
        }
    }
    assert_eq!(entries[0]["rows"], 3, "three roster members");
    clin.send_json(json!({"type": "leave"})).await.unwrap();
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 6 and 7. Annotations; the weekly report
// ---------------------------------------------------------------------------

/// A session (`body`, with `auto_admit`) where the clinician and the patient
/// were in the room together about two seconds and then both left (the
/// partner never came): numbers that no longer move. Its id.
async fn short_attended_session(app: &TestApp, body: &Value) -> String {
    let (id, links) = schedule_body(app, body).await;
    let clin = join(app, &links, "clin-1").await;
    let pat = join(app, &links, "pat-1").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    leave(pat).await;
    leave(clin).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotation_is_an_event_that_changes_no_number() {
    let app = TestApp::spawn().await;
    let mut body = couple_session(-5, 60);
    body["settings"] = json!({"auto_admit": true});
    let id = short_attended_session(&app, &body).await;
    let before = settled_report(&app, &id).await;
    assert!(
        person(&before, "pat-1")["attended_seconds"]
            .as_i64()
            .unwrap()
            >= 1,
        "{before:#}"
    );
    let events_before = get_json(&app, "/v1/attendance/verify").await["events"]
        .as_i64()
        .unwrap();

    let response = app
        .post(&format!("/v1/attendance/sessions/{id}/annotations"))
        .json(&json!({"participant_id": "pat-1", "text": "left early: crisis"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let seq = response.json::<Value>().await.unwrap()["seq"]
        .as_i64()
        .unwrap();
    assert_eq!(
        seq,
        events_before + 1,
        "a new event at the end of the ledger"
    );
    let verified = get_json(&app, "/v1/attendance/verify").await;
    assert_eq!(verified["status"], "ok");
    assert_eq!(verified["events"], seq);

    let after = fetch_report(&app, &id).await;
    let notes = person(&after, "pat-1")["annotations"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(notes.len(), 1, "{after:#}");
    assert_eq!(notes[0]["text"], "left early: crisis");
    assert!(
        notes[0]["by"].as_str().unwrap().starts_with("api-key:"),
        "{notes:?}"
    );
    assert!(millis(&notes[0]["at"]) <= now_ms());
    for who in ["clin-1", "par-1"] {
        assert_eq!(person(&after, who)["annotations"], json!([]), "{who}");
    }

    // Everything else is the same, to the millisecond.
    let strip = |report: &Value| {
        let mut report = report_without_time(report);
        for row in report["participants"].as_array_mut().unwrap() {
            row.as_object_mut().unwrap().remove("annotations");
        }
        report
    };
    assert_eq!(strip(&after), strip(&before));

    // Bad annotations are refused and add nothing.
    for (body, status) in [
        (json!({"participant_id": "nobody", "text": "x"}), 404),
        (json!({"participant_id": "pat-1", "text": "   "}), 422),
        (
            json!({"participant_id": "pat-1", "text": "x".repeat(501)}),
            422,
        ),
    ] {
        let response = app
            .post(&format!("/v1/attendance/sessions/{id}/annotations"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{body}");
    }
    assert_eq!(get_json(&app, "/v1/attendance/verify").await["events"], seq);
    app.stop().await;
}

/// The report week (`YYYY-Www`) that holds the service date `day`, with
/// weeks starting on Sunday: a Sunday belongs to the ISO week of the Monday
/// after it.
fn week_of(day: chrono::NaiveDate) -> String {
    let day = if day.weekday() == Weekday::Sun {
        day + Days::new(1)
    } else {
        day
    };
    let week = day.iso_week();
    format!("{:04}-W{:02}", week.year(), week.week())
}

/// Appends `events` to the ledger in `db` as any other writer does (the
/// CLI, another process): in one transaction, chained after the head.
async fn append_chained(db: &Path, events: &[NewEvent]) {
    let mut conn = open_db(db).await;
    let mut tx = conn.begin().await.unwrap();
    let (mut seq, mut prev): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM attendance_events ORDER BY seq DESC LIMIT 1")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    for e in events {
        seq += 1;
        let hash = chain_hash(&prev, seq, e);
        sqlx::query(
            "INSERT INTO attendance_events (seq, at, session_id, participant_id, role, connection_id, kind, reason, modality, detail, prev_hash, hash)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        )
        .bind(seq)
        .bind(e.at)
        .bind(&e.session)
        .bind(&e.participant)
        .bind(&e.role)
        .bind(&e.connection)
        .bind(e.kind.as_str())
        .bind(&e.reason)
        .bind(&e.modality)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *tx)
        .await
        .unwrap();
        prev = hash;
    }
    tx.commit().await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_report_sums_the_sessions_attended_minutes() {
    let app = TestApp::spawn().await;
    // Two sessions scheduled for the same moment (same service date, same
    // week): one attended live for about two seconds; in the other, 30 min
    // 59.9 s of attended time, appended to the ledger directly (chained,
    // as the CLI would), because a test cannot wait half an hour.
    let mut body = couple_session(-40, 60);
    body["settings"] = json!({"auto_admit": true});
    let live = short_attended_session(&app, &body).await;
    let (recorded, _) = schedule_body(&app, &body).await;
    let live_report = settled_report(&app, &live).await;
    let starts_at = millis(&live_report["session"]["starts_at"]);
    const MINUTE: i64 = 60_000;
    let event = |offset: i64, who: &str, kind: EventKind, reason: Option<&str>| NewEvent {
        at: starts_at + offset,
        session: recorded.clone(),
        participant: Some(who.to_owned()),
        role: Some(
            if who == "clin-1" {
                "clinician"
            } else {
                "patient"
            }
            .to_owned(),
        ),
        connection: Some(format!("recorded-{who}")),
        kind,
        reason: reason.map(str::to_owned),
        modality: (kind == EventKind::Joined).then(|| "audio_video".to_owned()),
        detail: None,
    };
    // The recorded session is over (the clinician ended it at 38 min); the
    // live one is still in progress.
    let closed = NewEvent {
        participant: None,
        role: None,
        connection: None,
        ..event(
            38 * MINUTE,
            "clin-1",
            EventKind::SessionClosed,
            Some("ended_by_clinician"),
        )
    };
    append_chained(
        &app.config.database_path(),
        &[
            event(MINUTE, "clin-1", EventKind::Joined, None),
            event(MINUTE, "pat-1", EventKind::Joined, None),
            event(31 * MINUTE + 59_900, "pat-1", EventKind::Left, Some("left")),
            event(38 * MINUTE, "clin-1", EventKind::Left, Some("left")),
            closed,
        ],
    )
    .await;
    // The server's own writer chains after an outside append.
    let response = app
        .post(&format!("/v1/attendance/sessions/{recorded}/annotations"))
        .json(&json!({"participant_id": "pat-1", "text": "recorded by the test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let verified = get_json(&app, "/v1/attendance/verify").await;
    assert_eq!(verified["status"], "ok", "{verified}");

    let recorded_report = fetch_report(&app, &recorded).await;
    let live_patient = person(&live_report, "pat-1");
    let recorded_patient = person(&recorded_report, "pat-1");
    assert!(
        live_patient["attended_seconds"].as_i64().unwrap() >= 1,
        "{live_report:#}"
    );
    assert_eq!(live_patient["attended_minutes"], 0);
    assert_eq!(recorded_patient["attended_seconds"], 30 * 60 + 59);
    assert_eq!(
        recorded_patient["attended_minutes"], 30,
        "floored, never 31"
    );
    // The service date: the scheduled start's date in the session's zone.
    let service_date = live_report["session"]["service_date"].as_str().unwrap();
    assert_eq!(
        recorded_report["session"]["service_date"], service_date,
        "the same day"
    );
    let week = week_of(service_date.parse().unwrap());

    let weekly = get_json(
        &app,
        &format!("/v1/attendance/weekly?week={week}&format=json"),
    )
    .await;
    println!("{weekly:#}");
    assert_eq!(weekly["week"], week.as_str());
    assert!(
        weekly["first_date"].as_str().unwrap() <= service_date
            && service_date <= weekly["last_date"].as_str().unwrap(),
        "the sessions' service date is in the week: {weekly:#}"
    );
    let rows = weekly["patients"].as_array().unwrap();
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["participant_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["pat-1"], "patients only, not partners or clinicians");
    let row = &rows[0];
    let sum = live_patient["attended_minutes"].as_i64().unwrap()
        + recorded_patient["attended_minutes"].as_i64().unwrap();
    assert_eq!(row["minutes_total"], sum, "the sessions' attended minutes");
    assert_eq!(row["hours"], 0.5);
    assert_eq!(row["sessions_scheduled"], 2);
    assert_eq!(row["sessions_attended"], 2, "attended: one whole second");
    assert_eq!(row["days_attended"], 1, "one service date");
    let sessions = row["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    for (id, report) in [(&live, &live_report), (&recorded, &recorded_report)] {
        let patient = person(report, "pat-1");
        let entry = sessions
            .iter()
            .find(|s| s["session_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} missing from {sessions:?}"));
        assert_eq!(entry["attended_minutes"], patient["attended_minutes"]);
        assert_eq!(entry["late_seconds"], patient["late_seconds"]);
        assert_eq!(entry["attended"], true);
    }
    let flags: Vec<&str> = row["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    // Flags are for finished sessions: the recorded one (late, left before
    // the clinician ended it early, no code's minimum met), not the live one.
    assert_eq!(
        flags,
        [
            "late",
            "left_early",
            "below_weekly_minimum",
            "below_code_minimum",
            "ended_early"
        ]
    );
    let entry = |id: &str| {
        sessions
            .iter()
            .find(|s| s["session_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        entry(&live)["flags"],
        json!([]),
        "in progress: no flags yet"
    );
    assert_eq!(
        entry(&recorded)["flags"],
        json!(["late", "left_early", "below_code_minimum", "ended_early"])
    );
    assert_eq!(entry(&recorded)["minutes_short"], 22);

    // The CSV row says the same.
    let response = app
        .get(&format!("/v1/attendance/weekly?week={week}&format=csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(&body[..]);
    let header = reader.headers().unwrap().clone();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(records[0][column("participant_id")], *"pat-1");
    assert_eq!(records[0][column("minutes_total")], sum.to_string());
    assert_eq!(records[0][column("hours")], *"0.50");
    assert_eq!(records[0][column("week")], week);

    // A week that is not one: 422 naming the field.
    for bad in ["2025-W99", "2025-13", "next%20week", ""] {
        let response = app
            .get(&format!("/v1/attendance/weekly?week={bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "week={bad}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["field"], "week", "week={bad}: {error}");
    }
    let response = app.get("/v1/attendance/weekly").send().await.unwrap();
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["field"], "week", "{error}");
    app.stop().await;
}

/// ATTENDANCE.md: an event is durable before the action it records is
/// acknowledged. A `leave` is acknowledged by the server closing the socket,
/// so the `left` event must already be on disk when the close arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_is_on_disk_before_the_socket_closes() {
    let app = TestApp::spawn().await;
    let (_, links) = schedule(&app, json!({"auto_admit": true})).await;
    let mut clinician = SignalClient::connect(&app).await.unwrap();
    assert_eq!(
        clinician.join(&links["clin-1"]).await.unwrap()["type"],
        "joined"
    );
    for round in 0..5 {
        let mut patient = SignalClient::connect(&app).await.unwrap();
        assert_eq!(
            patient.join(&links["pat-1"]).await.unwrap()["type"],
            "joined"
        );
        patient.send_json(json!({"type": "leave"})).await.unwrap();
        patient.wait_closed(Duration::from_secs(5)).await.unwrap();
        let mut db = open_db(&app.config.database_path()).await;
        let lefts: i64 = sqlx::query(
            "SELECT count(*) FROM attendance_events WHERE kind = 'left' AND participant_id = 'pat-1'",
        )
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get(0);
        assert_eq!(
            lefts,
            round + 1,
            "the left event was not durable when the socket closed"
        );
    }
    app.stop().await;
}

/// A clinician's staff token annotates only sessions where that clinician
/// is on the roster: a note is permanent (it is in the hash chain), so
/// another clinician's session is refused (403) and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinician_annotates_only_their_own_sessions() {
    let app = TestApp::spawn().await;
    let (mine, _) = schedule(&app, json!({})).await;
    let mut body = couple_session(-5, 60);
    body["clinician"] = json!({"id": "clin-2", "name": "Dr Okafor"});
    let (theirs, _) = schedule_body(&app, &body).await;
    let data_dir = app.config.data_dir.clone();
    let clin_1 = staff_token(&data_dir, "clinician", "clin-1").await;
    let clin_2 = staff_token(&data_dir, "clinician", "clin-2").await;
    let events = || async { get_json(&app, "/v1/attendance/verify").await["events"].clone() };
    let annotate = |session: &str, token: &str| {
        let request = app
            .client
            .post(app.url(&format!("/v1/attendance/sessions/{session}/annotations")))
            .bearer_auth(token)
            .json(&json!({"participant_id": "pat-1", "text": "arrived upset"}));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    let before = events().await;
    for (session, token, who) in [(&mine, &clin_2, "clin-2"), (&theirs, &clin_1, "clin-1")] {
        let (status, body) = annotate(session, token).await;
        assert_eq!(status, 403, "{who} on another clinician's session: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
    }
    assert_eq!(events().await, before, "a refused note wrote nothing");

    for (session, token, who) in [
        (&mine, &clin_1, "clin-1"),
        (&theirs, &clin_2, "clin-2"),
        (&theirs, &app.admin_key, "admin"),
    ] {
        let (status, body) = annotate(session, token).await;
        assert_eq!(status, 201, "{who}: {body}");
    }
    assert_eq!(events().await, before.as_i64().unwrap() + 3);
    app.stop().await;
}
