//! `/v1/people`, `/v1/slots/search` and `/v1/series`: who is available when,
//! common slots, and recurring series with their links; `/cal/{token}`: a
//! person's calendar feed.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::auth::Caller;
use super::error::ApiError;
use super::AppState;
use crate::auth::ApiRole;
use crate::schedule::{
    AvailabilityRequest, PersonRequest, SeriesPatch, SeriesRequest, SlotRequest,
};

const SCHEDULERS: &[ApiRole] = &[ApiRole::Scheduler];

fn series_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("series not found"))
}

pub(crate) async fn put_person(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<PersonRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let Json(request) = body?;
    let (person, created) = state
        .scheduler
        .put_person(&id, &request, Utc::now())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(person)).into_response())
}

pub(crate) async fn get_person(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    Ok(Json(state.scheduler.person(&id).await?).into_response())
}

pub(crate) async fn put_availability(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<AvailabilityRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let Json(request) = body?;
    let document = state
        .scheduler
        .put_availability(&id, &request, Utc::now())
        .await?;
    Ok(Json(document).into_response())
}

pub(crate) async fn get_availability(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    Ok(Json(state.scheduler.availability(&id).await?).into_response())
}

pub(crate) async fn search_slots(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<SlotRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let Json(request) = body?;
    let slots = state.scheduler.search_slots(&request, Utc::now()).await?;
    let slots: Vec<_> = slots
        .iter()
        .map(|(s, e)| json!({"starts_at": s, "ends_at": e}))
        .collect();
    Ok(Json(json!({ "slots": slots })).into_response())
}

pub(crate) async fn create_series(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<SeriesRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let Json(request) = body?;
    let now = Utc::now();
    let series = state.scheduler.create_series(&request, now).await?;
    Ok((StatusCode::CREATED, Json(series.view(now))).into_response())
}

pub(crate) async fn get_series(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let series = state.scheduler.series(series_id(&id)?).await?;
    Ok(Json(series.view(Utc::now())).into_response())
}

pub(crate) async fn patch_series(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<SeriesPatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let Json(patch) = body?;
    let now = Utc::now();
    let series = state
        .scheduler
        .move_series(series_id(&id)?, &patch, now)
        .await?;
    Ok(Json(series.view(now)).into_response())
}

pub(crate) async fn cancel_series(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    state
        .scheduler
        .cancel_series(series_id(&id)?, Utc::now())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn series_invites(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let invites = state
        .scheduler
        .series_invites(series_id(&id)?, Utc::now())
        .await?;
    Ok(Json(json!({ "invites": invites })).into_response())
}

/// `GET /cal/{token}`: no API key (a calendar application cannot log in);
/// the token in the path is the capability.
pub(crate) async fn calendar(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let token = token.strip_suffix(".ics").unwrap_or(&token);
    let feed = state.scheduler.calendar_feed(token, Utc::now()).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
        feed,
    )
        .into_response())
}
