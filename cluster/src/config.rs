//! `cluster.toml`: who is in the cluster, where each node listens, and the shared secret.
//!
//! ```toml
//! # The cluster's name: both sides of every node link must agree on it (1..=64 bytes).
//! name = "fox"
//! # The shared secret, hex, at least 16 bytes (init writes 32 fresh random bytes).
//! # Nodes prove they know it; it never crosses the wire. Keep the file private.
//! secret = "9f2c...e1"
//!
//! [[node]]
//! id = 1                        # unique u32 node ID
//! role = "entry"                # entry | ndb | sync
//! peer = "127.0.0.1:7100"       # node-to-node address (ndb / sync listen on it)
//! ws = "127.0.0.1:7101"         # entry only: WebSocket listener (WAMP /ws, MQTT /mqtt)
//! rawsocket = "127.0.0.1:7102"  # entry only: WAMP RawSocket listener
//! mqtt = "127.0.0.1:7103"       # entry only: MQTT (TCP) listener
//! admin = "127.0.0.1:7104"      # optional: admin HTTP listener (docs/admin.md); on ndb and
//!                               # sync nodes loopback only (/healthz /readyz /metrics)
//! snapshot_interval_entries = 10000  # sync only, optional: Raft snapshot (and log
//!                               # compaction) every this many applied entries; 0: never
//!
//! [gossip]                      # optional: UDP gossip on each node's peer port
//! enabled = true                # (default) role, version, load and app keys spread
//! interval_ms = 500             # (default) gossip round
//! phi_threshold = 8.0           # (default) phi-accrual failure detector threshold
//!
//! [[node]]
//! id = 4
//! role = "ndb"
//! peer = "127.0.0.1:7115"
//! data = "data/n4"              # ndb / sync only: RocksDB directory (relative: to this file)
//! ```
//!
//! Rules ([`ClusterFile::validate`]): unique IDs, unique addresses, at least one node of
//! each role, `data` on ndb and sync nodes only, client listeners on entries only, an
//! ndb's or sync node's `admin` on loopback only. An even number of ndb or sync nodes is
//! allowed but warned about: a tier of 2n tolerates no more
//! failures than one of 2n - 1.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use fox_sequencer::config::wire_limits::{CLUSTER_NAME_MAX_BYTES, SECRET_MAX_BYTES};
use fox_sequencer::wire::{HandshakeConfig, SECRET_MIN_BYTES};
use fox_sequencer::{Membership, NodeId};
use serde::{Deserialize, Serialize};

/// Why a cluster file cannot be used.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file parses but breaks a rule.
    #[error("invalid cluster file: {0}")]
    Invalid(String),
    /// `init` would overwrite an existing cluster file.
    #[error("{0} exists already; remove it first (its secret would be lost)")]
    Exists(PathBuf),
}

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A router that accepts clients; run by the router, not `run_node`.
    Entry,
    /// A storage node: temporary history and the permanent log.
    Ndb,
    /// A voter of the sync tier (Raft).
    Sync,
}

impl Role {
    /// The name used in `cluster.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Entry => "entry",
            Role::Ndb => "ndb",
            Role::Sync => "sync",
        }
    }
}

/// One `[[node]]` of `cluster.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique node ID.
    pub id: u32,
    /// Its role.
    pub role: Role,
    /// Node-to-node address.
    pub peer: SocketAddr,
    /// Entry: WebSocket client listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<SocketAddr>,
    /// Entry: WAMP RawSocket client listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rawsocket: Option<SocketAddr>,
    /// Entry: MQTT client listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<SocketAddr>,
    /// The admin HTTP listener (metrics, health, JSON status); none without it. On an ndb
    /// or sync node: loopback only (it has no token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<SocketAddr>,
    /// ndb / sync: data directory; entry (optional): where it keeps the snapshot of the
    /// state it derives from the log. A relative path is relative to the cluster file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// Entry: its rank for the coordinator (lowest rank, then lowest ID, among the entries
    /// whose lease is live); 0 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    /// Sync: take a snapshot of its state machine, and delete the Raft entries it covers,
    /// every this many applied entries (0: never); the sequencer's default (10,000) when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_interval_entries: Option<u64>,
}

