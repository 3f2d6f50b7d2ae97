//! Whether the browser tests can run here: Chromium, Node 20 or newer and
//! the playwright-core package of web-client/tests. Shared by the browser
//! check (tests/browser.rs) and the browser client test
//! (tests/web_client.rs), which both skip with a reason when something is
//! missing, unless CI asks for them.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Whether the browser check can run here: Chromium, Node and the
/// playwright-core package of web-client/tests.
pub struct BrowserEnv {
    pub chromium: PathBuf,
    pub node: PathBuf,
    /// web-client/tests, where call.mjs and node_modules are.
    pub dir: PathBuf,
}

/// Set (to 1) where the browser check must run (CI): missing tools fail
/// the test instead of skipping it.
pub const REQUIRE_VAR: &str = "REQUIRE_BROWSER_CHECK";

impl BrowserEnv {
    /// What is missing, if anything.
    pub fn detect() -> Result<BrowserEnv, String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("web-client/tests");
        let chromium = std::env::var_os("TANDEM_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        let mut missing = Vec::new();
        if !chromium.is_file() {
            missing.push(format!("no Chromium at {}", chromium.display()));
        }
        let node = PathBuf::from("node");
        match std::process::Command::new(&node).arg("--version").output() {
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
        if missing.is_empty() {
            Ok(BrowserEnv {
                chromium,
                node,
                dir,
            })
        } else {
            Err(missing.join("; "))
        }
    }

    /// The environment, or `None` after saying why the test is skipped;
    /// panics instead when [`REQUIRE_VAR`] is set to 1.
    pub fn or_skip(test: &str) -> Option<BrowserEnv> {
        match Self::detect() {
            Ok(env) => Some(env),
            Err(missing) => {
                if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                    panic!("{test}: {REQUIRE_VAR}=1 but the browser check cannot run: {missing}");
                }
                // Straight to stderr, past the test harness's capture, so a
                // skip is seen even when the test "passes".
                let _ = writeln!(
                    std::io::stderr(),
                    "{test}: skipped: {missing}. Run .ci/run, or install chromium \
                     (apt-get install --no-install-recommends chromium) and run `npm ci` \
                     in web-client/tests; set {REQUIRE_VAR}=1 to make this a failure."
                );
                None
            }
        }
    }
}
