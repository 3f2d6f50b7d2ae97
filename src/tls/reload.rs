//! Certificate hot reload.
//!
//! Certificates are renewed every few weeks (ACME) and a clinic cannot drop
//! every running session to pick up a new one. The reloader swaps the
//! certificate used for *new* handshakes when the files change on disk
//! (polled) or when the process gets SIGHUP. A half-written or mismatched
//! pair is refused and the old certificate stays in service.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use super::server_config;

/// What identifies one version of the certificate files on disk.
type Fingerprint = Option<(SystemTime, u64, SystemTime, u64)>;

pub(crate) struct Reloader {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub min_version: String,
    /// Poll interval; `None` reloads on SIGHUP only.
    pub interval: Option<Duration>,
}

impl Reloader {
    fn fingerprint(&self) -> Fingerprint {
        let cert = std::fs::metadata(&self.cert_file).ok()?;
        let key = std::fs::metadata(&self.key_file).ok()?;
        Some((
            cert.modified().ok()?,
            cert.len(),
            key.modified().ok()?,
            key.len(),
        ))
    }

    fn reload(&self, target: &RustlsConfig, why: &str) {
        match server_config(&self.cert_file, &self.key_file, &self.min_version) {
            Ok(config) => {
                target.reload_from_config(config);
                tracing::info!(trigger = why, "TLS certificate reloaded");
            }
            Err(error) => {
                tracing::warn!(trigger = why, %error, "TLS certificate not reloaded; the previous one stays in service");
            }
        }
    }

    /// Runs until `stop` changes.
    pub(crate) async fn run(self, target: RustlsConfig, mut stop: watch::Receiver<bool>) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; certificate reload by signal is off");
                None
            }
        };
        let mut seen = self.fingerprint();
        let mut tick = tokio::time::interval(self.interval.unwrap_or(Duration::from_secs(3600)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    seen = self.fingerprint();
                    self.reload(&target, "sighup");
                }
                _ = tick.tick(), if self.interval.is_some() => {
                    let now = self.fingerprint();
                    if now.is_some() && now != seen {
                        seen = now;
                        self.reload(&target, "file_change");
                    }
                }
            }
        }
    }
}
