//! The attendance ledger and the IOP compliance reports (ATTENDANCE.md).
//!
//! [`event`] defines what is recorded and how it is hash-chained;
//! [`ledger`] writes it durably and verifies the chain; [`interval`] is the
//! arithmetic every number is made of; [`report`] and [`weekly`] compute the
//! session and weekly IOP reports (pure); [`export`] renders them as CSV and
//! JSON; [`service`] is the audited way to read any of it; [`chain_check`]
//! verifies the chain on a schedule.

/// The ledger's event rows are the store's ([`crate::store::event`]);
/// re-exported here, where the rules that read them live.
pub use crate::store::event;
pub(crate) mod chain_check;
pub mod export;
pub(crate) mod interval;
pub mod ledger;
pub mod report;
pub mod service;
pub mod weekly;

#[cfg(test)]
mod properties;
