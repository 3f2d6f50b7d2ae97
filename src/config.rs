//! Server configuration: one TOML file plus `TANDEM_*` environment overrides.
//!
//! Everything an operator can set lives in [`Config`]. It is read once at
//! start, validated as a whole, and every problem is reported with the key
//! that holds it, so that `tandem config check` can tell an operator exactly
//! what to fix before a clinic's morning sessions depend on it.
//!
//! Environment variables use `__` between sections:
//! `TANDEM_SERVER__LISTEN=0.0.0.0:443`, `TANDEM_PUBLIC_URL=https://...`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use url::Url;

mod location;
pub use location::Location;

/// The whole configuration of one Tandem node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The origin patients open, e.g. `https://video.clinic.example`. Invite
    /// links are built from it and browser `Origin`s are checked against it.
    pub public_url: String,
    /// Where the database and the invite signing key live unless set
    /// explicitly.
    pub data_dir: PathBuf,
    pub server: ServerSection,
    pub tls: TlsSection,
    pub database: DatabaseSection,
    pub auth: AuthSection,
    pub sessions: SessionsSection,
    pub media: MediaSection,
    pub attendance: AttendanceSection,
    pub log: LogSection,
    pub webhooks: WebhooksSection,
    pub console: ConsoleSection,
    pub node: NodeSection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// The HTTPS (and WSS) listener.
    pub listen: SocketAddr,
    /// Optional plain-HTTP listener that only redirects to `public_url`.
    pub redirect_listen: Option<SocketAddr>,
    /// How long a graceful shutdown waits for open requests.
    pub shutdown_grace_secs: u64,
    /// Connections open at once, on both listeners together; more are
    /// closed as soon as they are accepted (and logged).
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Seconds a client has to finish the TLS handshake.
    pub tls_handshake_timeout_secs: u64,
    /// Seconds a client has to send a request's headers (HTTP/1.1); also
    /// how long a kept-alive HTTP/1.1 connection waits for its next request.
    pub header_read_timeout_secs: u64,
    /// Seconds after which a connection with no request in progress and no
    /// traffic is closed (HTTP/2 included; WebSockets excepted).
    pub idle_timeout_secs: u64,
    /// HTTP/2 streams (requests) one connection may have open at once.
    pub http2_max_concurrent_streams: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Lowest TLS version offered: "1.2" or "1.3".
    pub min_version: String,
    /// Seconds between checks of the certificate files for changes; 0 turns
    /// the file watch off (SIGHUP still reloads).
    pub reload_interval_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// SQLite file; defaults to `<data_dir>/tandem.db`.
    pub path: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://user:password@host/db?sslmode=…`;
    /// when set, it names the database instead of `path` (which must then
    /// be unset).
    pub url: Option<String>,
}

