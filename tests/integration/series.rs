//! Recurring series over the real API: every occurrence created at its wall
//! clock time or none of them, one link per person for the whole program
//! (during an occurrence and between two), the calendar feed, moving and
//! cancelling what is still to come.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::America::New_York;
use serde_json::{json, Value};

use crate::helpers::signal_client::{invite_token, SignalClient};
use crate::helpers::TestApp;
use crate::scheduling::{monday_ahead, read, send};

const WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn series_body(first_local: &str, rrule: &str, minutes: i64, clinician: &str) -> Value {
    json!({"title": "IOP couples track", "kind": "couple", "timezone": "America/New_York",
        "rrule": rrule, "first_starts_at": first_local, "duration_minutes": minutes,
        "clinician": {"id": clinician, "name": "Dr Rivera"},
        "participants": [{"id": "pat-1", "name": "Alex Morgan", "role": "patient"},
                         {"id": "par-1", "name": "Sam Morgan", "role": "partner"}],
        "settings": {"auto_admit": false}})
}

fn local_time(value: &Value) -> String {
    let t: DateTime<Utc> = value.as_str().unwrap().parse().unwrap();
    t.with_timezone(&New_York).format("%a %H:%M").to_string()
}

#[tokio::test]
async fn a_series_is_created_whole_at_18_00_or_not_at_all() {
    let app = TestApp::spawn().await;
    let monday = monday_ahead();
    let first = format!("{monday}T18:00:00");
    let (status, series) = send(
        app.post("/v1/series"),
        &series_body(&first, "FREQ=WEEKLY;BYDAY=MO,WE,TH;COUNT=6", 180, "clin-1"),
    )
    .await;
    assert_eq!(status, 201, "{series}");
    let id = series["id"].as_str().unwrap();
    let sessions = series["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 6);
    let mut days = Vec::new();
    for sid in sessions {
        let s = read(&app, &format!("/v1/sessions/{}", sid.as_str().unwrap())).await;
        assert_eq!(s["series_id"], id);
        days.push(local_time(&s["starts_at"]));
    }
    assert_eq!(
        days,
        [
            "Mon 18:00",
            "Wed 18:00",
            "Thu 18:00",
            "Mon 18:00",
            "Wed 18:00",
            "Thu 18:00"
        ]
    );
    let view = read(&app, &format!("/v1/series/{id}")).await;
    assert_eq!(view["sessions"], series["sessions"]);
    assert_eq!(view["rrule"], "FREQ=WEEKLY;BYDAY=MO,WE,TH;COUNT=6");

    // All future occurrences move to 19:00 wall clock.
    let (status, moved) = send(
        app.client
            .patch(app.url(&format!("/v1/series/{id}")))
            .bearer_auth(&app.admin_key),
        &json!({"start_time": "19:00"}),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    for o in moved["occurrences"].as_array().unwrap() {
        assert!(local_time(&o["starts_at"]).ends_with("19:00"), "{o}");
    }

    // A new roster for what is to come: another partner. A roster that
    // breaks the couple rule is named and changes nothing.
    let series_path = format!("/v1/series/{id}");
    let patch = |body: Value| {
        let request = app
            .client
            .patch(app.url(&series_path))
            .bearer_auth(&app.admin_key);
        async move { send(request, &body).await }
    };
    let (status, error) = patch(json!({"clinician": {"id": "clin-1", "name": "Dr Rivera"},
        "participants": [{"id": "pat-1", "name": "Alex Morgan", "role": "patient"}]}))
    .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["field"], "participants");
    let (status, changed) = patch(json!({"clinician": {"id": "clin-1", "name": "Dr Rivera"},
        "participants": [{"id": "pat-1", "name": "Alex Morgan", "role": "patient"},
                         {"id": "par-7", "name": "Robin Morgan", "role": "partner"}]}))
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["participants"][1]["id"], "par-7");
    for sid in sessions {
        let s = read(&app, &format!("/v1/sessions/{}", sid.as_str().unwrap())).await;
        assert_eq!(s["participants"][1]["id"], "par-7", "{s}");
        assert!(
            local_time(&s["starts_at"]).ends_with("19:00"),
            "the time stays"
        );
    }

    // Another clinician already has a session at the third occurrence's
    // time: the series for them is refused whole, naming that session.
    let third: DateTime<Utc> = moved["occurrences"][2]["starts_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let blocker = app
        .create_session(&json!({"title": "Individual", "kind": "individual",
            "starts_at": third + Duration::hours(1), "ends_at": third + Duration::hours(2),
            "clinician": {"id": "clin-2", "name": "Dr Chen"},
            "participants": [{"id": "pat-9", "name": "Jo", "role": "patient"}]}))
        .await;
    let mut other = series_body(&first, "FREQ=WEEKLY;BYDAY=MO,WE,TH;COUNT=6", 180, "clin-2");
    other["participants"][0]["id"] = json!("pat-2");
    other["participants"][1]["id"] = json!("par-2");
    let (status, error) = send(app.post("/v1/series"), &other).await;
    assert_eq!(status, 409, "{error}");
    let conflicts = error["error"]["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{error}");
    assert_eq!(conflicts[0]["session_id"], blocker["id"]);
    assert_eq!(conflicts[0]["participant_id"], "clin-2");
    let all = read(&app, "/v1/sessions").await;
    let clin2 = all["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["clinician"]["id"] == "clin-2")
        .count();
    assert_eq!(clin2, 1, "no occurrence of the refused series was written");

    // Bad input: a 422 naming the field, nothing written.
    let bad = [
        (json!({"rrule": "FREQ=WEEKLY;BYDAY=MO"}), "rrule"),
        (json!({"rrule": "FREQ=DAILY;COUNT=201"}), "rrule"),
        (json!({"rrule": "FREQ=MONTHLY;COUNT=14"}), "rrule"),
        (json!({"timezone": "Mars/Olympus"}), "timezone"),
        (json!({"duration_minutes": 0}), "duration_minutes"),
    ];
    for (patch, field) in bad {
        let mut body = other.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, error) = send(app.post("/v1/series"), &body).await;
        assert_eq!(status, 422, "{patch}: {error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    let after = read(&app, "/v1/sessions").await;
    assert_eq!(after["sessions"].as_array().unwrap().len(), 7);
    app.stop().await;
}

#[tokio::test]
async fn one_series_link_admits_during_an_occurrence_and_waits_between() {
    let app = TestApp::spawn().await;
    // Daily, the first one running since ten minutes ago.
    let first = (Utc::now() - Duration::minutes(10))
        .with_timezone(&New_York)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let (status, series) = send(
        app.post("/v1/series"),
        &series_body(&first, "FREQ=DAILY;COUNT=3", 60, "clin-1"),
    )
    .await;
    assert_eq!(status, 201, "{series}");
    let id = series["id"].as_str().unwrap().to_owned();
    let occurrences: Vec<String> = series["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();

    let response = app
        .post(&format!("/v1/series/{id}/invites"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let invites: Value = response.json().await.unwrap();
    let invites = invites["invites"].as_array().unwrap().clone();
    let people: Vec<&str> = invites
        .iter()
        .map(|i| i["participant_id"].as_str().unwrap())
        .collect();
    assert_eq!(people, ["clin-1", "pat-1", "par-1"]);
    for invite in &invites {
        let url = invite["url"].as_str().unwrap();
        assert!(url.starts_with(&format!("{}/j/{id}#t=", app.base)), "{url}");
        assert!(invite["calendar_url"]
            .as_str()
            .unwrap()
            .starts_with(&app.base));
    }
    let link =
        |who: &str| invite_token(invites.iter().find(|i| i["participant_id"] == who).unwrap());

    // During the first occurrence the clinician's link opens it.
    let mut clinician = SignalClient::connect(&app).await.unwrap();
    let joined = clinician.join(&link("clin-1")).await.unwrap();
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["session"]["id"], occurrences[0].as_str());

    // A session of the same people outside the series is not reachable
    // with the series link.
    let mut single = crate::helpers::couple_session(-5, 60);
    single["clinician"]["id"] = json!("clin-1");
    app.create_session(&single).await;

    // The clinician ends the first occurrence: between occurrences the
    // link is refused with the next one's opening time.
    clinician.send_json(json!({"type": "end"})).await.unwrap();
    clinician.recv_until("ended", WAIT).await.unwrap();
    let second = read(&app, &format!("/v1/sessions/{}", occurrences[1])).await;
    for who in ["clin-1", "pat-1"] {
        let mut client = SignalClient::connect(&app).await.unwrap();
        let reply = client.join(&link(who)).await.unwrap();
        assert_eq!(reply["type"], "denied", "{who}: {reply}");
        assert_eq!(reply["code"], "not_yet_open", "{who}: {reply}");
        let opens: DateTime<Utc> = reply["opens_at"].as_str().unwrap().parse().unwrap();
        let expected: DateTime<Utc> = second["opens_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(opens, expected, "{reply}");
    }

    // The partner's calendar: the two occurrences to come and the single
    // session, each with a join link, titled without health information.
    let feed_url = invites[2]["calendar_url"].as_str().unwrap().to_owned();
    let response = app.client.get(&feed_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/calendar"));
    let feed = response.text().await.unwrap();
    assert!(feed.starts_with("BEGIN:VCALENDAR"), "{feed}");
    assert_eq!(feed.matches("BEGIN:VEVENT").count(), 3, "{feed}");
    assert_eq!(
        feed.matches("SUMMARY:Session with your care team").count(),
        3,
        "{feed}"
    );
    assert!(
        !feed.contains("IOP") && !feed.contains("Sam") && !feed.contains("Joint"),
        "{feed}"
    );
    assert!(
        feed.contains(&format!("/j/{}#t=", occurrences[1])),
        "{feed}"
    );

    // Revoking the partner revokes the feed.
    let response = app
        .post(&format!(
            "/v1/sessions/{}/participants/par-1/revoke",
            occurrences[1]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = app.client.get(&feed_url).send().await.unwrap();
    assert_eq!(response.status(), 404);

    // Cancelling the series cancels what is to come and keeps the past.
    let response = app
        .delete(&format!("/v1/series/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let view = read(&app, &format!("/v1/series/{id}")).await;
    let statuses: Vec<&str> = view["occurrences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ended", "cancelled", "cancelled"]);
    assert_eq!(view["status"], "cancelled");
    let mut client = SignalClient::connect(&app).await.unwrap();
    let reply = client.join(&link("pat-1")).await.unwrap();
    assert_eq!(reply["code"], "session_cancelled", "{reply}");
    app.stop().await;
}
