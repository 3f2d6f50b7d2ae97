//! One storage test suite, run against both backends: every behaviour of
//! the store is written once, as a function of an opened database, and
//! [`on_both!`] runs it on a fresh SQLite file and on a fresh PostgreSQL
//! database (`tests/integration/helpers/postgres.rs`: one cluster per test
//! run, one database per test; skipped with a notice when PostgreSQL is
//! absent, unless `REQUIRE_POSTGRES=1`).
//!
//! Where several nodes matter (two bookings of one person at once, two
//! ledger writers, two claimers of the webhook outbox, two uses of one
//! link), the test opens a second store on the same database: a second
//! pool, as a second node would have.

use std::collections::HashSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::event::NewEvent;
use super::staff::{LinkPurpose, SignInRecord};
use super::{ExportRecord, Location, Store, StoreError};
use crate::attendance::ledger::{self, Ledger, Verification};
use crate::attendance::report::testkit;
use crate::auth::{ApiRole, RosterRole};
use crate::console::account::StaffAccount;
use crate::store::event::EventKind;
use crate::store::session::{Session, SessionKind};
use crate::store::webhooks::{Attempted, EndpointRecord};
use crate::store::Change;

#[path = "../../tests/integration/helpers/postgres.rs"]
mod postgres;

/// An opened test database and where it is (to open it again, as another
/// node would).
pub(super) struct Db {
    pub store: Store,
    location: Location,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    async fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Sqlite(dir.path().join("tandem.db"));
        Db {
            store: Store::connect(&location, false).await.unwrap(),
            location,
            _dir: Some(dir),
        }
    }

    async fn postgres(test: &str) -> Option<Db> {
        let location = Location::Postgres(postgres::database(test).await?);
        Some(Db {
            store: Store::connect(&location, false).await.unwrap(),
            location,
            _dir: None,
        })
    }

    /// The same database through a pool of its own: another node.
    async fn another_node(&self) -> Store {
        Store::connect(&self.location, false).await.unwrap()
    }
}

/// Runs each named `async fn(Db)` once on SQLite and once on PostgreSQL.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::sqlite().await).await
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = super::Db::postgres(stringify!($name)).await {
                        super::$name(db).await
                    }
                }
            )*
        }
    };
}

on_both!(
    sessions_and_rosters_round_trip,
    revocations_removals_ends_and_cancellations_are_once_only,
    api_keys_are_found_by_hash_until_revoked,
    the_ledger_chains_verifies_and_exports_are_audited,
    the_ledger_refuses_updates_and_deletes,
    two_ledger_writers_never_fork_the_chain,
    heartbeats_never_move_back,
    one_person_cannot_be_double_booked_by_two_nodes_at_once,
    a_series_cancels_its_future_sessions,
    people_and_availability,
    staff_links_and_totp_codes_are_used_once_even_by_two_nodes,
    console_sessions_and_the_sign_in_audit,
    sign_in_failures_count_alike_on_every_node,
    finished_webhook_deliveries_are_purged_after_their_keep_and_pending_ones_never,
    a_rotated_webhook_secret_signs_next_to_the_new_one_until_its_time,
    webhook_events_ride_with_their_facts_and_two_claimers_never_share_one,
);

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn couple(n: u128, starts: &str) -> Session {
    testkit::session(
        n,
        SessionKind::Couple,
        t(starts),
        50,
        chrono_tz::UTC,
        &[("p1", RosterRole::Patient), ("p2", RosterRole::Partner)],
    )
}

