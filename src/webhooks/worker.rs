//! The delivery worker: reads due deliveries from the outbox and sends
//! them, signed, to their receivers over HTTPS.
//!
//! It runs on its own task and only reads and writes the database, so a
//! slow or dead receiver costs this task a connection and nothing else:
//! rooms never wait for it. Each delivery is its own request task (at most
//! [`MAX_IN_FLIGHT`] at once); the outbox query hands out only the first
//! pending delivery of each (endpoint, session), so a session's events
//! arrive in the order they happened while other sessions and endpoints
//! go on. A delivery is marked done only after the receiver answered 2xx:
//! a crash or stop in between sends it again (at least once; the
//! `webhook-id` lets the receiver drop the duplicate).
//!
//! TLS: the system's roots plus `webhooks.ca_file`; only `https://`
//! receivers; redirects are not followed; short timeouts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::finalized::attendance_finalized;
use super::retry::Schedule;
use super::signing;
use super::EventType;
use crate::attendance::report::session_report;
use crate::config::WebhooksSection;
use crate::store::outbox;
use crate::store::webhooks::{Attempted, DueDelivery};
use crate::store::Store;

/// Deliveries sent at once, over every endpoint.
const MAX_IN_FLIGHT: usize = 32;
/// How often the outbox is looked at when nothing finished.
const POLL: Duration = Duration::from_millis(200);
/// How often the failing-endpoints gauge is refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(5);
/// How often finished deliveries past `webhooks.keep_days` are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// The longest wait for a receiver's TCP and TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything an attempt needs. Cheap to clone (behind an `Arc`).
pub(crate) struct Worker {
    store: Store,
    /// This node's id: its claims are marked with it.
    node: Arc<str>,
    client: reqwest::Client,
    schedule: Schedule,
    /// How long a claimed delivery is this node's alone (several nodes
    /// share the outbox): well past an attempt's timeout, so that only a
    /// node that died mid-attempt leaves one to the others.
    hold_ms: i64,
    /// How long finished deliveries are kept (`webhooks.keep_days`).
    keep: chrono::Duration,
}

