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
    let store = app.running().scheduler().store();
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
