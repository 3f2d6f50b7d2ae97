//! `GET /v1/openapi.json`: served without a key, valid by a maintained
//! OpenAPI validator (`openapi-spec-validator`), listing every route the
//! router serves with the methods it answers, and describing what the
//! server really sends: each response below, errors included, is checked
//! against the schema the document gives for its path, method and status
//! (JSON Schema 2020-12, the `jsonschema` crate).

use std::collections::BTreeSet;

use chrono::{Datelike, Duration, Utc};
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};

use crate::helpers::{couple_session, TestApp};
use tandem::auth::ApiRole;

async fn document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "served without an API key");
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearer"]["description"]})
    );
    assert!(doc["components"]["schemas"]["Error"]["example"].is_object());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    match std::process::Command::new("openapi-spec-validator")
        .arg(&file)
        .output()
    {
        Ok(output) => assert!(
            output.status.success(),
            "openapi-spec-validator refused the document:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => {
            let required = std::env::var("REQUIRE_OPENAPI_VALIDATOR").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "REQUIRE_OPENAPI_VALIDATOR=1 but openapi-spec-validator cannot run: {error}"
            );
            eprintln!("SKIPPED: openapi-spec-validator is not installed (pip install openapi-spec-validator): {error}");
        }
    }
}

/// The methods the router answers on `path`: what a 405 lists in `Allow`.
async fn methods(app: &TestApp, path: &str) -> BTreeSet<String> {
    let concrete = path
        .split('/')
        .map(|s| if s.starts_with('{') { "x-1" } else { s })
        .collect::<Vec<_>>()
        .join("/");
    let response = app
        .client
        .request(Method::from_bytes(b"PROPFIND").unwrap(), app.url(&concrete))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405, "{path}");
    response.headers()["allow"]
        .to_str()
        .unwrap()
        .split(',')
        .map(|m| m.trim().to_lowercase())
        .filter(|m| m != "head" && m != "options")
        .collect()
}

