//! foxrouter: a WAMP v2 + MQTT message router whose every published message gets a
//! permanent, monotonic ID before the publisher is acknowledged.
//!
//! # Layout
//! - [`server`]: listeners and connection limits; hands each connection to its gate.
//! - [`wamp`]: the WAMP gate (session state machine, WebSocket and RawSocket transports).
//! - [`mqtt`]: the MQTT gate.
//! - [`router`]: realms by name, each with its MQTT client registry; configuration,
//!   shutdown signal.
//! - [`realm`]: broker, dealer, meta APIs; the one internal message form.
//! - [`topic`]: internal topic form shared by WAMP and MQTT, and the pattern trie.
//! - [`engine`]: the Engine seam: how a publish is ordered, stored, acknowledged and
//!   delivered ([`engine::LocalEngine`] for one process).
//! - [`auth`], [`config`]: authentication, roles, configuration file.
//! - [`durable`]: `--data` durability (RocksDB through the group committer).
//! - [`metrics`]: counters bumped where things happen; [`admin`]: the admin HTTP listener
//!   (`/metrics`, health, JSON status and session kicks; `docs/admin.md`).
//!
//! # Calling order
//! `Router::new(config)`, bind [`server::Listener`]s, [`server::announce`] them,
//! `server::run`; `Router::shut_down`
//! makes every session say GOODBYE and `run` return.

// Clocks, randomness and task spawns are for the edges (`router/clippy.toml`); the sans-IO
// cores deny them in their own module attributes.
#![allow(clippy::disallowed_methods)]

pub mod admin;
pub mod auth;
pub mod config;
pub mod connection_rate;
pub mod cryptosign;
pub mod ctl;
pub mod durable;
pub mod engine;
pub mod follow;
pub mod gossip;
mod locks;
pub mod message;
pub mod metrics;
pub mod mqtt;
pub mod realm;
pub mod router;
pub mod server;
pub mod timers;
pub mod tls;
pub mod topic;
pub mod util;
pub mod wamp;

/// What `foxrouter version` prints: foxrouter's version, each workspace component's, the
/// protocols, and the versions of the main libraries it was built with (from Cargo.lock).
pub fn version_report() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut out = format!("foxrouter {version}\n");
    let components = [
        (
            "fox-wamp-proto",
            "WAMP v2: JSON, MessagePack, CBOR over WebSocket and RawSocket",
        ),
        (
            "fox-mqtt-proto",
            "MQTT 3.1, 3.1.1 and 5.0 over TCP and WebSocket",
        ),
        (
            "fox-sequencer",
            "masterfree cluster cores, ID epoch 2020-01-01 UTC",
        ),
        ("fox-storage", "RocksDB store"),
        (
            "fox-cluster",
            "cluster node processes and node-to-node protocol",
        ),
    ];
    // The workspace's crates share one version (Cargo.toml `[workspace.package]`).
    for (name, what) in components {
        out.push_str(&format!("  {name} {version}: {what}\n"));
    }
    out.push_str("built with:\n");
    for library in env!("FOXROUTER_LIBRARIES").split(';') {
        out.push_str(&format!("  {library}\n"));
    }
    out
}
