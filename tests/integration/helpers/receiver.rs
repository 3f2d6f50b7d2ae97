//! A webhook receiver: a real HTTPS server with its own CA (not Tandem's),
//! the way a clinic's EHR would listen. It records every request it gets
//! (headers and body, whatever it answered) and answers as the test
//! scripts it: 2xx, an error status, or silence for a while.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use serde_json::Value;
use tandem::tls::devcert;
use tempfile::TempDir;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// Waits this long, then answers 200 (if the sender still listens);
    /// recorded as answered 0.
    Hang(Duration),
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub headers: HeaderMap,
    pub body: String,
    pub json: Value,
    /// What the receiver answered (0: it hung).
    pub answered: u16,
}

#[derive(Default)]
struct Script {
    /// Replies for the next requests, in order; then `otherwise`.
    next: VecDeque<Reply>,
    otherwise: Option<Reply>,
    received: Vec<Received>,
}

pub struct Receiver {
    /// `https://localhost:PORT/hooks`.
    pub url: String,
    /// The PEM of the CA that signed the receiver's certificate.
    pub ca: PathBuf,
    script: Arc<Mutex<Script>>,
    handle: axum_server::Handle,
    _dir: TempDir,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let certs = devcert::generate(&dir.path().join("receiver"), &["localhost".into()]).unwrap();
        let chain = rustls_pemfile::certs(&mut std::fs::read(&certs.cert).unwrap().as_slice())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut std::fs::read(&certs.key).unwrap().as_slice())
            .unwrap()
            .unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(Mutex::new(Script::default()));
        let state = script.clone();
        let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let script = state.clone();
            async move { answer(&script, headers, body).await }
        });
        let handle = axum_server::Handle::new();
        let server =
            axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(Arc::new(tls)))
                .handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        Receiver {
            url: format!("https://localhost:{port}/hooks"),
            ca: certs.ca_cert,
            script,
            handle,
            _dir: dir,
        }
    }

    /// The next requests get `replies`, in order.
    pub fn then(&self, replies: &[Reply]) {
        self.script.lock().unwrap().next.extend(replies);
    }

    /// Every request after the scripted ones gets `reply` (`None`: 200).
    pub fn otherwise(&self, reply: Option<Reply>) {
        self.script.lock().unwrap().otherwise = reply;
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// The requests answered 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }

    /// Waits until `done` holds for what was received (answered 2xx).
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let delivered = self.delivered();
            if done(&delivered) {
                return delivered;
            }
            if tokio::time::Instant::now() > deadline {
                let types: Vec<_> = self
                    .received()
                    .iter()
                    .map(|r| format!("{}:{}", r.json["type"], r.answered))
                    .collect();
                panic!("the receiver never got {what}; it got {types:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Receiver {
    /// Waits until at least one request arrived, whatever it was answered.
    pub async fn wait_for_any_attempt(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.received().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "no request arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

async fn answer(script: &Mutex<Script>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let reply = {
        let mut s = script.lock().unwrap();
        s.next.pop_front().or(s.otherwise)
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    // A hang is recorded as it starts, as answered 0 (never delivered).
    let answered = match reply {
        None => 200,
        Some(Reply::Hang(_)) => 0,
        Some(Reply::Status(code)) => code,
    };
    script.lock().unwrap().received.push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        body: text,
        headers,
        answered,
    });
    if let Some(Reply::Hang(wait)) = reply {
        tokio::time::sleep(wait).await;
        return StatusCode::OK;
    }
    StatusCode::from_u16(answered).unwrap()
}
