//! The invariant of issue 20, over generated ledgers: no report counts a
//! second nobody attended.
//!
//! A generated session has people whose connections each have a true span
//! of life, from `joined` to the last sign of life, and end the ways the
//! server ends them: a leave, a loss recorded 30 s later at the last sign
//! of life, a reconnect (the old connection lost, or replaced while alive),
//! a crash (recovery closes at a heartbeat, never after the last sign of
//! life), a removal, the clinician away, the session's end, an early end by
//! the clinician or a cancellation. Media changes come at any time up to
//! 40 s after the last sign of life, so some are stamped after the close
//! that is recorded later (a mute of a dead connection, a change after the
//! last heartbeat). Sessions start around local midnight on the days New
//! York changes its clocks, in four zones, so that service dates and weeks
//! differ between the session's zone and the program's.
//!
//! For every participant: attended time is at most the time their own
//! spans of life overlap a clinician's (inside the window); no interval
//! extends past its connection's close; and each week's minutes are the
//! sum of the session minutes whose service date falls in it.

use chrono::{DateTime, Datelike, Days, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use std::collections::BTreeMap;

use super::event::{Event, EventKind, NewEvent};
use super::interval::{Interval, Intervals, Millis};
use super::report::testkit::{session, stored, utc, CLIN};
use super::report::{session_report, SessionReport};
use super::weekly::weekly_report;
use crate::auth::RosterRole::{self, Partner, Patient};
use crate::config::Config;
use crate::schedule::{Session, SessionKind};

const ZONES: [Tz; 4] = [
    chrono_tz::America::New_York,
    chrono_tz::America::Los_Angeles,
    chrono_tz::Europe::London,
    chrono_tz::Asia::Tokyo,
];
const PROGRAM: Tz = chrono_tz::America::New_York;
const MINUTE: Millis = 60_000;

/// How a connection ends, if the room has not closed first.
#[derive(Debug, Clone, Copy)]
enum End {
    Left,
    /// Lost; the loss is noticed (and recorded) 30 s after the last sign.
    Network,
    /// A reconnect 20 s after the last sign: the loss, then `replaced`.
    ReplacedDead,
    /// A second device while this one is alive.
    ReplacedAlive,
    /// The server crashed; recovery closes at the last heartbeat, a given
    /// fraction (‰) of the way from `joined` to the last sign of life.
    Crash(i64),
    Removed,
    ClinicianAway,
}

#[derive(Debug, Clone)]
struct Conn {
    /// After the person's previous connection was closed (the first: after
    /// 15 minutes before the start).
    gap: Millis,
    /// From `joined` to the last sign of life.
    life: Millis,
    end: End,
    audio_only: bool,
    /// (after `joined`, video on) — up to 40 s past the last sign of life.
    media: Vec<(Millis, bool)>,
}

#[derive(Debug, Clone, Copy)]
enum Close {
    OnTime,
    /// The clinician ends it this far (‰) into the scheduled time.
    EndedEarly(i64),
    Cancelled(i64),
}

#[derive(Debug, Clone)]
struct Spec {
    zone: usize,
    /// The first or the second clock change.
    base: bool,
    /// Five-minute steps after 22:00 New York time the day before.
    step: i64,
    minutes: i64,
    kind: SessionKind,
    close: Close,
    /// The clinician's connections, then each other roster member's.
    people: Vec<Vec<Conn>>,
}

fn arb_end() -> impl Strategy<Value = End> {
    prop_oneof![
        Just(End::Left),
        Just(End::Network),
        Just(End::ReplacedDead),
        Just(End::ReplacedAlive),
        (0i64..=1000).prop_map(End::Crash),
        Just(End::Removed),
        Just(End::ClinicianAway),
    ]
}

fn arb_conn() -> impl Strategy<Value = Conn> {
    (
        0i64..25 * MINUTE,
        1i64..70 * MINUTE,
        arb_end(),
        any::<bool>(),
    )
        .prop_flat_map(|(gap, life, end, audio_only)| {
            prop::collection::vec((0..life + 40_000, any::<bool>()), 0..4).prop_map(move |media| {
                Conn {
                    gap,
                    life,
                    end,
                    audio_only,
                    media,
                }
            })
        })
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    (
        0..ZONES.len(),
        any::<bool>(),
        0i64..36 * 12,
        20i64..=120,
        prop_oneof![
            Just(SessionKind::Individual),
            Just(SessionKind::Couple),
            Just(SessionKind::Group)
        ],
        prop_oneof![
            2 => Just(Close::OnTime),
            1 => (50i64..1000).prop_map(Close::EndedEarly),
            1 => (50i64..1000).prop_map(Close::Cancelled),
        ],
        prop::collection::vec(prop::collection::vec(arb_conn(), 0..4), 4),
    )
        .prop_map(|(zone, base, step, minutes, kind, close, people)| Spec {
            zone,
            base,
            step,
            minutes,
            kind,
            close,
            people,
        })
}

fn roster(kind: SessionKind) -> &'static [(&'static str, RosterRole)] {
    match kind {
        SessionKind::Individual => &[("p1", Patient)],
        SessionKind::Couple => &[("p1", Patient), ("p2", Partner)],
        SessionKind::Group => &[("p1", Patient), ("p3", Patient), ("p2", Partner)],
    }
}

