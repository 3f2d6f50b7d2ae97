//! The staff console over HTTP: its pages (`/console/`, embedded from
//! `console/`) and its own endpoints under `/console/api/` (sign-in, second
//! factor, sign-out, keep-alive, today's sessions with their live state,
//! staff accounts, the sign-in audit, API keys). Everything that exists in
//! `/v1` the console calls there with the same cookie (`http::auth`).
//!
//! The cookie is HttpOnly, Secure, SameSite=Strict; every request that
//! changes something carries the session's CSRF token in `X-CSRF-Token`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration as StdDuration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use futures_util::Stream;
use rust_embed::RustEmbed;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::error::ApiError;
use super::staff::ConsoleError;
use super::AppState;
use crate::auth::{api_key, ApiRole};
use crate::console::account::{parse_roles, StaffAccount};
use crate::console::session::{self, ConsoleSession, Stage};
use crate::room::state::Occupancy;
use crate::schedule::FieldError;
use crate::store::ApiKeyRecord;

/// The console session's cookie.
pub(crate) const COOKIE: &str = "tandem_console";
/// The header that carries the CSRF token.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

#[derive(RustEmbed)]
#[folder = "console/"]
#[exclude = "tests/*"]
struct Pages;

/// `/console/` and `/console/{file}`: the pages, scripts and styles.
pub(crate) async fn index() -> Response {
    page("index.html")
}

pub(crate) async fn file(Path(path): Path<String>) -> Response {
    page(&path)
}

fn page(path: &str) -> Response {
    super::client::serve(path, Pages::get(path))
}

impl From<ConsoleError> for ApiError {
    fn from(e: ConsoleError) -> Self {
        let message = e.to_string();
        match e {
            ConsoleError::Invalid(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
            }
            ConsoleError::WrongPassword | ConsoleError::WrongCode => {
                ApiError::new(StatusCode::UNAUTHORIZED, "sign_in_failed", message)
            }
            ConsoleError::Locked(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "locked_out", message)
            }
            ConsoleError::SignedOut => {
                ApiError::new(StatusCode::UNAUTHORIZED, "signed_out", message)
            }
            ConsoleError::BadLink => ApiError::new(StatusCode::GONE, "link_invalid", message),
            ConsoleError::NotFound(_) => ApiError::not_found(message),
            ConsoleError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            ConsoleError::Store(error) => {
                tracing::error!(%error, "console: storage failure");
                ApiError::unavailable("the database cannot be used right now; try again later")
            }
        }
    }
}

/// The console cookie of a request, if it has one.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// A request that changes something must carry the session's CSRF token.
pub(crate) fn check_csrf(
    method: &Method,
    headers: &HeaderMap,
    session: &ConsoleSession,
) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let right = given.is_some_and(|g| {
        g.len() == session.csrf_token.len()
            && g.bytes()
                .zip(session.csrf_token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if right {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "this request did not come from the console page (its X-CSRF-Token is missing or wrong); reload the page and try again",
        ))
    }
}

fn set_cookie(value: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Strict"
    ))
    .expect("a base64url cookie is a valid header value")
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
    ))
    .expect("valid header value")
}

fn address(parts_extensions: &axum::http::Extensions) -> IpAddr {
    parts_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// The client's address (audit, throttle).
pub(crate) struct Address(IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Address {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Address(address(&parts.extensions)))
    }
}

/// A signed-in console user; the request counts as activity, and one that
/// changes something has passed the CSRF check.
pub(crate) struct ConsoleUser {
    session: ConsoleSession,
    account: StaffAccount,
}

impl FromRequestParts<AppState> for ConsoleUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let cookie = session_cookie(&parts.headers).ok_or(ConsoleError::SignedOut)?;
        let now = Utc::now();
        let (mut session, account) = state.console.signed_in(&cookie, now).await?;
        // A refused request is no activity.
        check_csrf(&parts.method, &parts.headers, &session)?;
        state.console.touch(&mut session, now).await?;
        Ok(ConsoleUser { session, account })
    }
}

impl ConsoleUser {
    fn require_admin(&self) -> Result<(), ApiError> {
        if self.account.has(ApiRole::Admin) {
            Ok(())
        } else {
            Err(ApiError::forbidden("only an administrator may do this"))
        }
    }
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    Ok(body?.0)
}

#[derive(Deserialize)]
pub(crate) struct SignInRequest {
    email: String,
    password: String,
}

