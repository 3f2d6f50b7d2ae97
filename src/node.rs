//! This node: its id, the URL it is reached at, and its state in a cluster.
//!
//! The id names the node in the cluster's rows (heartbeats, leases,
//! commands) and in the logs. An operator may set it (`node.id`); otherwise
//! it is generated on the first start and kept in `<data_dir>/node-id`, so
//! that a restarted node is the same node (it takes its own leases back at
//! once, with a new epoch). `/healthz` reports the state: a single node on
//! SQLite is `alone`; the state of a cluster member is `ready` or
//! `draining` ([`crate::cluster::NodeState`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use url::Url;

use crate::cluster::NodeState;
use crate::config::{check_node_id, Config};

/// This node, shared by whoever needs to say which node it is.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: Arc<str>,
    /// Where browsers and other nodes reach this node itself.
    pub public_url: Url,
    state: watch::Sender<NodeState>,
    /// In a cluster: when the last heartbeat was written, or why the last
    /// one failed (`/healthz`).
    beat: Arc<std::sync::Mutex<Beat>>,
    /// In a cluster: the `wss:` origins of every node, for the pages'
    /// `connect-src` (a redirect crosses origins).
    origins: Arc<std::sync::RwLock<Vec<String>>>,
}

/// The outcome of this node's heartbeats.
#[derive(Debug, Default)]
struct Beat {
    written: Option<std::time::Instant>,
    failing: Option<String>,
}

impl Node {
    /// The node of `config`: its configured id, or the one kept in the data
    /// directory (generated there on the first start).
    pub fn load(config: &Config, state: NodeState) -> anyhow::Result<Node> {
        let id = match &config.node.id {
            Some(id) => id.clone(),
            None => load_or_generate(&config.node_id_path())?,
        };
        Ok(Node {
            id: id.into(),
            public_url: config.node_public_url(),
            state: watch::Sender::new(state),
            beat: Default::default(),
            origins: Default::default(),
        })
    }

    pub fn state(&self) -> NodeState {
        *self.state.borrow()
    }

    /// Starts draining: from now on the node takes no new rooms. False when
    /// it was draining already.
    pub fn drain(&self) -> bool {
        self.state.send_if_modified(|state| {
            let changed = *state != NodeState::Draining;
            *state = NodeState::Draining;
            changed
        })
    }

    /// A heartbeat was written now.
    pub(crate) fn beat_written(&self) {
        let mut beat = self.beat.lock().expect("beat lock");
        if beat.failing.take().is_some() {
            tracing::warn!(node = %self.id, "heartbeats are written again");
        }
        beat.written = Some(std::time::Instant::now());
    }

    /// A heartbeat could not be written.
    pub(crate) fn beat_failed(&self, error: String) {
        let mut beat = self.beat.lock().expect("beat lock");
        if beat.failing.is_none() {
            tracing::error!(node = %self.id, %error, "heartbeat not written: other nodes will count this node as dead");
        }
        beat.failing = Some(error);
    }

    /// Why this cluster node is not ready, if it is not: its last
    /// heartbeat failed, or none was written for
    /// [`crate::cluster::liveness::DEAD_AFTER`] (the other nodes count it
    /// as dead). A single node (`alone`) writes none and is never refused
    /// for it.
    pub fn beat_problem(&self) -> Option<String> {
        if self.state() == NodeState::Alone {
            return None;
        }
        let beat = self.beat.lock().expect("beat lock");
        let dead_after = crate::cluster::liveness::DEAD_AFTER
            .to_std()
            .expect("a positive duration");
        match (&beat.failing, beat.written) {
            (Some(error), _) => Some(format!("the heartbeat cannot be written: {error}")),
            (None, None) => Some("no heartbeat written yet".into()),
            (None, Some(at)) if at.elapsed() >= dead_after => {
                Some("no heartbeat written for 6 s".into())
            }
            _ => None,
        }
    }

    /// The cluster's nodes' `wss:` origins, as last read.
    pub(crate) fn set_cluster_origins(&self, origins: Vec<String>) {
        *self.origins.write().expect("origins lock") = origins;
    }

    /// The `wss:` origins a page served here may open sockets to (none
    /// for a single node: `'self'` is enough).
    pub(crate) fn cluster_origins(&self) -> Vec<String> {
        self.origins.read().expect("origins lock").clone()
    }

    /// The state, as it changes.
    pub fn watch(&self) -> watch::Receiver<NodeState> {
        self.state.subscribe()
    }
}

fn load_or_generate(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let id = text.trim().to_owned();
            check_node_id(&id).map_err(|problem| {
                anyhow::anyhow!(
                    "{}: {problem}; remove the file to generate a new id",
                    path.display()
                )
            })?;
            Ok(id)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            crate::private_file::write(path, format!("{id}\n").as_bytes())
                .with_context(|| format!("cannot keep the node id in {}", path.display()))?;
            tracing::info!(node = %id, "generated this node's id");
            Ok(id)
        }
        Err(error) => {
            Err(error).with_context(|| format!("cannot read the node id from {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        Config {
            data_dir: dir.to_owned(),
            ..Config::default()
        }
    }

    #[test]
    fn a_generated_id_is_kept_for_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let first = Node::load(&config(dir.path()), NodeState::Alone).unwrap();
        let again = Node::load(&config(dir.path()), NodeState::Alone).unwrap();
        assert_eq!(first.id, again.id);
        assert!(check_node_id(&first.id).is_ok());
        assert_eq!(first.state(), NodeState::Alone);
        assert!(first.drain());
        assert_eq!(first.state(), NodeState::Draining);
        assert!(!first.drain(), "draining once is enough");
    }

    #[test]
    fn a_configured_id_and_url_win() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.node.id = Some("node-2".into());
        config.node.public_url = Some("https://node-2.clinic.example".into());
        let node = Node::load(&config, NodeState::Ready).unwrap();
        assert_eq!(&*node.id, "node-2");
        assert_eq!(node.public_url.as_str(), "https://node-2.clinic.example/");
        assert!(!config.node_id_path().exists());
    }

    #[test]
    fn a_damaged_id_file_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        std::fs::write(config.node_id_path(), "no spaces please").unwrap();
        let error = Node::load(&config, NodeState::Alone)
            .unwrap_err()
            .to_string();
        assert!(error.contains("remove the file"), "{error}");
    }
}
