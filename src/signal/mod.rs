//! Signaling: one WebSocket connection between a client and its room.
//!
//! [`connection`] runs one socket, from the `join` check to the last
//! message: it checks the link, hands the person to their session's live
//! room ([`crate::live`]), relays what the client says to the room and to
//! the media shard, and what they decide back. The messages themselves are
//! the `tandem-protocol` crate's; the HTTP upgrade that opens the socket is
//! `http`'s. Media never passes here: it goes to the [`crate::sfu`].

mod connection;

use std::sync::Arc;

use tokio::sync::watch;

use crate::live::Rooms;
use crate::room::rate_limit::{FailedJoins, MessageRate};
use crate::schedule::Scheduler;
use crate::sfu::Sfu;

pub(crate) use connection::{run, MAX_FRAME};

/// The read buffer each socket allocates up front. Signaling is a few small
/// messages a minute (an SDP now and then), so the WebSocket library's
/// 128 KiB default would be most of a connected participant's memory:
/// 1,002 connections took 226 MiB with it (docs/benchmarks.md). Larger
/// messages still arrive whole, up to [`MAX_FRAME`].
pub(crate) const READ_BUFFER: usize = 8 * 1024;

/// What every signaling connection shares.
pub(crate) struct SignalContext {
    pub scheduler: Scheduler,
    pub sfu: Arc<Sfu>,
    pub rooms: Arc<Rooms>,
    /// In a cluster (PostgreSQL): the other nodes, the leases, the
    /// command table. `None` for a single node.
    pub(crate) cluster: Option<Arc<crate::nodes::Cluster>>,
    /// Failed joins per source address.
    pub failed_joins: std::sync::Mutex<FailedJoins>,
    /// Notified whenever a join attempt is decided (attempts waiting for
    /// their turn ask again).
    pub join_decided: tokio::sync::Notify,
    /// Each connection's message limit, as it starts.
    pub message_rate: MessageRate,
    /// The only browser origin allowed to open the socket.
    pub origin: String,
    /// Turns true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}