async fn sessions_and_rosters_round_trip(db: Db) {
    let store = db.store;
    let mut session = couple(1, "2030-03-02T15:00:00Z");
    session.roster[1].household = Some("h1".into());
    session.roster[1].mrn = Some("MRN-1".into());
    store.insert_session(&session).await.unwrap();
    assert_eq!(
        store.session(session.id).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(store.session(Uuid::from_u128(99)).await.unwrap(), None);
    let later = couple(2, "2030-03-03T15:00:00Z");
    store.insert_session(&later).await.unwrap();
    let all = store.sessions_between(None, None, 10).await.unwrap();
    assert_eq!(all, vec![session.clone(), later.clone()]);
    let first_day = store
        .sessions_between(None, Some(t("2030-03-03T00:00:00Z")), 10)
        .await
        .unwrap();
    assert_eq!(first_day, vec![session]);
    // A second session with the same id is refused, and nothing of it stays.
    let mut clash = later.clone();
    clash.title = "other".into();
    assert!(store.insert_session(&clash).await.is_err());
    assert_eq!(store.session(later.id).await.unwrap(), Some(later));
}

async fn revocations_removals_ends_and_cancellations_are_once_only(db: Db) {
    let store = db.store;
    let session = couple(1, "2030-03-02T15:00:00Z");
    store.insert_session(&session).await.unwrap();
    let at = t("2030-03-02T15:10:00Z");
    let revoke = |p: &'static str, at| store.revoke_participant(session.id, p, at);
    assert_eq!(revoke("p1", at).await.unwrap(), Change::Done);
    assert_eq!(
        revoke("p1", at + Duration::minutes(1)).await.unwrap(),
        Change::AlreadyDone
    );
    assert_eq!(revoke("nobody", at).await.unwrap(), Change::NotFound);
    store.mark_removed(session.id, "p2", at).await.unwrap();
    store
        .mark_removed(session.id, "p2", at + Duration::minutes(5))
        .await
        .unwrap();
    store.end_session(session.id, at).await.unwrap();
    let stored = store.session(session.id).await.unwrap().unwrap();
    assert_eq!(stored.member("p1").unwrap().revoked_at, Some(at));
    assert_eq!(
        stored.member("p2").unwrap().removed_at,
        Some(at),
        "the first removal stands"
    );
    assert_eq!(stored.ended_at, Some(at));
    assert_eq!(
        store.cancel_session(session.id, at).await.unwrap(),
        Change::Done
    );
    assert_eq!(
        store.cancel_session(session.id, at).await.unwrap(),
        Change::AlreadyDone
    );
    assert_eq!(
        store.cancel_session(Uuid::from_u128(7), at).await.unwrap(),
        Change::NotFound
    );
}

async fn api_keys_are_found_by_hash_until_revoked(db: Db) {
    let store = db.store;
    let now = Utc.timestamp_millis_opt(1_900_000_000_000).unwrap();
    let key = "tdm_test_key";
    let record = store
        .insert_new_api_key(key, ApiRole::Metrics, "prometheus", now)
        .await
        .unwrap();
    let hash = crate::auth::api_key::hash(key);
    assert_eq!(
        store.active_api_key(&hash).await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(store.api_keys().await.unwrap(), vec![record.clone()]);
    assert!(store.revoke_api_key(record.id, now).await.unwrap());
    assert!(!store.revoke_api_key(record.id, now).await.unwrap());
    assert_eq!(store.active_api_key(&hash).await.unwrap(), None);
    assert_eq!(store.api_keys().await.unwrap()[0].revoked_at, Some(now));
}

fn knock(session: &str, at: i64) -> NewEvent {
    NewEvent {
        at,
        session: session.into(),
        participant: Some("p1".into()),
        role: Some("patient".into()),
        connection: Some(format!("b-{at}")),
        kind: EventKind::Waiting,
        reason: None,
        modality: None,
        detail: Some(serde_json::json!({"state": "NY"})),
    }
}

async fn the_ledger_chains_verifies_and_exports_are_audited(db: Db) {
    let store = db.store;
    let ledger = Ledger::start(store.clone()).await.unwrap();
    for i in 0..5 {
        let seq = ledger
            .append(vec![knock("s-1", 1_000 + i), knock("s-2", 1_000 + i)])
            .await
            .unwrap();
        assert_eq!(seq, 2 * i + 2);
    }
    let events = store.session_events("s-1").await.unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(events[0].event, knock("s-1", 1_000));
    assert_eq!(store.events_after(8, 100).await.unwrap().len(), 2);
    match ledger::verify(&store).await.unwrap() {
        Verification::Ok { events, head } => {
            assert_eq!(events, 10);
            assert_eq!(Some((10, head)), store.ledger_head().await.unwrap());
        }
        broken => panic!("{broken:?}"),
    }
    let record = ExportRecord {
        id: 0,
        at: 2_000,
        actor: "api:key-1".into(),
        what: "attendance".into(),
        filter: "session=s-1".into(),
        format: "csv".into(),
        rows: 5,
        sha256: "ab".repeat(32),
    };
    store.record_export(&record).await.unwrap();
    store.record_export(&record).await.unwrap();
    let exports = store.exports().await.unwrap();
    assert_eq!(exports.len(), 2);
    assert!(exports[0].id < exports[1].id);
    assert_eq!(
        ExportRecord {
            id: 0,
            ..exports[0].clone()
        },
        record
    );
}

async fn the_ledger_refuses_updates_and_deletes(db: Db) {
    let store = db.store;
    let ledger = Ledger::start(store.clone()).await.unwrap();
    ledger.append(vec![knock("s-1", 1_000)]).await.unwrap();
    for sql in [
        "UPDATE attendance_events SET at = at + 1",
        "DELETE FROM attendance_events",
    ] {
        let error = sqlx::query(sql).execute(&store.pool).await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    assert_eq!(store.events_after(0, 10).await.unwrap().len(), 1);
    assert!(matches!(
        ledger::verify(&store).await.unwrap(),
        Verification::Ok { events: 1, .. }
    ));
}

async fn two_ledger_writers_never_fork_the_chain(db: Db) {
    let other = db.another_node().await;
    // Two writers that both believe the ledger empty: one appends, the
    // other is told the chain moved and writes nothing.
    let first = super::event::Event {
        seq: 1,
        hash: super::event::chain_hash(super::event::GENESIS, 1, &knock("a", 1)),
        prev_hash: super::event::GENESIS.into(),
        event: knock("a", 1),
    };
    let mut second = first.clone();
    second.event = knock("b", 2);
    second.hash = super::event::chain_hash(super::event::GENESIS, 1, &second.event);
    let (a, b) = tokio::join!(
        db.store.append_events(std::slice::from_ref(&first)),
        other.append_events(std::slice::from_ref(&second))
    );
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one of two forks is written: {a:?} {b:?}"
    );
    let lost = a.err().or(b.err()).unwrap();
    assert!(matches!(lost, StoreError::ChainMoved), "{lost}");

    // Two nodes' ledgers appending at once: every event is written once,
    // and the one chain verifies.
    let ledgers = [
        Ledger::start(db.store.clone()).await.unwrap(),
        Ledger::start(other.clone()).await.unwrap(),
    ];
    let writes = ledgers.iter().enumerate().flat_map(|(n, ledger)| {
        (0..20).map(move |i| ledger.append(vec![knock(&format!("node-{n}"), i)]))
    });
    let results = futures_util::future::join_all(writes).await;
    let seqs: HashSet<i64> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(
        seqs.len(),
        40,
        "every append got a sequence number of its own"
    );
    match ledger::verify(&db.store).await.unwrap() {
        Verification::Ok { events, .. } => assert_eq!(events, 41),
        broken => panic!("{broken:?}"),
    }
}

async fn heartbeats_never_move_back(db: Db) {
    let store = db.store;
    let ledger = Ledger::start(store.clone()).await.unwrap();
    let mut joined = knock("s-1", 1_000);
    joined.kind = EventKind::Joined;
    joined.connection = Some("b-1".into());
    ledger.append(vec![joined]).await.unwrap();
    store.heartbeat(&[("b-1".into(), 5_000)]).await.unwrap();
    store.heartbeat(&[("b-1".into(), 3_000)]).await.unwrap();
    let open = store.open_presence().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].1, Some(5_000));
    store.probe_write().await.unwrap();
    store.clear_heartbeats().await.unwrap();
    assert_eq!(store.open_presence().await.unwrap()[0].1, None);
}

