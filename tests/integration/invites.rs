//! Invite links: one per roster member, signed with the server's key, with
//! the right claims and window; revocation; the join page they open.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use tandem::auth::invite;
use tandem::auth::signing_key::SigningKey;
use tandem::room::admission::{check_invite, Refusal};

use crate::helpers::{couple_session, jwt_payload, TestApp};

fn token_of(invite: &Value) -> String {
    let url = invite["url"].as_str().unwrap();
    url.split_once("#t=")
        .expect("the token is in the fragment")
        .1
        .to_owned()
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn every_roster_member_gets_a_link_with_the_right_claims_and_window() {
    let app = TestApp::spawn().await;
    let mut body = couple_session(60, 50);
    body["settings"] = json!({"early_join_minutes": 10, "overrun_grace_minutes": 20});
    let session = app.create_session(&body).await;
    let id = session["id"].as_str().unwrap();
    let starts = time(&session["starts_at"]);
    let ends = time(&session["ends_at"]);

    let invites = app.invites(id).await;
    let people: Vec<(&str, &str)> = invites
        .iter()
        .map(|i| {
            (
                i["participant_id"].as_str().unwrap(),
                i["role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        people,
        [
            ("clin-1", "clinician"),
            ("pat-1", "patient"),
            ("par-1", "partner")
        ]
    );

    let key = SigningKey::load_or_generate(&app.signing_key_path()).unwrap();
    let mut jtis = HashSet::new();
    for invite in &invites {
        let url = invite["url"].as_str().unwrap();
        assert!(url.starts_with(&format!("{}/j/{id}#t=", app.base)), "{url}");
        assert_eq!(time(&invite["not_before"]), starts - Duration::minutes(10));
        assert_eq!(time(&invite["expires_at"]), ends + Duration::minutes(20));

        let token = token_of(invite);
        let claims = jwt_payload(&token);
        assert_eq!(claims["sub"], invite["participant_id"]);
        assert_eq!(claims["sid"], id);
        assert_eq!(claims["role"], invite["role"]);
        assert_eq!(claims["nbf"], (starts - Duration::minutes(10)).timestamp());
        // Whole seconds, rounded up: the link never closes before the session.
        let closes = ends + Duration::minutes(20);
        let exp = closes.timestamp() + i64::from(closes.timestamp_subsec_millis() > 0);
        assert_eq!(claims["exp"], exp);
        assert!(
            jtis.insert(claims["jti"].as_str().unwrap().to_owned()),
            "jti repeated"
        );

        // Signed with the server's persisted key, valid only inside the window.
        let inside = starts + Duration::minutes(5);
        assert!(invite::verify(&key, &token, inside).is_ok());
        assert!(invite::verify(&key, &token, starts - Duration::minutes(11)).is_err());
        // The link's own window ends within a second after the session's
        // close (whole seconds); the session's status refuses from the close.
        assert!(invite::verify(
            &key,
            &token,
            ends + Duration::minutes(20) + Duration::seconds(1)
        )
        .is_err());
        assert!(invite::verify(&SigningKey::generate(), &token, inside).is_err());
    }

    // Issuing again gives new links; the old ones keep working.
    let again = app.invites(id).await;
    assert_ne!(token_of(&again[1]), token_of(&invites[1]));
    let stored = app
        .running()
        .scheduler()
        .get(id.parse().unwrap())
        .await
        .unwrap();
    let during = starts + Duration::minutes(1);
    for token in [token_of(&invites[1]), token_of(&again[1])] {
        let admitted =
            check_invite(invite::verify(&key, &token, during), Some(&stored), during).unwrap();
        assert_eq!(admitted.id, "pat-1");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_participants_link_is_marked_revoked() {
    let app = TestApp::spawn().await;
    let session = app.create_session(&couple_session(0, 60)).await;
    let id = session["id"].as_str().unwrap();
    let invites = app.invites(id).await;
    let partner_token = token_of(&invites[2]);
    let patient_token = token_of(&invites[1]);

    let revoke = app
        .post(&format!("/v1/sessions/{id}/participants/par-1/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    let again = app
        .post(&format!("/v1/sessions/{id}/participants/par-1/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 204);

    let read: Value = app
        .get(&format!("/v1/sessions/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["participants"][1]["revoked"], true);
    assert!(read["participants"][1]["revoked_at"].is_string());
    assert_eq!(read["participants"][0]["revoked"], false);

    let key = SigningKey::load_or_generate(&app.signing_key_path()).unwrap();
    let stored = app
        .running()
        .scheduler()
        .get(id.parse().unwrap())
        .await
        .unwrap();
    let now = Utc::now() + Duration::seconds(1);
    assert_eq!(
        check_invite(
            invite::verify(&key, &partner_token, now),
            Some(&stored),
            now
        )
        .unwrap_err(),
        Refusal::Revoked
    );
    assert!(check_invite(
        invite::verify(&key, &patient_token, now),
        Some(&stored),
        now
    )
    .is_ok());

    // New links are issued only to people who are not revoked.
    let reissued = app.invites(id).await;
    let ids: Vec<_> = reissued
        .iter()
        .map(|i| i["participant_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["clin-1", "pat-1"]);

    let unknown = app
        .post(&format!("/v1/sessions/{id}/participants/nobody/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn a_cancelled_session_refuses_its_links() {
    let app = TestApp::spawn().await;
    let session = app.create_session(&couple_session(0, 60)).await;
    let id = session["id"].as_str().unwrap();
    let token = token_of(&app.invites(id).await[0]);
    assert_eq!(
        app.delete(&format!("/v1/sessions/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    let key = SigningKey::load_or_generate(&app.signing_key_path()).unwrap();
    let stored = app
        .running()
        .scheduler()
        .get(id.parse().unwrap())
        .await
        .unwrap();
    let now = Utc::now();
    assert_eq!(
        check_invite(invite::verify(&key, &token, now), Some(&stored), now).unwrap_err(),
        Refusal::SessionCancelled
    );
    app.stop().await;
}

#[tokio::test]
async fn the_link_opens_the_join_page_without_sending_the_token() {
    let app = TestApp::spawn().await;
    let session = app.create_session(&couple_session(0, 60)).await;
    let id = session["id"].as_str().unwrap();
    let url = app.invites(id).await[1]["url"].as_str().unwrap().to_owned();
    // What a browser requests: the URL without its fragment.
    let page = app
        .client
        .get(url.split('#').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.headers().contains_key("content-security-policy"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<script type=\"module\" src=\"/client/"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "inline script in the page");

    let script = app
        .client
        .get(app.url("/client/join.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    app.stop().await;
}
