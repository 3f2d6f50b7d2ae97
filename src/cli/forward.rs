//! `tandem load-test` and `tandem udp-relay` are thin forwarders to the
//! load generator's own binaries, `tandem-load` and `tandem-relay`.
//!
//! The generator carries an HTTP client, a second WebSocket/TLS stack and a
//! public root store that a server holding patient data has no use for, so
//! it lives in its own workspace member (crates/loadgen) and the server
//! binary does not link it. The subcommands stay so that scripts and habits
//! keep working: the arguments are passed on untouched, and the process
//! becomes the generator's, exit code and signals included.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// Every argument after the subcommand, passed on as it is (`--help` too).
#[derive(Debug, Args)]
pub(super) struct Forwarded {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<OsString>,
}

/// Becomes `binary` (next to this executable, or else on `PATH`) with the
/// forwarded arguments; returns only if it cannot be started.
///
/// The process is replaced rather than spawned, so a signal to `tandem
/// udp-relay` reaches the relay itself and no orphan keeps running (or
/// keeps a caller's pipe open) after the forwarder is killed.
pub(super) fn run(binary: &str, forwarded: &Forwarded) -> ExitCode {
    use std::os::unix::process::CommandExt;

    let program = sibling(binary).unwrap_or_else(|| PathBuf::from(binary));
    let error = std::process::Command::new(&program)
        .args(&forwarded.args)
        .exec();
    eprintln!(
        "error: cannot run {binary} ({error}); it is the load generator's own binary: \
         build it with `cargo build --release -p tandem-loadgen` (a workspace build \
         such as `cargo build --release` includes it)"
    );
    ExitCode::FAILURE
}

fn sibling(binary: &str) -> Option<PathBuf> {
    let path = std::env::current_exe().ok()?.with_file_name(binary);
    path.is_file().then_some(path)
}
