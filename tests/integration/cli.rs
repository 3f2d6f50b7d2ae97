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
    interrupt_and_wait(child);

    // A second run reuses the CA, the session and the key.
    let (child, again) = start_demo(dir.path());
    assert_eq!(std::fs::read(dir.path().join("c/dev-ca.pem")).unwrap(), ca);
    assert!(line_with(&again, "Development CA:").contains("reused"));
    assert!(line_with(&again, "Session:").contains(&session));
    assert!(line_with(&again, "Session:").contains("reused"));
    assert!(line_with(&again, "Admin API key:").contains(&key));
    interrupt_and_wait(child);
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
