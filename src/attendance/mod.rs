//! The attendance ledger and the IOP compliance reports (ATTENDANCE.md).
//!
//! [`event`] defines what is recorded and how it is hash-chained;
//! [`interval`] is the arithmetic every number is made of.

pub mod event;
pub mod interval;
pub mod ledger;
