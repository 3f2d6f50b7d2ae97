//! People and their availability, and the search for common slots: the
//! requests of `/v1/people` and `/v1/slots/search` (and `tandem people`,
//! `tandem slots`), validated here so both entry points obey the same rules.

use std::collections::HashSet;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::availability::{time_zone, AvailabilityRequest, Interval};
use super::request::FieldError;
use super::slots::{common_slots, SlotQuery};
use super::{ScheduleError, Scheduler};
use crate::auth::RosterRole;
use crate::store::people::Person;

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersonRequest {
    pub name: Option<String>,
    pub role: Option<String>,
    pub timezone: Option<String>,
    pub household: Option<String>,
    pub mrn: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlotRequest {
    pub people: Option<Vec<String>>,
    pub duration_minutes: Option<i64>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub step_minutes: Option<i64>,
    pub gap_minutes: Option<i64>,
    pub limit: Option<i64>,
}

/// A person as the API shows them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Person)]
pub(crate) struct PersonView {
    pub id: String,
    pub name: String,
    /// `clinician`, `patient`, `partner` or `observer`.
    #[schema(value_type = String, example = "patient")]
    pub role: RosterRole,
    pub timezone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub household: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mrn: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Person> for PersonView {
    fn from(p: Person) -> Self {
        PersonView {
            id: p.id,
            name: p.name,
            role: p.role,
            timezone: p.timezone,
            household: p.household,
            mrn: p.mrn,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// The longest range one search covers.
pub(crate) const MAX_RANGE_DAYS: i64 = 62;
const MAX_PEOPLE: usize = 20;

fn problem(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// A person id as rosters take it: 1–64 of letters, digits, `-_.:`.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

fn text(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<&str>,
    required: bool,
) -> Option<String> {
    match value.map(str::trim) {
        None | Some("") if required => {
            errors.push(problem(field, "is required"));
            None
        }
        None | Some("") => None,
        Some(v) if v.chars().count() > 200 => {
            errors.push(problem(field, "is longer than 200 characters"));
            None
        }
        Some(v) => Some(v.to_owned()),
    }
}

fn minutes(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<i64>,
    default: Option<i64>,
    range: std::ops::RangeInclusive<i64>,
) -> i64 {
    match value.or(default) {
        None => {
            errors.push(problem(field, "is required"));
            0
        }
        Some(v) if !range.contains(&v) => {
            errors.push(problem(
                field,
                format!("must be from {} to {}", range.start(), range.end()),
            ));
            0
        }
        Some(v) => v,
    }
}

fn instant(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<&str>,
) -> Option<DateTime<Utc>> {
    let Some(raw) = value else {
        errors.push(problem(field, "is required"));
        return None;
    };
    match DateTime::parse_from_rfc3339(raw) {
        Ok(t) => Some(t.with_timezone(&Utc).trunc_subsecs(3)),
        Err(_) => {
            errors.push(problem(
                field,
                format!("{raw:?} is not an RFC 3339 time like 2026-12-07T00:00:00Z"),
            ));
            None
        }
    }
}

impl PersonRequest {
    fn validate(&self, id: &str, now: DateTime<Utc>) -> Result<Person, Vec<FieldError>> {
        let mut errors = Vec::new();
        if !valid_id(id) {
            errors.push(problem(
                "id",
                format!("{id:?} is not a valid id: 1 to 64 letters, digits, '-', '_', '.' or ':'"),
            ));
        }
        let name = text(&mut errors, "name", self.name.as_deref(), true);
        let role = match self.role.as_deref() {
            None => {
                errors.push(problem("role", "is required"));
                None
            }
            Some(r) => r.parse::<RosterRole>().ok().or_else(|| {
                errors.push(problem(
                    "role",
                    format!("unknown role {r:?}; expected patient, partner, observer or clinician"),
                ));
                None
            }),
        };
        let timezone = time_zone("timezone", self.timezone.as_deref())
            .map_err(|e| errors.push(e))
            .ok();
        let household = text(&mut errors, "household", self.household.as_deref(), false);
        let mrn = text(&mut errors, "mrn", self.mrn.as_deref(), false);
        match (name, role, timezone) {
            (Some(name), Some(role), Some(tz)) if errors.is_empty() => Ok(Person {
                id: id.to_owned(),
                name,
                role,
                timezone: tz.name().to_owned(),
                household,
                mrn,
                created_at: now.trunc_subsecs(3),
                updated_at: now.trunc_subsecs(3),
            }),
            _ => Err(errors),
        }
    }
}

impl SlotRequest {
    /// The people (in order, without repeats) and the query.
    fn validate(&self) -> Result<(Vec<String>, SlotQuery), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut people = Vec::new();
        match self.people.as_deref() {
            None | Some([]) => errors.push(problem("people", "list at least one person")),
            Some(list) if list.len() > MAX_PEOPLE => {
                errors.push(problem("people", format!("at most {MAX_PEOPLE} people")))
            }
            Some(list) => {
                let mut seen = HashSet::new();
                for (i, id) in list.iter().enumerate() {
                    if !valid_id(id) {
                        errors.push(problem(
                            format!("people[{i}]"),
                            format!("{id:?} is not a valid id"),
                        ));
                    } else if seen.insert(id.clone()) {
                        people.push(id.clone());
                    }
                }
            }
        }
        let duration = minutes(
            &mut errors,
            "duration_minutes",
            self.duration_minutes,
            None,
            5..=1440,
        );
        let step = minutes(
            &mut errors,
            "step_minutes",
            self.step_minutes,
            Some(15),
            5..=1440,
        );
        let gap = minutes(
            &mut errors,
            "gap_minutes",
            self.gap_minutes,
            Some(0),
            0..=240,
        );
        let limit = minutes(&mut errors, "limit", self.limit, Some(20), 1..=500);
        let from = instant(&mut errors, "from", self.from.as_deref());
        let to = instant(&mut errors, "to", self.to.as_deref());
        if let (Some(from), Some(to)) = (from, to) {
            if to <= from {
                errors.push(problem("to", "must be after from"));
            } else if to - from > Duration::days(MAX_RANGE_DAYS) {
                errors.push(problem(
                    "to",
                    format!("the range is longer than {MAX_RANGE_DAYS} days; search a shorter one"),
                ));
            }
        }
        match (from, to) {
            (Some(from), Some(to)) if errors.is_empty() => Ok((
                people,
                SlotQuery {
                    from,
                    to,
                    duration: Duration::minutes(duration),
                    step: Duration::minutes(step),
                    gap: Duration::minutes(gap),
                    limit: limit as usize,
                },
            )),
            _ => Err(errors),
        }
    }
}

impl Scheduler {
    /// Creates or replaces a person; true when they are new.
    pub(crate) async fn put_person(
        &self,
        id: &str,
        request: &PersonRequest,
        now: DateTime<Utc>,
    ) -> Result<(PersonView, bool), ScheduleError> {
        let person = request.validate(id, now).map_err(ScheduleError::Invalid)?;
        let created = self.store.put_person(&person).await?;
        tracing::info!(person = id, created, "person stored");
        self.person(id).await.map(|p| (p, created))
    }

    pub(crate) async fn person(&self, id: &str) -> Result<PersonView, ScheduleError> {
        self.store
            .person(id)
            .await?
            .map(Into::into)
            .ok_or(ScheduleError::NotFound("person"))
    }

    /// Replaces a person's availability with a validated document.
    pub(crate) async fn put_availability(
        &self,
        id: &str,
        request: &AvailabilityRequest,
        now: DateTime<Utc>,
    ) -> Result<AvailabilityRequest, ScheduleError> {
        let availability = request.validate().map_err(ScheduleError::Invalid)?;
        let document = availability.document();
        let json = serde_json::to_string(&document).expect("a document serialises");
        if !self.store.set_availability(id, &json, now).await? {
            return Err(ScheduleError::NotFound("person"));
        }
        tracing::info!(person = id, "availability stored");
        Ok(document)
    }

    pub(crate) async fn availability(
        &self,
        id: &str,
    ) -> Result<AvailabilityRequest, ScheduleError> {
        self.person(id).await?;
        let stored = self.store.availability(&[id.to_owned()]).await?;
        let json = stored
            .get(id)
            .ok_or(ScheduleError::NotFound("availability"))?;
        serde_json::from_str(json).map_err(|e| {
            ScheduleError::Store(crate::store::StoreError::Corrupt(format!(
                "availability {e}"
            )))
        })
    }

    /// Common slots of everyone listed: inside every person's availability
    /// and clear (with the gap) of their scheduled sessions at `now`.
    pub(crate) async fn search_slots(
        &self,
        request: &SlotRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<Interval>, ScheduleError> {
        let (people, query) = request.validate().map_err(ScheduleError::Invalid)?;
        let stored = self.store.availability(&people).await?;
        let missing: Vec<&str> = people
            .iter()
            .filter(|id| !stored.contains_key(*id))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(ScheduleError::Invalid(vec![problem(
                "people",
                format!("no availability on file for {}", missing.join(", ")),
            )]));
        }
        let mut available = Vec::with_capacity(people.len());
        for id in &people {
            let document: AvailabilityRequest = serde_json::from_str(&stored[id])
                .map_err(|e| crate::store::StoreError::Corrupt(format!("availability {e}")))?;
            let availability = document
                .validate()
                .map_err(|_| crate::store::StoreError::Corrupt(format!("availability of {id}")))?;
            available.push(availability.intervals(query.from, query.to));
        }
        let busy: Vec<Interval> = self
            .store
            .busy(&people, query.from - query.gap, query.to + query.gap, now)
            .await?
            .into_iter()
            .map(|b| (b.starts_at, b.ends_at))
            .collect();
        Ok(common_slots(&query, &available, &busy))
    }
}
