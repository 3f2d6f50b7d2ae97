//! One running Tandem node: its listeners, its database, its tasks, and an
//! orderly shutdown.
//!
//! Binding is split from starting ([`Listeners`]) so that a caller can bind
//! port 0, learn the real port, and build `public_url` from it before the
//! server starts (the demo's `--port 0` and the integration tests do).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use chrono::{DateTime, Utc};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::attendance::ledger::{recover_presence, recover_presence_where, Ledger};
use crate::attendance::service::Attendance;
use crate::auth::signing_key::SigningKey;
use crate::cluster::drain::{Drain, LiveRoom, Step};
use crate::cluster::NodeState;
use crate::config::{Config, ServerSection};
use crate::http::listener::{self, Limits, Slots};
use crate::http::{self, AppState};
use crate::live::Rooms;
use crate::node::Node;
use crate::room::rate_limit::{FailedJoins, MessageRate};
use crate::schedule::Scheduler;
use crate::sfu::Sfu;
use crate::signal::SignalContext;
use crate::store::{Backend, Store};
use crate::{private_file, tls};
use tandem_protocol::IceServer;

/// The bound sockets a server will serve on.
pub struct Listeners {
    https: TcpListener,
    redirect: Option<TcpListener>,
}

impl Listeners {
    /// Binds `server.listen` and, when set, `server.redirect_listen`.
    pub fn bind(server: &ServerSection) -> anyhow::Result<Listeners> {
        let bind = |addr: SocketAddr, key: &str| {
            let listener = TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on {addr} ({key})"))?;
            listener.set_nonblocking(true)?;
            anyhow::Ok(listener)
        };
        Ok(Listeners {
            https: bind(server.listen, "server.listen")?,
            redirect: server
                .redirect_listen
                .map(|addr| bind(addr, "server.redirect_listen"))
                .transpose()?,
        })
    }

    pub fn https_addr(&self) -> SocketAddr {
        self.https
            .local_addr()
            .expect("a bound socket has an address")
    }

    pub(crate) fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect
            .as_ref()
            .map(|l| l.local_addr().expect("a bound socket has an address"))
    }
}

/// A started server. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    pub https_addr: SocketAddr,
    pub redirect_addr: Option<SocketAddr>,
    scheduler: Scheduler,
    store: Store,
    sfu: Arc<Sfu>,
    rooms: Arc<Rooms>,
    ledger: Ledger,
    grace: Duration,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    node: Node,
    /// True once a drain has seen every room end.
    drained: watch::Receiver<bool>,
}

/// Opens everything the server needs and starts serving. Fails, with a
/// message that says what to do, when the certificate, the database or the
/// signing key cannot be used.
pub async fn start(config: Config, listeners: Listeners) -> anyhow::Result<Running> {
    start_with(config, listeners, Options::default()).await
}

/// How [`start_with`] treats the data it finds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    /// A 0-byte database file becomes a new database (`--init`); without
    /// it, such a file is refused.
    pub init: bool,
}

