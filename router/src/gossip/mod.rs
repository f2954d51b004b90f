//! Gossip among the cluster's nodes (`cluster.toml` `[gossip]`): every node, whatever its
//! role, runs chitchat (scuttlebutt reconciliation, phi-accrual failure detection) over UDP
//! on its `peer` port number, sealed with the cluster secret ([`transport`]). It spreads
//!
//! - each node's metadata: `role`, `version`, its listeners, and its load (`load.sessions`
//!   on entries, `load.rss_kb`), refreshed every [`LOAD_EVERY_MS`];
//! - a small application key/value set: each node owns its own keys (`app.<key>`), set and
//!   removed through an entry's admin API, readable on every node.
//!
//! Entries publish what gossip shows on `$fox/gossip/...` ([`events`]). Gossip is advice:
//! nothing is ordered, acknowledged, leased or fenced by it. Liveness by gossip is shown
//! beside the lease state the log decides (`$fox/cluster/members/<id>`), never instead of
//! it: a node that gossip calls dead keeps its lease until the log says otherwise.

pub mod events;
pub mod transport;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use fox_cluster::ClusterFile;
use serde::Serialize;

use transport::{Refusals, SealedUdp};

/// The prefix of application keys in a node's gossip state.
pub const APP_PREFIX: &str = "app.";
/// Application keys per node, at most.
pub const APP_KEYS_MAX: usize = 32;
/// An application key's length, at most (letters, digits, `_` and `-`).
pub const APP_KEY_MAX_BYTES: usize = 64;
/// An application value's length, at most. With [`APP_KEYS_MAX`] this keeps a node's
/// state, and so any gossip datagram of a cluster of a few dozen nodes, within one UDP
/// datagram.
pub const APP_VALUE_MAX_BYTES: usize = 256;
/// How often a node refreshes its load in its gossip state.
pub const LOAD_EVERY_MS: u64 = 2_000;

/// Why an application key was not written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The key's name is not allowed.
    #[error("a gossip key is 1..={APP_KEY_MAX_BYTES} letters, digits, '_' or '-'")]
    InvalidKey,
    /// The value is too long.
    #[error("a gossip value is at most {APP_VALUE_MAX_BYTES} bytes")]
    ValueTooLong,
    /// The node holds as many keys as it may.
    #[error("a node holds at most {APP_KEYS_MAX} gossip keys")]
    TooManyKeys,
}

/// Whether `key` may name an application key.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= APP_KEY_MAX_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One node as gossip shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeView {
    /// Node ID.
    pub id: u32,
    /// Its life (its start time, Unix ms).
    pub generation: u64,
    /// Its gossip address.
    pub address: String,
    /// Whether the failure detector holds it alive (this node always is).
    pub live: bool,
    /// Its metadata (`role`, `version`, listeners, `load.*`).
    pub meta: BTreeMap<String, String>,
    /// Its application keys (without the `app.` prefix).
    pub app: BTreeMap<String, String>,
}

/// Where the [`Gossip`] of this node stands, for the admin API.
#[derive(Debug, Serialize)]
pub struct GossipView {
    /// This node.
    pub node: u32,
    /// Every node gossip knows, by ID.
    pub nodes: Vec<NodeView>,
    /// Datagrams dropped for want of a valid seal.
    pub refused_datagrams: u64,
    /// Messages too large to seal (not sent).
    pub oversized_messages: u64,
}

/// This node's gossip.
pub struct Gossip {
    handle: ChitchatHandle,
    node: u32,
    refusals: Arc<Refusals>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip").field("node", &self.node).finish()
    }
}

