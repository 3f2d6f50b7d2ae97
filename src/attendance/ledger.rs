//! The ledger writer: appends events durably, in one chain, in batches.
//!
//! One task owns the chain's head. Callers hand it events and wait for the
//! acknowledgement, which comes only after the transaction holding them has
//! committed with `synchronous=FULL`: an event is on disk before anyone is
//! told the fact it records. Events that arrive while a commit is under way
//! are committed together in the next one, so a burst costs one disk flush,
//! not one per event.
//!
//! When the disk refuses a write (full, read-only, failing), what happens
//! depends on what the events record:
//! - a **request** ([`Ledger::append`]: an admission, a clinician's action,
//!   a `leave`, an annotation) gets an error, and its caller does not carry
//!   it out;
//! - a **fact** ([`Ledger::record_fenced`]: media connected, a lost connection, a
//!   session reaching its end, a stop) cannot be refused: its events are
//!   kept in memory, in order, with their own times, and written first, as
//!   soon as the disk takes them again (retried every [`RETRY`]). Later
//!   events always come after them in the chain.
//!
//! [`Ledger::health`] tells whether the ledger can be written now
//! (`/healthz`, reports); [`Ledger::close`] writes what is kept before the
//! database closes and says what could not be written.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::event::{chain_hash, reason, Event, EventKind, NewEvent, GENESIS};
use crate::store::cluster::Fence;
use crate::store::{Store, StoreError};

/// The most events committed in one transaction (facts kept during an
/// outage are written together, however many).
const MAX_BATCH: usize = 1024;

/// How often kept events are retried while the disk refuses them.
pub(crate) const RETRY: Duration = Duration::from_secs(1);

/// How old the last write attempt may be before [`Ledger::health`] tries a
/// write of its own: while healthy, and while failing.
const PROBE_HEALTHY: Duration = Duration::from_secs(5);
const PROBE_FAILING: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the attendance ledger could not be written: {0}")]
    Write(String),
    #[error("the attendance ledger writer has stopped")]
    Stopped,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the ledger is not healthy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("the attendance ledger cannot be written{}: {error}", if *.pending > 0 { format!(" ({} events waiting)", .pending) } else { String::new() })]
pub struct LedgerFailure {
    /// The first failed write of this outage.
    pub since: DateTime<Utc>,
    /// The last error.
    pub error: String,
    /// Events kept in memory that are not on disk yet.
    pub pending: usize,
}

/// The outcome of recording facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// On disk; the last event's sequence number.
    Durable(i64),
    /// Kept in memory; written as soon as the disk takes it.
    Kept,
}

struct Append {
    events: Vec<NewEvent>,
    /// A fact: kept and retried rather than refused.
    keep: bool,
    /// In a cluster, the lease of the room the events are about: written
    /// only while the node still holds it (refused, and kept facts
    /// dropped, once it does not).
    fence: Option<Fence>,
    done: oneshot::Sender<Result<Recorded, String>>,
}

enum Job {
    Append(Append),
    /// Write what is kept (until the deadline), then stop: how many events
    /// could not be written.
    Close {
        deadline: Instant,
        done: oneshot::Sender<usize>,
    },
}

#[derive(Default)]
struct Health {
    /// Since when, and the last error, while writes fail.
    failing: Option<(DateTime<Utc>, String)>,
    pending: usize,
    last_attempt: Option<Instant>,
}

impl Health {
    fn note(&mut self, outcome: Result<(), &str>, pending: Option<usize>) {
        self.last_attempt = Some(Instant::now());
        if let Some(pending) = pending {
            self.pending = pending;
        }
        match outcome {
            Ok(()) => {
                if let Some((since, _)) = self.failing.take() {
                    tracing::warn!(%since, "the attendance ledger is written again");
                }
            }
            Err(error) => match &mut self.failing {
                Some((_, last)) => *last = error.to_owned(),
                None => {
                    tracing::error!(%error, "the attendance ledger cannot be written");
                    self.failing = Some((Utc::now(), error.to_owned()));
                }
            },
        }
    }

    fn state(&self) -> Result<(), LedgerFailure> {
        match (&self.failing, self.pending) {
            (None, 0) => Ok(()),
            (failing, pending) => Err(LedgerFailure {
                since: failing.as_ref().map_or_else(Utc::now, |(since, _)| *since),
                error: failing.as_ref().map_or_else(
                    || "events are waiting to be written".to_owned(),
                    |(_, error)| error.clone(),
                ),
                pending,
            }),
        }
    }
}

