//! foxrouter: a WAMP v2 + MQTT message router whose every published message gets a
//! permanent, monotonic ID before the publisher is acknowledged.
//!
//! # Layout
//! - [`server`]: listeners and connection limits; hands each connection to its gate.
//! - [`wamp`]: the WAMP gate (session state machine, WebSocket and RawSocket transports).
//! - [`mqtt`]: the MQTT gate.
//! - [`router`]: realms by name, configuration, shutdown signal.
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

pub mod admin;
pub mod auth;
pub mod config;
pub mod connection_rate;
pub mod cryptosign;
pub mod durable;
pub mod engine;
pub mod follow;
pub mod message;
pub mod metrics;
pub mod mqtt;
pub mod realm;
pub mod router;
pub mod server;
pub mod tls;
pub mod topic;
pub mod util;
pub mod wamp;
