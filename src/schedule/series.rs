//! Recurring series: an IOP track such as Mon/Wed/Thu 18:00–21:00 for eight
//! weeks, created as one session per occurrence, all or nothing, with one
//! link per person for the whole program.
//!
//! An occurrence is an ordinary session (its own roster, window, invites,
//! attendance) that remembers its series. A series link names the series;
//! at a join it resolves to the occurrence whose window is open then, or is
//! refused with the next occurrence's opening time.

use chrono::{DateTime, Duration, NaiveTime, SubsecRound, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::availability::local_to_utc;
use super::recurrence::{first_start, occurrences};
use super::request::{
    ClinicianRequest, FieldError, ParticipantRequest, SessionRequest, SettingsRequest,
};
use super::view::PersonView;
use super::{Invite, Notice, RosterEntry, ScheduleError, Scheduler, Session, SessionStatus};
use crate::auth::invite::{self, InviteClaims, TokenError};
use crate::config::SessionsSection;
use crate::store::placement::SeriesRecord;

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeriesRequest {
    pub title: Option<String>,
    pub kind: Option<String>,
    pub timezone: Option<String>,
    pub rrule: Option<String>,
    pub first_starts_at: Option<String>,
    pub duration_minutes: Option<i64>,
    pub clinician: Option<ClinicianRequest>,
    pub participants: Option<Vec<ParticipantRequest>>,
    pub settings: Option<SettingsRequest>,
    pub allow_overlap: Option<bool>,
}

/// `PATCH /v1/series/{id}`: a new wall-clock time (and length), and/or a
/// new roster, for every occurrence to come.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeriesPatch {
    /// `HH:MM` in the series' time zone.
    pub start_time: Option<String>,
    pub duration_minutes: Option<i64>,
    /// The new roster: both are given together.
    pub clinician: Option<ClinicianRequest>,
    pub participants: Option<Vec<ParticipantRequest>>,
    pub allow_overlap: Option<bool>,
}

