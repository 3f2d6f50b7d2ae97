//! The real `tandem serve` binary as a child process, for what only a
//! process shows: a `kill -9`, a SIGTERM and its exit status, a restart on
//! the same data. Tests reach it through [`TestApp::attach`]; servers that
//! need none of this are [`TestApp::spawn`]ed in-process.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::TestApp;

pub const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

/// How a child server is configured; the rest is the same for every test
/// (loopback media on free ports, heartbeats every second).
pub struct ServeOptions {
    pub shutdown_grace_secs: u64,
    pub log_filter: &'static str,
    /// A port the server keeps across restarts; a free one if `None`.
    pub port: Option<u16>,
    /// The address HTTPS and media listen on (and media announces).
    pub ip: IpAddr,
    /// The ICE-TCP port of `[media]`; 0: any.
    pub tcp_port: u16,
    /// `database.url` (a PostgreSQL database: [`super::postgres`]); the
    /// SQLite file in the data directory when `None`.
    pub database_url: Option<String>,
    /// More of the configuration file (whole sections, e.g. a cluster
    /// node's `[node]` and `[auth]`).
    pub extra_toml: String,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            shutdown_grace_secs: 1,
            log_filter: "warn",
            port: None,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tcp_port: 0,
            database_url: None,
            extra_toml: String::new(),
        }
    }
}

/// A `tandem serve` process, killed when dropped while it runs.
pub struct ServeProcess {
    child: Option<Child>,
    log: PathBuf,
}

/// Writes `dir/tandem.toml` for a server with its data in `data`, makes a
/// development certificate and an admin API key, and returns the
/// [`TestApp`] that reaches it (not yet started: see
/// [`ServeProcess::start`]).
pub fn prepare(dir: &Path, data: &Path, options: &ServeOptions) -> (PathBuf, TestApp) {
    let certs = tandem::tls::devcert::generate(&dir.join("certs"), &["localhost".into()]).unwrap();
    let port = options.port.unwrap_or_else(|| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    });
    let config = dir.join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            r#"public_url = "https://localhost:{port}"
data_dir = {data:?}

[server]
listen = "{ip}:{port}"
shutdown_grace_secs = {grace}

[tls]
cert_file = {cert:?}
key_file = {key:?}

[media]
bind_ip = "{ip}"
udp_port = 0
tcp_port = {tcp_port}
shards = 2

[attendance]
heartbeat_secs = 1

[log]
filter = "{filter}"
{database}{extra}"#,
            ip = options.ip,
            tcp_port = options.tcp_port,
            grace = options.shutdown_grace_secs,
            filter = options.log_filter,
            database = options
                .database_url
                .as_ref()
                .map(|url| format!("\n[database]\nurl = {url:?}\n"))
                .unwrap_or_default(),
            extra = options.extra_toml,
            cert = certs.cert,
            key = certs.key,
        ),
    )
    .unwrap();
    let mut apikey = std::process::Command::new(TANDEM);
    apikey
        .args(["apikey", "create", "--role", "admin", "--data-dir"])
        .arg(data);
    if let Some(url) = &options.database_url {
        apikey.env("TANDEM_DATABASE_URL", url);
    }
    let output = apikey.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let admin_key = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let app = TestApp::attach(&config, certs, admin_key);
    (config, app)
}

impl ServeProcess {
    /// Starts `tandem serve --config config`, its log in `log`, and waits
    /// (up to 20 s) until `app` gets 200 from `/healthz`.
    pub async fn start(config: &Path, log: &Path, app: &TestApp) -> ServeProcess {
        Self::start_with(Command::new(TANDEM), config, log, app).await
    }

    /// [`ServeProcess::start`], through `command` (which runs `tandem`,
    /// e.g. `ip netns exec NS tandem`).
    pub async fn start_with(
        command: Command,
        config: &Path,
        log: &Path,
        app: &TestApp,
    ) -> ServeProcess {
        Self::start_with_args(command, &[], config, log, app).await
    }

    /// [`ServeProcess::start_with`], with more arguments to `serve` (e.g.
    /// `--drain`).
    pub async fn start_with_args(
        mut command: Command,
        extra: &[&str],
        config: &Path,
        log: &Path,
        app: &TestApp,
    ) -> ServeProcess {
        let child = command
            .arg("serve")
            .args(extra)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("tandem serve starts");
        let serve = ServeProcess {
            child: Some(child),
            log: log.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = app.client.get(app.url("/healthz")).send().await {
                if r.status() == 200 {
                    return serve;
                }
            }
            assert!(
                Instant::now() < deadline,
                "tandem serve did not come up: {}",
                serve.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown of any kind.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`...) and returns at once.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Sends SIGTERM and returns at once.
    pub fn send_sigterm(&self) {
        let child = self.child.as_ref().expect("running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Its exit status if it exits within `timeout`.
    pub async fn exited_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits (up to 30 s) for the process to exit.
    pub async fn sigterm(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "SIGTERM did not stop tandem serve"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free port below the kernel's ephemeral range: a restarted server
/// needs the same port again, seconds later, and no `bind(0)` or outgoing
/// connection of the tests running in parallel can take it meanwhile.
pub fn free_port_outside_the_ephemeral_range() -> u16 {
    let first_ephemeral: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let low = 20_000.min(first_ephemeral / 2);
    (0..200)
        .map(|_| rand::random::<u16>() % (first_ephemeral - low) + low)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port")
}
