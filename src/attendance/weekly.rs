//! The weekly IOP compliance report (ATTENDANCE.md "Weekly compliance
//! report"): per patient and week, the hours payers and ASAM level 2.1 ask
//! for, built from the per-session reports of [`super::report`].
//!
//! Pure: the caller passes the sessions with their events, the program's
//! time zone, the attendance configuration and `now`.
//!
//! # The week
//!
//! A week is named `YYYY-Www` (ISO 8601 week-numbering year and week,
//! `2025-W07`). It runs from local midnight to local midnight in the
//! program's time zone, seven calendar days:
//! - `week_start = "monday"`: from the ISO week's Monday 00:00 to the next
//!   Monday 00:00;
//! - `week_start = "sunday"` (the default): from the Sunday *before* that
//!   ISO Monday, 00:00, to the next Sunday 00:00.
//!
//! A week containing a daylight-saving change is 167 or 169 hours long. When
//! a zone skips local midnight itself (a DST jump at 00:00, as in
//! America/Santiago), the day starts at its first existing local minute;
//! when midnight happens twice, at the first.
//!
//! # Which sessions count
//!
//! A session counts in the week that contains its service date: the local
//! date of its scheduled start *in the session's own time zone* (the
//! session report's `service_date`; [`super::report::service_date`]). The
//! whole session counts to that date, even when it runs past midnight, and
//! the week is made of local dates with the program's week start. So a
//! session scheduled in another zone than the program's belongs to the
//! week of its own date, which can differ from the week its start falls in
//! by the program's clock (`from`/`to` describe the week's instants in the
//! program's zone).
//!
//! A cancelled session counts for a patient only for attended time: one
//! cancelled part-way, which the patient attended, counts like any other
//! (its entry has `cancelled: true` and the flag `cancelled`); one the
//! patient did not attend is left out. A session given twice (same id)
//! counts once. Sessions outside the week are ignored, so the caller may
//! pass a superset (two days either side hold every candidate).
//!
//! # Per patient
//!
//! Patients are the roster members with role `patient`, keyed by
//! participant id across sessions (partners and observers get no row; time
//! someone spends as a partner is not their IOP time). A patient has a row
//! when at least one counted session has them on its roster; rows are
//! sorted by id. `mrn` is the first one the clinic supplied, in session
//! order.
//!
//! - `minutes_total`: the sum over sessions of each session's
//!   `attended_minutes` (each floored first, then summed, so the total
//!   never includes a minute no single session had in full).
//! - `audio_only_minutes`: the same sum of the floored audio-only part of
//!   each session's *attended* time (`attended_audio_only_seconds` in the
//!   session report), so it never exceeds `minutes_total`.
//! - `hours`: `minutes_total / 60` floored to two decimals (599 minutes is
//!   9.98 hours, never 9.99).
//! - A session is *attended* when its `attended_seconds > 0` (one whole
//!   attended second, the head-count test). `sessions_scheduled` counts the
//!   counted sessions with the patient on the roster, `sessions_attended`
//!   the attended ones, `sessions_partial` the attended ones that were late
//!   (`late_seconds > 0`), left early (`early_leave_seconds > 0`) or shorter
//!   than the scheduled length (`ends_at − starts_at`).
//! - `days_attended`: distinct service dates with an attended session;
//!   `days_meeting_daily_minimum`: those of them whose summed attended
//!   minutes reach `daily_minimum_minutes`.
//! - `weekly_minimum_minutes` is the configured minimum (the ledger knows
//!   no ages: adult 540 or adolescent 360 is the program's setting);
//!   `meets_weekly_minimum` = `minutes_total ≥` it; `above_maximum_hours` =
//!   `hours > weekly_maximum_hours` (on the floored hours).
//! - Each entry of `sessions` carries `flags` only when the patient
//!   attended it and the session is finished: the participant's `late`,
//!   `left_early` and the session's `below_code_minimum`, `ended_early`
//!   (from the session report, which states those rules), then `cancelled`;
//!   with `minutes_short` and `code_minimums` from the session report.
//! - `flags` of the week, in this order, each at most once: `late`,
//!   `left_early` (some session has it), `below_weekly_minimum`,
//!   `above_maximum_hours`, `below_code_minimum`, `ended_early`,
//!   `cancelled` (some session has it). Flags never change a number.
//!
//! Numbers are as of `now`: a session still running counts its open
//! intervals up to `now` (see [`super::report`]).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::Serialize;

use super::event::Event;
use super::interval::floor_minutes;
use super::report::{rfc3339_ms, service_date, session_report, CodeMinimum};
use crate::auth::RosterRole;
use crate::config::{AttendanceSection, WeekStart};
use crate::schedule::{Session, SessionKind};

