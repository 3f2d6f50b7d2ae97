//! A signaling client for tests: one WebSocket to `wss://localhost:PORT/v1/signal`
//! speaking the v1 protocol (DESIGN.md, "Signaling protocol (v1)") as raw JSON.
//!
//! Why raw JSON and not only the typed messages: tests must also send what a
//! correct client never would (malformed frames, unknown types, messages out
//! of order) and must see exactly what the server sent, so the wire format is
//! what this client exposes.
//!
//! The socket is connected by hand to the test server's address and TLS is
//! checked against the test's own CA only, so `localhost` need not resolve and
//! nothing but that server's certificate is accepted.
//!
//! A reader task takes every frame off the socket as it arrives: each message
//! goes both to a log (everything ever received, in order, see
//! [`SignalClient::messages`]) and to a queue that [`SignalClient::recv`]
//! consumes. Whether and how the server closed the socket is recorded too
//! ([`SignalClient::closed`]).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::stream::{SplitSink, StreamExt};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::TestApp;

pub use tokio_tungstenite::tungstenite::Error as WsError;

/// How long [`SignalClient::join`] waits for `joined` or `denied`.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How the socket ended, as seen by this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code the server sent, or `None` when the connection ended
    /// without a close frame (or with an empty one).
    pub code: Option<u16>,
    pub reason: String,
    pub at: Instant,
}

/// The sending half of a signaling socket; cheap to clone, shared by tasks.
#[derive(Clone)]
pub struct SignalSender {
    sink: Arc<tokio::sync::Mutex<SplitSink<Socket, Message>>>,
}

impl SignalSender {
    /// Sends one text frame exactly as given.
    pub async fn send_text(&self, text: impl Into<String>) -> anyhow::Result<()> {
        let text: String = text.into();
        self.sink
            .lock()
            .await
            .send(Message::text(text))
            .await
            .context("sending a signaling frame")
    }

    pub async fn send_json(&self, value: &Value) -> anyhow::Result<()> {
        self.send_text(value.to_string()).await
    }

    /// Sends a close frame (normal closure).
    pub async fn close(&self) -> anyhow::Result<()> {
        let mut sink = self.sink.lock().await;
        // Closing twice or after the server closed is not an error here.
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
        Ok(())
    }
}

/// Every message received on one socket, in order; cheap to clone.
#[derive(Clone, Default)]
pub struct MessageLog {
    inner: Arc<Mutex<Vec<Value>>>,
}

impl MessageLog {
    fn push(&self, message: Value) {
        self.inner.lock().expect("message log").push(message);
    }

    pub fn all(&self) -> Vec<Value> {
        self.inner.lock().expect("message log").clone()
    }

    pub fn find(&self, predicate: impl Fn(&Value) -> bool) -> Option<Value> {
        self.inner
            .lock()
            .expect("message log")
            .iter()
            .find(|m| predicate(m))
            .cloned()
    }

    pub fn count(&self, kind: &str) -> usize {
        self.inner
            .lock()
            .expect("message log")
            .iter()
            .filter(|m| type_of(m) == kind)
            .count()
    }

    /// The types of all messages, for failure messages: `joined, offer, ...`.
    pub fn summary(&self) -> String {
        summarize(&self.all())
    }
}

/// A connected signaling socket.
pub struct SignalClient {
    sender: SignalSender,
    incoming: mpsc::UnboundedReceiver<Value>,
    log: MessageLog,
    closed: watch::Receiver<Option<Closed>>,
    reader: ReaderGuard,
}

/// Owns the reader task: dropping it stops reading, and once the sending
/// half is gone too the TCP connection drops (as a lost network would).
pub struct ReaderGuard(JoinHandle<()>);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SignalClient {
    /// Connects without an `Origin` header, as the CLI and native clients do.
    pub async fn connect(app: &TestApp) -> Result<SignalClient, WsError> {
        Self::open(app, None).await
    }

    /// Connects and sends `join` with `token`, without waiting for the
    /// answer (`waiting`, `joined`, `denied`...: `recv_until` it).
    pub async fn knock(app: &TestApp, token: &str) -> SignalClient {
        let client = Self::connect(app)
            .await
            .expect("the signaling socket opens");
        client
            .send_json(json!({"type": "join", "token": token}))
            .await
            .expect("join sent");
        client
    }

