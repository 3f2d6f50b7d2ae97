//! The caller of a REST request, from its `Authorization: Bearer` API key
//! or staff token, or from the staff console's cookie session.
//!
//! A console session is a credential like an API key with the account's
//! roles; for any request that changes something it must come with the
//! session's CSRF token in `X-CSRF-Token` (403 `csrf` otherwise). The
//! account is the actor in the export audit (`staff:<email>`).
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
    /// Every role the caller holds (a console account may hold several).
    pub roles: Vec<ApiRole>,
    /// Who, for the export audit log: `api-key:<id>` or `staff:<id>`.
    pub actor: String,
}

impl Caller {
    /// Passes when the caller's role is one of `allowed` (admin always is).
    pub(crate) fn require(&self, allowed: &[ApiRole]) -> Result<(), ApiError> {
        if self
            .roles
            .iter()
            .any(|r| *r == ApiRole::Admin || allowed.contains(r))
        {
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
        if parts.headers.get(AUTHORIZATION).is_none() {
            if let Some(cookie) = super::console::session_cookie(&parts.headers) {
                return console_caller(parts, state, &cookie).await;
            }
        }
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
                roles: vec![claims.role],
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
            roles: vec![record.role],
            actor: format!("api-key:{}", record.id),
        })
    }
}

/// The caller of a console session: its account's roles; the CSRF token
/// for anything but a read.
async fn console_caller(parts: &Parts, state: &AppState, cookie: &str) -> Result<Caller, ApiError> {
    let now = chrono::Utc::now();
    let (mut session, account) = state.console.signed_in(cookie, now).await?;
    // A refused request is no activity.
    super::console::check_csrf(&parts.method, &parts.headers, &session)?;
    state.console.touch(&mut session, now).await?;
    let actor = account.actor();
    tracing::Span::current().record(
        "api_key",
        tracing::field::display(format!("console:{}", account.id)),
    );
    Ok(Caller {
        role: account.primary_role(),
        roles: account.roles,
        actor,
    })
}