fn problem(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

fn duration(errors: &mut Vec<FieldError>, value: Option<i64>, required: bool) -> Option<i64> {
    match value {
        None if required => {
            errors.push(problem("duration_minutes", "is required"));
            None
        }
        None => None,
        Some(m) if !(5..=1440).contains(&m) => {
            errors.push(problem("duration_minutes", "must be from 5 to 1440"));
            None
        }
        Some(m) => Some(m),
    }
}

impl SeriesRequest {
    /// The series and its sessions, or every problem found.
    pub(crate) fn validate(
        &self,
        defaults: &SessionsSection,
        now: DateTime<Utc>,
    ) -> Result<(SeriesRecord, Vec<Session>), Vec<FieldError>> {
        let mut errors = Vec::new();
        let timezone: Option<Tz> = match self.timezone.as_deref() {
            None => defaults.default_timezone.parse().ok(),
            Some(name) => super::availability::time_zone("timezone", Some(name))
                .map_err(|e| errors.push(e))
                .ok(),
        };
        let minutes = duration(&mut errors, self.duration_minutes, true);
        let first = match (timezone, self.first_starts_at.as_deref()) {
            (_, None) => {
                errors.push(problem("first_starts_at", "is required"));
                None
            }
            (Some(tz), Some(raw)) => first_start(tz, raw).map_err(|e| errors.push(e)).ok(),
            (None, Some(_)) => None,
        };
        let starts = match (self.rrule.as_deref(), first) {
            (None, _) => {
                errors.push(problem(
                    "rrule",
                    "is required, like FREQ=WEEKLY;BYDAY=MO,WE,TH;COUNT=24",
                ));
                None
            }
            (Some(rule), Some(first)) => occurrences(rule, first).map_err(|e| errors.push(e)).ok(),
            (Some(_), None) => None,
        };
        if let (Some(starts), Some(m)) = (&starts, minutes) {
            if starts
                .windows(2)
                .any(|w| w[1] - w[0] < Duration::minutes(m))
            {
                errors.push(problem(
                    "duration_minutes",
                    "occurrences would overlap each other: the rule repeats sooner than a session lasts",
                ));
            }
        }
        // The roster, kind, title and settings follow the rules of a single
        // session: checked once, on the first occurrence.
        let template = SessionRequest {
            title: self.title.clone(),
            kind: self.kind.clone(),
            starts_at: starts.as_ref().map(|s| s[0].to_rfc3339()),
            ends_at: match (&starts, minutes) {
                (Some(s), Some(m)) => Some((s[0] + Duration::minutes(m)).to_rfc3339()),
                _ => None,
            },
            timezone: timezone.map(|tz| tz.name().to_owned()),
            clinician: self.clinician.clone(),
            participants: self.participants.clone(),
            settings: self.settings.clone(),
            allow_overlap: None,
        };
        let template = match template.validate(defaults, now) {
            Ok(session) => Some(session),
            Err(problems) => {
                for p in problems {
                    match p.field.as_str() {
                        // Missing because an earlier field was already named.
                        "starts_at" | "ends_at" | "timezone" if !errors.is_empty() => {}
                        "starts_at" | "ends_at" => {
                            errors.push(problem("first_starts_at", p.message))
                        }
                        _ => errors.push(p),
                    }
                }
                None
            }
        };
        match (template, starts, minutes, timezone) {
            (Some(template), Some(starts), Some(minutes), Some(tz)) if errors.is_empty() => {
                let series = SeriesRecord {
                    id: Uuid::new_v4(),
                    title: template.title.clone(),
                    kind: template.kind.as_str().to_owned(),
                    timezone: tz.name().to_owned(),
                    rrule: self.rrule.clone().unwrap_or_default().trim().to_owned(),
                    first_starts_at: first
                        .expect("occurrences come from a first start")
                        .naive_local()
                        .format("%Y-%m-%dT%H:%M:%S")
                        .to_string(),
                    duration_minutes: minutes as u32,
                    created_at: now.trunc_subsecs(3),
                    cancelled_at: None,
                };
                let sessions = starts
                    .into_iter()
                    .map(|start| Session {
                        id: Uuid::new_v4(),
                        starts_at: start,
                        ends_at: start + Duration::minutes(minutes),
                        ..template.clone()
                    })
                    .collect();
                Ok((series, sessions))
            }
            _ => Err(errors),
        }
    }
}

/// One occurrence as the series view lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct OccurrenceView {
    pub id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: SessionStatus,
}

/// A series as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SeriesView<'a> {
    pub id: Uuid,
    pub title: &'a str,
    pub kind: &'a str,
    pub status: &'static str,
    pub timezone: &'a str,
    pub rrule: &'a str,
    pub first_starts_at: &'a str,
    pub duration_minutes: u32,
    pub clinician: Option<PersonView<'a>>,
    pub participants: Vec<PersonView<'a>>,
    /// Session ids, in time order.
    pub sessions: Vec<Uuid>,
    pub occurrences: Vec<OccurrenceView>,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// A series with its sessions.
#[derive(Debug)]
pub(crate) struct Series {
    pub record: SeriesRecord,
    pub sessions: Vec<Session>,
}

impl Series {
    /// The occurrence whose roster the series shows: the next one to come,
    /// else the last.
    fn current(&self, now: DateTime<Utc>) -> Option<&Session> {
        self.sessions
            .iter()
            .find(|s| s.status(now) == SessionStatus::Scheduled)
            .or(self.sessions.last())
    }

    pub(crate) fn view(&self, now: DateTime<Utc>) -> SeriesView<'_> {
        let r = &self.record;
        let current = self.current(now);
        SeriesView {
            id: r.id,
            title: &r.title,
            kind: &r.kind,
            status: if r.cancelled_at.is_some() {
                "cancelled"
            } else {
                "scheduled"
            },
            timezone: &r.timezone,
            rrule: &r.rrule,
            first_starts_at: &r.first_starts_at,
            duration_minutes: r.duration_minutes,
            clinician: current.map(|s| s.clinician().into()),
            participants: current
                .map(|s| s.participants().map(Into::into).collect())
                .unwrap_or_default(),
            sessions: self.sessions.iter().map(|s| s.id).collect(),
            occurrences: self
                .sessions
                .iter()
                .map(|s| OccurrenceView {
                    id: s.id,
                    starts_at: s.starts_at,
                    ends_at: s.ends_at,
                    status: s.status(now),
                })
                .collect(),
            created_at: r.created_at,
            cancelled_at: r.cancelled_at,
        }
    }
}

