//! `tandem-load`: synthetic rooms with real WebRTC peers against a Tandem
//! server; see `tandem-load --help` and docs/benchmarks.md.

use std::process::ExitCode;

use clap::Parser;
use tandem_loadgen::cli::{self, LoadTestArgs};

fn main() -> ExitCode {
    let args = LoadTestArgs::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::load_test(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
