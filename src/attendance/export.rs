//! Rendering the attendance reports as files: JSON and CSV.
//!
//! Every function returns the file's bytes and its row count, so that the
//! caller can record the row count and the SHA-256 ([`sha256_hex`]) of
//! exactly these bytes in the export's audit event. Pure: no clock, no I/O.
//!
//! # JSON
//! `serde_json` pretty-printed, UTF-8, ending with a newline. A session
//! report is the DESIGN.md object; a date range is
//! `{"notice", "session_count", "sessions": [report, ...]}`; the weekly
//! report is [`WeeklyReport`]. The row count is the number of participant
//! rows (session, range) or patient rows (weekly).
//!
//! # CSV
//! UTF-8 without a byte-order mark, RFC 4180 as written by the `csv` crate:
//! CRLF line ends, fields quoted when they hold a comma, quote or line
//! break. The header row is always the first row; then one row per
//! participant per session (session report, date range: the session's
//! columns repeat on each row) or one row per patient (weekly). Times are
//! RFC 3339 UTC with milliseconds; an absent value is an empty cell; booleans
//! are `true`/`false`; the weekly `hours` has exactly two decimals (floored)
//! and `flags` are joined with `;`. Intervals, annotations and per-session
//! weekly details are in the JSON only.
//!
//! When the notice is enabled, the data rows are followed by one empty line
//! and a final row whose only cell is the notice text. Putting it last keeps
//! the header the first row, so spreadsheets and billing imports read the
//! columns as usual, while the notice still travels inside the file. Strict
//! RFC 4180 readers must allow that last short row; the row count never
//! includes the header, the empty line or the notice.
//!
//! Cells of free text that come from outside (title, participant id, MRN,
//! attested state) are written with a leading `'` when they start with `=`,
//! `+`, `-`, `@`, a tab or a carriage return, so that a spreadsheet shows
//! them instead of running them as formulas (CSV injection).

use csv::{Terminator, Writer, WriterBuilder};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::report::{CodeMinimum, SessionReport};
use super::weekly::WeeklyReport;

/// Columns of the session and date-range CSV, in order. The code columns
/// hold one entry per timed code of the session's kind, `;`-separated, in
/// the same order in each of them (`90847;90846`, `conjoint;partner_only`,
/// `10;0`, `26;26`, `false;false`).
pub(crate) const SESSION_CSV_HEADER: [&str; 38] = [
    "session_id",
    "title",
    "kind",
    "service_date",
    "timezone",
    "starts_at",
    "ends_at",
    "status",
    "head_count",
    "conjoint_seconds",
    "partner_only_seconds",
    "participant_id",
    "mrn",
    "role",
    "attended_seconds",
    "attended_minutes",
    "present_seconds",
    "audio_only_seconds",
    "attended_audio_only_seconds",
    "first_join",
    "last_leave",
    "still_present",
    "late_seconds",
    "early_leave_seconds",
    "disconnects",
    "attestation_state",
    "attestation_at_home",
    "attestation_private",
    "attestation_at",
    "ended_at",
    "session_flags",
    "minutes_short",
    "code",
    "code_basis",
    "code_minutes",
    "code_minimum",
    "code_met",
    "flags",
];

/// Columns of the weekly CSV, in order.
pub(crate) const WEEKLY_CSV_HEADER: [&str; 18] = [
    "week",
    "first_date",
    "last_date",
    "timezone",
    "participant_id",
    "mrn",
    "minutes_total",
    "audio_only_minutes",
    "hours",
    "days_attended",
    "days_meeting_daily_minimum",
    "sessions_scheduled",
    "sessions_attended",
    "sessions_partial",
    "weekly_minimum_minutes",
    "meets_weekly_minimum",
    "above_maximum_hours",
    "flags",
];

/// SHA-256 of `bytes`, lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The session report as pretty JSON; rows: its participants.
pub fn session_json(report: &SessionReport) -> (Vec<u8>, usize) {
    (json(report), report.participants.len())
}