/// `sessions` with the roster of `patch`, validated by the rules of a
/// session of their kind. A person who stays keeps a revocation or removal
/// they had on that occurrence (a removed person stays out).
fn with_roster(
    defaults: &SessionsSection,
    sessions: Vec<Session>,
    patch: &SeriesPatch,
    now: DateTime<Utc>,
) -> Result<Vec<Session>, ScheduleError> {
    let first = &sessions[0];
    let template = SessionRequest {
        title: Some(first.title.clone()),
        kind: Some(first.kind.as_str().into()),
        starts_at: Some(first.starts_at.to_rfc3339()),
        ends_at: Some(first.ends_at.to_rfc3339()),
        timezone: Some(first.timezone.name().into()),
        clinician: patch.clinician.clone(),
        participants: patch.participants.clone(),
        settings: None,
        allow_overlap: None,
    }
    .validate(defaults, now)
    .map_err(ScheduleError::Invalid)?;
    Ok(sessions
        .into_iter()
        .map(|s| {
            let roster = template
                .roster
                .iter()
                .map(|p| match s.member(&p.id) {
                    Some(old) => RosterEntry {
                        revoked_at: old.revoked_at,
                        removed_at: old.removed_at,
                        ..p.clone()
                    },
                    None => p.clone(),
                })
                .collect();
            Session { roster, ..s }
        })
        .collect())
}

impl Scheduler {
    /// Creates every occurrence of a series, or none: a double-booking
    /// anywhere refuses the whole series and names each clash.
    pub(crate) async fn create_series(
        &self,
        request: &SeriesRequest,
        now: DateTime<Utc>,
    ) -> Result<Series, ScheduleError> {
        let (record, sessions) = request
            .validate(&self.defaults, now)
            .map_err(ScheduleError::Invalid)?;
        let allow_overlap = request.allow_overlap.unwrap_or(false);
        let _placing = self.placing.lock().await;
        let clashes = self
            .store
            .place_sessions(&sessions, Some(&record), allow_overlap, now)
            .await?;
        if !clashes.is_empty() {
            return Err(ScheduleError::DoubleBooked(clashes));
        }
        tracing::info!(series = %record.id, occurrences = sessions.len(), allow_overlap, "series scheduled");
        Ok(Series { record, sessions })
    }

    pub(crate) async fn series(&self, id: Uuid) -> Result<Series, ScheduleError> {
        let record = self
            .store
            .series(id)
            .await?
            .ok_or(ScheduleError::NotFound("series"))?;
        let sessions = self.store.series_sessions(id).await?;
        Ok(Series { record, sessions })
    }

    /// Cancels the occurrences still to start; the past and the running
    /// ones stay as they are. Cancelling twice changes nothing.
    pub(crate) async fn cancel_series(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), ScheduleError> {
        self.series(id).await?;
        let cancelled = self.store.cancel_series(id, now).await?;
        for session in &cancelled {
            let _ = self.notices.send(Notice::Cancelled { session: *session });
        }
        tracing::info!(series = %id, cancelled = cancelled.len(), "series cancelled");
        Ok(())
    }