impl NodeSpec {
    /// Its node ID.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.id)
    }

    fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        [
            Some(self.peer),
            self.ws,
            self.rawsocket,
            self.mqtt,
            self.admin,
        ]
        .into_iter()
        .flatten()
    }
}

/// The whole `cluster.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// Cluster name.
    pub name: String,
    /// Shared secret, hex.
    pub secret: String,
    /// Every node.
    #[serde(rename = "node", default)]
    pub nodes: Vec<NodeSpec>,
    /// Gossip among the nodes (membership metadata, failure detection, an application
    /// key/value set); on by default.
    #[serde(default, skip_serializing_if = "GossipSettings::is_default")]
    pub gossip: GossipSettings,
}

/// `[gossip]`: scuttlebutt gossip over UDP on each node's `peer` port (the same number as
/// its TCP node link), authenticated with the cluster secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GossipSettings {
    /// Whether the nodes gossip at all.
    pub enabled: bool,
    /// How often a node gossips with a few others, in ms (10..=60000).
    pub interval_ms: u64,
    /// The phi-accrual failure detector's threshold (higher: slower to call a node dead,
    /// fewer false alarms; 1.0..=32.0).
    pub phi_threshold: f64,
}

impl Eq for GossipSettings {}

impl Default for GossipSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 500,
            phi_threshold: 8.0,
        }
    }
}

impl GossipSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(10..=60_000).contains(&self.interval_ms) {
            return Err(ConfigError::Invalid(
                "gossip.interval_ms must be 10..=60000".into(),
            ));
        }
        if !(1.0..=32.0).contains(&self.phi_threshold) {
            return Err(ConfigError::Invalid(
                "gossip.phi_threshold must be 1.0..=32.0".into(),
            ));
        }
        Ok(())
    }
}

impl ClusterFile {
    /// Reads, parses and validates `path`; relative `data` paths become relative to its
    /// directory. Returns the file and its warnings.
    pub fn load(path: &Path) -> Result<(ClusterFile, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut file: ClusterFile = toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for node in &mut file.nodes {
            if let Some(data) = &node.data {
                if data.is_relative() {
                    node.data = Some(base.join(data));
                }
            }
        }
        let warnings = file.validate()?;
        Ok((file, warnings))
    }

