//! The `tandem` binary as an operator uses it: the demo, and the commands
//! for sessions, invites, API keys and configuration.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

fn tandem(dir: &Path, args: &[&str]) -> Output {
    Command::new(TANDEM)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("tandem runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let output = tandem(dir, args);
    assert!(
        output.status.success(),
        "tandem {args:?} failed: {}",
        stderr(&output)
    );
    stdout(&output)
}

/// Starts the demo and reads its output up to the "Listening" line.
fn start_demo(dir: &Path) -> (Child, Vec<String>) {
    let mut child = Command::new(TANDEM)
        .args(["demo", "--port", "0", "--data-dir", "d", "--certs-dir", "c"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let started = Instant::now();
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "demo exited early: {lines:#?}"
        );
        lines.push(line.trim_end().to_owned());
        if line.starts_with("Listening on") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "demo too slow");
    }
    (child, lines)
}

fn interrupt_and_wait(mut child: Child) {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "demo exited with {status}");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "Ctrl-C did not stop the demo"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn line_with<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.trim_start().starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in {lines:#?}"))
}

#[tokio::test]
async fn the_demo_prints_links_serves_and_reuses_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let (child, lines) = start_demo(dir.path());
    let port: u16 = line_with(&lines, "Listening on")
        .split(':')
        .nth(2)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let session = line_with(&lines, "Session:")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    for (role, name) in [
        ("clinician", "Dr Rivera"),
        ("patient", "Alex Morgan"),
        ("partner", "Sam Morgan"),
    ] {
        let line = line_with(&lines, role);
        assert!(line.contains(name), "{line}");
        assert!(
            line.contains(&format!("https://localhost:{port}/j/{session}#t=")),
            "{line}"
        );
    }
    // The weekly series, with one series link per person.
    let series = line_with(&lines, "Weekly series:")
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_owned();
    for role in ["clinician", "patient", "partner"] {
        let line = line_with(&lines, &format!("series {role}"));
        assert!(
            line.contains(&format!("https://localhost:{port}/j/{series}#t=")),
            "{line}"
        );
    }
    assert!(line_with(&lines, "Development CA:").contains("c/dev-ca.pem"));
    let key = line_with(&lines, "Admin API key:")
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_owned();
    assert!(key.starts_with("tdm_"));
    for secret in ["c/key.pem", "c/dev-ca-key.pem", "d/signing-key.pem"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(secret))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{secret}");
    }

    // The server answers over TLS with the printed CA and key.
    let ca = std::fs::read(dir.path().join("c/dev-ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let health = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let read = client
        .get(format!("https://localhost:{port}/v1/sessions/{session}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    // The client goes, and the wait runs off this test's runtime: the
    // dropped client's connection task must still run to close its
    // kept-alive connection (and answer the server's GOAWAY), or the stop
    // waits out the shutdown grace.
    drop(client);
    tokio::task::spawn_blocking(move || interrupt_and_wait(child))
        .await
        .unwrap();

    // A second run reuses the CA, the session and the key.
    let (child, again) = start_demo(dir.path());
    assert_eq!(std::fs::read(dir.path().join("c/dev-ca.pem")).unwrap(), ca);
    assert!(line_with(&again, "Development CA:").contains("reused"));
    assert!(line_with(&again, "Session:").contains(&session));
    assert!(line_with(&again, "Session:").contains("reused"));
    assert!(line_with(&again, "Admin API key:").contains(&key));
    assert!(line_with(&again, "Weekly series:").contains(&series));
    assert!(line_with(&again, "Weekly series:").contains("reused"));
    interrupt_and_wait(child);
}

#[test]
fn people_slots_and_series_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = ["--data-dir", "data"];
    for (id, role) in [("pat-1", "patient"), ("clin-1", "clinician")] {
        let out = ok(
            d,
            &[
                &["people", "put", id, "--name", "N", "--role", role],
                &["--timezone", "America/New_York"][..],
                &db[..],
            ]
            .concat(),
        );
        assert_eq!(out.trim(), format!("created person {id}"));
    }
    std::fs::write(
        d.join("avail.json"),
        r#"{"timezone": "America/New_York", "weekly": [{"day": "mon", "start": "18:00", "end": "19:00"}]}"#,
    )
    .unwrap();
    for id in ["pat-1", "clin-1"] {
        ok(
            d,
            &[
                &["people", "availability", id, "--file", "avail.json"],
                &db[..],
            ]
            .concat(),
        );
    }
    // The API's words for a bad document.
    std::fs::write(
        d.join("bad.json"),
        r#"{"timezone": "Mars/Olympus", "weekly": [{"day": "mon", "start": "19:00", "end": "18:00"}]}"#,
    )
    .unwrap();
    let bad = tandem(
        d,
        &[
            &["people", "availability", "pat-1", "--file", "bad.json"],
            &db[..],
        ]
        .concat(),
    );
    assert!(!bad.status.success());
    let text = stderr(&bad);
    assert!(
        text.contains("timezone: unknown time zone \"Mars/Olympus\""),
        "{text}"
    );
    assert!(
        text.contains("weekly[0].end: must be after start"),
        "{text}"
    );

    let monday = crate::scheduling::monday_ahead();
    let (from, to) = (
        format!("{monday}T00:00:00-05:00"),
        format!("{monday}T23:59:00-05:00"),
    );
    let slots_on_monday = || {
        ok(
            d,
            &[
                &["slots", "--people", "pat-1,clin-1", "--minutes", "60"][..],
                &["--from", &from, "--to", &to],
                &db[..],
            ]
            .concat(),
        )
    };
    let out = slots_on_monday();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with(&format!("{monday}T23:00:00Z")), "{out}");
    let missing = tandem(
        d,
        &[
            &["slots", "--people", "pat-1,par-9", "--minutes", "60"][..],
            &[
                "--from",
                "2027-01-04T00:00:00Z",
                "--to",
                "2027-01-05T00:00:00Z",
            ],
            &db[..],
        ]
        .concat(),
    );
    assert!(
        stderr(&missing).contains("no availability on file for par-9"),
        "{}",
        stderr(&missing)
    );

    std::fs::write(
        d.join("series.json"),
        serde_json::json!({"title": "IOP", "kind": "individual", "timezone": "America/New_York",
            "rrule": "FREQ=WEEKLY;COUNT=3", "first_starts_at": format!("{monday}T18:00:00"),
            "duration_minutes": 60, "clinician": {"id": "clin-1", "name": "Dr Rivera"},
            "participants": [{"id": "pat-1", "name": "Alex", "role": "patient"}]})
        .to_string(),
    )
    .unwrap();
    let out = ok(
        d,
        &[&["series", "create", "--file", "series.json"], &db[..]].concat(),
    );
    let id = out
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    assert!(out.contains("3 sessions"), "{out}");
    assert!(out.contains(&format!("/j/{id}#t=")), "{out}");
    // The same series again double-books both people: refused, named.
    let again = tandem(
        d,
        &[&["series", "create", "--file", "series.json"], &db[..]].concat(),
    );
    assert!(
        stderr(&again).contains("double-booking: clin-1 is already in session"),
        "{}",
        stderr(&again)
    );
    let shown: serde_json::Value =
        serde_json::from_str(&ok(d, &[&["series", "show", &id], &db[..]].concat())).unwrap();
    assert_eq!(shown["sessions"].as_array().unwrap().len(), 3);
    // Now there is no common slot that Monday.
    let none = slots_on_monday();
    assert_eq!(none.trim(), "no common slot in that range");
    let out = ok(d, &[&["series", "cancel", &id], &db[..]].concat());
    assert!(out.contains("cancelled"), "{out}");
}

#[test]
fn sessions_invites_and_api_keys_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = ["--data-dir", "data"];

    let key = ok(
        d,
        &[
            &["apikey", "create", "--role", "scheduler", "--label", "EHR"][..],
            &db,
        ]
        .concat(),
    );
    assert!(key.trim().starts_with("tdm_"));
    let keys = ok(d, &[&["apikey", "list"][..], &db].concat());
    assert!(keys.contains("scheduler") && keys.contains("EHR"), "{keys}");
    assert!(!keys.contains(key.trim()), "the key itself was listed");

    let created = ok(
        d,
        &[
            &[
                "sessions",
                "create",
                "--title",
                "Joint",
                "--kind",
                "couple",
                "--minutes",
                "50",
                "--timezone",
                "America/Chicago",
                "--clinician",
                "id=c1,name=Dr Ortiz",
                "--participant",
                "id=p1,name=Pat Lee,role=patient",
                "--participant",
                "id=p2,name=Kim Lee,role=partner",
            ][..],
            &db,
        ]
        .concat(),
    );
    let session = created.split_whitespace().next().unwrap().to_owned();
    assert!(session.parse::<uuid::Uuid>().is_ok(), "{created}");

    let invalid = tandem(
        d,
        &[
            &[
                "sessions",
                "create",
                "--title",
                "X",
                "--kind",
                "couple",
                "--clinician",
                "id=c1,name=Dr",
            ][..],
            &db,
        ]
        .concat(),
    );
    assert!(!invalid.status.success());
    assert!(
        stderr(&invalid).contains("participants"),
        "{}",
        stderr(&invalid)
    );

    let list = ok(d, &[&["sessions", "list"][..], &db].concat());
    assert!(
        list.contains(&session) && list.contains("scheduled"),
        "{list}"
    );

    let links = ok(d, &[&["invite", &session][..], &db].concat());
    let lines: Vec<&str> = links.lines().collect();
    assert_eq!(lines.len(), 3, "{links}");
    assert!(
        lines[0].starts_with("clinician") && lines[0].contains("Dr Ortiz"),
        "{links}"
    );
    assert!(
        lines[1].starts_with("patient") && lines[1].contains("Pat Lee"),
        "{links}"
    );
    assert!(
        lines[0].contains(&format!("https://localhost:8443/j/{session}#t=")),
        "{links}"
    );

    ok(
        d,
        &[&["sessions", "revoke", &session, "p2"][..], &db].concat(),
    );
    let links = ok(d, &[&["invite", &session][..], &db].concat());
    assert_eq!(links.lines().count(), 2, "{links}");

    ok(d, &[&["sessions", "cancel", &session][..], &db].concat());
    let list = ok(d, &[&["sessions", "list"][..], &db].concat());
    assert!(list.contains("cancelled"), "{list}");
    let refused = tandem(d, &[&["invite", &session][..], &db].concat());
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("cancelled"));
}