/// `POST /console/api/signin`: email and password.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    Address(address): Address,
    request: Result<Json<SignInRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let signed = state
        .console
        .sign_in(&request.email, &request.password, address, Utc::now())
        .await?;
    let next = match signed.stage {
        Stage::SecondFactor => "code",
        Stage::SignedIn => "done",
    };
    Ok((
        [(header::SET_COOKIE, set_cookie(&signed.cookie))],
        Json(json!({ "next": next })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct CodeRequest {
    code: String,
}

/// `POST /console/api/signin/code`: the TOTP code after the password.
pub(crate) async fn sign_in_code(
    State(state): State<AppState>,
    Address(address): Address,
    headers: HeaderMap,
    request: Result<Json<CodeRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let cookie = session_cookie(&headers).ok_or(ConsoleError::SignedOut)?;
    state
        .console
        .second_factor(&cookie, &request.code, address, Utc::now())
        .await?;
    Ok(Json(json!({ "next": "done" })).into_response())
}

#[derive(Deserialize)]
pub(crate) struct TokenRequest {
    token: String,
    #[serde(default)]
    password: Option<String>,
}

/// `POST /console/api/signin/link`: the demo's one-time sign-in link.
pub(crate) async fn sign_in_link(
    State(state): State<AppState>,
    Address(address): Address,
    request: Result<Json<TokenRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let cookie = state
        .console
        .use_sign_in_link(&request.token, address, Utc::now())
        .await?;
    Ok((
        [(header::SET_COOKIE, set_cookie(&cookie))],
        Json(json!({ "next": "done" })),
    )
        .into_response())
}

/// `POST /console/api/setup`: a password from a set-up link; the TOTP
/// secret, shown once.
pub(crate) async fn set_up(
    State(state): State<AppState>,
    request: Result<Json<TokenRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let password = request.password.unwrap_or_default();
    let done = state
        .console
        .set_up(&request.token, &password, Utc::now())
        .await?;
    Ok(Json(done).into_response())
}

/// `POST /console/api/signout`.
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    Address(address): Address,
    user: ConsoleUser,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let _ = user;
    if let Some(cookie) = session_cookie(&headers) {
        state.console.sign_out(&cookie, address, Utc::now()).await?;
    }
    Ok((
        [(header::SET_COOKIE, clear_cookie())],
        StatusCode::NO_CONTENT,
    )
        .into_response())
}

fn me(state: &AppState, session: &ConsoleSession, account: &StaffAccount) -> Response {
    let idle = state.console.idle;
    Json(json!({
        "account": {
            "id": account.id,
            "email": account.email,
            "name": account.name,
            "roles": account.roles,
            "roster_id": account.roster_id,
        },
        "csrf_token": session.csrf_token,
        "expires_at": session.expires_at(idle),
        "idle_timeout_seconds": idle.num_milliseconds() as f64 / 1000.0,
        "warn_before_seconds": session::warn_before(idle).num_milliseconds() as f64 / 1000.0,
        "timezone": state.console.timezone.name(),
        "weekly_target_minutes": state.console.weekly_target_minutes,
    }))
    .into_response()
}

/// `GET /console/api/session`: who is signed in, the CSRF token and when
/// the session ends. Not activity: the page may look without keeping the
/// session alive.
pub(crate) async fn current(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cookie = session_cookie(&headers).ok_or(ConsoleError::SignedOut)?;
    let (session, account) = state.console.signed_in(&cookie, Utc::now()).await?;
    Ok(me(&state, &session, &account))
}

/// `POST /console/api/session/keepalive`: "Stay signed in".
pub(crate) async fn keep_alive(
    State(state): State<AppState>,
    user: ConsoleUser,
) -> Result<Response, ApiError> {
    Ok(me(&state, &user.session, &user.account))
}

/// The program's day containing `now`, as UTC instants.
fn day_of(state: &AppState, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>, String) {
    let tz = state.console.timezone;
    let date = now.with_timezone(&tz).date_naive();
    let start = tz
        .from_local_datetime(&date.and_time(NaiveTime::MIN))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now);
    let next = date.succ_opt().unwrap_or(date);
    let end = tz
        .from_local_datetime(&next.and_time(NaiveTime::MIN))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now + Duration::days(1));
    (start, end, date.to_string())
}

/// `GET /console/api/today`: the day's sessions this account may see (a
/// clinician: the ones they lead; admins and schedulers: all).
pub(crate) async fn today(
    State(state): State<AppState>,
    user: ConsoleUser,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let (from, to, date) = day_of(&state, now);
    let sessions = state.scheduler.list(Some(from), Some(to)).await?;
    let visible: Vec<_> = sessions
        .iter()
        .filter(|s| s.cancelled_at.is_none())
        .filter(|s| visible_to(&user.account, s))
        .collect();
    Ok(Json(json!({
        "date": date,
        "timezone": state.console.timezone.name(),
        "sessions": visible.iter().map(|s| s.view(now)).collect::<Vec<_>>(),
    }))
    .into_response())
}

