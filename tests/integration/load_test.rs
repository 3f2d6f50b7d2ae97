//! `tandem load-test` runs against a real server: a smoke run, not a
//! benchmark. It asserts only that every synthetic participant got in,
//! that packets flowed both ways, and that nothing errored; the figures
//! themselves are docs/benchmarks.md's.

use std::process::Command;

use serde_json::Value;

use crate::helpers::TestApp;

/// Runs the `tandem` binary with `args`; its JSON report.
fn load_test(args: &[&str], dir: &std::path::Path) -> Value {
    let json = dir.join(format!("report-{}.json", rand_suffix()));
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .args(["--quiet", "--json"])
        .arg(&json)
        .output()
        .expect("the tandem binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "load-test failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).expect("the JSON report"))
        .expect("the report is JSON");
    assert!(stdout.contains("errors"), "the table is printed: {stdout}");
    report
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Runs `tandem load-test` against `app` (its URL, admin key and CA) with
/// `extra` arguments, off the async runtime the server runs on.
async fn load_test_against(app: &TestApp, extra: &[&str]) -> Value {
    start_load_test(app, extra).await.unwrap()
}

/// [`load_test_against`], started: its report once it is done.
fn start_load_test(app: &TestApp, extra: &[&str]) -> tokio::task::JoinHandle<Value> {
    let mut args: Vec<String> = [
        "load-test",
        "--base",
        &app.base,
        "--api-key",
        &app.admin_key,
        "--cafile",
        &app.certs.ca_cert.to_string_lossy(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    let dir = app.dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        load_test(&args, &dir)
    })
}

/// A child process that is killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn assert_clean(report: &Value, participants: u64) {
    assert_eq!(report["participants"], participants, "{report:#}");
    assert_eq!(report["ready"], participants, "{report:#}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report:#}");
}

/// The kernel's arrival stamp of each packet precedes the moment the
/// generator's loop saw it, so every percentile of the latency on the wire
/// is within the loop's.
fn assert_wire_latency_within_the_loops(report: &Value) {
    for q in ["p50", "p99", "max"] {
        let wire = report["wire_latency_ms"][q].as_f64().unwrap();
        let seen = report["latency_ms"][q].as_f64().unwrap();
        assert!(wire > 0.0 && wire <= seen, "{q}: {report:#}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn synthetic_rooms_send_and_receive_media_through_the_server() {
    let app = TestApp::spawn().await;
    let report =
        load_test_against(&app, &["--rooms", "2", "--seconds", "2", "--warmup", "1"]).await;
    assert_clean(&report, 6);
    assert_eq!(report["mode"], "media");
    // 6 people each send 50 audio + 110 video packets a second, and each
    // packet is meant for the 2 others in its room. A smoke run on a busy
    // machine (a debug build, other tests alongside) may lose a few; what it
    // must show is media flowing both ways, not a figure.
    let sent = report["sent_pps"].as_f64().unwrap();
    let expected = report["expected_pps"].as_f64().unwrap();
    // Never more than planned; less when the machine is too busy to keep
    // the generator's pace (that is a figure, not a fault).
    assert!(sent > 0.0 && sent < 990.0, "sent {sent} packets/s");
    assert_eq!(expected, 2.0 * sent, "{report:#}");
    assert!(report["received_pps"].as_f64().unwrap() > 0.0, "{report:#}");
    assert!(
        report["loss_percent"].as_f64().unwrap() < 50.0,
        "{report:#}"
    );
    assert_wire_latency_within_the_loops(&report);
    assert!(report["join_ms"]["p50"].as_f64().unwrap() > 0.0);

    // The sessions were scheduled through the API, and cancelled once
    // everyone had left.
    let sessions: Value = app
        .get("/v1/sessions")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut scheduled: Vec<(&str, &str)> = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["title"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    scheduled.sort();
    assert_eq!(
        scheduled,
        [
            ("Load test room 0", "cancelled"),
            ("Load test room 1", "cancelled")
        ]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signaling_only_participants_join_and_stay_connected() {
    let app = TestApp::spawn().await;
    let report = load_test_against(
        &app,
        &[
            "--rooms",
            "5",
            "--seconds",
            "1",
            "--warmup",
            "0",
            "--signaling-only",
        ],
    )
    .await;
    assert_clean(&report, 15);
    assert_eq!(report["mode"], "signaling");
    assert!(report["join_rate_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(report["loss_percent"], Value::Null);
    app.stop().await;
}

/// `--rejoin`: the server is killed (kill -9) in the middle of a run and
/// started again; every participant joins again on its own, as the browser
/// client does, and the report says how many came back and how long it
/// took. (Against a cluster the same flag measures a failover:
/// bench/cluster-load.sh.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_dropped_by_a_dead_server_join_again_and_are_counted() {
    use crate::helpers::serve::{self, ServeOptions, ServeProcess};
    let dir = tempfile::tempdir().unwrap();
    let options = ServeOptions {
        port: Some(serve::free_port_outside_the_ephemeral_range()),
        ..ServeOptions::default()
    };
    let (config, app) = serve::prepare(dir.path(), &dir.path().join("data"), &options);
    let log = dir.path().join("serve.log");
    let server = ServeProcess::start(&config, &log, &app).await;
    let run = start_load_test(
        &app,
        &[
            "--rooms",
            "2",
            "--warmup",
            "0",
            "--seconds",
            "14",
            "--signaling-only",
            "--rejoin",
        ],
    );
    // Everyone is in (joins take well under this); then the server dies
    // and comes back on the same port and database.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    server.kill();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let server = ServeProcess::start(&config, &log, &app).await;
    let report = run.await.unwrap();
    assert_clean(&report, 6);
    assert_eq!(
        report["rejoins"], 6,
        "every participant came back: {report:#}"
    );
    let back = &report["rejoin_ms"];
    assert!(
        back["max"].as_f64().is_some_and(|ms| ms >= 1_000.0),
        "nobody can be back before the server is: {report:#}"
    );
    drop(server);
}

#[test]
fn the_bare_relay_carries_the_same_generator() {
    let dir = tempfile::tempdir().unwrap();
    // A free port for the relay: bind, read it, release it.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut relay = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["udp-relay", "--listen", &listen])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the relay starts"),
    );
    // It says where it relays once its socket is bound.
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(relay.0.stderr.take().unwrap()),
        &mut said,
    )
    .unwrap();
    assert!(said.contains(&listen), "{said}");
    let report = load_test(
        &[
            "load-test",
            "--relay",
            &listen,
            "--rooms",
            "2",
            "--seconds",
            "1",
            "--warmup",
            "0",
        ],
        dir.path(),
    );
    drop(relay);
    assert_clean(&report, 6);
    assert_eq!(report["mode"], "relay");
    assert!(report["received_pps"].as_f64().unwrap() > 0.0, "{report:#}");
    assert_wire_latency_within_the_loops(&report);
    assert!(
        report["loss_percent"].as_f64().unwrap() < 50.0,
        "{report:#}"
    );
}

#[test]
fn bad_plans_are_refused_with_a_clear_error() {
    // The generator's own checks are crates/loadgen's tests; this one is
    // that `tandem load-test` passes the words and the failure on.
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "load-test",
            "--rooms",
            "1",
            "--size",
            "30",
            "--api-key",
            "k",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--size must be from 2 to 20"), "{stderr}");
}
