//! Webhooks: signed, at-least-once notices of what happened, for the
//! clinic's EHR and pagers (docs/webhooks.md).
//!
//! Every event is written to a durable outbox in the same database
//! transaction as the fact it reports, so a crash can lose neither; a
//! worker on its own task delivers the outbox, so a slow or dead receiver
//! never delays a room. The rules (which events exist and what they carry,
//! how a body is signed, when to try again) are pure functions here; the
//! worker is the only part that does I/O.

pub(crate) mod endpoint;
mod finalized;
pub(crate) mod retry;
pub(crate) mod signing;
pub(crate) mod worker;

pub(crate) use crate::store::outbox::EventType;