/// A handle to the ledger writer. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    jobs: mpsc::UnboundedSender<Job>,
    store: Store,
    health: Arc<Mutex<Health>>,
}

impl Ledger {
    /// Starts the writer on `store`'s ledger.
    pub async fn start(store: Store) -> Result<Ledger, LedgerError> {
        let head = store.ledger_head().await?;
        let (jobs, rx) = mpsc::unbounded_channel();
        let health = Arc::new(Mutex::new(Health::default()));
        tokio::spawn(write(store.clone(), head, rx, health.clone()));
        Ok(Ledger {
            jobs,
            store,
            health,
        })
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Appends `events` (in order) and returns the last one's sequence
    /// number once they are durable; an error, and nothing written, when
    /// the disk refuses them.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<i64, LedgerError> {
        self.append_fenced(events, None).await
    }

    /// [`Ledger::append`], written only while `fence` holds.
    pub(crate) async fn append_fenced(
        &self,
        events: Vec<NewEvent>,
        fence: Option<Fence>,
    ) -> Result<i64, LedgerError> {
        match self.submit(events, false, fence).await? {
            Recorded::Durable(seq) => Ok(seq),
            Recorded::Kept => unreachable!("requests are never kept"),
        }
    }

    /// Records facts: durable now, or kept in memory and written first once
    /// the disk takes them again.
    ///
    /// In a cluster, `fence` is the room's lease: once this node no longer
    /// holds it, the facts are dropped (the node that holds the room now
    /// closes what this one left open, from the presence heartbeats).
    pub(crate) async fn record_fenced(
        &self,
        events: Vec<NewEvent>,
        fence: Option<Fence>,
    ) -> Result<Recorded, LedgerError> {
        self.submit(events, true, fence).await
    }

    async fn submit(
        &self,
        events: Vec<NewEvent>,
        keep: bool,
        fence: Option<Fence>,
    ) -> Result<Recorded, LedgerError> {
        if events.is_empty() {
            return Ok(Recorded::Durable(0));
        }
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Job::Append(Append {
                events,
                keep,
                fence,
                done,
            }))
            .map_err(|_| LedgerError::Stopped)?;
        result
            .await
            .map_err(|_| LedgerError::Stopped)?
            .map_err(LedgerError::Write)
    }

    /// Writes each live connection's last sign of life, `(connection id,
    /// at in ms)`: what recovery closes presence at after a crash. Its
    /// outcome counts towards the ledger's health.
    pub(crate) async fn heartbeat(&self, beats: &[(String, i64)]) -> Result<(), StoreError> {
        let written = self.store.heartbeat(beats).await;
        if !beats.is_empty() {
            self.note_write(&written);
        }
        written
    }

    /// Notes the outcome of a write to the ledger's tables made elsewhere.
    fn note_write<E: std::fmt::Display>(&self, outcome: &Result<(), E>) {
        let error = outcome.as_ref().err().map(ToString::to_string);
        self.health
            .lock()
            .expect("ledger health")
            .note(error.as_deref().map_or(Ok(()), Err), None);
    }

    /// Whether the ledger can be written now: no kept events and a recent
    /// write that worked. When the last attempt is old, tries a write that
    /// changes nothing.
    pub(crate) async fn health(&self) -> Result<(), LedgerFailure> {
        let stale = {
            let health = self.health.lock().expect("ledger health");
            let age = if health.failing.is_some() {
                PROBE_FAILING
            } else {
                PROBE_HEALTHY
            };
            health.last_attempt.is_none_or(|t| t.elapsed() >= age)
        };
        if stale {
            let outcome = self.store.probe_write().await;
            self.note_write(&outcome);
        }
        self.health.lock().expect("ledger health").state()
    }

    /// Writes the events kept in memory, retrying until `deadline`, then
    /// stops the writer. Returns how many events could not be written (each
    /// is logged, by ids and kind: a gap in the ledger).
    pub(crate) async fn close(&self, deadline: Instant) -> usize {
        let (done, result) = oneshot::channel();
        if self.jobs.send(Job::Close { deadline, done }).is_err() {
            return 0;
        }
        result.await.unwrap_or(0)
    }
}