    /// Connects with the browser `Origin` header `origin`. The server
    /// refuses origins other than its `public_url`'s; the refusal is the
    /// `WsError::Http` response of the upgrade.
    pub async fn connect_with_origin(app: &TestApp, origin: &str) -> Result<SignalClient, WsError> {
        Self::open(app, Some(origin)).await
    }

    async fn open(app: &TestApp, origin: Option<&str>) -> Result<SignalClient, WsError> {
        let url = format!("wss://localhost:{}/v1/signal", app.https_addr.port());
        let mut request = url.into_client_request()?;
        if let Some(origin) = origin {
            let value = HeaderValue::from_str(origin)
                .map_err(|e| WsError::Io(std::io::Error::other(format!("bad origin: {e}"))))?;
            request.headers_mut().insert("Origin", value);
        }
        let tls =
            tls_config(&app.certs.ca_cert).map_err(|e| WsError::Io(std::io::Error::other(e)))?;
        let stream = TcpStream::connect(app.https_addr).await?;
        let (socket, _response) = tokio_tungstenite::client_async_tls_with_config(
            request,
            stream,
            None,
            Some(Connector::Rustls(Arc::new(tls))),
        )
        .await?;
        Ok(Self::start(socket))
    }

    fn start(socket: Socket) -> SignalClient {
        let (sink, mut stream) = socket.split();
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let (closed_tx, closed) = watch::channel(None);
        let log = MessageLog::default();
        let reader_log = log.clone();
        let reader = tokio::spawn(async move {
            let mut close: Option<Closed> = None;
            while let Some(frame) = stream.next().await {
                match frame {
                    Ok(Message::Text(text)) => {
                        let value = serde_json::from_str::<Value>(text.as_str()).unwrap_or_else(
                            |_| json!({"type": "(not json)", "text": text.as_str()}),
                        );
                        reader_log.push(value.clone());
                        let _ = incoming_tx.send(value);
                    }
                    Ok(Message::Binary(bytes)) => {
                        let value = json!({"type": "(binary)", "len": bytes.len()});
                        reader_log.push(value.clone());
                        let _ = incoming_tx.send(value);
                    }
                    Ok(Message::Close(frame)) => {
                        close = Some(Closed {
                            code: frame.as_ref().map(|f| u16::from(f.code)),
                            reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                            at: Instant::now(),
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if close.is_none() {
                            close = Some(Closed {
                                code: None,
                                reason: format!("socket error: {e}"),
                                at: Instant::now(),
                            });
                        }
                        break;
                    }
                }
            }
            let close = close.unwrap_or_else(|| Closed {
                code: None,
                reason: "the connection ended without a close frame".into(),
                at: Instant::now(),
            });
            let _ = closed_tx.send(Some(close));
        });
        SignalClient {
            sender: SignalSender {
                sink: Arc::new(tokio::sync::Mutex::new(sink)),
            },
            incoming,
            log,
            closed,
            reader: ReaderGuard(reader),
        }
    }

    /// A handle for sending from elsewhere (another task).
    pub fn sender(&self) -> SignalSender {
        self.sender.clone()
    }

    /// A handle on the log of everything received.
    pub fn log(&self) -> MessageLog {
        self.log.clone()
    }

    /// Everything received so far, in order, including what `recv` consumed.
    pub fn messages(&self) -> Vec<Value> {
        self.log.all()
    }

    pub async fn send_text(&self, text: impl Into<String>) -> anyhow::Result<()> {
        self.sender.send_text(text).await
    }

    pub async fn send_json(&self, value: Value) -> anyhow::Result<()> {
        self.sender.send_json(&value).await
    }

    /// The next message not yet taken by `recv*`, or `None` after `timeout`
    /// or once the socket has ended and everything was taken.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Value> {
        tokio::time::timeout(timeout, self.incoming.recv())
            .await
            .ok()
            .flatten()
    }

    /// Takes messages until one of type `kind` comes and returns it; the
    /// ones before it stay in the log. Fails after `timeout`, naming what came.
    pub async fn recv_until(&mut self, kind: &str, timeout: Duration) -> anyhow::Result<Value> {
        self.recv_until_any(&[kind], timeout).await
    }

    /// Like [`recv_until`](Self::recv_until) for the first of several types.
    pub async fn recv_until_any(
        &mut self,
        kinds: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(message)) if kinds.contains(&type_of(&message)) => return Ok(message),
                Ok(Some(message)) => skipped.push(message),
                Ok(None) | Err(_) => {
                    let ended = match self.closed() {
                        Some(c) => format!("the socket closed (code {:?}, {:?})", c.code, c.reason),
                        None => "the socket is still open".to_owned(),
                    };
                    anyhow::bail!(
                        "no {kinds:?} message within {timeout:?}; {ended}; received meanwhile: [{}]; \
                         all messages: [{}]",
                        summarize(&skipped),
                        self.log.summary()
                    );
                }
            }
        }
    }

    /// Sends `join` with `token` and returns the `joined` or `denied` reply
    /// (a `waiting` on the way stays in the log: someone waiting for a
    /// clinician gets `joined` only once admitted, so use `recv_until`).
    pub async fn join(&mut self, token: &str) -> anyhow::Result<Value> {
        self.send_json(json!({"type": "join", "token": token}))
            .await?;
        self.recv_until_any(&["joined", "denied"], JOIN_TIMEOUT)
            .await
    }

    /// How the server ended the socket, if it has.
    pub fn closed(&self) -> Option<Closed> {
        self.closed.borrow().clone()
    }

    /// Waits until the socket ends; fails after `timeout`.
    pub async fn wait_closed(&self, timeout: Duration) -> anyhow::Result<Closed> {
        wait_closed(self.closed.clone(), timeout, &self.log).await
    }

    /// A watch on the socket's end, for [`wait_closed`] from another owner.
    pub fn closed_watch(&self) -> watch::Receiver<Option<Closed>> {
        self.closed.clone()
    }

    /// Splits the client for a task that consumes incoming messages while
    /// others send and read the log.
    pub fn into_parts(self) -> SignalParts {
        SignalParts {
            sender: self.sender,
            incoming: self.incoming,
            log: self.log,
            closed: self.closed,
            reader: self.reader,
        }
    }

    /// Sends a close frame; the reader keeps recording what the server does.
    pub async fn close(&self) -> anyhow::Result<()> {
        self.sender.close().await
    }
}

