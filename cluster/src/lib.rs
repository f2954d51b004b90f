//! # fox-cluster
//!
//! Runs the masterfree cluster of DESIGN.md for real: `cluster.toml`, durable node state,
//! authenticated links between nodes, and tokio drivers around the sans-IO state machines
//! of `fox-sequencer`.
//!
//! ```text
//! foxrouter node --id N ──> run_node: ndb | sync      router ──> EntryHandle (entry)
//!     NodeStore (RocksDB) <── Driver task ──> Mesh <──TCP, HMAC handshake──> other nodes
//!                            (Ndb | Sync)            (frames, heartbeats, bounded queues)
//! ```
//!
//! ## Layout
//!
//! - [`config`]: `cluster.toml` model, parser and rules; [`init`]: `foxrouter cluster init`.
//! - [`disk`]: how ndb and sync records sit in a `fox_storage::NodeStore`, and recovery.
//! - [`mesh`]: listener, dialers with backoff, handshake, framed links, heartbeats.
//! - [`driver`]: the ndb / sync task: inputs, `ready()`, persist + fsync, then send.
//! - [`checkpoint`]: an ndb far behind pulls a peer's RocksDB checkpoint at start; every
//!   ndb serves its own.
//! - [`node`]: [`run_node`] / [`start_node`]; [`entry`]: [`EntryHandle`] for the router.
//!
//! ## Calling order
//!
//! - ndb / sync process: `run_node(cluster_file, id, options).await` until SIGTERM.
//! - router (entry): `EntryHandle::start(&cluster, id, options).await`, then
//!   `handle.publish(publication).await` per message (acks only with a permanent ID) and
//!   `handle.subscribe(after).await` + `subscription.next().await` to deliver the log in
//!   ID order; `handle.stop().await` at exit.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod disk;
pub mod driver;
pub mod entry;
pub mod error;
pub mod init;
pub mod mesh;
pub mod node;

pub use checkpoint::CatchUpOptions;
pub use config::{ClusterFile, ConfigError, NodeSpec, Role};
pub use driver::NodeStatus;
pub use entry::{EntryHandle, EntryOptions, PeerReport, Subscription};
pub use error::{ClusterError, EntryError, SubscriptionError};
pub use init::{init, InitOptions, InitReport};
pub use mesh::{Mesh, MeshLimits, MeshStats};
pub use node::{run_node, run_until_signal, start_node, NodeOptions, RunningNode};