fn visible_to(account: &StaffAccount, session: &crate::schedule::Session) -> bool {
    session
        .roster
        .first()
        .is_some_and(|clinician| account.may_see_session(&clinician.id))
}

async fn visible_session(
    state: &AppState,
    user: &ConsoleUser,
    id: &str,
) -> Result<crate::schedule::Session, ApiError> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::not_found("session not found"))?;
    let session = state.scheduler.get(id).await?;
    if !visible_to(&user.account, &session) {
        return Err(ApiError::not_found("session not found"));
    }
    Ok(session)
}

/// `POST /console/api/sessions/{id}/start`: a fresh link to the room for
/// the session's clinician.
pub(crate) async fn start(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let session = visible_session(&state, &user, &id).await?;
    let invites = state.scheduler.invites(session.id, Utc::now()).await?;
    let clinician = &session.roster[0].id;
    let url = invites
        .into_iter()
        .find(|i| &i.participant_id == clinician)
        .map(|i| i.url)
        .ok_or_else(|| ApiError::not_found("the session has no clinician link"))?;
    Ok(Json(json!({ "url": url })).into_response())
}

/// `POST /console/api/sessions/{id}/links`: fresh links for everyone on
/// the roster (earlier links keep working).
pub(crate) async fn links(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let session = visible_session(&state, &user, &id).await?;
    let invites = state.scheduler.invites(session.id, Utc::now()).await?;
    Ok(Json(json!({ "invites": invites })).into_response())
}

/// `GET /console/api/live`: Server-Sent Events, `occupancy` with who waits
/// and who is in the room for each live session this account may see,
/// pushed when it changes; `signed_out` when the session ended.
pub(crate) async fn live(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let cookie = session_cookie(&headers).ok_or(ConsoleError::SignedOut)?;
    let (_, account) = state.console.signed_in(&cookie, Utc::now()).await?;
    let occupancy = state.signal.rooms.occupancy();
    let start = LiveState {
        state,
        cookie,
        account,
        occupancy,
        visible: HashMap::new(),
        first: true,
        over: false,
    };
    let stream = futures_util::stream::unfold(start, |mut live| async move {
        if live.over {
            return None;
        }
        let event = live.next().await;
        Some((Ok(event), live))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(StdDuration::from_secs(15))))
}

struct LiveState {
    state: AppState,
    cookie: String,
    account: StaffAccount,
    occupancy: tokio::sync::watch::Receiver<HashMap<Uuid, Occupancy>>,
    /// Whether this account may see a session, once looked up.
    visible: HashMap<Uuid, bool>,
    first: bool,
    over: bool,
}

impl LiveState {
    async fn next(&mut self) -> Event {
        loop {
            if !self.first {
                // Wake at least every 10 s to notice a session that ended.
                let changed =
                    tokio::time::timeout(StdDuration::from_secs(10), self.occupancy.changed())
                        .await;
                if self
                    .state
                    .console
                    .signed_in(&self.cookie, Utc::now())
                    .await
                    .is_err()
                    || matches!(changed, Ok(Err(_)))
                {
                    self.over = true;
                    return Event::default().event("signed_out").data("{}");
                }
                if changed.is_err() {
                    continue;
                }
            }
            self.first = false;
            let all = self.occupancy.borrow_and_update().clone();
            let mut sessions = serde_json::Map::new();
            for (id, occupancy) in all {
                if self.may_see(id).await {
                    sessions.insert(id.to_string(), json!(occupancy));
                }
            }
            return Event::default()
                .event("occupancy")
                .data(json!({ "sessions": sessions }).to_string());
        }
    }

    async fn may_see(&mut self, id: Uuid) -> bool {
        if let Some(known) = self.visible.get(&id) {
            return *known;
        }
        let seen = match self.state.scheduler.get(id).await {
            Ok(session) => visible_to(&self.account, &session),
            Err(_) => false,
        };
        self.visible.insert(id, seen);
        seen
    }
}

/// `GET /console/api/signins`: the sign-in audit (admins).
pub(crate) async fn sign_in_audit(
    State(state): State<AppState>,
    user: ConsoleUser,
) -> Result<Response, ApiError> {
    user.require_admin()?;
    let rows = state.console.sign_in_audit(500).await?;
    Ok(Json(json!({ "signins": rows })).into_response())
}

