//! The signaling socket: the join check, malformed and oversized input, the
//! origin rule, presence and mute relay, replacement, ping.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::signal_client::{invite_token, SignalClient};
use crate::helpers::{couple_session, TestApp};

const WAIT: Duration = Duration::from_secs(5);

/// A session running now (admitting rostered people while the clinician is
/// in) and one link per roster member, by participant id.
async fn session_with_links(app: &TestApp) -> (String, HashMap<String, String>) {
    let mut body = couple_session(-5, 60);
    body["settings"] = json!({"auto_admit": true});
    let session = app.create_session(&body).await;
    let id = session["id"].as_str().unwrap().to_owned();
    let links = app.invite_tokens(&id).await;
    (id, links)
}

fn token<'a>(links: &'a HashMap<String, String>, who: &str) -> &'a str {
    &links[who]
}

#[tokio::test]
async fn a_valid_link_joins_and_gets_the_room() {
    let app = TestApp::spawn().await;
    let (session, links) = session_with_links(&app).await;

    let mut clinician = SignalClient::connect(&app).await.unwrap();
    let joined = clinician.join(token(&links, "clin-1")).await.unwrap();
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(
        joined["you"],
        json!({"id": "clin-1", "name": "Dr Rivera", "role": "clinician"})
    );
    assert_eq!(joined["session"]["id"], session.as_str());
    assert_eq!(joined["session"]["kind"], "couple");
    assert_eq!(joined["participants"], json!([]));
    assert_eq!(joined["ice_servers"], json!([]));

    let mut patient = SignalClient::connect(&app).await.unwrap();
    let joined = patient.join(token(&links, "pat-1")).await.unwrap();
    assert_eq!(
        joined["participants"],
        json!([{"id": "clin-1", "name": "Dr Rivera", "role": "clinician", "audio": true, "video": true}])
    );
    let arrived = clinician
        .recv_until("participant_joined", WAIT)
        .await
        .unwrap();
    assert_eq!(arrived["participant"]["id"], "pat-1");

    // Mute state is relayed to the others, not echoed.
    patient
        .send_json(json!({"type": "media", "audio": false, "video": true}))
        .await
        .unwrap();
    let media = clinician.recv_until("media", WAIT).await.unwrap();
    assert_eq!(
        media,
        json!({"type": "media", "participant": "pat-1", "audio": false, "video": true})
    );

    patient.send_json(json!({"type": "ping"})).await.unwrap();
    patient.recv_until("pong", WAIT).await.unwrap();
    assert_eq!(patient.log().count("media"), 0);

    patient.send_json(json!({"type": "leave"})).await.unwrap();
    patient.wait_closed(WAIT).await.unwrap();
    let left = clinician
        .recv_until("participant_left", WAIT)
        .await
        .unwrap();
    assert_eq!(left["participant"]["id"], "pat-1");
    app.stop().await;
}

#[tokio::test]
async fn refused_links_get_denied_with_their_code_then_a_close() {
    let app = TestApp::spawn().await;
    let (session, links) = session_with_links(&app).await;

    // Later and cancelled sessions for the other codes.
    let later = app.create_session(&couple_session(120, 60)).await;
    let later_token = invite_token(&app.invites(later["id"].as_str().unwrap()).await[1]);
    let cancelled = app.create_session(&couple_session(0, 60)).await;
    let cancelled_id = cancelled["id"].as_str().unwrap();
    let cancelled_token = invite_token(&app.invites(cancelled_id).await[1]);
    app.delete(&format!("/v1/sessions/{cancelled_id}"))
        .send()
        .await
        .unwrap();
    app.post(&format!("/v1/sessions/{session}/participants/par-1/revoke"))
        .send()
        .await
        .unwrap();

    let forged = {
        let mut parts: Vec<String> = token(&links, "pat-1")
            .split('.')
            .map(String::from)
            .collect();
        parts[2] = parts[2].chars().rev().collect();
        parts.join(".")
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("forged signature", forged, "token_invalid"),
        ("garbage", "not-a-token".into(), "token_invalid"),
        ("too early", later_token, "not_yet_open"),
        ("cancelled", cancelled_token, "session_cancelled"),
        ("revoked", token(&links, "par-1").to_owned(), "revoked"),
    ];
    for (case, token, code) in cases {
        let mut client = SignalClient::connect(&app).await.unwrap();
        let reply = client.join(&token).await.unwrap();
        assert_eq!(reply["type"], "denied", "{case}: {reply}");
        assert_eq!(reply["code"], code, "{case}: {reply}");
        assert!(!reply["message"].as_str().unwrap().is_empty());
        if code == "not_yet_open" {
            assert!(reply["opens_at"].is_string(), "{reply}");
        }
        client.wait_closed(WAIT).await.unwrap();
    }
    app.stop().await;
}

