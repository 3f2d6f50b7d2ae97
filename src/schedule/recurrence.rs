//! The occurrences of a recurring series: an RFC 5545 rule expanded from a
//! local first start in the series' time zone.
//!
//! Why the `rrule` crate: RFC 5545 expansion (BYDAY, INTERVAL, UNTIL,
//! BYSETPOS, …) is large and easy to get subtly wrong; the crate is the
//! maintained implementation and expands in the zone itself, so an 18:00
//! session stays at 18:00 on both sides of a daylight-saving change.
//!
//! The clinic's limits are checked here: the rule must end (COUNT or
//! UNTIL), yield at most [`MAX_OCCURRENCES`], and span at most a year.
//! Pure: no clock.

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::request::FieldError;

/// The most sessions one series creates.
pub(crate) const MAX_OCCURRENCES: usize = 200;
/// The longest span from the first start to the last.
pub(crate) const MAX_SPAN_DAYS: i64 = 366;

fn problem(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// Reads `first_starts_at` (a local time without offset, like
/// `2026-12-07T18:00:00`) in `tz`. A time that does not exist there (the
/// spring gap) or a time with an offset is refused.
pub(crate) fn first_start(tz: Tz, raw: &str) -> Result<DateTime<Tz>, FieldError> {
    let field = "first_starts_at";
    let naive = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M"))
        .map_err(|_| {
            problem(
                field,
                format!(
                    "{raw:?} is not a local time like 2026-12-07T18:00:00 (no offset: it is read in the series' time zone)"
                ),
            )
        })?;
    tz.from_local_datetime(&naive).earliest().ok_or_else(|| {
        problem(
            field,
            format!("{raw} does not exist in {} (the clock skips it)", tz.name()),
        )
    })
}

/// The start of every occurrence of `rule` from `first`, in order.
/// Errors name the field `rrule`.
pub(crate) fn occurrences(
    rule: &str,
    first: DateTime<Tz>,
) -> Result<Vec<DateTime<Utc>>, FieldError> {
    let field = "rrule";
    let text = rule.trim();
    let text = text.strip_prefix("RRULE:").unwrap_or(text);
    let parsed: rrule::RRule<rrule::Unvalidated> = text
        .parse()
        .map_err(|e| problem(field, format!("is not an RFC 5545 rule: {e}")))?;
    if parsed.get_count().is_none() && parsed.get_until().is_none() {
        return Err(problem(
            field,
            "must end: give COUNT (number of sessions) or UNTIL (last date)",
        ));
    }
    let start = first.with_timezone(&rrule::Tz::from(first.timezone()));
    let set = parsed
        .build(start)
        .map_err(|e| problem(field, format!("cannot be used: {e}")))?;
    let result = set.all(MAX_OCCURRENCES as u16 + 1);
    if result.dates.len() > MAX_OCCURRENCES {
        return Err(problem(
            field,
            format!("yields more than {MAX_OCCURRENCES} sessions; a series has at most {MAX_OCCURRENCES}"),
        ));
    }
    if result.dates.is_empty() {
        return Err(problem(field, "yields no session"));
    }
    let starts: Vec<DateTime<Utc>> = result.dates.iter().map(|d| d.with_timezone(&Utc)).collect();
    let span = *starts.last().expect("not empty") - starts[0];
    if span > Duration::days(MAX_SPAN_DAYS) {
        return Err(problem(
            field,
            "spans more than 1 year; schedule a longer program as several series",
        ));
    }
    Ok(starts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;

    fn local(tz: Tz, dates: &[DateTime<Utc>]) -> Vec<String> {
        dates
            .iter()
            .map(|d| d.with_timezone(&tz).format("%a %m-%d %H:%M").to_string())
            .collect()
    }

    #[test]
    fn an_18_00_series_stays_at_18_00_across_the_march_change() {
        // DST starts Sunday 8 March 2026.
        let first = first_start(New_York, "2026-03-02T18:00:00").unwrap();
        let got = occurrences("FREQ=WEEKLY;BYDAY=MO,WE,TH;COUNT=6", first).unwrap();
        assert_eq!(
            local(New_York, &got),
            [
                "Mon 03-02 18:00",
                "Wed 03-04 18:00",
                "Thu 03-05 18:00",
                "Mon 03-09 18:00",
                "Wed 03-11 18:00",
                "Thu 03-12 18:00"
            ]
        );
        // In UTC the hour moves: 23:00Z before, 22:00Z after.
        assert_eq!(
            got[0],
            "2026-03-02T23:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            got[3],
            "2026-03-09T22:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn an_18_00_series_stays_at_18_00_across_the_november_change() {
        // DST ends Sunday 1 November 2026.
        let first = first_start(New_York, "2026-10-26T18:00:00").unwrap();
        let got = occurrences("RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20261110T000000Z", first).unwrap();
        assert_eq!(
            local(New_York, &got),
            ["Mon 10-26 18:00", "Mon 11-02 18:00", "Mon 11-09 18:00"]
        );
        assert_eq!(
            got[0],
            "2026-10-26T22:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            got[1],
            "2026-11-02T23:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn the_iop_track_of_the_issue_has_24_sessions() {
        let first = first_start(New_York, "2026-12-07T18:00:00").unwrap();
        let got = occurrences("FREQ=WEEKLY;BYDAY=MO,WE,TH;COUNT=24", first).unwrap();
        assert_eq!(got.len(), 24);
        assert!(local(New_York, &got).iter().all(|s| s.ends_with("18:00")));
    }

    #[test]
    fn rules_the_clinic_cannot_use_name_the_field() {
        let first = first_start(New_York, "2026-12-07T18:00:00").unwrap();
        let cases = [
            ("FREQ=WEEKLY;BYDAY=MO", "must end"),
            ("FREQ=DAILY;COUNT=201", "more than 200"),
            ("FREQ=MONTHLY;COUNT=14", "more than 1 year"),
            ("FREQ=SOMETIMES;COUNT=3", "not an RFC 5545 rule"),
        ];
        for (rule, words) in cases {
            let e = occurrences(rule, first).unwrap_err();
            assert_eq!(e.field, "rrule", "{rule}");
            assert!(e.message.contains(words), "{rule}: {}", e.message);
        }
        assert_eq!(
            occurrences("FREQ=DAILY;COUNT=200", first).unwrap().len(),
            200
        );
    }

    #[test]
    fn a_first_start_the_clock_skips_or_with_an_offset_is_refused() {
        assert!(first_start(New_York, "2026-03-08T02:30:00").is_err());
        assert!(first_start(New_York, "2026-12-07T18:00:00-05:00").is_err());
        assert!(first_start(New_York, "2026-12-07T18:00").is_ok());
    }
}