#[test]
fn config_check_names_every_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("bad.toml"),
        "public_url = \"http://clinic.example\"\n[sessions]\ndefault_timezone = \"Nowhere/City\"\n",
    )
    .unwrap();
    let output = tandem(d, &["config", "check", "--config", "bad.toml"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("public_url") && text.contains("sessions.default_timezone"),
        "{text}"
    );

    let certs = tandem::tls::devcert::generate(&d.join("certs"), &["localhost".into()]).unwrap();
    std::fs::write(
        d.join("good.toml"),
        format!(
            "public_url = \"https://video.clinic.example\"\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            certs.cert, certs.key
        ),
    )
    .unwrap();
    let output = tandem(d, &["config", "check", "--config", "good.toml"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("configuration OK"));
}

#[test]
fn serve_without_a_certificate_refuses_to_start_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tandem.toml"),
        "public_url = \"https://video.clinic.example\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let output = tandem(dir.path(), &["serve", "--config", "tandem.toml"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("tls.cert_file") && text.contains("tandem demo"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// The data directory and the database's files
// ---------------------------------------------------------------------------

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A configuration that serves from `dir` with development certificates,
/// media on loopback on `udp_port` (0: any).
fn serve_config(dir: &Path, udp_port: u16) {
    let certs = tandem::tls::devcert::generate(&dir.join("certs"), &["localhost".into()]).unwrap();
    std::fs::write(
        dir.join("tandem.toml"),
        format!(
            "public_url = \"https://localhost:8443\"\ndata_dir = \"data\"\n\
             [server]\nlisten = \"127.0.0.1:0\"\n\
             [tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             [media]\nbind_ip = \"127.0.0.1\"\nudp_port = {udp_port}\ntcp_port = 0\nshards = 1\n",
            certs.cert.display(),
            certs.key.display()
        ),
    )
    .unwrap();
}

/// Runs `tandem serve` until it prints that it serves (true) or exits
/// (false); stops it either way. Returns what it wrote to stderr.
fn serve_briefly(dir: &Path, extra: &[&str]) -> (bool, String) {
    let mut child = Command::new(TANDEM)
        .args(["serve", "--config", "tandem.toml"])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    let mut served = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        text.push_str(&line);
        if line.contains("Tandem is serving") {
            served = true;
            break;
        }
    }
    if served {
        interrupt_and_wait(child);
    } else {
        let _ = child.wait();
    }
    (served, text)
}

