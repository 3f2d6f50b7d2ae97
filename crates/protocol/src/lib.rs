//! Tandem's signaling protocol (v1), as types.
//!
//! Everything a browser, the load generator or any other client and the
//! server say to each other over `wss://HOST/v1/signal` is defined here and
//! nowhere else: the messages ([`message`]), the roles a roster knows
//! ([`RosterRole`]) and the stable codes of refusals and errors ([`code`]).
//! The server and the load generator both depend on this crate, so they
//! cannot drift apart, and neither needs the other to speak the protocol.
//!
//! Names and fields are a public contract (the server's docs/protocol.md):
//! add, never rename. Every enum here serialises to exactly the string the
//! contract names, and the tests pin those bytes.

pub mod code;
pub mod e2ee;
mod liveness;
pub mod message;
mod role;

pub use code::{DenialCode, ErrorCode};
pub use e2ee::{E2eeMode, E2eeState};
pub use liveness::SignOfLife;
pub use message::{
    parse, Attestation, ClientMessage, IceCandidate, IceServer, Layer, MediaKind, Participant, Pc,
    RaisedHand, ServerMessage, SessionInfo, WaitingPerson, WaitingReason, You,
};
pub use role::RosterRole;

/// A signaling connection's number on one server. A participant may have
/// several over time (a reconnect or a second device is a new connection);
/// the room and the media shards both key their state by it. It never
/// appears on the wire.
pub type ConnId = u64;