async fn write(
    store: Store,
    head: Option<(i64, String)>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    health: Arc<Mutex<Health>>,
) {
    let mut head = head.unwrap_or((0, GENESIS.to_owned()));
    // Facts not on disk yet, in order, with the lease they are written under.
    let mut kept: Vec<(NewEvent, Option<Fence>)> = Vec::new();
    loop {
        let first = tokio::select! {
            job = rx.recv() => match job {
                Some(job) => Some(job),
                None => break,
            },
            _ = tokio::time::sleep(RETRY), if !kept.is_empty() => None,
        };
        let mut batch = Vec::new();
        let mut close = None;
        match first {
            Some(Job::Append(append)) => batch.push(append),
            Some(Job::Close { deadline, done }) => close = Some((deadline, done)),
            None => {}
        }
        let mut count = batch.iter().map(|a| a.events.len()).sum::<usize>();
        while close.is_none() && count < MAX_BATCH {
            match rx.try_recv() {
                Ok(Job::Append(next)) => {
                    count += next.events.len();
                    batch.push(next);
                }
                Ok(Job::Close { deadline, done }) => close = Some((deadline, done)),
                Err(_) => break,
            }
        }
        if !batch.is_empty() || !kept.is_empty() {
            let started = Instant::now();
            let mut outcome = commit(&store, &mut head, &kept, &batch).await;
            // A room this node no longer holds: its events are refused (or,
            // facts, dropped), and the others are written without them.
            while let Err(Committed::Fenced(session)) = &outcome {
                let session = session.clone();
                fenced_off(&session, &mut kept, &mut batch);
                outcome = commit(&store, &mut head, &kept, &batch).await;
            }
            let outcome = outcome.map_err(|e| match e {
                Committed::Fenced(_) => unreachable!("fenced appends are taken out"),
                Committed::Failed(error) => error,
            });
            observe(started, kept.len() + count, outcome.is_ok());
            let failed = outcome.as_ref().err().cloned();
            match outcome {
                Ok(ends) => {
                    kept.clear();
                    for (append, end) in batch.into_iter().zip(ends) {
                        let _ = append.done.send(Ok(Recorded::Durable(end)));
                    }
                }
                Err(error) => {
                    for append in batch {
                        if append.keep {
                            let fence = append.fence;
                            kept.extend(append.events.into_iter().map(|e| (e, fence.clone())));
                            let _ = append.done.send(Ok(Recorded::Kept));
                        } else {
                            let _ = append.done.send(Err(error.clone()));
                        }
                    }
                }
            }
            health
                .lock()
                .expect("ledger health")
                .note(failed.as_deref().map_or(Ok(()), Err), Some(kept.len()));
        }
        if let Some((deadline, done)) = close {
            while !kept.is_empty() && Instant::now() < deadline {
                tokio::time::sleep(RETRY.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
                match commit(&store, &mut head, &kept, &[]).await {
                    Ok(_) => kept.clear(),
                    Err(Committed::Fenced(session)) => {
                        fenced_off(&session, &mut kept, &mut Vec::new())
                    }
                    Err(Committed::Failed(_)) => {}
                }
            }
            for (e, _) in &kept {
                tracing::error!(
                    at = e.at,
                    session = %e.session,
                    participant = e.participant.as_deref().unwrap_or("-"),
                    connection = e.connection.as_deref().unwrap_or("-"),
                    kind = e.kind.as_str(),
                    reason = e.reason.as_deref().unwrap_or("-"),
                    "attendance event lost: the ledger could not be written before the stop"
                );
            }
            let _ = done.send(kept.len());
            rx.close();
            // Anything still queued is refused (its sender sees the writer
            // stopped).
            while rx.try_recv().is_ok() {}
            return;
        }
    }
}

/// Why a commit did not happen.
enum Committed {
    /// This node no longer holds the room of this session.
    Fenced(String),
    Failed(String),
}

/// Takes the events of `session`, whose room this node no longer holds,
/// out of what is to be written: its requests are refused, its kept facts
/// dropped (logged by ids and kind).
fn fenced_off(session: &str, kept: &mut Vec<(NewEvent, Option<Fence>)>, batch: &mut Vec<Append>) {
    let of_session = |fence: &Option<Fence>| fence.as_ref().is_some_and(|f| f.session == session);
    kept.retain(|(e, fence)| {
        if of_session(fence) {
            tracing::warn!(
                session,
                kind = e.kind.as_str(),
                "attendance event not written: another node holds the room now"
            );
        }
        !of_session(fence)
    });
    for append in std::mem::take(batch) {
        if of_session(&append.fence) {
            tracing::warn!(
                session,
                events = append.events.len(),
                "attendance events refused: another node holds the room now"
            );
            let _ = append.done.send(Err(StoreError::Fenced {
                session: session.to_owned(),
            }
            .to_string()));
        } else {
            batch.push(append);
        }
    }
}

/// A commit of `events` events that began at `started`, for the metrics.
fn observe(started: Instant, events: usize, committed: bool) {
    use crate::metrics::{LEDGER_APPEND_DURATION, LEDGER_APPEND_FAILURES, LEDGER_BATCH_EVENTS};
    metrics::histogram!(LEDGER_APPEND_DURATION).record(started.elapsed().as_secs_f64());
    metrics::histogram!(LEDGER_BATCH_EVENTS).record(events as f64);
    if !committed {
        metrics::counter!(LEDGER_APPEND_FAILURES).increment(1);
    }
}

/// Chains `kept`, then each append's events, after `head` and commits them
/// in one transaction. Each append's last sequence number.
///
/// Another process (the CLI, another node on the same PostgreSQL) may
/// have appended since: on a failed commit, the head is read again and the
/// events chained anew. That the chain moved is no failure of the
/// database: it is retried up to [`CHAIN_MOVED_RETRIES`] times, other
/// errors 3 times.
async fn commit(
    store: &Store,
    head: &mut (i64, String),
    kept: &[(NewEvent, Option<Fence>)],
    batch: &[Append],
) -> Result<Vec<i64>, Committed> {
    let kept_events: Vec<NewEvent> = kept.iter().map(|(e, _)| e.clone()).collect();
    let mut groups: Vec<&[NewEvent]> = vec![&kept_events];
    groups.extend(batch.iter().map(|a| a.events.as_slice()));
    let mut fences: Vec<Fence> = kept
        .iter()
        .filter_map(|(_, f)| f.clone())
        .chain(batch.iter().filter_map(|a| a.fence.clone()))
        .collect();
    fences.sort_by(|a, b| (&a.session, a.epoch).cmp(&(&b.session, b.epoch)));
    fences.dedup();
    let mut outcome = Err(Committed::Failed(String::new()));
    let (mut failures, mut moved) = (0, 0);
    while failures < 3 && moved < CHAIN_MOVED_RETRIES {
        let (chained, ends, next) = chain(&groups, head.0, &head.1);
        match store.append_events_fenced(&chained, &fences).await {
            Ok(()) => {
                *head = next;
                return Ok(ends[1..].to_vec());
            }
            Err(StoreError::Fenced { session }) => return Err(Committed::Fenced(session)),
            Err(error) => {
                if matches!(error, StoreError::ChainMoved) {
                    moved += 1;
                } else {
                    failures += 1;
                }
                tracing::debug!(%error, events = chained.len(), "attendance events not written; retrying");
                outcome = Err(Committed::Failed(error.to_string()));
                match store.ledger_head().await {
                    Ok(Some(h)) => *head = h,
                    Ok(None) => *head = (0, GENESIS.to_owned()),
                    Err(_) => {}
                }
            }
        }
    }
    outcome
}

/// How often one commit re-chains after other writers appended first.
const CHAIN_MOVED_RETRIES: u32 = 100;

/// Chains `groups` after `(seq, hash)`: the events, each group's last
/// sequence number, and the new head.
fn chain(groups: &[&[NewEvent]], seq: i64, hash: &str) -> (Vec<Event>, Vec<i64>, (i64, String)) {
    let mut chained = Vec::with_capacity(groups.iter().map(|g| g.len()).sum());
    let (mut next_seq, mut next_hash) = (seq, hash.to_owned());
    let mut ends = Vec::with_capacity(groups.len());
    for group in groups {
        for event in *group {
            next_seq += 1;
            let h = chain_hash(&next_hash, next_seq, event);
            chained.push(Event {
                seq: next_seq,
                event: event.clone(),
                prev_hash: std::mem::replace(&mut next_hash, h.clone()),
                hash: h,
            });
        }
        ends.push(next_seq);
    }
    (chained, ends, (next_seq, next_hash))
}

/// After a crash or a kill, closes every presence still open in the ledger
/// at its connection's last durable heartbeat (or at its `joined` when it
/// never had one) with reason `server_restart`, never at restart time: that
/// would invent minutes. Returns how many were closed.
pub(crate) async fn recover_presence(ledger: &Ledger) -> Result<usize, LedgerError> {
    let open = ledger.store().open_presence().await?;
    let closed = close_presence(ledger, &open, None).await?;
    if closed > 0 {
        tracing::warn!(
            closed,
            "presence left open by the last run closed at its last heartbeat"
        );
    }
    ledger.store().clear_heartbeats().await?;
    Ok(closed)
}

/// In a cluster, where other nodes' rooms are live: [`recover_presence`]
/// for the sessions `left_here` says no live node holds (the rooms of this
/// node's last run, or of a node that died and whose room nobody reopened).
/// The presence heartbeats stay: the other nodes' connections use them.
pub(crate) async fn recover_presence_where(
    ledger: &Ledger,
    left_here: impl Fn(&str) -> bool,
) -> Result<usize, LedgerError> {
    let open: Vec<_> = ledger
        .store()
        .open_presence()
        .await?
        .into_iter()
        .filter(|(joined, _)| left_here(&joined.event.session))
        .collect();
    close_presence(ledger, &open, None).await
}

/// In a cluster, when a node opens a room another node held (a takeover):
/// the presence still open in that session, left by the previous holder,
/// ends at each connection's last heartbeat with reason `server_restart`,
/// written under the new holder's lease. The gap in attendance is the
/// failover's time, never more: no minute is invented.
pub(crate) async fn recover_session_presence(
    ledger: &Ledger,
    fence: Fence,
) -> Result<usize, LedgerError> {
    let open = ledger
        .store()
        .open_presence_in(Some(&fence.session))
        .await?;
    close_presence(ledger, &open, Some(fence)).await
}

/// Closes the presence `open` (each `joined` with its connection's last
/// heartbeat) at the heartbeat, reason `server_restart`.
async fn close_presence(
    ledger: &Ledger,
    open: &[(Event, Option<i64>)],
    fence: Option<Fence>,
) -> Result<usize, LedgerError> {
    let closing: Vec<NewEvent> = open
        .iter()
        .map(|(joined, heartbeat)| NewEvent {
            at: heartbeat.unwrap_or(joined.event.at).max(joined.event.at),
            kind: EventKind::Left,
            reason: Some(reason::SERVER_RESTART.to_owned()),
            modality: None,
            detail: None,
            ..joined.event.clone()
        })
        .collect();
    let closed = closing.len();
    if closed > 0 {
        ledger.append_fenced(closing, fence).await?;
    }
    Ok(closed)
}

/// The outcome of recomputing the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verification {
    /// Every event matches: how many, and the last hash (compare it with an
    /// earlier report: only an anchor kept elsewhere reveals a truncation).
    Ok { events: i64, head: String },
    /// The first event that does not match, and why.
    Broken {
        seq: i64,
        expected_seq: i64,
        problem: String,
    },
}

