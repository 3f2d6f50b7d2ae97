//! `/v1/attendance`: session, range and weekly reports (JSON or CSV), the
//! ledger's verification, clinicians' annotations; `/v1/audit/exports`.
//! Every read is recorded in the export audit log.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::openapi::{AnnotationRecorded, AttendanceReport, ExportLog};
use super::AppState;
use crate::attendance::ledger::Verification;
use crate::attendance::service::{AttendanceError, Export, Format};
use crate::auth::ApiRole;
use crate::schedule::FieldError;

const READERS: &[ApiRole] = &[ApiRole::Compliance];
const ANNOTATORS: &[ApiRole] = &[ApiRole::Clinician];

impl From<AttendanceError> for ApiError {
    fn from(e: AttendanceError) -> Self {
        match e {
            AttendanceError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            AttendanceError::Forbidden(why) => ApiError::forbidden(why),
            AttendanceError::Invalid { field, message } => ApiError::invalid(vec![FieldError {
                field: field.into(),
                message,
            }]),
            AttendanceError::Unavailable(failure) => ApiError::unavailable(format!(
                "{failure}; attendance is not reported until it is written"
            )),
            AttendanceError::Store(error) => {
                tracing::error!(%error, "attendance: storage failure");
                ApiError::unavailable("the database cannot be used right now; try again later")
            }
            AttendanceError::Ledger(error) => {
                tracing::error!(%error, "attendance: ledger failure");
                ApiError::unavailable(error.to_string())
            }
        }
    }
}

fn format(raw: Option<&str>) -> Result<Format, ApiError> {
    Format::parse(raw).map_err(|message| {
        ApiError::invalid(vec![FieldError {
            field: "format".into(),
            message,
        }])
    })
}

fn time(field: &str, raw: Option<&str>) -> Result<DateTime<Utc>, ApiError> {
    let invalid = |message: String| {
        ApiError::invalid(vec![FieldError {
            field: field.into(),
            message,
        }])
    };
    let raw = raw.ok_or_else(|| invalid("is required".into()))?;
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid(format!("{raw:?} is not an RFC 3339 time")))
}

fn file(export: Export, name: &str) -> Response {
    let extension = export.format.as_str();
    (
        [
            (
                header::CONTENT_TYPE,
                export.format.content_type().to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.{extension}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (
                header::HeaderName::from_static("x-content-sha256"),
                export.sha256,
            ),
        ],
        export.bytes,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct FormatQuery {
    format: Option<String>,
}

#[utoipa::path(get, path = "/v1/attendance/sessions/{id}", tag = "attendance",
    params(("id" = String, Path, description = "The session's id"), ("format" = Option<String>, Query, description = "`json` (default) or `csv`")),
    responses((status = 200, description = "The session's attendance report (docs/compliance.md)",
               content((AttendanceReport = "application/json"), (String = "text/csv"))),
              (status = 404, description = "No such session", body = ErrorBody)))]
pub(crate) async fn session(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::not_found("session not found"))?;
    let format = format(query.format.as_deref())?;
    let export = state
        .attendance
        .session_export(id, format, &caller.actor, Utc::now())
        .await?;
    Ok(file(export, &format!("attendance-{id}")))
}

#[derive(Debug, Deserialize)]
pub(crate) struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

#[utoipa::path(get, path = "/v1/attendance", tag = "attendance",
    params(("from" = String, Query, description = "RFC 3339"), ("to" = String, Query, description = "RFC 3339"), ("format" = Option<String>, Query, description = "`json` (default) or `csv`")),
    responses((status = 200, description = "Attendance of the sessions in [from, to)",
               content((AttendanceReport = "application/json"), (String = "text/csv")))))]
pub(crate) async fn range(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<RangeQuery>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let from = time("from", query.from.as_deref())?;
    let to = time("to", query.to.as_deref())?;
    let format = format(query.format.as_deref())?;
    let export = state
        .attendance
        .range_export(from, to, format, &caller.actor, Utc::now())
        .await?;
    Ok(file(
        export,
        &format!("attendance-{}-{}", from.date_naive(), to.date_naive()),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct WeekQuery {
    week: Option<String>,
    format: Option<String>,
}

#[utoipa::path(get, path = "/v1/attendance/weekly", tag = "attendance",
    params(("week" = String, Query, description = "ISO week, e.g. 2026-W49"), ("format" = Option<String>, Query, description = "`json` (default) or `csv`")),
    responses((status = 200, description = "The weekly IOP report",
               content((AttendanceReport = "application/json"), (String = "text/csv")))))]
pub(crate) async fn weekly(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<WeekQuery>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let week = query.week.ok_or_else(|| {
        ApiError::invalid(vec![FieldError {
            field: "week".into(),
            message: "is required, as YYYY-Www (e.g. 2026-W48)".into(),
        }])
    })?;
    let format = format(query.format.as_deref())?;
    let export = state
        .attendance
        .weekly_export(&week, format, &caller.actor, Utc::now())
        .await?;
    Ok(file(export, &format!("iop-weekly-{week}")))
}

#[utoipa::path(get, path = "/v1/attendance/verify", tag = "attendance",
    responses((status = 200, description = "The ledger's hash chain, recomputed", body = Verification)))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let verification = state.attendance.verify(&caller.actor, Utc::now()).await?;
    Ok(Json(verification).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnnotationRequest {
    participant_id: String,
    text: String,
}

#[utoipa::path(post, path = "/v1/attendance/sessions/{id}/annotations", tag = "attendance",
    params(("id" = String, Path, description = "The session's id")),
    request_body = AnnotationRequest,
    responses((status = 201, description = "Appended to the ledger", body = AnnotationRecorded),
              (status = 404, description = "No such session or participant", body = ErrorBody)))]
pub(crate) async fn annotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<AnnotationRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(ANNOTATORS)?;
    // A clinician's staff token is about the clinic's staff id: only the
    // sessions with that clinician on the roster (admins: any).
    let clinician = match caller.role {
        ApiRole::Admin => None,
        _ => Some(caller.actor.strip_prefix("staff:").ok_or_else(|| {
            ApiError::forbidden("only a clinician's staff token or an admin may annotate")
        })?),
    };
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::not_found("session not found"))?;
    let Json(request) = body?;
    let seq = state
        .attendance
        .annotate(
            id,
            &request.participant_id,
            &request.text,
            &caller.actor,
            clinician,
            Utc::now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(AnnotationRecorded { seq })).into_response())
}

#[utoipa::path(get, path = "/v1/audit/exports", tag = "attendance",
    responses((status = 200, description = "Every attendance export, who and when (admin only)", body = ExportLog)))]
pub(crate) async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(&[])?;
    let exports = state.attendance.audit_log().await?;
    Ok(Json(ExportLog { exports }).into_response())
}
