//! Webhooks, end to end: a real Tandem (in-process, or the real binary
//! killed with SIGKILL) delivers to a real HTTPS receiver with its own CA;
//! the events come from real sessions (signaling, real admission); every
//! signature is checked with an independent Standard Webhooks
//! implementation (the `standardwebhooks` crate).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::receiver::{Received, Receiver, Reply};
use crate::helpers::serve::{self, ServeOptions, ServeProcess};
use crate::helpers::signal_client::SignalClient;
use crate::helpers::{couple_session, TestApp};

const WAIT: Duration = Duration::from_secs(10);
const ALL_EVENTS: [&str; 9] = [
    "session.scheduled",
    "session.updated",
    "session.cancelled",
    "session.ended",
    "participant.waiting",
    "participant.admitted",
    "participant.left",
    "attendance.finalized",
    "ledger.verify_failed",
];

/// A server whose webhook client trusts `receiver`'s CA, with quick
/// retries (base 0.2 s), a 1 s timeout and `attempts` attempts.
async fn app_for(receiver: &Receiver, attempts: u32) -> TestApp {
    let ca = receiver.ca.clone();
    TestApp::spawn_with(move |c| {
        c.webhooks.ca_file = Some(ca);
        c.webhooks.retry_base_seconds = 0.2;
        c.webhooks.timeout_seconds = 1.0;
        c.webhooks.max_attempts = attempts;
    })
    .await
}

