//! `$SYS/broker/...` statistics, as Mosquitto publishes them: retained messages in the
//! realm, refreshed every `limits.mqtt_sys_interval_ms` when their value changed. They
//! are ordinary retained topics of the shared topic space (WAMP sees `$SYS.broker...`);
//! clients cannot publish to `$` topics, and `#` / `+` do not match them (MQTT 4.7.2).
//!
//! Topics: `$SYS/broker/version`, `uptime`, `clients/connected`, `clients/disconnected`,
//! `clients/total`, `messages/received`, `messages/sent`, `publish/messages/received`,
//! `publish/messages/sent`, `publish/messages/dropped`, `bytes/received`, `bytes/sent`,
//! `retained messages/count`. Counters are per realm.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::registry::Registry;
use crate::metrics::{Count, Traffic, TrafficTotals};
use crate::realm::{Payload, PublishOptions};
use crate::router::Router;
use crate::topic::Topic;

/// MQTT counters of one realm: its traffic (the admin listener's [`Traffic`], so that
/// `/metrics` sums the realms) and the deliveries it dropped.
#[derive(Debug, Default)]
pub struct Stats {
    traffic: Traffic,
    publish_dropped: AtomicU64,
}

impl Stats {
    /// One packet of `bytes` read.
    pub fn count_packet_received(&self, bytes: usize) {
        let mut count = Count::default();
        count.message(bytes);
        self.traffic.received(count);
    }

    /// One packet of `bytes` written.
    pub fn count_packet_sent(&self, bytes: usize) {
        let mut count = Count::default();
        count.message(bytes);
        self.traffic.sent(count);
    }

    /// One PUBLISH from a client.
    pub fn count_publish_received(&self) {
        self.traffic.received(Count::publication());
    }

    /// One PUBLISH to a client.
    pub fn count_publish_sent(&self) {
        self.traffic.sent(Count::publication());
    }

    /// One message not delivered (too large for the client, pending queue full).
    pub fn count_dropped(&self) {
        self.publish_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now, as router-wide traffic (the admin listener's `/metrics` sums
    /// the realms).
    pub fn totals(&self) -> TrafficTotals {
        self.traffic.totals()
    }

    /// Messages not delivered (too large for the client, pending queue full).
    pub fn dropped(&self) -> u64 {
        self.publish_dropped.load(Ordering::Relaxed)
    }
}

fn started() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// The current `$SYS` values of a realm: (topic, value).
pub fn snapshot(registry: &Registry) -> Vec<(&'static str, String)> {
    let stats = &registry.stats;
    let TrafficTotals { received, sent } = stats.totals();
    let (connected, parked) = registry.counts();
    vec![
        (
            "$SYS/broker/version",
            format!("foxrouter {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "$SYS/broker/uptime",
            format!("{} seconds", started().elapsed().as_secs()),
        ),
        ("$SYS/broker/clients/connected", connected.to_string()),
        ("$SYS/broker/clients/disconnected", parked.to_string()),
        (
            "$SYS/broker/clients/total",
            (connected + parked).to_string(),
        ),
        (
            "$SYS/broker/messages/received",
            received.messages.to_string(),
        ),
        ("$SYS/broker/messages/sent", sent.messages.to_string()),
        (
            "$SYS/broker/publish/messages/received",
            received.publications.to_string(),
        ),
        (
            "$SYS/broker/publish/messages/sent",
            sent.publications.to_string(),
        ),
        (
            "$SYS/broker/publish/messages/dropped",
            stats.dropped().to_string(),
        ),
        ("$SYS/broker/bytes/received", received.bytes.to_string()),
        ("$SYS/broker/bytes/sent", sent.bytes.to_string()),
        (
            "$SYS/broker/retained messages/count",
            registry.realm().memory().retained_count().to_string(),
        ),
    ]
}

/// Starts the realm's `$SYS` publisher once (on its first MQTT connection). The first
/// values are published here, before that connection goes on, so that a client which
/// subscribes afterwards finds them retained (as Mosquitto's, published at its start).
pub fn ensure_started(router: &Arc<Router>, registry: &Arc<Registry>) {
    let interval_ms = router.config.limits.mqtt_sys_interval_ms;
    started();
    if interval_ms == 0 || !registry.start_sys() {
        return;
    }
    let mut last = HashMap::new();
    publish_changed(registry, &mut last);
    let shutdown = router.shutdown_signal();
    tokio::spawn(publish_loop(
        Arc::downgrade(registry),
        interval_ms,
        last,
        shutdown,
    ));
}

async fn publish_loop(
    registry: std::sync::Weak<Registry>,
    interval_ms: u64,
    mut last: HashMap<&'static str, String>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let period = Duration::from_millis(interval_ms);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = crate::router::stopped(&mut shutdown) => return,
            _ = ticker.tick() => {}
        }
        let Some(registry) = registry.upgrade() else {
            return;
        };
        publish_changed(&registry, &mut last);
    }
}

/// Publishes (retained) each value that differs from the one in `last`.
fn publish_changed(registry: &Registry, last: &mut HashMap<&'static str, String>) {
    for (topic, value) in snapshot(registry) {
        if last.get(topic) == Some(&value) {
            continue;
        }
        let options = PublishOptions {
            retain: true,
            ..PublishOptions::default()
        };
        let payload = Payload::Raw(Bytes::from(value.clone()));
        registry
            .realm()
            .publish(None, &Topic::from_mqtt(topic), payload, &options);
        last.insert(topic, value);
    }
}
