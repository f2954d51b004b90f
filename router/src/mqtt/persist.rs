//! Durable MQTT sessions (`--data`): what of a session survives `kill -9` and a restart.
//!
//! One record per client identifier in the store's sessions table, key
//! `"<realm>\0<client id>"`, queued through the group commit in order with every other
//! write (nobody waits for it). It is written
//! - at CONNECT, for a session that can outlive its connection (expiry > 0) or has a will;
//! - after SUBSCRIBE and UNSUBSCRIBE;
//! - at most once a second while acknowledgements come in (the `through` watermark);
//! - when the connection ends and the session is parked (with the time and the will still
//!   waiting for its delay), and when that will is published;
//!
//! and deleted when the session ends (expiry 0, expired, discarded by a clean start).
//!
//! Messages are not copied per session. Every client publication is in the store's history
//! with its QoS and publisher, and live deliveries reach a session in ID order, so a
//! session owes its client exactly the history after `through` (everything at or below it
//! was acknowledged, or was QoS 0) that its subscriptions match, each subscription from
//! its own start (`since`). At start, [`restore`] parks every stored session again with its
//! subscriptions and queues those messages, at QoS 1 or 2 (QoS 0 ones are not kept for an
//! offline session), before any listener accepts a connection. A session that was connected
//! when the process died ended abnormally then: its will is due (after its delay), and its
//! expiry counts from the restart.
//!
//! The record holds the messages in flight with their packet IDs and phases, what was
//! taken from the realm queue and what waits for the window, so a session rebuilt from a
//! record written when its connection ended (or handed over between cluster entries) owes
//! exactly what it owed. What this does not keep, by design (documented in
//! `docs/mqtt.md`): acknowledgements of the last second before a crash (the record is up to
//! a second old: those messages come again, at least once); messages for shared
//! subscriptions (one member had them, none gets them again); retained messages being
//! replayed at SUBSCRIBE time.
//!
//! On a cluster entry the engine writes the record to the log instead of a store
//! ([`crate::engine::Engine::record_session`]); [`revive_claimed`] and [`adopt`] rebuild a
//! session from it there (`crate::mqtt::cluster`).

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;

use super::session::{Parked, Session, SessionState, SubscriptionRecord};
use crate::auth::Identity;
use crate::engine::unix_ms;
use crate::realm::{
    Delivery, Publication, Realm, SessionHandle, SessionId, SessionInfo, SubscribeOptions,
};
use crate::router::Router;
use crate::topic::{Pattern, Topic};

/// How often, at most, acknowledgements move a live session's stored watermark.
const PROGRESS_WRITE_INTERVAL_MS: u64 = 1_000;

/// Hands a session's record to the engine (the store, or the cluster's log); `session`
/// is the realm session that serves the client.
fn write(realm: &Realm, client_id: &str, session: SessionId, record: Option<&SessionRecord>) {
    write_as(realm, client_id, session, record, false);
}

/// [`write`], or (`handover`) the last word of a cluster entry whose session was claimed.
fn write_as(
    realm: &Realm,
    client_id: &str,
    session: SessionId,
    record: Option<&SessionRecord>,
    handover: bool,
) {
    let engine = &realm.shared().engine;
    if !engine.keeps_sessions() {
        return;
    }
    let bytes = record.map(|r| rmp_serde::to_vec_named(r).unwrap_or_default());
    engine.record_session(&realm.name, client_id, session, bytes, handover);
}

impl Session {
    /// Writes this live session's record (with `--data`), or deletes it when nothing of
    /// the session outlives the connection.
    pub(super) fn persist(&mut self, now_ms: u64) {
        if !self.realm().shared().engine.keeps_sessions() {
            return;
        }
        self.persisted_ms = now_ms;
        if self.settings.expiry_secs == 0 && self.will.is_none() {
            self.forget();
            return;
        }
        let record = record(
            &self.handle,
            &self.state,
            self.settings.expiry_secs,
            self.will.as_deref(),
            None,
        );
        write(
            self.realm(),
            &self.settings.client_id,
            self.handle.info.id,
            Some(&record),
        );
        self.stored = true;
    }

    /// After an acknowledgement: moves the stored watermark, at most once a second.
    pub(super) fn persist_progress(&mut self, now_ms: u64) {
        if self.settings.expiry_secs > 0
            && now_ms.saturating_sub(self.persisted_ms) >= PROGRESS_WRITE_INTERVAL_MS
        {
            self.persist(now_ms);
        }
    }