/// This node's identity in a cluster (several nodes on PostgreSQL;
/// docs/deployment.md, "Several nodes"). A single node needs none of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The node's id, unique in the cluster: letters, digits, `.`, `_`,
    /// `-`, at most 64. Default: generated on first start and kept in
    /// `<data_dir>/node-id`.
    pub id: Option<String>,
    /// The URL at which browsers and the other nodes reach this node
    /// itself (not the load balancer), e.g. `https://node-2.video.clinic.example`.
    /// Default: `public_url`.
    pub public_url: Option<String>,
    /// The most participants this node takes before placement sends new
    /// rooms elsewhere.
    pub max_participants: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Ed25519 private key (PKCS#8 PEM) that signs invite links; generated
    /// with 0600 permissions on first start when absent. Defaults to
    /// `<data_dir>/signing-key.pem`.
    pub signing_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsSection {
    /// IANA time zone of sessions created without one.
    pub default_timezone: String,
    /// Invite links open this many minutes before the scheduled start.
    pub early_join_minutes: u32,
    /// Invite links (and the room) stay open this long after the scheduled end.
    pub overrun_grace_minutes: u32,
    /// How long admitted people stay in the room after the clinician drops.
    pub clinician_grace_minutes: u32,
    /// End-to-end encryption of sessions created without an `e2ee`
    /// setting: `off`, `preferred` or `required` (issue 19).
    pub e2ee: tandem_protocol::E2eeMode,
    /// Largest roster a session may have, the clinician included.
    pub max_participants: u32,
    /// Failed joins allowed per source address per minute; 0: no limit.
    pub failed_joins_per_minute: u32,
    /// Messages a signaling connection may send per second on average;
    /// more closes it (1008). 0: no limit.
    pub messages_per_second: u32,
    /// Messages a signaling connection may send at once (a join's
    /// candidates, a renegotiation) before the average applies.
    pub message_burst: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    /// The address media sockets bind and, unless `public_ip` is set,
    /// announce in ICE candidates. Must be a concrete address (browsers
    /// cannot reach 0.0.0.0). Default: the address of the interface that
    /// routes outward, or 127.0.0.1 on a machine without a route.
    pub bind_ip: Option<IpAddr>,
    /// The address to announce instead, for a server behind 1:1 NAT.
    pub public_ip: Option<IpAddr>,
    /// UDP port of the first shard; shard N uses `udp_port + N`. 0: any.
    pub udp_port: u16,
    /// ICE-TCP port of the first shard (for networks that block UDP);
    /// shard N uses `tcp_port + N`. 0: any.
    pub tcp_port: u16,
    /// Media event loops; 0 means one per CPU core.
    pub shards: usize,
    /// Also take ICE-TCP on the HTTPS listener and announce it as a
    /// candidate on the public HTTPS port, for networks that let out
    /// nothing but TCP to port 443 (docs/deployment.md).
    pub tcp_on_https: bool,
    /// ICE-TCP connections one shard holds at once; more are closed as
    /// soon as they are accepted (and logged).
    pub tcp_max_connections: usize,
    /// Seconds an ICE-TCP connection has to send a STUN binding request
    /// that a peer connection accepts; otherwise it is closed.
    pub tcp_first_stun_secs: u64,
    /// Seconds after which an ICE-TCP connection that has received nothing
    /// is closed.
    pub tcp_idle_secs: u64,
    /// STUN/TURN servers handed to clients in `joined`.
    pub ice_servers: Vec<IceServerConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServerConfig {
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

/// The staff console (`/console/`): docs/console.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// Ask for a TOTP code after the password (turn off only for a demo).
    pub require_totp: bool,
    /// Minutes without activity after which a console session ends (a
    /// fraction is allowed; the page warns a minute before).
    pub idle_timeout_minutes: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttendanceSection {
    /// Print the 42 CFR Part 2 notice on every export.
    pub notice_enabled: bool,
    /// The notice's text.
    pub notice: String,
    /// First day of the weekly IOP report's week: "sunday" or "monday".
    pub week_start: WeekStart,
    /// Minutes on one day for that day to count toward payers' daily minimum.
    pub daily_minimum_minutes: u32,
    /// Weekly minimum for the program's patients (540 adult, 360 adolescent).
    pub weekly_minimum_minutes: u32,
    /// Weekly hours above which a patient is flagged (IOP: 19).
    pub weekly_maximum_hours: u32,
    /// Seconds between durable presence heartbeats of each connection; after
    /// a crash, open presence is closed at the last one.
    pub heartbeat_secs: u64,
    /// Seconds between scheduled verifications of the ledger's chain (the
    /// first at start); a break is logged and raised as a
    /// `ledger.verify_failed` webhook. 0: only when someone asks.
    pub verify_every_secs: u64,
}

/// Webhook delivery (docs/webhooks.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksSection {
    /// A PEM file of CA certificates trusted for receivers, besides the
    /// system's roots (a clinic's private CA).
    pub ca_file: Option<PathBuf>,
    /// The first retry's nominal wait in seconds; each next one doubles.
    pub retry_base_seconds: f64,
    /// Attempts per delivery, the first included, before it fails and the
    /// endpoint is marked failing (15 with a 5 s base: about 23 hours).
    pub max_attempts: u32,
    /// Seconds a receiver has to answer one delivery (connect: at most 5).
    pub timeout_seconds: f64,
    /// Days a finished delivery (delivered, or failed for good) is kept for
    /// `GET /v1/webhooks/{id}/deliveries` and replay before it is purged.
    pub keep_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeekStart {
    Sunday,
    Monday,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// A tracing filter, e.g. "info" or "tandem=debug,info".
    pub filter: String,
    /// "text" for people, "json" for log collectors.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The 42 CFR Part 2 notice printed on exports by default.
pub(crate) const DEFAULT_NOTICE: &str =
    "This record is protected by federal confidentiality rules \
(42 CFR part 2). The federal rules prohibit you from making any further disclosure of \
information in this record that identifies a patient as having or having had a substance use \
disorder either directly, by reference to publicly available information, or through \
verification of such identification by another person unless further disclosure is expressly \
permitted by the written consent of the individual whose information is being disclosed or as \
otherwise permitted by 42 CFR part 2.";

impl Default for Config {
    fn default() -> Self {
        Config {
            public_url: "https://localhost:8443".into(),
            data_dir: "data".into(),
            server: ServerSection {
                listen: "0.0.0.0:8443".parse().expect("valid literal"),
                redirect_listen: None,
                shutdown_grace_secs: 10,
                max_connections: 4096,
                max_connections_per_ip: 256,
                tls_handshake_timeout_secs: 10,
                header_read_timeout_secs: 10,
                idle_timeout_secs: 60,
                http2_max_concurrent_streams: 100,
            },
            tls: TlsSection {
                cert_file: "certs/cert.pem".into(),
                key_file: "certs/key.pem".into(),
                min_version: "1.2".into(),
                reload_interval_secs: 10,
            },
            database: DatabaseSection {
                path: None,
                url: None,
            },
            auth: AuthSection {
                signing_key_file: None,
            },
            sessions: SessionsSection {
                default_timezone: "UTC".into(),
                early_join_minutes: 15,
                overrun_grace_minutes: 30,
                clinician_grace_minutes: 5,
                e2ee: tandem_protocol::E2eeMode::Off,
                max_participants: 20,
                failed_joins_per_minute: 10,
                messages_per_second: 20,
                message_burst: 100,
            },
            media: MediaSection {
                bind_ip: None,
                public_ip: None,
                udp_port: 50000,
                tcp_port: 50000,
                shards: 0,
                tcp_on_https: true,
                tcp_max_connections: 1024,
                tcp_first_stun_secs: 10,
                tcp_idle_secs: 30,
                ice_servers: Vec::new(),
            },
            attendance: AttendanceSection {
                notice_enabled: true,
                notice: DEFAULT_NOTICE.into(),
                week_start: WeekStart::Sunday,
                daily_minimum_minutes: 180,
                weekly_minimum_minutes: 540,
                weekly_maximum_hours: 19,
                heartbeat_secs: 15,
                verify_every_secs: 3600,
            },
            log: LogSection {
                filter: "info".into(),
                format: LogFormat::Text,
            },
            webhooks: WebhooksSection {
                ca_file: None,
                retry_base_seconds: 5.0,
                max_attempts: 15,
                timeout_seconds: 10.0,
                keep_days: 30,
            },
            console: ConsoleSection {
                require_totp: true,
                idle_timeout_minutes: 15.0,
            },
            node: NodeSection {
                id: None,
                public_url: None,
                max_participants: 500,
            },
        }
    }
}

/// One problem with the configuration, tied to the key that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

/// Every problem found, so an operator fixes them in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for p in &self.0 {
            writeln!(f, "  {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the defaults, then `file` (when given), then `TANDEM_*` variables
    /// from `env`, and validates the result.
    pub fn load(file: Option<&Path>, env: Env) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(vec![ConfigProblem {
                    key: "--config".into(),
                    message: format!("file {} does not exist", file.display()),
                }]));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let config: Config = figment.merge(env).extract().map_err(from_figment)?;
        config.validate()?;
        Ok(config)
    }

    /// The process environment's `TANDEM_*` variables.
    pub fn env() -> Env {
        Env::prefixed("TANDEM_").split("__").map(|key| {
            // `TANDEM_DATABASE_URL`, the name such a setting usually has,
            // is `database.url` as `TANDEM_DATABASE__URL` is.
            if key.as_str().eq_ignore_ascii_case("database_url") {
                "database.url".into()
            } else {
                key.into()
            }
        })
    }

    /// Checks every value that the types alone do not; returns all problems.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, message: String| {
            problems.push(ConfigProblem {
                key: key.into(),
                message,
            })
        };
        if let Err(message) = parse_public_url(&self.public_url) {
            bad("public_url", message);
        }
        if let Some(url) = &self.node.public_url {
            if let Err(message) = parse_public_url(url) {
                bad("node.public_url", message);
            }
        }
        if let Some(id) = &self.node.id {
            if let Err(message) = check_node_id(id) {
                bad("node.id", message);
            }
        }
        let idle = self.console.idle_timeout_minutes;
        if !(idle > 0.0 && idle <= 720.0) {
            bad(
                "console.idle_timeout_minutes",
                format!("must be more than 0 and at most 720 (12 h), not {idle}"),
            );
        }
        if self.tls.min_version != "1.2" && self.tls.min_version != "1.3" {
            bad(
                "tls.min_version",
                format!("must be \"1.2\" or \"1.3\", not {:?}", self.tls.min_version),
            );
        }
        if self
            .sessions
            .default_timezone
            .parse::<chrono_tz::Tz>()
            .is_err()
        {
            bad(
                "sessions.default_timezone",
                format!(
                    "{:?} is not an IANA time zone (e.g. \"America/New_York\")",
                    self.sessions.default_timezone
                ),
            );
        }
        for (key, value) in [
            (
                "sessions.early_join_minutes",
                self.sessions.early_join_minutes,
            ),
            (
                "sessions.overrun_grace_minutes",
                self.sessions.overrun_grace_minutes,
            ),
            (
                "sessions.clinician_grace_minutes",
                self.sessions.clinician_grace_minutes,
            ),
        ] {
            if value > 240 {
                bad(
                    key,
                    format!("{value} minutes is more than the limit of 240"),
                );
            }
        }
        if !(2..=50).contains(&self.sessions.max_participants) {
            bad(
                "sessions.max_participants",
                format!(
                    "must be between 2 and 50, not {}",
                    self.sessions.max_participants
                ),
            );
        }
        if !(1..=10_000).contains(&self.sessions.message_burst) {
            bad(
                "sessions.message_burst",
                format!(
                    "must be between 1 and 10000, not {}",
                    self.sessions.message_burst
                ),
            );
        }
        if self.server.redirect_listen.is_some()
            && self.server.redirect_listen == Some(self.server.listen)
            && self.server.listen.port() != 0
        {
            bad(
                "server.redirect_listen",
                "must differ from server.listen".into(),
            );
        }
        let server = &self.server;
        for (key, value, min, max) in [
            (
                "server.max_connections",
                server.max_connections,
                16,
                1_000_000,
            ),
            (
                "server.max_connections_per_ip",
                server.max_connections_per_ip,
                8,
                server.max_connections.max(8),
            ),
            (
                "server.http2_max_concurrent_streams",
                server.http2_max_concurrent_streams as usize,
                10,
                1000,
            ),
            (
                "media.tcp_max_connections",
                self.media.tcp_max_connections,
                8,
                1_000_000,
            ),
        ] {
            if !(min..=max).contains(&value) {
                bad(key, format!("must be between {min} and {max}, not {value}"));
            }
        }
        for (key, value, max) in [
            (
                "server.tls_handshake_timeout_secs",
                server.tls_handshake_timeout_secs,
                120,
            ),
            (
                "server.header_read_timeout_secs",
                server.header_read_timeout_secs,
                120,
            ),
            ("server.idle_timeout_secs", server.idle_timeout_secs, 3600),
            (
                "media.tcp_first_stun_secs",
                self.media.tcp_first_stun_secs,
                120,
            ),
            ("media.tcp_idle_secs", self.media.tcp_idle_secs, 3600),
        ] {
            if !(1..=max).contains(&value) {
                bad(
                    key,
                    format!("must be between 1 and {max} seconds, not {value}"),
                );
            }
        }
        for (key, ip) in [
            ("media.bind_ip", self.media.bind_ip),
            ("media.public_ip", self.media.public_ip),
        ] {
            if ip.is_some_and(|ip| ip.is_unspecified() || ip.is_multicast()) {
                bad(
                    key,
                    "must be a concrete address that browsers can reach, not 0.0.0.0 or multicast"
                        .into(),
                );
            }
        }
        if self.media.shards > 64 {
            bad(
                "media.shards",
                format!("{} is more than 64", self.media.shards),
            );
        }
        for (i, server) in self.media.ice_servers.iter().enumerate() {
            if server.urls.is_empty() {
                bad(
                    &format!("media.ice_servers[{i}].urls"),
                    "must list at least one URL".into(),
                );
            }
            for url in &server.urls {
                if !["stun:", "stuns:", "turn:", "turns:"]
                    .iter()
                    .any(|p| url.starts_with(p))
                {
                    bad(
                        &format!("media.ice_servers[{i}].urls"),
                        format!("{url:?} is not a stun:, stuns:, turn: or turns: URL"),
                    );
                }
            }
        }
        if !(1..=300).contains(&self.attendance.heartbeat_secs) {
            bad(
                "attendance.heartbeat_secs",
                format!(
                    "must be between 1 and 300, not {}",
                    self.attendance.heartbeat_secs
                ),
            );
        }
        if self.attendance.daily_minimum_minutes > 24 * 60 {
            bad(
                "attendance.daily_minimum_minutes",
                "is more than a day".into(),
            );
        }
        if self.attendance.weekly_minimum_minutes > 7 * 24 * 60 {
            bad(
                "attendance.weekly_minimum_minutes",
                "is more than a week".into(),
            );
        }
        if !(0.01..=3600.0).contains(&self.webhooks.retry_base_seconds) {
            bad(
                "webhooks.retry_base_seconds",
                format!(
                    "must be between 0.01 and 3600, not {}",
                    self.webhooks.retry_base_seconds
                ),
            );
        }
        if !(1..=3650).contains(&self.webhooks.keep_days) {
            bad(
                "webhooks.keep_days",
                format!(
                    "must be between 1 and 3650, not {}",
                    self.webhooks.keep_days
                ),
            );
        }
        if !(1..=30).contains(&self.webhooks.max_attempts) {
            bad(
                "webhooks.max_attempts",
                format!(
                    "must be between 1 and 30, not {}",
                    self.webhooks.max_attempts
                ),
            );
        }
        if !(0.1..=60.0).contains(&self.webhooks.timeout_seconds) {
            bad(
                "webhooks.timeout_seconds",
                format!(
                    "must be between 0.1 and 60, not {}",
                    self.webhooks.timeout_seconds
                ),
            );
        }
        if let Some(ca) = &self.webhooks.ca_file {
            if !ca.is_file() {
                bad(
                    "webhooks.ca_file",
                    format!("{} is not a readable file", ca.display()),
                );
            }
        }
        if let Some(url) = &self.database.url {
            if let Err(problem) = Location::parse(url) {
                bad("database.url", problem);
            } else if self.database.path.is_some() {
                bad(
                    "database.url",
                    "database.path is set too: name the database with one of them".into(),
                );
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.filter).is_err() {
            bad(
                "log.filter",
                format!("{:?} is not a valid tracing filter", self.log.filter),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems))
        }
    }

    /// `public_url` parsed; valid after [`Config::validate`].
    pub(crate) fn public_url(&self) -> Url {
        parse_public_url(&self.public_url).expect("validated at load")
    }

    /// The database: `database.url` when set (valid after
    /// [`Config::validate`]), else the SQLite file [`Config::database_path`].
    pub fn database(&self) -> Location {
        match &self.database.url {
            Some(url) => Location::parse(url).expect("validated at load"),
            None => Location::Sqlite(self.database_path()),
        }
    }

    /// The SQLite file named by `database.path` (or its default); see
    /// [`Config::database`] for the database actually used.
    pub fn database_path(&self) -> PathBuf {
        self.database
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("tandem.db"))
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.auth
            .signing_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("signing-key.pem"))
    }

    /// `node.public_url` (or `public_url`) parsed; valid after
    /// [`Config::validate`].
    pub fn node_public_url(&self) -> Url {
        let raw = self.node.public_url.as_deref().unwrap_or(&self.public_url);
        parse_public_url(raw).expect("validated at load")
    }

    /// Where a generated node id is kept.
    pub fn node_id_path(&self) -> PathBuf {
        self.data_dir.join("node-id")
    }

    pub(crate) fn default_timezone(&self) -> chrono_tz::Tz {
        self.sessions
            .default_timezone
            .parse()
            .expect("validated at load")
    }
}

