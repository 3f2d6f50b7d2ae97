//! The last sign of life of one connection.
//!
//! Presence ends where the evidence of it ends (the server's
//! docs/compliance.md): the later of the last frame a connection's
//! signaling socket received and the last packet its peer connections
//! received. Signaling and the media shard raise it as frames and packets
//! arrive; the room reads it when it ends a presence or writes a heartbeat.
//! Like [`crate::ConnId`] it never travels on the wire; it lives here
//! because both sides of the server that see a connection's traffic (the
//! signaling connection and the media shard) depend on this crate and on
//! nothing of each other.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Milliseconds since the Unix epoch (server clock), shared by every clone.
#[derive(Debug, Clone, Default)]
pub struct SignOfLife(Arc<AtomicI64>);

impl SignOfLife {
    pub fn new(at: DateTime<Utc>) -> SignOfLife {
        SignOfLife(Arc::new(AtomicI64::new(at.timestamp_millis())))
    }

    /// Something arrived at `at`. The value never moves back.
    pub fn seen(&self, at: DateTime<Utc>) {
        // Called for every datagram; most arrive within a millisecond of
        // the one before, and a plain load is cheaper than the atomic
        // read-modify-write that would change nothing.
        let at = at.timestamp_millis();
        if self.0.load(Ordering::Relaxed) < at {
            self.0.fetch_max(at, Ordering::Relaxed);
        }
    }

    pub fn last(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0.load(Ordering::Relaxed)).unwrap_or_default()
    }
}

/// Clones of one connection's value are equal; nothing else is.
impl PartialEq for SignOfLife {
    fn eq(&self, other: &SignOfLife) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SignOfLife {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_and_never_back() {
        let t = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
        let a = SignOfLife::new(t(0));
        let b = a.clone();
        b.seen(t(5));
        a.seen(t(3));
        assert_eq!(a.last(), t(5));
        assert_eq!(a, b);
        assert_ne!(a, SignOfLife::new(t(5)));
    }
}
