//! The attendance ledger and the IOP compliance reports (ATTENDANCE.md).
//!
//! [`event`] defines what is recorded and how it is hash-chained;
//! [`ledger`] writes it durably and verifies the chain; [`interval`] is the
//! arithmetic every number is made of; [`report`] and [`weekly`] compute the
//! session and weekly IOP reports (pure); [`export`] renders them as CSV and
//! JSON; [`service`] is the audited way to read any of it.

pub mod event;
pub mod export;
pub mod interval;
pub mod ledger;
pub mod report;
pub mod service;
pub mod weekly;

#[cfg(test)]
mod properties;