impl Gossip {
    /// Starts node `id`'s gossip with `meta` as its first metadata; `None` when the
    /// cluster file turns gossip off. Every other node of the file is a seed.
    pub async fn start(
        cluster: &ClusterFile,
        id: u32,
        generation: u64,
        meta: Vec<(String, String)>,
    ) -> anyhow::Result<Option<Arc<Gossip>>> {
        let settings = &cluster.gossip;
        if !settings.enabled {
            return Ok(None);
        }
        let spec = cluster
            .node(id)
            .ok_or_else(|| anyhow::anyhow!("node {id} is not in the cluster file"))?;
        let interval = Duration::from_millis(settings.interval_ms);
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(id.to_string(), generation, spec.peer),
            cluster_id: cluster.name.clone(),
            gossip_interval: interval,
            listen_addr: spec.peer,
            seed_nodes: cluster
                .nodes
                .iter()
                .filter(|n| n.id != id)
                .map(|n| n.peer.to_string())
                .collect(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: settings.phi_threshold,
                initial_interval: interval * 2,
                dead_node_grace_period: Duration::from_secs(3_600),
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3_600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let refusals = Arc::new(Refusals::default());
        let transport = SealedUdp::new(&cluster.secret_bytes()?, &cluster.name, refusals.clone());
        let handle = spawn_chitchat(config, meta, &transport).await?;
        tracing::info!(node = id, address = %spec.peer, "gossip started (UDP)");
        Ok(Some(Arc::new(Gossip {
            handle,
            node: id,
            refusals,
        })))
    }

    /// This node's ID.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// Sets keys of this node's metadata (its load, say).
    pub async fn set_meta(&self, pairs: Vec<(String, String)>) {
        self.handle
            .with_chitchat(|chitchat| {
                let state = chitchat.self_node_state();
                for (key, value) in &pairs {
                    if state.get(key) != Some(value.as_str()) {
                        state.set(key, value);
                    }
                }
            })
            .await;
    }

    /// Sets this node's application key `key` to `value`.
    pub async fn set_app(&self, key: &str, value: &str) -> Result<(), KeyError> {
        if !valid_key(key) {
            return Err(KeyError::InvalidKey);
        }
        if value.len() > APP_VALUE_MAX_BYTES {
            return Err(KeyError::ValueTooLong);
        }
        let full = format!("{APP_PREFIX}{key}");
        self.handle
            .with_chitchat(|chitchat| {
                let state = chitchat.self_node_state();
                let held = state.iter_prefix(APP_PREFIX).count();
                if !state.contains_key(&full) && held >= APP_KEYS_MAX {
                    return Err(KeyError::TooManyKeys);
                }
                if state.get(&full) != Some(value) {
                    state.set(&full, value);
                }
                Ok(())
            })
            .await
    }

    /// Removes this node's application key `key`; whether it was there.
    pub async fn delete_app(&self, key: &str) -> Result<bool, KeyError> {
        if !valid_key(key) {
            return Err(KeyError::InvalidKey);
        }
        let full = format!("{APP_PREFIX}{key}");
        Ok(self
            .handle
            .with_chitchat(|chitchat| {
                let state = chitchat.self_node_state();
                let held = state.get(&full).is_some();
                if held {
                    state.delete(&full);
                }
                held
            })
            .await)
    }

    /// Every node gossip knows (the latest life of each), by ID.
    pub async fn nodes(&self) -> Vec<NodeView> {
        self.handle
            .with_chitchat(|chitchat| {
                let live: HashSet<ChitchatId> = chitchat.live_nodes().cloned().collect();
                let mut latest: BTreeMap<u32, NodeView> = BTreeMap::new();
                for (id, state) in chitchat.node_states() {
                    let Ok(node) = id.node_id.parse::<u32>() else {
                        continue;
                    };
                    if latest
                        .get(&node)
                        .is_some_and(|v| v.generation > id.generation_id)
                    {
                        continue;
                    }
                    let mut meta = BTreeMap::new();
                    let mut app = BTreeMap::new();
                    for (key, value) in state.key_values() {
                        match key.strip_prefix(APP_PREFIX) {
                            Some(name) => app.insert(name.to_owned(), value.to_owned()),
                            None => meta.insert(key.to_owned(), value.to_owned()),
                        };
                    }
                    latest.insert(
                        node,
                        NodeView {
                            id: node,
                            generation: id.generation_id,
                            address: id.gossip_advertise_addr.to_string(),
                            live: live.contains(id),
                            meta,
                            app,
                        },
                    );
                }
                latest.into_values().collect()
            })
            .await
    }

    /// The admin API's view.
    pub async fn view(&self) -> GossipView {
        use std::sync::atomic::Ordering;
        GossipView {
            node: self.node,
            nodes: self.nodes().await,
            refused_datagrams: self.refusals.unsealed.load(Ordering::Relaxed),
            oversized_messages: self.refusals.oversized.load(Ordering::Relaxed),
        }
    }

    /// Refreshes this node's load every [`LOAD_EVERY_MS`] from `load`, until the process
    /// ends.
    pub fn refresh_load(
        self: &Arc<Self>,
        load: impl Fn() -> Vec<(String, String)> + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let gossip = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(LOAD_EVERY_MS));
            loop {
                every.tick().await;
                let mut pairs = load();
                pairs.push(("load.rss_kb".into(), rss_kb().to_string()));
                gossip.set_meta(pairs).await;
            }
        })
    }
}

/// The first metadata of node `id`: role, version, listeners.
pub fn metadata(cluster: &ClusterFile, id: u32) -> Vec<(String, String)> {
    let mut meta = vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())];
    if let Some(spec) = cluster.node(id) {
        meta.push(("role".into(), spec.role.name().into()));
        let listeners: [(&str, Option<SocketAddr>); 4] = [
            ("ws", spec.ws),
            ("rawsocket", spec.rawsocket),
            ("mqtt", spec.mqtt),
            ("admin", spec.admin),
        ];
        for (name, address) in listeners {
            if let Some(address) = address {
                meta.push((name.into(), address.to_string()));
            }
        }
    }
    meta
}

/// This process's resident memory in KiB (0 where `/proc` does not tell).
fn rss_kb() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_keys_are_short_plain_names() {
        assert!(valid_key("leader-hint_2"));
        assert!(!valid_key(""));
        assert!(!valid_key("a.b"));
        assert!(!valid_key("a/b"));
        assert!(!valid_key("+"));
        assert!(!valid_key(&"k".repeat(APP_KEY_MAX_BYTES + 1)));
    }
}
