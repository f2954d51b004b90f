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
use std::sync::Arc;

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};
use fox_mqtt_proto::{Packet, Protocol};
use serde::{Deserialize, Serialize};

use super::inflight::{Entry, Phase};
use super::session::{Parked, Session, SessionState, SubscriptionRecord, Will};
use crate::auth::Identity;
use crate::engine::unix_ms;
use crate::realm::{
    Delivery, MessageProperties, Publication, Realm, SessionHandle, SessionId, SessionInfo,
    SubscribeOptions,
};
use crate::router::Router;
use crate::topic::{Pattern, Topic};

/// How often, at most, acknowledgements move a live session's stored watermark.
const PROGRESS_WRITE_INTERVAL_MS: u64 = 1_000;

/// The stored form of a session.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct SessionRecord {
    /// The session ID in the process that wrote the record (history keeps publishers by
    /// session ID: no local).
    sid: u64,
    authid: String,
    authrole: String,
    authmethod: String,
    authprovider: String,
    expiry_secs: u32,
    subscriptions: Vec<StoredSubscription>,
    will: Option<StoredWill>,
    /// Every message up to this ID has been dealt with.
    through: u64,
    /// When the connection ended (Unix ms); `None` while connected.
    parked_ms: Option<u64>,
    /// The highest ID taken from the realm queue: of the messages at or below it, only
    /// `waiting` and `inflight` ones are owed (`None`: every one after `through`).
    #[serde(default)]
    taken: Option<u64>,
    /// Messages taken from the realm queue and waiting for the inflight window.
    #[serde(default)]
    waiting: Vec<u64>,
    /// Messages sent and not acknowledged, with their packet IDs: sent again as they were
    /// (DUP), or their PUBREL, so that a client's QoS 2 state stays valid.
    #[serde(default)]
    inflight: Vec<StoredInflight>,
    /// Inbound QoS 2 packet IDs: PUBREC sent, PUBREL awaited.
    #[serde(default)]
    inbound_qos2: Vec<u16>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct StoredInflight {
    /// The message's permanent ID (0: a retained replay).
    id: u64,
    packet_id: u16,
    /// 1: PUBACK awaited, 2: PUBREC awaited, 3: PUBCOMP awaited.
    phase: u8,
    /// The PUBLISH as first sent, encoded as MQTT 5.
    #[serde(with = "serde_bytes_compat")]
    publish: Vec<u8>,
}

impl StoredInflight {
    fn of(entry: &Entry) -> Option<Self> {
        let mut bytes = BytesMut::new();
        let packet = Packet::Publish(entry.publish.clone());
        fox_mqtt_proto::encode(&packet, Protocol::V5, &mut bytes).ok()?;
        Some(Self {
            id: entry.id,
            packet_id: entry.packet_id,
            phase: match entry.phase {
                Phase::AwaitPubAck => 1,
                Phase::AwaitPubRec => 2,
                Phase::AwaitPubComp => 3,
            },
            publish: bytes.to_vec(),
        })
    }

