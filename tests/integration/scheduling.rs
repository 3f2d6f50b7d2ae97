//! Scheduling over the real API: people and their availability, common
//! slots for a couple and their clinician, double-booking refused (409),
//! and a rescheduled session whose old link opens at the new time.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::America::New_York;
use serde_json::{json, Value};

use crate::helpers::signal_client::{invite_token, SignalClient};
use crate::helpers::TestApp;

/// The Monday at least a week ahead, in New York.
pub(crate) fn monday_ahead() -> NaiveDate {
    let mut day = Utc::now().with_timezone(&New_York).date_naive() + Duration::days(7);
    while day.weekday() != chrono::Weekday::Mon {
        day += Duration::days(1);
    }
    day
}

/// `hh:mm` on `day` in New York, as an instant.
fn ny(day: NaiveDate, h: u32, m: u32) -> DateTime<Utc> {
    New_York
        .from_local_datetime(&day.and_hms_opt(h, m, 0).unwrap())
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

/// `GET path` as JSON; panics unless 200.
pub(crate) async fn read(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// Sends `body` as JSON; the status and the JSON answer.
pub(crate) async fn send(request: reqwest::RequestBuilder, body: &Value) -> (u16, Value) {
    let response = request.json(body).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn put(app: &TestApp, path: &str) -> reqwest::RequestBuilder {
    app.client.put(app.url(path)).bearer_auth(&app.admin_key)
}

fn patch(app: &TestApp, path: &str) -> reqwest::RequestBuilder {
    app.client.patch(app.url(path)).bearer_auth(&app.admin_key)
}

/// Files the three people of the worked example (docs/api.md) with their
/// availability: the patient and the clinician in New York, the partner in
/// London.
pub(crate) async fn three_people(app: &TestApp) {
    let people = [
        ("pat-1", "Alex Morgan", "patient", "America/New_York"),
        ("par-1", "Sam Morgan", "partner", "Europe/London"),
        ("clin-1", "Dr Rivera", "clinician", "America/New_York"),
    ];
    for (id, name, role, tz) in people {
        let (status, body) = send(
            put(app, &format!("/v1/people/{id}")),
            &json!({"name": name, "role": role, "timezone": tz, "household": "h-1"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let availability = [
        (
            "pat-1",
            json!({"timezone": "America/New_York",
                   "weekly": [{"day": "mon", "start": "17:30", "end": "21:30"},
                              {"day": "wed", "start": "17:30", "end": "21:30"}]}),
        ),
        (
            // 18:00-23:00 in London is 13:00-18:00 in New York in winter.
            "par-1",
            json!({"timezone": "Europe/London",
                   "weekly": [{"day": "mon", "start": "18:00", "end": "23:00"},
                              {"day": "wed", "start": "18:00", "end": "23:00"}]}),
        ),
        (
            "clin-1",
            json!({"timezone": "America/New_York",
                   "weekly": [{"day": "mon", "start": "09:00", "end": "19:00"},
                              {"day": "wed", "start": "09:00", "end": "12:00"}]}),
        ),
    ];
    for (id, body) in availability {
        let (status, got) = send(put(app, &format!("/v1/people/{id}/availability")), &body).await;
        assert_eq!(status, 200, "{got}");
    }
}

fn starts(slots: &Value) -> Vec<DateTime<Utc>> {
    slots["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["starts_at"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn people_and_availability_are_stored_and_read_back() {
    let app = TestApp::spawn().await;
    let person = json!({"name": "Alex Morgan", "role": "patient", "timezone": "America/New_York", "mrn": "A-55"});
    let (status, created) = send(put(&app, "/v1/people/pat-1"), &person).await;
    assert_eq!(status, 201, "the first PUT creates: {created}");
    let (status, again) = send(put(&app, "/v1/people/pat-1"), &person).await;
    assert_eq!(status, 200, "the next PUT replaces: {again}");
    let view = read(&app, "/v1/people/pat-1").await;
    assert_eq!(view["mrn"], "A-55");
    assert_eq!(view["timezone"], "America/New_York");

    let document = json!({"timezone": "America/New_York",
        "weekly": [{"day": "mon", "start": "17:30", "end": "21:30"}],
        "exceptions": [{"date": "2026-12-24", "available": false},
                       {"date": "2026-12-27", "available": true, "start": "10:00", "end": "14:00"}]});
    let (status, _) = send(put(&app, "/v1/people/pat-1/availability"), &document).await;
    assert_eq!(status, 200);
    let view = read(&app, "/v1/people/pat-1/availability").await;
    assert_eq!(view, document);

    // Every rule violation is a 422 naming its field, and nothing changes.
    let bad = [
        (
            json!({"timezone": "Mars/Olympus", "weekly": []}),
            "timezone",
        ),
        (
            json!({"timezone": "UTC", "weekly": [{"day": "mon", "start": "21:00", "end": "17:00"}]}),
            "weekly[0].end",
        ),
        (
            json!({"timezone": "UTC", "weekly": [{"day": "mon", "start": "17:00", "end": "20:00"},
                                                 {"day": "mon", "start": "19:00", "end": "21:00"}]}),
            "weekly[1]",
        ),
    ];
    for (body, field) in bad {
        let (status, error) = send(put(&app, "/v1/people/pat-1/availability"), &body).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    let still = read(&app, "/v1/people/pat-1/availability").await;
    assert_eq!(still, document, "a refused update changes nothing");

    let (status, _) = send(put(&app, "/v1/people/nobody/availability"), &document).await;
    assert_eq!(status, 404, "availability of someone not on file");
    let (status, error) = send(
        put(&app, "/v1/people/pat-2"),
        &json!({"name": "X", "role": "therapist", "timezone": "Nowhere/Land"}),
    )
    .await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = error["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["role", "timezone"]);
    app.stop().await;
}

#[tokio::test]
async fn common_slots_fit_all_three_and_skip_their_sessions() {
    let app = TestApp::spawn().await;
    three_people(&app).await;
    let monday = monday_ahead();
    let search = json!({"people": ["pat-1", "par-1", "clin-1"], "duration_minutes": 60,
        "from": ny(monday, 0, 0), "to": ny(monday + Duration::days(3), 0, 0),
        "step_minutes": 15, "gap_minutes": 0, "limit": 20});
    let (status, slots) = send(app.post("/v1/slots/search"), &search).await;
    assert_eq!(status, 200, "{slots}");
    // Monday: patient from 17:30, partner until 18:00 NY, clinician until
    // 19:00: only 17:30-18:00 is common, too short for 60 minutes... unless
    // the partner's London evening reaches further: 23:00 London = 18:00 NY.
    // Wednesday: the clinician is gone by 12:00. No slot at all.
    assert_eq!(starts(&slots), Vec::<DateTime<Utc>>::new(), "{slots}");

    // Widen the partner's Monday: 18:00-01:00 London (13:00-20:00 NY).
    let (status, _) = send(
        put(&app, "/v1/people/par-1/availability"),
        &json!({"timezone": "Europe/London",
                "weekly": [{"day": "mon", "start": "18:00", "end": "24:00"},
                           {"day": "tue", "start": "00:00", "end": "01:00"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, slots) = send(app.post("/v1/slots/search"), &search).await;
    // Common: 17:30-19:00 NY (the clinician stops at 19:00).
    assert_eq!(
        starts(&slots),
        vec![ny(monday, 17, 30), ny(monday, 17, 45), ny(monday, 18, 0)],
        "{slots}"
    );
    for slot in slots["slots"].as_array().unwrap() {
        assert!(
            slot["starts_at"].as_str().unwrap().ends_with('Z'),
            "UTC: {slot}"
        );
    }

    // A session of the clinician's with someone else at 18:00-18:30
    // leaves no hour free; cancelled, it frees the time again.
    let other = app
        .create_session(&json!({"title": "Individual", "kind": "individual",
            "starts_at": ny(monday, 18, 0), "ends_at": ny(monday, 18, 30),
            "clinician": {"id": "clin-1", "name": "Dr Rivera"},
            "participants": [{"id": "pat-9", "name": "Jo", "role": "patient"}]}))
        .await;
    let (_, slots) = send(app.post("/v1/slots/search"), &search).await;
    assert!(starts(&slots).is_empty(), "{slots}");
    let id = other["id"].as_str().unwrap();
    app.delete(&format!("/v1/sessions/{id}"))
        .send()
        .await
        .unwrap();
    let (_, slots) = send(app.post("/v1/slots/search"), &search).await;
    assert_eq!(starts(&slots).len(), 3, "{slots}");

    // Someone without availability on file is named; so is a long range.
    let mut missing = search.clone();
    missing["people"] = json!(["pat-1", "pat-7"]);
    let (status, error) = send(app.post("/v1/slots/search"), &missing).await;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["field"], "people");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pat-7"),
        "{error}"
    );
    let mut long = search.clone();
    long["to"] = json!(ny(monday + Duration::days(63), 0, 0));
    let (status, error) = send(app.post("/v1/slots/search"), &long).await;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["field"], "to", "{error}");
    app.stop().await;
}

fn couple_at(
    start: DateTime<Utc>,
    minutes: i64,
    clinician: &str,
    patient: &str,
    partner: &str,
) -> Value {
    json!({"title": "Joint session", "kind": "couple",
        "starts_at": start, "ends_at": start + Duration::minutes(minutes),
        "timezone": "America/New_York",
        "clinician": {"id": clinician, "name": "Dr Rivera"},
        "participants": [{"id": patient, "name": "Alex", "role": "patient"},
                         {"id": partner, "name": "Sam", "role": "partner"}]})
}

#[tokio::test]
async fn double_booking_is_refused_with_409_naming_the_other_session() {
    let app = TestApp::spawn().await;
    let start = ny(monday_ahead(), 18, 0);
    let first = app
        .create_session(&couple_at(start, 60, "clin-1", "pat-1", "par-1"))
        .await;
    let first_id = first["id"].as_str().unwrap();
    assert_eq!(first["allow_overlap"], false);

    // The same clinician, half an hour later, with another couple.
    let body = couple_at(
        start + Duration::minutes(30),
        60,
        "clin-1",
        "pat-2",
        "par-2",
    );
    let (status, error) = send(app.post("/v1/sessions"), &body).await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error"]["code"], "conflict");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains(first_id),
        "{error}"
    );
    assert_eq!(error["error"]["conflicts"][0]["session_id"], first_id);
    assert_eq!(error["error"]["conflicts"][0]["participant_id"], "clin-1");

    // A partner in two places at once is refused too.
    let (status, _) = send(
        app.post("/v1/sessions"),
        &couple_at(
            start + Duration::minutes(59),
            30,
            "clin-2",
            "pat-2",
            "par-1",
        ),
    )
    .await;
    assert_eq!(status, 409);

    // Back to back is not an overlap.
    let (status, _) = send(
        app.post("/v1/sessions"),
        &couple_at(
            start + Duration::minutes(60),
            30,
            "clin-1",
            "pat-2",
            "par-2",
        ),
    )
    .await;
    assert_eq!(status, 201);

    // The override is recorded on the session.
    let mut forced = body.clone();
    forced["allow_overlap"] = json!(true);
    let (status, created) = send(app.post("/v1/sessions"), &forced).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["allow_overlap"], true);
    let view = read(
        &app,
        &format!("/v1/sessions/{}", created["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(view["allow_overlap"], true);

    // Moving a session onto another is refused the same way, and moves
    // nothing.
    let later = app
        .create_session(&couple_at(
            start + Duration::hours(3),
            60,
            "clin-1",
            "pat-3",
            "par-3",
        ))
        .await;
    let later_id = later["id"].as_str().unwrap();
    let (status, error) = send(
        patch(&app, &format!("/v1/sessions/{later_id}")),
        &json!({"starts_at": start + Duration::minutes(15)}),
    )
    .await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error"]["conflicts"][0]["session_id"], first_id);
    let view = read(&app, &format!("/v1/sessions/{later_id}")).await;
    assert_eq!(view["starts_at"], later["starts_at"]);
    app.stop().await;
}

#[tokio::test]
async fn a_rescheduled_sessions_old_link_opens_at_the_new_time() {
    let app = TestApp::spawn().await;
    // In two hours: the links are not open yet.
    let start = Utc::now() + Duration::hours(2);
    let session = app
        .create_session(&couple_at(start, 50, "clin-1", "pat-1", "par-1"))
        .await;
    let id = session["id"].as_str().unwrap().to_owned();
    let old_links = app.invites(&id).await;
    let clinician = invite_token(&old_links[0]);
    let mut client = SignalClient::connect(&app).await.unwrap();
    let reply = client.join(&clinician).await.unwrap();
    assert_eq!(reply["code"], "not_yet_open", "{reply}");

    // Moved to start in ten minutes: its window (15 minutes early) is open.
    let new_start = Utc::now() + Duration::minutes(10);
    let (status, moved) = send(
        patch(&app, &format!("/v1/sessions/{id}")),
        &json!({"starts_at": new_start.to_rfc3339()}),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    let moved_start: DateTime<Utc> = moved["starts_at"].as_str().unwrap().parse().unwrap();
    let moved_end: DateTime<Utc> = moved["ends_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        moved_end - moved_start,
        Duration::minutes(50),
        "the length is kept"
    );

    // The link sent before the move now lets the clinician in.
    let mut client = SignalClient::connect(&app).await.unwrap();
    let reply = client.join(&clinician).await.unwrap();
    assert_eq!(reply["type"], "joined", "{reply}");
    assert_eq!(reply["session"]["id"], id.as_str());
    client.close().await.unwrap();

    // Its links are open now: it cannot move again (people may be waiting).
    let (status, error) = send(
        patch(&app, &format!("/v1/sessions/{id}")),
        &json!({"starts_at": (Utc::now() + Duration::hours(5)).to_rfc3339()}),
    )
    .await;
    assert_eq!(status, 409, "{error}");
    // A session that has started cannot move either.
    let running = app
        .create_session(&couple_at(
            Utc::now() - Duration::minutes(5),
            50,
            "clin-5",
            "pat-5",
            "par-5",
        ))
        .await;
    let (status, error) = send(
        patch(
            &app,
            &format!("/v1/sessions/{}", running["id"].as_str().unwrap()),
        ),
        &json!({"starts_at": (Utc::now() + Duration::hours(5)).to_rfc3339()}),
    )
    .await;
    assert_eq!(status, 409, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("started"),
        "{error}"
    );
    // Bad times are named.
    let spare = app
        .create_session(&couple_at(
            Utc::now() + Duration::hours(6),
            50,
            "clin-6",
            "pat-6",
            "par-6",
        ))
        .await;
    let (status, error) = send(
        patch(
            &app,
            &format!("/v1/sessions/{}", spare["id"].as_str().unwrap()),
        ),
        &json!({"starts_at": (Utc::now() + Duration::hours(8)).to_rfc3339(),
                "ends_at": (Utc::now() + Duration::hours(7)).to_rfc3339()}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["field"], "ends_at");
    app.stop().await;
}