pub(crate) use super::report::{
    FLAG_BELOW_CODE_MINIMUM, FLAG_ENDED_EARLY, FLAG_LATE, FLAG_LEFT_EARLY,
};
pub(crate) const FLAG_BELOW_WEEKLY_MINIMUM: &str = "below_weekly_minimum";
pub(crate) const FLAG_ABOVE_MAXIMUM_HOURS: &str = "above_maximum_hours";
/// The session was cancelled (its attended time still counts).
pub(crate) const FLAG_CANCELLED: &str = "cancelled";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeeklyReport {
    /// The week as `YYYY-Www`.
    pub week: String,
    pub week_start: WeekStart,
    /// The program's IANA time zone.
    pub timezone: String,
    /// The week's first instant (local midnight), RFC 3339 UTC.
    pub from: String,
    /// The next week's first instant, RFC 3339 UTC (exclusive).
    pub to: String,
    /// The week's first and last local dates, `YYYY-MM-DD` (inclusive).
    pub first_date: String,
    pub last_date: String,
    pub generated_at: String,
    /// The 42 CFR Part 2 notice, or null when disabled.
    pub notice: Option<String>,
    pub daily_minimum_minutes: u32,
    pub weekly_minimum_minutes: u32,
    pub weekly_maximum_hours: u32,
    pub patients: Vec<WeeklyPatient>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeeklyPatient {
    pub participant_id: String,
    pub mrn: Option<String>,
    pub minutes_total: i64,
    pub audio_only_minutes: i64,
    /// `minutes_total / 60`, floored to two decimals.
    pub hours: f64,
    pub days_attended: usize,
    pub days_meeting_daily_minimum: usize,
    pub sessions_scheduled: usize,
    pub sessions_attended: usize,
    pub sessions_partial: usize,
    pub weekly_minimum_minutes: u32,
    pub meets_weekly_minimum: bool,
    pub above_maximum_hours: bool,
    pub flags: Vec<&'static str>,
    /// The counted sessions with this patient on the roster, by start.
    pub sessions: Vec<WeeklySession>,
    /// Hundredths of an hour (`hours` × 100, exact), for exports.
    #[serde(skip)]
    pub hours_hundredths: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeeklySession {
    pub session_id: String,
    pub kind: SessionKind,
    /// Local date of the scheduled start in the session's time zone.
    pub service_date: String,
    pub starts_at: String,
    pub ends_at: String,
    pub attended_minutes: i64,
    pub audio_only_minutes: i64,
    pub late_seconds: i64,
    pub early_leave_seconds: i64,
    pub attended: bool,
    pub partial: bool,
    /// `late`, `left_early`, `below_code_minimum`, `ended_early`,
    /// `cancelled` (attended sessions that are finished only).
    pub flags: Vec<&'static str>,
    /// The session was cancelled; only its attended time brings it here.
    pub cancelled: bool,
    /// Whole minutes between an early end and the scheduled end.
    pub minutes_short: i64,
    /// Each timed code of the session against its own minutes.
    pub code_minimums: Vec<CodeMinimum>,
}

/// Parses `YYYY-Www` (ISO 8601 week: four-digit week-numbering year, `-W`,
/// two-digit week) and checks that the year has that week (52 or 53).
pub(crate) fn parse_week(s: &str) -> Result<(i32, u32), String> {
    let format_error =
        || format!("week must be in the form YYYY-Www (ISO 8601 week, e.g. 2025-W07), got {s:?}");
    let b = s.as_bytes();
    let digits = |r: &[u8]| r.iter().all(u8::is_ascii_digit);
    if b.len() != 8 || &b[4..6] != b"-W" || !digits(&b[..4]) || !digits(&b[6..]) {
        return Err(format_error());
    }
    let year: i32 = s[..4].parse().map_err(|_| format_error())?;
    let week: u32 = s[6..].parse().map_err(|_| format_error())?;
    if NaiveDate::from_isoywd_opt(year, week, Weekday::Mon).is_none() {
        let weeks = NaiveDate::from_ymd_opt(year, 12, 28).map_or(52, |d| d.iso_week().week());
        return Err(format!(
            "week {s:?} does not exist: ISO year {year} has weeks 01 to {weeks} (form YYYY-Www)"
        ));
    }
    Ok((year, week))
}

/// The first local date of the week (see the module documentation).
/// `(year, week)` should be one [`parse_week`] accepted; other week numbers
/// are counted on from week 1.
fn first_day(year: i32, week: u32, start: WeekStart) -> NaiveDate {
    let jan4 = NaiveDate::from_ymd_opt(year, 1, 4).expect("a four-digit year");
    let week1 = jan4 - Days::new(jan4.weekday().num_days_from_monday().into());
    let monday = week1 + TimeDelta::weeks(i64::from(week) - 1);
    match start {
        WeekStart::Monday => monday,
        WeekStart::Sunday => monday - Days::new(1),
    }
}

/// The first instant of `date` in `tz`: local midnight, or, when a DST jump
/// skips midnight, the first local minute that exists.
fn start_of_day(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    (0..=24 * 60)
        .find_map(|m| {
            tz.from_local_datetime(&(midnight + TimeDelta::minutes(m)))
                .earliest()
        })
        .expect("every day has a local minute")
        .with_timezone(&Utc)
}

/// The week's `[from, to)` in UTC: local midnight of its first day to local
/// midnight seven days later, in `tz`. `(year, week)` should be one
/// [`parse_week`] accepted.
pub(crate) fn week_bounds(
    year: i32,
    week: u32,
    tz: Tz,
    start: WeekStart,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let first = first_day(year, week, start);
    (
        start_of_day(first, tz),
        start_of_day(first + Days::new(7), tz),
    )
}

/// Accumulates one patient's week.
#[derive(Default)]
struct Patient {
    mrn: Option<String>,
    sessions: Vec<(NaiveDate, WeeklySession)>,
}

/// The weekly compliance report of `week` (`YYYY-Www`) over `sessions`
/// (each with its ledger events), in the program's time zone `tz`, as of
/// `now`. An invalid week is an error naming the expected form. See the
/// module documentation for every rule.
pub fn weekly_report(
    sessions: &[(Session, Vec<Event>)],
    week: &str,
    tz: Tz,
    config: &AttendanceSection,
    now: DateTime<Utc>,
) -> Result<WeeklyReport, String> {
    let (year, week_number) = parse_week(week)?;
    let first = first_day(year, week_number, config.week_start);
    let last = first + Days::new(6);
    let (from, to) = week_bounds(year, week_number, tz, config.week_start);

    let mut seen = HashSet::new();
    let mut counted: Vec<&(Session, Vec<Event>)> = sessions
        .iter()
        .filter(|(s, _)| (first..=last).contains(&service_date(s)))
        .filter(|(s, _)| seen.insert(s.id))
        .collect();
    counted.sort_by_key(|(s, _)| (s.starts_at, s.id));

    let mut patients: BTreeMap<String, Patient> = BTreeMap::new();
    for (session, events) in counted {
        let report = session_report(session, events, None, now);
        let date = service_date(session);
        let cancelled = session.cancelled_at.is_some();
        let scheduled_ms = (session.ends_at - session.starts_at).num_milliseconds();
        for member in session
            .roster
            .iter()
            .filter(|m| m.role == RosterRole::Patient)
        {
            let Some(row) = report
                .participants
                .iter()
                .find(|r| r.participant_id == member.id)
            else {
                continue;
            };
            let attended = row.attended_seconds > 0;
            if cancelled && !attended {
                continue;
            }
            // The participant's flags and the session's, for an attended
            // session (the report raises them for finished sessions only).
            let mut flags = row.flags.clone();
            if attended {
                flags.extend(report.flags.iter().copied());
                if cancelled {
                    flags.push(FLAG_CANCELLED);
                }
            }
            let patient = patients.entry(member.id.clone()).or_default();
            if patient.mrn.is_none() {
                patient.mrn.clone_from(&member.mrn);
            }
            patient.sessions.push((
                date,
                WeeklySession {
                    session_id: report.session.id.clone(),
                    kind: session.kind,
                    service_date: date.format("%Y-%m-%d").to_string(),
                    starts_at: report.session.starts_at.clone(),
                    ends_at: report.session.ends_at.clone(),
                    attended_minutes: row.attended_minutes,
                    audio_only_minutes: floor_minutes(row.attended_audio_only_ms),
                    late_seconds: row.late_seconds,
                    early_leave_seconds: row.early_leave_seconds,
                    attended,
                    partial: attended
                        && (row.late_seconds > 0
                            || row.early_leave_seconds > 0
                            || row.attended_ms < scheduled_ms),
                    flags,
                    cancelled,
                    minutes_short: report.minutes_short,
                    code_minimums: report.code_minimums.clone(),
                },
            ));
        }
    }

    let patients = patients
        .into_iter()
        .map(|(id, p)| summarise(id, p, config))
        .collect();
    Ok(WeeklyReport {
        week: format!("{year:04}-W{week_number:02}"),
        week_start: config.week_start,
        timezone: tz.name().to_owned(),
        from: rfc3339_ms(from.timestamp_millis()),
        to: rfc3339_ms(to.timestamp_millis()),
        first_date: first.format("%Y-%m-%d").to_string(),
        last_date: last.format("%Y-%m-%d").to_string(),
        generated_at: rfc3339_ms(now.timestamp_millis()),
        notice: config.notice_enabled.then(|| config.notice.clone()),
        daily_minimum_minutes: config.daily_minimum_minutes,
        weekly_minimum_minutes: config.weekly_minimum_minutes,
        weekly_maximum_hours: config.weekly_maximum_hours,
        patients,
    })
}

fn summarise(participant_id: String, p: Patient, config: &AttendanceSection) -> WeeklyPatient {
    let sessions: Vec<&WeeklySession> = p.sessions.iter().map(|(_, s)| s).collect();
    let minutes_total: i64 = sessions.iter().map(|s| s.attended_minutes).sum();
    let audio_only_minutes: i64 = sessions.iter().map(|s| s.audio_only_minutes).sum();
    let mut days: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    for (date, s) in p.sessions.iter().filter(|(_, s)| s.attended) {
        *days.entry(*date).or_default() += s.attended_minutes;
    }
    let daily_minimum = i64::from(config.daily_minimum_minutes);
    let hours_hundredths = minutes_total * 100 / 60;
    let meets_weekly_minimum = minutes_total >= i64::from(config.weekly_minimum_minutes);
    let above_maximum_hours = hours_hundredths > i64::from(config.weekly_maximum_hours) * 100;
    let any = |flag: &str| sessions.iter().any(|s| s.flags.contains(&flag));
    let mut flags = Vec::new();
    if any(FLAG_LATE) {
        flags.push(FLAG_LATE);
    }
    if any(FLAG_LEFT_EARLY) {
        flags.push(FLAG_LEFT_EARLY);
    }
    if !meets_weekly_minimum {
        flags.push(FLAG_BELOW_WEEKLY_MINIMUM);
    }
    if above_maximum_hours {
        flags.push(FLAG_ABOVE_MAXIMUM_HOURS);
    }
    for flag in [FLAG_BELOW_CODE_MINIMUM, FLAG_ENDED_EARLY, FLAG_CANCELLED] {
        if any(flag) {
            flags.push(flag);
        }
    }
    WeeklyPatient {
        participant_id,
        mrn: p.mrn,
        minutes_total,
        audio_only_minutes,
        hours: hours_hundredths as f64 / 100.0,
        days_attended: days.len(),
        days_meeting_daily_minimum: days.values().filter(|&&m| m >= daily_minimum).count(),
        sessions_scheduled: sessions.len(),
        sessions_attended: sessions.iter().filter(|s| s.attended).count(),
        sessions_partial: sessions.iter().filter(|s| s.partial).count(),
        weekly_minimum_minutes: config.weekly_minimum_minutes,
        meets_weekly_minimum,
        above_maximum_hours,
        flags,
        sessions: p.sessions.into_iter().map(|(_, s)| s).collect(),
        hours_hundredths,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attendance::event::modality::{AUDIO_ONLY, AUDIO_VIDEO};
    use crate::attendance::report::testkit::*;
    use crate::config::Config;
    use chrono::Duration;
    use chrono_tz::America::{New_York, Santiago};
    use chrono_tz::UTC;
    use RosterRole::{Partner, Patient};

    fn config() -> AttendanceSection {
        Config::default().attendance
    }

    #[test]
    fn parse_week_accepts_only_iso_weeks() {
        let cases: &[(&str, Option<(i32, u32)>)] = &[
            ("2025-W10", Some((2025, 10))),
            ("2025-W01", Some((2025, 1))),
            ("2020-W53", Some((2020, 53))),
            ("2026-W53", Some((2026, 53))),
            ("2025-W53", None),
            ("2021-W53", None),
            ("2025-W00", None),
            ("2025-W54", None),
            ("2025-W1", None),
            ("2025W10", None),
            ("2025-w10", None),
            ("25-W10", None),
            ("+025-W10", None),
            (" 2025-W10", None),
            ("2025-W10 ", None),
            ("2025-W1a", None),
            ("2025-10", None),
            ("", None),
            ("２０２５-W10", None),
        ];
        for &(input, want) in cases {
            match (parse_week(input), want) {
                (Ok(got), Some(want)) => assert_eq!(got, want, "{input:?}"),
                (Err(e), None) => assert!(e.contains("YYYY-Www"), "{input:?}: {e}"),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn weeks_run_from_local_midnight_to_local_midnight() {
        use WeekStart::{Monday, Sunday};
        // (week, zone, start, from, to, hours)
        let cases = [
            // March: New York springs forward on Sunday 2025-03-09.
            (
                (2025, 11),
                New_York,
                Sunday,
                utc(2025, 3, 9, 5, 0),
                utc(2025, 3, 16, 4, 0),
                167,
            ),
            (
                (2025, 10),
                New_York,
                Monday,
                utc(2025, 3, 3, 5, 0),
                utc(2025, 3, 10, 4, 0),
                167,
            ),
            (
                (2025, 10),
                New_York,
                Sunday,
                utc(2025, 3, 2, 5, 0),
                utc(2025, 3, 9, 5, 0),
                168,
            ),
            // November: New York falls back on Sunday 2025-11-02.
            (
                (2025, 44),
                New_York,
                Monday,
                utc(2025, 10, 27, 4, 0),
                utc(2025, 11, 3, 5, 0),
                169,
            ),
            (
                (2025, 45),
                New_York,
                Sunday,
                utc(2025, 11, 2, 4, 0),
                utc(2025, 11, 9, 5, 0),
                169,
            ),
            (
                (2025, 45),
                New_York,
                Monday,
                utc(2025, 11, 3, 5, 0),
                utc(2025, 11, 10, 5, 0),
                168,
            ),
            // ISO years that straddle calendar years.
            (
                (2025, 1),
                UTC,
                Monday,
                utc(2024, 12, 30, 0, 0),
                utc(2025, 1, 6, 0, 0),
                168,
            ),
            (
                (2025, 1),
                UTC,
                Sunday,
                utc(2024, 12, 29, 0, 0),
                utc(2025, 1, 5, 0, 0),
                168,
            ),
            (
                (2020, 53),
                UTC,
                Monday,
                utc(2020, 12, 28, 0, 0),
                utc(2021, 1, 4, 0, 0),
                168,
            ),
            // Chile skips midnight on 2024-09-08: that day starts at 01:00 (-03).
            (
                (2024, 37),
                Santiago,
                Sunday,
                utc(2024, 9, 8, 4, 0),
                utc(2024, 9, 15, 3, 0),
                167,
            ),
        ];
        for ((year, week), tz, start, from, to, hours) in cases {
            let got = week_bounds(year, week, tz, start);
            assert_eq!(got, (from, to), "{year}-W{week} {tz} {start:?}");
            assert_eq!(
                (got.1 - got.0).num_hours(),
                hours,
                "{year}-W{week} {tz} {start:?}"
            );
        }
    }

    /// A session with the clinician there throughout and `patients` present
    /// from the start for the given milliseconds (0: absent).
    fn held(
        n: u128,
        kind: SessionKind,
        starts_at: DateTime<Utc>,
        minutes: i64,
        patients: &[(&str, RosterRole, i64)],
    ) -> (Session, Vec<Event>) {
        let roster: Vec<(&str, RosterRole)> =
            patients.iter().map(|&(id, role, _)| (id, role)).collect();
        let session = session(n, kind, starts_at, minutes, New_York, &roster);
        let mut l = Ledger::new(&session);
        l.clinician(0, s(minutes * 60));
        for &(id, _, ms) in patients {
            if ms > 0 {
                l.join(0, id, &format!("{id}-a"))
                    .leave(ms, id, &format!("{id}-a"), "left");
            }
        }
        let events = l.events();
        (session, events)
    }

    fn minutes(m: i64) -> i64 {
        m * 60_000
    }

    #[test]
    fn a_week_in_new_york_across_the_march_change() {
        let mut sessions = Vec::new();
        // S1 Monday 09:00 EDT, group of 3 hours.
        let mut s1 = held(
            1,
            SessionKind::Group,
            utc(2025, 3, 10, 13, 0),
            180,
            &[("p1", Patient, minutes(180)), ("p2", Patient, minutes(100))],
        );
        s1.0.roster[1].mrn = Some("MRN-1".into());
        sessions.push(s1);
        // S2 Monday 13:00 EDT: 5 minutes late, 10 minutes audio-only.
        let s2 = session(
            2,
            SessionKind::Individual,
            utc(2025, 3, 10, 17, 0),
            50,
            New_York,
            &[("p1", Patient)],
        );
        let mut l = Ledger::new(&s2);
        l.clinician(0, s(3000))
            .join(s(300), "p1", "p1-a")
            .media(s(600), "p1", "p1-a", AUDIO_ONLY)
            .media(s(1200), "p1", "p1-a", AUDIO_VIDEO)
            .leave(s(3000), "p1", "p1-a", "left");
        sessions.push((s2, l.events()));
        // S3 Wednesday, couple: the patient stays 20 minutes (20 conjoint,
        // < 26 for 90847), the partner 30 more alone (90846 is met).
        sessions.push(held(
            3,
            SessionKind::Couple,
            utc(2025, 3, 12, 13, 0),
            50,
            &[("p1", Patient, minutes(20)), ("p3", Partner, minutes(50))],
        ));
        // S4 Saturday 23:30 EDT (Sunday in UTC): in the week, given twice.
        let s4 = held(
            4,
            SessionKind::Individual,
            utc(2025, 3, 16, 3, 30),
            30,
            &[("p1", Patient, minutes(30))],
        );
        sessions.push(s4.clone());
        sessions.push(s4);
        // S5 Sunday 00:30 EDT: next week.
        sessions.push(held(
            5,
            SessionKind::Individual,
            utc(2025, 3, 16, 4, 30),
            30,
            &[("p1", Patient, minutes(30))],
        ));
        // S6 Sunday 00:30 EST, first day of the week: a no-show.
        sessions.push(held(
            6,
            SessionKind::Individual,
            utc(2025, 3, 9, 5, 30),
            30,
            &[("p1", Patient, 0)],
        ));
        // S7 Thursday, cancelled in advance: the patient never came, so it
        // is left out (a cancelled session counts only for attended time).
        let mut s7 = held(
            7,
            SessionKind::Individual,
            utc(2025, 3, 13, 13, 0),
            30,
            &[("p1", Patient, 0)],
        );
        s7.0.cancelled_at = Some(utc(2025, 3, 1, 0, 0));
        sessions.push(s7);
        // S8 Saturday 23:30 EST before: last week.
        sessions.push(held(
            8,
            SessionKind::Individual,
            utc(2025, 3, 9, 4, 30),
            30,
            &[("p1", Patient, minutes(30))],
        ));

        let now = utc(2025, 3, 20, 0, 0);
        let r = weekly_report(&sessions, "2025-W11", New_York, &config(), now).unwrap();
        assert_eq!(r.week, "2025-W11");
        assert_eq!(
            (r.first_date.as_str(), r.last_date.as_str()),
            ("2025-03-09", "2025-03-15")
        );
        assert_eq!(r.from, "2025-03-09T05:00:00.000Z");
        assert_eq!(r.to, "2025-03-16T04:00:00.000Z");
        assert_eq!(r.notice.as_deref(), Some(crate::config::DEFAULT_NOTICE));
        let ids: Vec<&str> = r
            .patients
            .iter()
            .map(|p| p.participant_id.as_str())
            .collect();
        assert_eq!(ids, ["p1", "p2"]);

        let p1 = &r.patients[0];
        assert_eq!(p1.mrn.as_deref(), Some("MRN-1"));
        assert_eq!(p1.minutes_total, 180 + 45 + 20 + 30);
        assert_eq!(p1.audio_only_minutes, 10);
        assert_eq!(p1.hours, 4.58);
        assert_eq!(p1.hours_hundredths, 458);
        assert_eq!(p1.days_attended, 3);
        assert_eq!(p1.days_meeting_daily_minimum, 1);
        assert_eq!(p1.sessions_scheduled, 5);
        assert_eq!(p1.sessions_attended, 4);
        assert_eq!(p1.sessions_partial, 2);
        assert_eq!(p1.weekly_minimum_minutes, 540);
        assert!(!p1.meets_weekly_minimum);
        assert!(!p1.above_maximum_hours);
        assert_eq!(p1.flags, ["late", "left_early", "below_weekly_minimum"]);
        let dates: Vec<&str> = p1
            .sessions
            .iter()
            .map(|s| s.service_date.as_str())
            .collect();
        assert_eq!(
            dates,
            [
                "2025-03-09",
                "2025-03-10",
                "2025-03-10",
                "2025-03-12",
                "2025-03-15"
            ]
        );
        let s2 = &p1.sessions[2];
        assert_eq!(
            (s2.late_seconds, s2.attended_minutes, s2.audio_only_minutes),
            (300, 45, 10)
        );
        assert!(s2.partial);
        assert_eq!(s2.flags, ["late"]);
        assert_eq!(p1.sessions[3].flags, ["left_early"]);
        let codes: Vec<(&str, i64, bool)> = p1.sessions[3]
            .code_minimums
            .iter()
            .map(|c| (c.code, c.minutes, c.met))
            .collect();
        assert_eq!(codes, [("90847", 20, false), ("90846", 30, true)]);
        assert!(p1.sessions[0].flags.is_empty() && !p1.sessions[0].attended);

        let p2 = &r.patients[1];
        assert_eq!(p2.mrn, None);
        assert_eq!(p2.minutes_total, 100);
        assert_eq!(p2.hours, 1.66, "100 minutes is 1.666… hours: floored");
        assert_eq!((p2.days_attended, p2.days_meeting_daily_minimum), (1, 0));
        assert_eq!(
            (
                p2.sessions_scheduled,
                p2.sessions_attended,
                p2.sessions_partial
            ),
            (1, 1, 1)
        );
        assert_eq!(p2.flags, ["left_early", "below_weekly_minimum"]);

        // Monday start: S6 (Sunday the 9th) falls in W10; S4 and S5 in W11.
        let mut monday = config();
        monday.week_start = WeekStart::Monday;
        monday.notice_enabled = false;
        let w10 = weekly_report(&sessions, "2025-W10", New_York, &monday, now).unwrap();
        assert_eq!(w10.patients[0].sessions_scheduled, 2, "S8 and S6");
        assert_eq!(w10.notice, None);
        let w11 = weekly_report(&sessions, "2025-W11", New_York, &monday, now).unwrap();
        assert_eq!(w11.patients[0].sessions_scheduled, 5, "S1 S2 S3 S4 S5");
    }

    #[test]
    fn the_november_change_keeps_local_midnights() {
        // 2025-W44, Monday start: Mon Oct 27 00:00 EDT to Mon Nov 3 00:00 EST.
        let mut monday = config();
        monday.week_start = WeekStart::Monday;
        let p = |n, at| {
            held(
                n,
                SessionKind::Individual,
                at,
                30,
                &[("p1", Patient, minutes(30))],
            )
        };
        let sessions = vec![
            p(1, utc(2025, 11, 3, 4, 30)),  // Sun Nov 2 23:30 EST: in.
            p(2, utc(2025, 11, 3, 5, 10)),  // Mon Nov 3 00:10 EST: out.
            p(3, utc(2025, 10, 27, 4, 10)), // Mon Oct 27 00:10 EDT: in.
            p(4, utc(2025, 10, 27, 3, 50)), // Sun Oct 26 23:50 EDT: out.
        ];
        let r = weekly_report(
            &sessions,
            "2025-W44",
            New_York,
            &monday,
            utc(2025, 12, 1, 0, 0),
        )
        .unwrap();
        let p1 = &r.patients[0];
        assert_eq!(p1.sessions_scheduled, 2);
        assert_eq!(p1.minutes_total, 60);
        let dates: Vec<&str> = p1
            .sessions
            .iter()
            .map(|s| s.service_date.as_str())
            .collect();
        assert_eq!(dates, ["2025-10-27", "2025-11-02"]);
        assert_eq!(r.to, "2025-11-03T05:00:00.000Z");
    }

    /// (attended ms, minutes_total, hours, above maximum, meets minimum, flags)
    type Threshold = (i64, i64, f64, bool, bool, &'static [&'static str]);

    #[test]
    fn hours_round_down_and_thresholds() {
        let mut cfg = config();
        cfg.weekly_maximum_hours = 2;
        cfg.weekly_minimum_minutes = 120;
        let cases: &[Threshold] = &[
            (
                minutes(119),
                119,
                1.98,
                false,
                false,
                &["left_early", "below_weekly_minimum"],
            ),
            (minutes(120), 120, 2.0, false, true, &["left_early"]),
            (
                minutes(121),
                121,
                2.01,
                true,
                true,
                &["left_early", "above_maximum_hours"],
            ),
            (minutes(121) - 1, 120, 2.0, false, true, &["left_early"]),
            (
                59_999,
                0,
                0.0,
                false,
                false,
                &["left_early", "below_weekly_minimum", "below_code_minimum"],
            ),
            (
                minutes(15) + 59_999,
                15,
                0.25,
                false,
                false,
                &["left_early", "below_weekly_minimum", "below_code_minimum"],
            ),
            (
                minutes(16),
                16,
                0.26,
                false,
                false,
                &["left_early", "below_weekly_minimum"],
            ),
        ];
        for &(ms, total, hours, above, meets, flags) in cases {
            let sessions = vec![held(
                1,
                SessionKind::Individual,
                utc(2025, 3, 10, 13, 0),
                130,
                &[("p1", Patient, ms)],
            )];
            let r = weekly_report(&sessions, "2025-W11", New_York, &cfg, utc(2025, 4, 1, 0, 0))
                .unwrap();
            let p = &r.patients[0];
            assert_eq!(p.minutes_total, total, "{ms}");
            assert_eq!(p.hours, hours, "{ms}");
            assert_eq!(p.above_maximum_hours, above, "{ms}");
            assert_eq!(p.meets_weekly_minimum, meets, "{ms}");
            assert_eq!(p.flags, flags, "{ms}");
            assert_eq!(
                (p.sessions_attended, p.days_attended, p.sessions_partial),
                (1, 1, 1),
                "{ms}"
            );
        }
        // 599 minutes over two days: 9.98 hours, never 9.99; a group session
        // has no code minimum.
        let sessions = vec![
            held(
                1,
                SessionKind::Group,
                utc(2025, 3, 10, 13, 0),
                300,
                &[("p1", Patient, minutes(300))],
            ),
            held(
                2,
                SessionKind::Group,
                utc(2025, 3, 11, 13, 0),
                299,
                &[("p1", Patient, minutes(299))],
            ),
            held(
                3,
                SessionKind::Group,
                utc(2025, 3, 12, 13, 0),
                10,
                &[("p1", Patient, minutes(1))],
            ),
        ];
        let r = weekly_report(
            &sessions,
            "2025-W11",
            New_York,
            &config(),
            utc(2025, 4, 1, 0, 0),
        )
        .unwrap();
        let p = &r.patients[0];
        assert_eq!(
            (p.minutes_total, p.hours, p.hours_hundredths),
            (600, 10.0, 1000)
        );
        assert_eq!((p.days_attended, p.days_meeting_daily_minimum), (3, 2));
        assert!(p.meets_weekly_minimum);
        assert_eq!(p.flags, ["left_early"]);
        let r = weekly_report(
            &sessions[..2],
            "2025-W11",
            New_York,
            &config(),
            utc(2025, 4, 1, 0, 0),
        )
        .unwrap();
        assert_eq!(
            (r.patients[0].minutes_total, r.patients[0].hours),
            (599, 9.98)
        );
        assert!(r.patients[0]
            .flags
            .iter()
            .all(|f| *f != "below_code_minimum"));
    }

    /// The flags of each of p1's sessions in `week` (Sunday start, New York).
    fn session_flags(
        sessions: &[(Session, Vec<Event>)],
        week: &str,
        now: DateTime<Utc>,
    ) -> Vec<Vec<&'static str>> {
        let r = weekly_report(sessions, week, New_York, &config(), now).unwrap();
        r.patients
            .iter()
            .find(|p| p.participant_id == "p1")
            .map(|p| p.sessions.iter().map(|s| s.flags.clone()).collect())
            .unwrap_or_default()
    }

    /// (name, kind, script over a 50-minute session, wanted flags)
    type FlagCase = (
        &'static str,
        SessionKind,
        fn(&mut Ledger),
        &'static [&'static str],
    );

    /// (code, basis, minutes, met) of each timed code.
    type Codes = &'static [(&'static str, &'static str, i64, bool)];

    /// Issue 20, fault 3: each code is tested on its own evidence: 90847 on
    /// conjoint minutes, 90846 on partner-without-patient minutes,
    /// 90832/90834/90837 on the patient's attended minutes. The flag is
    /// raised when no timed code of the session's kind reaches its minimum.
    #[test]
    fn each_code_is_checked_against_its_own_minutes() {
        let cases: Vec<(FlagCase, Codes)> = vec![
            (
                (
                    "patient 50 min, only 10 of them conjoint: 90847 missed",
                    SessionKind::Couple,
                    |l| {
                        l.clinician(0, s(3000))
                            .join(0, "p1", "p1-a")
                            .leave(s(3000), "p1", "p1-a", "left")
                            .join(s(2400), "p3", "p3-a")
                            .leave(s(3000), "p3", "p3-a", "left");
                    },
                    &["below_code_minimum"],
                ),
                &[
                    ("90847", "conjoint", 10, false),
                    ("90846", "partner_only", 0, false),
                ],
            ),
            (
                (
                    "patient 20 min with the partner, partner 30 min alone: 90846 met",
                    SessionKind::Couple,
                    |l| {
                        l.clinician(0, s(3000))
                            .join(0, "p1", "p1-a")
                            .leave(s(1200), "p1", "p1-a", "left")
                            .join(0, "p3", "p3-a")
                            .leave(s(3000), "p3", "p3-a", "left");
                    },
                    &["left_early"],
                ),
                &[
                    ("90847", "conjoint", 20, false),
                    ("90846", "partner_only", 30, true),
                ],
            ),
            (
                (
                    "25:59.999 conjoint, nothing alone: both missed",
                    SessionKind::Couple,
                    |l| {
                        l.clinician(0, s(3000))
                            .join(0, "p1", "p1-a")
                            .leave(s(3000), "p1", "p1-a", "left")
                            .join(0, "p3", "p3-a")
                            .leave(s(1560) - 1, "p3", "p3-a", "left");
                    },
                    &["below_code_minimum"],
                ),
                &[
                    ("90847", "conjoint", 25, false),
                    ("90846", "partner_only", 0, false),
                ],
            ),
            (
                (
                    "26:00 conjoint: 90847 met",
                    SessionKind::Couple,
                    |l| {
                        l.clinician(0, s(3000))
                            .join(0, "p1", "p1-a")
                            .leave(s(3000), "p1", "p1-a", "left")
                            .join(0, "p3", "p3-a")
                            .leave(s(1560), "p3", "p3-a", "left");
                    },
                    &[],
                ),
                &[
                    ("90847", "conjoint", 26, true),
                    ("90846", "partner_only", 0, false),
                ],
            ),
            (
                (
                    "individual 15:59.999: 90832 missed",
                    SessionKind::Individual,
                    |l| {
                        l.clinician(0, s(3000)).join(s(2040), "p1", "p1-a").leave(
                            s(3000) - 1,
                            "p1",
                            "p1-a",
                            "left",
                        );
                    },
                    &["late", "below_code_minimum"],
                ),
                &[
                    ("90832", "attended", 15, false),
                    ("90834", "attended", 15, false),
                    ("90837", "attended", 15, false),
                ],
            ),
            (
                (
                    "individual 16:00: 90832 met",
                    SessionKind::Individual,
                    |l| {
                        l.clinician(0, s(3000)).join(s(2040), "p1", "p1-a").leave(
                            s(3000),
                            "p1",
                            "p1-a",
                            "left",
                        );
                    },
                    &["late"],
                ),
                &[
                    ("90832", "attended", 16, true),
                    ("90834", "attended", 16, false),
                    ("90837", "attended", 16, false),
                ],
            ),
            (
                (
                    "individual 53:00 (into the overrun): 90837 met",
                    SessionKind::Individual,
                    |l| {
                        l.clinician(0, s(3180)).join(0, "p1", "p1-a").leave(
                            s(3180),
                            "p1",
                            "p1-a",
                            "left",
                        );
                    },
                    &[],
                ),
                &[
                    ("90832", "attended", 53, true),
                    ("90834", "attended", 53, true),
                    ("90837", "attended", 53, true),
                ],
            ),
            (
                (
                    "group: 90853 is untimed",
                    SessionKind::Group,
                    |l| {
                        l.clinician(0, s(3000)).join(0, "p1", "p1-a").leave(
                            s(60),
                            "p1",
                            "p1-a",
                            "left",
                        );
                    },
                    &["left_early"],
                ),
                &[],
            ),
        ];
        for ((name, kind, script, want), codes) in cases {
            let roster: &[(&str, RosterRole)] = match kind {
                SessionKind::Couple => &[("p1", Patient), ("p3", Partner)],
                _ => &[("p1", Patient)],
            };
            let session = session(1, kind, utc(2025, 3, 10, 13, 0), 50, New_York, roster);
            let mut l = Ledger::new(&session);
            script(&mut l);
            let sessions = [(session, l.events())];
            let now = utc(2025, 4, 1, 0, 0);
            let flags = session_flags(&sessions, "2025-W11", now);
            assert_eq!(flags, [want.to_vec()], "{name}");
            let r = weekly_report(&sessions, "2025-W11", New_York, &config(), now).unwrap();
            let got: Vec<(&str, &str, i64, bool)> = r.patients[0].sessions[0]
                .code_minimums
                .iter()
                .map(|c| (c.code, c.basis.as_str(), c.minutes, c.met))
                .collect();
            assert_eq!(got, codes, "{name}");
            let own = session_report(&sessions[0].0, &sessions[0].1, None, now);
            assert_eq!(own.code_minimums, r.patients[0].sessions[0].code_minimums);
            for c in &own.code_minimums {
                assert_eq!(
                    c.minimum,
                    [
                        ("90847", 26),
                        ("90846", 26),
                        ("90832", 16),
                        ("90834", 38),
                        ("90837", 53)
                    ]
                    .iter()
                    .find(|(code, _)| *code == c.code)
                    .unwrap()
                    .1
                );
            }
        }
    }

    /// Issue 20, fault 4: one service date, in the session's own zone, for
    /// the session report and the weekly report; the session belongs to the
    /// week (program's week start) that contains that date.
    #[test]
    fn one_service_date_rule_for_both_reports() {
        use chrono_tz::America::Los_Angeles;
        use chrono_tz::Europe::London;
        // (zone, scheduled start, week it belongs to, service date)
        let cases = [
            // Saturday 21:30 PDT is already Sunday 00:30 in New York, and the
            // night New York falls back.
            (
                Los_Angeles,
                utc(2026, 11, 1, 4, 30),
                "2026-W44",
                "2026-10-31",
            ),
            // Sunday 01:30 in London is still Saturday in New York.
            (London, utc(2026, 3, 1, 1, 30), "2026-W10", "2026-03-01"),
            (New_York, utc(2026, 11, 1, 4, 30), "2026-W45", "2026-11-01"),
        ];
        for (tz, starts_at, week, date) in cases {
            let session = session(
                1,
                SessionKind::Individual,
                starts_at,
                50,
                tz,
                &[("p1", Patient)],
            );
            let mut l = Ledger::new(&session);
            l.clinician(0, s(3000))
                .join(0, "p1", "p1-a")
                .leave(s(3000), "p1", "p1-a", "left");
            let sessions = vec![(session.clone(), l.events())];
            let now = starts_at + Duration::days(30);
            let own = session_report(&session, &sessions[0].1, None, now);
            assert_eq!(own.session.service_date, date, "{tz} {starts_at}");
            let (year, number) = parse_week(week).unwrap();
            for other in [number - 1, number, number + 1] {
                let name = format!("{year}-W{other:02}");
                let r = weekly_report(&sessions, &name, New_York, &config(), now).unwrap();
                if other == number {
                    let p = &r.patients[0];
                    assert_eq!(p.sessions[0].service_date, date, "{tz} {name}");
                    assert_eq!(p.minutes_total, 50, "{tz} {name}");
                    assert!(r.first_date.as_str() <= date && date <= r.last_date.as_str());
                } else {
                    assert!(r.patients.is_empty(), "{tz} {starts_at} is not in {name}");
                }
            }
        }
    }

    /// Issue 20, fault 5: time attended in a session cancelled part-way
    /// counts in the weekly report, marked as a cancelled session's; a
    /// session cancelled before anyone came stays out.
    #[test]
    fn attended_time_of_a_cancelled_session_counts() {
        let starts = utc(2025, 3, 10, 13, 0);
        let mut cancelled = session(
            1,
            SessionKind::Individual,
            starts,
            50,
            New_York,
            &[("p1", Patient)],
        );
        cancelled.cancelled_at = Some(starts + Duration::minutes(20));
        let mut l = Ledger::new(&cancelled);
        l.join(0, CLIN, "c1-a")
            .join(0, "p1", "p1-a")
            .closed_for(s(1200), "session_cancelled");
        let mut never = session(
            2,
            SessionKind::Individual,
            starts + Duration::days(1),
            50,
            New_York,
            &[("p1", Patient)],
        );
        never.cancelled_at = Some(starts - Duration::days(3));
        let sessions = vec![(cancelled.clone(), l.events()), (never, Vec::new())];
        let now = utc(2025, 4, 1, 0, 0);
        let own = session_report(&cancelled, &sessions[0].1, None, now);
        assert_eq!(own.participants[1].attended_minutes, 20);
        let r = weekly_report(&sessions, "2025-W11", New_York, &config(), now).unwrap();
        let p = &r.patients[0];
        assert_eq!(p.minutes_total, 20);
        assert_eq!(
            (p.sessions_scheduled, p.sessions_attended, p.days_attended),
            (1, 1, 1)
        );
        assert_eq!(p.sessions.len(), 1);
        assert!(p.sessions[0].cancelled);
        assert_eq!(p.sessions[0].flags, ["ended_early", "cancelled"]);
        assert_eq!(p.sessions[0].minutes_short, 30);
        assert_eq!(
            p.flags,
            ["below_weekly_minimum", "ended_early", "cancelled"]
        );
        assert_eq!(own.status, crate::schedule::SessionStatus::Cancelled);
        assert_eq!(own.flags, ["ended_early"]);
    }

    /// Issue 20, fault 6: flags apply to attended participants of finished
    /// sessions only, and an early end is the session's flag.
    #[test]
    fn flags_fit_the_facts() {
        let cases: Vec<FlagCase> = vec![
            (
                "0.999 s of presence is not attendance: no late, no left early",
                SessionKind::Individual,
                |l| {
                    l.clinician(0, s(3000)).join(s(300), "p1", "p1-a").leave(
                        s(300) + 999,
                        "p1",
                        "p1-a",
                        "network",
                    );
                },
                &[],
            ),
            (
                "closed by recovery at its own joining time",
                SessionKind::Individual,
                |l| {
                    l.clinician(0, s(3000)).join(s(600), "p1", "p1-a").leave(
                        s(600),
                        "p1",
                        "p1-a",
                        "server_restart",
                    );
                },
                &[],
            ),
            (
                "the clinician ends the session at 30 min: the session ended early",
                SessionKind::Individual,
                |l| {
                    l.join(0, CLIN, "c1-a")
                        .join(0, "p1", "p1-a")
                        .closed_for(s(1800), "ended_by_clinician");
                },
                &["ended_early"],
            ),
            (
                "left at 25 min, the clinician ended at 30: left early too",
                SessionKind::Individual,
                |l| {
                    l.join(0, CLIN, "c1-a")
                        .join(0, "p1", "p1-a")
                        .leave(s(1500), "p1", "p1-a", "left")
                        .closed_for(s(1800), "ended_by_clinician");
                },
                &["left_early", "ended_early"],
            ),
            (
                "late, then to the scheduled end",
                SessionKind::Individual,
                |l| {
                    l.clinician(0, s(3000)).join(s(60), "p1", "p1-a").leave(
                        s(3000),
                        "p1",
                        "p1-a",
                        "left",
                    );
                },
                &["late"],
            ),
        ];
        let starts = utc(2025, 3, 10, 13, 0);
        for &(name, kind, script, want) in &cases {
            let session = session(1, kind, starts, 50, New_York, &[("p1", Patient)]);
            let mut l = Ledger::new(&session);
            script(&mut l);
            let flags = session_flags(&[(session, l.events())], "2025-W11", utc(2025, 4, 1, 0, 0));
            assert_eq!(flags, [want.to_vec()], "{name}");
        }
        // The early end, in the session report: the session's flag, the
        // minutes short, and no participant flag.
        let early = session(
            1,
            SessionKind::Individual,
            starts,
            50,
            New_York,
            &[("p1", Patient)],
        );
        let mut l = Ledger::new(&early);
        (cases[2].2)(&mut l);
        let r = session_report(&early, &l.events(), None, utc(2025, 4, 1, 0, 0));
        assert_eq!(r.flags, ["ended_early"]);
        assert_eq!(r.minutes_short, 20);
        assert_eq!(
            r.session.ended_at.as_deref(),
            Some("2025-03-10T13:30:00.000Z")
        );
        assert!(r.participants.iter().all(|p| p.flags.is_empty()));
        assert_eq!(
            r.participants[1].early_leave_seconds, 1200,
            "still measured against the scheduled end"
        );
        // A session in progress has no flags yet: 10 minutes attended, joined
        // a minute late.
        let live = session(
            2,
            SessionKind::Individual,
            starts,
            50,
            New_York,
            &[("p1", Patient)],
        );
        let mut l = Ledger::new(&live);
        l.join(0, CLIN, "c1-a").join(s(60), "p1", "p1-a");
        let now = starts + Duration::minutes(11);
        let r = weekly_report(&[(live, l.events())], "2025-W11", New_York, &config(), now).unwrap();
        assert_eq!(r.patients[0].minutes_total, 10);
        assert!(
            r.patients[0].sessions[0].flags.is_empty(),
            "{:?}",
            r.patients[0].sessions[0].flags
        );
        assert_eq!(r.patients[0].flags, ["below_weekly_minimum"]);
    }

    #[test]
    fn a_bad_week_is_an_error_naming_the_form() {
        let e =
            weekly_report(&[], "2025-10", New_York, &config(), utc(2025, 1, 1, 0, 0)).unwrap_err();
        assert!(e.contains("YYYY-Www"), "{e}");
        let e =
            weekly_report(&[], "2025-W53", New_York, &config(), utc(2025, 1, 1, 0, 0)).unwrap_err();
        assert!(e.contains("52"), "{e}");
        let empty =
            weekly_report(&[], "2025-W02", New_York, &config(), utc(2025, 1, 1, 0, 0)).unwrap();
        assert!(empty.patients.is_empty());
    }

    #[test]
    fn a_live_week_counts_up_to_now() {
        let live = session(
            1,
            SessionKind::Individual,
            utc(2025, 3, 10, 13, 0),
            50,
            New_York,
            &[("p1", Patient)],
        );
        let mut l = Ledger::new(&live);
        l.join(0, CLIN, "c1-a").join(0, "p1", "p1-a");
        let sessions = vec![(live.clone(), l.events())];
        let now = live.starts_at + Duration::minutes(20) + Duration::milliseconds(59_999);
        let r = weekly_report(&sessions, "2025-W11", New_York, &config(), now).unwrap();
        assert_eq!(r.patients[0].minutes_total, 20);
        assert!(r.patients[0].flags.iter().all(|f| *f != "left_early"));
    }
}