/// [`start`], with [`Options`].
pub(crate) async fn start_with(
    config: Config,
    listeners: Listeners,
    options: Options,
) -> anyhow::Result<Running> {
    check_open_file_limit(&config);
    crate::metrics::install();
    let tls_config = tls::server_config(
        &config.tls.cert_file,
        &config.tls.key_file,
        &config.tls.min_version,
    )?;
    // The media ports are bound before the database is touched: a port in
    // use fails the start without opening (or creating) anything.
    let https_port = config
        .media
        .tcp_on_https
        .then(|| config.public_url().port_or_known_default())
        .flatten();
    let sfu = Arc::new(Sfu::start(&config.media, https_port)?);
    let opened = open_data(&config, options).await.and_then(|opened| {
        let webhooks = crate::webhooks::worker::Worker::new(
            opened.0.clone(),
            opened.3.id.clone(),
            &config.webhooks,
        )?;
        Ok((opened, webhooks))
    });
    let ((store, key, ledger, node), webhooks) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            let sfu = sfu.clone();
            let _ = tokio::task::spawn_blocking(move || sfu.shutdown()).await;
            return Err(error);
        }
    };
    let scheduler = Scheduler::new(
        store.clone(),
        key,
        config.sessions.clone(),
        config.public_url(),
    );

    let https_addr = listeners.https_addr();
    let redirect_addr = listeners.redirect_addr();
    let (stop, stopped) = watch::channel(false);
    let public_url = config.public_url();
    let ice_servers = config
        .media
        .ice_servers
        .iter()
        .map(|s| IceServer {
            urls: s.urls.clone(),
            username: s.username.clone(),
            credential: s.credential.clone(),
        })
        .collect();
    // Several nodes on PostgreSQL: heartbeats, leases, commands.
    let cluster = match (config.database(), node.state()) {
        (crate::store::Location::Postgres(url), NodeState::Ready) => {
            let media = serde_json::Value::Array(
                sfu.addresses()
                    .iter()
                    .map(|(udp, tcp)| {
                        serde_json::json!({"udp": udp.to_string(), "tcp": tcp.to_string()})
                    })
                    .collect(),
            )
            .to_string();
            Some(crate::nodes::Cluster::new(
                store.clone(),
                node.clone(),
                url,
                config.node.max_participants,
                media,
            ))
        }
        _ => None,
    };
    let rooms = Rooms::new(
        sfu.clone(),
        scheduler.clone(),
        ledger.clone(),
        Duration::from_secs(config.attendance.heartbeat_secs),
        ice_servers,
    );
    let signal = Arc::new(SignalContext {
        scheduler: scheduler.clone(),
        sfu: sfu.clone(),
        rooms: rooms.clone(),
        cluster: cluster.clone(),
        failed_joins: std::sync::Mutex::new(FailedJoins::new(
            config.sessions.failed_joins_per_minute,
        )),
        join_decided: Default::default(),
        message_rate: MessageRate::new(
            config.sessions.messages_per_second,
            config.sessions.message_burst,
        ),
        origin: public_url.origin().ascii_serialization(),
        shutdown: stopped.clone(),
    });
    let rustls = RustlsConfig::from_config(tls_config);
    let limits = Limits::from_config(&config.server);
    let slots = Slots::shared(&limits);
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let mut tasks = Vec::new();
    // Webhook deliveries: their own task, reading the outbox.
    tasks.push(tokio::spawn(webhooks.run(stopped.clone())));
    let attendance = Attendance::new(
        ledger.clone(),
        config.attendance.clone(),
        config.default_timezone(),
    );
    if config.attendance.verify_every_secs > 0 {
        tasks.push(tokio::spawn(check_the_chain(
            attendance.clone(),
            Duration::from_secs(config.attendance.verify_every_secs),
            stopped.clone(),
        )));
    }
    if let Some(cluster) = &cluster {
        // The first beat before anyone is served: placement counts this
        // node from its first join on.
        crate::nodes::heartbeat::beat(cluster, &rooms).await;
        tasks.push(tokio::spawn(crate::nodes::heartbeat::run(
            cluster.clone(),
            rooms.clone(),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(crate::nodes::commands::run(
            cluster.clone(),
            rooms.clone(),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(crate::nodes::sweep::run(
            cluster.clone(),
            ledger.clone(),
            stopped.clone(),
        )));
    }

    let app = http::router(AppState {
        node: node.clone(),
        console: crate::http::staff::StaffConsole::new(store.clone(), &config),
        scheduler: scheduler.clone(),
        store: store.clone(),
        signal: signal.clone(),
        attendance,
    });
    let https = listener::serve(
        listeners.https,
        Some(listener::Https {
            tls: rustls.clone(),
            media: config.media.tcp_on_https.then(|| sfu.clone()),
        }),
        app,
        limits.clone(),
        slots.clone(),
        stopped.clone(),
        grace,
    );
    tasks.push(tokio::spawn(async move {
        if let Err(error) = https.await {
            tracing::error!(%error, "the HTTPS listener failed");
        }
    }));

    if let Some(listener) = listeners.redirect {
        let app = http::redirect_router(config.public_url());
        let redirect = listener::serve(listener, None, app, limits, slots, stopped.clone(), grace);
        tasks.push(tokio::spawn(async move {
            if let Err(error) = redirect.await {
                tracing::error!(%error, "the redirect listener failed");
            }
        }));
    }

    let reloader = tls::reload::Reloader {
        cert_file: config.tls.cert_file.clone(),
        key_file: config.tls.key_file.clone(),
        min_version: config.tls.min_version.clone(),
        interval: (config.tls.reload_interval_secs > 0)
            .then(|| Duration::from_secs(config.tls.reload_interval_secs)),
    };
    tasks.push(tokio::spawn(reloader.run(rustls, stopped.clone())));
    let (drain_done, drained) = watch::channel(false);
    tasks.push(tokio::spawn(drain_when_told(
        node.clone(),
        rooms.clone(),
        drain_done,
        stopped,
    )));

    tracing::info!(%https_addr, redirect = ?redirect_addr, "Tandem is serving");
    Ok(Running {
        https_addr,
        redirect_addr,
        scheduler,
        store,
        sfu,
        rooms,
        ledger,
        grace,
        stop,
        tasks,
        node,
        drained,
    })
}

/// Alone, no other node can take a room over: every room runs to its end.
const ALONE_PATIENCE: chrono::TimeDelta = chrono::TimeDelta::days(365);

/// Once the node drains (`serve --drain` and SIGTERM): no new rooms; a
/// room with nobody connected counts as done, the others run to their end
/// (`cluster::drain`); then `done` says so, and the server stops. Ends at
/// the server's stop whatever it was doing.
/// Verifies the ledger's chain at start and then every `every`
/// (`attendance.verify_every_secs`); a check that cannot run now (the
/// database away, events waiting to be written) is tried at the next one.
async fn check_the_chain(
    attendance: Attendance,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut watch = crate::attendance::chain_check::ChainWatch::default();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|stopped| *stopped) => return,
        }
        match attendance.check_chain(&mut watch, chrono::Utc::now()).await {
            Ok(None) => tracing::debug!("the attendance ledger's chain verified"),
            Ok(Some(_)) => {} // logged and raised where it was found
            Err(error) => {
                tracing::warn!(%error, "the scheduled ledger verification could not run; trying at the next one")
            }
        }
    }
}

