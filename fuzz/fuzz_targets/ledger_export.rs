//! Any ledger contents, however inconsistent (events out of order, after a
//! close, of strangers, with unknown reasons and odd details): the session
//! report, the weekly report and their CSV and JSON exports never panic,
//! and no one is reported present for longer than the ledger spans.
#![no_main]

use arbitrary::Arbitrary;
use chrono::{DateTime, Datelike, Duration, Utc};
use libfuzzer_sys::fuzz_target;
use tandem::attendance::event::{Event, EventKind, NewEvent};
use tandem::attendance::{export, report, weekly};
use tandem::auth::RosterRole;
use tandem::config::Config;
use tandem::schedule::{RosterEntry, Session, SessionKind, SessionSettings};
use uuid::Uuid;

const KINDS: [EventKind; 12] = [
    EventKind::Waiting,
    EventKind::Admitted,
    EventKind::Denied,
    EventKind::Joined,
    EventKind::Left,
    EventKind::Removed,
    EventKind::Replaced,
    EventKind::MediaChanged,
    EventKind::Attestation,
    EventKind::Annotation,
    EventKind::SessionOpened,
    EventKind::SessionClosed,
];
const REASONS: [&str; 7] = [
    "left",
    "network",
    "server_restart",
    "session_end",
    "clinician_away",
    "ended_by_clinician",
    "something_new",
];
const PEOPLE: [&str; 4] = ["c", "p", "q", "stranger"];

#[derive(Debug, Arbitrary)]
struct FuzzEvent {
    /// Seconds after the session's start (may be before it).
    offset: i16,
    kind: u8,
    person: u8,
    connection: u8,
    reason: Option<u8>,
    video: Option<bool>,
    detail: Option<String>,
}

#[derive(Debug, Arbitrary)]
struct Ledger {
    kind: u8,
    /// Minutes after midnight UTC on the first of November 2026.
    start_minutes: u16,
    length_minutes: u8,
    cancelled: bool,
    /// Seconds after the start at which the report is made.
    now: u16,
    events: Vec<FuzzEvent>,
}

fuzz_target!(|ledger: Ledger| {
    let origin: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
    let starts_at = origin + Duration::minutes(i64::from(ledger.start_minutes));
    let ends_at = starts_at + Duration::minutes(i64::from(ledger.length_minutes.max(1)));
    let person = |id: &str, role| RosterEntry {
        id: id.into(),
        name: id.into(),
        role,
        household: Some("h".into()),
        mrn: None,
        revoked_at: None,
        removed_at: None,
    };
    let session = Session {
        id: Uuid::new_v4(),
        title: "t".into(),
        kind: [
            SessionKind::Individual,
            SessionKind::Couple,
            SessionKind::Group,
        ][usize::from(ledger.kind) % 3],
        starts_at,
        ends_at,
        timezone: chrono_tz::America::New_York,
        roster: vec![
            person("c", RosterRole::Clinician),
            person("p", RosterRole::Patient),
            person("q", RosterRole::Partner),
        ],
        settings: SessionSettings {
            auto_admit: false,
            early_join_minutes: 15,
            overrun_grace_minutes: 15,
            clinician_grace_minutes: 2,
        },
        created_at: starts_at - Duration::days(1),
        cancelled_at: ledger.cancelled.then_some(starts_at),
        ended_at: None,
    };
    let sid = session.id.to_string();
    let events: Vec<Event> = ledger
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let who = PEOPLE[usize::from(e.person) % PEOPLE.len()];
            Event {
                seq: i as i64 + 1,
                event: NewEvent {
                    at: (starts_at + Duration::seconds(i64::from(e.offset))).timestamp_millis(),
                    session: sid.clone(),
                    participant: Some(who.into()),
                    role: None,
                    connection: Some(format!("b-{}", e.connection % 4)),
                    kind: KINDS[usize::from(e.kind) % KINDS.len()],
                    reason: e
                        .reason
                        .map(|r| REASONS[usize::from(r) % REASONS.len()].into()),
                    modality: e
                        .video
                        .map(|v| if v { "audio_video" } else { "audio_only" }.into()),
                    detail: e
                        .detail
                        .as_ref()
                        .map(|d| serde_json::json!({ "text": d, "state": d })),
                },
                prev_hash: String::new(),
                hash: String::new(),
            }
        })
        .collect();
    let now = starts_at + Duration::seconds(i64::from(ledger.now));
    let report = report::session_report(&session, &events, Some("notice"), now);
    // Presence is counted inside the session's window only, and attended
    // time is a part of presence.
    let window = (ends_at + Duration::minutes(15) - starts_at).num_seconds();
    for p in &report.participants {
        assert!(p.present_seconds <= window, "presence beyond the window");
        assert!(
            p.attended_seconds <= p.present_seconds,
            "attended beyond present"
        );
    }
    export::session_csv(&report);
    export::session_json(&report);
    let config = Config::default();
    let sessions = vec![(session, events)];
    let iso = starts_at.iso_week();
    let week = format!("{}-W{:02}", iso.year(), iso.week());
    if let Ok(weekly) = weekly::weekly_report(
        &sessions,
        &week,
        chrono_tz::America::New_York,
        &config.attendance,
        now,
    ) {
        export::weekly_csv(&weekly);
        export::weekly_json(&weekly);
    }
});
