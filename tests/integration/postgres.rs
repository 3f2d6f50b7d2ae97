//! A real `tandem serve` on PostgreSQL (`database.url`): a joint session
//! with admission whose ledger verifies, and a PostgreSQL restart in the
//! middle of a session. The store's own behaviours run on both engines in
//! the store's suite (src/store/suite.rs); here is what only the whole
//! server shows. Skipped with a notice without PostgreSQL, unless
//! `REQUIRE_POSTGRES=1` (helpers/postgres.rs).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::peer::{Kind, PeerOptions, TestPeer};
use crate::helpers::postgres;
use crate::helpers::serve::{self, ServeOptions, ServeProcess};
use crate::helpers::signal_client::{type_of, SignalClient};
use crate::helpers::{couple_session, TestApp};

const WAIT: Duration = Duration::from_secs(10);

/// A `tandem serve` on a new PostgreSQL database; `None` when skipped.
async fn serve_on_postgres(test: &str, dir: &std::path::Path) -> Option<(TestApp, ServeProcess)> {
    let url = postgres::database(test).await?;
    let options = ServeOptions {
        database_url: Some(url),
        ..ServeOptions::default()
    };
    let (config, app) = serve::prepare(dir, &dir.join("data"), &options);
    let server = ServeProcess::start(&config, &dir.join("serve.log"), &app).await;
    Some((app, server))
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joint_session_on_postgres_admits_and_its_ledger_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let Some((app, mut server)) = serve_on_postgres(
        "a_joint_session_on_postgres_admits_and_its_ledger_verifies",
        dir.path(),
    )
    .await
    else {
        return;
    };
    let session = app.create_session(&couple_session(-5, 60)).await;
    let id = session["id"].as_str().unwrap().to_owned();
    let links = app.invite_tokens(&id).await;

    let mut clinician = SignalClient::connect(&app).await.unwrap();
    assert_eq!(
        type_of(&clinician.join(&links["clin-1"]).await.unwrap()),
        "joined"
    );
    let mut patient = SignalClient::connect(&app).await.unwrap();
    patient
        .send_json(json!({"type": "join", "token": links["pat-1"]}))
        .await
        .unwrap();
    let knock = patient
        .recv_until_any(&["joined", "waiting", "denied"], WAIT)
        .await
        .unwrap();
    assert_eq!(type_of(&knock), "waiting", "{knock}");
    clinician
        .send_json(json!({"type": "admit", "participant": "pat-1"}))
        .await
        .unwrap();
    patient.recv_until("joined", WAIT).await.unwrap();
    clinician
        .recv_until("participant_joined", WAIT)
        .await
        .unwrap();
    patient.send_json(json!({"type": "leave"})).await.unwrap();
    clinician
        .recv_until("participant_left", WAIT)
        .await
        .unwrap();

    let verify = get_json(&app, "/v1/attendance/verify").await;
    assert_eq!(verify["status"], "ok", "{verify}");
    assert!(verify["events"].as_i64().unwrap() >= 4, "{verify}");
    let events = get_json(&app, &format!("/v1/sessions/{id}/attendance/events")).await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    for kind in ["waiting", "admitted"] {
        assert!(
            kinds.is_empty() || kinds.contains(&kind),
            "{kind} recorded: {events}"
        );
    }
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    drop(clinician);
    assert!(server.sigterm().await.success(), "{}", server.log_text());
}

/// PostgreSQL goes away in the middle of a session and comes back: the
/// room's media never stops, `/healthz` says what is wrong while it lasts,
/// someone who arrives meanwhile is told in words to try again (nothing
/// that cannot be recorded happens), and afterwards writes resume with
/// everything acknowledged before still there and chained. The test has a
/// PostgreSQL of its own: the run's shared one serves other tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_keeps_the_room_says_so_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let test = "a_postgres_outage_keeps_the_room_says_so_and_loses_nothing_acknowledged";
    let Some(postgres) = postgres::OwnCluster::start(test).await else {
        return;
    };
    let options = ServeOptions {
        database_url: Some(postgres.database_url.clone()),
        ..ServeOptions::default()
    };
    let (config, app) = serve::prepare(dir.path(), &dir.path().join("data"), &options);
    let server = ServeProcess::start(&config, &dir.path().join("serve.log"), &app).await;
    let mut body = couple_session(-5, 60);
    body["settings"] = json!({"auto_admit": true});
    let session = app.create_session(&body).await;
    let id = session["id"].as_str().unwrap().to_owned();
    let links = app.invite_tokens(&id).await;
    let join = |who: &'static str| {
        let (app, token) = (&app, links[who].clone());
        async move {
            let peer = TestPeer::join(app, &token, who, PeerOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{who} could not join: {e:#}"));
            peer.start_sending(50, 0);
            peer
        }
    };
    let clinician = join("clin-1").await;
    let patient = join("pat-1").await;
    patient
        .wait_for_packets("clin-1", Kind::Audio, 50, WAIT)
        .await
        .unwrap();
    let before = get_json(&app, "/v1/attendance/verify").await;
    assert_eq!(before["status"], "ok", "{before}");

    // PostgreSQL stops, as in a restart: every connection of the pool is
    // cut. While it is away (a few seconds: what the room's lease rides
    // out, docs/deployment.md), three things at once: /healthz says what
    // is wrong, the partner who arrives now is told in words to try again
    // (the link cannot be checked, so nothing is decided), and the room's
    // media flows.
    postgres.stop().unwrap();
    let outage = Instant::now();
    patient.clear_received();
    let health = async {
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        let status = health.status();
        (status, health.json::<Value>().await.unwrap())
    };
    let arrival = async {
        let mut partner = SignalClient::connect(&app).await.unwrap();
        partner
            .send_json(json!({"type": "join", "token": links["par-1"]}))
            .await
            .unwrap();
        partner
            .recv_until_any(&["error", "denied", "joined", "waiting"], WAIT)
            .await
            .unwrap()
    };
    let media = patient.wait_for_packets("clin-1", Kind::Audio, 25, WAIT);
    let ((status, body), refusal, media) = tokio::join!(health, arrival, media);
    assert_eq!(status, 503, "/healthz while PostgreSQL is down: {body}");
    assert_eq!(body["reason"], "database", "{body}");
    assert_eq!(type_of(&refusal), "error", "{refusal}");
    assert_eq!(refusal["code"], "unavailable", "{refusal}");
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|m| m.contains("try again")),
        "{refusal}"
    );
    if let Err(e) = media {
        panic!(
            "the room keeps its media while PostgreSQL is down: {e:#}\n{}",
            server.log_text()
        );
    }
    eprintln!(
        "{test}: PostgreSQL away for {} ms",
        outage.elapsed().as_millis()
    );

    // PostgreSQL comes back: the node says so again within seconds.
    postgres.start_again().unwrap();
    let started = Instant::now();
    loop {
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        if health.status() == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/healthz still {} 30 s after PostgreSQL came back",
            health.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{test}: healthy {} ms after PostgreSQL came back",
        started.elapsed().as_millis()
    );

    // Writes resume: the partner joins (a durable write), and everything
    // acknowledged before the outage is still there, chained.
    let partner = join("par-1").await;
    partner
        .wait_for_packets("clin-1", Kind::Audio, 20, WAIT)
        .await
        .unwrap();
    let after = get_json(&app, "/v1/attendance/verify").await;
    assert_eq!(after["status"], "ok", "{after}");
    assert!(
        after["events"].as_i64().unwrap() > before["events"].as_i64().unwrap(),
        "{before} {after}"
    );
    drop((clinician, patient, partner));
    drop(server);
}