async fn one_person_cannot_be_double_booked_by_two_nodes_at_once(db: Db) {
    let other = db.another_node().await;
    let now = t("2030-03-01T00:00:00Z");
    for round in 0..5u128 {
        let starts = format!("2030-03-{:02}T15:00:00Z", 2 + round);
        // The same patient, the same hour, through two nodes at once.
        let a = couple(100 + 2 * round, &starts);
        let b = couple(101 + 2 * round, &starts);
        let (ra, rb) = tokio::join!(
            db.store
                .place_sessions(std::slice::from_ref(&a), None, false, now),
            other.place_sessions(std::slice::from_ref(&b), None, false, now)
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(
            ra.is_empty() != rb.is_empty(),
            "exactly one booking of the hour succeeds: {ra:?} {rb:?}"
        );
        let clash = ra.first().or(rb.first()).unwrap();
        assert!(["c1", "p1", "p2"].contains(&clash.participant.as_str()));
    }
    let busy = db
        .store
        .busy(
            &["p1".into()],
            t("2030-03-01T00:00:00Z"),
            t("2030-04-01T00:00:00Z"),
            now,
        )
        .await
        .unwrap();
    assert_eq!(busy.len(), 5, "one session a day, never two");
    // Over on purpose: both are stored.
    let over = couple(200, "2030-03-02T15:00:00Z");
    assert!(db
        .store
        .place_sessions(std::slice::from_ref(&over), None, true, now)
        .await
        .unwrap()
        .is_empty());
    assert!(db.store.placements(&[over.id]).await.unwrap()[&over.id].allow_overlap);
}

async fn a_series_cancels_its_future_sessions(db: Db) {
    let store = db.store;
    let now = t("2030-03-01T00:00:00Z");
    let series = super::placement::SeriesRecord {
        id: Uuid::from_u128(500),
        title: "Weekly".into(),
        kind: "couple".into(),
        timezone: "UTC".into(),
        rrule: "FREQ=WEEKLY;COUNT=3".into(),
        first_starts_at: "2030-03-02T15:00:00".into(),
        duration_minutes: 50,
        created_at: now,
        cancelled_at: None,
    };
    let sessions: Vec<Session> = (0..3)
        .map(|w| couple(510 + w, &format!("2030-03-{:02}T15:00:00Z", 2 + 7 * w)))
        .collect();
    assert!(store
        .place_sessions(&sessions, Some(&series), false, now)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.series(series.id).await.unwrap(), Some(series.clone()));
    assert_eq!(store.series_sessions(series.id).await.unwrap().len(), 3);
    let mut moved = sessions[2].clone();
    moved.starts_at += Duration::hours(1);
    moved.ends_at += Duration::hours(1);
    assert!(store
        .update_sessions(std::slice::from_ref(&moved), false, false, now)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.placements(&[moved.id]).await.unwrap()[&moved.id].moved_at,
        Some(now)
    );
    let cancelled = store
        .cancel_series(series.id, t("2030-03-05T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(cancelled, vec![sessions[1].id, moved.id]);
    let upcoming = store
        .person_sessions("p1", t("2030-03-01T00:00:00Z"), 10)
        .await
        .unwrap();
    assert_eq!(upcoming.len(), 1, "the one before the cancellation");
}

async fn people_and_availability(db: Db) {
    let store = db.store;
    let now = t("2030-03-01T00:00:00Z");
    let mut person = super::people::Person {
        id: "p1".into(),
        name: "Pat".into(),
        role: RosterRole::Patient,
        timezone: "America/New_York".into(),
        household: None,
        mrn: Some("MRN-1".into()),
        created_at: now,
        updated_at: now,
    };
    assert!(store.put_person(&person).await.unwrap());
    person.name = "Pat B".into();
    assert!(!store.put_person(&person).await.unwrap());
    assert_eq!(store.person("p1").await.unwrap(), Some(person));
    assert!(store
        .set_availability("p1", "{\"weekly\":[]}", now)
        .await
        .unwrap());
    let found = store
        .availability(&["p1".into(), "nobody".into()])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found["p1"], "{\"weekly\":[]}");
}

fn account(email: &str) -> StaffAccount {
    StaffAccount {
        id: Uuid::new_v4(),
        email: email.into(),
        name: "Dr Who".into(),
        roles: vec![ApiRole::Admin],
        roster_id: None,
        password_hash: None,
        totp_secret: None,
        totp_last_step: None,
        created_at: t("2030-03-01T00:00:00Z"),
        disabled_at: None,
    }
}

async fn staff_links_and_totp_codes_are_used_once_even_by_two_nodes(db: Db) {
    let other = db.another_node().await;
    let store = &db.store;
    let now = t("2030-03-01T00:00:00Z");
    let admin = account("admin@clinic.example");
    assert!(store.insert_staff(&admin).await.unwrap());
    assert!(!store
        .insert_staff(&account("admin@clinic.example"))
        .await
        .unwrap());
    assert_eq!(
        store.staff_by_email("admin@clinic.example").await.unwrap(),
        Some(admin.clone())
    );
    for round in 0..5 {
        let token = format!("link-{round}");
        store
            .insert_staff_link(
                &token,
                admin.id,
                LinkPurpose::Setup,
                now,
                now + Duration::hours(1),
            )
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            store.use_staff_link(&token, LinkPurpose::Setup, now),
            other.use_staff_link(&token, LinkPurpose::Setup, now)
        );
        let uses: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
        assert_eq!(uses, vec![admin.id], "a link works once");
        // The same 30-second step, typed on two nodes at once.
        let step = 1_000 + round;
        let (a, b) = tokio::join!(
            store.use_totp_step(admin.id, step),
            other.use_totp_step(admin.id, step)
        );
        assert!(a.unwrap() != b.unwrap(), "a code works once");
    }
    assert!(
        !store.use_totp_step(admin.id, 1_000).await.unwrap(),
        "never an older step"
    );
    let expired = "expired";
    store
        .insert_staff_link(expired, admin.id, LinkPurpose::SignIn, now, now)
        .await
        .unwrap();
    assert_eq!(
        store
            .use_staff_link(expired, LinkPurpose::SignIn, now)
            .await
            .unwrap(),
        None
    );
}

async fn console_sessions_and_the_sign_in_audit(db: Db) {
    use crate::console::session::{ConsoleSession, Stage};
    let store = db.store;
    let now = t("2030-03-01T00:00:00Z");
    let admin = account("admin@clinic.example");
    store.insert_staff(&admin).await.unwrap();
    let session = ConsoleSession {
        id: Uuid::new_v4(),
        account_id: admin.id,
        csrf_token: "csrf".into(),
        stage: Stage::SecondFactor,
        created_at: now,
        last_seen_at: now,
        ended_at: None,
    };
    store
        .insert_console_session(&session, "cookie-hash")
        .await
        .unwrap();
    store
        .promote_console_session(session.id, now + Duration::seconds(5))
        .await
        .unwrap();
    store
        .touch_console_session(session.id, now + Duration::seconds(9))
        .await
        .unwrap();
    let stored = store.console_session("cookie-hash").await.unwrap().unwrap();
    assert_eq!(stored.stage, Stage::SignedIn);
    assert_eq!(stored.last_seen_at, now + Duration::seconds(9));
    assert!(store.end_console_session(session.id, now).await.unwrap());
    assert!(!store.end_console_session(session.id, now).await.unwrap());
    for (i, event) in ["failed", "signed_in"].iter().enumerate() {
        store
            .record_sign_in(&SignInRecord {
                at: now + Duration::seconds(i as i64),
                account_id: Some(admin.id),
                email: admin.email.clone(),
                address: "192.0.2.1".into(),
                event: (*event).into(),
            })
            .await
            .unwrap();
    }
    let audit = store.sign_in_audit(10).await.unwrap();
    let events: Vec<_> = audit.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["signed_in", "failed"], "newest first");
}