/// Several session reports (a date range) as pretty JSON; rows: their
/// participants, all sessions together.
pub(crate) fn range_json(reports: &[SessionReport], notice: Option<&str>) -> (Vec<u8>, usize) {
    #[derive(Serialize)]
    struct Range<'a> {
        notice: Option<&'a str>,
        session_count: usize,
        sessions: &'a [SessionReport],
    }
    let range = Range {
        notice,
        session_count: reports.len(),
        sessions: reports,
    };
    (json(&range), participant_rows(reports))
}

/// The weekly report as pretty JSON; rows: its patients.
pub fn weekly_json(report: &WeeklyReport) -> (Vec<u8>, usize) {
    (json(report), report.patients.len())
}

/// The session report as CSV (header, one row per participant, notice).
pub fn session_csv(report: &SessionReport) -> (Vec<u8>, usize) {
    range_csv(std::slice::from_ref(report), report.notice.as_deref())
}

/// Several session reports as one CSV: the header, one row per participant
/// per session, in the order given, then the notice when given.
pub(crate) fn range_csv(reports: &[SessionReport], notice: Option<&str>) -> (Vec<u8>, usize) {
    let mut w = with_header(&SESSION_CSV_HEADER);
    for r in reports {
        let s = &r.session;
        let codes = |f: &dyn Fn(&CodeMinimum) -> String| {
            r.code_minimums.iter().map(f).collect::<Vec<_>>().join(";")
        };
        for p in &r.participants {
            let a = p.attestation.as_ref();
            let row: [String; 38] = [
                s.id.clone(),
                cell(&s.title),
                s.kind.as_str().to_owned(),
                s.service_date.clone(),
                s.timezone.clone(),
                s.starts_at.clone(),
                s.ends_at.clone(),
                text(&r.status),
                r.head_count.to_string(),
                r.conjoint_seconds.to_string(),
                r.partner_only_seconds.to_string(),
                cell(&p.participant_id),
                p.mrn.as_deref().map(cell).unwrap_or_default(),
                p.role.as_str().to_owned(),
                p.attended_seconds.to_string(),
                p.attended_minutes.to_string(),
                p.present_seconds.to_string(),
                p.audio_only_seconds.to_string(),
                p.attended_audio_only_seconds.to_string(),
                p.first_join.clone().unwrap_or_default(),
                p.last_leave.clone().unwrap_or_default(),
                p.still_present.to_string(),
                p.late_seconds.to_string(),
                p.early_leave_seconds.to_string(),
                p.disconnects.to_string(),
                a.and_then(|a| a.state.as_deref())
                    .map(cell)
                    .unwrap_or_default(),
                optional(a.and_then(|a| a.at_home)),
                optional(a.and_then(|a| a.private)),
                a.map(|a| a.at.clone()).unwrap_or_default(),
                s.ended_at.clone().unwrap_or_default(),
                r.flags.join(";"),
                r.minutes_short.to_string(),
                codes(&|c| c.code.to_owned()),
                codes(&|c| c.basis.as_str().to_owned()),
                codes(&|c| c.minutes.to_string()),
                codes(&|c| c.minimum.to_string()),
                codes(&|c| c.met.to_string()),
                p.flags.join(";"),
            ];
            w.write_record(&row).expect("writing CSV to memory");
        }
    }
    (finish(w, notice), participant_rows(reports))
}

/// The weekly report as CSV (header, one row per patient, notice).
pub fn weekly_csv(report: &WeeklyReport) -> (Vec<u8>, usize) {
    let mut w = with_header(&WEEKLY_CSV_HEADER);
    for p in &report.patients {
        let row: [String; 18] = [
            report.week.clone(),
            report.first_date.clone(),
            report.last_date.clone(),
            report.timezone.clone(),
            cell(&p.participant_id),
            p.mrn.as_deref().map(cell).unwrap_or_default(),
            p.minutes_total.to_string(),
            p.audio_only_minutes.to_string(),
            format!(
                "{}.{:02}",
                p.hours_hundredths / 100,
                p.hours_hundredths % 100
            ),
            p.days_attended.to_string(),
            p.days_meeting_daily_minimum.to_string(),
            p.sessions_scheduled.to_string(),
            p.sessions_attended.to_string(),
            p.sessions_partial.to_string(),
            p.weekly_minimum_minutes.to_string(),
            p.meets_weekly_minimum.to_string(),
            p.above_maximum_hours.to_string(),
            p.flags.join(";"),
        ];
        w.write_record(&row).expect("writing CSV to memory");
    }
    (finish(w, report.notice.as_deref()), report.patients.len())
}

