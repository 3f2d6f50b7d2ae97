//! `GET /metrics`, read as Prometheus reads it: the exposition is parsed
//! with a Prometheus text parser, and each metric is seen to move when its
//! event happens — a real session with joins, a denial, signaling
//! messages, media forwarded between real WebRTC peers (one over ICE-TCP),
//! a failing TLS handshake, ledger appends and HTTP requests.
//!
//! The server is a `tandem serve` child process, so its figures are its
//! own and not those of the other servers this test binary runs.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::durability::{hold_open, Tmpfs};
use crate::helpers::peer::payload::Kind;
use crate::helpers::peer::{PeerOptions, TestPeer};
use crate::helpers::serve::{self, ServeOptions, ServeProcess, TANDEM};
use crate::helpers::signal_client::{type_of, SignalClient};
use crate::helpers::{couple_session, TestApp};

const WAIT: Duration = Duration::from_secs(20);

/// One scrape: each sample by its name and sorted labels.
#[derive(Debug)]
struct Scrape {
    samples: HashMap<(String, Vec<(String, String)>), f64>,
    /// The HELP text of each metric family.
    help: HashMap<String, String>,
    text: String,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let parsed = prometheus_parse::Scrape::parse(lines).expect("a valid exposition");
        let mut samples = HashMap::new();
        for sample in parsed.samples {
            let mut labels: Vec<(String, String)> = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                // A histogram's observations: its `+Inf` bucket.
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => continue,
            };
            samples.insert((sample.metric, labels), value);
        }
        Scrape {
            samples,
            help: parsed.docs,
            text,
        }
    }

    /// The sample `name{labels}`, 0 when absent (a counter not yet moved).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.samples
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// Whether any sample of `name` is exposed.
    fn has(&self, name: &str) -> bool {
        self.samples.keys().any(|(n, _)| n == name)
    }

    /// The sum of every sample of `name` whatever its labels.
    fn total(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, v)| v)
            .sum()
    }

    /// Every label value of every sample.
    fn label_values(&self) -> Vec<&str> {
        self.samples
            .keys()
            .flat_map(|(_, labels)| labels.iter().map(|(_, v)| v.as_str()))
            .collect()
    }
}

async fn scrape(app: &TestApp, key: &str) -> Scrape {
    let response = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(response.text().await.unwrap())
}

