//! Scheduling through the REST API: create, read, list, cancel; every
//! validation error; authentication and roles.

use chrono::{Duration, Utc};
use serde_json::{json, Value};
use tandem::auth::ApiRole;

use crate::helpers::{couple_session, TestApp};

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"].clone())
}

#[tokio::test]
async fn a_couple_session_is_created_read_and_cancelled() {
    let app = TestApp::spawn().await;
    let created = app.create_session(&couple_session(30, 50)).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["kind"], "couple");
    assert_eq!(created["status"], "scheduled");
    assert_eq!(created["timezone"], "America/New_York");
    assert_eq!(created["clinician"]["id"], "clin-1");
    assert_eq!(created["participants"].as_array().unwrap().len(), 2);
    assert_eq!(created["participants"][0]["role"], "patient");
    assert_eq!(created["settings"]["auto_admit"], false);

    let read: Value = app
        .get(&format!("/v1/sessions/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read, created);

    let cancel = app
        .delete(&format!("/v1/sessions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 204);
    let read: Value = app
        .get(&format!("/v1/sessions/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "cancelled");
    assert!(read["cancelled_at"].is_string());

    // Cancelling twice changes nothing and is not an error.
    let again = app
        .delete(&format!("/v1/sessions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 204);
    // A cancelled session gives out no links.
    let invites = app
        .post(&format!("/v1/sessions/{id}/invites"))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(invites).await;
    assert_eq!((status, error["code"].as_str()), (409, Some("conflict")));
    app.stop().await;
}

#[tokio::test]
async fn group_and_individual_sessions_keep_their_roster() {
    let app = TestApp::spawn().await;
    let mut group = couple_session(0, 90);
    group["kind"] = json!("group");
    group["participants"] = json!([
        {"id": "a1", "name": "Ana", "role": "patient", "household": "h-a"},
        {"id": "a2", "name": "Ben", "role": "partner", "household": "h-a"},
        {"id": "b1", "name": "Cy", "role": "patient", "household": "h-b", "mrn": "MRN-77"},
        {"id": "b2", "name": "Di", "role": "partner", "household": "h-b"},
        {"id": "o1", "name": "Ed", "role": "observer"}
    ]);
    let created = app.create_session(&group).await;
    let people = created["participants"].as_array().unwrap();
    let ids: Vec<_> = people.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a1", "a2", "b1", "b2", "o1"]);
    assert_eq!(people[2]["household"], "h-b");
    assert_eq!(people[2]["mrn"], "MRN-77");

    let mut individual = couple_session(0, 45);
    individual["kind"] = json!("individual");
    individual["participants"] = json!([{"id": "p", "name": "Pat", "role": "patient"}]);
    let created = app.create_session(&individual).await;
    assert_eq!(created["kind"], "individual");
    app.stop().await;
}

#[tokio::test]
async fn sessions_are_listed_by_time_range() {
    let app = TestApp::spawn().await;
    let base = Utc::now() + Duration::days(1);
    let mut ids = Vec::new();
    for hours in [0, 3, 6] {
        let mut body = couple_session(0, 60);
        body["starts_at"] = json!((base + Duration::hours(hours)).to_rfc3339());
        body["ends_at"] =
            json!((base + Duration::hours(hours) + Duration::minutes(60)).to_rfc3339());
        ids.push(
            app.create_session(&body).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let list = |from: chrono::DateTime<Utc>, to: chrono::DateTime<Utc>| {
        app.get("/v1/sessions")
            .query(&[("from", from.to_rfc3339()), ("to", to.to_rfc3339())])
    };
    let listed = |body: Value| -> Vec<String> {
        body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let all: Value = list(base - Duration::hours(1), base + Duration::hours(10))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed(all), ids);
    // A range that overlaps the second session's last half hour and the third's start.
    let some: Value = list(base + Duration::minutes(210), base + Duration::minutes(370))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed(some), ids[1..]);
    let none: Value = list(base + Duration::hours(20), base + Duration::hours(21))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed(none), Vec::<String>::new());

    let bad = app.get("/v1/sessions?from=yesterday").send().await.unwrap();
    let (status, error) = error_of(bad).await;
    assert_eq!((status, error["field"].as_str()), (422, Some("from")));
    let reversed = list(base + Duration::hours(2), base).send().await.unwrap();
    let (status, error) = error_of(reversed).await;
    assert_eq!((status, error["field"].as_str()), (422, Some("to")));
    app.stop().await;
}

#[tokio::test]
async fn each_validation_error_is_422_and_names_the_field() {
    let app = TestApp::spawn().await;
    let past = (Utc::now() - Duration::hours(2)).to_rfc3339();
    type Change = fn(&mut Value);
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "ends before it starts",
            |b| b["ends_at"] = b["starts_at"].clone(),
            "ends_at",
        ),
        (
            "empty roster",
            |b| b["participants"] = json!([]),
            "participants",
        ),
        (
            "duplicate participant ids",
            |b| b["participants"][1]["id"] = json!("pat-1"),
            "participants[1].id",
        ),
        (
            "unknown role",
            |b| b["participants"][1]["role"] = json!("spouse"),
            "participants[1].role",
        ),
        (
            "unknown time zone",
            |b| b["timezone"] = json!("Europe/Atlantis"),
            "timezone",
        ),
        (
            "a second clinician",
            |b| b["participants"][1]["role"] = json!("clinician"),
            "participants[1].role",
        ),
        (
            "no clinician",
            |b| {
                b.as_object_mut().unwrap().remove("clinician");
            },
            "clinician",
        ),
        ("unknown kind", |b| b["kind"] = json!("family"), "kind"),
        (
            "missing title",
            |b| {
                b.as_object_mut().unwrap().remove("title");
            },
            "title",
        ),
        ("not a time", |b| b["starts_at"] = json!("3pm"), "starts_at"),
    ];
    for (case, change, field) in cases {
        let mut body = couple_session(10, 60);
        change(&mut body);
        let response = app.post("/v1/sessions").json(&body).send().await.unwrap();
        let (status, error) = error_of(response).await;
        assert_eq!(status, 422, "{case}: {error}");
        assert_eq!(error["code"], "validation_failed", "{case}");
        assert_eq!(error["field"], field, "{case}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(field),
            "{case}: {error}"
        );
    }

    let mut ended = couple_session(0, 60);
    ended["starts_at"] = json!((Utc::now() - Duration::hours(3)).to_rfc3339());
    ended["ends_at"] = json!(past);
    let (status, error) =
        error_of(app.post("/v1/sessions").json(&ended).send().await.unwrap()).await;
    assert_eq!((status, error["field"].as_str()), (422, Some("ends_at")));

    // Nothing invalid was stored.
    let list: Value = app
        .get("/v1/sessions")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["sessions"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_session_already_running_can_be_scheduled() {
    let app = TestApp::spawn().await;
    let created = app.create_session(&couple_session(-20, 60)).await;
    assert_eq!(created["status"], "scheduled");
    app.stop().await;
}

#[tokio::test]
async fn malformed_bodies_get_clear_errors() {
    let app = TestApp::spawn().await;
    let not_json = app
        .post("/v1/sessions")
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(not_json).await;
    assert_eq!((status, error["code"].as_str()), (400, Some("bad_request")));

    let mut typo = couple_session(10, 60);
    typo["start_at"] = typo["starts_at"].clone();
    let (status, error) =
        error_of(app.post("/v1/sessions").json(&typo).send().await.unwrap()).await;
    assert_eq!(status, 422);
    assert!(
        error["message"].as_str().unwrap().contains("start_at"),
        "{error}"
    );

    let mut wrong_type = couple_session(10, 60);
    wrong_type["participants"][0]["name"] = json!(42);
    let (status, error) = error_of(
        app.post("/v1/sessions")
            .json(&wrong_type)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("participants[0].name"),
        "{error}"
    );

    let no_type = app.post("/v1/sessions").body("{}").send().await.unwrap();
    assert_eq!(no_type.status(), 415);
    app.stop().await;
}

#[tokio::test]
async fn unknown_sessions_are_404() {
    let app = TestApp::spawn().await;
    for path in [
        "/v1/sessions/not-a-uuid",
        "/v1/sessions/7c1a0f5e-0000-4000-8000-000000000000",
    ] {
        let (status, error) = error_of(app.get(path).send().await.unwrap()).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let delete = app
        .delete("/v1/sessions/7c1a0f5e-0000-4000-8000-000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn credentials_are_checked_and_roles_enforced() {
    let app = TestApp::spawn().await;
    let body = couple_session(10, 60);

    let none = app
        .client
        .post(app.url("/v1/sessions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let (status, error) = error_of(none).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (401, Some("unauthorized"))
    );

    let bad = app
        .client
        .post(app.url("/v1/sessions"))
        .bearer_auth("tdm_not-a-real-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let basic = app
        .client
        .get(app.url("/v1/sessions"))
        .basic_auth("admin", Some("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);

    let compliance = app.api_key(ApiRole::Compliance).await;
    let forbidden = app
        .client
        .post(app.url("/v1/sessions"))
        .bearer_auth(&compliance)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(forbidden).await;
    assert_eq!((status, error["code"].as_str()), (403, Some("forbidden")));
    let list = app
        .client
        .get(app.url("/v1/sessions"))
        .bearer_auth(&compliance)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 403);

    let scheduler = app.api_key(ApiRole::Scheduler).await;
    let created = app
        .client
        .post(app.url("/v1/sessions"))
        .bearer_auth(&scheduler)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // A revoked key stops working at once.
    let store = app.running().store();
    let keys = store.api_keys().await.unwrap();
    let scheduler_id = keys
        .iter()
        .find(|k| k.role == ApiRole::Scheduler)
        .unwrap()
        .id;
    assert!(store
        .revoke_api_key(scheduler_id, Utc::now())
        .await
        .unwrap());
    let after = app
        .client
        .get(app.url("/v1/sessions"))
        .bearer_auth(&scheduler)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn api_keys_are_stored_only_as_hashes() {
    let app = TestApp::spawn().await;
    let db = app.config.database_path();
    let mut bytes = std::fs::read(&db).unwrap();
    // With WAL the newest pages may still be in the log.
    bytes.extend(std::fs::read(db.with_extension("db-wal")).unwrap_or_default());
    let key = app.admin_key.as_bytes();
    assert!(
        !bytes.windows(key.len()).any(|w| w == key),
        "the API key is in the database"
    );
    let hash = tandem::auth::api_key::hash(&app.admin_key);
    assert!(
        bytes.windows(hash.len()).any(|w| w == hash.as_bytes()),
        "the key's hash was not found"
    );
    app.stop().await;
}

/// A client that speaks only HTTP/2 (ALPN h2 over TLS, as browsers do).
fn http2_client(app: &TestApp) -> reqwest::Client {
    crate::helpers::client_trusting(&[&app.certs.ca_cert], app.https_addr)
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

#[tokio::test]
async fn early_refusals_arrive_whole_over_http2() {
    let app = TestApp::spawn().await;
    let client = http2_client(&app);
    // A body big enough to still be on its way when the key is refused.
    let mut body = couple_session(10, 60);
    body["title"] = json!("x".repeat(60 * 1024));
    for i in 0..50 {
        let mut request = client.post(app.url("/v1/sessions")).json(&body);
        if i % 2 == 1 {
            request = request.bearer_auth("tdm_not-a-real-key");
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e:?}"));
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e:?}"));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "call {i}"
        );
    }
    // A refusal of the role, after the key was looked up, too.
    let compliance = app.api_key(ApiRole::Compliance).await;
    for _ in 0..10 {
        let response = client
            .post(app.url("/v1/sessions"))
            .bearer_auth(&compliance)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await.0, 403);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let huge = vec![b'x'; 10 * 1024 * 1024];
    for client in [app.client.clone(), http2_client(&app)] {
        for key in [Some(app.admin_key.as_str()), None] {
            let mut request = client
                .post(app.url("/v1/sessions"))
                .header("content-type", "application/json")
                .body(huge.clone());
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let (status, error) = error_of(request.send().await.unwrap()).await;
            assert_eq!(
                (status, error["code"].as_str()),
                (413, Some("payload_too_large")),
                "{error}"
            );
        }
    }
    // Just under the limit is read, and judged as JSON.
    let under = vec![b' '; 256 * 1024 - 16];
    let response = app
        .post("/v1/sessions")
        .header("content-type", "application/json")
        .body(under)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.0, 400);
    app.stop().await;
}

#[tokio::test]
async fn every_rejection_has_the_json_error_shape() {
    let app = TestApp::spawn().await;
    let from = "2026-03-02T00:00:00Z";
    for path in [
        format!("/v1/attendance?from={from}&from={from}&to=2026-03-09T00:00:00Z"),
        "/v1/attendance/weekly?week=2026-W10&week=2026-W11".to_string(),
        format!("/v1/sessions?from={from}&from={from}"),
    ] {
        let response = app
            .client
            .get(app.url(&path))
            .bearer_auth(&app.admin_key)
            .send()
            .await
            .unwrap();
        let (status, error) = error_of(response).await;
        assert_eq!(status, 400, "{path}: {error}");
        assert_eq!(error["code"], "bad_request", "{path}: {error}");
        assert!(error["message"].as_str().is_some(), "{path}: {error}");
    }
    let wrong_method = app
        .client
        .put(app.url("/v1/sessions"))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(wrong_method).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let not_upgraded = app.client.get(app.url("/v1/signal")).send().await.unwrap();
    let status = not_upgraded.status().as_u16();
    let (_, error) = error_of(not_upgraded).await;
    assert!(
        status >= 400 && error["code"].is_string(),
        "{status} {error}"
    );
    app.stop().await;
}

#[tokio::test]
async fn metrics_are_served_only_with_a_key() {
    // Once reserved (501), now served: without a key it is a 401 like the
    // API's (metrics:: checks what it serves).
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (401, Some("unauthorized"))
    );
    app.stop().await;
}

#[tokio::test]
async fn api_answers_are_never_cached() {
    let app = TestApp::spawn().await;
    let session = app.create_session(&couple_session(10, 60)).await;
    let id = session["id"].as_str().unwrap();
    let responses = [
        app.get(&format!("/v1/sessions/{id}")).send().await.unwrap(),
        app.get("/v1/sessions").send().await.unwrap(),
        app.post(&format!("/v1/sessions/{id}/invites"))
            .send()
            .await
            .unwrap(),
        app.client
            .get(app.url("/v1/sessions"))
            .send()
            .await
            .unwrap(),
        app.get("/v1/attendance/verify").send().await.unwrap(),
    ];
    for response in responses {
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{}",
            response.url()
        );
    }
    let created = app
        .post("/v1/sessions")
        .json(&couple_session(10, 60))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["cache-control"], "no-store");
    app.stop().await;
}

/// curl, when this machine has one that speaks HTTP/2.
fn curl_with_http2() -> Option<std::path::PathBuf> {
    let output = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.contains("HTTP2")
        .then(|| std::path::PathBuf::from("curl"))
}

#[tokio::test]
async fn early_refusals_arrive_whole_to_curl_over_http2() {
    let Some(curl) = curl_with_http2() else {
        eprintln!("skipped: no curl with HTTP/2 on this machine");
        return;
    };
    let app = TestApp::spawn().await;
    let mut body = couple_session(10, 60);
    body["title"] = json!("x".repeat(60 * 1024));
    let file = app.dir.path().join("body.json");
    std::fs::write(&file, body.to_string()).unwrap();
    let port = app.https_addr.port();
    let mut failures = Vec::new();
    for i in 0..50 {
        let mut command = tokio::process::Command::new(&curl);
        command
            .args(["--silent", "--show-error", "--http2", "--cacert"])
            .arg(&app.certs.ca_cert)
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(["-H", "content-type: application/json"])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .args(["-w", "\n%{http_code} %{http_version}"]);
        if i % 2 == 1 {
            command.args(["-H", "authorization: Bearer tdm_not-a-real-key"]);
        }
        let output = command.arg(app.url("/v1/sessions")).output().await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let ok = output.status.success()
            && stdout.ends_with("401 2")
            && stdout.contains("\"code\":\"unauthorized\"");
        if !ok {
            failures.push(format!(
                "call {i}: {} {stdout:?} {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 50 failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // A body over the limit: the 413 arrives whole too.
    std::fs::write(&file, vec![b'x'; 10 * 1024 * 1024]).unwrap();
    for i in 0..5 {
        let output = tokio::process::Command::new(&curl)
            .args(["--silent", "--show-error", "--http2", "--cacert"])
            .arg(&app.certs.ca_cert)
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(["-H", "content-type: application/json"])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .args(["-w", "\n%{http_code} %{http_version}"])
            .arg(app.url("/v1/sessions"))
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success()
                && stdout.ends_with("413 2")
                && stdout.contains("\"code\":\"payload_too_large\""),
            "call {i}: {} {stdout:?} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    app.stop().await;
}
