//! The REST API's error shape: `{"error": {"code", "message"}}` with a
//! fitting status. Validation errors add `field` (the first bad field) and
//! `details` (every bad field), so a client can point at the right input.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::schedule::{describe_clashes, Clash, FieldError, ScheduleError};

#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<FieldError>,
    /// Each clash of a double-booking (409 `conflict`).
    conflicts: Option<Vec<ConflictView>>,
}

/// Every error's body, whatever produced it (the OpenAPI document's
/// `Error` schema is generated from this type).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error, example = json!({"error": {"code": "validation_failed",
    "message": "ends_at: must be after starts_at", "field": "ends_at",
    "details": [{"field": "ends_at", "message": "must be after starts_at"}]}}))]
pub(crate) struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorObject {
    /// A stable code: `bad_request`, `unauthorized`, `forbidden`,
    /// `not_found`, `method_not_allowed`, `request_timeout`, `conflict`,
    /// `payload_too_large`, `unsupported_media_type`, `validation_failed`,
    /// `internal`, `unavailable` (docs/api.md, Errors).
    #[schema(example = "not_found")]
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// 422 only: the first invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// 422 only: every invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<FieldError>>,
    /// 409 on a double-booking: each person and the session that already
    /// holds their time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<Vec<ConflictView>>,
}

/// One clash of a double-booking.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct ConflictView {
    pub participant_id: String,
    pub session_id: String,
    pub starts_at: chrono::DateTime<chrono::Utc>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            conflicts: None,
        }
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn invalid(details: Vec<FieldError>) -> Self {
        let message = details
            .iter()
            .map(|d| format!("{}: {}", d.field, d.message))
            .collect::<Vec<_>>()
            .join("; ");
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message,
            details,
            conflicts: None,
        }
    }

    /// The database cannot be read or written right now (a full disk, a
    /// failing volume): nothing was done or returned; try again later.
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let field = self.details.first().map(|first| first.field.clone());
        let body = ErrorBody {
            error: ErrorObject {
                code: self.code.to_owned(),
                message: self.message,
                details: field.is_some().then_some(self.details),
                field,
                conflicts: self.conflicts,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
        }
        response
    }
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::Invalid(details) => ApiError::invalid(details),
            ScheduleError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            ScheduleError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            ScheduleError::DoubleBooked(clashes) => double_booked(&clashes),
            ScheduleError::Store(error) => {
                tracing::error!(%error, "storage failure");
                ApiError::unavailable("the database cannot be used right now; try again later")
            }
        }
    }
}

/// 409 `conflict` naming, for each clash, the person and the session that
/// already holds their time.
fn double_booked(clashes: &[Clash]) -> ApiError {
    let list: Vec<_> = clashes
        .iter()
        .map(|c| ConflictView {
            participant_id: c.participant.clone(),
            session_id: c.other.to_string(),
            starts_at: c.starts_at,
        })
        .collect();
    let mut error = ApiError::new(StatusCode::CONFLICT, "conflict", describe_clashes(clashes));
    error.conflicts = Some(list);
    error
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => {
                // serde names the path of the bad value ("participants[0]: ...").
                let text = std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| e.body_text());
                let field = text.split(':').next().unwrap_or("body").trim().to_owned();
                let field = if field.contains(' ') {
                    "body".to_owned()
                } else {
                    field
                };
                ApiError::invalid(vec![FieldError {
                    field,
                    message: text,
                }])
            }
            JsonRejection::JsonSyntaxError(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request body is not valid JSON",
            ),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ),
            other => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
        }
    }
}
