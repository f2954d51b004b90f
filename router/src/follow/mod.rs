//! A cluster entry's log follower: applies the permanent log to the router's realms.
//!
//! The engine (`ClusterEngine`) hands publishes to the cluster; what the cluster ordered
//! comes back here, in permanent-ID order, and is applied to its realm under the realm's
//! order lock, so every entry delivers the same events in the same order. Retained keys and
//! the sync service (`when` / `watch` / `will`) are decided here too, by the [`applier`],
//! so every entry reaches the same verdicts. It lives beside the router, not in the engine,
//! because it needs the router's realms.

pub mod applier;
pub mod members;
pub mod snapshot;

use std::sync::atomic::{AtomicU64, Ordering};
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
use applier::{log_time_ms, Action, Applier, Change, Keys, Refused, BEAT_MS, LEASE_MS};
use members::Membership;
use snapshot::Snapshots;

/// How long the log follower waits before it subscribes again after the entry stopped
/// answering, in ms.
const FOLLOW_RETRY_MS: u64 = 200;

/// How long a fenced session's GOODBYE waits for the answers to its writes to be queued
/// before it. The session has left the realm already; only the client's notice waits, well
/// within the 500 ms by which an entry's own fence precedes its lease's expiry elsewhere.
const FENCE_ANSWERS_MS: u64 = 20;

/// How often the applier asks again for what the log did not answer.
const TICK_MS: u64 = 1_000;

/// An entry whose last beat seen ordered was sent this long ago ends its sessions that hold
/// keys (and starts a new life) on its own: the others expire its lease [`LEASE_MS`] after
/// that beat's vote at the earliest, so its clients learn they lost their keys before any
/// other client can take them (the margin covers the beat period and scheduling).
pub const SELF_FENCE_MS: u64 = LEASE_MS - 500;

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

/// Where the log follower starts: the state put back from the entry's snapshot, if any
/// ([`restore`]), and the record after which it reads the log.
pub struct Start {
    applier: Applier,
    membership: Membership,
    after: PermanentId,
}

/// Puts back the state of the entry's last snapshot (with `snapshots`, the entry's `data`),
/// before the entry serves any client: a subscription made before the restore would miss
/// the restored history, which is not delivered again. Without a snapshot the follower
/// starts from the log's start.
pub fn restore(router: &Router, engine: &ClusterEngine, snapshots: Option<&Snapshots>) -> Start {
    let ranks: std::collections::HashMap<u32, u32> = engine
        .members()
        .iter()
        .filter(|m| m.role == "entry")
        .map(|m| (m.id, m.rank))
        .collect();
    let mut membership = Membership::new(engine.members().to_vec());
    let restored = snapshots.and_then(|s| s.load(router, &mut membership, engine.incarnation()));
    let mut after = PermanentId(0);
    let applier = match restored {
        Some(restored) => {
            tracing::info!(
                at = restored.at,
                messages = restored.messages,
                mqtt_sessions = restored.applier.mqtt_sessions(),
                "state restored from the snapshot; following the log after it"
            );
            after = PermanentId(restored.at);
            engine.set_last_applied(restored.at);
            restored.applier
        }
        None => Applier::new(engine.node(), engine.incarnation()),
    };
    let applier = applier
        .with_ranks(ranks)
        .with_known(engine.mqtt_known())
        .with_checkpoints(after.0);
    membership.catch_up(router);
    Start {
        applier,
        membership,
        after,
    }
}

