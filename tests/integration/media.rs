//! Media through the SFU with real, independent WebRTC peers (webrtc-rs):
//! everyone receives exactly everyone else's audio and video, nothing
//! crosses rooms, late joiners and leavers are handled, keyframe requests
//! reach the publisher, and ICE over TCP carries media when UDP is blocked.
//!
//! Every test payload names its sender and carries a sequence number, so a
//! receiver tells lost, duplicated and foreign packets apart on loopback.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::json;

use crate::helpers::peer::{Kind, PeerOptions, TestPeer};
use crate::helpers::{couple_session, TestApp};

const WAIT: Duration = Duration::from_secs(20);
const KINDS: [Kind; 2] = [Kind::Audio, Kind::Video];

/// A running session and its links by participant id. Rostered people are
/// admitted automatically once the clinician is in (each test's clinician
/// joins first): the waiting room is tested in [`super::admission`].
async fn session(app: &TestApp, body: serde_json::Value) -> HashMap<String, String> {
    app.auto_admitted_session(body).await
}

async fn join(
    app: &TestApp,
    links: &HashMap<String, String>,
    id: &str,
    options: PeerOptions,
) -> TestPeer {
    TestPeer::join(app, &links[id], id, options)
        .await
        .unwrap_or_else(|e| panic!("{id} could not join: {e:#}"))
}

/// Waits until every peer receives every other peer's streams.
async fn wait_for_mesh(peers: &[&TestPeer]) {
    for receiver in peers {
        for sender in peers.iter().filter(|p| p.id() != receiver.id()) {
            receiver
                .wait_for_stream(sender.id(), WAIT)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{} never got {}'s tracks: {e:#}",
                        receiver.id(),
                        sender.id()
                    )
                });
        }
    }
}

/// A couple session in which the clinician and the patient are in and both
/// publishing, and the patient already receives the clinician's video.
async fn clinician_and_patient_publishing(
    app: &TestApp,
) -> (HashMap<String, String>, TestPeer, TestPeer) {
    let links = session(app, couple_session(-5, 60)).await;
    let clinician = join(app, &links, "clin-1", PeerOptions::default()).await;
    let patient = join(app, &links, "pat-1", PeerOptions::default()).await;
    wait_for_mesh(&[&clinician, &patient]).await;
    clinician.start_sending(50, 60);
    patient.start_sending(50, 60);
    patient
        .wait_for_packets("clin-1", Kind::Video, 30, WAIT)
        .await
        .unwrap();
    (links, clinician, patient)
}

