//! A live session: who may enter, who is waiting, who is in the room.
//!
//! Everything here is policy as plain functions and state machines: inputs
//! (including the current time) in, decisions out, no sockets and no clock,
//! so the rules a clinic depends on are tested exhaustively.
//! [`admission`] decides whether a link admits its holder at all;
//! [`state::Room`] runs the waiting room and the clinician's controls;
//! [`rate_limit`] slows down addresses that keep failing to join;
//! [`takeover`] reads from the ledger who was in a room another node held.

pub mod admission;
pub(crate) mod rate_limit;
pub(crate) mod state;
pub(crate) mod takeover;