/// Recomputes the whole chain from the first event.
pub async fn verify(store: &Store) -> Result<Verification, StoreError> {
    let (mut expected, mut prev) = (1i64, GENESIS.to_owned());
    let mut after = 0;
    loop {
        let page = store.events_after(after, 10_000).await?;
        if page.is_empty() {
            return Ok(Verification::Ok {
                events: expected - 1,
                head: prev,
            });
        }
        for e in &page {
            let problem = if e.seq != expected {
                Some(format!(
                    "event {expected} is missing (the next stored event is {})",
                    e.seq
                ))
            } else if e.prev_hash != prev {
                Some("its previous-hash does not match the event before it".to_owned())
            } else if chain_hash(&prev, e.seq, &e.event) != e.hash {
                Some("its content does not match its hash (edited)".to_owned())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Ok(Verification::Broken {
                    seq: e.seq,
                    expected_seq: expected,
                    problem,
                });
            }
            prev = e.hash.clone();
            expected += 1;
            after = e.seq;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A ledger written by the server as it was at commit 7d60ac4 (before
    /// the protocol crate and the typed reasons): two joint sessions and a
    /// group of five driven by the load generator, then a graceful stop.
    /// Every later version must open and verify it byte for byte: the hash
    /// chain's bytes never depend on how the code spells kinds and reasons.
    const FIXTURE: &str = "tests/fixtures/ledger-7d60ac4.db";

    #[tokio::test]
    async fn a_ledger_written_by_an_earlier_version_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("tandem.db");
        std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE), &copy).unwrap();
        let store = Store::open(&copy).await.expect("the old database opens");
        assert_eq!(
            verify(&store).await.unwrap(),
            Verification::Ok {
                events: 47,
                head: "afda6b43c9b15f75015f0d87d64f80e4fb18e0a53a64483670d9bfc831d8f5b5".into(),
            }
        );
        let kinds: Vec<EventKind> = store
            .events_after(0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.event.kind)
            .collect();
        for kind in [
            EventKind::SessionOpened,
            EventKind::Admitted,
            EventKind::Attestation,
            EventKind::Joined,
            EventKind::Left,
            EventKind::SessionClosed,
        ] {
            assert!(kinds.contains(&kind), "the fixture has {kind:?} events");
        }
    }
}
