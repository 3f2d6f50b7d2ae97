//! The staff console in the browser: `node web-client/tests/console.mjs`
//! starts this build's `tandem demo` and a `tandem serve` with the second
//! factor on and a 30-second idle timeout (staff accounts made with
//! `tandem staff add`), and drives Debian's headless Chromium through
//! playwright-core: set-up link and sign-in with TOTP, an admin creating an
//! API key, CSRF refusal, a scheduler booking a weekly series from
//! suggested slots (and a clash told in words), compliance downloading a
//! weekly CSV and the export audit row naming the staff account, idle
//! logoff, lock-out, and a clinician starting a session from "Today" and
//! seeing a patient appear in the waiting count (pushed by the server).
//!
//! Skips (saying why) without Chromium or node_modules, unless
//! REQUIRE_BROWSER_CHECK=1 ([`super::browser`]).

use std::process::Command;
use std::time::Duration;

use crate::helpers::browser::{self, BrowserEnv};

/// console.mjs has its own watchdog (7 minutes); this is the last resort.
const TIMEOUT: Duration = Duration::from_secs(480);

#[test]
fn the_staff_console_signs_in_books_reports_and_shows_live_state() {
    let Some(env) =
        BrowserEnv::or_skip("the_staff_console_signs_in_books_reports_and_shows_live_state")
    else {
        return;
    };
    let mut command = Command::new(&env.node);
    command
        .arg("console.mjs")
        .current_dir(&env.dir)
        .env("TANDEM_BIN", env!("CARGO_BIN_EXE_tandem"))
        .env("TANDEM_CHROMIUM", &env.chromium)
        .env_remove("SCREENSHOTS_DIR");
    browser::run_script(command, "web-client/tests/console.mjs", TIMEOUT);
}
