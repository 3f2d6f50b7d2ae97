//! A PostgreSQL for tests: one cluster per test run, one database per test.
//!
//! `TANDEM_TEST_POSTGRES_URL` (a server on which the URL's role may
//! `CREATE DATABASE`) is used when set. Otherwise the first test that asks
//! starts a throw-away cluster of its own: `initdb -A trust` in a fresh
//! directory under /tmp and `pg_ctl start` on a free loopback port, with
//! the directory as its socket directory, run as the `postgres` user
//! (`runuser`) when the tests run as root (PostgreSQL refuses to run as
//! root); it is stopped when the test binary exits. Each test then gets a
//! database of its own, `t_<random>`.
//!
//! Without PostgreSQL (no server binaries, no URL) a test that needs it
//! prints why it is skipped and returns, unless `REQUIRE_POSTGRES=1` (CI):
//! then it fails, saying what is missing.
//!
//! This file is shared: the integration tests use it as a module and the
//! store's own test suite includes it (`#[path]`), so it depends on std,
//! rand, libc, url and sqlx only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sqlx::{Connection, Executor};

/// Set to 1 where PostgreSQL tests must run (CI): then they fail instead
/// of skipping when there is no PostgreSQL.
pub const REQUIRE_VAR: &str = "REQUIRE_POSTGRES";
/// A server to use instead of a cluster of the tests' own.
pub const URL_VAR: &str = "TANDEM_TEST_POSTGRES_URL";

/// The test run's server: a URL without a database name, or why there is
/// none.
fn server() -> &'static Result<Server, String> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Ok(Server { url, cluster: None }),
        _ => start_cluster(),
    })
}

struct Server {
    /// `postgres://user@host:port/` plus the database name makes a URL.
    url: String,
    /// The data directory of a cluster this run started (to stop at exit).
    #[allow(dead_code)]
    cluster: Option<PathBuf>,
}

/// A new, empty database on the test run's PostgreSQL: its URL. `None`
/// (after printing why) when PostgreSQL is absent and not required.
pub async fn database(test: &str) -> Option<String> {
    let server = match server() {
        Ok(server) => server,
        Err(why) => {
            if std::env::var(REQUIRE_VAR).as_deref() == Ok("1") {
                panic!("{test}: PostgreSQL is required ({REQUIRE_VAR}=1) but {why}");
            }
            eprintln!(
                "skipped {test}: {why} (install Debian's postgresql, or set {URL_VAR}; \
                 {REQUIRE_VAR}=1 makes this a failure)"
            );
            return None;
        }
    };
    Some(create_database(&server.url, test).await)
}

/// A new database `t_<random>` on the server at `server_url`: its URL.
async fn create_database(server_url: &str, test: &str) -> String {
    let name = format!("t_{:016x}", rand::random::<u64>());
    let admin = with_database(server_url, "postgres");
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot connect to the test PostgreSQL: {e}"));
    // C collation: text sorts by bytes, as in SQLite.
    conn.execute(
        format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
        )
        .as_str(),
    )
    .await
    .unwrap_or_else(|e| panic!("{test}: cannot create a test database: {e}"));
    let _ = conn.close().await;
    with_database(server_url, &name)
}

/// `url` naming database `name` instead.
fn with_database(url: &str, name: &str) -> String {
    let mut url = url::Url::parse(url).expect("a PostgreSQL URL");
    url.set_path(name);
    url.to_string()
}

