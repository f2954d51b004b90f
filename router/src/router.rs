//! The router: configuration, realms by name, and the shutdown signal every session obeys.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::auth::{Authenticator, Authorizer};
use crate::config::Config;
use crate::durable::Durable;
use crate::engine::{Engine, LocalEngine};
use crate::metrics::Metrics;
use crate::realm::{Realm, Shared};

/// Everything a gate needs: shared by all connections.
#[derive(Debug)]
pub struct Router {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// Authentication.
    pub authenticator: Authenticator,
    shared: Arc<Shared>,
    realms: RwLock<HashMap<String, Arc<Realm>>>,
    shutdown: watch::Sender<bool>,
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
        let config = Arc::new(config);
        let shared = Arc::new(Shared {
            engine,
            authorizer: Authorizer::new(config.clone()),
            limits: config.limits.clone(),
            metrics: Arc::default(),
        });
        let realms = config
            .router
            .realms
            .iter()
            .map(|name| (name.clone(), Realm::new(name.clone(), shared.clone())))
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
        if let Some(realm) = crate::locks::read(&self.realms).get(name) {
            return Some(realm.clone());
        }
        if !self.config.router.auto_create_realms {
            return None;
        }
        let mut realms = crate::locks::write(&self.realms);
        let realm = realms
            .entry(name.to_owned())
            .or_insert_with(|| Realm::new(name.to_owned(), self.shared.clone()));
        Some(realm.clone())
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
        let mut realms: Vec<Arc<Realm>> =
            crate::locks::read(&self.realms).values().cloned().collect();
        realms.sort_by(|a, b| a.name.cmp(&b.name));
        realms
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
    }

    /// Sessions in all realms.
    pub fn session_count(&self) -> usize {
        crate::locks::read(&self.realms)
            .values()
            .map(|r| r.sessions().len())
            .sum()
    }
}

/// Resolves once `shutdown` (from [`Router::shutdown_signal`]) is true, also when it was
/// already true when the receiver was made (`changed` would then wait forever).
pub async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
