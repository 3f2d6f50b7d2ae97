//! `/v1/people`, `/v1/slots/search` and `/v1/series`: who is available when,
//! common slots, and recurring series with their links; `/cal/{token}`: a
//! person's calendar feed.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use uuid::Uuid;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::openapi::{InviteList, Slot, SlotList};
use super::AppState;
use crate::auth::ApiRole;
use crate::schedule::{
    AvailabilityRequest, PersonRequest, PersonView, SeriesPatch, SeriesRequest, SeriesView,
    SlotRequest,
};

const SCHEDULERS: &[ApiRole] = &[ApiRole::Scheduler];

fn series_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("series not found"))
}

#[utoipa::path(put, path = "/v1/people/{id}", tag = "people",
    params(("id" = String, Path, description = "The person's id (the clinic's own)")), request_body = PersonRequest,
    responses((status = 200, description = "Updated", body = PersonView),
              (status = 201, description = "Created", body = PersonView)))]
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

#[utoipa::path(get, path = "/v1/people/{id}", tag = "people", params(("id" = String, Path, description = "The person's id (the clinic's own)")),
    responses((status = 200, description = "The person", body = PersonView),
              (status = 404, description = "No such person", body = ErrorBody)))]
pub(crate) async fn get_person(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    Ok(Json(state.scheduler.person(&id).await?).into_response())
}

#[utoipa::path(put, path = "/v1/people/{id}/availability", tag = "people", params(("id" = String, Path, description = "The person's id (the clinic's own)")),
    request_body = AvailabilityRequest,
    responses((status = 200, description = "The availability, as stored", body = AvailabilityRequest),
              (status = 404, description = "No such person", body = ErrorBody)))]
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

#[utoipa::path(get, path = "/v1/people/{id}/availability", tag = "people", params(("id" = String, Path, description = "The person's id (the clinic's own)")),
    responses((status = 200, description = "The person's availability", body = AvailabilityRequest),
              (status = 404, description = "No such person", body = ErrorBody)))]
pub(crate) async fn get_availability(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    Ok(Json(state.scheduler.availability(&id).await?).into_response())
}

#[utoipa::path(post, path = "/v1/slots/search", tag = "people",
    request_body = SlotRequest,
    responses((status = 200, description = "Times everyone is available", body = SlotList),
              (status = 404, description = "An unknown person", body = ErrorBody)))]
pub(crate) async fn search_slots(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<SlotRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let Json(request) = body?;
    let slots = state.scheduler.search_slots(&request, Utc::now()).await?;
    let slots = slots
        .iter()
        .map(|&(starts_at, ends_at)| Slot { starts_at, ends_at })
        .collect();
    Ok(Json(SlotList { slots }).into_response())
}

#[utoipa::path(post, path = "/v1/series", tag = "series",
    request_body = SeriesRequest,
    responses((status = 201, description = "The series and its sessions", body = SeriesView),
              (status = 409, description = "It would double-book someone", body = ErrorBody)))]
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

#[utoipa::path(get, path = "/v1/series/{id}", tag = "series", params(("id" = String, Path, description = "The series' id")),
    responses((status = 200, description = "The series", body = SeriesView),
              (status = 404, description = "No such series", body = ErrorBody)))]
pub(crate) async fn get_series(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(SCHEDULERS)?;
    let series = state.scheduler.series(series_id(&id)?).await?;
    Ok(Json(series.view(Utc::now())).into_response())
}

#[utoipa::path(patch, path = "/v1/series/{id}", tag = "series", params(("id" = String, Path, description = "The series' id")),
    request_body = SeriesPatch,
    responses((status = 200, description = "The series, moved", body = SeriesView),
              (status = 404, description = "No such series", body = ErrorBody),
              (status = 409, description = "Cancelled, or it would double-book someone", body = ErrorBody)))]
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

#[utoipa::path(delete, path = "/v1/series/{id}", tag = "series", params(("id" = String, Path, description = "The series' id")),
    responses((status = 204, description = "Every session still to come is cancelled"),
              (status = 404, description = "No such series", body = ErrorBody)))]
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

#[utoipa::path(post, path = "/v1/series/{id}/invites", tag = "series", params(("id" = String, Path, description = "The series' id")),
    responses((status = 200, description = "One link per person, for every session to come", body = InviteList),
              (status = 404, description = "No such series", body = ErrorBody)))]
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
    Ok(Json(InviteList { invites }).into_response())
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
