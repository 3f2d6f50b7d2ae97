//! Metrics for the clinic's monitoring: every name Tandem exposes to
//! Prometheus, with its unit and HELP text, in one place.
//!
//! Code emits through the `metrics` facade by the constants here, so a name
//! is written once and a dashboard or alert can rely on it; [`install`]
//! puts the Prometheus recorder in place at start-up and describes every
//! name, and `GET /metrics` renders it ([`render`]). Names are stable
//! (`tandem_` + what + unit). Labels take values from small fixed sets
//! (a route template, a status code, a denial code, a message type, a media
//! kind, a shard number): never an id, a name or a token, so no person can
//! be found in a time series.

pub(crate) mod http;
pub(crate) mod shard;

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Rooms open now (a live session: someone has joined and it has not
/// ended).
pub const SESSIONS_LIVE: &str = "tandem_sessions_live";
/// People connected to a live room, by `state` ([`WAITING`], [`IN_ROOM`]).
pub const PARTICIPANTS: &str = "tandem_participants";
pub const WAITING: &str = "waiting";
pub const IN_ROOM: &str = "in_room";
/// Links accepted: a person's join reached their room.
pub const JOINS: &str = "tandem_joins_total";
/// Joins refused, by `code` (the protocol's denial code).
pub const JOIN_DENIALS: &str = "tandem_join_denials_total";
/// Signaling messages received from clients, by `type` (the protocol's
/// message type, or `invalid`).
pub const SIGNAL_MESSAGES: &str = "tandem_signal_messages_received_total";
/// RTP packets forwarded to subscribers, by `kind` (`audio`, `video`).
pub const FORWARDED_PACKETS: &str = "tandem_forwarded_packets_total";
/// RTP payload bytes forwarded to subscribers, by `kind`.
pub const FORWARDED_BYTES: &str = "tandem_forwarded_bytes_total";
/// The share of wall time a media shard's loop spent working, by `shard`.
pub const SHARD_BUSY_RATIO: &str = "tandem_shard_busy_ratio";
/// Commands from signaling waiting for a shard's loop, by `shard`.
pub const SHARD_QUEUE_DEPTH: &str = "tandem_shard_queue_depth";
/// Time to commit one ledger batch (a durable transaction).
pub const LEDGER_APPEND_DURATION: &str = "tandem_ledger_append_duration_seconds";
/// Events in one ledger batch.
pub const LEDGER_BATCH_EVENTS: &str = "tandem_ledger_batch_events";
/// Ledger batches the disk refused.
pub const LEDGER_APPEND_FAILURES: &str = "tandem_ledger_append_failures_total";
/// Webhook delivery attempts, by `outcome` (`delivered`, `retried`,
/// `failed`). Emitted by the webhook outbox.
pub const WEBHOOK_DELIVERIES: &str = "tandem_webhook_deliveries_total";
/// Time of one webhook delivery attempt. Emitted by the webhook outbox.
pub const WEBHOOK_DELIVERY_DURATION: &str = "tandem_webhook_delivery_duration_seconds";
/// Webhook endpoints whose retries ran out. Emitted by the webhook outbox.
pub const WEBHOOK_ENDPOINTS_FAILING: &str = "tandem_webhook_endpoints_failing";
/// HTTP requests answered, by `route` (the route template), `method` and
/// `status`.
pub const HTTP_REQUESTS: &str = "tandem_http_requests_total";
/// Time to answer an HTTP request, by `route` and `method`.
pub const HTTP_REQUEST_DURATION: &str = "tandem_http_request_duration_seconds";
/// TLS handshakes on the HTTPS port that failed, by `reason` (`error`,
/// `timeout`).
pub const TLS_HANDSHAKE_FAILURES: &str = "tandem_tls_handshake_failures_total";
/// Connections open now, by `kind` ([`HTTPS`], [`WEBSOCKET`], [`ICE_TCP`]).
pub const CONNECTIONS_OPEN: &str = "tandem_connections_open";
pub const HTTPS: &str = "https";
pub const WEBSOCKET: &str = "websocket";
pub const ICE_TCP: &str = "ice_tcp";
/// Process metrics (`tandem_process_cpu_seconds_total`,
/// `tandem_process_resident_memory_bytes`, `tandem_process_open_fds`, …)
/// carry this prefix; `metrics-process` names and describes them.
pub const PROCESS_PREFIX: &str = "tandem_";

/// Latency buckets (seconds) for the HTTP, ledger and webhook histograms:
/// a durable commit takes a few milliseconds, a slow disk or receiver
/// seconds.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for the ledger's batch size (events).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// The installed recorder's handle and the process collector.
struct Exporter {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

static EXPORTER: OnceLock<Option<Exporter>> = OnceLock::new();

/// Installs the Prometheus recorder (once per process; later calls do
/// nothing) and describes every metric. Another recorder already installed
/// (a test harness's) leaves `/metrics` empty rather than failing the start.
pub fn install() {
    EXPORTER.get_or_init(|| {
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in [
            (HTTP_REQUEST_DURATION, SECONDS_BUCKETS),
            (LEDGER_APPEND_DURATION, SECONDS_BUCKETS),
            (WEBHOOK_DELIVERY_DURATION, SECONDS_BUCKETS),
            (LEDGER_BATCH_EVENTS, BATCH_BUCKETS),
        ] {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
                .expect("non-empty buckets");
        }
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            Err(error) => {
                tracing::warn!(%error, "metrics recorder not installed: /metrics will be empty");
                return None;
            }
        };
        describe();
        let process = metrics_process::Collector::new(PROCESS_PREFIX);
        process.describe();
        Some(Exporter { handle, process })
    });
}

/// The exposition in the Prometheus text format (0.0.4), with the process
/// figures read now.
pub fn render() -> String {
    match EXPORTER.get() {
        Some(Some(exporter)) => {
            exporter.process.collect();
            exporter.handle.run_upkeep();
            exporter.handle.render()
        }
        _ => String::new(),
    }
}

/// HELP text and unit of every metric Tandem emits (and of the webhook
/// outbox's), so each appears with its description even before it moves.
fn describe() {
    describe_gauge!(SESSIONS_LIVE, Unit::Count, "Live sessions: rooms open now.");
    describe_gauge!(
        PARTICIPANTS,
        Unit::Count,
        "People connected to a live room, by state (waiting, in_room)."
    );
    describe_counter!(
        JOINS,
        Unit::Count,
        "Joins accepted: a person's link was valid and they reached their room."
    );
    describe_counter!(
        JOIN_DENIALS,
        Unit::Count,
        "Joins refused, by the protocol's denial code."
    );
    describe_counter!(
        SIGNAL_MESSAGES,
        Unit::Count,
        "Signaling messages received from clients, by message type (invalid: unreadable)."
    );
    describe_counter!(
        FORWARDED_PACKETS,
        Unit::Count,
        "RTP packets forwarded to subscribers, by media kind."
    );
    describe_counter!(
        FORWARDED_BYTES,
        Unit::Bytes,
        "RTP payload bytes forwarded to subscribers, by media kind."
    );
    describe_gauge!(
        SHARD_BUSY_RATIO,
        "Share of wall time (0 to 1) a media shard's loop spent working over the last second."
    );
    describe_gauge!(
        SHARD_QUEUE_DEPTH,
        Unit::Count,
        "Commands from signaling waiting for a media shard's loop."
    );
    describe_histogram!(
        LEDGER_APPEND_DURATION,
        Unit::Seconds,
        "Time to commit one batch of attendance ledger events durably."
    );
    describe_histogram!(
        LEDGER_BATCH_EVENTS,
        Unit::Count,
        "Attendance ledger events committed (or attempted) in one batch."
    );
    describe_counter!(
        LEDGER_APPEND_FAILURES,
        Unit::Count,
        "Attendance ledger batches the disk refused (requests refused, facts kept in memory)."
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        Unit::Count,
        "Webhook delivery attempts, by outcome (delivered, retried, failed)."
    );
    describe_histogram!(
        WEBHOOK_DELIVERY_DURATION,
        Unit::Seconds,
        "Time of one webhook delivery attempt."
    );
    describe_gauge!(
        WEBHOOK_ENDPOINTS_FAILING,
        Unit::Count,
        "Webhook endpoints marked failing after their retries ran out."
    );
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests answered, by route template, method and status code."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, by route template and method."
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        Unit::Count,
        "TLS handshakes on the HTTPS port that failed, by reason (error, timeout)."
    );
    describe_gauge!(
        CONNECTIONS_OPEN,
        Unit::Count,
        "Connections open now, by kind (https, websocket, ice_tcp)."
    );
}

/// Holds one unit of a gauge for as long as it lives: an open connection.
pub(crate) struct Held(metrics::Gauge);

impl Held {
    /// One more open connection of `kind` until the guard is dropped.
    pub(crate) fn connection(kind: &'static str) -> Held {
        let gauge = metrics::gauge!(CONNECTIONS_OPEN, "kind" => kind);
        gauge.increment(1.0);
        Held(gauge)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
