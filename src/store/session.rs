//! A scheduled session and its roster: the store of record for who may come
//! and when.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::RosterRole;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// Two partners (one identified patient) and their clinician.
    Couple,
    /// A therapist and several households.
    Group,
    /// One patient and a clinician.
    Individual,
}

impl SessionKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SessionKind::Couple => "couple",
            SessionKind::Group => "group",
            SessionKind::Individual => "individual",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<SessionKind> {
        match s {
            "couple" => Some(SessionKind::Couple),
            "group" => Some(SessionKind::Group),
            "individual" => Some(SessionKind::Individual),
            _ => None,
        }
    }
}

/// Per-session rules, resolved from the configuration's defaults when the
/// session is created so that a later config change never moves the window
/// of a session already scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionSettings {
    /// Admit rostered people without a click while a clinician is present.
    pub auto_admit: bool,
    pub early_join_minutes: u32,
    pub overrun_grace_minutes: u32,
    pub clinician_grace_minutes: u32,
    /// End-to-end encryption of media: `off`, `preferred` or `required`.
    /// Sessions stored before it existed read as `off`, what they had.
    #[serde(default)]
    #[schema(value_type = String, example = "preferred")]
    pub e2ee: tandem_protocol::E2eeMode,
}

/// One person on the roster. `id` is the clinic's own participant id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    pub id: String,
    pub name: String,
    pub role: RosterRole,
    /// Groups: which couple/family this person belongs to.
    pub household: Option<String>,
    /// The clinic's medical record number, when it supplies one.
    pub mrn: Option<String>,
    /// Set when the participant's links were revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Set when a clinician removed the participant from the session.
    pub removed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: Uuid,
    pub title: String,
    pub kind: SessionKind,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub timezone: Tz,
    /// Exactly one clinician, first, then the participants in the order given.
    pub roster: Vec<RosterEntry>,
    pub settings: SessionSettings,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Set when a clinician ended the session for everyone.
    pub ended_at: Option<DateTime<Utc>>,
}

/// Where a session stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// Not cancelled and its links have not closed yet.
    Scheduled,
    Cancelled,
    /// Ended by its clinician, or past the end and the overrun grace.
    Ended,
}

impl Session {
    pub(crate) fn clinician(&self) -> &RosterEntry {
        self.roster
            .iter()
            .find(|p| p.role == RosterRole::Clinician)
            .expect("a stored session has exactly one clinician")
    }

    /// Everyone but the clinician.
    pub(crate) fn participants(&self) -> impl Iterator<Item = &RosterEntry> {
        self.roster
            .iter()
            .filter(|p| p.role != RosterRole::Clinician)
    }

    pub(crate) fn member(&self, participant: &str) -> Option<&RosterEntry> {
        self.roster.iter().find(|p| p.id == participant)
    }

    /// When invite links start to work: the start minus the early-join window.
    pub(crate) fn opens_at(&self) -> DateTime<Utc> {
        self.starts_at - Duration::minutes(self.settings.early_join_minutes.into())
    }

    /// When invite links stop working: the end plus the overrun grace.
    pub(crate) fn closes_at(&self) -> DateTime<Utc> {
        self.ends_at + Duration::minutes(self.settings.overrun_grace_minutes.into())
    }

    pub(crate) fn status(&self, now: DateTime<Utc>) -> SessionStatus {
        if self.cancelled_at.is_some() {
            SessionStatus::Cancelled
        } else if self.ended_at.is_some_and(|t| t <= now) || now >= self.closes_at() {
            SessionStatus::Ended
        } else {
            SessionStatus::Scheduled
        }
    }
}
