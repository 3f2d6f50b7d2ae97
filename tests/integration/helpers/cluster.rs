//! A cluster for tests: several real `tandem serve` processes on loopback,
//! on one PostgreSQL database of their own ([`super::postgres`]).
//!
//! Every node has its own port, data directory, certificate and admin API
//! key, and a fixed id (`node-a`, `node-b`, ...: placement breaks ties by
//! id, so a new room goes to `node-a` when all are idle). They share the
//! database and the invite signing key (`auth.signing_key_file`), as the
//! nodes of a real cluster must (docs/deployment.md).

use std::path::PathBuf;

use serde_json::Value;
use tandem::store::event::Event;
use tandem::store::{Location, Store};
use tempfile::TempDir;

use super::serve::{self, ServeOptions, ServeProcess};
use super::TestApp;

/// One node: how the tests reach it, and its process.
pub struct ClusterNode {
    pub id: String,
    pub app: TestApp,
    pub process: Option<ServeProcess>,
    pub log: PathBuf,
}

pub struct TestCluster {
    pub nodes: Vec<ClusterNode>,
    pub database: String,
    _dir: TempDir,
}

impl TestCluster {
    /// Starts `count` nodes, one after the other (the first makes the
    /// signing key the others read). `None` when PostgreSQL is absent and
    /// not required (the test is skipped).
    pub async fn start(test: &str, count: usize) -> Option<TestCluster> {
        Self::start_with(test, count, &[]).await
    }

    /// [`TestCluster::start`], each node run as `tandem serve ARGS…`
    /// (e.g. `--drain`).
    pub async fn start_with(test: &str, count: usize, args: &[&str]) -> Option<TestCluster> {
        let database = super::postgres::database(test).await?;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("signing-key.pem");
        let mut nodes = Vec::new();
        for n in 0..count {
            let id = format!("node-{}", (b'a' + n as u8) as char);
            let home = dir.path().join(&id);
            std::fs::create_dir_all(&home).unwrap();
            let options = ServeOptions {
                database_url: Some(database.clone()),
                log_filter: "info",
                extra_toml: format!(
                    "\n[node]\nid = {id:?}\n\n[auth]\nsigning_key_file = {key:?}\n"
                ),
                ..ServeOptions::default()
            };
            let (config, app) = serve::prepare(&home, &home.join("data"), &options);
            let log = home.join("serve.log");
            let process = ServeProcess::start_with_args(
                std::process::Command::new(serve::TANDEM),
                args,
                &config,
                &log,
                &app,
            )
            .await;
            nodes.push(ClusterNode {
                id,
                app,
                process: Some(process),
                log,
            });
        }
        Some(TestCluster {
            nodes,
            database,
            _dir: dir,
        })
    }

    pub fn apps(&self) -> Vec<&TestApp> {
        self.nodes.iter().map(|n| &n.app).collect()
    }

    /// Every node's log, for a failure's message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "--- {} ---\n{}",
                    n.id,
                    std::fs::read_to_string(&n.log).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The session's attendance report (JSON), read through node `via`.
    pub async fn attendance(&self, via: usize, session: &str) -> Value {
        let response = self.nodes[via]
            .app
            .get(&format!("/v1/attendance/sessions/{session}?format=json"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// `GET /v1/attendance/verify` through node `via`.
    pub async fn verify(&self, via: usize) -> Value {
        let response = self.nodes[via]
            .app
            .get("/v1/attendance/verify")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// The session's ledger events, in order, read from the database as
    /// `verify` reads them.
    pub async fn events(&self, session: &str) -> Vec<Event> {
        let store = Store::connect(&Location::Postgres(self.database.clone()), false)
            .await
            .unwrap();
        let events = store.events_after(0, 100_000).await.unwrap();
        store.close().await;
        events
            .into_iter()
            .filter(|e| e.event.session == session)
            .collect()
    }
}
