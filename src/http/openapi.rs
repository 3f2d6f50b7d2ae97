//! `GET /v1/openapi.json`: the REST API as an OpenAPI 3.1 document,
//! generated from the handlers' own `#[utoipa::path]` annotations and the
//! request and response types they (de)serialise, so it cannot drift from
//! the code.
//!
//! To document a new endpoint: annotate its handler with
//! `#[utoipa::path]` and add it to `paths(...)` below (the one place to
//! register it). The integration test `openapi::` fails when a route the
//! router serves is missing here, and checks real responses against these
//! schemas. What every operation shares — the bearer scheme and the error
//! responses of the authentication and body layers — is added by
//! [`Shared`], not repeated on each handler.

use std::collections::HashMap;

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::{ConflictView, ErrorBody, ErrorObject};
use super::{attendance, scheduling, sessions, signal, webhooks};
use crate::attendance::ledger::Verification;
use crate::schedule::{
    AvailabilityRequest, FieldError, Invite, MoveRequest, PersonRequest, SeriesPatch,
    SeriesRequest, SessionRequest, SlotRequest,
};
use crate::store::ExportRecord;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tandem REST API",
        description = "Scheduling, invite links and attendance for Tandem, the self-hosted \
server for secure joint and group video therapy sessions. docs/api.md has the rules behind \
each field; docs/protocol.md the signaling protocol behind `/v1/signal`.",
        license(name = "UNLICENSED")
    ),
    paths(
        sessions::create,
        sessions::list,
        sessions::get,
        sessions::reschedule,
        sessions::cancel,
        sessions::invites,
        sessions::revoke,
        scheduling::get_person,
        scheduling::put_person,
        scheduling::get_availability,
        scheduling::put_availability,
        scheduling::search_slots,
        scheduling::create_series,
        scheduling::get_series,
        scheduling::patch_series,
        scheduling::cancel_series,
        scheduling::series_invites,
        attendance::range,
        attendance::session,
        attendance::annotate,
        attendance::weekly,
        attendance::verify,
        attendance::audit_log,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::patch,
        webhooks::delete,
        webhooks::rotate_secret,
        webhooks::deliveries,
        webhooks::replay,
        signal::upgrade,
        document,
        super::health,
        super::metrics,
    ),
    components(schemas(
        ErrorBody,
        ErrorObject,
        ConflictView,
        FieldError,
        SessionRequest,
        MoveRequest,
        PersonRequest,
        AvailabilityRequest,
        SlotRequest,
        SeriesRequest,
        SeriesPatch,
        Invite,
        Verification,
        ExportRecord,
        webhooks::WebhookRequest,
        webhooks::WebhookView,
        webhooks::WebhookCreated,
        webhooks::SecretRotated,
        webhooks::RotateRequest,
        webhooks::WebhookList,
        webhooks::DeliveryView,
        webhooks::DeliveryList,
    )),
    modifiers(&Shared),
    security(("bearer" = [])),
    tags(
        (name = "sessions", description = "Sessions, invite links, revocation"),
        (name = "people", description = "People, availability, common slots"),
        (name = "series", description = "Recurring series of sessions"),
        (name = "attendance", description = "Attendance reports, the ledger, the export audit log"),
        (name = "webhooks", description = "Signed event delivery to the clinic's receivers (docs/webhooks.md)"),
        (name = "signaling", description = "The WebSocket of the browser client"),
        (name = "operations", description = "Health, metrics, this document"),
    )
)]
pub(crate) struct ApiDoc;

/// `GET /v1/openapi.json`: this document (no API key).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub(crate) async fn document() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// `{"sessions": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionList<'a> {
    pub sessions: Vec<crate::schedule::SessionView<'a>>,
}

/// `{"invites": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InviteList {
    pub invites: Vec<Invite>,
}

/// One common free time.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Slot {
    pub starts_at: chrono::DateTime<chrono::Utc>,
    pub ends_at: chrono::DateTime<chrono::Utc>,
}

/// `{"slots": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SlotList {
    pub slots: Vec<Slot>,
}

/// An annotation's place in the ledger.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AnnotationRecorded {
    pub seq: i64,
}

/// `{"exports": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExportLog {
    pub exports: Vec<ExportRecord>,
}

/// An attendance report as JSON: its members are described in
/// docs/compliance.md (the same report is available as CSV).
#[derive(Debug, ToSchema)]
pub(crate) struct AttendanceReport(#[allow(dead_code)] HashMap<String, serde_json::Value>);

/// What every operation shares: the bearer scheme, and the errors the
/// authentication and body layers may answer with before a handler runs.
struct Shared;

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`tdm_…`, `tandem apikey create --role ROLE`) or a staff token",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let secured = operation.security.as_ref().is_none_or(|s| !s.is_empty())
                    && !matches!(
                        path.as_str(),
                        "/healthz" | "/v1/signal" | "/v1/openapi.json"
                    );
                if secured {
                    add_error(operation, "401", "No or an invalid API key");
                    add_error(operation, "403", "The key's role does not allow this");
                }
                let queried =
                    operation.parameters.iter().flatten().any(|p| {
                        matches!(p, RefOr::T(p) if matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query))
                    });
                if queried {
                    add_error(operation, "400", "The query string cannot be read");
                    add_error(operation, "422", "A parameter is invalid: `field` names it");
                }
                if operation.request_body.is_some() {
                    add_error(operation, "400", "The body is not JSON");
                    add_error(operation, "413", "The body is over 256 KiB");
                    add_error(operation, "415", "The body is not application/json");
                    add_error(
                        operation,
                        "422",
                        "A field is invalid: `field` and `details` say which",
                    );
                }
                if path.starts_with("/v1/") && path != "/v1/openapi.json" && path != "/v1/signal" {
                    add_error(
                        operation,
                        "503",
                        "The database or the ledger cannot be used right now",
                    );
                }
            }
        }
    }
}

fn add_error(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(utoipa::openapi::Ref::from_schema_name("Error")))
                            .build(),
                    )
                    .build(),
            )
        });
}