/// A [`SignalClient`] taken apart by [`SignalClient::into_parts`].
pub struct SignalParts {
    pub sender: SignalSender,
    pub incoming: mpsc::UnboundedReceiver<Value>,
    pub log: MessageLog,
    pub closed: watch::Receiver<Option<Closed>>,
    pub reader: ReaderGuard,
}

/// Waits until a watched socket ends; fails after `timeout`.
pub async fn wait_closed(
    mut closed: watch::Receiver<Option<Closed>>,
    timeout: Duration,
    log: &MessageLog,
) -> anyhow::Result<Closed> {
    match tokio::time::timeout(timeout, closed.wait_for(Option::is_some)).await {
        Ok(Ok(c)) => Ok(c.clone().expect("checked by wait_for")),
        Ok(Err(_)) => anyhow::bail!("the socket's reader is gone; messages: [{}]", log.summary()),
        Err(_) => anyhow::bail!(
            "the server did not close the socket within {timeout:?}; messages: [{}]",
            log.summary()
        ),
    }
}

/// The `type` of a message, or "" when it has none.
pub fn type_of(message: &Value) -> &str {
    message.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The token of an invite from `POST /v1/sessions/{id}/invites` (it sits
/// in the URL fragment `#t=`).
pub fn invite_token(invite: &Value) -> String {
    let url = invite["url"].as_str().expect("an invite has a url");
    url.split_once("#t=")
        .expect("the token is in the fragment")
        .1
        .to_owned()
}

/// Message types in order with a short detail for the interesting ones.
pub fn summarize(messages: &[Value]) -> String {
    messages
        .iter()
        .map(|m| match type_of(m) {
            "denied" | "error" => format!("{}({})", type_of(m), m["code"].as_str().unwrap_or("?")),
            "offer" | "answer" | "candidate" => {
                format!("{}/{}", type_of(m), m["pc"].as_str().unwrap_or("?"))
            }
            "participant_joined" | "participant_left" => {
                format!(
                    "{}({})",
                    type_of(m),
                    m["participant"]["id"].as_str().unwrap_or("?")
                )
            }
            "" => m.to_string(),
            t => t.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A rustls client configuration trusting only the CA in `ca_pem`.
pub fn tls_config(ca_pem: &Path) -> anyhow::Result<rustls::ClientConfig> {
    let pem = std::fs::read(ca_pem).with_context(|| format!("reading {}", ca_pem.display()))?;
    let mut store = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        store.add(cert?)?;
    }
    anyhow::ensure!(!store.is_empty(), "no certificate in {}", ca_pem.display());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(store)
    .with_no_client_auth();
    Ok(config)
}
