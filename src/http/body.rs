//! Two layers that keep every answer whole and in the API's shape.
//!
//! [`read_first`] reads a request's body (up to [`BODY_LIMIT`]) before the
//! request is routed. A handler that refuses early (a 401 before the body
//! of a POST was looked at) would otherwise drop the unread body, and on
//! HTTP/2 dropping a body whose response has not been sent yet resets the
//! stream (`RST_STREAM(CANCEL)`): the client gets a broken stream instead
//! of the 401. A body over the limit is refused with 413, and what is left
//! of it is read and thrown away (up to [`DRAIN_LIMIT`]) before the 413 is
//! sent, so that no stream is reset under an answer; past that the rest is
//! kept unread until the 413 has been sent, so that HTTP/2 at least ends
//! the stream with `NO_ERROR` ("answered early"), not `CANCEL`.
//!
//! [`json_errors`] gives every error the API's JSON shape, including those
//! that the framework's extractors produce as plain text (a query string
//! that cannot be read, a wrong method, a WebSocket upgrade without its
//! headers).

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use super::ApiError;

/// Request bodies larger than this are refused with 413 (a 20-person
/// roster is about 4 KiB, an annotation at most a few).
pub(crate) const BODY_LIMIT: usize = 256 * 1024;

/// An error body longer than this is not rewritten (it is not one of the
/// framework's one-line rejections).
const REWRITE_LIMIT: usize = 4 * 1024;

/// How much of a body over the limit is read and thrown away before the
/// 413 is sent, so that the client, which is still sending, sees an
/// answer rather than a reset stream (curl reports a reset sent with the
/// answer as an error). Past this much the answer goes out anyway.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// How long a request body may take to arrive, whole or thrown away: a
/// roster of a few KiB from an EHR takes milliseconds; 256 KiB on a slow
/// 100 kbit/s link about 20 s. A client that trickles its body slower is
/// answered 408 and its connection freed.
pub(crate) const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Request bodies held in memory at once, all requests together. Bodies
/// are read before the key is checked, so without a bound anyone could
/// make the server hold 256 KiB per stream on every connection; with it,
/// readers wait (and HTTP/2 flow control stops their clients) while the
/// budget is spent. 64 MiB is 256 bodies at the limit, where a clinic's
/// API traffic is a few requests of a few KiB at a time.
const BODY_BUDGET: usize = 64 * 1024 * 1024;

static BUFFERED: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(BODY_BUDGET);

/// Reads the body before the request goes on; see the module comment.
pub(crate) async fn read_first(request: Request, next: Next) -> Response {
    let (parts, mut body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut read = Vec::new();
    let mut over = declared.is_some_and(|n| n > BODY_LIMIT as u64);
    let deadline = tokio::time::Instant::now() + BODY_TIMEOUT;
    let mut drained = 0usize;
    // The share of BUFFERED this request holds until it is answered.
    let mut held: Option<tokio::sync::SemaphorePermit<'static>> = None;
    loop {
        if over && drained > DRAIN_LIMIT {
            return too_large(Some(body));
        }
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(frame) => frame,
            Err(_) => {
                return ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body did not arrive in time",
                )
                .into_response()
            }
        };
        match frame {
            None => break,
            Some(Ok(frame)) => {
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                if over || read.len() + data.len() > BODY_LIMIT {
                    over = true;
                    drained += data.len();
                    read = Vec::new();
                    held = None;
                    continue;
                }
                let Ok(len) = u32::try_from(data.len()) else {
                    continue;
                };
                let permit =
                    match tokio::time::timeout_at(deadline, BUFFERED.acquire_many(len)).await {
                        Ok(Ok(permit)) => permit,
                        _ => {
                            tracing::warn!("request bodies wait: the memory for them is in use");
                            return ApiError::new(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "unavailable",
                                "the server is busy; try again",
                            )
                            .into_response();
                        }
                    };
                match &mut held {
                    Some(held) => held.merge(permit),
                    None => held = Some(permit),
                }
                read.extend_from_slice(data);
            }
            Some(Err(_)) => {
                // The client broke off its own request: nobody is left to
                // read an answer, but give one in the usual shape.
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the request body could not be read",
                )
                .into_response();
            }
        }
    }
    if over {
        return too_large(None);
    }
    let response = next.run(Request::from_parts(parts, Body::from(read))).await;
    drop(held);
    response
}

/// 413, holding the unread rest of the request body (if any) until the
/// answer is sent.
fn too_large(unread: Option<Body>) -> Response {
    let response = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the request body is larger than the limit of {} KiB",
            BODY_LIMIT / 1024
        ),
    )
    .into_response();
    match unread {
        None => response,
        Some(unread) => response.map(|answer| {
            Body::new(Holding {
                answer,
                held: Some(unread),
            })
        }),
    }
}

/// A response body that keeps the request's unread body alive until the
/// response body has been sent to its end.
struct Holding {
    answer: Body,
    held: Option<Body>,
}

impl http_body::Body for Holding {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.answer).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.held = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.answer.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.answer.size_hint()
    }
}

/// Rewrites error responses that are not JSON into the API's error shape.
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, REWRITE_LIMIT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_lowercase()
    } else {
        text
    };
    let mut rewritten = ApiError::new(status, code(status), message).into_response();
    // A 405 says which methods would do.
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        rewritten.headers_mut().insert(header::ALLOW, allow.clone());
    }
    rewritten
}

/// The error code of a status the handlers do not produce themselves.
fn code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        StatusCode::UPGRADE_REQUIRED => "upgrade_required",
        StatusCode::NOT_IMPLEMENTED => "not_implemented",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}
