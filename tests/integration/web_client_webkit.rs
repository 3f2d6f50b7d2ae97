//! The browser client in WebKit's engine (Safari's), as far as Debian lets
//! it be tested: `xvfb-run -a node web-client/tests/webkit.mjs` drives
//! Debian's WebKitGTK (MiniBrowser, through WebKitWebDriver and
//! selenium-webdriver) against this build's `tandem demo` over real TLS,
//! with a clinician in Chromium.
//!
//! Debian's WebKitGTK has no WebRTC, so a WebKitGTK user is refused in
//! words ("This browser can't join video sessions", naming the browsers
//! that can) and never joins: the clinician sees no one waiting. The
//! screens before a call (the pre-call page with WebKit's mock camera and
//! microphone, the attestation, the waiting room) are then checked in the
//! same engine with a stand-in `RTCPeerConnection` the test gives the page;
//! no call can be made there (docs/browsers.md).
//!
//! Without WebKitWebDriver, MiniBrowser, xvfb-run, Chromium or the npm
//! packages the test says why and passes, unless REQUIRE_BROWSER_CHECK=1
//! (CI).

use std::process::Command;
use std::time::Duration;

use crate::helpers::browser;

/// webkit.mjs stops everything itself after 90 s; this is the last resort.
const TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn webkitgtk_is_refused_in_words_and_shows_the_screens_before_a_call() {
    let Some((env, webkit)) = browser::webkit_or_skip(
        "webkitgtk_is_refused_in_words_and_shows_the_screens_before_a_call",
    ) else {
        return;
    };
    let mut command = Command::new(&webkit.xvfb_run);
    command
        // A free display of its own; the screen as large as the window.
        .args(["-a", "-s", "-screen 0 1280x1024x24"])
        .arg(&env.node)
        .arg("webkit.mjs")
        .current_dir(&env.dir)
        .env("TANDEM_BIN", env!("CARGO_BIN_EXE_tandem"))
        .env("TANDEM_CHROMIUM", &env.chromium)
        .env("TANDEM_WEBKITDRIVER", &webkit.driver)
        .env("TANDEM_MINIBROWSER", &webkit.minibrowser)
        .env_remove("SCREENSHOTS_DIR");
    browser::run_script(command, "web-client/tests/webkit.mjs", TIMEOUT);
}