fn participant_rows(reports: &[SessionReport]) -> usize {
    reports.iter().map(|r| r.participants.len()).sum()
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("reports serialise to JSON");
    bytes.push(b'\n');
    bytes
}

/// A serde unit variant as its plain string (`"ended"` → `ended`).
fn text<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn optional(b: Option<bool>) -> String {
    b.map(|b| b.to_string()).unwrap_or_default()
}

/// Free text from outside, defused for spreadsheets.
fn cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

fn writer(into: Vec<u8>) -> Writer<Vec<u8>> {
    WriterBuilder::new()
        .terminator(Terminator::CRLF)
        .flexible(true)
        .from_writer(into)
}

fn with_header(header: &[&str]) -> Writer<Vec<u8>> {
    let mut w = writer(Vec::new());
    w.write_record(header).expect("writing CSV to memory");
    w
}

fn finish(w: Writer<Vec<u8>>, notice: Option<&str>) -> Vec<u8> {
    let mut bytes = w.into_inner().expect("writing CSV to memory");
    if let Some(notice) = notice {
        bytes.extend_from_slice(b"\r\n");
        let mut w = writer(bytes);
        w.write_record([notice]).expect("writing CSV to memory");
        bytes = w.into_inner().expect("writing CSV to memory");
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attendance::report::session_report;
    use crate::attendance::report::testkit::*;
    use crate::attendance::weekly::weekly_report;
    use crate::auth::RosterRole::{Partner, Patient};
    use crate::config::{Config, DEFAULT_NOTICE};
    use crate::schedule::SessionKind;
    use chrono_tz::America::New_York;
    use proptest::prelude::*;

    fn couple_report(title: &str, notice: Option<&str>) -> SessionReport {
        let mut session = session(
            1,
            SessionKind::Couple,
            utc(2025, 3, 10, 13, 0),
            50,
            New_York,
            &[("p1", Patient), ("p2", Partner)],
        );
        session.title = title.into();
        session.roster[1].mrn = Some("MRN-1".into());
        let mut l = Ledger::new(&session);
        l.clinician(0, s(3000))
            .attest(0, "p1", "NY", true)
            .join(s(10), "p1", "p1-a")
            .leave(s(70), "p1", "p1-a", "network")
            .join(0, "p2", "p2-a")
            .leave(s(3000), "p2", "p2-a", "left");
        session_report(&session, &l.events(), notice, utc(2025, 3, 10, 15, 0))
    }

    fn read(bytes: &[u8]) -> Vec<Vec<String>> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes)
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn session_csv_header_rows_then_notice() {
        let report = couple_report("Tuesday, \"couples\"", Some(DEFAULT_NOTICE));
        let (bytes, rows) = session_csv(&report);
        assert_eq!(rows, 3);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("session_id,title,kind,service_date,"));
        assert!(
            text.contains("\"Tuesday, \"\"couples\"\"\""),
            "RFC 4180 quoting: {text}"
        );
        let notice_row = format!("\r\n\r\n\"{DEFAULT_NOTICE}\"\r\n");
        assert!(text.ends_with(&notice_row), "{text}");
        assert!(!text.replace("\r\n", "").contains('\n'), "CRLF only");
        let records = read(&bytes);
        assert_eq!(records[0], SESSION_CSV_HEADER);
        assert_eq!(records.len(), 1 + 3 + 1);
        assert_eq!(records[4], [DEFAULT_NOTICE]);
        let column = |name: &str| SESSION_CSV_HEADER.iter().position(|h| *h == name).unwrap();
        let p1 = &records[2];
        assert_eq!(p1[column("participant_id")], "p1");
        assert_eq!(p1[column("mrn")], "MRN-1");
        assert_eq!(p1[column("role")], "patient");
        assert_eq!(p1[column("attended_seconds")], "60");
        assert_eq!(p1[column("attended_minutes")], "1");
        assert_eq!(p1[column("late_seconds")], "10");
        assert_eq!(p1[column("disconnects")], "1");
        assert_eq!(p1[column("first_join")], "2025-03-10T13:00:10.000Z");
        assert_eq!(p1[column("last_leave")], "2025-03-10T13:01:10.000Z");
        assert_eq!(p1[column("attestation_state")], "NY");
        assert_eq!(p1[column("attestation_at_home")], "true");
        assert_eq!(p1[column("status")], "ended");
        assert_eq!(p1[column("conjoint_seconds")], "60");
        assert_eq!(p1[column("partner_only_seconds")], "2940");
        assert_eq!(p1[column("kind")], "couple");
        // Each timed code against its own minutes, a list per column.
        assert_eq!(p1[column("code")], "90847;90846");
        assert_eq!(p1[column("code_basis")], "conjoint;partner_only");
        assert_eq!(p1[column("code_minutes")], "1;49");
        assert_eq!(p1[column("code_minimum")], "26;26");
        assert_eq!(p1[column("code_met")], "false;true");
        assert_eq!(p1[column("session_flags")], "");
        assert_eq!(p1[column("minutes_short")], "0");
        assert_eq!(p1[column("ended_at")], "");
        assert_eq!(p1[column("flags")], "late;left_early");
        assert_eq!(records[3][column("flags")], "");
        assert_eq!(records[1][column("role")], "clinician");
        assert_eq!(records[1][column("attestation_state")], "");
        assert_eq!(records[3][column("mrn")], "");
        assert!(records[1..4]
            .iter()
            .all(|r| r.len() == SESSION_CSV_HEADER.len()));
    }

    #[test]
    fn without_the_notice_there_is_no_trailer() {
        let report = couple_report("t", None);
        let (bytes, rows) = session_csv(&report);
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(rows, 3);
        assert_eq!(text.matches("\r\n").count(), 4);
        assert!(!text.contains("\r\n\r\n"));
    }

    #[test]
    fn ranges_concatenate_sessions() {
        let a = couple_report("a", Some("N"));
        let b = couple_report("b", Some("N"));
        let (bytes, rows) = range_csv(&[a.clone(), b.clone()], Some("N"));
        assert_eq!(rows, 6);
        let records = read(&bytes);
        assert_eq!(records.len(), 1 + 6 + 1);
        assert_eq!(records[1][1], "a");
        assert_eq!(records[4][1], "b");
        let (bytes, rows) = range_csv(&[], Some("N"));
        assert_eq!(rows, 0);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            format!("{}\r\n\r\nN\r\n", SESSION_CSV_HEADER.join(","))
        );

        let (bytes, rows) = range_json(&[a.clone(), b], Some("N"));
        assert_eq!(rows, 6);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["notice"], "N");
        assert_eq!(v["session_count"], 2);
        assert_eq!(v["sessions"][0], serde_json::to_value(&a).unwrap());
        let (bytes, rows) = range_json(&[], None);
        assert_eq!(rows, 0);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v["notice"].is_null() && v["sessions"].as_array().unwrap().is_empty());
    }

    #[test]
    fn session_json_is_the_report() {
        let report = couple_report("t", Some("N"));
        let (bytes, rows) = session_json(&report);
        assert_eq!(rows, 3);
        assert!(bytes.ends_with(b"}\n"));
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v, serde_json::to_value(&report).unwrap());
        assert_eq!(v["notice"], "N");
        assert_eq!(v["participants"][1]["attended_seconds"], 60);
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .contains("\n  \"session\": {"),
            "pretty"
        );
    }

    #[test]
    fn weekly_csv_and_json() {
        let sessions: Vec<_> = [(1u128, 13u32, 300i64), (2, 14, 299)]
            .into_iter()
            .map(|(n, day, minutes)| {
                let session = session(
                    n,
                    SessionKind::Group,
                    utc(2025, 3, day, 13, 0),
                    minutes,
                    New_York,
                    &[("p1", Patient), ("=cmd", Patient)],
                );
                let mut l = Ledger::new(&session);
                l.clinician(0, s(minutes * 60)).join(0, "p1", "p1-a").leave(
                    s(minutes * 60),
                    "p1",
                    "p1-a",
                    "left",
                );
                let events = l.events();
                (session, events)
            })
            .collect();
        let config = Config::default().attendance;
        let report = weekly_report(
            &sessions,
            "2025-W11",
            New_York,
            &config,
            utc(2025, 4, 1, 0, 0),
        )
        .unwrap();
        let (bytes, rows) = weekly_csv(&report);
        assert_eq!(rows, 2);
        let records = read(&bytes);
        assert_eq!(records[0], WEEKLY_CSV_HEADER);
        assert_eq!(records.len(), 1 + 2 + 1);
        assert_eq!(records[3], [DEFAULT_NOTICE]);
        let column = |name: &str| WEEKLY_CSV_HEADER.iter().position(|h| *h == name).unwrap();
        // Sorted by id: "=cmd" before "p1"; defused for spreadsheets.
        assert_eq!(records[1][column("participant_id")], "'=cmd");
        assert_eq!(records[1][column("hours")], "0.00");
        assert_eq!(records[1][column("flags")], "below_weekly_minimum");
        let p1 = &records[2];
        assert_eq!(p1[column("minutes_total")], "599");
        assert_eq!(p1[column("hours")], "9.98");
        assert_eq!(p1[column("meets_weekly_minimum")], "true");
        assert_eq!(p1[column("days_attended")], "2");
        assert_eq!(p1[column("days_meeting_daily_minimum")], "2");
        assert_eq!(p1[column("week")], "2025-W11");
        assert_eq!(p1[column("first_date")], "2025-03-09");
        assert_eq!(p1[column("flags")], "");

        let (bytes, rows) = weekly_json(&report);
        assert_eq!(rows, 2);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["patients"][1]["hours"], 9.98);
        assert_eq!(v["patients"][1]["minutes_total"], 599);
        assert_eq!(v["week_start"], "sunday");
        assert!(v["patients"][1].get("hours_hundredths").is_none());
        assert!(String::from_utf8(bytes)
            .unwrap()
            .contains("\"hours\": 9.98,"));
    }

    #[test]
    fn sha256_of_the_bytes() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let (bytes, _) = session_csv(&couple_report("t", None));
        assert_eq!(
            sha256_hex(&bytes),
            sha256_hex(&session_csv(&couple_report("t", None)).0)
        );
        assert_ne!(
            sha256_hex(&bytes),
            sha256_hex(&session_csv(&couple_report("u", None)).0)
        );
    }

    #[test]
    fn formula_cells_are_defused() {
        for (input, want) in [
            ("=1+1", "'=1+1"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@x", "'@x"),
            ("\tx", "'\tx"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(cell(input), want);
        }
    }

    proptest! {
        /// Any title, MRN or notice survives the CSV round trip (RFC 4180
        /// quoting of commas, quotes, line breaks, any Unicode).
        #[test]
        fn csv_round_trips_free_text(title in "[a-zA-Z0-9 ,\"\r\n;é漢🙂']{0,30}", mrn in "[a-z0-9 ,\"\n]{0,12}", notice in "[a-zA-Z ,\"\n]{1,40}") {
            let mut report = couple_report(&title, Some(&notice));
            report.participants[1].mrn = Some(mrn.clone());
            let (bytes, rows) = session_csv(&report);
            prop_assert_eq!(rows, 3);
            let records = read(&bytes);
            prop_assert_eq!(records.len(), 5);
            prop_assert_eq!(&records[0][..], &SESSION_CSV_HEADER[..]);
            prop_assert_eq!(&records[1][1], &cell(&title));
            prop_assert_eq!(&records[2][12], &cell(&mrn));
            prop_assert_eq!(&records[4], &vec![notice.clone()]);
        }
    }
}
