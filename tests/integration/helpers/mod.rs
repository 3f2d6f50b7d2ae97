//! What the integration tests share. Here: [`TestApp`], the one way they
//! spawn the server, a real Tandem server on random loopback ports, over
//! real TLS with a CA made for this test alone, with a temporary SQLite
//! database file; the HTTP client trusts only that CA. In the submodules:
//! the signaling client ([`signal_client`]), the one webrtc-rs test peer
//! ([`peer`]), the browser environment ([`browser`]), and the VP8 and IVF
//! facts the peer and the browser check rely on ([`vp8`], [`ivf`]).

pub mod browser;
pub mod cluster;
pub mod ivf;
pub mod layers;
pub mod netns;
pub mod peer;
pub mod postgres;
pub mod receiver;
pub mod serve;
pub mod signal_client;
pub mod simulcast;
pub mod vp8;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tandem::auth::ApiRole;
use tandem::config::Config;
use tandem::server::{self, Listeners, Running};
use tandem::tls::devcert::{self, DevCerts};
use tempfile::TempDir;

pub struct TestApp {
    /// `https://localhost:PORT`, the server's public_url.
    pub base: String,
    pub https_addr: SocketAddr,
    pub redirect_addr: Option<SocketAddr>,
    /// Trusts only this test's CA; `localhost` resolves to the server.
    pub client: reqwest::Client,
    /// An admin API key.
    pub admin_key: String,
    pub certs: DevCerts,
    pub config: Config,
    pub dir: TempDir,
    running: Option<Running>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns a server after `adjust` has changed the test configuration.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = devcert::generate(&dir.path().join("certs"), &["localhost".into()])
            .expect("test certificates");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.redirect_listen = Some("127.0.0.1:0".parse().unwrap());
        config.server.shutdown_grace_secs = 1;
        config.tls.cert_file = certs.cert.clone();
        config.tls.key_file = certs.key.clone();
        config.log.filter = "warn".into();
        config.media.bind_ip = Some([127, 0, 0, 1].into());
        config.media.udp_port = 0;
        config.media.tcp_port = 0;
        adjust(&mut config);

        let listeners = Listeners::bind(&config.server).expect("bind");
        let https_addr = listeners.https_addr();
        config.public_url = format!("https://localhost:{}", https_addr.port());
        config.validate().expect("valid test config");
        let running = server::start(config.clone(), listeners)
            .await
            .expect("server starts");
        let admin_key = tandem::cli::create_api_key(running.store(), ApiRole::Admin, "test admin")
            .await
            .unwrap();
        let client = client_trusting(&[&certs.ca_cert], https_addr)
            .build()
            .unwrap();
        TestApp {
            base: config.public_url.clone(),
            https_addr,
            redirect_addr: running.redirect_addr,
            client,
            admin_key,
            certs,
            config,
            dir,
            running: Some(running),
        }
    }

    /// A TestApp for a server started otherwise, from the configuration
    /// file `config` (a `tandem serve` child process the test kills and
    /// restarts): the client, the peers and the signaling client reach it
    /// as they reach a spawned one. `stop` leaves it running.
    pub fn attach(config: &Path, certs: DevCerts, admin_key: String) -> TestApp {
        let config = Config::load(Some(config), Config::env()).expect("the server's config");
        let https_addr = config.server.listen;
        let client = client_trusting(&[&certs.ca_cert], https_addr)
            .build()
            .unwrap();
        TestApp {
            base: config.public_url.clone(),
            https_addr,
            redirect_addr: None,
            client,
            admin_key,
            certs,
            config,
            dir: tempfile::tempdir().expect("temp dir"),
            running: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `GET /healthz`'s body, whatever its status.
    pub async fn health(&self) -> serde_json::Value {
        self.client
            .get(self.url("/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// A new API key with `role`.
    pub async fn api_key(&self, role: ApiRole) -> String {
        tandem::cli::create_api_key(self.running().store(), role, "test")
            .await
            .unwrap()
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&self.admin_key)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.admin_key)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .delete(self.url(path))
            .bearer_auth(&self.admin_key)
    }

    /// An admin's note on `participant` in `session`'s attendance (a ledger
    /// event); panics unless 201.
    pub async fn annotate(&self, session: &str, participant: &str, text: &str) {
        let response = self
            .post(&format!("/v1/attendance/sessions/{session}/annotations"))
            .json(&serde_json::json!({"participant_id": participant, "text": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "annotating {participant}");
    }

    /// Creates a session and returns its JSON; panics unless 201.
    pub async fn create_session(&self, body: &Value) -> Value {
        let response = self.post("/v1/sessions").json(body).send().await.unwrap();
        let status = response.status();
        let json: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "{json}");
        json
    }

    pub async fn invites(&self, session: &str) -> Vec<Value> {
        let response = self
            .post(&format!("/v1/sessions/{session}/invites"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["invites"].as_array().unwrap().clone()
    }

    /// Creates a session whose rostered people are admitted once the
    /// clinician is in (`auto_admit`), and returns its links' tokens by
    /// participant id.
    pub async fn auto_admitted_session(
        &self,
        mut body: Value,
    ) -> std::collections::HashMap<String, String> {
        body["settings"] = json!({"auto_admit": true});
        let session = self.create_session(&body).await;
        self.invite_tokens(session["id"].as_str().unwrap()).await
    }

    /// Issues the session's links and returns their tokens by participant id.
    pub async fn invite_tokens(&self, session: &str) -> std::collections::HashMap<String, String> {
        self.invites(session)
            .await
            .iter()
            .map(|i| {
                (
                    i["participant_id"].as_str().unwrap().to_owned(),
                    signal_client::invite_token(i),
                )
            })
            .collect()
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.config.signing_key_path()
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

/// A client that trusts only `cas` and resolves `localhost` to `addr`.
pub fn client_trusting(cas: &[&PathBuf], addr: SocketAddr) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .https_only(true)
        .tls_info(true)
        .resolve("localhost", addr)
        .timeout(std::time::Duration::from_secs(10));
    for ca in cas {
        let pem = std::fs::read(ca).unwrap();
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    builder
}

/// A couple session starting `start_minutes` from now and lasting `minutes`.
/// Tests schedule several of these for the same three people at once, so
/// the body says they overlap on purpose (`allow_overlap`); the rule that
/// refuses double-booking is tested in `scheduling`.
pub fn couple_session(start_minutes: i64, minutes: i64) -> Value {
    let start = chrono::Utc::now() + chrono::Duration::minutes(start_minutes);
    let end = start + chrono::Duration::minutes(minutes);
    json!({
        "title": "Joint session",
        "kind": "couple",
        "starts_at": start.to_rfc3339(),
        "ends_at": end.to_rfc3339(),
        "timezone": "America/New_York",
        "clinician": {"id": "clin-1", "name": "Dr Rivera"},
        "participants": [
            {"id": "pat-1", "name": "Alex Morgan", "role": "patient"},
            {"id": "par-1", "name": "Sam Morgan", "role": "partner"}
        ],
        "allow_overlap": true
    })
}

/// Decodes a JWT's payload without verifying it.
pub fn jwt_payload(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