/// A generated session: its ledger and, per person, the true spans of life
/// of their connections.
struct Generated {
    session: Session,
    events: Vec<Event>,
    alive: BTreeMap<String, Vec<Interval>>,
}

/// Writes the ledger the server would write for `spec`. Events are ordered
/// by when they are recorded, which for a loss or a crash is well after the
/// time they carry.
fn generate(n: u128, spec: &Spec) -> Generated {
    let base = if spec.base {
        utc(2025, 11, 2, 2, 0) // Saturday 22:00 EDT; New York falls back at 02:00.
    } else {
        utc(2025, 3, 9, 3, 0) // Saturday 22:00 EST; New York springs forward.
    };
    let starts_at = base + Duration::minutes(5 * spec.step);
    let others = roster(spec.kind);
    let mut session = session(
        n,
        spec.kind,
        starts_at,
        spec.minutes,
        ZONES[spec.zone],
        others,
    );
    let start = starts_at.timestamp_millis();
    let length = spec.minutes * MINUTE;
    // When the room closes: the window's end, or the early end.
    let (x, why) = match spec.close {
        Close::OnTime => (session.closes_at().timestamp_millis(), "session_end"),
        Close::EndedEarly(p) => (start + length * p / 1000, "ended_by_clinician"),
        Close::Cancelled(p) => (start + length * p / 1000, "session_cancelled"),
    };
    let at = |ms: Millis| DateTime::from_timestamp_millis(ms).unwrap();
    match spec.close {
        Close::EndedEarly(_) => session.ended_at = Some(at(x)),
        Close::Cancelled(_) => session.cancelled_at = Some(at(x)),
        Close::OnTime => {}
    }
    let people: Vec<(&str, RosterRole)> = std::iter::once((CLIN, RosterRole::Clinician))
        .chain(others.iter().copied())
        .collect();

    // (recorded at, order, event)
    let mut log: Vec<(Millis, usize, NewEvent)> = Vec::new();
    let mut push = |recorded: Millis, e: NewEvent| {
        let order = log.len();
        log.push((recorded, order, e));
    };
    let event =
        |at: Millis, kind: EventKind, who: &str, role: RosterRole, conn: Option<&str>| NewEvent {
            at,
            session: session.id.to_string(),
            participant: Some(who.to_owned()),
            role: Some(role.as_str().to_owned()),
            connection: conn.map(str::to_owned),
            kind,
            reason: None,
            modality: None,
            detail: None,
        };
    let modality = |video: bool| Some(if video { "audio_video" } else { "audio_only" }.to_owned());
    let mut alive: BTreeMap<String, Vec<Interval>> = BTreeMap::new();
    let mut any = false;
    for ((who, role), conns) in people.iter().zip(&spec.people) {
        let mut t = start - 15 * MINUTE;
        for (k, c) in conns.iter().enumerate() {
            let j = t + c.gap;
            if j >= x {
                break;
            }
            any = true;
            let id = format!("{who}-{k}");
            let conn = Some(id.as_str());
            let l = j + c.life;
            push(
                j,
                NewEvent {
                    modality: modality(!c.audio_only),
                    ..event(j, EventKind::Joined, who, *role, conn)
                },
            );
            for &(offset, video) in &c.media {
                if j + offset < x {
                    push(
                        j + offset,
                        NewEvent {
                            modality: modality(video),
                            ..event(j + offset, EventKind::MediaChanged, who, *role, conn)
                        },
                    );
                }
            }
            let left = |at: Millis, why: &str| NewEvent {
                reason: Some(why.to_owned()),
                ..event(at, EventKind::Left, who, *role, conn)
            };
            // (recorded at, events) of the close the connection itself had.
            let (recorded, closing): (Millis, Vec<NewEvent>) = match c.end {
                End::Left => (l, vec![left(l, "left")]),
                End::Network => (l + 30_000, vec![left(l, "network")]),
                End::ReplacedDead => (
                    l + 20_000,
                    vec![
                        left(l, "network"),
                        event(l + 20_000, EventKind::Replaced, who, *role, conn),
                    ],
                ),
                End::ReplacedAlive => (l, vec![event(l, EventKind::Replaced, who, *role, conn)]),
                End::Crash(p) => (
                    l + 60_000,
                    vec![left(j + c.life * p / 1000, "server_restart")],
                ),
                End::Removed => (
                    l,
                    vec![
                        left(l, "removed"),
                        event(l, EventKind::Removed, who, *role, None),
                    ],
                ),
                End::ClinicianAway => (l, vec![left(l, "clinician_away")]),
            };
            let (recorded, closing, end) = if l >= x {
                // Alive when the room closed: ended by it.
                (x, vec![left(x, "session_end")], x)
            } else if recorded > x {
                // Lost, but the room closed before noticing: ended by it at
                // the last sign of life.
                (x, vec![left(l, "network")], l)
            } else {
                (recorded, closing, l)
            };
            for e in closing {
                push(recorded, e);
            }
            alive
                .entry(who.to_string())
                .or_default()
                .push(Interval::new(j, end));
            t = recorded;
            if matches!(c.end, End::Removed) && l < x {
                break;
            }
        }
    }
    if any {
        push(
            x,
            NewEvent {
                participant: None,
                role: None,
                reason: Some(why.to_owned()),
                ..event(x, EventKind::SessionClosed, "", RosterRole::Clinician, None)
            },
        );
    }
    log.sort_by_key(|(recorded, order, _)| (*recorded, *order));
    Generated {
        session,
        events: stored(log.into_iter().map(|(_, _, e)| e).collect()),
        alive,
    }
}