#[tokio::test]
async fn the_first_message_must_be_a_join() {
    let app = TestApp::spawn().await;
    for first in [
        json!({"type": "ping"}),
        json!({"type": "offer", "pc": "pub", "sdp": "v=0"}),
        json!({"hello": 1}),
    ] {
        let mut client = SignalClient::connect(&app).await.unwrap();
        client.send_json(first.clone()).await.unwrap();
        let reply = client.recv(WAIT).await.unwrap();
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("denied"), Some("join_required")),
            "{first}"
        );
        client.wait_closed(WAIT).await.unwrap();
    }
    app.stop().await;
}

#[tokio::test]
async fn a_silent_socket_is_closed_after_ten_seconds() {
    let app = TestApp::spawn().await;
    let client = SignalClient::connect(&app).await.unwrap();
    let started = std::time::Instant::now();
    let closed = client.wait_closed(Duration::from_secs(15)).await.unwrap();
    let waited = closed.at.duration_since(started);
    assert!(
        waited >= Duration::from_secs(9),
        "closed too early: {waited:?}"
    );
    let messages = client.messages();
    assert_eq!(
        messages.last().unwrap()["code"],
        "join_required",
        "{messages:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn malformed_and_unknown_messages_get_errors_and_the_connection_stays() {
    let app = TestApp::spawn().await;
    let (_, links) = session_with_links(&app).await;
    let mut clinician = SignalClient::connect(&app).await.unwrap();
    assert_eq!(
        clinician.join(token(&links, "clin-1")).await.unwrap()["type"],
        "joined"
    );
    let mut client = SignalClient::connect(&app).await.unwrap();
    assert_eq!(
        client.join(token(&links, "pat-1")).await.unwrap()["type"],
        "joined"
    );

    let bad: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{{nope".into(), "bad_message"),
        (
            "unknown type",
            json!({"type": "dance"}).to_string(),
            "bad_message",
        ),
        (
            "missing field",
            json!({"type": "offer", "pc": "pub"}).to_string(),
            "bad_message",
        ),
        (
            "wrong pc",
            json!({"type": "offer", "pc": "both", "sdp": "v=0"}).to_string(),
            "bad_message",
        ),
        (
            "bad SDP",
            json!({"type": "offer", "pc": "pub", "sdp": "this is not sdp"}).to_string(),
            "bad_message",
        ),
        (
            "offer for sub",
            json!({"type": "offer", "pc": "sub", "sdp": "v=0"}).to_string(),
            "bad_state",
        ),
        (
            "unasked answer",
            json!({"type": "answer", "pc": "sub", "sdp": "v=0"}).to_string(),
            "bad_state",
        ),
        (
            "second join",
            json!({"type": "join", "token": "x"}).to_string(),
            "bad_state",
        ),
        (
            "clinician only",
            json!({"type": "admit_all"}).to_string(),
            "not_allowed",
        ),
    ];
    for (case, text, code) in bad {
        client.send_text(text).await.unwrap();
        let reply = client.recv_until("error", WAIT).await.unwrap();
        assert_eq!(reply["code"], code, "{case}: {reply}");
    }
    client.send_json(json!({"type": "ping"})).await.unwrap();
    client.recv_until("pong", WAIT).await.unwrap();
    assert!(client.closed().is_none());
    app.stop().await;
}

#[tokio::test]
async fn oversized_frames_are_refused() {
    let app = TestApp::spawn().await;
    let (_, links) = session_with_links(&app).await;
    let mut client = SignalClient::connect(&app).await.unwrap();
    assert_eq!(
        client.join(token(&links, "clin-1")).await.unwrap()["type"],
        "joined"
    );
    let huge = json!({"type": "offer", "pc": "pub", "sdp": "v".repeat(300 * 1024)}).to_string();
    let _ = client.send_text(huge).await;
    let closed = client.wait_closed(WAIT).await.unwrap();
    assert!(matches!(closed.code, Some(1009) | None), "{closed:?}");

    // Just under the limit is read (and refused as SDP, not as a frame).
    let mut client = SignalClient::connect(&app).await.unwrap();
    assert_eq!(
        client.join(token(&links, "clin-1")).await.unwrap()["type"],
        "joined"
    );
    let large = json!({"type": "offer", "pc": "pub", "sdp": "v".repeat(200 * 1024)}).to_string();
    client.send_text(large).await.unwrap();
    assert_eq!(
        client.recv_until("error", WAIT).await.unwrap()["code"],
        "bad_message"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_first_frame_is_closed_with_1009_and_counted() {
    let app = TestApp::spawn_with(|c| c.sessions.failed_joins_per_minute = 1).await;
    let (_, links) = session_with_links(&app).await;
    let client = SignalClient::connect(&app).await.unwrap();
    let huge = json!({"type": "join", "token": "v".repeat(300 * 1024)}).to_string();
    let _ = client.send_text(huge).await;
    let closed = client.wait_closed(WAIT).await.unwrap();
    assert_eq!(closed.code, Some(1009), "{closed:?}");

    // It counted as a failed join: with a limit of one, the next join from
    // this address is refused, valid link or not.
    let mut client = SignalClient::connect(&app).await.unwrap();
    let _ = client
        .send_json(json!({"type": "join", "token": token(&links, "clin-1")}))
        .await;
    let reply = client
        .recv_until_any(&["joined", "denied"], WAIT)
        .await
        .unwrap();
    assert_eq!(reply["code"], "rate_limited", "{reply}");
    app.stop().await;
}

#[tokio::test]
async fn pages_from_another_origin_are_refused() {
    let app = TestApp::spawn().await;
    let refused = SignalClient::connect_with_origin(&app, "https://evil.example").await;
    assert!(refused.is_err(), "a foreign origin was upgraded");
    let allowed = SignalClient::connect_with_origin(&app, &app.base).await;
    assert!(allowed.is_ok(), "our own origin was refused");
    app.stop().await;
}

#[tokio::test]
async fn a_second_device_replaces_the_first() {
    let app = TestApp::spawn().await;
    let (_, links) = session_with_links(&app).await;
    let mut clinician = SignalClient::connect(&app).await.unwrap();
    clinician.join(token(&links, "clin-1")).await.unwrap();
    let mut laptop = SignalClient::connect(&app).await.unwrap();
    laptop.join(token(&links, "pat-1")).await.unwrap();
    let mut phone = SignalClient::connect(&app).await.unwrap();
    let joined = phone.join(token(&links, "pat-1")).await.unwrap();
    assert_eq!(joined["type"], "joined");

    laptop.recv_until("replaced", WAIT).await.unwrap();
    laptop.wait_closed(WAIT).await.unwrap();
    // For the clinician the patient simply stayed: arrived once, never left.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = clinician.log();
    assert_eq!(log.count("participant_joined"), 1, "{}", log.summary());
    assert_eq!(log.count("participant_left"), 0, "{}", log.summary());
    assert!(phone.closed().is_none());
    app.stop().await;
}

#[tokio::test]
async fn shutdown_tells_connected_clients() {
    let app = TestApp::spawn().await;
    let (_, links) = session_with_links(&app).await;
    let mut client = SignalClient::connect(&app).await.unwrap();
    client.join(token(&links, "clin-1")).await.unwrap();
    let watch = client.closed_watch();
    let log = client.log();
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;
    assert!(stopped.is_ok(), "shutdown hung");
    let closed = crate::helpers::signal_client::wait_closed(watch, WAIT, &log)
        .await
        .unwrap();
    assert_eq!(closed.code, Some(1012));
    let messages: Vec<Value> = log.all();
    assert_eq!(
        messages.last().unwrap()["code"],
        "server_restart",
        "{messages:?}"
    );
}

/// Every client string is bounded by what the protocol needs (a US state's
/// two letters, a participant id, an SDP, a candidate line...): past it,
/// `bad_message` naming the field, and the connection stays; a `join` out
/// of bounds is refused.
#[tokio::test]
async fn client_strings_are_bounded_with_bad_message_naming_the_field() {
    let app = TestApp::spawn().await;
    let (_, links) = session_with_links(&app).await;
    let mut clinician = SignalClient::connect(&app).await.unwrap();
    assert_eq!(
        clinician.join(token(&links, "clin-1")).await.unwrap()["type"],
        "joined"
    );

    let mut patient = SignalClient::connect(&app).await.unwrap();
    patient
        .send_json(json!({"type": "join", "token": token(&links, "pat-1"),
            "attestation": {"state": "New York", "at_home": true, "private": true}}))
        .await
        .unwrap();
    let error = patient.recv_until("error", WAIT).await.unwrap();
    assert_eq!(error["code"], "bad_message", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("attestation.state"),
        "{error}"
    );
    let denied = patient.recv_until("denied", WAIT).await.unwrap();
    assert_eq!(denied["code"], "join_required", "{denied}");
    assert_eq!(patient.wait_closed(WAIT).await.unwrap().code, Some(1008));

    let mut patient = SignalClient::connect(&app).await.unwrap();
    patient
        .send_json(json!({"type": "join", "token": token(&links, "pat-1"),
            "attestation": {"state": "NY", "at_home": true, "private": true}}))
        .await
        .unwrap();
    patient.recv_until("joined", WAIT).await.unwrap();

    let long = |n: usize| "a".repeat(n);
    let cases = [
        (
            json!({"type": "admit", "participant": long(65)}),
            "participant",
        ),
        (
            json!({"type": "remove", "participant": "pat 1"}),
            "participant",
        ),
        (
            json!({"type": "mute", "participant": "pat-1\n", "kind": "audio"}),
            "participant",
        ),
        (
            json!({"type": "breakout", "household": long(65)}),
            "household",
        ),
        (
            json!({"type": "offer", "pc": "pub", "sdp": format!("v=0\r\n{}", long(130 * 1024))}),
            "sdp",
        ),
        (
            json!({"type": "candidate", "pc": "pub", "candidate": {"candidate": long(2000), "sdpMid": "0"}}),
            "candidate",
        ),
    ];
    for (message, field) in cases {
        clinician.send_json(message.clone()).await.unwrap();
        let reply = clinician.recv_until("error", WAIT).await.unwrap();
        assert_eq!(reply["code"], "bad_message", "{message}: {reply}");
        assert!(
            reply["message"].as_str().unwrap().contains(field),
            "{field}: {reply}"
        );
    }
    clinician.send_json(json!({"type": "ping"})).await.unwrap();
    clinician.recv_until("pong", WAIT).await.unwrap();
    assert!(clinician.closed().is_none());
    app.stop().await;
}

/// The reproduction of the hardening issue: a partner still in the waiting
/// room sends 10,000 `media` messages. None becomes a ledger event (none
/// changes anything), the socket is closed for flooding (1008, `error`
/// `rate_limited`), and a clinician admitting someone in another room
/// meanwhile is not slowed down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_socket_is_closed_records_nothing_and_slows_no_other_room() {
    let app = TestApp::spawn().await;
    let schedule = || async {
        let session = app.create_session(&couple_session(-5, 60)).await;
        let id = session["id"].as_str().unwrap().to_owned();
        let links = app.invite_tokens(&id).await;
        (id, links)
    };
    let (flooded, a) = schedule().await;
    let (_, b) = schedule().await;
    let events = |app: &TestApp| {
        let request = app.get("/v1/attendance/verify");
        async move {
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            body["events"].as_i64().unwrap()
        }
    };

    let mut clinician_a = SignalClient::connect(&app).await.unwrap();
    assert_eq!(
        clinician_a.join(&a["clin-1"]).await.unwrap()["type"],
        "joined"
    );
    let mut partner = SignalClient::connect(&app).await.unwrap();
    partner
        .send_json(json!({"type": "join", "token": a["par-1"]}))
        .await
        .unwrap();
    partner.recv_until("waiting", WAIT).await.unwrap();
    let mut clinician_b = SignalClient::connect(&app).await.unwrap();
    assert_eq!(
        clinician_b.join(&b["clin-1"]).await.unwrap()["type"],
        "joined"
    );
    let before = events(&app).await;

    let flood = partner.sender();
    let flooding = tokio::spawn(async move {
        let media = json!({"type": "media", "audio": true, "video": true}).to_string();
        let mut sent = 0;
        for _ in 0..10_000 {
            if flood.send_text(media.clone()).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });

    // Meanwhile, in the other room: a patient knocks and is let in.
    let mut patient_b = SignalClient::connect(&app).await.unwrap();
    patient_b
        .send_json(json!({"type": "join", "token": b["pat-1"]}))
        .await
        .unwrap();
    patient_b.recv_until("waiting", WAIT).await.unwrap();
    let asked = std::time::Instant::now();
    clinician_b
        .send_json(json!({"type": "admit", "participant": "pat-1"}))
        .await
        .unwrap();
    patient_b.recv_until("joined", WAIT).await.unwrap();
    let admission = asked.elapsed();

    let closed = partner.wait_closed(Duration::from_secs(15)).await.unwrap();
    let sent = flooding.await.unwrap();
    println!(
        "flood: {sent} sent; closed {closed:?}; admission in the other room took {admission:?}"
    );
    assert_eq!(closed.code, Some(1008), "{closed:?}");
    assert_eq!(closed.reason, "too many messages");
    assert!(
        partner
            .messages()
            .iter()
            .any(|m| m["type"] == "error" && m["code"] == "rate_limited"),
        "{:?}",
        partner.messages()
    );
    assert!(
        admission < Duration::from_secs(1),
        "admission took {admission:?}"
    );

    let mut db = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(app.config.database_path()),
    )
    .await
    .unwrap();
    let media_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM attendance_events WHERE session_id = ? AND kind = 'media_changed'",
    )
    .bind(&flooded)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(
        media_events, 0,
        "a media message that changes nothing is an event"
    );
    let added = events(&app).await - before;
    assert!(
        added <= 10,
        "{added} events for one admission and one flood"
    );

    clinician_a
        .send_json(json!({"type": "ping"}))
        .await
        .unwrap();
    clinician_a.recv_until("pong", WAIT).await.unwrap();
    app.stop().await;
}
