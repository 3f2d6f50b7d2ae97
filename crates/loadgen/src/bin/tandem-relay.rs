//! `tandem-relay`: a bare RTP relay, the machine's forwarding ceiling that
//! benchmarks compare the server with (docs/benchmarks.md).

use std::process::ExitCode;

use clap::Parser;
use tandem_loadgen::cli::{self, UdpRelayArgs};

fn main() -> ExitCode {
    match cli::udp_relay(UdpRelayArgs::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
