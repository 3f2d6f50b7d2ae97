//! A person's availability: weekly wall-clock windows in their own time zone,
//! with dated exceptions, and the UTC intervals it yields over a range.
//!
//! Why wall clock: a partner who is free "Mondays 17:30–21:30" in New York
//! is free at 17:30 local time in January and in July alike, so the windows
//! are kept as local times and turned into instants only for a given date.
//! Across a daylight-saving change the window keeps its wall-clock hours
//! (its length in UTC may change). A wall-clock time that does not exist
//! that day (skipped by the spring change) starts at the instant the clock
//! jumps to; one that occurs twice (the autumn change) is its first
//! occurrence.
//!
//! Pure: the range is an input, nothing here reads a clock or a database.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::request::FieldError;

/// A half-open span of time `[start, end)`.
pub(crate) type Interval = (DateTime<Utc>, DateTime<Utc>);

/// Minutes after local midnight, 0..=1440 (1440 is "24:00", the day's end).
type WallTime = u16;

/// The availability document as the API takes and returns it. Every field
/// is optional at the serde level so that validation names what is wrong.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AvailabilityRequest {
    pub timezone: Option<String>,
    pub weekly: Option<Vec<WeeklyRequest>>,
    pub exceptions: Option<Vec<ExceptionRequest>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WeeklyRequest {
    pub day: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExceptionRequest {
    pub date: Option<String>,
    pub available: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// A dated exception: `None` is not available that day.
type Exception = (NaiveDate, Option<(WallTime, WallTime)>);

/// A validated availability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Availability {
    pub timezone: Tz,
    pub weekly: Vec<(Weekday, WallTime, WallTime)>,
    /// A date listed here replaces that day's weekly windows: `None` is not
    /// available that day, `Some` a window of its own.
    pub exceptions: Vec<Exception>,
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

/// The most windows and exceptions one person may have.
const MAX_ENTRIES: usize = 200;

/// Parses an IANA time zone name, naming `field` when it is unknown.
pub(crate) fn time_zone(field: &str, raw: Option<&str>) -> Result<Tz, FieldError> {
    let problem = |message: String| FieldError {
        field: field.into(),
        message,
    };
    match raw.map(str::trim) {
        None | Some("") => Err(problem("is required".into())),
        Some(name) => name.parse::<Tz>().map_err(|_| {
            problem(format!(
                "unknown time zone {name:?}; use an IANA name like America/New_York"
            ))
        }),
    }
}

fn wall_time(raw: Option<&str>) -> Result<WallTime, String> {
    let raw = raw.ok_or("is required")?;
    let bad = || format!("{raw:?} is not a time like 17:30 (24-hour clock, 00:00 to 24:00)");
    let (h, m) = raw.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn format_wall(t: WallTime) -> String {
    format!("{:02}:{:02}", t / 60, t % 60)
}

fn day_name(day: Weekday) -> &'static str {
    DAYS.iter()
        .find(|(_, d)| *d == day)
        .map(|(n, _)| *n)
        .expect("every weekday has a name")
}

/// Reads `start`/`end` at `field` into a window, or names what is wrong.
fn window(
    errors: &mut Vec<FieldError>,
    field: &str,
    start: Option<&str>,
    end: Option<&str>,
) -> Option<(WallTime, WallTime)> {
    let mut add = |name: &str, message: String| {
        errors.push(FieldError {
            field: format!("{field}.{name}"),
            message,
        })
    };
    let start = wall_time(start).map_err(|m| add("start", m)).ok();
    let end = wall_time(end).map_err(|m| add("end", m)).ok();
    match (start, end) {
        (Some(s), Some(e)) if e <= s => {
            add("end", "must be after start".into());
            None
        }
        (Some(s), Some(e)) => Some((s, e)),
        _ => None,
    }
}

impl AvailabilityRequest {
    /// Validates the document; every problem is named, nothing is kept
    /// partially.
    pub(crate) fn validate(&self) -> Result<Availability, Vec<FieldError>> {
        let mut errors = Vec::new();
        let timezone = time_zone("timezone", self.timezone.as_deref())
            .map_err(|e| errors.push(e))
            .ok();
        let weekly_in = self.weekly.as_deref().unwrap_or_default();
        let exceptions_in = self.exceptions.as_deref().unwrap_or_default();
        if weekly_in.len() > MAX_ENTRIES {
            errors.push(FieldError {
                field: "weekly".into(),
                message: format!("at most {MAX_ENTRIES} weekly windows"),
            });
        }
        if exceptions_in.len() > MAX_ENTRIES {
            errors.push(FieldError {
                field: "exceptions".into(),
                message: format!("at most {MAX_ENTRIES} exceptions"),
            });
        }

        let mut weekly: Vec<(usize, (Weekday, WallTime, WallTime))> = Vec::new();
        for (i, w) in weekly_in.iter().enumerate() {
            let field = format!("weekly[{i}]");
            let day = match w.day.as_deref().map(str::to_ascii_lowercase) {
                None => {
                    errors.push(FieldError {
                        field: format!("{field}.day"),
                        message: "is required".into(),
                    });
                    None
                }
                Some(d) => DAYS
                    .iter()
                    .find(|(n, _)| *n == d)
                    .map(|(_, w)| *w)
                    .or_else(|| {
                        errors.push(FieldError {
                            field: format!("{field}.day"),
                            message: format!(
                                "unknown day {d:?}; expected mon, tue, wed, thu, fri, sat or sun"
                            ),
                        });
                        None
                    }),
            };
            let span = window(&mut errors, &field, w.start.as_deref(), w.end.as_deref());
            if let (Some(day), Some((s, e))) = (day, span) {
                if let Some((j, _)) = weekly
                    .iter()
                    .find(|(_, (d, s2, e2))| *d == day && s < *e2 && *s2 < e)
                {
                    errors.push(FieldError {
                        field,
                        message: format!("overlaps weekly[{j}] on the same day"),
                    });
                } else {
                    weekly.push((i, (day, s, e)));
                }
            }
        }

        let mut exceptions: Vec<(usize, Exception)> = Vec::new();
        for (i, x) in exceptions_in.iter().enumerate() {
            let field = format!("exceptions[{i}]");
            let date = match x.date.as_deref() {
                None => {
                    errors.push(FieldError {
                        field: format!("{field}.date"),
                        message: "is required".into(),
                    });
                    None
                }
                Some(raw) => NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok().or_else(|| {
                    errors.push(FieldError {
                        field: format!("{field}.date"),
                        message: format!("{raw:?} is not a date like 2026-12-24"),
                    });
                    None
                }),
            };
            let entry = match x.available {
                None => {
                    errors.push(FieldError {
                        field: format!("{field}.available"),
                        message: "is required: true with start and end, or false".into(),
                    });
                    continue;
                }
                Some(false) => {
                    if x.start.is_some() || x.end.is_some() {
                        errors.push(FieldError {
                            field: format!("{field}.start"),
                            message: "a day that is not available has no start or end".into(),
                        });
                        continue;
                    }
                    None
                }
                Some(true) => {
                    match window(&mut errors, &field, x.start.as_deref(), x.end.as_deref()) {
                        Some(w) => Some(w),
                        None => continue,
                    }
                }
            };
            let Some(date) = date else { continue };
            let clash = exceptions.iter().find(|(_, (d, other))| {
                *d == date
                    && match (other, entry) {
                        (Some((s2, e2)), Some((s, e))) => s < *e2 && *s2 < e,
                        _ => true,
                    }
            });
            if let Some((j, _)) = clash {
                errors.push(FieldError {
                    field,
                    message: format!("contradicts or overlaps exceptions[{j}] on the same date"),
                });
            } else {
                exceptions.push((i, (date, entry)));
            }
        }

        match timezone {
            Some(timezone) if errors.is_empty() => Ok(Availability {
                timezone,
                weekly: weekly.into_iter().map(|(_, w)| w).collect(),
                exceptions: exceptions.into_iter().map(|(_, x)| x).collect(),
            }),
            _ => Err(errors),
        }
    }
}

impl Availability {
    /// The document as the API returns it (and as it is stored).
    pub(crate) fn document(&self) -> AvailabilityRequest {
        AvailabilityRequest {
            timezone: Some(self.timezone.name().to_owned()),
            weekly: Some(
                self.weekly
                    .iter()
                    .map(|(day, s, e)| WeeklyRequest {
                        day: Some(day_name(*day).into()),
                        start: Some(format_wall(*s)),
                        end: Some(format_wall(*e)),
                    })
                    .collect(),
            ),
            exceptions: Some(
                self.exceptions
                    .iter()
                    .map(|(date, w)| ExceptionRequest {
                        date: Some(date.format("%Y-%m-%d").to_string()),
                        available: Some(w.is_some()),
                        start: w.map(|(s, _)| format_wall(s)),
                        end: w.map(|(_, e)| format_wall(e)),
                    })
                    .collect(),
            ),
        }
    }

    /// The windows that apply on a local `date`.
    fn windows_on(&self, date: NaiveDate) -> Vec<(WallTime, WallTime)> {
        let mut listed = self
            .exceptions
            .iter()
            .filter(|(d, _)| *d == date)
            .peekable();
        if listed.peek().is_some() {
            return listed.filter_map(|(_, w)| *w).collect();
        }
        self.weekly
            .iter()
            .filter(|(day, _, _)| *day == date.weekday())
            .map(|(_, s, e)| (*s, *e))
            .collect()
    }

    /// When the person is available within `[from, to)`, in UTC, in time
    /// order, touching windows joined (a window to 24:00 and one from 00:00
    /// the next day are one span).
    pub(crate) fn intervals(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Interval> {
        let mut spans = Vec::new();
        if to <= from {
            return spans;
        }
        let first = from.with_timezone(&self.timezone).date_naive() - Duration::days(1);
        let last = to.with_timezone(&self.timezone).date_naive() + Duration::days(1);
        let mut date = first;
        while date <= last {
            for (s, e) in self.windows_on(date) {
                let start = local_instant(self.timezone, date, s).max(from);
                let end = local_instant(self.timezone, date, e).min(to);
                if start < end {
                    spans.push((start, end));
                }
            }
            date += Duration::days(1);
        }
        merge(spans)
    }
}

/// The instant of wall-clock time `minutes` on `date` in `tz`: the first of
/// two in the autumn overlap; in the spring gap, the instant the clock
/// jumps to.
pub(crate) fn local_instant(tz: Tz, date: NaiveDate, minutes: WallTime) -> DateTime<Utc> {
    let naive =
        date.and_hms_opt(0, 0, 0).expect("midnight exists") + Duration::minutes(minutes.into());
    local_to_utc(tz, naive)
}

/// A local wall-clock time in `tz` as an instant (see [`local_instant`]).
pub(crate) fn local_to_utc(tz: Tz, naive: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = naive;
    // Gaps are at most a few hours; look minute by minute for the first
    // wall-clock time that exists.
    for _ in 0..=24 * 60 {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => probe += Duration::minutes(1),
        }
    }
    Utc.from_utc_datetime(&naive)
}

/// Sorts intervals and joins those that overlap or touch.
pub(crate) fn merge(mut spans: Vec<Interval>) -> Vec<Interval> {
    spans.sort();
    let mut out: Vec<Interval> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn parse(body: serde_json::Value) -> Result<Availability, Vec<FieldError>> {
        serde_json::from_value::<AvailabilityRequest>(body)
            .unwrap()
            .validate()
    }

    fn fields(body: serde_json::Value) -> Vec<String> {
        parse(body)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn windows_keep_their_wall_clock_across_both_dst_changes() {
        let a = parse(json!({"timezone": "America/New_York",
            "weekly": [{"day": "sun", "start": "18:00", "end": "21:00"}]}))
        .unwrap();
        // 2026: DST starts Sunday 8 March, ends Sunday 1 November.
        let cases = [
            ("2026-03-01", "2026-03-01T23:00:00Z", "2026-03-02T02:00:00Z"),
            ("2026-03-08", "2026-03-08T22:00:00Z", "2026-03-09T01:00:00Z"),
            ("2026-10-25", "2026-10-25T22:00:00Z", "2026-10-26T01:00:00Z"),
            ("2026-11-01", "2026-11-01T23:00:00Z", "2026-11-02T02:00:00Z"),
        ];
        for (day, start, end) in cases {
            let from = t(&format!("{day}T00:00:00Z"));
            let got = a.intervals(from, from + Duration::days(2));
            assert_eq!(got, vec![(t(start), t(end))], "{day}");
        }
    }

    #[test]
    fn a_window_inside_the_spring_gap_starts_when_the_clock_jumps() {
        let a = parse(json!({"timezone": "America/New_York",
            "weekly": [{"day": "sun", "start": "02:30", "end": "04:00"}]}))
        .unwrap();
        let from = t("2026-03-08T00:00:00Z");
        // 02:30 does not exist on 8 March; 03:00 EDT is 07:00Z.
        assert_eq!(
            a.intervals(from, from + Duration::days(1)),
            vec![(t("2026-03-08T07:00:00Z"), t("2026-03-08T08:00:00Z"))]
        );
    }

    #[test]
    fn an_exception_removes_or_replaces_a_day() {
        let a = parse(json!({"timezone": "UTC",
            "weekly": [{"day": "thu", "start": "09:00", "end": "12:00"},
                       {"day": "fri", "start": "09:00", "end": "12:00"}],
            "exceptions": [{"date": "2026-12-24", "available": false},
                           {"date": "2026-12-25", "available": true, "start": "14:00", "end": "15:00"},
                           {"date": "2026-12-27", "available": true, "start": "10:00", "end": "14:00"}]}))
        .unwrap();
        let got = a.intervals(t("2026-12-24T00:00:00Z"), t("2026-12-28T00:00:00Z"));
        assert_eq!(
            got,
            vec![
                (t("2026-12-25T14:00:00Z"), t("2026-12-25T15:00:00Z")),
                (t("2026-12-27T10:00:00Z"), t("2026-12-27T14:00:00Z")),
            ]
        );
    }

    #[test]
    fn touching_windows_join_across_midnight() {
        let a = parse(json!({"timezone": "UTC",
            "weekly": [{"day": "mon", "start": "22:00", "end": "24:00"},
                       {"day": "tue", "start": "00:00", "end": "01:00"}]}))
        .unwrap();
        let got = a.intervals(t("2026-11-30T00:00:00Z"), t("2026-12-02T00:00:00Z"));
        assert_eq!(
            got,
            vec![(t("2026-11-30T22:00:00Z"), t("2026-12-01T01:00:00Z"))]
        );
    }

    #[test]
    fn the_document_round_trips() {
        let body = json!({"timezone": "Europe/Berlin",
            "weekly": [{"day": "mon", "start": "17:30", "end": "21:30"}],
            "exceptions": [{"date": "2026-12-24", "available": false},
                           {"date": "2026-12-27", "available": true, "start": "10:00", "end": "14:00"}]});
        let a = parse(body.clone()).unwrap();
        assert_eq!(serde_json::to_value(a.document()).unwrap(), body);
    }

    #[test]
    fn each_rule_violation_names_its_field() {
        let cases = [
            (json!({"timezone": "Mars/Olympus"}), "timezone"),
            (json!({}), "timezone"),
            (
                json!({"timezone": "UTC", "weekly": [{"day": "mon", "start": "10:00", "end": "09:00"}]}),
                "weekly[0].end",
            ),
            (
                json!({"timezone": "UTC", "weekly": [{"day": "mon", "start": "09:00", "end": "12:00"},
                                                     {"day": "mon", "start": "11:00", "end": "13:00"}]}),
                "weekly[1]",
            ),
            (
                json!({"timezone": "UTC", "weekly": [{"day": "funday", "start": "09:00", "end": "12:00"}]}),
                "weekly[0].day",
            ),
            (
                json!({"timezone": "UTC", "weekly": [{"day": "mon", "start": "9am", "end": "12:00"}]}),
                "weekly[0].start",
            ),
            (
                json!({"timezone": "UTC", "exceptions": [{"date": "24/12/2026", "available": false}]}),
                "exceptions[0].date",
            ),
            (
                json!({"timezone": "UTC", "exceptions": [{"date": "2026-12-24", "available": true, "start": "12:00", "end": "10:00"}]}),
                "exceptions[0].end",
            ),
            (
                json!({"timezone": "UTC", "exceptions": [{"date": "2026-12-24", "available": false},
                                                         {"date": "2026-12-24", "available": true, "start": "10:00", "end": "11:00"}]}),
                "exceptions[1]",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(fields(body.clone()), [field], "{body}");
        }
        // Back to back on one day is not an overlap.
        assert!(parse(json!({"timezone": "UTC", "weekly": [
            {"day": "mon", "start": "09:00", "end": "12:00"},
            {"day": "mon", "start": "12:00", "end": "13:00"}]}))
        .is_ok());
    }
}
