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

/// [`CONTENT_SECURITY_POLICY`] that also lets pages open sockets to
/// `origins` (`wss://node-2.clinic.example`): the nodes of a cluster, which
/// a `redirect` sends the client to.
pub(crate) fn policy_with(origins: &[String]) -> String {
    if origins.is_empty() {
        return CONTENT_SECURITY_POLICY.to_owned();
    }
    CONTENT_SECURITY_POLICY.replace(
        "connect-src 'self';",
        &format!("connect-src 'self' {};", origins.join(" ")),
    )
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_page_may_open_sockets_on_every_node_and_nothing_else_changes() {
        let origins = [
            "wss://node-1.example".to_owned(),
            "wss://node-2.example".to_owned(),
        ];
        let policy = policy_with(&origins);
        assert!(policy.contains("connect-src 'self' wss://node-1.example wss://node-2.example;"));
        assert_eq!(
            policy.replace(" wss://node-1.example wss://node-2.example", ""),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(policy_with(&[]), CONTENT_SECURITY_POLICY);
    }
}
