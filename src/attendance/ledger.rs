//! The ledger writer: appends events durably, in one chain, in batches.
//!
//! One task owns the chain's head. Callers hand it events and wait for the
//! acknowledgement, which comes only after the transaction holding them has
//! committed with `synchronous=FULL`: an event is on disk before anyone is
//! told the fact it records. Events that arrive while a commit is under way
//! are committed together in the next one, so a burst costs one disk flush,
//! not one per event.

use tokio::sync::{mpsc, oneshot};

use super::event::{chain_hash, reason, Event, EventKind, NewEvent, GENESIS};
use crate::store::{Store, StoreError};

/// The most events committed in one transaction.
const MAX_BATCH: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the attendance ledger could not be written: {0}")]
    Write(String),
    #[error("the attendance ledger writer has stopped")]
    Stopped,
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Append {
    events: Vec<NewEvent>,
    done: oneshot::Sender<Result<i64, String>>,
}

/// A handle to the ledger writer. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    appends: mpsc::UnboundedSender<Append>,
    store: Store,
}

impl Ledger {
    /// Starts the writer on `store`'s ledger.
    pub async fn start(store: Store) -> Result<Ledger, LedgerError> {
        let head = store.ledger_head().await?;
        let (appends, rx) = mpsc::unbounded_channel();
        tokio::spawn(write(store.clone(), head, rx));
        Ok(Ledger { appends, store })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Appends `events` (in order) and returns the last one's sequence
    /// number once they are durable.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<i64, LedgerError> {
        if events.is_empty() {
            return Ok(0);
        }
        let (done, result) = oneshot::channel();
        self.appends
            .send(Append { events, done })
            .map_err(|_| LedgerError::Stopped)?;
        result
            .await
            .map_err(|_| LedgerError::Stopped)?
            .map_err(LedgerError::Write)
    }
}

async fn write(store: Store, head: Option<(i64, String)>, mut rx: mpsc::UnboundedReceiver<Append>) {
    let (mut seq, mut hash) = head.unwrap_or((0, GENESIS.to_owned()));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let mut count = batch[0].events.len();
        while count < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => {
                    count += next.events.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        // Another process (the CLI) may have appended since: on a failed
        // commit, the head is read again and the batch chained anew.
        let mut outcome = Err(String::new());
        for _attempt in 0..3 {
            let (chained, ends, head) = chain(&batch, seq, &hash, count);
            match store.append_events(&chained).await {
                Ok(()) => {
                    (seq, hash) = head;
                    outcome = Ok(ends);
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, events = chained.len(), "attendance events not written; retrying");
                    outcome = Err(error.to_string());
                    match store.ledger_head().await {
                        Ok(Some((s, h))) => (seq, hash) = (s, h),
                        Ok(None) => (seq, hash) = (0, GENESIS.to_owned()),
                        Err(_) => {}
                    }
                }
            }
        }
        match outcome {
            Ok(ends) => {
                for (append, end) in batch.into_iter().zip(ends) {
                    let _ = append.done.send(Ok(end));
                }
            }
            Err(error) => {
                tracing::error!(%error, "attendance events not written");
                for append in batch {
                    let _ = append.done.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Chains `batch` after `(seq, hash)`: the events, each append's last
/// sequence number, and the new head.
fn chain(
    batch: &[Append],
    seq: i64,
    hash: &str,
    count: usize,
) -> (Vec<Event>, Vec<i64>, (i64, String)) {
    let mut chained = Vec::with_capacity(count);
    let (mut next_seq, mut next_hash) = (seq, hash.to_owned());
    let mut ends = Vec::with_capacity(batch.len());
    for append in batch {
        for event in &append.events {
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
pub async fn recover_presence(ledger: &Ledger) -> Result<usize, LedgerError> {
    let open = ledger.store().open_presence().await?;
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
        ledger.append(closing).await?;
        tracing::warn!(
            closed,
            "presence left open by the last run closed at its last heartbeat"
        );
    }
    ledger.store().clear_heartbeats().await?;
    Ok(closed)
}

/// The outcome of recomputing the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