#[tokio::test]
async fn every_route_the_router_serves_is_in_the_document() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let mut paths = tandem::http::v1_paths();
    assert!(paths.len() >= 18, "{paths:?}");
    paths.extend(["/healthz".to_owned(), "/metrics".to_owned()]);
    for path in paths {
        let documented: BTreeSet<String> = doc["paths"][&path]
            .as_object()
            .map(|ops| ops.keys().cloned().collect())
            .unwrap_or_default();
        let served = methods(&app, &path).await;
        assert_eq!(
            documented, served,
            "{path}: the router answers {served:?}, the document lists {documented:?}"
        );
        for method in &served {
            let operation = &doc["paths"][&path][method];
            assert!(operation["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()));
        }
    }
}

/// Checks responses against the document's schemas.
struct Conformance {
    doc: Value,
    checked: BTreeSet<(String, String, u16)>,
}

impl Conformance {
    /// Sends `request` (for `method` on the documented `path`), checks the
    /// answer's status is documented and its body matches that schema, and
    /// returns the status and body.
    async fn check(&mut self, method: &str, path: &str, request: RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let documented = &self.doc["paths"][path][method]["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {path} answered {status}, which the document does not list: {text}"
        );
        let body = if text.is_empty() {
            Value::Null
        } else if content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"))
        {
            serde_json::from_str(&text).unwrap()
        } else {
            Value::String(text)
        };
        match &documented["content"] {
            Value::Null => assert!(
                body.is_null(),
                "{method} {path} {status}: no body documented, got {body}"
            ),
            content => {
                let media = content_type.expect("a body has a content type");
                let media = media.split(';').next().unwrap();
                let (_, described) = content
                    .as_object()
                    .unwrap()
                    .iter()
                    .find(|(k, _)| k.split(';').next().unwrap() == media)
                    .unwrap_or_else(|| {
                        panic!("{method} {path} {status}: {media} is not documented")
                    });
                let mut schema = match &described["schema"] {
                    // Documented as a media type without a schema (this
                    // document itself): any body of that type.
                    Value::Null => json!({}),
                    schema => schema.clone(),
                };
                schema
                    .as_object_mut()
                    .expect("a schema object")
                    .insert("components".into(), self.doc["components"].clone());
                let validator = jsonschema::draft202012::new(&schema)
                    .unwrap_or_else(|e| panic!("{method} {path} {status}: bad schema: {e}"));
                let errors: Vec<String> = validator
                    .iter_errors(&body)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{method} {path} {status} does not match its schema: {errors:?}\n{body:#}"
                );
            }
        }
        self.checked
            .insert((method.to_owned(), path.to_owned(), status));
        (status, body)
    }
}

fn monday_ahead() -> String {
    let mut day = Utc::now().date_naive() + Duration::days(7);
    while day.weekday() != chrono::Weekday::Mon {
        day += Duration::days(1);
    }
    day.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_responses_match_their_schemas_errors_included() {
    let app = TestApp::spawn().await;
    let mut c = Conformance {
        doc: document(&app).await,
        checked: BTreeSet::new(),
    };
    let scheduler = app.api_key(ApiRole::Scheduler).await;
    let compliance = app.api_key(ApiRole::Compliance).await;
    let metrics = app.api_key(ApiRole::Metrics).await;
    let url = |p: &str| app.url(p);
    let admin = |m: Method, p: &str| app.client.request(m, url(p)).bearer_auth(&app.admin_key);
    let as_key = |m: Method, p: &str, key: &str| app.client.request(m, url(p)).bearer_auth(key);

    // Sessions.
    let body = couple_session(60, 50);
    let (status, session) = c
        .check(
            "post",
            "/v1/sessions",
            as_key(Method::POST, "/v1/sessions", &scheduler).json(&body),
        )
        .await;
    assert_eq!(status, 201);
    let id = session["id"].as_str().unwrap().to_owned();
    let one = format!("/v1/sessions/{id}");
    let (status, _) = c
        .check(
            "post",
            "/v1/sessions",
            admin(Method::POST, "/v1/sessions").json(&body),
        )
        .await;
    assert!(matches!(status, 201 | 409), "{status}");
    let (status, _) = c
        .check(
            "post",
            "/v1/sessions",
            admin(Method::POST, "/v1/sessions").json(&json!({"title": ""})),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = c
        .check(
            "post",
            "/v1/sessions",
            admin(Method::POST, "/v1/sessions")
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = c
        .check(
            "post",
            "/v1/sessions",
            admin(Method::POST, "/v1/sessions").body("{}"),
        )
        .await;
    assert_eq!(status, 415);
    let (status, _) = c
        .check(
            "post",
            "/v1/sessions",
            app.client.post(url("/v1/sessions")).json(&body),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = c
        .check(
            "post",
            "/v1/sessions",
            as_key(Method::POST, "/v1/sessions", &compliance).json(&body),
        )
        .await;
    assert_eq!(status, 403);
    c.check("get", "/v1/sessions", admin(Method::GET, "/v1/sessions"))
        .await;
    let (status, _) = c
        .check(
            "get",
            "/v1/sessions",
            admin(Method::GET, "/v1/sessions?from=yesterday"),
        )
        .await;
    assert_eq!(status, 422);
    c.check("get", "/v1/sessions/{id}", admin(Method::GET, &one))
        .await;
    let (status, _) = c
        .check(
            "get",
            "/v1/sessions/{id}",
            admin(
                Method::GET,
                "/v1/sessions/00000000-0000-0000-0000-000000000000",
            ),
        )
        .await;
    assert_eq!(status, 404);
    let later = (Utc::now() + Duration::hours(3)).to_rfc3339();
    c.check(
        "patch",
        "/v1/sessions/{id}",
        admin(Method::PATCH, &one).json(&json!({"starts_at": later})),
    )
    .await;
    let (status, invites) = c
        .check(
            "post",
            "/v1/sessions/{id}/invites",
            admin(Method::POST, &format!("{one}/invites")),
        )
        .await;
    assert_eq!(status, 200, "{invites}");
    let (status, _) = c
        .check(
            "post",
            "/v1/sessions/{id}/participants/{participant}/revoke",
            admin(Method::POST, &format!("{one}/participants/par-1/revoke")),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = c
        .check(
            "post",
            "/v1/sessions/{id}/participants/{participant}/revoke",
            admin(Method::POST, &format!("{one}/participants/nobody/revoke")),
        )
        .await;
    assert_eq!(status, 404);

    // Attendance (before the session is cancelled, with an annotation).
    let (status, _) = c
        .check(
            "post",
            "/v1/attendance/sessions/{id}/annotations",
            admin(
                Method::POST,
                &format!("/v1/attendance/sessions/{id}/annotations"),
            )
            .json(&json!({"participant_id": "pat-1", "text": "Joined by phone"})),
        )
        .await;
    assert!(
        status == 201 || status == 404 || status == 409 || status == 422,
        "{status}"
    );
    let (from, to) = (
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (Utc::now() + Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    for query in ["", "&format=csv"] {
        c.check(
            "get",
            "/v1/attendance",
            as_key(
                Method::GET,
                &format!("/v1/attendance?from={from}&to={to}{query}"),
                &compliance,
            ),
        )
        .await;
    }
    let (status, _) = c
        .check(
            "get",
            "/v1/attendance",
            as_key(Method::GET, "/v1/attendance?from=x", &compliance),
        )
        .await;
    assert_eq!(status, 422);
    c.check(
        "get",
        "/v1/attendance/sessions/{id}",
        as_key(
            Method::GET,
            &format!("/v1/attendance/sessions/{id}"),
            &compliance,
        ),
    )
    .await;
    let (status, _) = c
        .check(
            "get",
            "/v1/attendance/sessions/{id}",
            as_key(
                Method::GET,
                "/v1/attendance/sessions/not-a-session",
                &compliance,
            ),
        )
        .await;
    assert_eq!(status, 404);
    let week = Utc::now().date_naive().iso_week();
    c.check(
        "get",
        "/v1/attendance/weekly",
        as_key(
            Method::GET,
            &format!(
                "/v1/attendance/weekly?week={}-W{:02}",
                week.year(),
                week.week()
            ),
            &compliance,
        ),
    )
    .await;
    c.check(
        "get",
        "/v1/attendance/verify",
        as_key(Method::GET, "/v1/attendance/verify", &compliance),
    )
    .await;
    c.check(
        "get",
        "/v1/audit/exports",
        admin(Method::GET, "/v1/audit/exports"),
    )
    .await;
    let (status, _) = c
        .check(
            "get",
            "/v1/audit/exports",
            as_key(Method::GET, "/v1/audit/exports", &compliance),
        )
        .await;
    assert_eq!(status, 403);

    let (status, _) = c
        .check("delete", "/v1/sessions/{id}", admin(Method::DELETE, &one))
        .await;
    assert_eq!(status, 204);

    // People, availability, slots.
    for (who, role) in [("pat-9", "patient"), ("clin-9", "clinician")] {
        let person = json!({"name": "Someone", "role": role, "timezone": "America/New_York"});
        let path = format!("/v1/people/{who}");
        let (status, _) = c
            .check(
                "put",
                "/v1/people/{id}",
                admin(Method::PUT, &path).json(&person),
            )
            .await;
        assert_eq!(status, 201);
        let (status, _) = c
            .check(
                "put",
                "/v1/people/{id}",
                admin(Method::PUT, &path).json(&person),
            )
            .await;
        assert_eq!(status, 200);
        c.check("get", "/v1/people/{id}", admin(Method::GET, &path))
            .await;
        let availability = json!({"timezone": "America/New_York",
            "weekly": [{"day": "mon", "start": "09:00", "end": "21:00"}],
            "exceptions": [{"date": "2030-12-24", "available": false}]});
        c.check(
            "put",
            "/v1/people/{id}/availability",
            admin(Method::PUT, &format!("{path}/availability")).json(&availability),
        )
        .await;
        c.check(
            "get",
            "/v1/people/{id}/availability",
            admin(Method::GET, &format!("{path}/availability")),
        )
        .await;
    }
    let (status, _) = c
        .check(
            "get",
            "/v1/people/{id}",
            admin(Method::GET, "/v1/people/nobody"),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = c
        .check(
            "put",
            "/v1/people/{id}/availability",
            admin(Method::PUT, "/v1/people/pat-9/availability")
                .json(&json!({"timezone": "Mars/Olympus"})),
        )
        .await;
    assert_eq!(status, 422);
    let (status, slots) = c
        .check(
            "post",
            "/v1/slots/search",
            admin(Method::POST, "/v1/slots/search").json(
                &json!({"people": ["pat-9", "clin-9"], "duration_minutes": 50,
                    "from": (Utc::now() + Duration::days(1)).to_rfc3339(),
                    "to": (Utc::now() + Duration::days(15)).to_rfc3339()}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{slots}");

    // Series.
    let series = json!({"title": "IOP couples track", "kind": "couple", "timezone": "America/New_York",
        "rrule": "FREQ=WEEKLY;BYDAY=MO;COUNT=3", "first_starts_at": format!("{}T18:00:00", monday_ahead()),
        "duration_minutes": 60, "clinician": {"id": "clin-8", "name": "Dr Rivera"},
        "participants": [{"id": "pat-8", "name": "Alex Morgan", "role": "patient"},
                         {"id": "par-8", "name": "Sam Morgan", "role": "partner"}]});
    let (status, created) = c
        .check(
            "post",
            "/v1/series",
            admin(Method::POST, "/v1/series").json(&series),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let sid = created["id"].as_str().unwrap();
    let spath = format!("/v1/series/{sid}");
    c.check("get", "/v1/series/{id}", admin(Method::GET, &spath))
        .await;
    c.check(
        "patch",
        "/v1/series/{id}",
        admin(Method::PATCH, &spath).json(&json!({"start_time": "19:00"})),
    )
    .await;
    c.check(
        "post",
        "/v1/series/{id}/invites",
        admin(Method::POST, &format!("{spath}/invites")),
    )
    .await;
    let (status, _) = c
        .check("delete", "/v1/series/{id}", admin(Method::DELETE, &spath))
        .await;
    assert_eq!(status, 204);
    let (status, _) = c
        .check(
            "get",
            "/v1/series/{id}",
            admin(
                Method::GET,
                "/v1/series/00000000-0000-0000-0000-000000000000",
            ),
        )
        .await;
    assert_eq!(status, 404);

    // Operations.
    c.check("get", "/healthz", app.client.get(url("/healthz")))
        .await;
    c.check("get", "/metrics", as_key(Method::GET, "/metrics", &metrics))
        .await;
    let (status, _) = c
        .check("get", "/metrics", app.client.get(url("/metrics")))
        .await;
    assert_eq!(status, 401);
    c.check(
        "get",
        "/v1/openapi.json",
        app.client.get(url("/v1/openapi.json")),
    )
    .await;
    let (status, _) = c
        .check(
            "get",
            "/v1/signal",
            app.client
                .get(url("/v1/signal"))
                .header("origin", "https://elsewhere.example"),
        )
        .await;
    assert!(matches!(status, 400 | 403 | 405 | 426), "{status}");

    // Webhooks (admin only).
    let (status, created) = c
        .check(
            "post",
            "/v1/webhooks",
            admin(Method::POST, "/v1/webhooks").json(&json!({
                "url": "https://ehr.example/tandem",
                "events": ["participant.waiting", "session.ended"],
                "description": "EHR"
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, _) = c
        .check(
            "post",
            "/v1/webhooks",
            admin(Method::POST, "/v1/webhooks")
                .json(&json!({"url": "http://ehr.example/tandem", "events": ["nope"]})),
        )
        .await;
    assert_eq!(status, 422);
    let hook = format!("/v1/webhooks/{}", created["id"].as_str().unwrap());
    c.check("get", "/v1/webhooks", admin(Method::GET, "/v1/webhooks"))
        .await;
    c.check("get", "/v1/webhooks/{id}", admin(Method::GET, &hook))
        .await;
    let (status, _) = c
        .check(
            "get",
            "/v1/webhooks/{id}",
            admin(Method::GET, "/v1/webhooks/no-such-receiver"),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = c
        .check(
            "patch",
            "/v1/webhooks/{id}",
            admin(Method::PATCH, &hook).json(&json!({"description": "EHR (test)"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(
            "post",
            "/v1/webhooks/{id}/rotate_secret",
            admin(Method::POST, &format!("{hook}/rotate_secret")),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(
            "get",
            "/v1/webhooks/{id}/deliveries",
            admin(Method::GET, &format!("{hook}/deliveries?limit=10")),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(
            "post",
            "/v1/webhooks/{id}/deliveries/{delivery_id}/replay",
            admin(Method::POST, &format!("{hook}/deliveries/999999/replay")),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = c
        .check("delete", "/v1/webhooks/{id}", admin(Method::DELETE, &hook))
        .await;
    assert_eq!(status, 204);

    // Every documented operation was exercised.
    let documented: BTreeSet<(String, String)> = c.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    let exercised: BTreeSet<(String, String)> = c
        .checked
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    let missing: Vec<_> = documented.difference(&exercised).collect();
    assert!(missing.is_empty(), "not exercised: {missing:?}");
}
