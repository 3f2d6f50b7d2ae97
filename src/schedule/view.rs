//! The JSON shape of a session in the REST API (the public contract) and in
//! the CLI's `--json` output.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::auth::RosterRole;
use crate::store::placement::Placement;
use crate::store::session::{RosterEntry, Session, SessionSettings, SessionStatus};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SessionView<'a> {
    pub id: String,
    pub title: &'a str,
    pub kind: &'static str,
    pub status: SessionStatus,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub timezone: &'static str,
    /// When invite links start and stop working.
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    pub clinician: PersonView<'a>,
    pub participants: Vec<PersonView<'a>>,
    pub settings: SessionSettings,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// When the clinician ended the session, if they did.
    pub ended_at: Option<DateTime<Utc>>,
    /// The series this session is an occurrence of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series_id: Option<String>,
    /// Placed over another session of one of its people on purpose.
    pub allow_overlap: bool,
}

impl SessionView<'_> {
    /// The view with how the session was placed (its series, overlap).
    pub(crate) fn placed(mut self, placement: Option<&Placement>) -> Self {
        if let Some(p) = placement {
            self.series_id = p.series_id.map(|id| id.to_string());
            self.allow_overlap = p.allow_overlap;
        }
        self
    }
}

/// A person on a session's roster.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = RosterMember)]
pub(crate) struct PersonView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// `clinician`, `patient`, `partner` or `observer`.
    #[schema(value_type = String, example = "patient")]
    pub role: RosterRole,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub household: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mrn: Option<&'a str>,
    pub revoked: bool,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Removed by the clinician for the rest of the session.
    pub removed: bool,
}

impl<'a> From<&'a RosterEntry> for PersonView<'a> {
    fn from(p: &'a RosterEntry) -> Self {
        PersonView {
            id: &p.id,
            name: &p.name,
            role: p.role,
            household: p.household.as_deref(),
            mrn: p.mrn.as_deref(),
            revoked: p.revoked_at.is_some(),
            revoked_at: p.revoked_at,
            removed: p.removed_at.is_some(),
        }
    }
}

impl Session {
    /// The session as the API shows it at `now` (its status depends on time).
    pub(crate) fn view(&self, now: DateTime<Utc>) -> SessionView<'_> {
        SessionView {
            id: self.id.to_string(),
            title: &self.title,
            kind: self.kind.as_str(),
            status: self.status(now),
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            timezone: self.timezone.name(),
            opens_at: self.opens_at(),
            closes_at: self.closes_at(),
            clinician: self.clinician().into(),
            participants: self.participants().map(Into::into).collect(),
            settings: self.settings,
            created_at: self.created_at,
            cancelled_at: self.cancelled_at,
            ended_at: self.ended_at,
            series_id: None,
            allow_overlap: false,
        }
    }
}
