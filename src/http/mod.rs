//! HTTP: the REST API, the browser client, health, and the redirect-only
//! plain-HTTP router. Every response carries the security headers.

mod attendance;
mod auth;
mod body;
mod client;
pub(crate) mod console;
mod error;
pub(crate) mod headers;
pub(crate) mod listener;
mod openapi;
mod scheduling;
mod sessions;
mod signal;
pub(crate) mod staff;
mod webhooks;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use url::Url;

use crate::schedule::Scheduler;
use crate::signal::SignalContext;
use crate::store::Store;

pub(crate) use body::BODY_LIMIT;
pub(crate) use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    pub scheduler: Scheduler,
    /// The database itself, for what is not scheduling: API keys and the
    /// health check.
    pub store: Store,
    pub signal: Arc<SignalContext>,
    pub attendance: crate::attendance::service::Attendance,
    /// Staff accounts and console sessions.
    pub console: staff::StaffConsole,
    /// This node (its id and state, for the health check).
    pub node: crate::node::Node,
}

/// The `/v1` routes, with the list of their paths: the one place a `/v1`
/// route is added, so that the OpenAPI test (tests/integration/openapi.rs)
/// sees every route the router serves ([`v1_paths`]).
#[derive(Default)]
struct Routes {
    router: Router<AppState>,
    paths: Vec<&'static str>,
}

impl Routes {
    fn route(mut self, path: &'static str, methods: MethodRouter<AppState>) -> Routes {
        self.paths.push(path);
        self.router = self.router.route(path, methods);
        self
    }
}

/// Every `/v1` route's path template, as the router serves it (for the
/// OpenAPI coverage test).
#[doc(hidden)]
pub fn v1_paths() -> Vec<String> {
    v1().paths.iter().map(|p| format!("/v1{p}")).collect()
}

fn v1() -> Routes {
    Routes::default()
        .route("/sessions", post(sessions::create).get(sessions::list))
        .route(
            "/sessions/{id}",
            get(sessions::get)
                .delete(sessions::cancel)
                .patch(sessions::reschedule),
        )
        .route("/sessions/{id}/invites", post(sessions::invites))
        .route(
            "/sessions/{id}/participants/{participant}/revoke",
            post(sessions::revoke),
        )
        .route(
            "/people/{id}",
            get(scheduling::get_person).put(scheduling::put_person),
        )
        .route(
            "/people/{id}/availability",
            get(scheduling::get_availability).put(scheduling::put_availability),
        )
        .route("/slots/search", post(scheduling::search_slots))
        .route("/series", post(scheduling::create_series))
        .route(
            "/series/{id}",
            get(scheduling::get_series)
                .patch(scheduling::patch_series)
                .delete(scheduling::cancel_series),
        )
        .route("/series/{id}/invites", post(scheduling::series_invites))
        .route("/attendance", get(attendance::range))
        .route("/attendance/sessions/{id}", get(attendance::session))
        .route(
            "/attendance/sessions/{id}/annotations",
            post(attendance::annotate),
        )
        .route("/attendance/weekly", get(attendance::weekly))
        .route("/attendance/verify", get(attendance::verify))
        .route("/audit/exports", get(attendance::audit_log))
        .route("/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::patch)
                .delete(webhooks::delete),
        )
        .route(
            "/webhooks/{id}/rotate_secret",
            post(webhooks::rotate_secret),
        )
        .route("/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/webhooks/{id}/deliveries/{delivery_id}/replay",
            post(webhooks::replay),
        )
        .route("/signal", get(signal::upgrade))
        .route("/openapi.json", get(openapi::document))
}

/// The HTTPS application.
pub(crate) fn router(state: AppState) -> Router {
    let node = state.node.clone();
    let mut router = Router::new()
        .nest("/v1", v1().router)
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .route("/j/{session}", get(client::join_page))
        .route("/cal/{token}", get(scheduling::calendar))
        .route("/client/{*path}", get(client::file))
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(console::index))
        .route("/console/{file}", get(console::file))
        .nest("/console/api", console_api())
        .fallback(not_found)
        .layer(middleware::from_fn(crate::metrics::http::track))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(body::read_first))
        .layer(middleware::from_fn(body::json_errors))
        // Sessions carry names and MRNs, invites carry tokens: no cache
        // keeps any answer. The browser client's files say `no-cache`
        // themselves, which this leaves alone.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(
            // The path only: never the query, the headers or the body, so
            // no token, key or name reaches a log line.
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    tracing::info_span!(
                        "http",
                        method = %request.method(),
                        path = %loggable_path(request.uri().path()),
                        api_key = tracing::field::Empty,
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state);
    for layer in headers::layers() {
        router = router.layer(layer);
    }
    if node.state() != crate::cluster::NodeState::Alone {
        // In a cluster, pages may open sockets on every node.
        router = router.layer(middleware::from_fn(
            move |request: Request, next: middleware::Next| {
                let node = node.clone();
                async move {
                    let mut response = next.run(request).await;
                    let policy = headers::policy_with(&node.cluster_origins());
                    if let Ok(value) = HeaderValue::from_str(&policy) {
                        response
                            .headers_mut()
                            .insert(header::CONTENT_SECURITY_POLICY, value);
                    }
                    response
                }
            },
        ));
    }
    router
}

