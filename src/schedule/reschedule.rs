//! Moving one session to another time (`PATCH /v1/sessions/{id}`).
//!
//! Links already sent keep working: the join check judges a link issued
//! before the move against the session's current window
//! (`Scheduler::resolve_invite`), so the old link opens at the new time.
//! A session whose links have opened cannot be moved: someone may already
//! be in its waiting room, and its live room keeps the times it opened
//! with.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::request::FieldError;
use super::{ScheduleError, Scheduler, Session, SessionStatus};

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MoveRequest {
    pub starts_at: Option<String>,
    /// Default: the new start plus the session's current length.
    pub ends_at: Option<String>,
    pub allow_overlap: Option<bool>,
}

fn time(field: &str, raw: &str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| chrono::SubsecRound::trunc_subsecs(t.with_timezone(&Utc), 3))
        .map_err(|_| FieldError {
            field: field.into(),
            message: format!("{raw:?} is not an RFC 3339 time like 2026-12-07T18:00:00-05:00"),
        })
}

/// Why a session may not move at `now`, if it may not.
pub(crate) fn immovable(session: &Session, now: DateTime<Utc>) -> Option<String> {
    match session.status(now) {
        SessionStatus::Cancelled => Some("the session is cancelled and cannot be moved".into()),
        SessionStatus::Ended => Some("the session has ended and cannot be moved".into()),
        SessionStatus::Scheduled if now >= session.starts_at => {
            Some("the session has started and cannot be moved".into())
        }
        SessionStatus::Scheduled if now >= session.opens_at() => Some(format!(
            "the session's links opened at {} (people may be waiting); it can no longer be moved",
            session.opens_at().to_rfc3339()
        )),
        SessionStatus::Scheduled => None,
    }
}

impl MoveRequest {
    /// The session at its new time, or every problem with the request.
    fn apply(&self, session: &Session, now: DateTime<Utc>) -> Result<Session, Vec<FieldError>> {
        let mut errors = Vec::new();
        let starts_at = match self.starts_at.as_deref() {
            None => {
                errors.push(FieldError {
                    field: "starts_at".into(),
                    message: "is required".into(),
                });
                None
            }
            Some(raw) => time("starts_at", raw).map_err(|e| errors.push(e)).ok(),
        };
        let ends_at = match (self.ends_at.as_deref(), starts_at) {
            (Some(raw), _) => time("ends_at", raw).map_err(|e| errors.push(e)).ok(),
            (None, Some(start)) => Some(start + (session.ends_at - session.starts_at)),
            (None, None) => None,
        };
        if let (Some(start), Some(end)) = (starts_at, ends_at) {
            if start <= now {
                errors.push(FieldError {
                    field: "starts_at".into(),
                    message: "is in the past; a session can only move to a time to come".into(),
                });
            }
            if end <= start {
                errors.push(FieldError {
                    field: "ends_at".into(),
                    message: "must be after starts_at".into(),
                });
            } else if end - start > Duration::hours(24) {
                errors.push(FieldError {
                    field: "ends_at".into(),
                    message: "a session lasts at most 24 hours".into(),
                });
            }
        }
        match (starts_at, ends_at) {
            (Some(starts_at), Some(ends_at)) if errors.is_empty() => Ok(Session {
                starts_at,
                ends_at,
                ..session.clone()
            }),
            _ => Err(errors),
        }
    }
}

impl Scheduler {
    /// Moves session `id` to a new time, unless that would double-book one
    /// of its people (or `allow_overlap`).
    pub(crate) async fn reschedule(
        &self,
        id: Uuid,
        request: &MoveRequest,
        now: DateTime<Utc>,
    ) -> Result<Session, ScheduleError> {
        let _placing = self.placing.lock().await;
        let session = self.get(id).await?;
        if let Some(reason) = immovable(&session, now) {
            return Err(ScheduleError::Conflict(reason));
        }
        let moved = request
            .apply(&session, now)
            .map_err(ScheduleError::Invalid)?;
        let allow_overlap = request.allow_overlap.unwrap_or(false);
        let clashes = self
            .store
            .update_sessions(std::slice::from_ref(&moved), false, allow_overlap, now)
            .await?;
        if !clashes.is_empty() {
            return Err(ScheduleError::DoubleBooked(clashes));
        }
        tracing::info!(session = %id, allow_overlap, "session moved");
        Ok(moved)
    }
}
