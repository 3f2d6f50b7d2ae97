//! The caller of a REST request, from its `Authorization: Bearer` key.
//!
//! A missing or unknown key is 401; a known key whose role does not allow
//! the action is 403. The key itself is never logged, only its id.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::ApiError;
use super::AppState;
use crate::auth::{api_key, ApiRole};

#[derive(Debug, Clone)]
pub struct Caller {
    pub role: ApiRole,
}

impl Caller {
    /// Passes when the caller's role is one of `allowed` (admin always is).
    pub fn require(&self, allowed: &[ApiRole]) -> Result<(), ApiError> {
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
        let record = state
            .scheduler
            .store()
            .active_api_key(&api_key::hash(key))
            .await
            .map_err(|error| {
                tracing::error!(%error, "cannot look up an API key");
                ApiError::internal()
            })?
            .ok_or_else(|| ApiError::unauthorized("the API key is not valid"))?;
        tracing::Span::current().record("api_key", tracing::field::display(record.id));
        Ok(Caller { role: record.role })
    }
}