#[test]
fn the_data_directory_and_the_database_files_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        d,
        &["apikey", "create", "--role", "admin", "--data-dir", "data"],
    );
    let db = d.join("data/tandem.db");
    assert_eq!(mode(&d.join("data")), 0o700);
    assert_eq!(mode(&db), 0o600);
    // Files made before (by an older version, or a restore) are tightened.
    for suffix in ["", "-wal", "-shm"] {
        let file = d.join(format!("data/tandem.db{suffix}"));
        if !file.exists() {
            std::fs::write(&file, b"").unwrap();
        }
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
    }
    std::fs::set_permissions(
        d.join("data"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    serve_config(d, 0);
    let (served, text) = serve_briefly(d, &[]);
    assert!(served, "{text}");
    assert_eq!(mode(&d.join("data")), 0o700);
    for suffix in ["", "-wal", "-shm"] {
        let file = d.join(format!("data/tandem.db{suffix}"));
        if file.exists() {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }
}

#[test]
fn an_empty_database_file_is_refused_unless_init() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    serve_config(d, 0);
    std::fs::create_dir(d.join("data")).unwrap();
    std::fs::write(d.join("data/tandem.db"), b"").unwrap();
    let (served, text) = serve_briefly(d, &[]);
    assert!(!served, "a 0-byte database was started: {text}");
    assert!(
        text.contains("data/tandem.db") && text.contains("empty") && text.contains("--init"),
        "{text}"
    );
    // The operator commands refuse it too.
    let output = tandem(d, &["apikey", "list", "--data-dir", "data"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--init"), "{}", stderr(&output));

    let (served, text) = serve_briefly(d, &["--init"]);
    assert!(served, "{text}");
    assert!(std::fs::metadata(d.join("data/tandem.db")).unwrap().len() > 0);
    let (served, text) = serve_briefly(d, &[]);
    assert!(served, "the initialised database: {text}");
}

/// Makes `file` unwritable even for root (immutable) while it lives.
struct Unwritable<'a>(&'a Path, bool);

impl<'a> Unwritable<'a> {
    fn new(file: &'a Path) -> Unwritable<'a> {
        std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o444))
            .unwrap();
        let immutable = Command::new("chattr")
            .arg("+i")
            .arg(file)
            .status()
            .is_ok_and(|s| s.success());
        Unwritable(file, immutable)
    }

    fn unwritable(&self) -> bool {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.0)
            .is_err()
    }
}