    /// Moves every occurrence whose links have not opened to a new
    /// wall-clock start (and length), and/or gives them a new roster; all
    /// or none.
    pub(crate) async fn move_series(
        &self,
        id: Uuid,
        patch: &SeriesPatch,
        now: DateTime<Utc>,
    ) -> Result<Series, ScheduleError> {
        let _placing = self.placing.lock().await;
        let series = self.series(id).await?;
        if series.record.cancelled_at.is_some() {
            return Err(ScheduleError::Conflict("the series is cancelled".into()));
        }
        let mut errors = Vec::new();
        let minutes = duration(&mut errors, patch.duration_minutes, false)
            .unwrap_or(i64::from(series.record.duration_minutes));
        let time = match patch.start_time.as_deref() {
            None => None,
            Some(raw) => NaiveTime::parse_from_str(raw, "%H:%M")
                .map_err(|_| {
                    errors.push(problem(
                        "start_time",
                        format!("{raw:?} is not a time like 19:00"),
                    ))
                })
                .ok(),
        };
        let new_roster = patch.clinician.is_some() || patch.participants.is_some();
        if patch.start_time.is_none() && patch.duration_minutes.is_none() && !new_roster {
            errors.push(problem(
                "start_time",
                "give start_time, duration_minutes, or the roster (clinician and participants)",
            ));
        }
        if new_roster && (patch.clinician.is_none() || patch.participants.is_none()) {
            errors.push(problem(
                if patch.clinician.is_none() {
                    "clinician"
                } else {
                    "participants"
                },
                "a new roster gives both clinician and participants",
            ));
        }
        if !errors.is_empty() {
            return Err(ScheduleError::Invalid(errors));
        }
        let tz: Tz = series
            .record
            .timezone
            .parse()
            .map_err(|_| crate::store::StoreError::Corrupt("series time zone".into()))?;
        let moved: Vec<Session> = series
            .sessions
            .iter()
            .filter(|s| super::reschedule::immovable(s, now).is_none())
            .map(|s| {
                let local = s.starts_at.with_timezone(&tz);
                let start = match time {
                    Some(t) => local_to_utc(tz, local.date_naive().and_time(t)),
                    None => s.starts_at,
                };
                Session {
                    starts_at: start,
                    ends_at: start + Duration::minutes(minutes),
                    ..s.clone()
                }
            })
            .collect();
        if moved.is_empty() {
            return Err(ScheduleError::Conflict(
                "the series has no occurrence left to move".into(),
            ));
        }
        if moved.iter().any(|s| s.starts_at <= now) {
            return Err(ScheduleError::Invalid(vec![problem(
                "start_time",
                "would move the next occurrence into the past",
            )]));
        }
        let moved = if new_roster {
            with_roster(&self.defaults, moved, patch, now)?
        } else {
            moved
        };
        let clashes = self
            .store
            .update_sessions(
                &moved,
                new_roster,
                patch.allow_overlap.unwrap_or(false),
                now,
            )
            .await?;
        if !clashes.is_empty() {
            return Err(ScheduleError::DoubleBooked(clashes));
        }
        tracing::info!(series = %id, changed = moved.len(), new_roster, "series changed");
        drop(_placing);
        self.series(id).await
    }

