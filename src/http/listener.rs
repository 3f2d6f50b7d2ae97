//! The HTTPS listener: accepts TCP connections, holds each to its limits,
//! does the TLS handshake, and serves HTTP/1.1 or HTTP/2 (by ALPN) on it.
//!
//! Every connection costs a file descriptor, and the process has a fixed
//! number of them, so none may be held for free:
//!
//! - a connection over the global cap or the per-address cap is closed as
//!   soon as it is accepted, before any TLS work ([`Slots`]);
//! - the TLS handshake must finish within its timeout;
//! - on HTTP/1.1 a request's headers must arrive within the header-read
//!   timeout, which hyper also applies while a kept-alive connection waits
//!   for its next request;
//! - a connection must begin its first request within the handshake and
//!   header-read timeouts together, counted from the accept, whatever bytes
//!   it sends ([`Watched`]; HTTP/2, or TLS and then silence, included);
//! - after that, a connection with no request in progress and no byte in
//!   either direction for the idle timeout is closed. A connection
//!   upgraded to a WebSocket is exempt: signaling pings it and judges its
//!   silence itself;
//! - HTTP/2 limits the streams open at once and the size of a header list.
//!
//! Reaching a cap, or running out of file descriptors, is logged (at most
//! once every [`LOG_EVERY`] per kind, with the count refused since).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use hyper::body::Incoming;
use hyper::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::config::ServerSection;
use crate::sfu::Sfu;

/// The longest header list an HTTP/2 request may send: browsers send
/// 1–2 KiB, a request with a long bearer token about 3 KiB.
const H2_MAX_HEADER_LIST: u32 = 16 * 1024;

/// Streams an HTTP/2 client may reset before the server has accepted them,
/// before the connection is closed (the "rapid reset" attack).
const H2_MAX_PENDING_RESETS: usize = 20;

/// A cap's warning is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// How long the accept loop pauses when the process is out of file
/// descriptors, rather than spinning on the failing accept.
const NO_FD_PAUSE: Duration = Duration::from_millis(100);

/// The listener's limits, from `[server]`.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
}

impl Limits {
    pub(crate) fn from_config(server: &ServerSection) -> Limits {
        Limits {
            max_connections: server.max_connections,
            max_connections_per_ip: server.max_connections_per_ip,
            tls_handshake_timeout: Duration::from_secs(server.tls_handshake_timeout_secs),
            header_read_timeout: Duration::from_secs(server.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(server.idle_timeout_secs),
            http2_max_concurrent_streams: server.http2_max_concurrent_streams,
        }
    }
}

/// What the HTTPS port speaks besides plain TCP.
pub(crate) struct Https {
    pub tls: RustlsConfig,
    /// Set when the port also takes ICE-TCP (`media.tcp_on_https`).
    pub media: Option<Arc<Sfu>>,
}

/// Serves `app` on `listener` (over TLS when `https` is given) until `stop`
/// turns true; then lets requests in progress finish for up to `grace`
/// and closes what is left. Listeners that share `slots` share its caps.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    https: Option<Https>,
    app: Router,
    limits: Limits,
    slots: Arc<Slots>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS);
    let shared = Arc::new(Shared {
        builder,
        app,
        limits,
        tls: https.as_ref().map(|h| h.tls.clone()),
        media: https.and_then(|h| h.media),
    });
    // Closes connections still open when the grace is over.
    let (force, forced) = watch::channel(false);
    let tasks = tokio_util::task::TaskTracker::new();
    let mut out_of_fds = Throttled::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopping(&mut stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_out_of_fds(&error) => {
                if let Some(missed) = out_of_fds.due() {
                    tracing::error!(
                        %error,
                        refused_since_last_report = missed,
                        "out of file descriptors: new HTTPS connections wait in the \
                         kernel's queue; raise LimitNOFILE or lower server.max_connections"
                    );
                }
                tokio::time::sleep(NO_FD_PAUSE).await;
                continue;
            }
            // A connection that failed before it was accepted.
            Err(_) => continue,
        };
        let Some(slot) = slots.take(remote.ip()) else {
            // Dropped here: closed before any TLS work.
            continue;
        };
        let shared = shared.clone();
        let stop = stop.clone();
        let forced = forced.clone();
        tasks.spawn(async move {
            connection(shared, tcp, remote, slot, stop, forced).await;
        });
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        let _ = force.send(true);
        tasks.wait().await;
    }
    Ok(())
}