/// When each connection's presence was closed, replaying the ledger as the
/// report reads it: the first `left`, `removed` or `replaced` of an open
/// connection (or, without a connection, of its participant's open ones),
/// or the session's close.
fn closes(events: &[Event]) -> BTreeMap<String, Millis> {
    let mut open: BTreeMap<String, String> = BTreeMap::new();
    let mut closed = BTreeMap::new();
    for e in events.iter().map(|e| &e.event) {
        match e.kind {
            EventKind::Joined => {
                let conn = e.connection.clone().unwrap();
                open.insert(conn, e.participant.clone().unwrap());
            }
            EventKind::Left | EventKind::Removed | EventKind::Replaced => {
                let targets: Vec<String> = match &e.connection {
                    Some(c) => open
                        .contains_key(c)
                        .then(|| c.clone())
                        .into_iter()
                        .collect(),
                    None => open
                        .iter()
                        .filter(|(_, p)| Some(*p) == e.participant.as_ref())
                        .map(|(c, _)| c.clone())
                        .collect(),
                };
                for c in targets {
                    open.remove(&c);
                    closed.insert(c, e.at);
                }
            }
            EventKind::SessionClosed => {
                for (c, _) in std::mem::take(&mut open) {
                    closed.insert(c, e.at);
                }
            }
            _ => {}
        }
    }
    closed
}

