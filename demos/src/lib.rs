//! `fox-demos`: a small async Rust client library for WAMP and MQTT, and the programs
//! built on it — the `fox-bench` load generator first.
//!
//! # Layout
//! ```text
//! wamp/          WampClient: WebSocket (JSON, MsgPack, CBOR) and RawSocket transports,
//!                HELLO with ticket / wampcra, publish, subscribe, call, register
//! mqtt.rs        MqttClient: MQTT 3.1.1 / 5.0, QoS 0/1/2 with many publishes in flight
//! bench/         fox-bench: scenarios, latency histograms, router /proc statistics, report
//! relay/         fox-relay: forwards publishes to exact-topic subscribers with fixed
//!                handshake replies, the physical-limit baseline of bench/compare.sh
//! bin/fox-bench  the load generator's command line
//! bin/fox-relay  the relay's command line
//! ```
//!
//! Both clients use the project's own codecs (`fox-wamp-proto`, `fox-mqtt-proto`). Each
//! connection has one reader task and one writer task; callers encode on their own task
//! and hand bytes to the writer through a bounded channel, and the writer coalesces
//! whatever is queued into one socket write.
#![forbid(unsafe_code)]

pub mod bench;
pub mod mqtt;
pub mod relay;
pub mod wamp;

/// Called by a writer task once something woke it, before it takes what is queued: lets
/// the tasks that are ready to run queue their frames first. The first push wakes the
/// writer, and tokio runs a task woken by the running one next (its LIFO slot); without
/// this, a reader that hands 16 results to 16 callers gets 16 writes of one call each, and
/// the load generator spends its CPU on system calls instead of load.
pub(crate) async fn let_others_queue() {
    tokio::task::yield_now().await;
}
