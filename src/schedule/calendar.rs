//! A person's calendar feed: their upcoming sessions as iCalendar (RFC 5545)
//! events, each with its join link, for the calendar application they
//! already use.
//!
//! Event titles say nothing about health ("Session with your care team"):
//! calendars are synced to phones, shared with family and shown on lock
//! screens. The feed's URL is a capability (`auth::calendar`); revoking the
//! person in the session or series that gave it revokes the feed.

use chrono::{DateTime, Utc};
use icalendar::{Calendar, Component, Event, EventLike};
use uuid::Uuid;

use super::{ScheduleError, Scheduler};
use crate::auth::calendar::{self, CalendarClaims};
use crate::auth::invite::InviteClaims;

/// What every event is called.
pub(crate) const EVENT_TITLE: &str = "Session with your care team";
/// The most events one feed carries.
const MAX_EVENTS: u32 = 500;

impl Scheduler {
    /// The capability URL of `person`'s feed, carried by the invite of
    /// session (or series) `id`.
    pub(crate) fn calendar_url(
        &self,
        person: &str,
        id: Uuid,
        series: bool,
        now: DateTime<Utc>,
    ) -> String {
        let token = calendar::issue(
            &self.key,
            &CalendarClaims {
                sub: person.to_owned(),
                sid: id,
                series,
                iat: now.timestamp(),
                jti: Uuid::new_v4(),
                aud: calendar::AUDIENCE.to_owned(),
            },
        );
        let mut url = self.public_url.clone();
        url.set_path(&format!("/cal/{token}"));
        url.to_string()
    }

    /// The feed behind a calendar token at `now`, as iCalendar text; not
    /// found when the token is not ours or its holder was revoked.
    pub(crate) async fn calendar_feed(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<String, ScheduleError> {
        let gone = ScheduleError::NotFound("calendar");
        let claims =
            calendar::verify(&self.key, token).ok_or(ScheduleError::NotFound("calendar"))?;
        let anchors = if claims.series {
            self.store.series_sessions(claims.sid).await?
        } else {
            self.store.session(claims.sid).await?.into_iter().collect()
        };
        let entries: Vec<_> = anchors
            .iter()
            .filter_map(|s| s.member(&claims.sub))
            .collect();
        if entries.is_empty() || entries.iter().any(|p| p.revoked_at.is_some()) {
            return Err(gone);
        }
        let mut feed = Calendar::new();
        feed.name("Tandem sessions");
        for session in self
            .store
            .person_sessions(&claims.sub, now, MAX_EVENTS)
            .await?
        {
            let Some(member) = session.member(&claims.sub) else {
                continue;
            };
            let link = self.join_url(
                session.id,
                &InviteClaims::new(
                    &member.id,
                    session.id,
                    member.role,
                    session.opens_at(),
                    session.closes_at(),
                    now,
                ),
            );
            let host = self.public_url.host_str().unwrap_or("tandem");
            feed.push(
                Event::new()
                    .uid(&format!("{}@{host}", session.id))
                    .summary(EVENT_TITLE)
                    .description(&format!("Join: {link}"))
                    .url(&link)
                    .starts(session.starts_at)
                    .ends(session.ends_at)
                    .timestamp(now)
                    .done(),
            );
        }
        tracing::info!(person = %claims.sub, "calendar feed served");
        Ok(feed.done().to_string())
    }
}