    /// Deletes this session's record, if it may have one: it ends with its connection.
    pub(super) fn forget(&mut self) {
        if std::mem::take(&mut self.stored) {
            write(
                self.realm(),
                &self.settings.client_id,
                self.handle.info.id,
                None,
            );
        }
    }
}

/// Writes a parked session's record.
pub(super) fn persist_parked(realm: &Realm, client_id: &str, parked: &Parked) {
    if !realm.shared().engine.keeps_sessions() {
        return;
    }
    let record = parked_record(realm, parked, parked.parked_ms);
    write(realm, client_id, parked.handle.info.id, Some(&record));
}

/// Writes a session's last state for the cluster entry that claimed it (a handover), as if
/// parked at `now_ms` when it was still connected; `None`: no session outlives its
/// connection here.
pub(super) fn hand_over(realm: &Realm, client_id: &str, parked: Option<&Parked>, now_ms: u64) {
    let record = parked.map(|p| {
        let parked_ms = if p.parked_ms == 0 {
            now_ms
        } else {
            p.parked_ms
        };
        parked_record(realm, p, parked_ms)
    });
    let session = parked.map_or(0, |p| p.handle.info.id);
    write_as(realm, client_id, session, record.as_ref(), true);
}

fn parked_record(realm: &Realm, parked: &Parked, parked_ms: u64) -> SessionRecord {
    // Read the cut before looking at the queue: every message at or below it that was for
    // this session is in the queue by then. Nothing waiting anywhere means nothing up to
    // the cut is owed, so a restart need not read the history below it.
    let cut = realm.fanned_out_through();
    let idle = parked.state.inflight.is_empty()
        && parked.state.pending.iter().all(|d| d.retained)
        && parked.rx.is_empty();
    let mut record = record(
        &parked.handle,
        &parked.state,
        parked.expiry_secs,
        parked.will.as_ref(),
        Some(parked_ms),
    );
    if idle {
        record.through = record.through.max(cut);
        record.taken = record.taken.map(|taken| taken.max(cut));
    }
    record
}

/// Deletes a session's record (`session`: the realm session that served it).
pub(super) fn forget(realm: &Realm, client_id: &str, session: SessionId) {
    write(realm, client_id, session, None);
}

/// A stored session brought back, before its messages are queued.
struct Restored {
    client_id: String,
    old_sid: u64,
    through: u64,
    parked: Parked,
    /// Subscriptions by broker ID: pattern, QoS, no local, start.
    subscriptions: Vec<(u64, Pattern, u8, bool, u64)>,
    will_delay_ms: Option<u64>,
    expiry_ms: u64,
    /// Of the messages at or below this ID, only `waiting` ones are owed.
    taken: Option<u64>,
    waiting: HashSet<u64>,
    /// Messages restored in flight: sent again from there, not queued.
    in_flight: HashSet<u64>,
}

impl Restored {
    /// Whether `id` (after `through`) is still owed to the client.
    fn owes(&self, id: u64) -> bool {
        id > self.through
            && !self.in_flight.contains(&id)
            && self
                .taken
                .is_none_or(|taken| id > taken || self.waiting.contains(&id))
    }
}

/// At start, with a store: parks every stored MQTT session again, queues what it is owed,
/// publishes the wills that came due, and deletes the records of sessions that ended.
/// Returns how many sessions were restored.
pub fn restore(router: &Arc<Router>) -> Result<usize, fox_storage::StoreError> {
    let Some(durable) = router.shared().durable().cloned() else {
        return Ok(0);
    };
    let now_ms = unix_ms();
    let mut by_realm: HashMap<String, Vec<Restored>> = HashMap::new();
    for (realm_name, client_id, bytes) in durable.sessions()? {
        let Some(realm) = router.realm(&realm_name) else {
            tracing::warn!(realm = %realm_name, client = %client_id, "stored MQTT session of a realm that is not configured");
            continue;
        };
        let record: SessionRecord = match rmp_serde::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(client = %client_id, error = %e, "dropping a malformed stored MQTT session");
                forget(&realm, &client_id, 0);
                continue;
            }
        };
        if let Some(restored) = revive(router, &realm, client_id, record, now_ms) {
            by_realm.entry(realm_name).or_default().push(restored);
        }
    }
    let mut count = 0;
    for (realm_name, sessions) in by_realm {
        let Some(registry) = router.mqtt(&realm_name) else {
            continue;
        };
        let realm = registry.realm();
        count += sessions.len();
        queue_owed(realm, &durable, &sessions);
        for s in sessions {
            persist_parked(realm, &s.client_id, &s.parked);
            registry.restore(
                &s.client_id,
                Box::new(s.parked),
                s.will_delay_ms,
                s.expiry_ms,
            );
        }
    }
    Ok(count)
}

