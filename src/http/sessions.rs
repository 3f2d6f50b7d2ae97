//! `/v1/sessions`: schedule, read, list, cancel; invite links; revocation.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::openapi::{InviteList, SessionList};
use super::AppState;
use crate::auth::ApiRole;
use crate::schedule::{FieldError, MoveRequest, Placement, SessionRequest, SessionView};
use crate::store::cluster::RoomCommandKind;

const SCHEDULERS: &[ApiRole] = &[ApiRole::Scheduler];

fn session_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("session not found"))
}

#[utoipa::path(post, path = "/v1/sessions", tag = "sessions",
    request_body = SessionRequest,
    responses((status = 201, description = "The session, scheduled", body = SessionView),
              (status = 409, description = "It would double-book someone", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<SessionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let Json(request) = body?;
    let now = Utc::now();
    let session = state.scheduler.create(&request, now).await?;
    let placement = Placement {
        allow_overlap: request.allow_overlap.unwrap_or(false),
        ..Placement::default()
    };
    Ok((
        StatusCode::CREATED,
        Json(session.view(now).placed(Some(&placement))),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session's id")),
    responses((status = 200, description = "The session", body = SessionView),
              (status = 404, description = "No such session", body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let session = state.scheduler.get(session_id(&id)?).await?;
    let placements = state.scheduler.placements(&[session.id]).await?;
    Ok(Json(session.view(Utc::now()).placed(placements.get(&session.id))).into_response())
}

/// `PATCH /v1/sessions/{id}`: moves the session; links already sent open
/// at the new time.
#[utoipa::path(patch, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session's id")),
    request_body = MoveRequest,
    responses((status = 200, description = "The session, moved", body = SessionView),
              (status = 404, description = "No such session", body = ErrorBody),
              (status = 409, description = "Cancelled, ended, or it would double-book someone", body = ErrorBody)))]
pub(crate) async fn reschedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<MoveRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let Json(request) = body?;
    let now = Utc::now();
    let session = state
        .scheduler
        .reschedule(session_id(&id)?, &request, now)
        .await?;
    let placements = state.scheduler.placements(&[session.id]).await?;
    Ok(Json(session.view(now).placed(placements.get(&session.id))).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    from: Option<String>,
    to: Option<String>,
}

fn time_param(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                ApiError::invalid(vec![FieldError {
                    field: field.into(),
                    message: format!("{raw:?} is not an RFC 3339 time like 2026-03-02T00:00:00Z"),
                }])
            })
    })
    .transpose()
}

#[utoipa::path(get, path = "/v1/sessions", tag = "sessions",
    params(("from" = Option<String>, Query, description = "RFC 3339; sessions overlapping [from, to)"),
           ("to" = Option<String>, Query, description = "RFC 3339")),
    responses((status = 200, description = "Sessions, by start", body = SessionList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let Query(query) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let from = time_param("from", query.from.as_deref())?;
    let to = time_param("to", query.to.as_deref())?;
    let sessions = state.scheduler.list(from, to).await?;
    let ids: Vec<Uuid> = sessions.iter().map(|s| s.id).collect();
    let placements = state.scheduler.placements(&ids).await?;
    let now = Utc::now();
    Ok(Json(SessionList {
        sessions: sessions
            .iter()
            .map(|s| s.view(now).placed(placements.get(&s.id)))
            .collect(),
    })
    .into_response())
}

#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session's id")),
    responses((status = 204, description = "Cancelled (or already cancelled)"),
              (status = 404, description = "No such session", body = ErrorBody),
              (status = 409, description = "The session has ended", body = ErrorBody)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let session = session_id(&id)?;
    state.scheduler.cancel(session, Utc::now()).await?;
    forward(&state, session, RoomCommandKind::Cancel, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1/sessions/{id}/invites", tag = "sessions",
    params(("id" = String, Path, description = "The session's id")),
    responses((status = 200, description = "One link per person on the roster", body = InviteList),
              (status = 404, description = "No such session", body = ErrorBody),
              (status = 409, description = "Cancelled or ended", body = ErrorBody)))]
pub(crate) async fn invites(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let invites = state
        .scheduler
        .invites(session_id(&id)?, Utc::now())
        .await?;
    Ok(Json(InviteList { invites }).into_response())
}

#[utoipa::path(post, path = "/v1/sessions/{id}/participants/{participant}/revoke", tag = "sessions",
    params(("id" = String, Path, description = "The session's id"),
           ("participant" = String, Path, description = "The participant's id")),
    responses((status = 204, description = "Revoked: the link stops working, a connected person is removed"),
              (status = 404, description = "No such session or participant", body = ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, participant)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let session = session_id(&id)?;
    state
        .scheduler
        .revoke(session, &participant, Utc::now())
        .await?;
    forward(
        &state,
        session,
        RoomCommandKind::Revoke,
        Some(participant.as_str()),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// In a cluster, tells the node holding the session's live room, through
/// the command table; answered once the command is durable
/// (docs/api.md). A single node's rooms hear of it directly.
async fn forward(
    state: &AppState,
    session: Uuid,
    kind: RoomCommandKind,
    participant: Option<&str>,
) -> Result<(), ApiError> {
    let Some(cluster) = &state.signal.cluster else {
        return Ok(());
    };
    crate::nodes::commands::forward(cluster, &state.signal.rooms, session, kind, participant)
        .await
        .map_err(|error| {
            tracing::error!(%session, %error, "room command not queued");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "This was stored, but the session's live room could not be told; try again \
                 in a moment.",
            )
        })
}