    /// Checks every rule; `Ok` carries warnings (even tiers).
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.name.is_empty() || self.name.len() > CLUSTER_NAME_MAX_BYTES {
            return invalid(format!("name must be 1..={CLUSTER_NAME_MAX_BYTES} bytes"));
        }
        self.secret_bytes()?;
        self.gossip.validate()?;
        let mut ids = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for node in &self.nodes {
            if !ids.insert(node.id) {
                return invalid(format!("node id {} appears twice", node.id));
            }
            for address in node.addresses() {
                if !addresses.insert(address) {
                    return invalid(format!("address {address} appears twice"));
                }
            }
            check_role_fields(node)?;
        }
        let mut warnings = Vec::new();
        for role in [Role::Entry, Role::Ndb, Role::Sync] {
            let count = self.nodes.iter().filter(|n| n.role == role).count();
            if count == 0 {
                return invalid(format!(
                    "no {} node: each role needs at least one",
                    role.name()
                ));
            }
            if role != Role::Entry && count % 2 == 0 {
                warnings.push(format!(
                    "{count} {} nodes: an odd number is recommended ({} nodes tolerate as many failures)",
                    role.name(),
                    count - 1
                ));
            }
        }
        Ok(warnings)
    }

    /// The secret's bytes.
    pub fn secret_bytes(&self) -> Result<Vec<u8>, ConfigError> {
        let bytes = hex_decode(&self.secret)
            .ok_or_else(|| ConfigError::Invalid("secret is not hex".into()))?;
        if bytes.len() < SECRET_MIN_BYTES || bytes.len() > SECRET_MAX_BYTES {
            return Err(ConfigError::Invalid(format!(
                "secret must be {SECRET_MIN_BYTES}..={SECRET_MAX_BYTES} bytes"
            )));
        }
        Ok(bytes)
    }

    /// The node with this ID.
    pub fn node(&self, id: u32) -> Option<&NodeSpec> {
        self.nodes.iter().find(|node| node.id == id)
    }

    /// IDs of the nodes of one role, in file order.
    pub fn ids(&self, role: Role) -> Vec<NodeId> {
        let of_role = self.nodes.iter().filter(|node| node.role == role);
        of_role.map(NodeSpec::node_id).collect()
    }

    /// The membership the state machines take.
    pub fn membership(&self) -> Membership {
        Membership {
            entries: self.ids(Role::Entry),
            ndbs: self.ids(Role::Ndb),
            syncs: self.ids(Role::Sync),
        }
    }

    /// The handshake configuration of node `id`.
    pub fn handshake_config(&self, id: NodeId) -> Result<HandshakeConfig, ConfigError> {
        let members = self.nodes.iter().map(NodeSpec::node_id);
        Ok(HandshakeConfig::new(
            id,
            &self.name,
            &self.secret_bytes()?,
            members,
        ))
    }
}

fn check_role_fields(node: &NodeSpec) -> Result<(), ConfigError> {
    let has_clients = node.ws.is_some() || node.rawsocket.is_some() || node.mqtt.is_some();
    // An ndb or sync node's admin listener has no token: loopback only.
    let admin_exposed = node.admin.is_some_and(|a| !a.ip().is_loopback());
    let message = match node.role {
        Role::Ndb | Role::Sync if node.data.is_none() => "ndb and sync nodes need `data`",
        Role::Ndb | Role::Sync if has_clients => "only entries have ws / rawsocket / mqtt",
        Role::Ndb | Role::Sync if admin_exposed => {
            "the admin listener of an ndb or sync node has no token: a loopback address only"
        }
        Role::Entry | Role::Ndb if node.snapshot_interval_entries.is_some() => {
            "only sync nodes have `snapshot_interval_entries`"
        }
        _ => return Ok(()),
    };
    Err(ConfigError::Invalid(format!("node {}: {message}", node.id)))
}