async fn drain_when_told(
    node: Node,
    rooms: Arc<Rooms>,
    done: watch::Sender<bool>,
    mut stopped: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = drain(node, rooms, done) => {}
        _ = stopped.wait_for(|stop| *stop) => {}
    }
}

async fn drain(node: Node, rooms: Arc<Rooms>, done: watch::Sender<bool>) {
    let mut state = node.watch();
    if state.wait_for(|s| *s == NodeState::Draining).await.is_err() {
        return;
    }
    rooms.stop_new_rooms();
    let mut drain = Drain::Serving;
    drain.start(Utc::now(), ALONE_PATIENCE);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let now = Utc::now();
        let live: Vec<LiveRoom> = rooms
            .live_rooms()
            .into_iter()
            .map(|(session, connected)| LiveRoom {
                session_id: session.to_string(),
                connected,
                closes_at: now + ALONE_PATIENCE,
                quiet: false,
            })
            .collect();
        if drain.tick(now, &live).contains(&Step::Exit) {
            let _ = done.send(true);
            return;
        }
    }
}

/// The data directory, the database, the signing key, the ledger and this
/// node's identity.
async fn open_data(
    config: &Config,
    options: Options,
) -> anyhow::Result<(Store, SigningKey, Ledger, Node)> {
    let data_dir = &config.data_dir;
    if private_file::private_dir(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?
    {
        tracing::info!(path = %data_dir.display(), "made the data directory owner-only (0700)");
    }
    let location = config.database();
    let store = Store::connect(&location, options.init)
        .await
        .with_context(|| format!("cannot open the database {location}"))?;
    let key = SigningKey::load_or_generate(&config.signing_key_path())?;
    let ledger = Ledger::start(store.clone()).await?;
    let node = match store.backend() {
        // One node on SQLite: every room is its own, no leases.
        Backend::Sqlite => {
            recover_presence(&ledger).await?;
            Node::load(config, NodeState::Alone)?
        }
        // A node of a cluster: other nodes' rooms are live; only the
        // presence no live node holds is closed (its rooms' own, from a
        // previous run, and those of dead nodes whose lease expired).
        Backend::Postgres => {
            let node = Node::load(config, NodeState::Ready)?;
            let leases = store.room_leases().await?;
            let now = Utc::now();
            let closed = recover_presence_where(&ledger, |session| {
                leases
                    .get(session)
                    .is_none_or(|l| *l.holder == *node.id || l.expires_at <= now)
            })
            .await?;
            if closed > 0 {
                tracing::warn!(
                    closed,
                    "presence left open by stopped nodes closed at its last heartbeat"
                );
            }
            node
        }
    };
    Ok((store, key, ledger, node))
}

impl Running {
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The node's database (API keys, for tools and tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The media addresses (UDP, ICE-TCP) of each shard.
    pub fn media_addresses(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.sfu.addresses()
    }

    /// Stops as [`Running::stop`] does, now, and logs what could not be
    /// recorded.
    pub async fn shutdown(self) {
        if let Err(error) = self.stop(Utc::now()).await {
            tracing::error!("{error:#}");
        }
    }

    /// Stops the server told to stop at `at`, in this order: nobody enters
    /// any more and every presence ends at `at` with reason
    /// `server_restart`, recorded before each signaling client is told
    /// (`error` `server_restart`, close 1012); then the sockets, open
    /// requests (up to the configured grace) and peer connections close;
    /// then the ledger writes what it still holds, and only then the
    /// database closes. An error when any departure could not be recorded.
    pub(crate) async fn stop(self, at: DateTime<Utc>) -> anyhow::Result<()> {
        tracing::info!("shutting down");
        let rooms_stopped = self
            .rooms
            .shutdown(at, self.grace + Duration::from_secs(5))
            .await;
        let _ = self.stop.send(true);
        let sfu = self.sfu.clone();
        let _ = tokio::task::spawn_blocking(move || sfu.shutdown()).await;
        for task in self.tasks {
            let _ = task.await;
        }
        let lost = self.ledger.close(Instant::now() + self.grace).await;
        self.scheduler.close().await;
        if lost > 0 {
            anyhow::bail!(
                "{lost} attendance events could not be written before the stop (each is in the log)"
            );
        }
        if !rooms_stopped {
            anyhow::bail!("some live rooms did not stop in time: departures may be missing");
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// Serves until `signals` fires, then stops: an error when anything
    /// could not be recorded (the process then exits with status 1). With
    /// `drain_on_terminate` (`serve --drain`), the first SIGTERM drains
    /// instead: no new rooms, and the stop comes once every live room has
    /// ended (or at SIGINT or a second SIGTERM).
    pub(crate) async fn run_until(
        self,
        mut signals: StopSignals,
        drain_on_terminate: bool,
    ) -> anyhow::Result<()> {
        let mut drained = self.drained.clone();
        loop {
            tokio::select! {
                terminate = signals.recv() => {
                    if terminate && drain_on_terminate && self.node.drain() {
                        tracing::info!("draining: no new rooms; stopping once the live rooms have ended (SIGTERM again stops now)");
                        continue;
                    }
                    break;
                }
                _ = drained.wait_for(|done| *done) => {
                    tracing::info!("drained: every live room has ended");
                    break;
                }
            }
        }
        let at = Utc::now();
        self.stop(at).await
    }
}

/// File descriptors kept free for everything but client connections: the
/// database and its WAL, each shard's UDP socket and ICE-TCP listener, the
/// certificate files while they are read, the log.
const FD_RESERVE: u64 = 64;

/// Raises the soft limit of open files (`RLIMIT_NOFILE`) to the hard
/// limit: every connection is a file descriptor, and the usual soft limit
/// of 1,024 would turn away clients long before the configured caps.
/// Returns the soft limit before and after.
pub(crate) fn raise_open_file_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, limit.rlim_cur))
}

