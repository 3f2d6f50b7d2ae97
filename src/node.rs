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
