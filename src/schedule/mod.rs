//! Scheduling: sessions, rosters, time windows, invite links.
//!
//! The [`Scheduler`] is the one place where the clinic's requests (REST or
//! CLI) become stored sessions and signed links, so both entry points obey
//! the same rules.

pub(crate) mod availability;
mod calendar;
mod people;
pub(crate) mod recurrence;
mod request;
mod reschedule;
mod series;
pub(crate) mod slots;
mod view;

pub(crate) use crate::schedule::availability::AvailabilityRequest;
pub(crate) use crate::store::placement::{Clash, Placement};
pub use crate::store::session::{
    RosterEntry, Session, SessionKind, SessionSettings, SessionStatus,
};
pub(crate) use people::{PersonRequest, PersonView, SlotRequest};
pub(crate) use request::{
    ClinicianRequest, FieldError, ParticipantRequest, SessionRequest, SettingsRequest,
};
pub(crate) use reschedule::MoveRequest;
pub(crate) use series::{Series, SeriesPatch, SeriesRequest, SeriesView};
pub(crate) use view::SessionView;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;
use url::Url;
use uuid::Uuid;

use crate::auth::invite::{self, InviteClaims, TokenError};
use crate::auth::signing_key::SigningKey;
use crate::auth::RosterRole;
use crate::config::SessionsSection;
use crate::store::{Change, Store, StoreError};

