//! A request to schedule a session, as the clinic's system sends it, and its
//! validation into a [`Session`].
//!
//! Every field is optional at the serde level so that a missing or wrong
//! value is reported as a [`FieldError`] naming the field in the clinic's
//! terms, rather than as a parser message. All problems are returned at once.

use std::collections::HashSet;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::RosterRole;
use crate::config::SessionsSection;
use crate::store::session::{RosterEntry, Session, SessionKind, SessionSettings};
use tandem_protocol::E2eeMode;

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionRequest {
    pub title: Option<String>,
    pub kind: Option<String>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub timezone: Option<String>,
    pub clinician: Option<ClinicianRequest>,
    pub participants: Option<Vec<ParticipantRequest>>,
    pub settings: Option<SettingsRequest>,
    /// Place the session even where it overlaps another session of one of
    /// its people (recorded on the session).
    pub allow_overlap: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClinicianRequest {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ParticipantRequest {
    pub id: Option<String>,
    pub name: Option<String>,
    pub role: Option<String>,
    pub household: Option<String>,
    pub mrn: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsRequest {
    pub auto_admit: Option<bool>,
    pub early_join_minutes: Option<u32>,
    pub overrun_grace_minutes: Option<u32>,
    pub clinician_grace_minutes: Option<u32>,
    /// `off`, `preferred` or `required` (issue 19).
    pub e2ee: Option<String>,
}

/// One invalid field: `field` is a path like `participants[2].role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

const MAX_TEXT: usize = 200;
const MAX_ID: usize = 64;
const MAX_LENGTH_HOURS: i64 = 24;
const MAX_WINDOW_MINUTES: u32 = 240;

struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn text(&mut self, field: &str, value: &Option<String>, max: usize) -> Option<String> {
        match value.as_deref().map(str::trim) {
            None | Some("") => {
                self.add(field, "is required");
                None
            }
            Some(v) if v.chars().count() > max => {
                self.add(field, format!("is longer than {max} characters"));
                None
            }
            Some(v) => Some(v.to_owned()),
        }
    }

    fn id(&mut self, field: &str, value: &Option<String>) -> Option<String> {
        let id = self.text(field, value, MAX_ID)?;
        if id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            Some(id)
        } else {
            self.add(
                field,
                format!("{id:?} is not a valid id: use letters, digits, '-', '_', '.' or ':'"),
            );
            None
        }
    }

    fn optional_text(&mut self, field: &str, value: &Option<String>) -> Option<String> {
        value.as_ref()?;
        self.text(field, value, MAX_ID)
    }

    fn time(&mut self, field: &str, value: &Option<String>) -> Option<DateTime<Utc>> {
        let raw = self.text(field, value, MAX_TEXT)?;
        match DateTime::parse_from_rfc3339(&raw) {
            // Milliseconds: the precision the store keeps.
            Ok(t) => Some(t.with_timezone(&Utc).trunc_subsecs(3)),
            Err(_) => {
                self.add(
                    field,
                    format!("{raw:?} is not an RFC 3339 time like 2026-03-02T15:00:00-05:00"),
                );
                None
            }
        }
    }

    fn minutes(&mut self, field: &str, value: Option<u32>, default: u32) -> u32 {
        match value {
            Some(v) if v > MAX_WINDOW_MINUTES => {
                self.add(
                    field,
                    format!("must be at most {MAX_WINDOW_MINUTES} minutes"),
                );
                default
            }
            Some(v) => v,
            None => default,
        }
    }
}

impl SessionRequest {
    /// Validates the request against the configured defaults at `now` and
    /// builds the session it describes, or returns every problem found.
    pub(crate) fn validate(
        &self,
        defaults: &SessionsSection,
        now: DateTime<Utc>,
    ) -> Result<Session, Vec<FieldError>> {
        let mut p = Problems(Vec::new());

        let title = p.text("title", &self.title, MAX_TEXT);
        let kind = match self.kind.as_deref() {
            None => {
                p.add("kind", "is required");
                None
            }
            Some(k) => SessionKind::parse(k).or_else(|| {
                p.add(
                    "kind",
                    format!("unknown kind {k:?}; expected couple, group or individual"),
                );
                None
            }),
        };

        let starts_at = p.time("starts_at", &self.starts_at);
        let ends_at = p.time("ends_at", &self.ends_at);
        if let (Some(start), Some(end)) = (starts_at, ends_at) {
            if end <= start {
                p.add("ends_at", "must be after starts_at");
            } else if end - start > Duration::hours(MAX_LENGTH_HOURS) {
                p.add(
                    "ends_at",
                    format!("a session lasts at most {MAX_LENGTH_HOURS} hours"),
                );
            } else if end <= now {
                p.add(
                    "ends_at",
                    "is in the past; only sessions that have not ended can be scheduled",
                );
            }
        }

        let timezone = match self.timezone.as_deref() {
            None => defaults.default_timezone.parse().ok(),
            Some(tz) => tz.parse::<chrono_tz::Tz>().ok().or_else(|| {
                p.add(
                    "timezone",
                    format!("unknown time zone {tz:?}; use an IANA name like America/New_York"),
                );
                None
            }),
        };

        let mut roster = Vec::new();
        let mut seen = HashSet::new();
        match &self.clinician {
            None => p.add(
                "clinician",
                "is required: every session has exactly one clinician",
            ),
            Some(c) => {
                let id = p.id("clinician.id", &c.id);
                let name = p.text("clinician.name", &c.name, MAX_TEXT);
                if let (Some(id), Some(name)) = (id, name) {
                    seen.insert(id.clone());
                    roster.push(RosterEntry {
                        id,
                        name,
                        role: RosterRole::Clinician,
                        household: None,
                        mrn: None,
                        revoked_at: None,
                        removed_at: None,
                    });
                }
            }
        }

        match self.participants.as_deref() {
            None | Some([]) => p.add(
                "participants",
                "the roster is empty: add at least one participant",
            ),
            Some(list) => {
                for (i, person) in list.iter().enumerate() {
                    let field = |name: &str| format!("participants[{i}].{name}");
                    let id = p.id(&field("id"), &person.id);
                    let name = p.text(&field("name"), &person.name, MAX_TEXT);
                    let role = match person.role.as_deref() {
                        None => {
                            p.add(field("role"), "is required");
                            None
                        }
                        Some("clinician") => {
                            p.add(
                                field("role"),
                                "a session has exactly one clinician, given in `clinician`",
                            );
                            None
                        }
                        Some(r) => r.parse::<RosterRole>().ok().or_else(|| {
                            p.add(
                                field("role"),
                                format!(
                                    "unknown role {r:?}; expected patient, partner or observer"
                                ),
                            );
                            None
                        }),
                    };
                    let household = p.optional_text(&field("household"), &person.household);
                    let mrn = p.optional_text(&field("mrn"), &person.mrn);
                    if let Some(id) = &id {
                        if !seen.insert(id.clone()) {
                            p.add(field("id"), format!("duplicate participant id {id:?}"));
                            continue;
                        }
                    }
                    if let (Some(id), Some(name), Some(role)) = (id, name, role) {
                        roster.push(RosterEntry {
                            id,
                            name,
                            role,
                            household,
                            mrn,
                            revoked_at: None,
                            removed_at: None,
                        });
                    }
                }
                let size = list.len() + 1;
                if size > defaults.max_participants as usize {
                    p.add(
                        "participants",
                        format!(
                            "{size} people with the clinician is more than the limit of {}",
                            defaults.max_participants
                        ),
                    );
                }
            }
        }

        let roles_known = self
            .participants
            .iter()
            .flatten()
            .all(|x| matches!(x.role.as_deref(), Some("patient" | "partner" | "observer")));
        if let (Some(kind), Some(list), true) = (kind, self.participants.as_deref(), roles_known) {
            let count = |role: &str| {
                list.iter()
                    .filter(|x| x.role.as_deref() == Some(role))
                    .count()
            };
            let (patients, partners) = (count("patient"), count("partner"));
            let rule = match kind {
                SessionKind::Couple if patients != 1 || partners == 0 => {
                    Some("a couple session has exactly one patient and at least one partner")
                }
                SessionKind::Individual if patients != 1 || partners != 0 => {
                    Some("an individual session has exactly one patient and no partner")
                }
                SessionKind::Group if patients == 0 => {
                    Some("a group session has at least one patient")
                }
                _ => None,
            };
            if let (Some(rule), false) = (rule, list.is_empty()) {
                p.add("participants", rule);
            }
        }

        let s = self.settings.clone().unwrap_or_default();
        let settings = SessionSettings {
            auto_admit: s.auto_admit.unwrap_or(false),
            early_join_minutes: p.minutes(
                "settings.early_join_minutes",
                s.early_join_minutes,
                defaults.early_join_minutes,
            ),
            overrun_grace_minutes: p.minutes(
                "settings.overrun_grace_minutes",
                s.overrun_grace_minutes,
                defaults.overrun_grace_minutes,
            ),
            clinician_grace_minutes: p.minutes(
                "settings.clinician_grace_minutes",
                s.clinician_grace_minutes,
                defaults.clinician_grace_minutes,
            ),
            e2ee: match s.e2ee.as_deref().map(E2eeMode::parse) {
                None => defaults.e2ee,
                Some(Some(mode)) => mode,
                Some(None) => {
                    p.add("settings.e2ee", "must be off, preferred or required");
                    defaults.e2ee
                }
            },
        };

        match (title, kind, starts_at, ends_at, timezone) {
            (Some(title), Some(kind), Some(starts_at), Some(ends_at), Some(timezone))
                if p.0.is_empty() =>
            {
                Ok(Session {
                    id: Uuid::new_v4(),
                    title,
                    kind,
                    starts_at,
                    ends_at,
                    timezone,
                    roster,
                    settings,
                    created_at: now.trunc_subsecs(3),
                    cancelled_at: None,
                    ended_at: None,
                })
            }
            _ => Err(p.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-03-02T14:00:00Z".parse().unwrap()
    }

    fn couple() -> serde_json::Value {
        json!({
            "title": "Joint session",
            "kind": "couple",
            "starts_at": "2026-03-02T10:00:00-05:00",
            "ends_at": "2026-03-02T11:00:00-05:00",
            "timezone": "America/New_York",
            "clinician": {"id": "c-1", "name": "Dr Rivera"},
            "participants": [
                {"id": "p-1", "name": "Alex", "role": "patient"},
                {"id": "p-2", "name": "Sam", "role": "partner"}
            ]
        })
    }

    fn check(body: serde_json::Value) -> Result<Session, Vec<FieldError>> {
        let request: SessionRequest = serde_json::from_value(body).unwrap();
        request.validate(&Config::default().sessions, now())
    }

    fn fields(body: serde_json::Value) -> Vec<String> {
        check(body)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_valid_couple_session_is_built_with_defaults() {
        let s = check(couple()).unwrap();
        assert_eq!(s.kind, SessionKind::Couple);
        assert_eq!(
            s.starts_at,
            "2026-03-02T15:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(s.roster.len(), 3);
        assert_eq!(s.clinician().id, "c-1");
        assert_eq!(s.settings.early_join_minutes, 15);
        assert_eq!(
            s.opens_at(),
            "2026-03-02T14:45:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            s.closes_at(),
            "2026-03-02T16:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn each_invalid_field_is_named() {
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            (
                "ends before start",
                json!({"ends_at": "2026-03-02T09:00:00-05:00"}),
                "ends_at",
            ),
            (
                "ends at start",
                json!({"ends_at": "2026-03-02T10:00:00-05:00"}),
                "ends_at",
            ),
            (
                "ended already",
                json!({"starts_at": "2026-03-02T07:00:00-05:00", "ends_at": "2026-03-02T08:00:00-05:00"}),
                "ends_at",
            ),
            ("empty roster", json!({"participants": []}), "participants"),
            (
                "unknown time zone",
                json!({"timezone": "Mars/Olympus"}),
                "timezone",
            ),
            ("unknown kind", json!({"kind": "family"}), "kind"),
            ("bad time", json!({"starts_at": "tomorrow"}), "starts_at"),
            ("no clinician", json!({"clinician": null}), "clinician"),
            ("missing title", json!({"title": "  "}), "title"),
            (
                "too long",
                json!({"ends_at": "2026-03-04T10:00:00-05:00"}),
                "ends_at",
            ),
            (
                "big window",
                json!({"settings": {"early_join_minutes": 600}}),
                "settings.early_join_minutes",
            ),
        ];
        for (case, patch, field) in cases {
            let mut body = couple();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            assert_eq!(fields(body), [field], "{case}");
        }
    }

    #[test]
    fn roster_problems_name_the_participant() {
        let mut body = couple();
        body["participants"][1]["role"] = json!("therapist");
        assert_eq!(fields(body), ["participants[1].role"]);

        let mut body = couple();
        body["participants"][1]["id"] = json!("p-1");
        assert_eq!(fields(body), ["participants[1].id"]);

        let mut body = couple();
        body["participants"][0]["id"] = json!("c-1");
        assert!(fields(body).contains(&"participants[0].id".to_string()));

        let mut body = couple();
        body["participants"][1]["role"] = json!("clinician");
        assert_eq!(fields(body)[0], "participants[1].role");

        let mut body = couple();
        body["participants"][0]["id"] = json!("has space");
        assert_eq!(fields(body), ["participants[0].id"]);
    }

    #[test]
    fn kinds_need_the_right_roster() {
        let mut body = couple();
        body["participants"][1]["role"] = json!("patient");
        assert_eq!(fields(body), ["participants"]);

        let mut body = couple();
        body["kind"] = json!("individual");
        assert_eq!(fields(body), ["participants"]);

        let mut body = couple();
        body["kind"] = json!("group");
        body["participants"] = json!([
            {"id": "a1", "name": "A", "role": "patient", "household": "h1"},
            {"id": "a2", "name": "B", "role": "partner", "household": "h1"},
            {"id": "b1", "name": "C", "role": "patient", "household": "h2"},
        ]);
        let s = check(body).unwrap();
        assert_eq!(s.roster[1].household.as_deref(), Some("h1"));
    }

    #[test]
    fn a_roster_above_the_limit_is_refused() {
        let mut body = couple();
        body["kind"] = json!("group");
        body["participants"] = json!((0..20)
            .map(|i| json!({"id": format!("p{i}"), "name": "X", "role": "patient"}))
            .collect::<Vec<_>>());
        assert_eq!(fields(body), ["participants"]);
    }

    #[test]
    fn every_problem_is_reported_together() {
        let errors = check(json!({})).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "title",
                "kind",
                "starts_at",
                "ends_at",
                "clinician",
                "participants"
            ]
        );
    }

    #[test]
    fn a_session_already_running_may_be_scheduled() {
        let mut body = couple();
        body["starts_at"] = json!("2026-03-02T08:30:00-05:00");
        assert!(check(body).is_ok());
    }
}