/// The realm session of a session restored from `record` (its identity taken from it),
/// not joined yet.
fn restored_handle(
    router: &Router,
    realm: &Realm,
    record: &mut SessionRecord,
) -> (SessionHandle, crate::realm::OutboundQueue) {
    let identity = Identity {
        authid: std::mem::take(&mut record.authid),
        authrole: std::mem::take(&mut record.authrole),
        authmethod: std::mem::take(&mut record.authmethod),
        authprovider: std::mem::take(&mut record.authprovider),
    };
    let info = SessionInfo {
        id: crate::realm::new_session_id(),
        realm: realm.name.clone(),
        identity,
        transport: "mqtt",
        peer: "restored".into(),
        roles: fox_wamp_proto::Dict::new(),
    };
    SessionHandle::new(info, router.config.limits.session_queue_max)
}

/// Brings one stored session back into `realm`, or ends it (will published, record
/// deleted) when it has expired or was not to outlive its connection.
fn revive(
    router: &Router,
    realm: &Arc<Realm>,
    client_id: String,
    mut record: SessionRecord,
    now_ms: u64,
) -> Option<Restored> {
    let (handle, rx) = restored_handle(router, realm, &mut record);
    // A session that was connected when the process died ended then, abnormally.
    let was_connected = record.parked_ms.is_none();
    let parked_ms = record.parked_ms.unwrap_or(now_ms);
    let away_ms = now_ms.saturating_sub(parked_ms);
    let expiry_ms = u64::from(record.expiry_secs) * 1000;
    let mut will = record.will.map(StoredWill::into_will);
    if record.expiry_secs == 0 || away_ms >= expiry_ms {
        if let Some(will) = will {
            will.publish(realm, &handle);
        }
        forget(realm, &client_id, handle.info.id);
        return None;
    }
    let will_due = will.as_ref().is_some_and(|w| {
        (was_connected && w.delay_secs == 0) || u64::from(w.delay_secs) * 1000 <= away_ms
    });
    if will_due {
        if let Some(will) = will.take() {
            will.publish(realm, &handle);
        }
    }
    realm.join(handle.clone());
    let mut state = SessionState {
        received_through: record.taken.unwrap_or(record.through),
        inbound_qos2: record.inbound_qos2.into_iter().collect(),
        ..SessionState::default()
    };
    let mut in_flight = HashSet::new();
    for entry in record
        .inflight
        .into_iter()
        .filter_map(StoredInflight::into_entry)
    {
        if entry.id > 0 {
            in_flight.insert(entry.id);
        }
        state.inflight.push(entry);
    }
    let subscriptions = resubscribe(realm, &handle, record.subscriptions, &mut state);
    let will_delay_ms = will
        .as_ref()
        .map(|w| (u64::from(w.delay_secs) * 1000).saturating_sub(away_ms));
    Some(Restored {
        client_id,
        old_sid: record.sid,
        through: record.through,
        parked: Parked {
            handle,
            rx,
            state,
            expiry_secs: record.expiry_secs,
            will,
            parked_ms,
        },
        subscriptions,
        will_delay_ms,
        expiry_ms: expiry_ms - away_ms,
        taken: record.taken,
        waiting: record.waiting.into_iter().collect(),
        in_flight,
    })
}

/// Subscribes a revived session again: its broker subscriptions and its state's; returns
/// those whose missed messages it is owed (shared ones are not: one member had them).
fn resubscribe(
    realm: &Realm,
    handle: &SessionHandle,
    stored: Vec<StoredSubscription>,
    state: &mut SessionState,
) -> Vec<(u64, Pattern, u8, bool, u64)> {
    let mut subscriptions = Vec::new();
    for stored in stored {
        let (group, inner) = match fox_mqtt_proto::parse_shared(&stored.filter) {
            Some((group, inner)) => (Some(group.to_owned()), inner.to_owned()),
            None => (None, stored.filter.clone()),
        };
        let pattern = Pattern::from_mqtt_filter(&inner);
        let shared = group.is_some();
        let options = SubscribeOptions {
            qos: stored.qos,
            no_local: stored.no_local,
            share_group: group.clone(),
            ..SubscribeOptions::default()
        };
        let broker_id = realm.subscribe(handle, pattern.clone(), options);
        if group.is_none() {
            subscriptions.push((
                broker_id,
                pattern.clone(),
                stored.qos,
                stored.no_local,
                stored.since,
            ));
        }
        state.by_broker_id.insert(broker_id, stored.filter.clone());
        state.subscriptions.insert(
            stored.filter,
            SubscriptionRecord {
                broker_id,
                qos: stored.qos,
                retain_as_published: stored.retain_as_published,
                identifier: stored.identifier,
                no_local: stored.no_local,
                since: stored.since,
                pattern,
                shared,
                fox_id: stored.fox_id,
            },
        );
    }
    subscriptions
}

