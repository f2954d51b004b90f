//! A cluster entry's log follower: applies the permanent log to the router's realms.
//!
//! The engine (`ClusterEngine`) hands publishes to the cluster; what the cluster ordered
//! comes back here, in permanent-ID order, and is applied to its realm under the realm's
//! order lock, so every entry delivers the same events in the same order. Retained keys and
//! the sync service (`when` / `watch` / `will`) are decided here too, by the [`applier`],
//! so every entry reaches the same verdicts. It lives beside the router, not in the engine,
//! because it needs the router's realms.

pub mod applier;

use std::sync::Arc;
use std::time::Duration;

use fox_cluster::SubscriptionError;
use fox_sequencer::{LogRecord, PermanentId};
use fox_wamp_proto::Value;

use crate::engine::{record, unix_ms, ClusterEngine, EngineError};
use crate::message::{Publication, PublishOptions, SessionId};
use crate::realm::Realm;
use crate::router::Router;
use crate::topic::Topic;
use applier::{Action, Applier, Keys, Refused};

/// How long the log follower waits before it subscribes again after the entry stopped
/// answering, in ms.
const FOLLOW_RETRY_MS: u64 = 200;

/// How often the applier asks again for what the log did not answer.
const TICK_MS: u64 = 1_000;

impl Keys for Arc<Realm> {
    fn value(&self, topic: &Topic) -> Value {
        self.current_value(topic)
    }

    fn deliver(
        &self,
        publication: Publication,
        publisher: Option<SessionId>,
        options: &PublishOptions,
    ) {
        let _order = self.order();
        self.apply(&Arc::new(publication), publisher, options);
    }
}

/// Tails the permanent log from its start and applies every record to its realm, in
/// permanent-ID order, until the entry stops. Realms are created on first use as the
/// configuration allows; a record of an unknown realm is skipped with a warning. First it
/// announces this entry's incarnation, which ends the sessions of its earlier lives.
pub async fn follow_log(router: Arc<Router>, engine: Arc<ClusterEngine>) {
    tokio::spawn(announce(engine.clone()));
    let mut applier = Applier::new(engine.node(), engine.incarnation());
    let mut after = PermanentId(0);
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    loop {
        let mut subscription = match engine.entry().subscribe(after).await {
            Ok(subscription) => subscription,
            Err(SubscriptionError::Stopped) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot follow the permanent log; retrying");
                tokio::time::sleep(Duration::from_millis(FOLLOW_RETRY_MS)).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                next = subscription.next() => next,
                _ = tick.tick() => {
                    let actions = applier.tick(|name| router.realm(name), unix_ms());
                    run(&engine, actions);
                    continue;
                }
            };
            match next {
                Ok(record) => {
                    let actions = apply_record(&router, &engine, &mut applier, &record);
                    run(&engine, actions);
                }
                Err(SubscriptionError::Lagged { last }) => {
                    tracing::warn!(last, "log follower lagged; resubscribing");
                    after = PermanentId(last);
                    break;
                }
                Err(_) => return,
            }
        }
    }
}

/// Logs this entry's incarnation, retrying until the cluster orders it or the entry stops.
async fn announce(engine: Arc<ClusterEngine>) {
    let mut backoff_ms = FOLLOW_RETRY_MS;
    loop {
        let record = record::encode_entry_started(engine.node(), engine.incarnation());
        match engine.submit(0, record).await {
            Ok(_) => return,
            Err(fox_cluster::EntryError::Stopped) => return,
            Err(error) => {
                tracing::debug!(%error, "the entry's start is not logged yet; retrying");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(2_000);
            }
        }
    }
}

fn apply_record(
    router: &Router,
    engine: &ClusterEngine,
    applier: &mut Applier,
    record: &LogRecord,
) -> Vec<Action> {
    let id = record.id.0;
    let publisher = record.publication.publisher;
    let actions = match record::decode(id, publisher, &record.publication.payload) {
        Some(decoded) => {
            applier.apply(id, publisher, decoded, |name| router.realm(name), unix_ms())
        }
        None => {
            tracing::warn!(id, "skipping a malformed record of the permanent log");
            Vec::new()
        }
    };
    engine.set_last_applied(id);
    actions
}

/// Carries out the applier's actions: answers this entry's writers, hands records to the
/// log (a lost one is asked again by the applier's tick).
fn run(engine: &ClusterEngine, actions: Vec<Action>) {
    for action in actions {
        match action {
            Action::Resolve { token, outcome } => {
                let outcome = outcome.map_err(|refused| match refused {
                    Refused::NotAccepted => EngineError::NotAccepted,
                    Refused::SessionEnded => EngineError::Stopped,
                });
                engine.resolve(token, outcome);
            }
            Action::Submit { publisher, record } => {
                let decided = engine.submit(publisher, record);
                tokio::spawn(async move {
                    if let Err(error) = decided.await {
                        tracing::warn!(%error, "a sync-service record was not ordered; asking again later");
                    }
                });
            }
        }
    }
}