/// Tails the permanent log and applies every record to its realm, in permanent-ID order,
/// until the entry stops (or `stopping` says so: then, with snapshots, it writes the last
/// one), from where [`restore`] left it: the log's start, or the last snapshot's record.
/// Realms are created on first use as the configuration allows; a record of an unknown
/// realm is skipped with a warning. First it announces this entry's incarnation, which ends
/// the sessions of its earlier lives.
pub async fn follow_log(
    router: Arc<Router>,
    engine: Arc<ClusterEngine>,
    start: Start,
    mut snapshots: Option<Snapshots>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(announce(engine.clone()));
    let Start {
        mut applier,
        mut membership,
        mut after,
    } = start;
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    let mut beat = tokio::time::interval(Duration::from_millis(BEAT_MS));
    // The send time of the last beat the cluster ordered (Unix ms).
    let renewed = Arc::new(AtomicU64::new(unix_ms()));
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
                    membership.catch_up(&router);
                    run(&router, &engine, &mut applier, &mut membership, actions);
                    if let Some(snapshots) = &mut snapshots {
                        snapshots.tick(&router, &applier, &membership, after.0);
                    }
                    continue;
                }
                _ = beat.tick() => {
                    renew_lease(&router, &engine, &mut applier, &renewed);
                    continue;
                }
                _ = stopping.changed() => {
                    // A clean stop: the last snapshot, so that the next start applies
                    // nothing again.
                    if let Some(snapshots) = &mut snapshots {
                        snapshots.write_last(&router, &applier, &membership, after.0).await;
                        tracing::info!(at = after.0, "snapshot written at the stop");
                    }
                    return;
                }
            };
            match next {
                Ok(record) => {
                    let actions = apply_record(&router, &engine, &mut applier, &record);
                    run(&router, &engine, &mut applier, &mut membership, actions);
                    after = record.id;
                    if applier.last_checkpoint().is_some_and(|c| c.at == after.0) {
                        engine.set_checkpoints(applier.checkpoints());
                    }
                    if let Some(snapshots) = &mut snapshots {
                        snapshots.applied(&router, &applier, &membership, after.0);
                    }
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

/// Writes a beat; if none was ordered for [`SELF_FENCE_MS`] while sessions hold keys, ends
/// them (the others will soon expire this entry's lease).
fn renew_lease(
    router: &Arc<Router>,
    engine: &Arc<ClusterEngine>,
    applier: &mut Applier,
    renewed: &Arc<AtomicU64>,
) {
    let now = unix_ms();
    if now.saturating_sub(renewed.load(Ordering::Acquire)) > SELF_FENCE_MS && engine.holds_keys() {
        tracing::warn!(
            "no beat of this entry was ordered for {SELF_FENCE_MS} ms: ending its sessions that hold keys"
        );
        fence(router, engine, applier);
        renewed.store(now, Ordering::Release);
    }
    let decided = engine.submit_beat(record::encode_beat(engine.node(), engine.incarnation()));
    let renewed = renewed.clone();
    tokio::spawn(async move {
        if decided.await.is_ok() {
            renewed.fetch_max(now, Ordering::AcqRel);
        }
    });
}

/// Ends this entry's life: its sessions that hold keys end (abnormally: their wills are
/// written by the log's rules), and a new incarnation is announced.
fn fence(router: &Router, engine: &Arc<ClusterEngine>, applier: &mut Applier) {
    let (sessions, incarnation) = engine.fence();
    applier.set_incarnation(incarnation);
    tracing::warn!(
        incarnation,
        sessions = sessions.len(),
        "fenced: a new life for this entry"
    );
    for (realm, session) in sessions {
        let Some(realm) = router.realm(&realm) else {
            continue;
        };
        if let Some(handle) = realm.session(session) {
            realm.leave_abnormally(session);
            // Its writes still waiting were answered just now (ERROR, by the tasks that
            // await them): those answers go out before the GOODBYE.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(FENCE_ANSWERS_MS)).await;
                handle.fence();
            });
        }
    }
    tokio::spawn(announce(engine.clone()));
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
            // This life's own start: every record before it (this entry's earlier lives'
            // sessions among them) has been applied here.
            let own_start = matches!(&decoded, record::Record::EntryStarted { node, incarnation, .. }
                if *node == engine.node() && *incarnation == engine.incarnation());
            let actions =
                applier.apply(id, publisher, decoded, |name| router.realm(name), unix_ms());
            if own_start {
                engine.set_caught_up();
            }
            actions
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
/// log (a lost one is asked again by the applier's tick), starts a new life when fenced,
/// publishes membership changes, and has the segments of an entry whose lease expired
/// aborted at once.
fn run(
    router: &Router,
    engine: &Arc<ClusterEngine>,
    applier: &mut Applier,
    membership: &mut Membership,
    actions: Vec<Action>,
) {
    for action in actions {
        match action {
            Action::Member {
                node,
                change: Change::Lost,
                at,
                ..
            } if node != engine.node() => {
                // Every entry asks, not only the lowest live one: it is one small message
                // per ndb for a rare event, idempotent, and needs no one entry to be up.
                // The scope is the segments cut until the expiry's log time, so a replay
                // of an old expiry aborts nothing live.
                engine.entry().abort_segments_of(node, log_time_ms(at));
                membership.note(router, &action);
            }
            Action::Member { .. } | Action::Coordinator { .. } => {
                membership.note(router, &action);
            }
            Action::Fenced => fence(router, engine, applier),
            Action::Resolve { token, outcome } => {
                let outcome = outcome.map_err(|refused| match refused {
                    Refused::NotAccepted => EngineError::NotAccepted,
                    Refused::SessionEnded => EngineError::Stopped,
                });
                engine.resolve(token, outcome);
            }
            Action::MqttTakeOver { realm, client, .. } => {
                if let Some(registry) = router.mqtt(&realm) {
                    tokio::spawn(crate::mqtt::cluster::hand_over(registry, client));
                }
            }
            Action::MqttResume {
                realm,
                client,
                body,
                ..
            } => crate::mqtt::cluster::resume(router, &realm, &client, body),
            Action::MqttAdopt {
                realm,
                client,
                body,
            } => {
                crate::mqtt::cluster::adopt(router, &realm, &client, &body);
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