    /// One link per person on the roster of the next occurrence, each
    /// good for every occurrence of the series (in its own window).
    pub(crate) async fn series_invites(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invite>, ScheduleError> {
        let series = self.series(id).await?;
        if series.record.cancelled_at.is_some() {
            return Err(ScheduleError::Conflict("the series is cancelled".into()));
        }
        let upcoming: Vec<&Session> = series
            .sessions
            .iter()
            .filter(|s| s.status(now) == SessionStatus::Scheduled)
            .collect();
        let (Some(next), Some(last)) = (upcoming.first(), upcoming.last()) else {
            return Err(ScheduleError::Conflict(
                "the series has no occurrence to come".into(),
            ));
        };
        let invites = next
            .roster
            .iter()
            .filter(|person| person.revoked_at.is_none())
            .map(|person| {
                let claims = InviteClaims::for_series(
                    &person.id,
                    id,
                    person.role,
                    next.opens_at(),
                    last.closes_at(),
                    now,
                );
                Invite {
                    participant_id: person.id.clone(),
                    role: person.role,
                    url: self.join_url(id, &claims),
                    not_before: next.opens_at(),
                    expires_at: last.closes_at(),
                    calendar_url: self.calendar_url(&person.id, id, true, now),
                }
            })
            .collect();
        tracing::info!(series = %id, "series links issued");
        Ok(invites)
    }

    /// A series link at `now`: the occurrence whose window is open, else
    /// the next one (refused as not yet open, with its opening time), else
    /// the last one (refused as ended, or cancelled when the series was). Only occurrences of this
    /// series with the link's holder on the roster count.
    pub(super) async fn resolve_series_invite(
        &self,
        claims: InviteClaims,
        now: DateTime<Utc>,
    ) -> Result<(Result<InviteClaims, TokenError>, Option<Session>), ScheduleError> {
        let sessions: Vec<Session> = self
            .store
            .series_sessions(claims.sid)
            .await?
            .into_iter()
            .filter(|s| s.member(&claims.sub).is_some())
            .collect();
        let live = |s: &&Session| s.cancelled_at.is_none();
        let pick = sessions
            .iter()
            .filter(live)
            .find(|s| s.status(now) == SessionStatus::Scheduled && s.opens_at() <= now)
            .or_else(|| sessions.iter().filter(live).find(|s| s.opens_at() > now))
            .or(sessions.last());
        let Some(session) = pick else {
            return Ok((Err(TokenError::Invalid), None));
        };
        let occurrence = InviteClaims {
            sid: session.id,
            ..claims
        };
        let judged = invite::judge(occurrence, session.opens_at(), session.closes_at(), now);
        Ok((judged, Some(session.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-30T14:00:00Z".parse().unwrap()
    }

    fn iop() -> serde_json::Value {
        json!({
            "title": "IOP couples track", "kind": "couple", "timezone": "America/New_York",
            "rrule": "FREQ=WEEKLY;BYDAY=MO,WE,TH;COUNT=24",
            "first_starts_at": "2026-12-07T18:00:00", "duration_minutes": 180,
            "clinician": {"id": "clin-1", "name": "Dr Rivera"},
            "participants": [{"id": "pat-1", "name": "Alex", "role": "patient"},
                             {"id": "par-1", "name": "Sam", "role": "partner"}]
        })
    }

    fn check(body: serde_json::Value) -> Result<(SeriesRecord, Vec<Session>), Vec<FieldError>> {
        serde_json::from_value::<SeriesRequest>(body)
            .unwrap()
            .validate(&Config::default().sessions, now())
    }

    #[test]
    fn a_series_becomes_one_session_per_occurrence_at_18_00_local() {
        let (series, sessions) = check(iop()).unwrap();
        assert_eq!(sessions.len(), 24);
        assert_eq!(series.first_starts_at, "2026-12-07T18:00:00");
        let tz: Tz = "America/New_York".parse().unwrap();
        for s in &sessions {
            assert_eq!(
                s.starts_at.with_timezone(&tz).format("%H:%M").to_string(),
                "18:00"
            );
            assert_eq!(s.ends_at - s.starts_at, Duration::minutes(180));
            assert_eq!(s.roster.len(), 3);
        }
        let ids: std::collections::HashSet<_> = sessions.iter().map(|s| s.id).collect();
        assert_eq!(ids.len(), 24, "each occurrence has its own id");
        assert_eq!(tz.name(), sessions[0].timezone.name());
    }

    #[test]
    fn bad_series_name_their_fields() {
        let cases = [
            (json!({"rrule": "FREQ=WEEKLY;BYDAY=MO"}), "rrule"),
            (json!({"rrule": "FREQ=DAILY;COUNT=365"}), "rrule"),
            (json!({"rrule": "FREQ=WEEKLY;INTERVAL=2;COUNT=30"}), "rrule"),
            (json!({"timezone": "Mars/Olympus"}), "timezone"),
            (json!({"duration_minutes": 0}), "duration_minutes"),
            (json!({"rrule": "FREQ=HOURLY;COUNT=3"}), "duration_minutes"),
            (
                json!({"first_starts_at": "2026-11-02T18:00:00"}),
                "first_starts_at",
            ),
            (json!({"first_starts_at": "next monday"}), "first_starts_at"),
            (json!({"participants": []}), "participants"),
        ];
        for (patch, field) in cases {
            let mut body = iop();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            let fields: Vec<String> = check(body)
                .unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect();
            assert_eq!(fields, [field], "{patch}");
        }
    }
}
