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
//! passes, unless REQUIRE_BROWSER_CHECK=1 (CI), as the browser check
//! ([`super::browser`]).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::browser::BrowserEnv;

const TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn the_browser_client_runs_a_whole_session() {
    let Some(env) = BrowserEnv::or_skip("the_browser_client_runs_a_whole_session") else {
        return;
    };

    let started = Instant::now();
    let mut child = Command::new(&env.node)
        .arg("run.mjs")
        .current_dir(&env.dir)
        .env("TANDEM_BIN", env!("CARGO_BIN_EXE_tandem"))
        .env("TANDEM_CHROMIUM", &env.chromium)
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
