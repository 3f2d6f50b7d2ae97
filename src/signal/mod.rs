//! Signaling: the WebSocket protocol between a client and its room.
//!
//! [`message`] defines the protocol (v1); [`connection`] runs one socket,
//! from the `join` check to the last message; [`hub`] knows who is in each
//! live room so presence (`participant_joined`, `media`, ...) reaches the
//! others. Media itself never passes here: it goes to the [`crate::sfu`].

mod connection;
pub mod hub;
pub mod message;

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use crate::http::{ApiError, AppState};
use crate::schedule::Scheduler;
use crate::sfu::Sfu;

pub use connection::{JOIN_TIMEOUT, MAX_FRAME};

/// What every signaling connection shares.
pub struct SignalContext {
    pub scheduler: Scheduler,
    pub sfu: Arc<Sfu>,
    pub hub: hub::Hub,
    pub ice_servers: Vec<message::IceServer>,
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
        .on_upgrade(move |socket| connection::run(socket, context))
}
