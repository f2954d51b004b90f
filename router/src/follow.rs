//! A cluster entry's log follower: applies the permanent log to the router's realms.
//!
//! The engine (`ClusterEngine`) hands publishes to the cluster; what the cluster ordered
//! comes back here, in permanent-ID order, and is applied to its realm under the realm's
//! order lock, so every entry delivers the same events in the same order. It lives beside
//! the router, not in the engine, because it needs the router's realms.

use std::sync::Arc;
use std::time::Duration;

use fox_cluster::SubscriptionError;
use fox_sequencer::{LogRecord, PermanentId};

use crate::engine::{cluster, ClusterEngine};
use crate::router::Router;

/// How long the log follower waits before it subscribes again after the entry stopped
/// answering, in ms.
const FOLLOW_RETRY_MS: u64 = 200;

/// Tails the permanent log from its start and applies every record to its realm, in
/// permanent-ID order, until the entry stops. Realms are created on first use as the
/// configuration allows; a record of an unknown realm is skipped with a warning.
pub async fn follow_log(router: Arc<Router>, engine: Arc<ClusterEngine>) {
    let mut after = PermanentId(0);
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
            match subscription.next().await {
                Ok(record) => apply_record(&router, &engine, &record),
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

fn apply_record(router: &Router, engine: &ClusterEngine, record: &LogRecord) {
    let id = record.id.0;
    let Some((realm_name, publication, options)) = cluster::decode_record(
        id,
        record.publication.publisher,
        &record.publication.payload,
    ) else {
        tracing::warn!(id, "skipping a malformed record of the permanent log");
        engine.set_last_applied(id);
        return;
    };
    let Some(realm) = router.realm(&realm_name) else {
        tracing::warn!(id, realm = %realm_name, "record of a realm that is not configured");
        engine.set_last_applied(id);
        return;
    };
    let _order = realm.order();
    realm.apply(
        &Arc::new(publication),
        Some(record.publication.publisher),
        &options,
    );
    engine.set_last_applied(id);
}