/// Registers `url` for `events`; the 201 body.
async fn subscribe(app: &TestApp, url: &str, events: &[&str]) -> Value {
    let response = app
        .post("/v1/webhooks")
        .json(&json!({"url": url, "events": events, "description": "EHR"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

/// Checks `r`'s signature with the `standardwebhooks` crate.
fn assert_signed(secret: &str, r: &Received) {
    let webhook = standardwebhooks::Webhook::new(secret).expect("a Standard Webhooks secret");
    webhook
        .verify(r.body.as_bytes(), &r.headers)
        .unwrap_or_else(|e| panic!("signature of {} does not verify: {e:?}", r.json["type"]));
}

fn of_type<'a>(received: &'a [Received], kind: &str) -> Vec<&'a Received> {
    received.iter().filter(|r| r.json["type"] == kind).collect()
}

/// The types delivered for `session`, in arrival order, first copy only.
fn session_order(received: &[Received], session: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    received
        .iter()
        .filter(|r| r.json["data"]["session_id"] == session && seen.insert(r.id.clone()))
        .map(|r| r.json["type"].as_str().unwrap().to_owned())
        .collect()
}

/// A couple session running now: the clinician is in, the patient
/// waits. Its id, the clinician's and the patient's clients.
async fn knock(app: &TestApp) -> (String, SignalClient, SignalClient) {
    let session = app.create_session(&couple_session(-5, 60)).await;
    let id = session["id"].as_str().unwrap().to_owned();
    let links = app.invite_tokens(&id).await;
    let mut clinician = SignalClient::connect(app).await.unwrap();
    clinician.join(&links["clin-1"]).await.unwrap();
    let mut patient = SignalClient::connect(app).await.unwrap();
    patient
        .send_json(json!({"type": "join", "token": links["pat-1"]}))
        .await
        .unwrap();
    patient.recv_until("waiting", WAIT).await.unwrap();
    (id, clinician, patient)
}

/// The clinician admits the waiting patient.
async fn admit(clinician: &SignalClient, patient: &mut SignalClient) {
    clinician
        .send_json(json!({"type": "admit", "participant": "pat-1"}))
        .await
        .unwrap();
    patient.recv_until("joined", WAIT).await.unwrap();
}

/// Breaks the ledger's hash chain under the running server, the way a
/// tampering hand would (dropping the append-only trigger first).
async fn tamper(app: &TestApp) {
    use sqlx::ConnectOptions;
    let mut db = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(app.config.database_path())
        .connect()
        .await
        .unwrap();
    sqlx::query("DROP TRIGGER attendance_events_no_update")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("UPDATE attendance_events SET at = at + 1 WHERE seq = 2")
        .execute(&mut db)
        .await
        .unwrap();
}

#[tokio::test]
async fn every_event_of_a_real_session_reaches_the_receiver_signed_and_in_order() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver, 5).await;
    let hook = subscribe(&app, &receiver.url, &ALL_EVENTS).await;
    let secret = hook["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{hook}");

    // Scheduled, moved, cancelled: a session later today.
    let later = app.create_session(&couple_session(120, 50)).await;
    let later_id = later["id"].as_str().unwrap();
    let moved_to = chrono::Utc::now() + chrono::Duration::minutes(180);
    let moved = app
        .client
        .patch(app.url(&format!("/v1/sessions/{later_id}")))
        .bearer_auth(&app.admin_key)
        .json(&json!({"starts_at": moved_to.to_rfc3339()}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200, "{}", moved.text().await.unwrap());
    let cancelled = app
        .delete(&format!("/v1/sessions/{later_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 204);

    // A session running now: the clinician comes in, the patient knocks
    // and is admitted, leaves; the clinician ends the session.
    let (id, clinician, mut patient) = knock(&app).await;
    let id = id.as_str();
    receiver
        .wait_for("participant.waiting", WAIT, |r| {
            !of_type(r, "participant.waiting").is_empty()
        })
        .await;
    admit(&clinician, &mut patient).await;
    patient.send_json(json!({"type": "leave"})).await.unwrap();
    receiver
        .wait_for("participant.left", WAIT, |r| {
            !of_type(r, "participant.left").is_empty()
        })
        .await;
    clinician.send_json(json!({"type": "end"})).await.unwrap();

    // A broken ledger, found by verification.
    tamper(&app).await;
    let verified = get_json(&app, "/v1/attendance/verify").await;
    assert!(verified.to_string().contains("2"), "{verified}");

    let received = receiver
        .wait_for("every event type", WAIT, |r| {
            ALL_EVENTS.iter().all(|t| !of_type(r, t).is_empty())
        })
        .await;
    for r in &received {
        assert_signed(secret, r);
        assert!(r.signature.starts_with("v1,"), "{}", r.signature);
        let sent: i64 = r.timestamp.parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - sent).abs() < 300);
        assert_eq!(r.json["id"], r.id.as_str(), "the body names its webhook-id");
        assert!(r.id.starts_with("msg_"), "{}", r.id);
        // Ids, roles and times only: no names, no title, no attestation.
        for private in ["Alex", "Morgan", "Rivera", "Joint session", "at_home"] {
            assert!(!r.body.contains(private), "{private} in {}", r.body);
        }
    }
    assert_eq!(
        session_order(&received, later_id),
        ["session.scheduled", "session.updated", "session.cancelled"]
    );
    assert_eq!(
        session_order(&received, id),
        [
            "session.scheduled",
            "participant.admitted", // the clinician
            "participant.waiting",
            "participant.admitted",
            "participant.left",
            "participant.left", // the clinician, at the end
            "session.ended",
            "attendance.finalized",
        ]
    );
    let waiting = &of_type(&received, "participant.waiting")[0].json["data"];
    assert_eq!(waiting["participant_id"], "pat-1");
    assert_eq!(waiting["role"], "patient");
    let left = of_type(&received, "participant.left");
    assert_eq!(left[0].json["data"]["reason"], "left", "{}", left[0].body);
    let finalized = &of_type(&received, "attendance.finalized")[0].json["data"];
    let people: HashMap<&str, &Value> = finalized["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["participant_id"].as_str().unwrap(), p))
        .collect();
    for field in [
        "attended_seconds",
        "present_seconds",
        "audio_only_seconds",
        "late_seconds",
        "early_leave_seconds",
        "disconnects",
    ] {
        assert!(people["pat-1"][field].is_number(), "{field}: {finalized}");
    }
    assert_eq!(people["par-1"]["present_seconds"], 0, "{finalized}");
    let failed = &of_type(&received, "ledger.verify_failed")[0].json["data"];
    assert_eq!(failed["seq"], 2, "{failed}");
    app.stop().await;
}

#[tokio::test]
async fn a_500_and_a_timeout_are_retried_and_a_dead_endpoint_fails_until_replayed() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver, 3).await;
    let hook = subscribe(&app, &receiver.url, &["session.scheduled"]).await;
    let hook_id = hook["id"].as_str().unwrap();

    // 500, then no answer within the 1 s timeout, then 200.
    receiver.then(&[Reply::Status(500), Reply::Hang(Duration::from_secs(3))]);
    app.create_session(&couple_session(60, 50)).await;
    let delivered = receiver
        .wait_for("the third attempt", WAIT, |r| r.len() == 1)
        .await;
    let tries = receiver.received();
    assert_eq!(
        tries.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 0, 200]
    );
    assert!(
        tries
            .iter()
            .all(|r| r.id == delivered[0].id && r.body == delivered[0].body),
        "every attempt is the same message"
    );
    let done = newest_delivery_when(&app, hook_id, "delivered").await;
    assert_eq!(done["attempts"], 3, "{done}");
    assert_eq!(done["last_status"], 200, "{done}");

    // A receiver that keeps answering 500: after 3 attempts the delivery
    // has failed and the endpoint says so.
    receiver.otherwise(Some(Reply::Status(500)));
    app.create_session(&couple_session(120, 50)).await;
    let failed = newest_delivery_when(&app, hook_id, "failed").await;
    assert_eq!(failed["attempts"], 3, "{failed}");
    assert_eq!(failed["last_status"], 500, "{failed}");
    assert!(
        failed["last_error"].as_str().unwrap().contains("500"),
        "{failed}"
    );
    assert_eq!(failed["next_try_at"], Value::Null);
    let endpoint: Value = get_json(&app, &format!("/v1/webhooks/{hook_id}")).await;
    assert_eq!(endpoint["status"], "failing", "{endpoint}");
    assert!(endpoint.get("secret").is_none(), "the secret is shown once");

    // The receiver is fixed; the admin replays the failed delivery.
    receiver.otherwise(None);
    let replay = app
        .post(&format!(
            "/v1/webhooks/{hook_id}/deliveries/{}/replay",
            failed["id"]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202);
    receiver
        .wait_for("the replayed delivery", WAIT, |r| {
            r.iter()
                .any(|r| r.id == failed["event_id"].as_str().unwrap())
        })
        .await;
    eventually(&app, &format!("/v1/webhooks/{hook_id}"), |e| {
        e["status"] == "active"
    })
    .await;
    app.stop().await;
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    app.get(path).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver, 1).await;
    let hook = subscribe(&app, &receiver.url, &["session.scheduled"]).await;
    receiver.otherwise(Some(Reply::Status(308)));
    app.create_session(&couple_session(60, 50)).await;
    let failed = newest_delivery_when(&app, hook["id"].as_str().unwrap(), "failed").await;
    assert_eq!(failed["last_status"], 308, "{failed}");
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed"),
        "{failed}"
    );
    assert_eq!(receiver.received().len(), 1, "one request, not followed");
    app.stop().await;
}

