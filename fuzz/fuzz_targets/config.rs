//! Any configuration file: loading it never panics; it is either a valid
//! configuration or an error that names keys.
#![no_main]

use std::io::Write;

use figment::providers::Env;
use libfuzzer_sys::fuzz_target;
use tandem::config::Config;

fuzz_target!(|toml: &[u8]| {
    let mut file = tempfile_in_shm();
    file.write_all(toml).expect("writable scratch file");
    let path = file_path();
    // Only the file: the fuzzer's own environment must not leak in.
    match Config::load(Some(&path), Env::prefixed("TANDEM_FUZZ_NEVER_SET_")) {
        Ok(config) => assert!(config.validate().is_ok()),
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});

fn file_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tandem-fuzz-config-{}.toml", std::process::id()))
}

fn tempfile_in_shm() -> std::fs::File {
    std::fs::File::create(file_path()).expect("a scratch file in the temp dir")
}
