//! Several nodes on one PostgreSQL (issue 17): one room, one node, whichever
//! node people reach; commands across nodes; failover after a kill -9; and
//! fencing of a node frozen past its lease. Real `tandem serve` processes,
//! real TLS, real WebRTC peers, one real PostgreSQL database per test.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::helpers::cluster::TestCluster;
use crate::helpers::peer::{Kind, PeerOptions, TestPeer};
use crate::helpers::{couple_session, TestApp};

const WAIT: Duration = Duration::from_secs(15);

/// A couple session scheduled through node `via`: its id and links' tokens.
async fn schedule(app: &TestApp) -> (String, HashMap<String, String>) {
    let session = app.create_session(&couple_session(-5, 60)).await;
    let id = session["id"].as_str().unwrap().to_owned();
    let tokens = app.invite_tokens(&id).await;
    (id, tokens)
}

/// Clinician and patient in one room, admitted, sending media: the
/// clinician arrives through `clinician_via`, the patient through
/// `patient_via`. Returns the peers and the node each one joined.
async fn meet(
    cluster: &TestCluster,
    tokens: &HashMap<String, String>,
    clinician_via: usize,
    patient_via: usize,
) -> ((TestPeer, usize), (TestPeer, usize)) {
    let apps = cluster.apps();
    let clinician = TestPeer::join_following(
        &apps,
        clinician_via,
        &tokens["clin-1"],
        "clin-1",
        PeerOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
    let patient = TestPeer::join_following(
        &apps,
        patient_via,
        &tokens["pat-1"],
        "pat-1",
        PeerOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
    patient.0.wait_for_message("waiting", WAIT).await.unwrap();
    clinician
        .0
        .send_json(json!({"type": "admit", "participant": "pat-1"}))
        .await
        .unwrap();
    patient.0.wait_joined(WAIT).await.unwrap();
    for peer in [&clinician.0, &patient.0] {
        peer.start_sending(50, 60);
    }
    media_flows(&clinician.0, &patient.0).await;
    (clinician, patient)
}

/// Each of the two receives the other's audio and video.
async fn media_flows(clinician: &TestPeer, patient: &TestPeer) {
    for (receiver, from) in [(clinician, "pat-1"), (patient, "clin-1")] {
        for kind in [Kind::Audio, Kind::Video] {
            receiver
                .wait_for_packets(from, kind, 30, WAIT)
                .await
                .unwrap_or_else(|e| panic!("{e:#}: {}", receiver.describe()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_arriving_through_different_nodes_meet_in_one_room() {
    let Some(cluster) = TestCluster::start("cluster_meet", 2).await else {
        return;
    };
    for node in &cluster.nodes {
        let health = node.app.health().await;
        assert_eq!(health["status"], "ok", "{health}");
        assert_eq!(health["node"]["state"], "ready", "{health}");
        assert_eq!(health["node"]["id"], node.id.as_str(), "{health}");
    }
    // A page served by one node may open a socket on the other (where a
    // redirect sends it).
    let other = format!("wss://localhost:{}", cluster.nodes[1].app.https_addr.port());
    let deadline = Instant::now() + WAIT;
    loop {
        let page = cluster.nodes[0]
            .app
            .client
            .get(cluster.nodes[0].app.url("/healthz"))
            .send()
            .await
            .unwrap();
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        if csp.contains(&other) {
            assert!(csp.contains("connect-src 'self' "), "{csp}");
            break;
        }
        assert!(Instant::now() < deadline, "{other} never in {csp}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, tokens) = schedule(&cluster.nodes[1].app).await;
    // Both idle: node-b, which the clinician's join reaches first, opens
    // the room (it is as little loaded as any); the patient's join reaches
    // node-a, which sends it to node-b.
    let ((clinician, clinician_at), (patient, patient_at)) = meet(&cluster, &tokens, 1, 0).await;
    assert_eq!((clinician_at, patient_at), (1, 1), "{}", cluster.logs());
    assert!(
        clinician.messages().iter().all(|m| m["type"] != "error"),
        "{}",
        clinician.describe()
    );
    clinician.close().await;
    patient.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_sent_to_another_node_disconnects_the_participant() {
    let Some(cluster) = TestCluster::start("cluster_revoke", 2).await else {
        return;
    };
    let (session, tokens) = schedule(&cluster.nodes[0].app).await;
    let ((clinician, _), (patient, at)) = meet(&cluster, &tokens, 0, 0).await;
    assert_eq!(at, 0);
    // The REST call reaches node-b, which holds no room: it is answered
    // once the command is durable, and node-a carries it out.
    let started = Instant::now();
    let response = cluster.nodes[1]
        .app
        .post(&format!("/v1/sessions/{session}/participants/pat-1/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let denied = patient
        .wait_for_message("denied", Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
    assert_eq!(denied["code"], "revoked", "{denied}");
    patient
        .wait_signal_closed(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    clinician
        .wait_for_message_where("pat-1 left", WAIT, |m| {
            m["type"] == "participant_left" && m["participant"]["id"] == "pat-1"
        })
        .await
        .unwrap();
    clinician.close().await;
    patient.close().await;
}

/// Reconnects `participant` as its client does after losing its node:
/// through node `via` (the load balancer's address), following redirects,
/// again and again until it is let in. Each attempt gives up after 3 s (a
/// frozen node accepts connections and never answers). The peer and the
/// node it reached.
async fn rejoin(
    cluster: &TestCluster,
    via: usize,
    token: &str,
    participant: &str,
    within: Duration,
) -> (TestPeer, usize) {
    let apps = cluster.apps();
    let deadline = Instant::now() + within;
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(3),
            TestPeer::join_following(&apps, via, token, participant, PeerOptions::default()),
        )
        .await;
        match attempt {
            Ok(Ok(joined)) => return joined,
            Ok(Err(error)) if Instant::now() >= deadline => {
                panic!(
                    "{participant} never got back in: {error:#}\n{}",
                    cluster.logs()
                )
            }
            Err(_) if Instant::now() >= deadline => {
                panic!("{participant} never got back in\n{}", cluster.logs())
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// The patient's row of the session's attendance report.
async fn patient_row(cluster: &TestCluster, via: usize, session: &str) -> serde_json::Value {
    let report = cluster.attendance(via, session).await;
    report["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["participant_id"] == "pat-1")
        .cloned()
        .unwrap_or_else(|| panic!("no pat-1 in {report}"))
}

/// When the row's presence was cut by a stopped node (`server_restart`).
fn cut_at(row: &serde_json::Value) -> Option<DateTime<Utc>> {
    row["intervals"]
        .as_array()?
        .iter()
        .find(|i| i["end_reason"] == "server_restart")
        .map(|i| at(i["end"].as_str().unwrap()))
}

/// Presence ends at the last sign of life before the kill (heartbeats
/// every second here), never after it: no invented time.
fn assert_cut_at_the_kill(
    cut_at: DateTime<Utc>,
    killed_at: DateTime<Utc>,
    row: &serde_json::Value,
) {
    assert!(
        cut_at <= killed_at && cut_at >= killed_at - chrono::TimeDelta::seconds(2),
        "cut at {cut_at}, killed at {killed_at}: {row}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_owner_is_killed_the_room_comes_back_on_another_node_within_15_s() {
    let Some(mut cluster) = TestCluster::start("cluster_failover", 2).await else {
        return;
    };
    let (session, tokens) = schedule(&cluster.nodes[1].app).await;
    let ((clinician, _), (patient, at_node)) = meet(&cluster, &tokens, 0, 0).await;
    assert_eq!(at_node, 0, "the room is node-a's");
    // Presence with a few heartbeats behind it.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let killed_at = Utc::now();
    let killed = Instant::now();
    cluster.nodes[0].process.take().unwrap().kill();
    for peer in [&clinician, &patient] {
        peer.wait_signal_closed(WAIT).await.unwrap();
    }
    clinician.close().await;
    patient.close().await;

    // The clients come back through the surviving address; node-b takes
    // the room once node-a's lease has expired. The clinician first: the
    // patient, who was admitted, then goes straight back in.
    let (clinician, clinician_at) = rejoin(&cluster, 1, &tokens["clin-1"], "clin-1", WAIT).await;
    let (patient, patient_at) = rejoin(&cluster, 1, &tokens["pat-1"], "pat-1", WAIT).await;
    assert_eq!((clinician_at, patient_at), (1, 1));
    patient.wait_joined(WAIT).await.unwrap();
    assert!(
        patient.messages().iter().all(|m| m["type"] != "waiting"),
        "an admitted patient is not sent to the waiting room by a failover: {}",
        patient.describe()
    );
    for peer in [&clinician, &patient] {
        peer.start_sending(50, 60);
    }
    media_flows(&clinician, &patient).await;
    let failover = killed.elapsed();
    assert!(
        failover < Duration::from_secs(15),
        "media again {failover:?} after the kill"
    );
    eprintln!("failover: media flowing again {failover:?} after kill -9");

    clinician.send_json(json!({"type": "end"})).await.unwrap();
    patient.wait_for_message("ended", WAIT).await.unwrap();
    let row = patient_row(&cluster, 1, &session).await;
    let cut_at = cut_at(&row).unwrap_or_else(|| panic!("no interval ended by the failover: {row}"));
    let back_at = row["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| at(i["start"].as_str().unwrap()))
        .find(|start| *start > cut_at)
        .unwrap_or_else(|| panic!("no presence after the failover: {row}"));
    assert_cut_at_the_kill(cut_at, killed_at, &row);
    let gap = (back_at - cut_at).to_std().unwrap();
    assert!(
        gap <= failover + Duration::from_secs(2),
        "a gap of {gap:?} for a failover of {failover:?}: {row}"
    );
    let verified = cluster.verify(1).await;
    assert_eq!(verified["status"], "ok", "{verified}");
    clinician.close().await;
    patient.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_frozen_past_its_lease_writes_nothing_more_for_the_room_and_lets_its_people_go() {
    let Some(cluster) = TestCluster::start("cluster_fencing", 2).await else {
        return;
    };
    let (session, tokens) = schedule(&cluster.nodes[0].app).await;
    let ((old_clinician, _), (old_patient, at_node)) = meet(&cluster, &tokens, 0, 0).await;
    assert_eq!(at_node, 0);
    let events = cluster.events(&session).await;
    // Connection ids are `<run of the node>-<number>`: node-a's run.
    let node_a_run = events
        .iter()
        .find_map(|e| e.event.connection.clone())
        .and_then(|c| c.split('-').next().map(str::to_owned))
        .unwrap();

    let node_a = cluster.nodes[0].process.as_ref().unwrap();
    node_a.signal("STOP");
    let (clinician, clinician_at) = rejoin(&cluster, 1, &tokens["clin-1"], "clin-1", WAIT).await;
    let (patient, patient_at) = rejoin(&cluster, 1, &tokens["pat-1"], "pat-1", WAIT).await;
    assert_eq!((clinician_at, patient_at), (1, 1), "node-b took the room");
    patient.wait_joined(WAIT).await.unwrap();
    for peer in [&clinician, &patient] {
        peer.start_sending(50, 60);
    }
    media_flows(&clinician, &patient).await;
    let taken_over = cluster.events(&session).await.last().unwrap().seq;

    // node-a wakes: it finds its lease gone, decides and writes nothing
    // more for the room, and lets its people go (they would reconnect).
    node_a.signal("CONT");
    for old in [&old_clinician, &old_patient] {
        let closed = old
            .wait_signal_closed(WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
        assert_eq!(closed.code, Some(1012), "{closed:?}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let written_after: Vec<_> = cluster
        .events(&session)
        .await
        .into_iter()
        .filter(|e| e.seq > taken_over)
        .filter(|e| {
            e.event
                .connection
                .as_deref()
                .is_some_and(|c| c.starts_with(&format!("{node_a_run}-")))
        })
        .collect();
    assert!(
        written_after.is_empty(),
        "the fenced-off node wrote {written_after:?}\n{}",
        cluster.logs()
    );
    // The room on node-b goes on.
    patient.clear_received();
    media_flows(&clinician, &patient).await;
    let verified = cluster.verify(1).await;
    assert_eq!(verified["status"], "ok", "{verified}");
    for peer in [old_clinician, old_patient, clinician, patient] {
        peer.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_keeps_its_live_room_and_sends_new_rooms_to_another_node() {
    let Some(mut cluster) = TestCluster::start_with("cluster_drain", 2, &["--drain"]).await else {
        return;
    };
    let (_, live) = schedule(&cluster.nodes[0].app).await;
    let ((clinician, _), (patient, at_node)) = meet(&cluster, &live, 0, 0).await;
    assert_eq!(at_node, 0);

    cluster.nodes[0].process.as_ref().unwrap().signal("TERM");
    let deadline = Instant::now() + WAIT;
    while cluster.nodes[0].app.health().await["node"]["state"] != "draining" {
        assert!(Instant::now() < deadline, "never draining");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new session's room opens on node-b, also for a join that reaches
    // the draining node.
    let (_, later) = schedule(&cluster.nodes[0].app).await;
    let (other, other_at) = TestPeer::join_following(
        &cluster.apps(),
        0,
        &later["clin-1"],
        "clin-1",
        PeerOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
    assert_eq!(other_at, 1, "{}", cluster.logs());
    // The live room goes on where it is.
    patient.clear_received();
    clinician.clear_received();
    media_flows(&clinician, &patient).await;

    // Its session ends: the drained node stops by itself.
    clinician.send_json(json!({"type": "end"})).await.unwrap();
    patient.wait_for_message("ended", WAIT).await.unwrap();
    let node_a = cluster.nodes[0].process.as_mut().unwrap();
    let status = node_a
        .exited_within(Duration::from_secs(20))
        .await
        .expect("a drained node stops by itself");
    assert!(status.success(), "{status:?}");
    for peer in [clinician, patient, other] {
        peer.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_left_by_a_killed_node_ends_at_its_last_heartbeat_even_if_nobody_comes_back() {
    let Some(mut cluster) = TestCluster::start("cluster_sweep", 2).await else {
        return;
    };
    let (session, tokens) = schedule(&cluster.nodes[1].app).await;
    let ((clinician, _), (patient, at_node)) = meet(&cluster, &tokens, 0, 0).await;
    assert_eq!(at_node, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = Utc::now();
    cluster.nodes[0].process.take().unwrap().kill();
    // Nobody reconnects: node-b closes the presence node-a left open.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = patient_row(&cluster, 1, &session).await;
        if let Some(cut) = cut_at(&row) {
            assert_cut_at_the_kill(cut, killed_at, &row);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "presence still open: {row}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let verified = cluster.verify(1).await;
    assert_eq!(verified["status"], "ok", "{verified}");
    clinician.close().await;
    patient.close().await;
}