/// The newest delivery of `hook` once its status is `status`.
async fn newest_delivery_when(app: &TestApp, hook: &str, status: &str) -> Value {
    let path = format!("/v1/webhooks/{hook}/deliveries?limit=1");
    let list = eventually(app, &path, |b| b["deliveries"][0]["status"] == status).await;
    list["deliveries"][0].clone()
}

/// `GET path` until its body passes `done` (for at most [`WAIT`]).
async fn eventually(app: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = get_json(app, path).await;
        if done(&body) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn endpoints_are_managed_by_admins_over_rest_and_bad_input_is_named() {
    let app = TestApp::spawn().await;
    for (body, field) in [
        (
            json!({"url": "http://ehr.example/hook", "events": ["session.ended"]}),
            "url",
        ),
        (
            json!({"url": "https://ehr.example/hook", "events": ["session.started"]}),
            "events",
        ),
        (
            json!({"url": "https://ehr.example/hook", "events": []}),
            "events",
        ),
        (json!({"events": ["session.ended"]}), "url"),
    ] {
        let response = app.post("/v1/webhooks").json(&body).send().await.unwrap();
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    let scheduler = app.api_key(tandem::auth::ApiRole::Scheduler).await;
    let refused = app
        .client
        .get(app.url("/v1/webhooks"))
        .bearer_auth(&scheduler)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let hook = subscribe(&app, "https://ehr.example/hook", &["session.ended"]).await;
    let id = hook["id"].as_str().unwrap();
    let listed = get_json(&app, "/v1/webhooks").await;
    assert_eq!(listed["webhooks"][0]["id"], id);
    assert!(!listed.to_string().contains("whsec_"), "{listed}");

    let patched: Value = app
        .client
        .patch(app.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(&app.admin_key)
        .json(&json!({"events": ["session.ended", "attendance.finalized"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        patched["events"],
        json!(["session.ended", "attendance.finalized"])
    );
    assert_eq!(patched["url"], "https://ehr.example/hook");

    let rotated: Value = app
        .post(&format!("/v1/webhooks/{id}/rotate_secret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != hook["secret"]);

    let deleted = app
        .delete(&format!("/v1/webhooks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = app.get(&format!("/v1/webhooks/{id}")).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn events_not_delivered_before_a_kill_9_are_delivered_after_the_restart_in_order() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let options = ServeOptions {
        port: Some(serve::free_port_outside_the_ephemeral_range()),
        ..ServeOptions::default()
    };
    let (config, app) = serve::prepare(dir.path(), &data, &options);
    // Retries every ~2 s: what the receiver refuses stays in the outbox.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[webhooks]\nca_file = {:?}\nretry_base_seconds = 2.0\ntimeout_seconds = 1.0\n",
        receiver.ca
    ));
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("serve.log");
    let process = ServeProcess::start(&config, &log, &app).await;
    let hook = subscribe(&app, &receiver.url, &ALL_EVENTS).await;
    let secret = hook["secret"].as_str().unwrap().to_owned();

    // The receiver is down (503) while a session runs.
    receiver.otherwise(Some(Reply::Status(503)));
    let (id, clinician, mut patient) = knock(&app).await;
    admit(&clinician, &mut patient).await;
    receiver.wait_for_any_attempt(WAIT).await;
    assert!(receiver.delivered().is_empty());
    process.kill();

    // Back up: everything recorded before the kill arrives, in order.
    receiver.otherwise(None);
    let process = ServeProcess::start(&config, &log, &app).await;
    let received = receiver
        .wait_for(
            "the events from before the kill",
            Duration::from_secs(20),
            |r| session_order(r, &id).len() >= 4,
        )
        .await;
    for r in &received {
        assert_signed(&secret, r);
    }
    assert_eq!(
        session_order(&received, &id)[..4],
        [
            "session.scheduled",
            "participant.admitted",
            "participant.waiting",
            "participant.admitted",
        ]
    );
    // At least once: a repeated id is the same message, never another.
    let mut bodies: HashMap<&str, &str> = HashMap::new();
    for r in &received {
        let first = bodies.entry(r.id.as_str()).or_insert(r.body.as_str());
        assert_eq!(*first, r.body.as_str(), "two messages share {}", r.id);
    }
    drop(process);
}

/// Nobody asks for a verification: the server's own hourly check (here
/// every second) finds the edited event, raises `ledger.verify_failed`
/// once, and does not raise it again at every check while it lasts.
#[tokio::test]
async fn a_broken_chain_is_found_and_told_without_anyone_asking_once() {
    let receiver = Receiver::start().await;
    let ca = receiver.ca.clone();
    let app = TestApp::spawn_with(move |c| {
        c.webhooks.ca_file = Some(ca);
        c.webhooks.retry_base_seconds = 0.2;
        c.webhooks.timeout_seconds = 1.0;
        c.attendance.verify_every_secs = 1;
    })
    .await;
    subscribe(&app, &receiver.url, &["ledger.verify_failed"]).await;
    let session = app.create_session(&couple_session(-5, 50)).await;
    let id = session["id"].as_str().unwrap();
    for text in ["first note", "second note"] {
        app.annotate(id, "pat-1", text).await;
    }
    // Checks run meanwhile and find nothing to tell.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(receiver.received().is_empty(), "{:?}", receiver.received());

    tamper(&app).await;
    let told = receiver
        .wait_for("ledger.verify_failed", WAIT, |r| !r.is_empty())
        .await;
    let failed = &told[0].json["data"];
    assert_eq!(failed["seq"], 2, "{failed}");
    assert!(
        failed["problem"].as_str().is_some_and(|p| !p.is_empty()),
        "{failed}"
    );
    // Three more checks: the same break is not told again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        of_type(&receiver.received(), "ledger.verify_failed").len(),
        1,
        "{:?}",
        receiver.received()
    );
    app.stop().await;
}

/// A rotation can keep the receiver working while it is updated:
/// deliveries carry both signatures (any Standard Webhooks library accepts
/// either secret) for the hours asked; a rotation without them (a leaked
/// secret, and every client from before the overlap existed) stops the
/// old one at once.
#[tokio::test]
async fn a_rotated_secret_keeps_signing_next_to_the_new_one_for_the_hours_asked() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver, 3).await;
    let hook = subscribe(&app, &receiver.url, &["session.scheduled"]).await;
    let id = hook["id"].as_str().unwrap();
    let first = hook["secret"].as_str().unwrap().to_owned();

    let rotate = |body: Option<Value>| {
        let request = app.post(&format!("/v1/webhooks/{id}/rotate_secret"));
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, rotated) = rotate(Some(json!({"previous_valid_hours": 24}))).await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["secret"].as_str().unwrap().to_owned();
    let until = chrono::DateTime::parse_from_rfc3339(
        rotated["previous_valid_until"].as_str().expect("{rotated}"),
    )
    .unwrap();
    let hours =
        (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "{rotated}");

    app.create_session(&couple_session(60, 50)).await;
    let both = receiver
        .wait_for("a delivery after the rotation", WAIT, |r| r.len() == 1)
        .await;
    assert_signed(&second, &both[0]);
    assert_signed(&first, &both[0]);

    // A leaked secret: rotated as before the overlap existed (no body);
    // only the newest signs, at once.
    let (status, rotated) = rotate(None).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["previous_valid_until"], Value::Null, "{rotated}");
    let third = rotated["secret"].as_str().unwrap().to_owned();
    app.create_session(&couple_session(120, 50)).await;
    let received = receiver
        .wait_for("a delivery after the second rotation", WAIT, |r| {
            r.len() == 2
        })
        .await;
    assert_signed(&third, &received[1]);
    let old = standardwebhooks::Webhook::new(&second).unwrap();
    assert!(
        old.verify(received[1].body.as_bytes(), &received[1].headers)
            .is_err(),
        "the secret rotated with no overlap still signs"
    );

    // More than a week is refused, in the error shape, naming the field;
    // the secret stays.
    let (status, refused) = rotate(Some(json!({"previous_valid_hours": 169}))).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["error"]["field"], "previous_valid_hours",
        "{refused}"
    );
    app.create_session(&couple_session(180, 50)).await;
    let received = receiver
        .wait_for("a delivery after the refused rotation", WAIT, |r| {
            r.len() == 3
        })
        .await;
    assert_signed(&third, &received[2]);
    app.stop().await;
}
