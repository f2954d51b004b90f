//! MQTT sessions across cluster entries: the two ends of a takeover, as the log follower
//! carries them out (the protocol is in `crate::follow::applier::sessions`).
//!
//! ```text
//! old entry  hand_over: ends its connection or parked session for the client and writes
//!            its exact last state to the log (a handover); the session leaves the realm
//!            here without its will (it goes on elsewhere)
//! new entry  resume:    rebuilds the session from that state, with what it is owed from
//!            the realm's history, and gives it to the waiting connection (connect.rs)
//! ```
//!
//! A session whose entry died and whose client has not come back is adopted (`adopt`) by
//! the entry that writes the dead's wills: parked there from its last state.

use std::sync::Arc;

use super::persist;
use super::registry::{Evicted, Registry};
use crate::engine::unix_ms;
use crate::metrics::SessionMove;
use crate::router::Router;

/// Another entry claimed `client`'s session: ends it here and writes its last state. When
/// the connection does not hand its session over in time, nothing is written: the claim is
/// then answered with the last state recorded (`CLAIM_WAIT_MS`), which is at least as old.
pub async fn hand_over(registry: Arc<Registry>, client: String) {
    let parked = match registry.evict(&client).await {
        Evicted::Session(parked) => Some(parked),
        Evicted::Nothing => None,
        Evicted::Unknown => {
            tracing::warn!(client = %client, "an MQTT connection did not hand its session over in time; the claimer resumes from its last recorded state");
            return;
        }
    };
    let realm = registry.realm();
    persist::hand_over(realm, &client, parked.as_deref(), unix_ms());
    tracing::debug!(client = %client, resumable = parked.is_some(), "MQTT session handed over to another entry");
    if let Some(parked) = parked {
        realm
            .shared()
            .metrics
            .session_moved(SessionMove::HandedOver);
        realm.leave(parked.handle.info.id);
    }
}

/// This entry's claim of `client`'s session is answered with its last state (`None`:
/// nothing to resume): the waiting connection gets the session. Called by the log follower
/// between two records.
pub fn resume(router: &Router, realm: &str, client: &str, body: Option<Vec<u8>>) {
    let Some(registry) = router.mqtt(realm) else {
        return;
    };
    let Some(waiting) = registry.take_claim(client) else {
        return; // the connection gave up
    };
    let realm = registry.realm();
    let parked = body.and_then(|body| persist::revive_claimed(router, realm, client, &body));
    if parked.is_some() {
        router.metrics().session_moved(SessionMove::Resumed);
    }
    if let Err(Some(parked)) = waiting.send(parked.map(Box::new)) {
        realm.leave(parked.handle.info.id);
    }
}

/// The entry that served `client`'s session is gone: parks it here from its last state,
/// unless a connection here already serves the client. Called by the log follower.
pub fn adopt(router: &Router, realm: &str, client: &str, body: &[u8]) {
    let Some(registry) = router.mqtt(realm) else {
        return;
    };
    if registry.serves(client) {
        return;
    }
    if persist::adopt(router, &registry, client, body) {
        router.metrics().session_moved(SessionMove::Adopted);
    }
}