fn account_view(a: &StaffAccount) -> serde_json::Value {
    json!({
        "id": a.id,
        "email": a.email,
        "name": a.name,
        "roles": a.roles,
        "roster_id": a.roster_id,
        "second_factor": a.totp_secret.is_some(),
        "set_up": a.password_hash.is_some(),
        "created_at": a.created_at,
        "disabled_at": a.disabled_at,
    })
}

/// `GET /console/api/staff` (admins).
pub(crate) async fn staff(
    State(state): State<AppState>,
    user: ConsoleUser,
) -> Result<Response, ApiError> {
    user.require_admin()?;
    let accounts = state.console.accounts().await?;
    Ok(
        Json(json!({ "staff": accounts.iter().map(account_view).collect::<Vec<_>>() }))
            .into_response(),
    )
}

#[derive(Deserialize)]
pub(crate) struct NewStaff {
    email: String,
    name: String,
    roles: String,
    #[serde(default)]
    roster_id: Option<String>,
}

/// `POST /console/api/staff` (admins): the account and its set-up link.
pub(crate) async fn add_staff(
    State(state): State<AppState>,
    user: ConsoleUser,
    request: Result<Json<NewStaff>, JsonRejection>,
) -> Result<Response, ApiError> {
    user.require_admin()?;
    let request = body(request)?;
    let roles = parse_roles(&request.roles).map_err(|message| {
        ApiError::invalid(vec![FieldError {
            field: "roles".into(),
            message,
        }])
    })?;
    let roster = request
        .roster_id
        .as_deref()
        .filter(|r| !r.trim().is_empty());
    let (account, link) = state
        .console
        .add(&request.email, &request.name, &roles, roster, Utc::now())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "account": account_view(&account), "setup_url": link })),
    )
        .into_response())
}

fn staff_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("no such staff account"))
}

/// `POST /console/api/staff/{id}/disable` (admins).
pub(crate) async fn disable_staff(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    user.require_admin()?;
    let account = state.console.find_id(staff_id(&id)?).await?;
    if account.id == user.account.id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "you cannot disable your own account",
        ));
    }
    state.console.disable(&account, Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /console/api/staff/{id}/reset` (admins): clears the second factor,
/// ends the account's sessions; a new set-up link.
pub(crate) async fn reset_staff(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    user.require_admin()?;
    let account = state.console.find_id(staff_id(&id)?).await?;
    let link = state.console.reset(&account, true, Utc::now()).await?;
    Ok(Json(json!({ "setup_url": link })).into_response())
}

fn key_view(k: &ApiKeyRecord) -> serde_json::Value {
    json!({
        "id": k.id,
        "label": k.label,
        "role": k.role,
        "created_at": k.created_at,
        "revoked_at": k.revoked_at,
    })
}

/// `GET /console/api/api-keys` (admins): never the keys themselves.
pub(crate) async fn api_keys(
    State(state): State<AppState>,
    user: ConsoleUser,
) -> Result<Response, ApiError> {
    user.require_admin()?;
    let keys = state.store.api_keys().await.map_err(ConsoleError::from)?;
    Ok(Json(json!({ "api_keys": keys.iter().map(key_view).collect::<Vec<_>>() })).into_response())
}

#[derive(Deserialize)]
pub(crate) struct NewKey {
    label: String,
    role: ApiRole,
}

/// `POST /console/api/api-keys` (admins): the secret, shown once.
pub(crate) async fn create_api_key(
    State(state): State<AppState>,
    user: ConsoleUser,
    request: Result<Json<NewKey>, JsonRejection>,
) -> Result<Response, ApiError> {
    user.require_admin()?;
    let request = body(request)?;
    if request.label.trim().is_empty() {
        return Err(ApiError::invalid(vec![FieldError {
            field: "label".into(),
            message: "say who or what uses the key".into(),
        }]));
    }
    let key = api_key::issue(request.role).map_err(|e| {
        ApiError::invalid(vec![FieldError {
            field: "role".into(),
            message: e.to_string(),
        }])
    })?;
    let record = state
        .store
        .insert_new_api_key(&key, request.role, request.label.trim(), Utc::now())
        .await
        .map_err(ConsoleError::from)?;
    tracing::info!(key = %record.id, by = %user.account.id, "API key created in the console");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "api_key": key_view(&record), "secret": key })),
    )
        .into_response())
}

/// `POST /console/api/api-keys/{id}/revoke` (admins).
pub(crate) async fn revoke_api_key(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    user.require_admin()?;
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::not_found("no such API key"))?;
    let done = state
        .store
        .revoke_api_key(id, Utc::now())
        .await
        .map_err(ConsoleError::from)?;
    if !done {
        return Err(ApiError::not_found("no such active API key"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