/// Resolves once `flag` is true (or its sender is gone).
async fn stopping(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

fn is_out_of_fds(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

struct Shared {
    builder: Builder<TokioExecutor>,
    app: Router,
    limits: Limits,
    tls: Option<RustlsConfig>,
    /// Set when this port also takes ICE-TCP (`media.tcp_on_https`).
    media: Option<Arc<Sfu>>,
}

/// One connection, from TLS to its end.
async fn connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    remote: SocketAddr,
    slot: Slot,
    mut stop: watch::Receiver<bool>,
    mut forced: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let tcp = match &shared.media {
        Some(media) => {
            let within = shared.limits.tls_handshake_timeout;
            match media.on_https_port(tcp, remote, within).await {
                Some(tls) => tls,
                None => return,
            }
        }
        None => tcp,
    };
    let _open = crate::metrics::Held::connection(crate::metrics::HTTPS);
    let state = Arc::new(ConnState::default());
    let io = Watched::new(tcp, slot, state.clone(), &shared.limits);
    let Some(tls) = &shared.tls else {
        return http(&shared, io, remote, state, &mut stop, &mut forced).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.get_inner());
    match tokio::time::timeout(shared.limits.tls_handshake_timeout, acceptor.accept(io)).await {
        Ok(Ok(tls)) => http(&shared, tls, remote, state, &mut stop, &mut forced).await,
        Ok(Err(error)) => {
            handshake_failed("error");
            tracing::debug!(%error, "TLS handshake failed");
        }
        Err(_) => {
            handshake_failed("timeout");
            tracing::debug!("TLS handshake timed out");
        }
    }
}

fn handshake_failed(reason: &'static str) {
    metrics::counter!(crate::metrics::TLS_HANDSHAKE_FAILURES, "reason" => reason).increment(1);
}

/// HTTP on one connection, until it ends or the server stops.
async fn http<I>(
    shared: &Shared,
    io: I,
    remote: SocketAddr,
    state: Arc<ConnState>,
    stop: &mut watch::Receiver<bool>,
    forced: &mut watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = shared.app.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let app = app.clone();
        let state = state.clone();
        request.extensions_mut().insert(ConnectInfo(remote));
        async move {
            let _busy = state.begin();
            let response = app
                .oneshot(request.map(axum::body::Body::new))
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                state.upgraded.store(true, Ordering::Relaxed);
            }
            Ok::<_, Infallible>(response)
        }
    });
    let conn = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
            return;
        }
        _ = stopping(stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopping(forced) => {}
    }
}

/// What a connection's requests tell its socket.
#[derive(Default)]
struct ConnState {
    in_flight: AtomicUsize,
    upgraded: AtomicBool,
    /// A request has begun on this connection.
    served: AtomicBool,
}

impl ConnState {
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        Busy(self.clone())
    }

    fn may_idle_out(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && !self.upgraded.load(Ordering::Relaxed)
    }
}

/// A request in progress.
struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP stream that keeps its connection's slot and ends itself when it
/// is not used: a read that would wait past its deadline fails with
/// `TimedOut`. The first request must begin within `first` of the accept
/// (bytes that never make a request do not extend it); after that, the
/// connection may be idle (no request in progress, no byte either way)
/// for `idle`. hyper always has a read waiting on an idle connection
/// (HTTP/1.1 to see a close, HTTP/2 for the next frame), so the timer is
/// always watched.
struct Watched {
    tcp: TcpStream,
    _slot: Slot,
    state: Arc<ConnState>,
    opened: Instant,
    first: Duration,
    idle: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Watched {
    fn new(tcp: TcpStream, slot: Slot, state: Arc<ConnState>, limits: &Limits) -> Watched {
        let now = Instant::now();
        let first = limits.tls_handshake_timeout + limits.header_read_timeout;
        Watched {
            tcp,
            _slot: slot,
            state,
            opened: now,
            first,
            idle: limits.idle_timeout,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(
                now + first.min(limits.idle_timeout),
            )),
        }
    }

