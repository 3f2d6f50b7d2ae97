//! The `tandem` binary; see `tandem --help`.

fn main() -> std::process::ExitCode {
    tandem::cli::main()
}
