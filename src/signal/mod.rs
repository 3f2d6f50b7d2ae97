//! Signaling: the WebSocket protocol between a client and its room.
//!
//! [`message`] defines the protocol (v1); [`connection`] runs one socket,
//! from the `join` check to the last message; [`rooms`] runs each live
//! room's state machine ([`crate::room::state`]) and carries out its
//! decisions. Media itself never passes here: it goes to the [`crate::sfu`].

mod connection;
pub mod message;
pub mod rooms;

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use tokio::sync::watch;

use crate::http::{ApiError, AppState};
use crate::schedule::Scheduler;
use crate::sfu::Sfu;

pub use connection::{JOIN_TIMEOUT, MAX_FRAME};

/// The read buffer each socket allocates up front. Signaling is a few small
/// messages a minute (an SDP now and then), so the WebSocket library's
/// 128 KiB default would be most of a connected participant's memory:
/// 1,002 connections took 226 MiB with it (docs/benchmarks.md). Larger
/// messages still arrive whole, up to [`MAX_FRAME`].
const READ_BUFFER: usize = 8 * 1024;

/// What every signaling connection shares.
pub struct SignalContext {
    pub scheduler: Scheduler,
    pub sfu: Arc<Sfu>,
    pub rooms: Arc<rooms::Rooms>,
    /// Failed joins per source address.
    pub failed_joins: std::sync::Mutex<crate::room::rate_limit::FailedJoins>,
    /// The only browser origin allowed to open the socket.
    pub origin: String,
    /// Turns true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// `GET /v1/signal`: upgrades to the signaling WebSocket. A browser page
/// from another origin is refused (403); clients without an `Origin` header
/// (native apps, the CLI, tests) are allowed.
pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let context = state.signal.clone();
    if let Some(origin) = headers.get(header::ORIGIN) {
        if origin.as_bytes() != context.origin.as_bytes() {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "signaling is only available to pages served by this server",
            )
            .into_response();
        }
    }
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| connection::run(socket, context, remote.ip()))
}