/// Scrapes until `check` holds (gauges and the shard's figures are
/// reported within a second or so), and returns that scrape.
async fn scrape_until(
    app: &TestApp,
    key: &str,
    what: &str,
    check: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let scrape = scrape(app, key).await;
        if check(&scrape) {
            return scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never showed in /metrics:\n{}",
            scrape.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A key with `role`, made with the CLI as an operator would.
fn api_key(data: &std::path::Path, role: &str) -> String {
    let output = std::process::Command::new(TANDEM)
        .args([
            "apikey",
            "create",
            "--role",
            role,
            "--label",
            "prometheus",
            "--data-dir",
        ])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_moves_when_its_event_happens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (config, app) = serve::prepare(dir.path(), &data, &ServeOptions::default());
    let key = api_key(&data, "metrics");
    let scheduler_key = api_key(&data, "scheduler");
    let server = ServeProcess::start(&config, &dir.path().join("serve.log"), &app).await;

    // Only a metrics (or admin) key reads it.
    let anonymous = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let scheduler = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&scheduler_key)
        .send()
        .await
        .unwrap();
    assert_eq!(scheduler.status(), 403);
    let metrics_key_elsewhere = app
        .client
        .get(app.url("/v1/sessions"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics_key_elsewhere.status(), 403);
    let admin = app.get("/metrics").send().await.unwrap();
    assert_eq!(admin.status(), 200);

    let before = scrape(&app, &key).await;

    // A session: the clinician, then the patient, publish; the partner
    // receives over ICE-TCP.
    let mut body = couple_session(-5, 60);
    body["settings"] = json!({"auto_admit": true});
    let session = app.create_session(&body).await;
    let id = session["id"].as_str().unwrap().to_owned();
    let links = app.invite_tokens(&id).await;
    let clin = TestPeer::join(&app, &links["clin-1"], "clin-1", PeerOptions::default())
        .await
        .unwrap();
    let pat = TestPeer::join(&app, &links["pat-1"], "pat-1", PeerOptions::default())
        .await
        .unwrap();
    let par = TestPeer::join(
        &app,
        &links["par-1"],
        "par-1",
        PeerOptions::default().tcp_only().receive_only(),
    )
    .await
    .unwrap();
    clin.start_sending(50, 30);
    pat.start_sending(50, 30);
    pat.wait_for_packets("clin-1", Kind::Video, 20, WAIT)
        .await
        .unwrap();
    pat.wait_for_packets("clin-1", Kind::Audio, 20, WAIT)
        .await
        .unwrap();
    par.wait_for_packets("clin-1", Kind::Video, 20, WAIT)
        .await
        .unwrap();

    // Someone waiting: a second session has no clinician in yet.
    let waiting_session = app.create_session(&couple_session(-5, 60)).await;
    let waiting_links = app
        .invite_tokens(waiting_session["id"].as_str().unwrap())
        .await;
    let mut waiting = SignalClient::connect(&app).await.unwrap();
    waiting
        .send_json(json!({"type": "join", "token": waiting_links["pat-1"]}))
        .await
        .unwrap();
    waiting.recv_until("waiting", WAIT).await.unwrap();

    // A denial: a link that was never issued.
    let mut stranger = SignalClient::connect(&app).await.unwrap();
    let reply = stranger.join("not-a-token").await.unwrap();
    assert_eq!(type_of(&reply), "denied", "{reply}");
    let code = reply["code"].as_str().unwrap().to_owned();

    // A TLS handshake that fails: a client that does not trust the
    // server's certificate aborts it.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", app.https_addr)
        .build()
        .unwrap();
    assert!(untrusting.get(app.url("/healthz")).send().await.is_err());

    // An unknown path.
    let missing = app.get(&format!("/v1/nothing/{id}")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    let during = scrape_until(&app, &key, "the live session and its media", |s| {
        s.get("tandem_sessions_live", &[]) >= 2.0
            && s.get("tandem_participants", &[("state", "in_room")]) >= 3.0
            && s.get("tandem_participants", &[("state", "waiting")]) >= 1.0
            && s.get("tandem_connections_open", &[("kind", "ice_tcp")]) >= 1.0
            && s.total("tandem_shard_busy_ratio") > 0.0
    })
    .await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        let (was, is) = (before.get(name, labels), during.get(name, labels));
        assert!(
            is > was,
            "{name}{labels:?} did not move: {was} → {is}\n{}",
            during.text
        );
    };
    moved("tandem_joins_total", &[]);
    assert!(during.get("tandem_joins_total", &[]) >= 4.0);
    moved("tandem_join_denials_total", &[("code", &code)]);
    for kind in ["join", "offer", "candidate"] {
        moved("tandem_signal_messages_received_total", &[("type", kind)]);
    }
    for kind in ["audio", "video"] {
        moved("tandem_forwarded_packets_total", &[("kind", kind)]);
        moved("tandem_forwarded_bytes_total", &[("kind", kind)]);
    }
    assert!(
        during.get("tandem_forwarded_bytes_total", &[("kind", "video")])
            > during.get("tandem_forwarded_packets_total", &[("kind", "video")])
    );
    moved(
        "tandem_tls_handshake_failures_total",
        &[("reason", "error")],
    );
    assert!(during.get("tandem_connections_open", &[("kind", "websocket")]) >= 4.0);
    assert!(during.get("tandem_connections_open", &[("kind", "https")]) >= 1.0);
    moved("tandem_ledger_append_duration_seconds", &[]);
    moved("tandem_ledger_batch_events", &[]);
    moved(
        "tandem_http_requests_total",
        &[
            ("route", "/v1/sessions"),
            ("method", "POST"),
            ("status", "201"),
        ],
    );
    // The route template, never the session's id (the parser does not
    // read braces in a label value, so the text is looked at).
    assert!(during.text.contains(
        r#"tandem_http_requests_total{route="/v1/sessions/{id}/invites",method="POST",status="200"}"#
    ));
    moved(
        "tandem_http_requests_total",
        &[("route", "unmatched"), ("method", "GET"), ("status", "404")],
    );
    moved(
        "tandem_http_request_duration_seconds",
        &[("route", "/v1/sessions"), ("method", "POST")],
    );
    let queues = during.total("tandem_shard_queue_depth");
    assert!(queues >= 0.0);
    assert!(during
        .text
        .contains("tandem_shard_queue_depth{shard=\"0\"}"));
    assert!(during.has("tandem_process_cpu_seconds_total"));
    for name in [
        "tandem_process_resident_memory_bytes",
        "tandem_process_open_fds",
    ] {
        assert!(during.get(name, &[]) > 0.0, "{name}\n{}", during.text);
    }
    // Every family says what it is.
    for name in [
        "tandem_sessions_live",
        "tandem_participants",
        "tandem_joins_total",
        "tandem_forwarded_packets_total",
        "tandem_ledger_append_duration_seconds",
        "tandem_http_requests_total",
    ] {
        assert!(
            during.help.get(name).is_some_and(|h| !h.is_empty()),
            "no HELP for {name}"
        );
    }
    // No label carries an id, a name or a token.
    for value in during.label_values() {
        assert!(
            !value.contains(&id) && !links.values().any(|t| value.contains(t.as_str())),
            "a label carries an id or a token: {value}"
        );
        for person in ["clin-1", "pat-1", "par-1", "Dr", "Alex"] {
            assert!(!value.contains(person), "a label names someone: {value}");
        }
    }

    // Everyone leaves: the gauges come back down.
    drop(waiting);
    drop(stranger);
    clin.close().await;
    pat.close().await;
    par.close().await;
    let after = scrape_until(&app, &key, "the rooms emptied", |s| {
        s.get("tandem_participants", &[("state", "in_room")]) == 0.0
            && s.get("tandem_participants", &[("state", "waiting")]) == 0.0
            && s.get("tandem_connections_open", &[("kind", "ice_tcp")]) == 0.0
    })
    .await;
    assert!(after.get("tandem_connections_open", &[("kind", "websocket")]) == 0.0);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_the_disk_refuses_is_counted() {
    let Some(disk) = Tmpfs::mount("3m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = disk.path().join("data");
    let (config, app) = serve::prepare(dir.path(), &data, &ServeOptions::default());
    let key = api_key(&data, "metrics");
    let _server = ServeProcess::start(&config, &dir.path().join("serve.log"), &app).await;
    let mut body = couple_session(-5, 60);
    body["settings"] = json!({"auto_admit": true});
    let session = app.create_session(&body).await;
    let links = app.invite_tokens(session["id"].as_str().unwrap()).await;
    let mut clin = SignalClient::connect(&app).await.unwrap();
    let reply = clin.join(&links["clin-1"]).await.unwrap();
    assert_eq!(type_of(&reply), "joined", "{reply}");
    let before = scrape(&app, &key).await;
    assert_eq!(before.get("tandem_ledger_append_failures_total", &[]), 0.0);
    let _held = hold_open(&data.join("tandem.db")).await;
    let _filler = disk.fill();

    // Entering cannot be recorded: refused, and counted.
    let mut pat = SignalClient::connect(&app).await.unwrap();
    pat.send_json(json!({"type": "join", "token": links["pat-1"]}))
        .await
        .unwrap();
    let reply = pat
        .recv_until_any(&["error", "joined", "waiting", "denied"], WAIT)
        .await
        .unwrap();
    assert_eq!(reply["code"], "unavailable", "{reply}");
    scrape_until(&app, &key, "a ledger failure", |s| {
        s.get("tandem_ledger_append_failures_total", &[]) >= 1.0
    })
    .await;
}
