//! Draining (issue 17): `tandem serve --drain` takes SIGTERM as "finish
//! the live sessions, open no new room, then stop", so an upgrade drops
//! no session.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::serve::{self, ServeOptions, ServeProcess, TANDEM};
use crate::helpers::signal_client::SignalClient;
use crate::helpers::{couple_session, TestApp};

const WAIT: Duration = Duration::from_secs(15);

async fn schedule(app: &TestApp) -> HashMap<String, String> {
    let session = app.create_session(&couple_session(-5, 60)).await;
    app.invite_tokens(session["id"].as_str().unwrap()).await
}

async fn node_state(app: &TestApp) -> Value {
    app.health().await["node"]["state"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_finishes_its_live_session_opens_no_new_room_then_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (config, app) = serve::prepare(
        dir.path(),
        &dir.path().join("data"),
        &ServeOptions::default(),
    );
    let mut server = ServeProcess::start_with_args(
        std::process::Command::new(TANDEM),
        &["--drain"],
        &config,
        &dir.path().join("serve.log"),
        &app,
    )
    .await;
    assert_eq!(node_state(&app).await, "alone");
    let live = schedule(&app).await;
    let later = schedule(&app).await;
    let mut clin = SignalClient::knock(&app, &live["clin-1"]).await;
    clin.recv_until("joined", WAIT).await.unwrap();
    let mut pat = SignalClient::knock(&app, &live["pat-1"]).await;
    pat.recv_until("waiting", WAIT).await.unwrap();
    clin.send_json(json!({"type": "admit", "participant": "pat-1"}))
        .await
        .unwrap();
    pat.recv_until("joined", WAIT).await.unwrap();

    server.send_sigterm();
    let deadline = tokio::time::Instant::now() + WAIT;
    while node_state(&app).await != "draining" {
        assert!(tokio::time::Instant::now() < deadline, "never draining");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The live session goes on: its people stay, and its partner can
    // still come in.
    pat.send_json(json!({"type": "ping"})).await.unwrap();
    pat.recv_until("pong", WAIT).await.unwrap();
    let mut par = SignalClient::knock(&app, &live["par-1"]).await;
    par.recv_until("waiting", WAIT).await.unwrap();
    // A session not yet live gets no room here: come back soon.
    let mut other = SignalClient::knock(&app, &later["clin-1"]).await;
    let refused = other.recv_until("error", WAIT).await.unwrap();
    assert_eq!(refused["code"], "server_restart", "{refused}");
    assert!(
        server.exited_within(Duration::from_secs(2)).await.is_none(),
        "still serving its live session"
    );

    // The clinician ends the session: the node has nothing left and stops.
    clin.send_json(json!({"type": "end"})).await.unwrap();
    pat.recv_until("ended", WAIT).await.unwrap();
    let status = server
        .exited_within(Duration::from_secs(20))
        .await
        .expect("a drained node stops by itself");
    assert!(status.success(), "{status:?}: {}", server.log_text());
    app.stop().await;
}