    fn into_entry(self) -> Option<Entry> {
        let mut bytes = BytesMut::from(&self.publish[..]);
        let Ok(Some(Packet::Publish(publish))) =
            fox_mqtt_proto::decode(&mut bytes, Some(Protocol::V5), usize::MAX)
        else {
            return None;
        };
        let phase = match self.phase {
            1 => Phase::AwaitPubAck,
            2 => Phase::AwaitPubRec,
            3 => Phase::AwaitPubComp,
            _ => return None,
        };
        Some(Entry {
            packet_id: self.packet_id,
            publish,
            phase,
            id: self.id,
        })
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct StoredSubscription {
    filter: String,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    identifier: Option<u32>,
    since: u64,
    /// Written since the `fox-id` opt-in; older records read as false.
    #[serde(default)]
    fox_id: bool,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct StoredWill {
    /// WAMP spelling of the topic.
    topic: String,
    #[serde(with = "serde_bytes_compat")]
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
    delay_secs: u32,
    expires_at_ms: Option<u64>,
    payload_utf8: Option<bool>,
    content_type: Option<String>,
    response_topic: Option<String>,
    correlation_data: Option<Vec<u8>>,
    user_properties: Vec<(String, String)>,
}

/// Byte strings as MessagePack bin (not an array of numbers).
mod serde_bytes_compat {
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}

impl StoredWill {
    fn of(will: &Will) -> Self {
        let p = &will.properties;
        Self {
            topic: will.topic.to_wamp(),
            payload: will.payload.to_vec(),
            qos: will.qos,
            retain: will.retain,
            delay_secs: will.delay_secs,
            expires_at_ms: p.expires_at_ms,
            payload_utf8: p.payload_utf8,
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.as_ref().map(|b| b.to_vec()),
            user_properties: p.user_properties.clone(),
        }
    }

    fn into_will(self) -> Will {
        Will {
            topic: Topic::from_wamp(&self.topic),
            payload: Bytes::from(self.payload),
            qos: self.qos.min(2),
            retain: self.retain,
            properties: MessageProperties {
                expires_at_ms: self.expires_at_ms,
                payload_utf8: self.payload_utf8,
                content_type: self.content_type,
                response_topic: self.response_topic,
                correlation_data: self.correlation_data.map(Bytes::from),
                user_properties: self.user_properties,
            },
            delay_secs: self.delay_secs,
        }
    }
}

/// Everything at or below this ID has been dealt with: below the oldest live message still
/// in flight or pending, else the last one taken from the realm queue (later ones are
/// still in it, and have higher IDs).
fn done_through(state: &SessionState) -> u64 {
    let in_flight = state.inflight.iter().map(|e| e.id);
    let pending = state
        .pending
        .iter()
        .filter(|d| !d.retained)
        .map(|d| d.publication.id);
    match in_flight.chain(pending).filter(|id| *id > 0).min() {
        Some(oldest) => oldest - 1,
        None => state.received_through,
    }
}

fn record(
    handle: &SessionHandle,
    state: &SessionState,
    expiry_secs: u32,
    will: Option<&Will>,
    parked_ms: Option<u64>,
) -> SessionRecord {
    let identity = &handle.info.identity;
    let mut subscriptions: Vec<StoredSubscription> = state
        .subscriptions
        .iter()
        .map(|(filter, r)| StoredSubscription {
            filter: filter.clone(),
            qos: r.qos,
            no_local: r.no_local,
            retain_as_published: r.retain_as_published,
            identifier: r.identifier,
            since: r.since,
            fox_id: r.fox_id,
        })
        .collect();
    subscriptions.sort_by(|a, b| a.filter.cmp(&b.filter));
    SessionRecord {
        sid: handle.info.id,
        authid: identity.authid.clone(),
        authrole: identity.authrole.clone(),
        authmethod: identity.authmethod.clone(),
        authprovider: identity.authprovider.clone(),
        expiry_secs,
        subscriptions,
        will: will.map(StoredWill::of),
        through: done_through(state),
        parked_ms,
        taken: Some(state.received_through),
        waiting: state
            .pending
            .iter()
            .filter(|d| !d.retained)
            .map(|d| d.publication.id)
            .collect(),
        inflight: state
            .inflight
            .iter()
            .filter_map(StoredInflight::of)
            .collect(),
        inbound_qos2: state.inbound_qos2.iter().copied().collect(),
    }
}

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

/// Brings one stored session back into `realm`, or ends it (will published, record
/// deleted) when it has expired or was not to outlive its connection.
fn revive(
    router: &Router,
    realm: &Arc<Realm>,
    client_id: String,
    record: SessionRecord,
    now_ms: u64,
) -> Option<Restored> {
    let identity = Identity {
        authid: record.authid,
        authrole: record.authrole,
        authmethod: record.authmethod,
        authprovider: record.authprovider,
    };
    let info = SessionInfo {
        id: crate::realm::new_session_id(),
        realm: realm.name.clone(),
        identity,
        transport: "mqtt",
        peer: "restored".into(),
        roles: fox_wamp_proto::Dict::new(),
    };
    let (handle, rx) = SessionHandle::new(info, router.config.limits.session_queue_max);
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
    let mut subscriptions = Vec::new();
    for stored in record.subscriptions {
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
        let broker_id = realm.subscribe(&handle, pattern.clone(), options);
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

#[cfg(test)]
mod tests;
