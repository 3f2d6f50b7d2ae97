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

use std::process::Command;
use std::time::Duration;

use crate::helpers::browser::{self, BrowserEnv};

/// run.mjs has its own watchdog (it stops Chromium and the server and
/// exits) well before this; this is the last resort.
const TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn the_browser_client_runs_a_whole_session() {
    let Some(env) = BrowserEnv::or_skip("the_browser_client_runs_a_whole_session") else {
        return;
    };
    let mut command = Command::new(&env.node);
    command
        .arg("run.mjs")
        .current_dir(&env.dir)
        .env("TANDEM_BIN", env!("CARGO_BIN_EXE_tandem"))
        .env("TANDEM_CHROMIUM", &env.chromium)
        .env_remove("SCREENSHOTS_DIR");
    browser::run_script(command, "web-client/tests/run.mjs", TIMEOUT);
}
