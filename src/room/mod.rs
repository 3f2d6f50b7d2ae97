//! A live session: who may enter, who is waiting, who is in the room.
//!
//! Everything here is policy as plain functions and state machines: inputs
//! (including the current time) in, decisions out, no sockets and no clock,
//! so the rules a clinic depends on are tested exhaustively.

pub mod admission;