/// Raises the open-file limit and says whether the configured caps fit in it.
fn check_open_file_limit(config: &Config) {
    let (before, now) = match raise_open_file_limit() {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit (RLIMIT_NOFILE)");
            return;
        }
    };
    if now > before {
        tracing::info!(from = before, to = now, "raised the open-file limit");
    }
    let shards = if config.media.shards == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        config.media.shards
    };
    let wanted = config.server.max_connections as u64
        + (shards * config.media.tcp_max_connections) as u64
        + FD_RESERVE;
    if now < wanted {
        tracing::warn!(
            limit = now,
            wanted,
            "the open-file limit is below what server.max_connections and \
             media.tcp_max_connections allow: clients will be turned away (logged as \
             \"out of file descriptors\") before those caps are reached; raise LimitNOFILE \
             (docs/deployment.md) or lower the caps"
        );
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, listened to from the moment this is made:
/// make it before telling anyone the server is up, so that a signal sent
/// right after is never lost.
pub(crate) struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub(crate) fn listen() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The next signal: true for SIGTERM, false for SIGINT.
    pub(crate) async fn recv(&mut self) -> bool {
        tokio::select! {
            _ = self.interrupt.recv() => false,
            _ = self.terminate.recv() => true,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: reads and writes `limit` only.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        let lowered = libc::rlimit {
            rlim_cur: limit.rlim_max.min(1024),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above; the soft limit stays within the hard one.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let (before, after) = super::raise_open_file_limit().unwrap();
        assert_eq!(before, lowered.rlim_cur);
        assert_eq!(after, limit.rlim_max);
    }
}
