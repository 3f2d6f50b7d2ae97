//! Attendance benchmarks (not tests): run with `cargo bench --bench attendance`.
//!
//! 1. Ledger throughput: many rooms appending presence events at once, each
//!    waiting for its durable acknowledgement (synchronous=FULL), as the
//!    server does. Target: at least 5,000 events per second.
//! 2. The weekly IOP report over a year of a 500-patient program (about a
//!    million events in the ledger). Target: under 2 seconds.
//!
//! Figures go to docs/benchmarks.md with the command that produced them.

use std::time::Instant;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use tandem::attendance::event::{modality, reason, EventKind, NewEvent};
use tandem::attendance::ledger::Ledger;
use tandem::attendance::service::{Attendance, Format};
use tandem::auth::RosterRole;
use tandem::config::Config;
use tandem::schedule::{RosterEntry, Session, SessionKind, SessionSettings};
use tandem::store::Store;
use uuid::Uuid;

fn person(id: String, role: RosterRole, household: Option<String>) -> RosterEntry {
    RosterEntry {
        name: id.clone(),
        id,
        role,
        household,
        mrn: None,
        revoked_at: None,
        removed_at: None,
    }
}

/// The presence of one participant in one session: ~10 events.
fn presence(session: &str, who: &RosterEntry, conn: &str, start: i64) -> Vec<NewEvent> {
    let e = |at: i64, kind: EventKind, reason: Option<&str>, modality: Option<&str>| NewEvent {
        at,
        session: session.to_owned(),
        participant: Some(who.id.clone()),
        role: Some(who.role.as_str().to_owned()),
        connection: Some(conn.to_owned()),
        kind,
        reason: reason.map(str::to_owned),
        modality: modality.map(str::to_owned),
        detail: None,
    };
    let m = 60_000;
    vec![
        e(start, EventKind::Waiting, None, None),
        e(start + 1000, EventKind::Admitted, None, None),
        e(
            start + 2000,
            EventKind::Joined,
            None,
            Some(modality::AUDIO_VIDEO),
        ),
        e(
            start + 20 * m,
            EventKind::MediaChanged,
            None,
            Some(modality::AUDIO_ONLY),
        ),
        e(
            start + 25 * m,
            EventKind::MediaChanged,
            None,
            Some(modality::AUDIO_VIDEO),
        ),
        e(start + 40 * m, EventKind::Left, Some(reason::NETWORK), None),
        e(start + 41 * m, EventKind::Waiting, None, None),
        e(start + 41 * m + 1000, EventKind::Admitted, None, None),
        e(
            start + 41 * m + 2000,
            EventKind::Joined,
            None,
            Some(modality::AUDIO_VIDEO),
        ),
        e(start + 180 * m, EventKind::Left, Some(reason::LEFT), None),
    ]
}

async fn ledger_throughput(rooms: usize, events_per_room: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("bench.db")).await.unwrap();
    let ledger = Ledger::start(store).await.unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for room in 0..rooms {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let who = person(format!("p{room}"), RosterRole::Patient, None);
            let events = presence(&format!("room-{room}"), &who, &format!("c{room}"), 0);
            for i in 0..events_per_room {
                // One event per decision, acknowledged before the next, as a room does.
                ledger
                    .append(vec![events[i % events.len()].clone()])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (rooms * events_per_room) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    println!("## Ledger throughput (durable appends, synchronous=FULL)");
    for rooms in [1usize, 50, 200] {
        let per_second = ledger_throughput(rooms, 4000 / rooms.min(40)).await;
        println!("{rooms:>4} rooms appending concurrently: {per_second:>8.0} events/s");
    }

    println!("\n## Weekly IOP report over a year of a 500-patient program");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("year.db")).await.unwrap();
    let ledger = Ledger::start(store.clone()).await.unwrap();
    let tz = chrono_tz::America::New_York;
    let year_start: DateTime<Utc> = tz
        .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    let groups = 63; // 8 patients each: 504 patients
    let started = Instant::now();
    let mut total = 0usize;
    let mut batch = Vec::new();
    for week in 0..52 {
        for day in [0i64, 2, 4] {
            for g in 0..groups {
                let starts_at = year_start
                    + Duration::weeks(week)
                    + Duration::days(day)
                    + Duration::minutes(g % 6 * 200);
                let mut roster = vec![person(
                    format!("clin-{}", g % 10),
                    RosterRole::Clinician,
                    None,
                )];
                for p in 0..8 {
                    roster.push(person(
                        format!("pt-{}", g * 8 + p),
                        RosterRole::Patient,
                        Some(format!("h{g}-{p}")),
                    ));
                }
                let session = Session {
                    id: Uuid::new_v4(),
                    title: format!("IOP group {g}"),
                    kind: SessionKind::Group,
                    starts_at,
                    ends_at: starts_at + Duration::minutes(180),
                    timezone: tz,
                    roster,
                    settings: SessionSettings {
                        auto_admit: false,
                        early_join_minutes: 15,
                        overrun_grace_minutes: 30,
                        clinician_grace_minutes: 5,
                        e2ee: Default::default(),
                    },
                    created_at: starts_at - Duration::days(7),
                    cancelled_at: None,
                    ended_at: None,
                };
                store.insert_session(&session).await.unwrap();
                let sid = session.id.to_string();
                for (i, who) in session.roster.iter().enumerate() {
                    batch.extend(presence(
                        &sid,
                        who,
                        &format!("{sid}-{i}"),
                        starts_at.timestamp_millis(),
                    ));
                }
                if batch.len() >= 20_000 {
                    total += batch.len();
                    ledger.append(std::mem::take(&mut batch)).await.unwrap();
                }
            }
        }
    }
    total += batch.len();
    ledger.append(batch).await.unwrap();
    println!(
        "generated {total} events in {:.1} s ({:.0} events/s in large batches)",
        started.elapsed().as_secs_f64(),
        total as f64 / started.elapsed().as_secs_f64()
    );
    let config = Config::default();
    let attendance = Attendance::new(ledger, config.attendance.clone(), tz);
    let now = year_start + Duration::weeks(53);
    let week = format!(
        "{}-W{:02}",
        2026,
        (year_start + Duration::weeks(30)).iso_week().week()
    );
    let mut times = Vec::new();
    for format in [Format::Json, Format::Csv, Format::Json] {
        let started = Instant::now();
        let export = attendance
            .weekly_export(&week, format, "bench", now)
            .await
            .unwrap();
        times.push(started.elapsed().as_secs_f64());
        println!(
            "weekly report {week} ({}): {} rows, {} bytes, {:.3} s",
            format.as_str(),
            export.rows,
            export.bytes.len(),
            times.last().unwrap()
        );
    }
}
