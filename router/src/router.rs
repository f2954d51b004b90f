//! The router: configuration, realms by name (each with its MQTT client registry), and the
//! shutdown signal every session obeys.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::auth::{Authenticator, Authorizer};
use crate::config::Config;
use crate::durable::Durable;
use crate::engine::{Engine, LocalEngine};
use crate::metrics::Metrics;
use crate::mqtt::Registry;
use crate::realm::{Realm, Shared};

/// Everything a gate needs: shared by all connections.
#[derive(Debug)]
pub struct Router {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// Authentication.
    pub authenticator: Authenticator,
    shared: Arc<Shared>,
    realms: RwLock<HashMap<String, RealmEntry>>,
    shutdown: watch::Sender<bool>,
}

/// A realm and the MQTT client sessions in it, made together. The registry lives here and
/// not in the realm so that the realm does not depend on the MQTT gate (`mqtt` uses
/// `realm`, never the reverse).
#[derive(Clone, Debug)]
struct RealmEntry {
    realm: Arc<Realm>,
    mqtt: Arc<Registry>,
}

impl RealmEntry {
    fn new(name: String, shared: Arc<Shared>) -> Self {
        let realm = Realm::new(name, shared);
        let mqtt = Arc::new(Registry::new(realm.clone()));
        Self { realm, mqtt }
    }
}

impl Router {
    /// A router with the configured realms and the in-memory default.
    pub fn new(config: Config) -> Arc<Self> {
        Self::with_store(config, 0, None)
    }

    /// A router resuming IDs after `last_id`, writing through `durable` (`--data`).
    pub fn with_store(config: Config, last_id: u64, durable: Option<Arc<Durable>>) -> Arc<Self> {
        Self::with_engine(config, Arc::new(LocalEngine::new(last_id, durable)))
    }

    /// A router whose publishes go through `engine` (a cluster entry's, for one).
    pub fn with_engine(config: Config, engine: Arc<dyn Engine>) -> Arc<Self> {
        Self::on_edge(config, engine, Arc::new(crate::realm::edge::SystemEdge))
    }

    /// A single-node router on `edge`'s time and random numbers: a scenario test drives
    /// its timers (MQTT will delays, session expiry, call timeouts) with virtual time.
    #[cfg(test)]
    pub fn with_edge(config: Config, edge: Arc<dyn crate::realm::edge::Edge>) -> Arc<Self> {
        Self::on_edge(config, Arc::new(LocalEngine::new(0, None)), edge)
    }

    fn on_edge(
        config: Config,
        engine: Arc<dyn Engine>,
        edge: Arc<dyn crate::realm::edge::Edge>,
    ) -> Arc<Self> {
        let config = Arc::new(config);
        let shared = Arc::new(Shared {
            engine,
            authorizer: Authorizer::new(config.clone()),
            limits: config.limits.clone(),
            metrics: Arc::default(),
            timers: crate::timers::Timers::new(edge.clone()),
            edge,
        });
        let realms = config
            .router
            .realms
            .iter()
            .map(|name| (name.clone(), RealmEntry::new(name.clone(), shared.clone())))
            .collect();
        let (shutdown, _) = watch::channel(false);
        Arc::new(Self {
            authenticator: Authenticator::new(config.clone()),
            config,
            shared,
            realms: RwLock::new(realms),
            shutdown,
        })
    }

    /// The realm of this name; created on first use if the configuration allows it.
    pub fn realm(&self, name: &str) -> Option<Arc<Realm>> {
        self.entry(name).map(|entry| entry.realm)
    }

    /// The MQTT client sessions of the realm of this name, which [`Registry::realm`] gives;
    /// created with the realm on first use if the configuration allows it.
    pub fn mqtt(&self, realm: &str) -> Option<Arc<Registry>> {
        self.entry(realm).map(|entry| entry.mqtt)
    }

    fn entry(&self, name: &str) -> Option<RealmEntry> {
        if let Some(entry) = crate::locks::read(&self.realms).get(name) {
            return Some(entry.clone());
        }
        if !self.config.router.auto_create_realms {
            return None;
        }
        let mut realms = crate::locks::write(&self.realms);
        let entry = realms
            .entry(name.to_owned())
            .or_insert_with(|| RealmEntry::new(name.to_owned(), self.shared.clone()));
        Some(entry.clone())
    }

    /// Process-wide services.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The counters behind `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Every realm (a snapshot), in name order.
    pub fn realms(&self) -> Vec<Arc<Realm>> {
        let mut realms: Vec<Arc<Realm>> = crate::locks::read(&self.realms)
            .values()
            .map(|entry| entry.realm.clone())
            .collect();
        realms.sort_by(|a, b| a.name.cmp(&b.name));
        realms
    }

    /// Every realm's MQTT client registry (a snapshot), in realm name order.
    pub fn mqtt_registries(&self) -> Vec<Arc<Registry>> {
        let mut registries: Vec<Arc<Registry>> = crate::locks::read(&self.realms)
            .values()
            .map(|entry| entry.mqtt.clone())
            .collect();
        registries.sort_by(|a, b| a.realm().name.cmp(&b.realm().name));
        registries
    }

    /// Whether [`Router::shut_down`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver that turns true when the router shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Tells every session to close.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
        // Idle MQTT connections wait on their session's queue, not on this signal: each
        // is woken and reads it. A session that joins after this reads the signal set.
        for entry in crate::locks::read(&self.realms).values() {
            entry.realm.wake_sessions();
        }
    }

    /// Sessions in all realms.
    pub fn session_count(&self) -> usize {
        crate::locks::read(&self.realms)
            .values()
            .map(|entry| entry.realm.sessions().len())
            .sum()
    }
}

/// Resolves once `shutdown` (from [`Router::shutdown_signal`]) is true, also when it was
/// already true when the receiver was made (`changed` would then wait forever).
pub async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