/// A receiver subscribed to `events`, then a couple session (its own
/// people) for each of `numbers`, scheduled at `now`.
async fn scheduled_for_a_receiver(
    store: &Store,
    events: &[&str],
    numbers: std::ops::Range<u128>,
    now: DateTime<Utc>,
) -> (EndpointRecord, Vec<Session>) {
    let hook = crate::store::webhooks::test_endpoint(events);
    store.insert_webhook_endpoint(&hook).await.unwrap();
    let sessions: Vec<Session> = numbers
        .map(|n| {
            let mut s = couple(n, "2030-03-02T15:00:00Z");
            for p in &mut s.roster {
                p.id = format!("{}-{n}", p.id);
            }
            s
        })
        .collect();
    assert!(store
        .place_sessions(&sessions, None, false, now)
        .await
        .unwrap()
        .is_empty());
    (hook, sessions)
}

async fn webhook_events_ride_with_their_facts_and_two_claimers_never_share_one(db: Db) {
    let other = db.another_node().await;
    let store = &db.store;
    let now = t("2030-03-01T00:00:00Z");
    // Twenty sessions, each its own outbox order.
    let (hook, sessions) = scheduled_for_a_receiver(
        store,
        &["session.scheduled", "session.cancelled"],
        300..320,
        now,
    )
    .await;
    let at = now.timestamp_millis();
    let hold = 60_000;
    let (a, b) = tokio::join!(
        store.claim_webhook_deliveries("node-a", at, hold, 64),
        other.claim_webhook_deliveries("node-b", at, hold, 64)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let ids_a: HashSet<i64> = a.iter().map(|d| d.id).collect();
    let ids_b: HashSet<i64> = b.iter().map(|d| d.id).collect();
    assert!(ids_a.is_disjoint(&ids_b), "no delivery is claimed twice");
    assert_eq!(
        ids_a.len() + ids_b.len(),
        20,
        "and every due one is claimed"
    );
    // Claimed: nobody else gets them until the hold runs out.
    assert!(store
        .claim_webhook_deliveries("node-c", at + 1, hold, 64)
        .await
        .unwrap()
        .is_empty());
    // A node that restarts takes back what it held, and only that.
    assert_eq!(
        store.release_webhook_claims_of("node-a").await.unwrap(),
        ids_a.len() as u64
    );
    let back = other
        .claim_webhook_deliveries("node-b", at + 1, hold, 64)
        .await
        .unwrap();
    let ids_back: HashSet<i64> = back.iter().map(|d| d.id).collect();
    assert_eq!(
        ids_back, ids_a,
        "node-a's claims, released, are claimable; node-b's are not"
    );
    let first = a.first().or(b.first()).unwrap();
    store
        .finish_webhook_attempt(first.id, &hook.id, &Attempted::Delivered, Some(200), at)
        .await
        .unwrap();
    let again = store
        .claim_webhook_deliveries("node-c", at + 1 + hold, hold, 64)
        .await
        .unwrap();
    assert_eq!(
        again.len(),
        19,
        "a claim that ran out is claimed again; a delivered one is not"
    );
    // The cancellation of a session is written with it, and waits for the
    // session's earlier event.
    assert_eq!(
        store.cancel_session(sessions[0].id, now).await.unwrap(),
        Change::Done
    );
    let kept: i64 = sqlx::query("SELECT COUNT(*) FROM webhook_events")
        .fetch_one(&store.pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 21);
}

async fn sign_in_failures_count_alike_on_every_node(db: Db) {
    use crate::console::throttle::Locked;
    let (a, b) = (&db.store, &db.another_node().await);
    let here: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let there: std::net::IpAddr = "10.0.0.2".parse().unwrap();
    let at = |s: &str| t(&format!("2030-03-02T{s}Z"));

    // Four failures through one node, the fifth through another: locked,
    // on both, from anywhere, for 15 minutes.
    for i in 0..4 {
        let locked = a
            .sign_in_failed("ann@x.example", here, at(&format!("09:00:0{i}")))
            .await
            .unwrap();
        assert_eq!(locked, None);
    }
    let locked = b
        .sign_in_failed("ann@x.example", there, at("09:00:05"))
        .await
        .unwrap();
    let until = at("09:15:05");
    assert_eq!(locked, Some(Locked::Account { until }));
    for node in [a, b] {
        assert_eq!(
            node.sign_in_lockout("ann@x.example", there, at("09:10:00"))
                .await
                .unwrap(),
            Some(Locked::Account { until })
        );
    }
    assert_eq!(
        a.sign_in_lockout("bob@x.example", here, at("09:10:00"))
            .await
            .unwrap(),
        None,
        "another account from the same address is not locked"
    );
    assert_eq!(
        b.sign_in_lockout("ann@x.example", here, until)
            .await
            .unwrap(),
        None,
        "the lock-out ends after 15 minutes"
    );

    // Failures spread over more than 15 minutes never reach five.
    for minute in 0..10 {
        let locked = a
            .sign_in_failed(
                "cy@x.example",
                there,
                at(&format!("10:{:02}:00", minute * 4)),
            )
            .await
            .unwrap();
        assert_eq!(locked, None, "minute {}", minute * 4);
    }

    // An administrator's reset (or a success) clears the count and the
    // lock-out everywhere.
    for _ in 0..5 {
        a.sign_in_failed("dee@x.example", here, at("11:00:00"))
            .await
            .unwrap();
    }
    assert!(b
        .sign_in_lockout("dee@x.example", there, at("11:01:00"))
        .await
        .unwrap()
        .is_some());
    b.sign_in_cleared("dee@x.example").await.unwrap();
    assert_eq!(
        a.sign_in_lockout("dee@x.example", there, at("11:01:00"))
            .await
            .unwrap(),
        None
    );

    // Five failures at the same moment through two nodes: none is lost.
    let failures = (0..5).map(|i| {
        let node = if i % 2 == 0 { a } else { b };
        node.sign_in_failed("eve@x.example", there, at("12:00:00"))
    });
    let results = futures_util::future::join_all(failures).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(
        a.sign_in_lockout("eve@x.example", here, at("12:00:01"))
            .await
            .unwrap()
            .is_some(),
        "five concurrent failures lock the account"
    );

    // One address guessing twenty accounts is paused, through any node.
    let guesser: std::net::IpAddr = "10.0.0.9".parse().unwrap();
    let mut last = None;
    for i in 0..20 {
        let node = if i % 2 == 0 { a } else { b };
        last = node
            .sign_in_failed(&format!("u{i}@x.example"), guesser, at("13:00:00"))
            .await
            .unwrap();
    }
    assert_eq!(
        last,
        Some(Locked::Address {
            until: at("13:15:00")
        })
    );
    assert!(matches!(
        b.sign_in_lockout("new@x.example", guesser, at("13:01:00"))
            .await
            .unwrap(),
        Some(Locked::Address { .. })
    ));
}

async fn finished_webhook_deliveries_are_purged_after_their_keep_and_pending_ones_never(db: Db) {
    let store = &db.store;
    let now = t("2030-03-01T00:00:00Z");
    let (hook, _) = scheduled_for_a_receiver(store, &["session.scheduled"], 400..404, now).await;
    let at = now.timestamp_millis();
    let mut due = store
        .claim_webhook_deliveries("node-a", at, 60_000, 64)
        .await
        .unwrap();
    due.sort_by_key(|d| d.id);
    assert_eq!(due.len(), 4);
    // The oldest two finish (one delivered, one failed for good); the
    // others are still being retried.
    let outcomes = [
        Attempted::Delivered,
        Attempted::Failed {
            error: "HTTP 500".into(),
        },
        Attempted::Retry {
            at: at + 1_000,
            error: "HTTP 503".into(),
        },
        Attempted::Retry {
            at: at + 1_000,
            error: "timed out".into(),
        },
    ];
    for (d, outcome) in due.iter().zip(&outcomes) {
        store
            .finish_webhook_attempt(d.id, &hook.id, outcome, Some(500), at)
            .await
            .unwrap();
    }
    let count = |table: &'static str| async move {
        sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&store.pool)
            .await
            .unwrap()
            .get::<i64, _>(0)
    };
    // Nothing finished before the cutoff yet: nothing goes.
    assert_eq!(
        store.purge_finished_webhook_deliveries(at).await.unwrap(),
        0
    );
    assert_eq!(count("webhook_deliveries").await, 4);
    // Past their keep: the finished two go, with their events; the ones
    // still being retried stay, and stay due.
    assert_eq!(
        store
            .purge_finished_webhook_deliveries(at + 1)
            .await
            .unwrap(),
        2
    );
    assert_eq!(count("webhook_deliveries").await, 2);
    assert_eq!(count("webhook_events").await, 2);
    let left = store
        .claim_webhook_deliveries("node-a", at + 1_000, 60_000, 64)
        .await
        .unwrap();
    let left: HashSet<i64> = left.iter().map(|d| d.id).collect();
    assert_eq!(left, HashSet::from([due[2].id, due[3].id]));
    // Purging again changes nothing.
    assert_eq!(
        store
            .purge_finished_webhook_deliveries(at + 1)
            .await
            .unwrap(),
        0
    );
}