/// The HTTPS client for receivers: system roots and `ca_file`, no
/// redirects, short timeouts.
fn client(config: &WebhooksSection) -> anyhow::Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::warn!("no system CA certificates found: receivers need webhooks.ca_file");
    }
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read webhooks.ca_file {}", path.display()))?;
        let certs = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("webhooks.ca_file {} is not PEM", path.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "webhooks.ca_file {} holds no certificate",
            path.display()
        );
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("webhooks.ca_file {}", path.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let timeout = Duration::from_secs_f64(config.timeout_seconds);
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        .user_agent(concat!("Tandem-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

impl Worker {
    pub(crate) fn new(
        store: Store,
        node: Arc<str>,
        config: &WebhooksSection,
    ) -> anyhow::Result<Worker> {
        Ok(Worker {
            store,
            node,
            client: client(config)?,
            hold_ms: (config.timeout_seconds * 2_000.0) as i64 + 30_000,
            keep: chrono::Duration::days(i64::from(config.keep_days)),
            schedule: Schedule {
                base: Duration::from_secs_f64(config.retry_base_seconds),
                max_attempts: config.max_attempts,
            },
        })
    }

    /// Delivers until `stop` turns true. Deliveries in flight then are
    /// dropped unfinished: still pending, they are sent after the restart.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let worker = Arc::new(self);
        // What this node held when it last stopped (a kill mid-attempt) is
        // due again now, not when those claims would have run out.
        match worker.store.release_webhook_claims_of(&worker.node).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deliveries = n,
                "webhook claims from before the restart released"
            ),
            Err(error) => {
                tracing::warn!(%error, "webhook claims from before the restart not released")
            }
        }
        let mut flying: JoinSet<i64> = JoinSet::new();
        let mut busy: HashSet<i64> = HashSet::new();
        let mut gauge_at = Instant::now() - GAUGE_EVERY;
        let mut purged_at = Instant::now() - PURGE_EVERY;
        loop {
            if *stop.borrow() {
                break;
            }
            if gauge_at.elapsed() >= GAUGE_EVERY {
                gauge_at = Instant::now();
                worker.refresh_gauge().await;
            }
            if purged_at.elapsed() >= PURGE_EVERY {
                purged_at = Instant::now();
                worker.purge().await;
            }
            if flying.len() < MAX_IN_FLIGHT {
                let now = Utc::now().timestamp_millis();
                match worker
                    .store
                    // Only as many as can fly now: a claimed row waits for
                    // nobody else until its claim runs out.
                    .claim_webhook_deliveries(
                        &worker.node,
                        now,
                        worker.hold_ms,
                        (MAX_IN_FLIGHT - flying.len()) as i64,
                    )
                    .await
                {
                    Ok(due) => {
                        for d in due {
                            if flying.len() >= MAX_IN_FLIGHT {
                                break;
                            }
                            if busy.insert(d.id) {
                                flying.spawn(worker.clone().attempt(d));
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "webhook outbox unreadable; retrying"),
                }
            }
            tokio::select! {
                changed = stop.changed() => if changed.is_err() { break },
                Some(done) = flying.join_next() => {
                    if let Ok(id) = done {
                        busy.remove(&id);
                    }
                    // A panicked attempt leaves its id busy: it is not
                    // retried until the restart, and nothing else waits.
                }
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        flying.abort_all();
    }

    /// Finished deliveries older than `webhooks.keep_days` go (every node
    /// does it; it is idempotent). A failure is tried again next time.
    async fn purge(&self) {
        let cutoff = (Utc::now() - self.keep).timestamp_millis();
        match self.store.purge_finished_webhook_deliveries(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deliveries = n, "finished webhook deliveries purged"),
            Err(error) => tracing::warn!(%error, "finished webhook deliveries not purged"),
        }
    }

    async fn refresh_gauge(&self) {
        if let Ok(n) = self.store.failing_webhook_endpoints().await {
            metrics::gauge!("tandem_webhook_endpoints_failing").set(n as f64);
        }
    }

    /// One attempt at `d`; its id.
    async fn attempt(self: Arc<Self>, d: DueDelivery) -> i64 {
        let body = match &d.payload {
            Some(body) => body.clone(),
            None => match self.compute_payload(&d).await {
                Ok(body) => body,
                Err(error) => {
                    tracing::warn!(%error, delivery = d.id, "webhook payload not ready; retrying");
                    tokio::time::sleep(POLL).await;
                    let _ = self.store.release_webhook_delivery(d.id).await;
                    return d.id;
                }
            },
        };
        let timestamp = Utc::now().timestamp();
        // Right after a rotation the secret before it signs too: a receiver
        // that has either accepts (the header lists both, newest first).
        let previous = d
            .previous_secret
            .as_deref()
            .and_then(|old| signing::sign(old, &d.event_id, timestamp, body.as_bytes()));
        let Some(signature) = signing::sign(&d.secret, &d.event_id, timestamp, body.as_bytes())
            .map(|new| match previous {
                Some(old) => format!("{new} {old}"),
                None => new,
            })
        else {
            tracing::error!(endpoint = %d.endpoint_id, "webhook secret unusable; delivery failed");
            self.finish(&d, Err(("the endpoint's secret is unusable".into(), None)))
                .await;
            return d.id;
        };
        let started = Instant::now();
        let sent = self
            .client
            .post(&d.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &d.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        metrics::histogram!("tandem_webhook_delivery_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let outcome = match sent {
            Ok(response) if response.status().is_success() => Ok(response.status().as_u16()),
            Ok(response) => {
                let status = response.status();
                let note = if status.is_redirection() {
                    " (redirects are not followed)"
                } else {
                    ""
                };
                Err((format!("HTTP {status}{note}"), Some(status.as_u16())))
            }
            Err(error) => Err((describe(&error), None)),
        };
        self.finish(&d, outcome).await;
        d.id
    }

    /// Stores how the attempt went and what comes next.
    async fn finish(&self, d: &DueDelivery, outcome: Result<u16, (String, Option<u16>)>) {
        let now = Utc::now();
        let attempt = u32::try_from(d.attempts)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let (attempted, status) = match outcome {
            Ok(status) => (Attempted::Delivered, Some(status)),
            Err((error, status)) => {
                let next = self.schedule.wait_after(attempt, rand::random::<f64>());
                let attempted = match next {
                    Some(wait) => Attempted::Retry {
                        at: now.timestamp_millis()
                            + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2),
                        error,
                    },
                    None => Attempted::Failed { error },
                };
                (attempted, status)
            }
        };
        let label = match &attempted {
            Attempted::Delivered => "delivered",
            Attempted::Retry { .. } => "retried",
            Attempted::Failed { .. } => "failed",
        };
        metrics::counter!("tandem_webhook_deliveries_total", "outcome" => label).increment(1);
        if let Attempted::Failed { error } = &attempted {
            tracing::warn!(endpoint = %d.endpoint_id, delivery = d.id, attempt, %error,
                "webhook delivery failed after its last retry; the endpoint is marked failing");
        } else {
            tracing::debug!(endpoint = %d.endpoint_id, delivery = d.id, attempt, outcome = label, "webhook attempt");
        }
        let written = self
            .store
            .finish_webhook_attempt(
                d.id,
                &d.endpoint_id,
                &attempted,
                status,
                now.timestamp_millis(),
            )
            .await;
        if let Err(error) = written {
            // Still pending in the database: it is sent again (at least
            // once), which the receiver deduplicates by `webhook-id`.
            tracing::warn!(%error, delivery = d.id, "webhook outcome not recorded");
        }
        if !matches!(attempted, Attempted::Retry { .. }) {
            self.refresh_gauge().await;
        }
    }

    /// The body of an `attendance.finalized`: the closed session's report,
    /// as of its close, stored once so every endpoint and retry sends the
    /// same bytes.
    async fn compute_payload(&self, d: &DueDelivery) -> anyhow::Result<String> {
        anyhow::ensure!(
            d.event_type == EventType::AttendanceFinalized.as_str(),
            "event {} has no payload",
            d.event_id
        );
        let session = d.session_id.as_deref().context("no session")?;
        let id = session.parse().context("session id")?;
        let data = match self.store.session(id).await? {
            Some(s) => {
                let events = self.store.session_events(session).await?;
                let at = chrono::DateTime::from_timestamp_millis(d.at).unwrap_or_else(Utc::now);
                attendance_finalized(&session_report(&s, &events, None, at))
            }
            None => serde_json::json!({ "session_id": session, "participants": [] }),
        };
        let body = outbox::body(&d.event_id, EventType::AttendanceFinalized, d.at, &data);
        Ok(self
            .store
            .set_webhook_payload(d.event_position, &body.to_string())
            .await?)
    }
}

/// What went wrong, in words, with the causes (never the body).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "the receiver did not answer in time".into();
    }
    let mut text = if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
