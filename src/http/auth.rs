//! The caller of a REST request, from its `Authorization: Bearer` API key
//! or staff token.
//!
//! A missing or unknown credential is 401; a valid one whose role does not
//! allow the action is 403. The credential itself is never logged, only the
//! key's id or the staff member's id.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::ApiError;
use super::AppState;
use crate::auth::{api_key, ApiRole};

#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub role: ApiRole,
    /// Who, for the export audit log: `api-key:<id>` or `staff:<id>`.
    pub actor: String,
}

impl Caller {
    /// Passes when the caller's role is one of `allowed` (admin always is).
    pub(crate) fn require(&self, allowed: &[ApiRole]) -> Result<(), ApiError> {
        if self.role == ApiRole::Admin || allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "an API key with the {} role may not do this",
                self.role
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("send an API key: Authorization: Bearer <key>")
        })?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be: Bearer <key>")
            })?;
        if !key.starts_with(api_key::PREFIX) {
            let claims = state
                .scheduler
                .verify_staff(key, chrono::Utc::now())
                .ok_or_else(|| {
                    ApiError::unauthorized("the credential is not a valid API key or staff token")
                })?;
            tracing::Span::current().record(
                "api_key",
                tracing::field::display(format!("staff:{}", claims.sub)),
            );
            return Ok(Caller {
                role: claims.role,
                actor: format!("staff:{}", claims.sub),
            });
        }
        let record = state
            .store
            .active_api_key(&api_key::hash(key))
            .await
            .map_err(|error| {
                tracing::error!(%error, "cannot look up an API key");
                ApiError::unavailable("the database cannot be used right now; try again later")
            })?
            .ok_or_else(|| ApiError::unauthorized("the API key is not valid"))?;
        tracing::Span::current().record("api_key", tracing::field::display(record.id));
        Ok(Caller {
            role: record.role,
            actor: format!("api-key:{}", record.id),
        })
    }
}
