//! `/v1/webhooks`: the clinic's receivers (admin only), their deliveries,
//! and replays (docs/webhooks.md, docs/api.md).
//!
//! The request and response types are the named structs below, all in
//! this file, so that the API description can be generated from them.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::schedule::FieldError;
use crate::store::webhooks::{DeliveryRecord, EndpointRecord, FAILED};
use crate::store::StoreError;
use crate::webhooks::{endpoint, signing};

/// `POST /v1/webhooks` (`url` and `events` required) and `PATCH
/// /v1/webhooks/{id}` (what is given changes).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookRequest {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
}

/// A receiver as the API shows it (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookView {
    pub id: String,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    /// `active`, or `failing` after a delivery ran out of retries (until
    /// the next success).
    pub status: &'static str,
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/webhooks` → 201: the receiver and its secret, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookCreated {
    #[serde(flatten)]
    pub webhook: WebhookView,
    pub secret: String,
}

/// `POST /v1/webhooks/{id}/rotate_secret` → 200: the new secret, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SecretRotated {
    pub id: String,
    pub secret: String,
    /// Until when the secret before this one signs too (deliveries carry
    /// both signatures); `null` when it stopped at once.
    pub previous_valid_until: Option<DateTime<Utc>>,
}

/// The optional body of `POST /v1/webhooks/{id}/rotate_secret`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateRequest {
    /// Hours the secret before this one keeps signing next to the new one,
    /// so the receiver can be updated without refusing deliveries: 0 to
    /// 168 (a week). 0, or not given, stops it at once (as a rotation
    /// always did: the right thing for a leaked secret).
    #[schema(example = 24)]
    pub previous_valid_hours: Option<u32>,
}

/// The longest a rotated secret may keep signing.
const MAX_PREVIOUS_VALID_HOURS: u32 = 168;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// One event's delivery to one receiver.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryView {
    pub id: i64,
    /// The `webhook-id` the receiver sees.
    pub event_id: String,
    pub event_type: String,
    pub session_id: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_try_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_status: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// `GET /v1/webhooks/{id}/deliveries` → 200: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
    /// Pass as `before` for the next (older) page; null on the last.
    pub next_before: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeliveryQuery {
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn view(e: EndpointRecord) -> WebhookView {
    WebhookView {
        status: if e.failing_since.is_some() {
            "failing"
        } else {
            "active"
        },
        failing_since: e.failing_since.map(time),
        created_at: time(e.created_at),
        updated_at: time(e.updated_at),
        id: e.id,
        url: e.url,
        description: e.description,
        events: e.events,
    }
}

fn delivery(d: DeliveryRecord) -> DeliveryView {
    DeliveryView {
        id: d.id,
        event_id: d.event_id,
        event_type: d.event_type,
        session_id: d.session_id,
        status: d.status,
        attempts: d.attempts,
        next_try_at: d.next_try_at.map(time),
        last_error: d.last_error,
        last_status: d.last_status,
        created_at: time(d.created_at),
        delivered_at: d.delivered_at.map(time),
    }
}

fn store_error(error: StoreError) -> ApiError {
    tracing::error!(%error, "storage failure");
    ApiError::unavailable("the database cannot be used right now; try again later")
}

fn missing(field: &str) -> FieldError {
    FieldError {
        field: field.into(),
        message: "is required".into(),
    }
}

async fn found(state: &AppState, id: &str) -> Result<EndpointRecord, ApiError> {
    state
        .store
        .webhook_endpoint(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found("webhook not found"))
}

/// Stores a changed endpoint (deleted meanwhile: 404).
async fn save(state: &AppState, record: &mut EndpointRecord) -> Result<(), ApiError> {
    record.updated_at = Utc::now().timestamp_millis();
    if state
        .store
        .update_webhook_endpoint(record)
        .await
        .map_err(store_error)?
    {
        Ok(())
    } else {
        Err(ApiError::not_found("webhook not found"))
    }
}

#[utoipa::path(post, path = "/v1/webhooks", operation_id = "create_webhook", tag = "webhooks",
    request_body = WebhookRequest,
    responses((status = 201, description = "The receiver, and its secret (shown once)", body = WebhookCreated)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<WebhookRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[])?;
    let Json(request) = body?;
    let mut errors = Vec::new();
    let url = match &request.url {
        Some(raw) => endpoint::url(raw, &mut errors),
        None => {
            errors.push(missing("url"));
            None
        }
    };
    let events = match &request.events {
        Some(raw) => endpoint::events(raw, &mut errors),
        None => {
            errors.push(missing("events"));
            None
        }
    };
    let description =
        endpoint::description(request.description.as_deref().unwrap_or(""), &mut errors);
    let (Some(url), Some(events), Some(description), true) =
        (url, events, description, errors.is_empty())
    else {
        return Err(ApiError::invalid(errors));
    };
    let now = Utc::now().timestamp_millis();
    let record = EndpointRecord {
        id: Uuid::new_v4().to_string(),
        url,
        description,
        events,
        secret: signing::new_secret(),
        created_at: now,
        updated_at: now,
        failing_since: None,
    };
    state
        .store
        .insert_webhook_endpoint(&record)
        .await
        .map_err(store_error)?;
    tracing::info!(webhook = %record.id, by = %caller.actor, "webhook endpoint added");
    let secret = record.secret.clone();
    Ok((
        StatusCode::CREATED,
        Json(WebhookCreated {
            webhook: view(record),
            secret,
        }),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/webhooks", operation_id = "list_webhooks", tag = "webhooks",
    responses((status = 200, description = "Every receiver (never a secret)", body = WebhookList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(&[])?;
    let webhooks = state.store.webhook_endpoints().await.map_err(store_error)?;
    Ok(Json(WebhookList {
        webhooks: webhooks.into_iter().map(view).collect(),
    })
    .into_response())
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", operation_id = "get_webhook", tag = "webhooks", params(("id" = String, Path, description = "The receiver's id")),
    responses((status = 200, description = "The receiver", body = WebhookView),
              (status = 404, description = "No such receiver", body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[])?;
    Ok(Json(view(found(&state, &id).await?)).into_response())
}

#[utoipa::path(patch, path = "/v1/webhooks/{id}", operation_id = "update_webhook", tag = "webhooks", params(("id" = String, Path, description = "The receiver's id")),
    request_body = WebhookRequest,
    responses((status = 200, description = "The receiver, changed", body = WebhookView),
              (status = 404, description = "No such receiver", body = ErrorBody)))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<WebhookRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[])?;
    let mut record = found(&state, &id).await?;
    let Json(patch) = body?;
    let mut errors = Vec::new();
    if let Some(raw) = &patch.url {
        if let Some(url) = endpoint::url(raw, &mut errors) {
            record.url = url;
        }
    }
    if let Some(raw) = &patch.events {
        if let Some(events) = endpoint::events(raw, &mut errors) {
            record.events = events;
        }
    }
    if let Some(raw) = &patch.description {
        if let Some(description) = endpoint::description(raw, &mut errors) {
            record.description = description;
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    save(&state, &mut record).await?;
    tracing::info!(webhook = %record.id, by = %caller.actor, "webhook endpoint changed");
    Ok(Json(view(record)).into_response())
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", operation_id = "delete_webhook", tag = "webhooks", params(("id" = String, Path, description = "The receiver's id")),
    responses((status = 204, description = "Deleted, with its pending deliveries"),
              (status = 404, description = "No such receiver", body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[])?;
    if !state
        .store
        .delete_webhook_endpoint(&id)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::not_found("webhook not found"));
    }
    tracing::info!(webhook = %id, by = %caller.actor, "webhook endpoint deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate_secret", operation_id = "rotate_webhook_secret", tag = "webhooks", params(("id" = String, Path, description = "The receiver's id")),
    request_body(content = Option<RotateRequest>, description = "Optional: how long the secret before keeps signing too (no body: it stops at once)"),
    responses((status = 200, description = "The new secret (shown once)", body = SecretRotated),
              (status = 404, description = "No such receiver", body = ErrorBody),
              (status = 422, description = "`previous_valid_hours` out of range", body = ErrorBody)))]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Option<Json<RotateRequest>>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[])?;
    let hours = body?
        .and_then(|Json(request)| request.previous_valid_hours)
        .unwrap_or(0);
    if hours > MAX_PREVIOUS_VALID_HOURS {
        return Err(ApiError::invalid(vec![FieldError {
            field: "previous_valid_hours".into(),
            message: format!("must be from 0 to {MAX_PREVIOUS_VALID_HOURS}, not {hours}"),
        }]));
    }
    let now = Utc::now();
    let previous_valid_until = (hours > 0).then(|| now + chrono::Duration::hours(hours.into()));
    let secret = signing::new_secret();
    let rotated = state
        .store
        .rotate_webhook_secret(
            &id,
            &secret,
            previous_valid_until.map(|t| t.timestamp_millis()),
            now.timestamp_millis(),
        )
        .await
        .map_err(store_error)?;
    if !rotated {
        return Err(ApiError::not_found("webhook not found"));
    }
    tracing::info!(webhook = %id, by = %caller.actor, hours, "webhook secret rotated");
    Ok(Json(SecretRotated {
        id,
        secret,
        previous_valid_until,
    })
    .into_response())
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", operation_id = "list_webhook_deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "The receiver's id"),
           ("before" = Option<i64>, Query, description = "`next_before` of the previous page"),
           ("limit" = Option<i64>, Query, description = "1 to 500 (default 50)")),
    responses((status = 200, description = "Deliveries, newest first", body = DeliveryList),
              (status = 404, description = "No such receiver", body = ErrorBody)))]
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<DeliveryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[])?;
    let Query(query) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(vec![FieldError {
            field: "limit".into(),
            message: format!("must be between 1 and {MAX_LIMIT}"),
        }]));
    }
    let endpoint = found(&state, &id).await?;
    let page = state
        .store
        .webhook_deliveries(&endpoint.id, query.before, limit + 1)
        .await
        .map_err(store_error)?;
    let more = page.len() as i64 > limit;
    let deliveries: Vec<DeliveryView> = page
        .into_iter()
        .take(limit as usize)
        .map(delivery)
        .collect();
    let next_before = more.then(|| deliveries.last().map(|d| d.id)).flatten();
    Ok(Json(DeliveryList {
        deliveries,
        next_before,
    })
    .into_response())
}

/// `POST /v1/webhooks/{id}/deliveries/{delivery_id}/replay` → 202: the
/// delivery is pending again, due now, with a fresh retry schedule (same
/// event id and body).
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/replay", operation_id = "replay_webhook_delivery", tag = "webhooks",
    params(("id" = String, Path, description = "The receiver's id"),
           ("delivery_id" = String, Path, description = "The delivery's id")),
    responses((status = 202, description = "Pending again, due now", body = DeliveryView),
              (status = 404, description = "No such receiver or delivery", body = ErrorBody)))]
pub(crate) async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&[])?;
    let delivery_id: i64 = delivery_id
        .parse()
        .map_err(|_| ApiError::not_found("delivery not found"))?;
    let replayed = state
        .store
        .replay_webhook_delivery(&id, delivery_id, Utc::now().timestamp_millis())
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found("delivery not found"))?;
    tracing::info!(webhook = %id, delivery = delivery_id, by = %caller.actor, "webhook delivery replayed");
    debug_assert_ne!(replayed.status, FAILED);
    Ok((StatusCode::ACCEPTED, Json(delivery(replayed))).into_response())
}