/// A node id: what the cluster's rows and the logs name a node by.
pub fn check_node_id(id: &str) -> Result<(), String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > 64 || !id.chars().all(fine) {
        return Err(format!(
            "{id:?} is not a node id: use 1 to 64 letters, digits, '.', '_' or '-'"
        ));
    }
    Ok(())
}

fn parse_public_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "must start with https:// (Tandem serves only HTTPS), not {raw:?}"
        ));
    }
    if url.host_str().is_none() {
        return Err(format!("{raw:?} has no host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "must be an origin like https://video.clinic.example, without a path, not {raw:?}"
        ));
    }
    Ok(url)
}

fn from_figment(error: figment::Error) -> ConfigError {
    ConfigError(
        error
            .into_iter()
            .map(|e| {
                let key = if e.path.is_empty() {
                    "(top level)".to_string()
                } else {
                    e.path.join(".")
                };
                let source = e
                    .metadata
                    .as_ref()
                    .map(|m| match &m.source {
                        Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
                        _ => format!(" (from {})", m.name),
                    })
                    .unwrap_or_default();
                ConfigProblem {
                    key,
                    message: format!("{}{}", e.kind, source),
                }
            })
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
mod tests {
    use super::*;
    use std::io::Write;

    fn load_toml(text: &str) -> Result<Config, ConfigError> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        Config::load(Some(file.path()), Env::prefixed("TANDEM_TEST_UNUSED_"))
    }

    fn keys(err: ConfigError) -> Vec<String> {
        err.0.into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let config = load_toml("").unwrap();
        assert_eq!(config.database_path(), PathBuf::from("data/tandem.db"));
        assert_eq!(config.sessions.early_join_minutes, 15);
        assert_eq!(config.sessions.overrun_grace_minutes, 30);
    }

    #[test]
    fn the_example_file_in_the_repository_is_valid() {
        let example = include_str!("../tandem.example.toml");
        let config = load_toml(example).unwrap();
        assert_eq!(config.public_url, "https://video.clinic.example");
    }

    #[test]
    fn plain_http_public_url_names_the_key() {
        let err = load_toml("public_url = \"http://clinic.example\"").unwrap_err();
        assert_eq!(keys(err.clone()), ["public_url"]);
        assert!(err.to_string().contains("https://"), "{err}");
    }

    #[test]
    fn public_url_with_a_path_is_refused() {
        let err = load_toml("public_url = \"https://clinic.example/video\"").unwrap_err();
        assert_eq!(keys(err), ["public_url"]);
    }

    #[test]
    fn a_bad_node_id_or_node_url_names_its_key() {
        let err = load_toml("[node]\nid = \"node 2\"\npublic_url = \"http://node-2.example\"")
            .unwrap_err();
        assert_eq!(keys(err), ["node.public_url", "node.id"]);
    }

    #[test]
    fn a_node_is_reached_at_public_url_unless_told_otherwise() {
        let config = load_toml("").unwrap();
        assert_eq!(config.node_public_url().as_str(), "https://localhost:8443/");
        let config = load_toml("[node]\npublic_url = \"https://node-2.example\"").unwrap();
        assert_eq!(config.node_public_url().as_str(), "https://node-2.example/");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_toml("[server]\nlisten_addr = \"0.0.0.0:1\"").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("listen_addr"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = load_toml("[server]\nlisten = \"not an address\"").unwrap_err();
        assert_eq!(keys(err), ["server.listen"]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = load_toml(
            "[tls]\nmin_version = \"1.0\"\n[sessions]\ndefault_timezone = \"Mars/Base\"\nmax_participants = 1\n",
        )
        .unwrap_err();
        assert_eq!(
            keys(err),
            [
                "tls.min_version",
                "sessions.default_timezone",
                "sessions.max_participants"
            ]
        );
    }

    #[test]
    fn media_addresses_must_be_concrete() {
        let err = load_toml(
            "[media]\nbind_ip = \"0.0.0.0\"\nice_servers = [{ urls = [\"http://x\"] }]\n",
        )
        .unwrap_err();
        assert_eq!(keys(err), ["media.bind_ip", "media.ice_servers[0].urls"]);
        let ok = load_toml(
            "[media]\nbind_ip = \"10.0.0.5\"\npublic_ip = \"203.0.113.7\"\nice_servers = [{ urls = [\"stun:stun.example:3478\"] }]\n",
        )
        .unwrap();
        assert_eq!(ok.media.public_ip, Some("203.0.113.7".parse().unwrap()));
    }

    #[test]
    fn connection_limits_are_checked() {
        let err = load_toml(
            "[server]\nmax_connections = 0\nmax_connections_per_ip = 100000\nidle_timeout_secs = 0\n\
             [media]\ntcp_first_stun_secs = 0\n",
        )
        .unwrap_err();
        assert_eq!(
            keys(err),
            [
                "server.max_connections",
                "server.max_connections_per_ip",
                "server.idle_timeout_secs",
                "media.tcp_first_stun_secs"
            ]
        );
    }

    #[test]
    fn unknown_log_format_is_named() {
        let err = load_toml("[log]\nformat = \"xml\"").unwrap_err();
        assert_eq!(keys(err), ["log.format"]);
    }

    #[test]
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "public_url = \"https://a.example\"")?;
            jail.set_env("TANDEM_PUBLIC_URL", "https://b.example");
            jail.set_env("TANDEM_SERVER__LISTEN", "127.0.0.1:9443");
            let config = Config::load(Some(Path::new("t.toml")), Config::env()).unwrap();
            assert_eq!(config.public_url, "https://b.example");
            assert_eq!(config.server.listen.port(), 9443);
            Ok(())
        });
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TANDEM_SESSIONS__EARLY_JOIN_MINUTES", "soon");
            let err = Config::load(None, Config::env()).unwrap_err();
            assert_eq!(err.0[0].key, "sessions.early_join_minutes");
            assert!(err.to_string().contains("TANDEM_"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_database_url_comes_from_the_file_or_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "[database]\nurl = \"sqlite://x/t.db\"")?;
            let config = Config::load(Some(Path::new("t.toml")), Config::env()).unwrap();
            assert_eq!(config.database(), Location::Sqlite("x/t.db".into()));
            let url = "postgres://tandem:s3cret@db.example/tandem";
            jail.set_env("TANDEM_DATABASE_URL", url);
            let config = Config::load(Some(Path::new("t.toml")), Config::env()).unwrap();
            assert_eq!(config.database(), Location::Postgres(url.into()));
            jail.set_env("TANDEM_DATABASE__URL", "mysql://root:s3cret@db/t");
            jail.set_env("TANDEM_DATABASE_URL", "mysql://root:s3cret@db/t");
            let err = Config::load(Some(Path::new("t.toml")), Config::env()).unwrap_err();
            assert_eq!(keys(err.clone()), ["database.url"]);
            assert!(!err.to_string().contains("s3cret"), "{err}");
            Ok(())
        });
        let config = load_toml("").unwrap();
        assert_eq!(
            config.database(),
            Location::Sqlite(PathBuf::from("data/tandem.db"))
        );
        let both = load_toml("[database]\npath = \"a.db\"\nurl = \"sqlite://b.db\"");
        assert_eq!(keys(both.unwrap_err()), ["database.url"]);
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let err =
            Config::load(Some(Path::new("/nonexistent/tandem.toml")), Config::env()).unwrap_err();
        assert_eq!(keys(err), ["--config"]);
    }
}