    /// Ready with an error once the connection has been unused too long.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = if self.state.served.load(Ordering::Relaxed) {
                self.last + self.idle
            } else {
                (self.opened + self.first).min(self.last + self.idle)
            };
            let now = Instant::now();
            let next = if now < deadline {
                // Active since the timer was set.
                deadline
            } else if self.state.may_idle_out() {
                tracing::debug!("unused HTTPS connection closed");
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was not used in time",
                ));
            } else {
                // A request in progress, or a WebSocket: look again later.
                now + self.idle
            };
            self.timer.as_mut().reset(next);
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.last = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => match self.poll_idle(cx) {
                Poll::Ready(error) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.tcp).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            if n > 0 {
                self.last = Instant::now();
            }
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            if n > 0 {
                self.last = Instant::now();
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The connections open, in all and per address.
pub(crate) struct Slots {
    max: usize,
    max_per_ip: usize,
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
    full: Throttled,
    full_ip: Throttled,
}

impl Slots {
    /// The caps of `limits`, for the listeners that share them.
    pub(crate) fn shared(limits: &Limits) -> Arc<Slots> {
        Arc::new(Slots::new(
            limits.max_connections,
            limits.max_connections_per_ip,
        ))
    }

    fn new(max: usize, max_per_ip: usize) -> Slots {
        Slots {
            max,
            max_per_ip,
            open: Arc::default(),
        }
    }

    /// A slot for a connection from `ip`, or none when a cap is reached.
    fn take(&self, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().expect("slots lock");
        if open.total >= self.max {
            if let Some(missed) = open.full.due() {
                tracing::warn!(
                    limit = self.max,
                    refused_since_last_report = missed,
                    "HTTPS connection limit reached (server.max_connections): \
                     refusing new connections until some close"
                );
            }
            return None;
        }
        let from_ip = open.by_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.max_per_ip {
            if let Some(missed) = open.full_ip.due() {
                tracing::warn!(
                    limit = self.max_per_ip,
                    refused_since_last_report = missed,
                    "one address reached its HTTPS connection limit \
                     (server.max_connections_per_ip): refusing more from it"
                );
            }
            return None;
        }
        open.total += 1;
        *open.by_ip.entry(ip).or_default() += 1;
        Some(Slot {
            ip,
            open: self.open.clone(),
        })
    }
}

/// One open connection's place; given back when dropped.
struct Slot {
    ip: IpAddr,
    open: Arc<Mutex<Open>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("slots lock");
        open.total -= 1;
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Counts events and says when one is due to be logged.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    missed: u64,
}

impl Throttled {
    /// `Some(events since the last report)` when a report is due.
    fn due(&mut self) -> Option<u64> {
        self.missed += 1;
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < LOG_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.missed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_in_all_and_per_address_and_given_back() {
        let slots = Slots::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert!(slots.take(a).is_none(), "per address");
        let _b1 = slots.take(b).unwrap();
        assert!(slots.take(b).is_none(), "in all");
        drop(a1);
        let _a3 = slots.take(a).unwrap();
        assert_eq!(slots.open.lock().unwrap().total, 3);
    }

    #[test]
    fn reports_are_throttled_and_count_what_they_missed() {
        let mut t = Throttled::default();
        assert_eq!(t.due(), Some(1));
        assert_eq!(t.due(), None);
        assert_eq!(t.due(), None);
        t.last = Some(Instant::now() - LOG_EVERY);
        assert_eq!(t.due(), Some(3));
    }
}