/// Lower-case hex of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Bytes of a hex string (either case); `None` if it is not hex of even length.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    let value = |digit: u8| char::from(digit).to_digit(16).map(|v| v as u8);
    digits
        .chunks_exact(2)
        .map(|pair| Some(value(pair[0])? << 4 | value(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
name = "fox"
secret = "000102030405060708090a0b0c0d0e0f"
[[node]]
id = 1
role = "entry"
peer = "127.0.0.1:7100"
ws = "127.0.0.1:7101"
[[node]]
id = 2
role = "ndb"
peer = "127.0.0.1:7102"
data = "d2"
[[node]]
id = 3
role = "sync"
peer = "127.0.0.1:7103"
data = "/abs/d3"
"#;

    fn load(text: &str) -> Result<(ClusterFile, Vec<String>), ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, text).unwrap();
        ClusterFile::load(&path)
    }

    #[test]
    fn a_sample_loads_with_relative_data_resolved() {
        let (file, warnings) = load(SAMPLE).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(file.membership().ndbs, vec![NodeId(2)]);
        let data = file.node(2).unwrap().data.clone().unwrap();
        assert!(data.is_absolute() && data.ends_with("d2"));
        assert_eq!(file.node(3).unwrap().data, Some(PathBuf::from("/abs/d3")));
        assert_eq!(file.secret_bytes().unwrap().len(), 16);
    }

    #[test]
    fn broken_files_are_refused() {
        let cases = [
            SAMPLE.replace("id = 2", "id = 1"),
            SAMPLE.replace("7102", "7100"),
            SAMPLE.replace("role = \"sync\"", "role = \"ndb\""),
            SAMPLE.replace("000102", "zz0102"),
            SAMPLE.replace(
                "secret = \"000102030405060708090a0b0c0d0e0f\"",
                "secret = \"00\"",
            ),
            SAMPLE.replace("data = \"d2\"", ""),
            SAMPLE.replace("data = \"d2\"", "data = \"d2\"\nadmin = \"10.0.0.1:7190\""),
            SAMPLE.replace("data = \"d2\"", "data = \"d2\"\nmqtt = \"127.0.0.1:7190\""),
            SAMPLE.replace(
                "ws = \"127.0.0.1:7101\"",
                "ws = \"127.0.0.1:7101\"\nadmin = \"127.0.0.1:7101\"",
            ),
            SAMPLE.replace("name = \"fox\"", "name = \"\""),
            SAMPLE.replace("role = \"entry\"", "role = \"boss\""),
            SAMPLE.replace("[[node]]\nid = 1", "[[node]]\nsurprise = 1\nid = 1"),
            "not toml at all [".to_string(),
            format!("{SAMPLE}[gossip]\ninterval_ms = 0\n"),
            format!("{SAMPLE}[gossip]\nphi_threshold = 0.5\n"),
            format!("{SAMPLE}[gossip]\nfanout = 3\n"),
        ];
        for case in cases {
            assert!(load(&case).is_err(), "accepted:\n{case}");
        }
    }

    #[test]
    fn a_sync_node_may_set_its_snapshot_interval_and_only_a_sync_node() {
        let interval = "data = \"/abs/d3\"\nsnapshot_interval_entries = 64";
        let (file, _) = load(&SAMPLE.replace("data = \"/abs/d3\"", interval)).unwrap();
        assert_eq!(file.node(3).unwrap().snapshot_interval_entries, Some(64));
        assert_eq!(file.node(2).unwrap().snapshot_interval_entries, None);
        let on_ndb = "data = \"d2\"\nsnapshot_interval_entries = 64";
        assert!(load(&SAMPLE.replace("data = \"d2\"", on_ndb)).is_err());
    }

    #[test]
    fn an_entry_may_keep_its_snapshot_in_data() {
        let (file, _) = load(&SAMPLE.replace("ws = ", "data = \"e1\"\nws = ")).unwrap();
        let entry = file.nodes.iter().find(|n| n.role == Role::Entry).unwrap();
        assert!(entry.data.as_ref().unwrap().ends_with("e1"));
    }

    #[test]
    fn gossip_is_on_by_default_and_can_be_tuned_or_turned_off() {
        let (file, _) = load(SAMPLE).unwrap();
        assert_eq!(file.gossip, GossipSettings::default());
        assert!(file.gossip.enabled);
        let tuned = format!("{SAMPLE}[gossip]\ninterval_ms = 200\nphi_threshold = 4.0\n");
        let (file, _) = load(&tuned).unwrap();
        assert_eq!(
            (file.gossip.interval_ms, file.gossip.phi_threshold),
            (200, 4.0)
        );
        let (file, _) = load(&format!("{SAMPLE}[gossip]\nenabled = false\n")).unwrap();
        assert!(!file.gossip.enabled);
    }

    #[test]
    fn even_tiers_are_warned_about() {
        let extra = "[[node]]\nid = 9\nrole = \"sync\"\npeer = \"127.0.0.1:7109\"\ndata = \"d9\"\n";
        let (_, warnings) = load(&format!("{SAMPLE}{extra}")).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("2 sync"));
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex_encode(&bytes), "0001abff");
        assert_eq!(hex_decode("0001ABff"), Some(bytes.to_vec()));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("é1"), None);
    }
}
