//! The staff console's API without a browser: accounts made with `tandem
//! staff`, the cookie session on `/v1` (roles, CSRF, the export audit's
//! actor), a clinician who sees only the sessions they lead, and what
//! disabling an account does. The browser side is `console`.

use tokio::process::Command;

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{couple_session, serve::TANDEM, TestApp};

/// Runs `tandem staff ARGS` on the test server's database; its stdout.
/// Awaited, not blocked on: the server runs on this test's runtime, and a
/// blocked runtime could stall it inside a write transaction that the
/// command then waits for until SQLite's busy timeout.
async fn staff(app: &TestApp, args: &[&str]) -> String {
    let mut command = Command::new(TANDEM);
    command
        .arg("staff")
        .args(args)
        .args(["--data-dir", app.config.data_dir.to_str().unwrap()]);
    // TANDEM_* variables are configuration; the test's own must not leak in.
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TANDEM_")) {
        command.env_remove(key);
    }
    let out = command.output().await.unwrap();
    assert!(
        out.status.success(),
        "tandem staff {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Adds an account, sets its password with the set-up link, signs in
/// (TOTP is off in these tests); the cookie and the CSRF token.
async fn signed_in(
    app: &TestApp,
    email: &str,
    roles: &str,
    roster: Option<&str>,
) -> (String, String) {
    let mut args = vec![
        "add",
        "--email",
        email,
        "--name",
        "Test person",
        "--role",
        roles,
    ];
    if let Some(roster) = roster {
        args.extend(["--roster-id", roster]);
    }
    let out = staff(app, &args).await;
    let link = out
        .lines()
        .find_map(|l| l.split_once("Set-up link (works once, for 24 h): "))
        .unwrap_or_else(|| panic!("no set-up link in {out}"))
        .1;
    // The CLI builds links from the configured public_url (here the
    // default: only the data directory is given).
    assert!(link.contains("/console/#setup="), "{link}");
    let token = link.split("#setup=").nth(1).unwrap();
    let setup = app
        .client
        .post(app.url("/console/api/setup"))
        .json(&json!({"token": token, "password": "a long enough password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(setup.status(), 200);
    sign_in(app, email, "a long enough password").await.unwrap()
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> Result<(String, String), Value> {
    let response = app
        .client
        .post(app.url("/console/api/signin"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    if response.status() != 200 {
        return Err(response.json().await.unwrap());
    }
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    let me: Value = app
        .client
        .get(app.url("/console/api/session"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Ok((cookie, me["csrf_token"].as_str().unwrap().to_owned()))
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(|c| c.console.require_totp = false).await
}

#[tokio::test]
async fn a_clinician_sees_and_starts_only_the_sessions_they_lead() {
    let app = spawn().await;
    let mine = app.create_session(&couple_session(0, 30)).await;
    let mut other = couple_session(0, 30);
    other["clinician"] = json!({"id": "clin-2", "name": "Dr Okafor"});
    other["participants"] = json!([{"id": "pat-9", "name": "Jo Park", "role": "patient"}]);
    other["kind"] = json!("individual");
    let theirs = app.create_session(&other).await;
    let (cookie, csrf) = signed_in(&app, "rivera@clinic.test", "clinician", Some("clin-1")).await;

    let today: Value = app
        .client
        .get(app.url("/console/api/today"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = today["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine["id"].as_str().unwrap()]);
    assert!(
        !today.to_string().contains("Jo Park"),
        "another clinician's patient"
    );

    let start = |id: String| {
        app.client
            .post(app.url(&format!("/console/api/sessions/{id}/start")))
            .header(COOKIE, &cookie)
            .header("X-CSRF-Token", &csrf)
            .send()
    };
    let own = start(mine["id"].as_str().unwrap().to_owned())
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    let url = own.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url.contains(&format!("/j/{}#t=", mine["id"].as_str().unwrap())));
    let refused = start(theirs["id"].as_str().unwrap().to_owned())
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    // Nor through /v1: a clinician may not list or read sessions.
    let listed = app
        .client
        .get(app.url("/v1/sessions"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn the_cookie_works_on_v1_with_its_roles_csrf_and_the_staff_account_in_the_audit() {
    let app = spawn().await;
    let (cookie, csrf) = signed_in(&app, "cole@clinic.test", "compliance", None).await;
    let weekly = app
        .client
        .get(app.url("/v1/attendance/weekly?week=2026-W10&format=csv"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(weekly.status(), 200);
    assert!(weekly.text().await.unwrap().contains("42 CFR part 2"));
    let audit: Value = app
        .get("/v1/audit/exports")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = audit["exports"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "staff:cole@clinic.test", "{last}");

    // A compliance account may not schedule; a write without the CSRF
    // token is refused before anything else.
    let body = couple_session(60, 30);
    let no_token = app
        .client
        .post(app.url("/v1/sessions"))
        .header(COOKIE, &cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        no_token.json::<Value>().await.unwrap()["error"]["code"],
        "csrf"
    );
    let with_token = app
        .client
        .post(app.url("/v1/sessions"))
        .header(COOKIE, &cookie)
        .header("X-CSRF-Token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        with_token.json::<Value>().await.unwrap()["error"]["code"],
        "forbidden"
    );

    // Sign-out ends the cookie everywhere.
    let out = app
        .client
        .post(app.url("/console/api/signout"))
        .header(COOKIE, &cookie)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let after = app
        .client
        .get(app.url("/v1/attendance/verify"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn a_disabled_account_is_signed_out_and_a_reset_gives_a_new_link() {
    let app = spawn().await;
    let (cookie, _) = signed_in(&app, "sky@clinic.test", "scheduler", None).await;
    let listed = app
        .client
        .get(app.url("/v1/sessions"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert!(staff(&app, &["disable", "sky@clinic.test"])
        .await
        .contains("disabled"));
    let after = app
        .client
        .get(app.url("/v1/sessions"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    let refused = sign_in(&app, "sky@clinic.test", "a long enough password")
        .await
        .unwrap_err();
    assert_eq!(refused["error"]["code"], "sign_in_failed");
    let reset = staff(&app, &["reset", "sky@clinic.test"]).await;
    assert!(reset.contains("/console/#setup="), "{reset}");
    // The sign-in audit, which admins read, has each step.
    let (admin, _) = signed_in(&app, "ada@clinic.test", "admin", None).await;
    let audit: Value = app
        .client
        .get(app.url("/console/api/signins"))
        .header(COOKIE, &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events: Vec<&str> = audit["signins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["email"] == "sky@clinic.test")
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["failed_disabled", "signed_in"], "newest first");
    assert!(!audit.to_string().contains("a long enough password"));
    app.stop().await;
}