/// The directory of PostgreSQL's server programs, if installed.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("pg_ctl").exists() && bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        ["/usr/local/bin", "/usr/bin"]
            .into_iter()
            .map(PathBuf::from)
            .find(|bin| bin.join("pg_ctl").exists() && bin.join("initdb").exists())
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL program, as `postgres` when we are root.
fn run_as_postgres(program: &Path, args: &[&str]) -> Result<(), String> {
    let root = is_root();
    let mut command = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let output = command
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {} failed: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The cluster to stop at exit: `(pg_ctl, data directory)`.
static STARTED: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();

extern "C" fn stop_cluster() {
    if let Some((pg_ctl, dir)) = STARTED.get() {
        let data = dir.join("data");
        let _ = run_as_postgres(
            pg_ctl,
            &[
                "stop",
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-s",
            ],
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn start_cluster() -> Result<Server, String> {
    let cluster = Cluster::create()?;
    let _ = STARTED.set((cluster.pg_ctl.clone(), cluster.dir.clone()));
    // SAFETY: registers a plain function to run at exit.
    unsafe { libc::atexit(stop_cluster) };
    cluster.start()?;
    Ok(Server {
        url: cluster.url(),
        cluster: Some(cluster.dir),
    })
}

/// A PostgreSQL cluster the tests made: its programs, directory and port.
struct Cluster {
    pg_ctl: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    /// A new cluster (`initdb`) in a fresh directory, not yet started.
    fn create() -> Result<Cluster, String> {
        let bin =
            binaries().ok_or("PostgreSQL's server programs (initdb, pg_ctl) are not installed")?;
        let root = is_root();
        if root
            && Command::new("id")
                .arg("postgres")
                .output()
                .map_or(true, |o| !o.status.success())
        {
            return Err("there is no `postgres` user to run the test cluster as".into());
        }
        // Under /tmp, not a 0700 temporary directory of root's: the postgres
        // user must reach it.
        let dir = std::env::temp_dir().join(format!(
            "tandem-pg-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if root {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .map_err(|e| format!("cannot run chown: {e}"))?;
            if !status.success() {
                return Err(format!("cannot give {} to postgres", dir.display()));
            }
        }
        let data = dir.join("data");
        let data_s = data.to_string_lossy().into_owned();
        run_as_postgres(
            &bin.join("initdb"),
            &[
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
                &data_s,
            ],
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        Ok(Cluster {
            pg_ctl: bin.join("pg_ctl"),
            dir,
            port,
        })
    }

    /// `postgres://postgres@127.0.0.1:PORT/`, without a database.
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/", self.port)
    }

    /// Starts it, and waits until it takes connections.
    fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            self.port,
            self.dir.display()
        );
        run_as_postgres(
            &self.pg_ctl,
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &self.dir.join("data").to_string_lossy(),
                "-l",
                &self.dir.join("server.log").to_string_lossy(),
                "-o",
                &options,
            ],
        )
    }

    /// Stops it (`-m fast`: every connection is cut), and waits until it has.
    fn stop(&self) -> Result<(), String> {
        run_as_postgres(
            &self.pg_ctl,
            &[
                "stop",
                "-w",
                "-m",
                "fast",
                "-D",
                &self.dir.join("data").to_string_lossy(),
            ],
        )
    }
}

/// A cluster of one test's own, for a test that takes PostgreSQL away:
/// the run's shared cluster serves other tests meanwhile. Stopped and
/// removed when dropped.
#[allow(dead_code)]
pub struct OwnCluster {
    cluster: Cluster,
    /// The test's database on it.
    pub database_url: String,
}

#[allow(dead_code)]
impl OwnCluster {
    /// A started cluster with a database for `test`; `None` (after saying
    /// why) when PostgreSQL is absent and not required.
    pub async fn start(test: &str) -> Option<OwnCluster> {
        let made = Cluster::create().and_then(|cluster| cluster.start().map(|()| cluster));
        let cluster = match made {
            Ok(cluster) => cluster,
            Err(why) => {
                if std::env::var(REQUIRE_VAR).as_deref() == Ok("1") {
                    panic!("{test}: PostgreSQL is required ({REQUIRE_VAR}=1) but {why}");
                }
                eprintln!("skipped {test}: {why}");
                return None;
            }
        };
        let database_url = create_database(&cluster.url(), test).await;
        Some(OwnCluster {
            cluster,
            database_url,
        })
    }

    /// PostgreSQL goes away (`pg_ctl stop -m fast`).
    pub fn stop(&self) -> Result<(), String> {
        self.cluster.stop()
    }

    /// PostgreSQL comes back on the same port.
    pub fn start_again(&self) -> Result<(), String> {
        self.cluster.start()
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = run_as_postgres(
            &self.cluster.pg_ctl,
            &[
                "stop",
                "-D",
                &self.cluster.dir.join("data").to_string_lossy(),
                "-m",
                "immediate",
                "-s",
            ],
        );
        let _ = std::fs::remove_dir_all(&self.cluster.dir);
    }
}
