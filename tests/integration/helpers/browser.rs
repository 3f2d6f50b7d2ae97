//! What the browser tests need besides the test server and the test peer:
//! whether Chromium, Node and playwright-core are here ([`BrowserEnv`], the
//! skip policy), the child process `node web-client/tests/call.mjs`
//! ([`BrowserRun`]) of the browser check ([`crate::browser`]), and the key
//! pin Chromium is given for the test server's certificate
//! ([`spki_sha256_base64`]), what the Firefox and WebKitGTK scripts need
//! besides ([`firefox_or_skip`], [`webkit_or_skip`]), and running a
//! script to its end ([`run_script`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinHandle;

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

/// base64(SHA-256(SubjectPublicKeyInfo DER)) of the key in `key_pem`: the
/// value of Chromium's `--ignore-certificate-errors-spki-list`, which makes
/// it accept a certificate for exactly that key and no other.
pub fn spki_sha256_base64(key_pem: &Path) -> anyhow::Result<String> {
    use base64::Engine as _;
    use rcgen::PublicKeyData as _;
    use sha2::Digest as _;
    let pem = std::fs::read_to_string(key_pem)
        .with_context(|| format!("reading {}", key_pem.display()))?;
    let key = rcgen::KeyPair::from_pem(&pem).context("parsing the server key")?;
    let digest = sha2::Sha256::digest(key.subject_public_key_info());
    Ok(base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The arguments of call.mjs.
pub struct CallArgs<'a> {
    pub url: &'a str,
    pub session: &'a str,
    pub token: &'a str,
    pub spki: &'a str,
    pub expect_stream: &'a str,
    pub frames: u32,
    pub timeout: Duration,
    /// The address the URL's host name resolves to, when not the usual.
    pub resolve: Option<std::net::IpAddr>,
}

/// `node call.mjs …` running: Chromium in a room.
pub struct BrowserRun {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr_lines: Arc<Mutex<Vec<String>>>,
    stderr_task: JoinHandle<()>,
}

impl BrowserRun {
    pub fn start(env: &BrowserEnv, args: &CallArgs<'_>) -> anyhow::Result<BrowserRun> {
        let frames = args.frames.to_string();
        let timeout = args.timeout.as_millis().to_string();
        let resolve = args.resolve.map(|ip| ip.to_string());
        let mut named = vec![
            ("--url", args.url),
            ("--session", args.session),
            ("--token", args.token),
            ("--spki", args.spki),
            ("--expect-stream", args.expect_stream),
            ("--frames", &frames),
            ("--timeout-ms", &timeout),
        ];
        if let Some(ip) = &resolve {
            named.push(("--resolve", ip));
        }
        Self::script(env, "call.mjs", &named)
    }

    /// `group.mjs`: the real web client in Chromium, joined to `session`
    /// of `app` with `token` (a clinician's), driven by commands on stdin.
    pub fn web_client(
        env: &BrowserEnv,
        app: &super::TestApp,
        session: &str,
        token: &str,
    ) -> anyhow::Result<BrowserRun> {
        let spki = spki_sha256_base64(&app.certs.key)?;
        BrowserRun::script(
            env,
            "group.mjs",
            &[
                ("--url", &app.base),
                ("--session", session),
                ("--token", token),
                ("--spki", &spki),
            ],
        )
    }

    /// `node SCRIPT --name value…` in web-client/tests, with its stdin,
    /// stdout and stderr piped (screenshots go where `SCREENSHOTS_DIR` says,
    /// if it is set).
    pub fn script(
        env: &BrowserEnv,
        script: &str,
        args: &[(&str, &str)],
    ) -> anyhow::Result<BrowserRun> {
        let mut command = tokio::process::Command::new(&env.node);
        command.arg(script);
        for (name, value) in args {
            command.args([name, value]);
        }
        let mut child = command
            .current_dir(&env.dir)
            .env("TANDEM_CHROMIUM", &env.chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {script}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let mut stderr = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr_lines.clone();
        let stderr_task = tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                // Captured by the test harness: shown when the test fails
                // (or always with --nocapture).
                eprintln!("{line}");
                lines.lock().expect("stderr lines").push(line);
            }
        });
        Ok(BrowserRun {
            child,
            stdin,
            stdout,
            stderr_lines,
            stderr_task,
        })
    }

    /// Waits for the `RESULT {json}` line: Chromium decoded the frames.
    pub async fn wait_result(&mut self, timeout: Duration) -> anyhow::Result<Value> {
        let outcome = tokio::time::timeout(timeout, async {
            loop {
                match self.stdout.next_line().await {
                    Ok(Some(line)) => {
                        if let Some(json) = line.strip_prefix("RESULT ") {
                            return serde_json::from_str::<Value>(json)
                                .with_context(|| format!("unreadable result {json}"));
                        }
                        if let Some(json) = line.strip_prefix("FAILED ") {
                            anyhow::bail!("the browser side failed: {json}");
                        }
                        eprintln!("[browser stdout] {line}");
                    }
                    Ok(None) => anyhow::bail!("node exited without a result"),
                    Err(e) => anyhow::bail!("reading node's output: {e}"),
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(e.context(self.transcript())),
            Err(_) => Err(anyhow::anyhow!(
                "no result from the browser within {timeout:?}\n{}",
                self.transcript()
            )),
        }
    }

    /// Sends one command line to the script and waits for its `RESULT`.
    pub async fn command(&mut self, line: &str, timeout: Duration) -> anyhow::Result<Value> {
        use tokio::io::AsyncWriteExt as _;
        let stdin = self.stdin.as_mut().context("stdin is closed")?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        self.wait_result(timeout)
            .await
            .with_context(|| format!("command {line:?}"))
    }

    /// Lets the browser go (closes its stdin) and waits for a clean exit;
    /// stops it (SIGTERM, then SIGKILL) if it does not exit in `timeout`.
    pub async fn finish(mut self, timeout: Duration) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.stop().await;
                anyhow::bail!(
                    "node did not exit within {timeout:?}\n{}",
                    self.transcript()
                );
            }
        };
        // Let the stderr forwarder drain.
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.stderr_task).await;
        anyhow::ensure!(
            status.success(),
            "node exited with {status}\n{}",
            self.transcript()
        );
        Ok(())
    }

    /// Asks node to close Chromium (SIGTERM: playwright closes the browser
    /// on it), then kills it.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }

    /// What node said on stderr, for failure messages.
    pub fn transcript(&self) -> String {
        let lines = self.stderr_lines.lock().expect("stderr lines");
        format!("browser log:\n  {}", lines.join("\n  "))
    }
}

