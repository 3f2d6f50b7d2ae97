//! `GET /v1/signal`: the HTTP upgrade that opens a signaling WebSocket
//! ([`crate::signal`] runs it from there).

use std::net::SocketAddr;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::signal::{self, MAX_FRAME, READ_BUFFER};

/// Upgrades to the signaling WebSocket. A browser page from another origin
/// is refused (403); clients without an `Origin` header (native apps, the
/// CLI, tests) are allowed.
pub(super) async fn upgrade(
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
        .on_upgrade(move |socket| signal::run(socket, context, remote.ip()))
}