/// The most sessions one listing returns.
pub(crate) const LIST_LIMIT: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    /// The write would put someone in two sessions at once; nothing was
    /// written.
    #[error("{}", describe_clashes(.0))]
    DoubleBooked(Vec<Clash>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The sentence that tells a clinic what a refused write would have
/// double-booked (the API's 409 message and the CLI's error alike).
pub(crate) fn describe_clashes(clashes: &[Clash]) -> String {
    let mut sentences: Vec<String> = clashes
        .iter()
        .map(|c| {
            format!(
                "{} is already in session {} at {}",
                c.participant,
                c.other,
                c.starts_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
        .collect();
    sentences.dedup();
    // A whole series against another can clash hundreds of times: the
    // sentence names the first few, the API's `conflicts` lists them all.
    const NAMED: usize = 5;
    let more = sentences.len().saturating_sub(NAMED);
    sentences.truncate(NAMED);
    let rest = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "double-booking: {}{rest}. Nothing was scheduled; choose another time, or pass \"allow_overlap\": true",
        sentences.join("; ")
    )
}

/// One participant's link.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Invite {
    pub participant_id: String,
    /// `clinician`, `patient`, `partner` or `observer`.
    #[schema(value_type = String, example = "patient")]
    pub role: RosterRole,
    pub url: String,
    pub not_before: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The person's calendar feed (iCalendar), a capability URL.
    pub calendar_url: String,
}

/// A change that live rooms must act on at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    Revoked { session: Uuid, participant: String },
    Cancelled { session: Uuid },
}

#[derive(Clone, Debug)]
pub struct Scheduler {
    store: Store,
    key: SigningKey,
    defaults: SessionsSection,
    public_url: Url,
    notices: broadcast::Sender<Notice>,
    /// Held while a write that places sessions checks for double-booking
    /// and writes, so two requests cannot both take the same hour.
    placing: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Scheduler {
    pub(crate) fn new(
        store: Store,
        key: SigningKey,
        defaults: SessionsSection,
        public_url: Url,
    ) -> Self {
        Scheduler {
            store,
            key,
            defaults,
            public_url,
            notices: broadcast::channel(64).0,
            placing: Default::default(),
        }
    }

    /// The claims of a valid staff token at `now`.
    pub(crate) fn verify_staff(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Option<crate::auth::staff::StaffClaims> {
        crate::auth::staff::verify(&self.key, token, now)
    }

    /// Signs a staff token (`tandem token issue`).
    pub(crate) fn issue_staff(
        &self,
        subject: &str,
        role: crate::auth::ApiRole,
        now: DateTime<Utc>,
        lifetime: chrono::Duration,
    ) -> String {
        crate::auth::staff::issue(&self.key, subject, role, now, lifetime)
    }

    /// Revocations and cancellations, for the live rooms.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// Stores that the clinician removed `participant` from session `id`
    /// at `at`: from then on their links are refused, across restarts
    /// (a removed person stays out).
    pub(crate) async fn remove(
        &self,
        id: Uuid,
        participant: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.store.mark_removed(id, participant, at).await
    }

    /// Stores that the clinician ended session `id` at `at`: nobody joins
    /// it again.
    pub(crate) async fn end(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.store.end_session(id, at).await
    }

    /// Closes the database once nothing more will be written.
    pub(crate) async fn close(&self) {
        self.store.close().await
    }

    pub(crate) async fn create(
        &self,
        request: &SessionRequest,
        now: DateTime<Utc>,
    ) -> Result<Session, ScheduleError> {
        let session = request
            .validate(&self.defaults, now)
            .map_err(ScheduleError::Invalid)?;
        let allow_overlap = request.allow_overlap.unwrap_or(false);
        let _placing = self.placing.lock().await;
        let clashes = self
            .store
            .place_sessions(std::slice::from_ref(&session), None, allow_overlap, now)
            .await?;
        if !clashes.is_empty() {
            return Err(ScheduleError::DoubleBooked(clashes));
        }
        tracing::info!(session = %session.id, kind = session.kind.as_str(), roster = session.roster.len(), allow_overlap, "session scheduled");
        Ok(session)
    }

    /// How each of `ids` was placed: its series, whether it overlaps on
    /// purpose, when it was last moved.
    pub(crate) async fn placements(
        &self,
        ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, Placement>, ScheduleError> {
        Ok(self.store.placements(ids).await?)
    }

    pub async fn get(&self, id: Uuid) -> Result<Session, ScheduleError> {
        self.store
            .session(id)
            .await?
            .ok_or(ScheduleError::NotFound("session"))
    }

    /// Sessions overlapping `[from, to)`.
    pub(crate) async fn list(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<Session>, ScheduleError> {
        if let (Some(from), Some(to)) = (from, to) {
            if to <= from {
                return Err(ScheduleError::Invalid(vec![FieldError {
                    field: "to".into(),
                    message: "must be after from".into(),
                }]));
            }
        }
        Ok(self.store.sessions_between(from, to, LIST_LIMIT).await?)
    }

    /// Cancels a session. Cancelling twice is not an error; cancelling one
    /// that has ended is a conflict (its record stands as it was).
    pub(crate) async fn cancel(&self, id: Uuid, now: DateTime<Utc>) -> Result<(), ScheduleError> {
        let session = self.get(id).await?;
        if session.status(now) == SessionStatus::Ended {
            return Err(ScheduleError::Conflict(
                "the session has already ended and cannot be cancelled".into(),
            ));
        }
        match self.store.cancel_session(id, now).await? {
            Change::NotFound => Err(ScheduleError::NotFound("session")),
            Change::Done => {
                tracing::info!(session = %id, "session cancelled");
                let _ = self.notices.send(Notice::Cancelled { session: id });
                Ok(())
            }
            Change::AlreadyDone => Ok(()),
        }
    }

    /// New links for everyone on the roster who is not revoked, the clinician
    /// included. Links issued earlier keep working.
    pub(crate) async fn invites(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invite>, ScheduleError> {
        let session = self.get(id).await?;
        match session.status(now) {
            SessionStatus::Cancelled => {
                return Err(ScheduleError::Conflict("the session is cancelled".into()))
            }
            SessionStatus::Ended => {
                return Err(ScheduleError::Conflict("the session has ended".into()))
            }
            SessionStatus::Scheduled => {}
        }
        let invites = session
            .roster
            .iter()
            .filter(|person| person.revoked_at.is_none())
            .map(|person| {
                let claims = InviteClaims::new(
                    &person.id,
                    session.id,
                    person.role,
                    session.opens_at(),
                    session.closes_at(),
                    now,
                );
                Invite {
                    participant_id: person.id.clone(),
                    role: person.role,
                    url: self.join_url(session.id, &claims),
                    not_before: session.opens_at(),
                    expires_at: session.closes_at(),
                    calendar_url: self.calendar_url(&person.id, session.id, false, now),
                }
            })
            .collect();
        tracing::info!(session = %id, "invite links issued");
        Ok(invites)
    }

    /// `https://HOST/j/ID#t=TOKEN`: the link that carries `claims` (ID is
    /// the session's, or the series' for a series link).
    fn join_url(&self, id: Uuid, claims: &InviteClaims) -> String {
        let token = invite::issue(&self.key, claims);
        let mut url = self.public_url.clone();
        url.set_path(&format!("/j/{id}"));
        url.set_fragment(Some(&format!("t={token}")));
        url.to_string()
    }

    /// Reads an invite token for a join at `now`: its verification
    /// (signature and window) and the session it names, if that exists.
    /// Whether it lets its holder in is `room::admission`'s decision; the
    /// error is a storage failure.
    pub(crate) async fn resolve_invite(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(Result<InviteClaims, TokenError>, Option<Session>), ScheduleError> {
        let claims = match invite::decode(&self.key, token) {
            Ok(claims) => claims,
            Err(error) => return Ok((Err(error), None)),
        };
        if claims.series {
            return self.resolve_series_invite(claims, now).await;
        }
        let session = self.store.session(claims.sid).await?;
        // A link issued before its session moved opens at the new time:
        // the session record's window counts, not the one in the token.
        let moved = match &session {
            Some(s) => self.store.placements(&[s.id]).await?.remove(&s.id),
            None => None,
        }
        .and_then(|p| p.moved_at);
        let (opens_at, closes_at) = match (&session, moved) {
            (Some(s), Some(moved)) if claims.iat <= moved.timestamp() => {
                (s.opens_at(), s.closes_at())
            }
            _ => (claims.opens_at(), claims.closes_at()),
        };
        Ok((invite::judge(claims, opens_at, closes_at, now), session))
    }

    /// Invalidates every link of one participant, now and for the rest of
    /// the session.
    pub(crate) async fn revoke(
        &self,
        session: Uuid,
        participant: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ScheduleError> {
        self.get(session).await?;
        match self
            .store
            .revoke_participant(session, participant, now)
            .await?
        {
            Change::NotFound => Err(ScheduleError::NotFound("participant")),
            Change::Done => {
                tracing::info!(session = %session, participant, "participant revoked");
                let _ = self.notices.send(Notice::Revoked {
                    session,
                    participant: participant.to_owned(),
                });
                Ok(())
            }
            Change::AlreadyDone => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_of_clashes_is_named_in_short() {
        let clash = |n: u128| Clash {
            session: Uuid::from_u128(n),
            starts_at: "2026-12-07T23:00:00Z".parse().unwrap(),
            participant: format!("p-{n}"),
            other: Uuid::from_u128(1000 + n),
        };
        let one = describe_clashes(&[clash(1)]);
        assert!(one.starts_with("double-booking: p-1 is already in session 00000000-0000-0000-0000-0000000003e9 at 2026-12-07T23:00:00Z. Nothing"), "{one}");
        let many: Vec<Clash> = (0..600).map(clash).collect();
        let text = describe_clashes(&many);
        assert!(
            text.contains("p-4 is already") && !text.contains("p-5 is already"),
            "{text}"
        );
        assert!(text.contains(" and 595 more."), "{text}");
    }
}