fn group(households: &[(&str, &str)]) -> serde_json::Value {
    let mut body = couple_session(-5, 60);
    body["kind"] = json!("group");
    body["participants"] = json!(households
        .iter()
        .map(|(id, role)| json!({"id": id, "name": id.to_uppercase(), "role": role}))
        .collect::<Vec<_>>());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyone_receives_exactly_the_other_twos_audio_and_video() {
    let app = TestApp::spawn().await;
    let links = session(&app, couple_session(-5, 60)).await;
    let clinician = join(&app, &links, "clin-1", PeerOptions::default()).await;
    let patient = join(&app, &links, "pat-1", PeerOptions::default()).await;
    let partner = join(&app, &links, "par-1", PeerOptions::default()).await;
    let peers = [&clinician, &patient, &partner];
    wait_for_mesh(&peers).await;
    // Let the last answers land before counting from the first packet.
    tokio::time::sleep(Duration::from_millis(500)).await;

    for peer in peers {
        peer.start_sending(50, 60);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for peer in peers {
        peer.stop_sending().await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;

    for receiver in peers {
        let expected: BTreeSet<String> = peers
            .iter()
            .filter(|p| p.id() != receiver.id())
            .map(|p| p.id().to_owned())
            .collect();
        assert_eq!(
            receiver.remote_stream_ids(),
            expected,
            "{}",
            receiver.describe()
        );
        for sender in peers.iter().filter(|p| p.id() != receiver.id()) {
            for kind in KINDS {
                let stats = receiver.received_from(sender.id(), kind);
                let sent = sender.sent(kind);
                assert!(
                    sent > 40,
                    "{} sent only {sent} {kind:?} packets",
                    sender.id()
                );
                assert_eq!(
                    (
                        stats.packets,
                        stats.lost,
                        stats.duplicates,
                        stats.foreign,
                        stats.malformed
                    ),
                    (sent, 0, 0, 0, 0),
                    "{} receiving {kind:?} from {}: {}",
                    receiver.id(),
                    sender.id(),
                    receiver.describe()
                );
            }
        }
        assert!(receiver.problems().is_empty(), "{:?}", receiver.problems());
    }
    // Nobody receives their own media back.
    for peer in peers {
        for kind in KINDS {
            assert_eq!(peer.received_from(peer.id(), kind).packets, 0);
        }
    }
    for peer in [clinician, patient, partner] {
        peer.close().await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_never_crosses_rooms() {
    let app = TestApp::spawn().await;
    let room_a = session(&app, couple_session(-5, 60)).await;
    let mut body_b = couple_session(-5, 60);
    body_b["clinician"]["id"] = json!("clin-2");
    body_b["participants"][0]["id"] = json!("pat-2");
    body_b["participants"][1]["id"] = json!("par-2");
    let room_b = session(&app, body_b).await;

    let a1 = join(&app, &room_a, "clin-1", PeerOptions::default()).await;
    let a2 = join(&app, &room_a, "pat-1", PeerOptions::default()).await;
    let b1 = join(&app, &room_b, "clin-2", PeerOptions::default()).await;
    let b2 = join(&app, &room_b, "pat-2", PeerOptions::default()).await;
    wait_for_mesh(&[&a1, &a2]).await;
    wait_for_mesh(&[&b1, &b2]).await;
    for peer in [&a1, &a2, &b1, &b2] {
        peer.start_sending(50, 60);
    }
    for (receiver, from) in [
        (&a1, "pat-1"),
        (&a2, "clin-1"),
        (&b1, "pat-2"),
        (&b2, "clin-2"),
    ] {
        receiver
            .wait_for_packets(from, Kind::Video, 60, WAIT)
            .await
            .unwrap();
    }
    for peer in [&a1, &a2, &b1, &b2] {
        peer.stop_sending().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    for (peer, own_room, other_room) in [
        (&a1, ["clin-1", "pat-1"], ["clin-2", "pat-2"]),
        (&a2, ["clin-1", "pat-1"], ["clin-2", "pat-2"]),
        (&b1, ["clin-2", "pat-2"], ["clin-1", "pat-1"]),
        (&b2, ["clin-2", "pat-2"], ["clin-1", "pat-1"]),
    ] {
        let streams = peer.remote_stream_ids();
        assert!(
            streams.iter().all(|s| own_room.contains(&s.as_str())),
            "{}: {streams:?}",
            peer.id()
        );
        for stranger in other_room {
            for kind in KINDS {
                assert_eq!(
                    peer.received_from(stranger, kind).packets,
                    0,
                    "{} got {stranger}'s {kind:?}",
                    peer.id()
                );
            }
        }
        for kind in KINDS {
            let other = own_room.iter().find(|id| **id != peer.id()).unwrap();
            let stats = peer.received_from(other, kind);
            assert_eq!(
                (stats.foreign, stats.malformed, stats.lost),
                (0, 0, 0),
                "{}",
                peer.describe()
            );
        }
    }
    for peer in [a1, a2, b1, b2] {
        peer.close().await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_receives_tracks_already_published() {
    let app = TestApp::spawn().await;
    let (links, clinician, patient) = clinician_and_patient_publishing(&app).await;

    // The partner arrives while both are already publishing.
    let partner = join(&app, &links, "par-1", PeerOptions::default()).await;
    partner.start_sending(50, 60);
    for from in ["clin-1", "pat-1"] {
        for kind in KINDS {
            let stats = partner
                .wait_for_packets(from, kind, 40, WAIT)
                .await
                .unwrap();
            assert_eq!(
                (stats.lost, stats.foreign, stats.malformed),
                (0, 0, 0),
                "{}",
                partner.describe()
            );
        }
    }
    for receiver in [&clinician, &patient] {
        receiver
            .wait_for_packets("par-1", Kind::Video, 40, WAIT)
            .await
            .unwrap();
    }
    let arrived = clinician
        .wait_for_message_where("participant_joined(par-1)", WAIT, |m| {
            m["type"] == "participant_joined" && m["participant"]["id"] == "par-1"
        })
        .await;
    assert!(arrived.is_ok());
    for peer in [clinician, patient, partner] {
        peer.close().await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leavers_tracks_are_removed_from_everyone() {
    let app = TestApp::spawn().await;
    let links = session(&app, couple_session(-5, 60)).await;
    let clinician = join(&app, &links, "clin-1", PeerOptions::default()).await;
    let patient = join(&app, &links, "pat-1", PeerOptions::default()).await;
    let partner = join(&app, &links, "par-1", PeerOptions::default()).await;
    wait_for_mesh(&[&clinician, &patient, &partner]).await;
    for peer in [&clinician, &patient, &partner] {
        peer.start_sending(50, 60);
    }
    clinician
        .wait_for_packets("par-1", Kind::Video, 30, WAIT)
        .await
        .unwrap();

    partner.leave().await.unwrap();
    partner.wait_signal_closed(WAIT).await.unwrap();
    for remaining in [&clinician, &patient] {
        remaining
            .wait_until_stream_gone("par-1", WAIT)
            .await
            .unwrap();
        remaining
            .wait_for_message_where("participant_left(par-1)", WAIT, |m| {
                m["type"] == "participant_left" && m["participant"]["id"] == "par-1"
            })
            .await
            .unwrap();
    }
    // The two who stayed still hear and see each other.
    clinician.clear_received();
    patient.clear_received();
    for (receiver, from) in [(&clinician, "pat-1"), (&patient, "clin-1")] {
        for kind in KINDS {
            receiver
                .wait_for_packets(from, kind, 30, WAIT)
                .await
                .unwrap();
        }
        assert_eq!(receiver.received_from("par-1", Kind::Video).packets, 0);
    }
    for peer in [clinician, patient, partner] {
        peer.close().await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribers_keyframe_request_reaches_the_publisher() {
    let app = TestApp::spawn().await;
    let links = session(&app, couple_session(-5, 60)).await;
    let clinician = join(&app, &links, "clin-1", PeerOptions::default()).await;
    let patient = join(&app, &links, "pat-1", PeerOptions::default()).await;
    wait_for_mesh(&[&clinician, &patient]).await;
    clinician.start_sending(50, 60);
    patient
        .wait_for_packets("clin-1", Kind::Video, 30, WAIT)
        .await
        .unwrap();
    // The throttle allows one request per 500 ms: start from a quiet window.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = clinician.keyframe_requests_received();

    patient.request_keyframe("clin-1").await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while clinician.keyframe_requests_received() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no keyframe request arrived: {}",
            clinician.describe()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A burst of requests within the throttle window becomes at most one more.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after_first = clinician.keyframe_requests_received();
    for _ in 0..5 {
        patient.request_keyframe("clin-1").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let burst = clinician.keyframe_requests_received() - after_first;
    assert_eq!(
        burst, 1,
        "five requests within 300 ms reached the publisher {burst} times"
    );
    for peer in [clinician, patient] {
        peer.close().await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_over_tcp_carries_media_when_udp_is_blocked() {
    let app = TestApp::spawn().await;
    let links = session(&app, couple_session(-5, 60)).await;
    let clinician = join(&app, &links, "clin-1", PeerOptions::default()).await;
    let patient = join(&app, &links, "pat-1", PeerOptions::default().tcp_only()).await;
    wait_for_mesh(&[&clinician, &patient]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    clinician.start_sending(50, 60);
    patient.start_sending(50, 60);
    for (receiver, from) in [(&patient, "clin-1"), (&clinician, "pat-1")] {
        for kind in KINDS {
            let stats = receiver
                .wait_for_packets(from, kind, 60, WAIT)
                .await
                .unwrap();
            assert_eq!(
                (stats.lost, stats.foreign, stats.malformed),
                (0, 0, 0),
                "{}",
                receiver.describe()
            );
        }
    }
    for peer in [clinician, patient] {
        peer.close().await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_room_of_households_forwards_to_everyone() {
    let app = TestApp::spawn().await;
    let links = session(
        &app,
        group(&[
            ("a1", "patient"),
            ("a2", "partner"),
            ("b1", "patient"),
            ("b2", "partner"),
        ]),
    )
    .await;
    let mut peers = Vec::new();
    for id in ["clin-1", "a1", "a2", "b1", "b2"] {
        peers.push(join(&app, &links, id, PeerOptions::default()).await);
    }
    let refs: Vec<&TestPeer> = peers.iter().collect();
    wait_for_mesh(&refs).await;
    for peer in &peers {
        peer.start_sending(50, 30);
    }
    for receiver in &peers {
        for sender in peers.iter().filter(|p| p.id() != receiver.id()) {
            let stats = receiver
                .wait_for_packets(sender.id(), Kind::Video, 20, WAIT)
                .await
                .unwrap();
            assert_eq!(
                (stats.foreign, stats.malformed),
                (0, 0),
                "{}",
                receiver.describe()
            );
        }
    }
    for peer in peers {
        peer.close().await;
    }
    app.stop().await;
}

/// CPU time (user + system) of this process's media shard threads, from
/// /proc: the server runs in-process here, so its shards are ours.
fn shard_cpu_seconds() -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("sfu-shard") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        total += (utime + stime) / ticks;
    }
    total
}

/// A quick figure, not a test of speed: packets forwarded per second and
/// shard CPU for one 3-person room at real call rates (50 audio + 110 video
/// packets per second per person). Run with
/// `cargo test --release --test integration -- --ignored --nocapture quick_figure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn quick_figure_for_a_three_person_room() {
    let app = TestApp::spawn_with(|c| c.media.shards = 1).await;
    let links = session(&app, couple_session(-5, 60)).await;
    let clinician = join(&app, &links, "clin-1", PeerOptions::default()).await;
    let patient = join(&app, &links, "pat-1", PeerOptions::default()).await;
    let partner = join(&app, &links, "par-1", PeerOptions::default()).await;
    let peers = [&clinician, &patient, &partner];
    wait_for_mesh(&peers).await;
    for peer in peers {
        peer.start_sending(50, 110);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = |peers: &[&TestPeer]| -> u64 {
        peers
            .iter()
            .flat_map(|r| {
                peers
                    .iter()
                    .filter(move |s| s.id() != r.id())
                    .map(move |s| (r, s))
            })
            .map(|(r, s)| {
                KINDS
                    .iter()
                    .map(|&k| r.received_from(s.id(), k).packets)
                    .sum::<u64>()
            })
            .sum()
    };
    let (cpu0, got0, t0) = (
        shard_cpu_seconds(),
        received(&peers),
        std::time::Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (cpu1, got1, elapsed) = (
        shard_cpu_seconds(),
        received(&peers),
        t0.elapsed().as_secs_f64(),
    );
    let pps = (got1 - got0) as f64 / elapsed;
    let cpu = (cpu1 - cpu0) / elapsed;
    println!(
        "3-person room: {pps:.0} packets forwarded per second, shard CPU {:.1} % of a core, {:.1} µs per forwarded packet",
        cpu * 100.0,
        cpu / pps * 1e6
    );
    for peer in [clinician, patient, partner] {
        peer.close().await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_media_flowing_tells_everyone_and_does_not_hang() {
    let app = TestApp::spawn().await;
    let (_, clinician, patient) = clinician_and_patient_publishing(&app).await;

    let started = std::time::Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;
    assert!(stopped.is_ok(), "shutdown hung with media flowing");
    for peer in [&clinician, &patient] {
        let closed = peer.wait_signal_closed(WAIT).await.unwrap();
        assert_eq!(closed.code, Some(1012), "{}", peer.describe());
        assert!(
            peer.messages()
                .iter()
                .any(|m| m["code"] == "server_restart"),
            "{}",
            peer.describe()
        );
    }
    println!("shutdown took {:?}", started.elapsed());
    for peer in [clinician, patient] {
        peer.close().await;
    }
}

/// Sockets on local `port` in CLOSE_WAIT: the peer closed, this process
/// still holds the descriptor.
fn close_wait_on(port: u16) -> usize {
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && fields.get(3) == Some(&"08") {
                count += 1;
            }
        }
    }
    count
}

/// True when the server closes `stream` within `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_tcp_connections_are_capped_checked_and_released() {
    let app = TestApp::spawn_with(|c| {
        c.media.shards = 1;
        c.media.tcp_max_connections = 8;
        c.media.tcp_first_stun_secs = 3;
    })
    .await;
    let (_, tcp) = app.running().media_addresses()[0];
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(tokio::net::TcpStream::connect(tcp).await.unwrap());
    }
    // Over the cap: closed at once.
    let mut extra = tokio::net::TcpStream::connect(tcp).await.unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(1)).await,
        "the ninth"
    );
    assert!(
        !closed_within(&mut held[0], Duration::from_millis(100)).await,
        "the first eight are kept until their deadline"
    );
    // None sends a STUN binding request a peer connection accepts (one
    // sends frames of garbage): all are closed after the first deadline.
    use tokio::io::AsyncWriteExt;
    held[1].write_all(&[0, 4, 1, 2, 3, 4]).await.unwrap();
    for (i, stream) in held.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(6)).await,
            "connection {i} outlived its first deadline"
        );
    }

    // A connection its peer closes is let go at once, descriptor and all.
    let before = close_wait_on(tcp.port());
    let stream = tokio::net::TcpStream::connect(tcp).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        close_wait_on(tcp.port()),
        before,
        "a closed connection is still held"
    );
    app.stop().await;
}