fn millis(rfc3339: &str) -> Millis {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

/// Checks one session's report; returns it.
fn check_session(g: &Generated, now: DateTime<Utc>) -> Result<SessionReport, TestCaseError> {
    let r = session_report(&g.session, &g.events, None, now);
    let window = Intervals::union_of([Interval::new(
        g.session.starts_at.timestamp_millis(),
        g.session.closes_at().timestamp_millis(),
    )]);
    let spans = |who: &str| Intervals::union_of(g.alive.get(who).cloned().unwrap_or_default());
    let clinician = spans(CLIN).intersect(&window);
    let closes = closes(&g.events);
    for p in &r.participants {
        let own = spans(&p.participant_id).intersect(&window);
        let bound = if p.role == RosterRole::Clinician {
            own.total()
        } else {
            own.intersect(&clinician).total()
        };
        prop_assert!(
            p.attended_ms <= bound,
            "{}: attended {} ms, alive with a clinician {} ms",
            p.participant_id,
            p.attended_ms,
            bound
        );
        prop_assert!(p.present_seconds * 1000 <= own.total());
        for i in &p.intervals {
            let conn = i.connection.as_deref().unwrap();
            let close = closes[conn];
            prop_assert!(
                millis(&i.end) <= close,
                "{conn}: an interval ends at {} after its close at {close}",
                i.end
            );
            prop_assert!(millis(&i.start) <= millis(&i.end));
        }
    }
    Ok(r)
}

/// The week (`YYYY-Www`, Sunday start) that holds `date`: the one named by
/// the ISO week of the Monday after it (a Sunday opens the next ISO week's
/// Sunday-started week).
fn sunday_week(date: NaiveDate) -> String {
    let week = (date + Days::new(1)).iso_week();
    format!("{:04}-W{:02}", week.year(), week.week())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Issue 20's invariant.
    #[test]
    fn no_report_counts_a_second_nobody_attended(specs in prop::collection::vec(arb_spec(), 1..4)) {
        let generated: Vec<Generated> = specs
            .iter()
            .enumerate()
            .map(|(n, spec)| generate(n as u128 + 1, spec))
            .collect();
        let now = utc(2026, 1, 1, 0, 0);
        // Per session: its service date and each patient's minutes.
        let mut minutes: Vec<(NaiveDate, BTreeMap<String, i64>)> = Vec::new();
        for g in &generated {
            let r = check_session(g, now)?;
            let date = NaiveDate::parse_from_str(&r.session.service_date, "%Y-%m-%d").unwrap();
            let patients = r
                .participants
                .iter()
                .filter(|p| p.role == Patient)
                .map(|p| (p.participant_id.clone(), p.attended_minutes))
                .collect();
            minutes.push((date, patients));
        }
        let sessions: Vec<(Session, Vec<Event>)> = generated
            .iter()
            .map(|g| (g.session.clone(), g.events.clone()))
            .collect();
        let config = Config::default().attendance;
        let mut weeks: Vec<String> = minutes
            .iter()
            .flat_map(|(d, _)| [*d - Days::new(7), *d, *d + Days::new(7)])
            .map(sunday_week)
            .collect();
        weeks.sort();
        weeks.dedup();
        let mut counted: BTreeMap<String, i64> = BTreeMap::new();
        for week in &weeks {
            let r = weekly_report(&sessions, week, PROGRAM, &config, now).unwrap();
            let first = NaiveDate::parse_from_str(&r.first_date, "%Y-%m-%d").unwrap();
            let last = NaiveDate::parse_from_str(&r.last_date, "%Y-%m-%d").unwrap();
            let mut want: BTreeMap<String, i64> = BTreeMap::new();
            for (date, patients) in &minutes {
                if first <= *date && *date <= last {
                    for (id, m) in patients {
                        *want.entry(id.clone()).or_default() += m;
                    }
                }
            }
            for p in &r.patients {
                prop_assert_eq!(
                    p.minutes_total,
                    want.get(&p.participant_id).copied().unwrap_or(0),
                    "{} in {}", &p.participant_id, week
                );
                prop_assert!(p.audio_only_minutes <= p.minutes_total);
                *counted.entry(p.participant_id.clone()).or_default() += p.minutes_total;
            }
            for (id, m) in &want {
                if *m > 0 {
                    prop_assert!(r.patients.iter().any(|p| &p.participant_id == id), "{} missing from {}", id, week);
                }
            }
        }
        // Every session in exactly one week.
        let mut total: BTreeMap<String, i64> = BTreeMap::new();
        for (_, patients) in &minutes {
            for (id, m) in patients {
                *total.entry(id.clone()).or_default() += m;
            }
        }
        total.retain(|_, m| *m > 0);
        counted.retain(|_, m| *m > 0);
        prop_assert_eq!(counted, total);
    }
}
