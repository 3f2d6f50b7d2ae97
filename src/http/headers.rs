//! Security headers on every response, errors and redirects included.
//!
//! The policy is strict because the pages handle camera, microphone and
//! health information: scripts, styles and connections only from our own
//! origin, no framing, no referrer (links carry a token in the fragment and
//! session ids in the path), camera and microphone for our origin only.

use axum::http::{header, HeaderName, HeaderValue};
use tower_http::set_header::SetResponseHeaderLayer;

pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
    connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

pub(crate) const PERMISSIONS_POLICY: &str = "camera=(self), microphone=(self), \
    display-capture=(self), speaker-selection=(self), fullscreen=(self), \
    geolocation=(), payment=(), usb=(), interest-cohort=()";

pub(crate) const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000; includeSubDomains";

/// The layers that set the headers; apply them outermost.
pub(crate) fn layers() -> Vec<SetResponseHeaderLayer<HeaderValue>> {
    [
        (header::STRICT_TRANSPORT_SECURITY, STRICT_TRANSPORT_SECURITY),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("permissions-policy"),
            PERMISSIONS_POLICY,
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ]
    .into_iter()
    .map(|(name, value)| SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value)))
    .collect()
}