/// What the scripts beyond Chromium's need besides [`BrowserEnv`]:
/// Firefox ESR and puppeteer-core (firefox.mjs), and a network namespace
/// of their own (root, `unshare` and `ip`) to give Firefox an address
/// other than loopback. `None` after saying why the test is skipped;
/// panics instead when [`REQUIRE_VAR`] is set to 1.
pub fn firefox_or_skip(test: &str) -> Option<(BrowserEnv, PathBuf)> {
    let env = BrowserEnv::or_skip(test)?;
    let firefox = std::env::var_os("TANDEM_FIREFOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/firefox-esr"));
    let mut missing = Vec::new();
    if !firefox.is_file() {
        missing.push(format!("no Firefox at {}", firefox.display()));
    }
    if !env
        .dir
        .join("node_modules/puppeteer-core/package.json")
        .is_file()
    {
        missing.push(format!(
            "no {}/node_modules/puppeteer-core",
            env.dir.display()
        ));
    }
    let netns = std::process::Command::new("unshare")
        .args(["-n", "--", "ip", "link", "show", "lo"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !netns.is_ok_and(|s| s.success()) {
        missing.push("no network namespace (needs root, `unshare` and `ip`)".to_owned());
    }
    if missing.is_empty() {
        return Some((env, firefox));
    }
    skip_or_fail(
        test,
        "the Firefox check",
        &missing,
        "install firefox-esr and run `npm ci` in web-client/tests (as root)",
    );
    None
}

/// What webkit.mjs needs besides [`BrowserEnv`] (its clinician is in
/// Chromium).
pub struct WebKitEnv {
    /// WebKitWebDriver (Debian's webkit2gtk-driver).
    pub driver: PathBuf,
    /// MiniBrowser, the browser WebKitWebDriver starts
    /// (libwebkit2gtk-4.1-0 ships it under /usr/lib/<arch>/webkit2gtk-4.1).
    pub minibrowser: PathBuf,
    /// xvfb-run: MiniBrowser needs an X display.
    pub xvfb_run: PathBuf,
}

/// Debian's WebKitGTK with its WebDriver, an X server to run it in, and
/// selenium-webdriver (webkit.mjs). `None` after saying why the test is
/// skipped; panics instead when [`REQUIRE_VAR`] is set to 1.
pub fn webkit_or_skip(test: &str) -> Option<(BrowserEnv, WebKitEnv)> {
    let env = BrowserEnv::or_skip(test)?;
    let mut missing = Vec::new();
    let driver = match std::env::var_os("TANDEM_WEBKITDRIVER") {
        Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
        None => on_path("WebKitWebDriver"),
    };
    let minibrowser = match std::env::var_os("TANDEM_MINIBROWSER") {
        Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
        None => std::fs::read_dir("/usr/lib").ok().and_then(|dirs| {
            dirs.flatten().find_map(|dir| {
                let candidate = dir.path().join("webkit2gtk-4.1/MiniBrowser");
                candidate.is_file().then_some(candidate)
            })
        }),
    };
    let xvfb_run = on_path("xvfb-run");
    if driver.is_none() {
        missing.push("no WebKitWebDriver (PATH or TANDEM_WEBKITDRIVER)".to_owned());
    }
    if minibrowser.is_none() {
        missing.push("no MiniBrowser (/usr/lib/*/webkit2gtk-4.1 or TANDEM_MINIBROWSER)".to_owned());
    }
    if xvfb_run.is_none() {
        missing.push("no xvfb-run on PATH".to_owned());
    }
    if !env
        .dir
        .join("node_modules/selenium-webdriver/package.json")
        .is_file()
    {
        missing.push(format!(
            "no {}/node_modules/selenium-webdriver",
            env.dir.display()
        ));
    }
    if let (Some(driver), Some(minibrowser), Some(xvfb_run)) = (driver, minibrowser, xvfb_run) {
        if missing.is_empty() {
            return Some((
                env,
                WebKitEnv {
                    driver,
                    minibrowser,
                    xvfb_run,
                },
            ));
        }
    }
    skip_or_fail(
        test,
        "the WebKitGTK check",
        &missing,
        "install webkit2gtk-driver, xvfb and xauth \
         (apt-get install --no-install-recommends) and run `npm ci` in web-client/tests",
    );
    None
}

/// The first `name` in PATH's directories.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A check that cannot run: a failure when [`REQUIRE_VAR`] is 1, else a
/// skip that says why, past the test harness's capture.
fn skip_or_fail(test: &str, check: &str, missing: &[String], how: &str) {
    let missing = missing.join("; ");
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{test}: {REQUIRE_VAR}=1 but {check} cannot run: {missing}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipped: {missing}. Run .ci/run, or {how}; set {REQUIRE_VAR}=1 to make this \
         a failure."
    );
}