impl Drop for Unwritable<'_> {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("chattr").arg("-i").arg(self.0).status();
        }
    }
}

#[tokio::test]
async fn a_read_only_database_names_the_file_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        d,
        &["apikey", "create", "--role", "admin", "--data-dir", "data"],
    );
    let db = d.join("data/tandem.db");
    let wal = d.join("data/tandem.db-wal");
    let shm = d.join("data/tandem.db-shm");
    // Everything into the database file, then no -wal or -shm: a database
    // as a backup restores it.
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    for file in [&wal, &shm] {
        let _ = std::fs::remove_file(file);
    }
    let guard = Unwritable::new(&db);
    if !guard.unwritable() {
        eprintln!("skipped: cannot make a file unwritable here (root without chattr)");
        return;
    }
    let output = tandem(
        d,
        &["apikey", "create", "--role", "admin", "--data-dir", "data"],
    );
    let text = stderr(&output);
    assert!(!output.status.success());
    assert!(text.contains("data/tandem.db"), "{text}");
    assert!(!wal.exists() && !shm.exists(), "left behind: {text}");
    drop(guard);
}

#[test]
fn a_media_port_in_use_fails_before_the_database_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    serve_config(d, taken.local_addr().unwrap().port());
    let (served, text) = serve_briefly(d, &[]);
    assert!(!served);
    assert!(text.contains("media.udp_port"), "{text}");
    assert!(
        !d.join("data/tandem.db").exists(),
        "the database was opened: {text}"
    );
}