/// The staff console's own endpoints (`http::console`).
fn console_api() -> Router<AppState> {
    Router::new()
        .route("/signin", post(console::sign_in))
        .route("/signin/code", post(console::sign_in_code))
        .route("/signin/link", post(console::sign_in_link))
        .route("/setup", post(console::set_up))
        .route("/signout", post(console::sign_out))
        .route("/session", get(console::current))
        .route("/session/keepalive", post(console::keep_alive))
        .route("/today", get(console::today))
        .route("/live", get(console::live))
        .route("/sessions/{id}/start", post(console::start))
        .route("/sessions/{id}/links", post(console::links))
        .route("/signins", get(console::sign_in_audit))
        .route("/staff", get(console::staff).post(console::add_staff))
        .route("/staff/{id}/disable", post(console::disable_staff))
        .route("/staff/{id}/reset", post(console::reset_staff))
        .route(
            "/api-keys",
            get(console::api_keys).post(console::create_api_key),
        )
        .route("/api-keys/{id}/revoke", post(console::revoke_api_key))
}

/// The path as logs may show it: a calendar feed's path is its capability
/// token, which never reaches a log line.
fn loggable_path(path: &str) -> &str {
    if path.starts_with("/cal/") {
        "/cal/{token}"
    } else {
        path
    }
}

/// `{"status": "ok"}`, or why not.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok` or `unavailable`.
    status: &'static str,
    /// `database`, `heartbeat` (a cluster node whose heartbeats fail) or
    /// `ledger`, when unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    /// When the ledger's outage began.
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Ledger events waiting in memory to be written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_events: Option<usize>,
    /// This node: its id and its part in a cluster.
    node: NodeHealth,
}

/// `{"id": "node-2", "state": "ready"}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct NodeHealth {
    id: String,
    /// `alone` (a single node on SQLite), `ready` (a cluster node taking
    /// new rooms) or `draining` (taking none, leaving once its rooms have
    /// ended or moved).
    state: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "The database answers and the ledger can be written", body = Health),
              (status = 503, description = "The database or the ledger cannot be used", body = Health)))]
async fn health(State(state): State<AppState>) -> Response {
    let unavailable =
        |health: Health| (StatusCode::SERVICE_UNAVAILABLE, Json(health)).into_response();
    let node = &state.node;
    // Bounded: a monitor's probe gets its answer in a second, not after
    // the pool's own wait for a connection.
    let ping = tokio::time::timeout(std::time::Duration::from_secs(1), state.store.ping()).await;
    if let Err(error) = ping
        .map_err(|_| "the database did not answer within 1 s".to_owned())
        .and_then(|answered| answered.map_err(|error| error.to_string()))
    {
        tracing::error!(%error, "health check: database unavailable");
        return unavailable(Health {
            reason: Some("database"),
            ..Health::unavailable(node)
        });
    }
    // In a cluster, a node whose heartbeats fail is dead to the others:
    // the load balancer should send nobody here.
    if node.beat_problem().is_some() {
        // The database answers again: beat now rather than report an
        // outage that is over.
        if let Some(cluster) = &state.signal.cluster {
            crate::nodes::heartbeat::beat(cluster, &state.signal.rooms).await;
        }
    }
    if let Some(problem) = node.beat_problem() {
        return unavailable(Health {
            reason: Some("heartbeat"),
            message: Some(problem),
            ..Health::unavailable(node)
        });
    }
    // Sessions cannot be attended while their attendance cannot be written.
    if let Err(failure) = state.attendance.ledger_health().await {
        return unavailable(Health {
            reason: Some("ledger"),
            message: Some(failure.to_string()),
            since: Some(failure.since),
            pending_events: Some(failure.pending),
            ..Health::unavailable(node)
        });
    }
    Json(Health {
        status: "ok",
        ..Health::unavailable(node)
    })
    .into_response()
}

impl Health {
    fn unavailable(node: &crate::node::Node) -> Health {
        Health {
            node: NodeHealth {
                id: node.id.to_string(),
                state: node.state().as_str(),
            },
            status: "unavailable",
            reason: None,
            message: None,
            since: None,
            pending_events: None,
        }
    }
}

/// `GET /metrics`: the Prometheus text exposition, for an API key with the
/// `metrics` role (or `admin`).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    description = "The Prometheus text format (0.0.4); names and labels in docs/operations.md. \
Needs an API key with the `metrics` role (or `admin`).",
    responses((status = 200, description = "The exposition", body = String,
               content_type = "text/plain; version=0.0.4; charset=utf-8")))]
async fn metrics(caller: auth::Caller) -> Result<Response, ApiError> {
    caller.require(&[crate::auth::ApiRole::Metrics])?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
        .into_response())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such resource")
}

/// The plain-HTTP application: every request, whatever its method or path,
/// gets a permanent redirect to the same path on `public_url`, and nothing
/// else is served.
pub(crate) fn redirect_router(public_url: Url) -> Router {
    let public_url = Arc::new(public_url);
    let mut router = Router::new().fallback(move |uri: Uri| {
        let public_url = public_url.clone();
        async move {
            let mut target = (*public_url).clone();
            target.set_path(uri.path());
            target.set_query(uri.query());
            (
                [(header::CACHE_CONTROL, "no-store")],
                Redirect::permanent(target.as_str()),
            )
        }
    });
    for layer in headers::layers() {
        router = router.layer(layer);
    }
    router
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_calendar_token_never_reaches_the_log() {
        assert_eq!(super::loggable_path("/cal/eyJhbGciOi.x.y"), "/cal/{token}");
        assert_eq!(super::loggable_path("/v1/sessions"), "/v1/sessions");
    }
}