/// Runs `node web-client/tests/SCRIPT` (a Chromium script that starts its
/// own `tandem demo`) for `test`, or skips as [`BrowserEnv::or_skip`] says.
pub fn run_chromium_script(test: &str, script: &str, timeout: Duration) {
    let Some(env) = BrowserEnv::or_skip(test) else {
        return;
    };
    let mut command = std::process::Command::new(&env.node);
    command
        .arg(script)
        .current_dir(&env.dir)
        .env("TANDEM_BIN", env!("CARGO_BIN_EXE_tandem"))
        .env("TANDEM_CHROMIUM", &env.chromium)
        .env_remove("SCREENSHOTS_DIR");
    run_script(command, &format!("web-client/tests/{script}"), timeout);
}

/// Whole-session browser scripts run one at a time: each starts its own
/// server and Chromium with several pages (hundreds of MB and most of a
/// core), and several at once on a two-core machine starve each other
/// into timeouts that say nothing about the client.
static ONE_SCRIPT_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs a browser script (`node SCRIPT` or a wrapper around it) to its end
/// or `timeout`, and fails the test with its output unless it exits 0.
/// The scripts have their own watchdogs; the timeout is the last resort
/// (counted from the script's start, after its turn comes).
pub fn run_script(mut command: std::process::Command, what: &str, timeout: Duration) {
    use std::io::Read as _;
    let _turn = ONE_SCRIPT_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = std::time::Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    // Drain both pipes on threads so that a chatty run cannot block.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
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
        if started.elapsed() > timeout {
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
            "{what} failed ({status}) after {:?}:\n{stdout}",
            started.elapsed()
        ),
        None => panic!("{what} did not finish within {timeout:?}:\n{stdout}"),
    }
}
