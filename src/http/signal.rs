//! `GET /v1/signal`: the HTTP upgrade that opens a signaling WebSocket
//! ([`crate::signal`] runs it from there).

use std::net::SocketAddr;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::signal::{self, MAX_FRAME, READ_BUFFER};

/// Upgrades to the signaling WebSocket. A browser page from another origin
/// is refused (403); clients without an `Origin` header (native apps, the
/// CLI, tests) are allowed.
#[utoipa::path(get, path = "/v1/signal", tag = "signaling",
    description = "Upgrades to the signaling WebSocket (`Upgrade: websocket`; RFC 6455, or RFC 8441 over HTTP/2). \
The first message is `join` with the invite token; the protocol is in docs/protocol.md. No API key: the invite is the credential.",
    security(()),
    responses((status = 101, description = "Switching protocols: the WebSocket is open"),
              (status = 403, description = "A page from another origin", body = ErrorBody),
              (status = 400, description = "Not a WebSocket upgrade", body = ErrorBody),
              (status = 405, description = "Over HTTP/2 a WebSocket opens with an extended CONNECT (RFC 8441)", body = ErrorBody),
              (status = 426, description = "The connection cannot be upgraded", body = ErrorBody)))]
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
