//! The browser client end to end: `node web-client/tests/run.mjs` starts
//! this build's server (`tandem demo` on a free port, real TLS with its own
//! development CA, a temporary data directory) and drives Debian's headless
//! Chromium through playwright-core with a fake camera and microphone: a
//! couple and their clinician go through the pre-call check, the waiting
//! room, admission, the call (each page decodes the other two videos), mute
//! and camera-off, screen share, a network drop, removal, leave and end,
//! and the denied links. See the README's "The browser client".
//!
//! Needs /usr/bin/chromium (or TANDEM_CHROMIUM), Node 20 or newer and
//! `npm ci` in web-client/tests; without them the test says why and
//! passes, unless REQUIRE_BROWSER_CHECK=1 (CI), as tests/browser.rs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REQUIRE_VAR: &str = "REQUIRE_BROWSER_CHECK";
const TIMEOUT: Duration = Duration::from_secs(240);

/// What is missing to run the browser tests (empty: nothing).
fn missing(dir: &Path, chromium: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !chromium.is_file() {
        missing.push(format!("no Chromium at {}", chromium.display()));
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout);
            let major: u32 = version
                .trim()
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if major < 20 {
                missing.push(format!(
                    "node {} is older than 20 (playwright-core needs 20)",
                    version.trim()
                ));
            }
        }
        _ => missing.push("no `node` on PATH".to_owned()),
    }
    if !dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        missing.push(format!("no {}/node_modules/playwright-core", dir.display()));
    }
    missing
}

#[test]
fn the_browser_client_runs_a_whole_session() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("web-client/tests");
    let chromium = std::env::var_os("TANDEM_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let missing = missing(&dir, &chromium);
    if !missing.is_empty() {
        let missing = missing.join("; ");
        if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
            panic!("{REQUIRE_VAR}=1 but the browser client tests cannot run: {missing}");
        }
        let _ = writeln!(
            std::io::stderr(),
            "the_browser_client_runs_a_whole_session: skipped: {missing}. Run .ci/run, or \
             install chromium (apt-get install --no-install-recommends chromium) and run \
             `npm ci` in web-client/tests; set {REQUIRE_VAR}=1 to make this a failure."
        );
        return;
    }

    let started = Instant::now();
    let mut child = Command::new("node")
        .arg("run.mjs")
        .current_dir(&dir)
        .env("TANDEM_BIN", env!("CARGO_BIN_EXE_tandem"))
        .env("TANDEM_CHROMIUM", &chromium)
        .env_remove("SCREENSHOTS_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting node run.mjs");
    // Drain both pipes on threads so that a chatty run cannot block.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            // run.mjs has its own watchdog (it stops Chromium and the
            // server and exits) well before this; this is the last resort.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    eprintln!("{stderr}");
    println!("{stdout}");
    match status {
        Some(status) => assert!(
            status.success(),
            "web-client/tests/run.mjs failed ({status}) after {:?}:\n{stdout}",
            started.elapsed()
        ),
        None => panic!("web-client/tests/run.mjs did not finish within {TIMEOUT:?}:\n{stdout}"),
    }
}