async fn a_rotated_webhook_secret_signs_next_to_the_new_one_until_its_time(db: Db) {
    let store = &db.store;
    let now = t("2030-03-01T00:00:00Z");
    let (hook, _) = scheduled_for_a_receiver(store, &["session.scheduled"], 500..501, now).await;
    let at = now.timestamp_millis();
    let until = at + 3_600_000;
    assert!(store
        .rotate_webhook_secret(&hook.id, "whsec_bmV3", Some(until), at)
        .await
        .unwrap());
    assert!(!store
        .rotate_webhook_secret("no-such-endpoint", "whsec_bmV3", None, at)
        .await
        .unwrap());
    let due = store
        .claim_webhook_deliveries("node-a", at, 1, 64)
        .await
        .unwrap();
    assert_eq!(due[0].secret, "whsec_bmV3");
    assert_eq!(
        due[0].previous_secret.as_deref(),
        Some(hook.secret.as_str())
    );
    // Past its time the old secret signs no more.
    let later = store
        .claim_webhook_deliveries("node-a", until, 1, 64)
        .await
        .unwrap();
    assert_eq!(later[0].previous_secret, None);
    // An edit of the endpoint keeps the secret.
    let mut edited = store.webhook_endpoint(&hook.id).await.unwrap().unwrap();
    edited.description = "EHR, second site".into();
    edited.secret = "whsec_c3RhbGU=".into();
    assert!(store.update_webhook_endpoint(&edited).await.unwrap());
    let kept = store.webhook_endpoint(&hook.id).await.unwrap().unwrap();
    assert_eq!(kept.secret, "whsec_bmV3");
    assert_eq!(kept.description, "EHR, second site");
}