/// Queues, in ID order, the stored messages each restored session is owed: after its
/// watermark and after the start of the subscription that matches, at QoS 1 or 2.
fn queue_owed(realm: &Realm, durable: &crate::durable::Durable, sessions: &[Restored]) {
    let Some(after) = sessions.iter().map(|s| s.through).min() else {
        return;
    };
    let wanted = |topic: &Topic| {
        sessions
            .iter()
            .any(|s| s.subscriptions.iter().any(|(_, p, ..)| p.matches(topic)))
    };
    let owed = durable.history_where(&realm.name, after, u64::MAX, wanted);
    deliver_owed(owed, sessions);
}

/// Queues, in ID order, what of `history` each restored session is owed.
fn deliver_owed(history: Vec<Arc<Publication>>, sessions: &[Restored]) {
    for publication in history {
        let dollar = publication.topic.is_system();
        for s in sessions.iter().filter(|s| s.owes(publication.id)) {
            for (broker_id, pattern, qos, no_local, since) in &s.subscriptions {
                let qos = (*qos).min(publication.qos);
                if qos == 0
                    || publication.id <= *since
                    || !pattern.matches(&publication.topic)
                    || (dollar && !pattern.first_level_is_literal())
                    || (*no_local && publication.publisher == s.old_sid)
                {
                    continue;
                }
                s.parked.handle.deliver(Delivery {
                    subscription: *broker_id,
                    pattern_based: !matches!(pattern, Pattern::Exact(_)),
                    publication: publication.clone(),
                    qos,
                    retained: false,
                });
            }
        }
    }
}

/// A cluster entry resumes a session another entry served, from its last state in the
/// log (`body`), with the messages it is owed from the realm's history. Called by the log
/// follower between two records, so that nothing is applied meanwhile: every message after
/// the session's watermark is either in that history or comes live. `None`: the record
/// was malformed, or the session had ended (expired; its will then published).
pub fn revive_claimed(
    router: &Router,
    realm: &Arc<Realm>,
    client_id: &str,
    body: &[u8],
) -> Option<Parked> {
    revive_from_log(router, realm, client_id, body).map(|r| r.parked)
}

/// A cluster entry adopts a session whose entry is gone and whose client has not come
/// back: parked here from its last state in the log (its will published now if due, later
/// when its delay passes), until its client comes back to some entry or it expires.
/// Called by the log follower between two records; whether the session was adopted (not:
/// it had expired, or its record was malformed).
pub fn adopt(
    router: &Router,
    registry: &Arc<super::registry::Registry>,
    client_id: &str,
    body: &[u8],
) -> bool {
    let realm = registry.realm();
    let Some(restored) = revive_from_log(router, realm, client_id, body) else {
        return false;
    };
    tracing::info!(client = %client_id, "adopted the MQTT session of an entry that is gone");
    persist_parked(realm, client_id, &restored.parked);
    registry.restore(
        client_id,
        Box::new(restored.parked),
        restored.will_delay_ms,
        restored.expiry_ms,
    );
    true
}

fn revive_from_log(
    router: &Router,
    realm: &Arc<Realm>,
    client_id: &str,
    body: &[u8],
) -> Option<Restored> {
    let record: SessionRecord = match rmp_serde::from_slice(body) {
        Ok(record) => record,
        Err(error) => {
            tracing::warn!(client = %client_id, %error, "a malformed MQTT session state in the log: starting a new session");
            return None;
        }
    };
    let restored = revive(router, realm, client_id.to_owned(), record, unix_ms())?;
    let (mut history, oldest) = realm.memory().history_after(restored.through);
    history.retain(|p| crate::engine::is_logged(p.id));
    if oldest.is_some_and(|oldest| oldest > restored.through + 1) && restored.through > 0 {
        tracing::warn!(
            client = %client_id,
            through = restored.through,
            oldest,
            "the realm's history no longer holds every message a resumed MQTT session is owed"
        );
    }
    let restored = [restored];
    deliver_owed(history, &restored);
    let [restored] = restored;
    Some(restored)
}

mod record;

use record::{record, SessionRecord, StoredInflight, StoredSubscription, StoredWill};

#[cfg(test)]
mod tests;
