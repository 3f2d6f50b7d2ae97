//! The `tandem` command.
//!
//! `serve` and `demo` run the server; the other commands act on the same
//! database directly, for the operator on the server machine. They share
//! the server's configuration (`--config FILE`, `TANDEM_*` variables) or a
//! bare `--data-dir DIR`, and the same rules ([`crate::schedule::Scheduler`])
//! as the REST API.

mod admin;
mod attendance;

pub use admin::create_api_key;
mod demo;
mod forward;
mod scheduling;
mod sessions;
mod staff;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::auth::signing_key::SigningKey;
use crate::config::{Config, LogFormat};
use crate::schedule::Scheduler;
use crate::server::{self, Listeners};
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "tandem",
    version,
    about = "Secure video sessions for virtual IOP programs"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (HTTPS only) with a configuration file.
    Serve {
        /// The TOML configuration file (see tandem.example.toml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Accept a database file of 0 bytes and make it a new, empty
        /// database (without it, such a file is refused: it is usually a
        /// truncated file or a failed restore).
        #[arg(long)]
        init: bool,
        /// On SIGTERM, drain instead of stopping: take no new rooms, let
        /// the live rooms run to their end, then stop (SIGINT or a second
        /// SIGTERM stops at once). For upgrades that drop no session.
        #[arg(long)]
        drain: bool,
    },
    /// Try Tandem on this machine: development certificates, a demo session
    /// and its join links, then the server.
    Demo(demo::DemoArgs),
    /// Schedule, list and cancel sessions.
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
    /// Issue a join link for everyone on a session's roster.
    Invite(sessions::InviteArgs),
    /// People and their weekly availability.
    #[command(subcommand)]
    People(scheduling::PeopleCommand),
    /// Common free slots of several people.
    Slots(scheduling::SlotsArgs),
    /// Recurring series of sessions.
    #[command(subcommand)]
    Series(scheduling::SeriesCommand),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Apikey(admin::ApiKeyCommand),
    /// Check a configuration.
    #[command(subcommand)]
    Config(admin::ConfigCommand),
    /// Attendance reports and the ledger's verification.
    #[command(subcommand)]
    Attendance(attendance::AttendanceCommand),
    /// Staff accounts for the console (add, disable, reset, list).
    #[command(subcommand)]
    Staff(staff::StaffCommand),
    /// Staff tokens for people using the API.
    #[command(subcommand)]
    Token(attendance::TokenCommand),
    /// Drive synthetic rooms against a server and measure loss, latency
    /// and join time: runs the separate `tandem-load` binary with these
    /// arguments (docs/benchmarks.md).
    #[command(disable_help_flag = true)]
    LoadTest(forward::Forwarded),
    /// A bare UDP relay, the machine's ceiling for load-test comparisons:
    /// runs the separate `tandem-relay` binary with these arguments.
    #[command(disable_help_flag = true)]
    UdpRelay(forward::Forwarded),
}

/// Where a command finds the database: the server's configuration, or just
/// a data directory.
#[derive(Debug, Clone, Args)]
pub(crate) struct DbArgs {
    /// The server's TOML configuration file.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The data directory (database, signing key); overrides the config's.
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
}

impl DbArgs {
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref(), Config::env())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    }

    /// The configuration and a scheduler on its database.
    async fn open(&self) -> anyhow::Result<(Config, Scheduler)> {
        let config = self.load()?;
        let scheduler = open_scheduler(&config, false).await?;
        Ok((config, scheduler))
    }
}

/// The scheduler on `config`'s database; `init` accepts a 0-byte database
/// file as a new one.
async fn open_scheduler(config: &Config, init: bool) -> anyhow::Result<Scheduler> {
    let store = open_store(config, init).await?;
    scheduler_on(config, store)
}

/// `config`'s database; `init` accepts a 0-byte database file as a new
/// one.
async fn open_store(config: &Config, init: bool) -> anyhow::Result<Store> {
    use anyhow::Context;
    crate::private_file::private_dir(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let location = config.database();
    let store = Store::connect(&location, init)
        .await
        .with_context(|| format!("cannot open the database {location}"))?;
    Ok(store)
}

/// The scheduler on `store`, with `config`'s signing key and defaults.
fn scheduler_on(config: &Config, store: Store) -> anyhow::Result<Scheduler> {
    let key = SigningKey::load_or_generate(&config.signing_key_path())?;
    Ok(Scheduler::new(
        store,
        key,
        config.sessions.clone(),
        config.public_url(),
    ))
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn serve(config_file: Option<PathBuf>, init: bool, drain: bool) -> anyhow::Result<()> {
    let config = Config::load(config_file.as_deref(), Config::env())?;
    init_logging(&config);
    let listeners = Listeners::bind(&config.server)?;
    let signals = server::StopSignals::listen()?;
    let running = server::start_with(config, listeners, server::Options { init }).await?;
    running.run_until(signals, drain).await
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::LoadTest(args) => return forward::run("tandem-load", args),
        Command::UdpRelay(args) => return forward::run("tandem-relay", args),
        _ => {}
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve {
                config,
                init,
                drain,
            } => serve(config, init, drain).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Sessions(command) => sessions::run(command).await,
            Command::Invite(args) => sessions::invite(args).await,
            Command::People(command) => scheduling::people(command).await,
            Command::Slots(args) => scheduling::slots(args).await,
            Command::Series(command) => scheduling::series(command).await,
            Command::Apikey(command) => admin::api_key(command).await,
            Command::Config(command) => admin::config(command),
            Command::Attendance(command) => attendance::run(command).await,
            Command::Token(command) => attendance::token(command).await,
            Command::Staff(command) => staff::run(command).await,
            Command::LoadTest(_) | Command::UdpRelay(_) => unreachable!("forwarded above"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
