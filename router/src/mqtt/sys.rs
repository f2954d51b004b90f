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

use crate::metrics::{Count, TrafficTotals};
use crate::realm::{Payload, PublishOptions, Realm};
use crate::router::Router;
use crate::topic::Topic;

/// MQTT counters of one realm.
#[derive(Debug, Default)]
pub struct Stats {
    messages_received: AtomicU64,
    messages_sent: AtomicU64,
    publish_received: AtomicU64,
    publish_sent: AtomicU64,
    publish_dropped: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
}

impl Stats {
    /// One packet of `bytes` read.
    pub fn count_packet_received(&self, bytes: usize) {
        self.messages_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// One packet of `bytes` written.
    pub fn count_packet_sent(&self, bytes: usize) {
        self.messages_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// One PUBLISH from a client.
    pub fn count_publish_received(&self) {
        self.publish_received.fetch_add(1, Ordering::Relaxed);
    }

    /// One PUBLISH to a client.
    pub fn count_publish_sent(&self) {
        self.publish_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// One message not delivered (too large for the client, pending queue full).
    pub fn count_dropped(&self) {
        self.publish_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now, as router-wide traffic (the admin listener's `/metrics` sums
    /// the realms).
    pub fn totals(&self) -> TrafficTotals {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TrafficTotals {
            received: Count {
                messages: load(&self.messages_received),
                bytes: load(&self.bytes_received),
                publications: load(&self.publish_received),
            },
            sent: Count {
                messages: load(&self.messages_sent),
                bytes: load(&self.bytes_sent),
                publications: load(&self.publish_sent),
            },
        }
    }

    /// Messages not delivered (too large for the client, pending queue full).
    pub fn dropped(&self) -> u64 {
        self.publish_dropped.load(Ordering::Relaxed)
    }

    fn load(counter: &AtomicU64) -> String {
        counter.load(Ordering::Relaxed).to_string()
    }
}

fn started() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// The current `$SYS` values of a realm: (topic, value).
pub fn snapshot(realm: &Realm) -> Vec<(&'static str, String)> {
    let stats = &realm.mqtt.stats;
    let (connected, parked) = realm.mqtt.counts();
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
            Stats::load(&stats.messages_received),
        ),
        (
            "$SYS/broker/messages/sent",
            Stats::load(&stats.messages_sent),
        ),
        (
            "$SYS/broker/publish/messages/received",
            Stats::load(&stats.publish_received),
        ),
        (
            "$SYS/broker/publish/messages/sent",
            Stats::load(&stats.publish_sent),
        ),
        (
            "$SYS/broker/publish/messages/dropped",
            Stats::load(&stats.publish_dropped),
        ),
        (
            "$SYS/broker/bytes/received",
            Stats::load(&stats.bytes_received),
        ),
        ("$SYS/broker/bytes/sent", Stats::load(&stats.bytes_sent)),
        (
            "$SYS/broker/retained messages/count",
            realm.retained_count().to_string(),
        ),
    ]
}

/// Starts the realm's `$SYS` publisher once (on its first MQTT connection).
pub fn ensure_started(router: &Arc<Router>, realm: &Arc<Realm>) {
    let interval_ms = router.config.limits.mqtt_sys_interval_ms;
    started();
    if interval_ms == 0 || !realm.mqtt.start_sys() {
        return;
    }
    let shutdown = router.shutdown_signal();
    tokio::spawn(publish_loop(Arc::downgrade(realm), interval_ms, shutdown));
}

async fn publish_loop(
    realm: std::sync::Weak<Realm>,
    interval_ms: u64,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut last: HashMap<&'static str, String> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms));
    loop {
        tokio::select! {
            _ = crate::router::stopped(&mut shutdown) => return,
            _ = ticker.tick() => {}
        }
        let Some(realm) = realm.upgrade() else { return };
        for (topic, value) in snapshot(&realm) {
            if last.get(topic) == Some(&value) {
                continue;
            }
            let options = PublishOptions {
                retain: true,
                ..PublishOptions::default()
            };
            let payload = Payload::Raw(Bytes::from(value.clone()));
            realm.publish(None, &Topic::from_mqtt(topic), payload, &options);
            last.insert(topic, value);
        }
    }
}
