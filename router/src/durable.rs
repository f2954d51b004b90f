//! Durability with `--data DIR`: retained keys, message history and the last permanent ID in
//! RocksDB, written through the group-commit [`Committer`].
//!
//! Every client publish is appended to history and, when retained, to the retained table,
//! in one batch submitted in permanent-ID order (under the realm's order lock). An
//! acknowledged publish is answered only once its batch is durable (fsync), so nothing
//! acknowledged is lost by `kill -9` or power loss. On start the router resumes IDs after the
//! stored last ID and reloads the retained keys.
//!
//! Record formats (MessagePack of a [`Value`]):
//! - retained key `"<realm>\0<topic URI>"` → `[id, qos, payload]`
//! - history topic `"<realm>\0<topic URI>"`, payload `[payload, qos, publisher, properties]`
//!   (publisher: the session ID in the process that stored it; properties: `nil` or a map
//!   of the MQTT 5 message properties that were set)
//! - MQTT session `"<realm>\0<client id>"` → the record of `mqtt/persist.rs`
//!
//! where `payload` is `{"a": args, "k": kwargs}` for WAMP arguments or bytes for MQTT.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use fox_storage::{
    Batch, Committer, CommitterConfig, HistoryRecord, Pending, RetentionPolicy, RocksStore, Store,
    StoreError, SyncMode, Table,
};
use fox_wamp_proto::{Dict, Value};

use crate::message::{MessageProperties, Payload, Publication};
use crate::topic::{Pattern, Topic};

/// Messages one `after` replay reads from the store at most.
pub const HISTORY_READ_MAX: usize = 100_000;
const HISTORY_PAGE: usize = 1_000;

/// Retained messages loaded at most at start (the store caps one scan at this).
const RETAINED_LOAD_MAX: usize = 100_000;

/// The durable store of a router.
pub struct Durable {
    store: Arc<dyn Store>,
    committer: Committer,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").finish_non_exhaustive()
    }
}

/// A retained message read back at start.
#[derive(Debug)]
pub struct RestoredRetained {
    /// Realm name.
    pub realm: String,
    /// Topic.
    pub topic: Topic,
    /// Permanent ID.
    pub id: u64,
    /// QoS it was published with.
    pub qos: u8,
    /// Payload.
    pub payload: Payload,
}

fn key(realm: &str, topic: &Topic) -> String {
    format!("{realm}\0{}", topic.to_wamp())
}

pub(crate) fn payload_value(payload: &Payload) -> Value {
    match payload {
        Payload::Raw(bytes) => Value::Bytes(bytes.to_vec()),
        Payload::Wamp { args, kwargs } => {
            let mut d = Dict::new();
            if let Some(args) = args {
                d.insert("a".into(), Value::List(args.clone()));
            }
            if let Some(kwargs) = kwargs {
                d.insert("k".into(), Value::Dict(kwargs.clone()));
            }
            Value::Dict(d)
        }
    }
}

pub(crate) fn payload_from(value: Value) -> Option<Payload> {
    match value {
        Value::Bytes(b) => Some(Payload::Raw(Bytes::from(b))),
        Value::Dict(mut d) => {
            let args = match d.remove("a") {
                Some(Value::List(l)) => Some(l),
                None => None,
                Some(_) => return None,
            };
            let kwargs = match d.remove("k") {
                Some(Value::Dict(k)) => Some(k),
                None => None,
                Some(_) => return None,
            };
            Some(Payload::Wamp { args, kwargs })
        }
        _ => None,
    }
}

fn properties_value(p: &MessageProperties) -> Value {
    if *p == MessageProperties::default() {
        return Value::Null;
    }
    let mut d = Dict::new();
    if let Some(t) = p.expires_at_ms {
        d.insert("e".into(), Value::from(t));
    }
    if let Some(u) = p.payload_utf8 {
        d.insert("u".into(), Value::Bool(u));
    }
    if let Some(c) = &p.content_type {
        d.insert("c".into(), Value::from(c.as_str()));
    }
    if let Some(r) = &p.response_topic {
        d.insert("r".into(), Value::from(r.as_str()));
    }
    if let Some(c) = &p.correlation_data {
        d.insert("d".into(), Value::Bytes(c.to_vec()));
    }
    if !p.user_properties.is_empty() {
        let list = p
            .user_properties
            .iter()
            .map(|(k, v)| Value::List(vec![Value::from(k.as_str()), Value::from(v.as_str())]))
            .collect();
        d.insert("p".into(), Value::List(list));
    }
    Value::Dict(d)
}

fn properties_from(value: Value) -> MessageProperties {
    let Value::Dict(mut d) = value else {
        return MessageProperties::default();
    };
    let text = |v: Option<Value>| match v {
        Some(Value::Str(s)) => Some(s),
        _ => None,
    };
    MessageProperties {
        expires_at_ms: d.remove("e").and_then(|v| v.as_u64()),
        payload_utf8: match d.remove("u") {
            Some(Value::Bool(b)) => Some(b),
            _ => None,
        },
        content_type: text(d.remove("c")),
        response_topic: text(d.remove("r")),
        correlation_data: match d.remove("d") {
            Some(Value::Bytes(b)) => Some(Bytes::from(b)),
            _ => None,
        },
        user_properties: match d.remove("p") {
            Some(Value::List(list)) => list
                .into_iter()
                .filter_map(|pair| match pair {
                    Value::List(kv) => match <[Value; 2]>::try_from(kv) {
                        Ok([Value::Str(k), Value::Str(v)]) => Some((k, v)),
                        _ => None,
                    },
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        },
    }
}

/// A history record's value: the payload with the publication's QoS, publisher and
/// properties.
pub(crate) fn history_value(publication: &Publication) -> Value {
    Value::List(vec![
        payload_value(&publication.payload),
        Value::from(u64::from(publication.qos)),
        Value::from(publication.publisher),
        properties_value(&publication.properties),
    ])
}

/// Decodes a history record back into a publication (`None`: malformed).
pub(crate) fn history_publication(id: u64, topic: Topic, value: Value) -> Option<Publication> {
    let (payload, qos, publisher, properties) = match value {
        Value::List(parts) => {
            let [payload, qos, publisher, properties] = <[Value; 4]>::try_from(parts).ok()?;
            (
                payload_from(payload)?,
                qos.as_u64()?.min(2) as u8,
                publisher.as_u64()?,
                properties_from(properties),
            )
        }
        // Payload alone (records written before QoS and publisher were kept).
        other => (payload_from(other)?, 0, 0, MessageProperties::default()),
    };
    Some(Publication {
        id,
        topic,
        payload,
        publisher,
        disclosed: None,
        qos,
        retain: false,
        properties,
    })
}

fn session_key(realm: &str, client_id: &str) -> String {
    format!("{realm}\0{client_id}")
}

pub(crate) fn encode(value: &Value) -> Vec<u8> {
    // Serializing a Value into a Vec cannot fail: no I/O, every variant is representable.
    rmp_serde::to_vec(value).unwrap_or_default()
}

impl Durable {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, sync: SyncMode) -> Result<Self, StoreError> {
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir, sync)?);
        let committer = Committer::start(store.clone(), CommitterConfig::default())?;
        Ok(Self { store, committer })
    }

    /// Waits until every write queued so far is durable (the committer writes in order,
    /// so an empty batch queued now is answered after them). At a clean stop: the wills
    /// that closing sessions fired are on disk before the process exits.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.committer.commit_blocking(Batch::new())
    }

    /// The group committer's counters: writes, failures, write latency (admin metrics).
    pub fn commit_stats(&self) -> fox_storage::CommitStats {
        self.committer.stats()
    }

    /// The last permanent ID ever stored (0 for a new store).
    pub fn last_id(&self) -> Result<u64, StoreError> {
        Ok(self.store.last_permanent_id()?.unwrap_or(0))
    }

    /// Queues the writes of one publication; the returned `Pending` answers when durable.
    /// Call in permanent-ID order.
    pub fn record(
        &self,
        realm: &str,
        publication: &Publication,
        retain: bool,
        now_ms: u64,
    ) -> Result<Pending, StoreError> {
        self.record_with(realm, publication, retain, true, now_ms)
    }

    /// A router-originated retained write (a will that fired): the retained table only,
    /// no history (router-originated messages stay out of it, as in memory).
    pub fn record_retained(
        &self,
        realm: &str,
        publication: &Publication,
        now_ms: u64,
    ) -> Result<Pending, StoreError> {
        self.record_with(realm, publication, true, false, now_ms)
    }

    fn record_with(
        &self,
        realm: &str,
        publication: &Publication,
        retain: bool,
        history: bool,
        now_ms: u64,
    ) -> Result<Pending, StoreError> {
        let k = key(realm, &publication.topic);
        let payload = payload_value(&publication.payload);
        let mut batch = Batch::new();
        if retain {
            if publication.payload.is_empty() {
                batch.delete_retained(k.clone());
            } else {
                let record = Value::List(vec![
                    Value::from(publication.id),
                    Value::from(u64::from(publication.qos)),
                    payload.clone(),
                ]);
                batch.put_retained(k.clone(), encode(&record));
            }
        }
        if history {
            batch.append_history(HistoryRecord {
                id: publication.id,
                timestamp_ms: now_ms,
                topic: k,
                payload: encode(&history_value(publication)),
            });
        }
        self.submit(batch)
    }

    /// Queues a batch: waits for room when the writer is behind (backpressure).
    fn submit(&self, batch: Batch) -> Result<Pending, StoreError> {
        let submitted = match self.committer.try_submit(batch) {
            // The writer is behind: wait for room (backpressure on publishers). Inside the
            // multi-threaded runtime, block_in_place first moves this worker's other tasks.
            Ok(Err(batch)) => match tokio::runtime::Handle::try_current() {
                Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread => {
                    Err(StoreError::CommitterStopped)
                }
                Ok(_) => tokio::task::block_in_place(|| self.committer.submit_blocking(batch)),
                Err(_) => self.committer.submit_blocking(batch),
            },
            Ok(Ok(pending)) => Ok(pending),
            Err(e) => Err(e),
        };
        if let Err(e) = &submitted {
            tracing::error!(error = %e, "cannot queue a write to the store");
        }
        submitted
    }

    /// Records (or with `None` forgets) the will on a retained key. Queued in order with the
    /// key's writes; nobody waits for it.
    pub fn record_will(&self, realm: &str, topic: &Topic, will: Option<&Payload>) {
        let mut batch = Batch::new();
        let k = key(realm, topic);
        match will {
            Some(payload) => batch.put_will(k, encode(&payload_value(payload))),
            None => batch.delete_will(k),
        };
        if let Err(e) = self.committer.try_submit(batch) {
            tracing::error!(error = %e, "cannot queue a will to the store");
        }
    }

    /// Stores (or with `None` deletes) the record of an MQTT session. Queued in order with
    /// every other write; nobody waits for it.
    pub fn record_session(&self, realm: &str, client_id: &str, record: Option<Vec<u8>>) {
        let mut batch = Batch::new();
        let k = session_key(realm, client_id);
        match record {
            Some(bytes) => batch.put_session(k, bytes),
            None => batch.delete_session(k),
        };
        // An error is logged by submit; the record is advisory until the next write.
        let _ = self.submit(batch);
    }

    /// Every stored MQTT session record: (realm, client id, record).
    pub fn sessions(&self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        let mut sessions = Vec::new();
        for (k, bytes) in self.store.scan(Table::Sessions, "", RETAINED_LOAD_MAX)? {
            match k.split_once('\0') {
                Some((realm, client)) => {
                    sessions.push((realm.to_owned(), client.to_owned(), bytes))
                }
                None => tracing::warn!(key = %k.escape_debug(), "skipping a malformed session key"),
            }
        }
        Ok(sessions)
    }

    /// Wills left by sessions that died with the previous process: (realm, key, value).
    pub fn wills(&self) -> Result<Vec<(String, Topic, Payload)>, StoreError> {
        let mut wills = Vec::new();
        for (k, bytes) in self.store.scan(Table::Wills, "", RETAINED_LOAD_MAX)? {
            let decoded: Option<Payload> =
                rmp_serde::from_slice(&bytes).ok().and_then(payload_from);
            match (k.split_once('\0'), decoded) {
                (Some((realm, uri)), Some(payload)) => {
                    wills.push((realm.to_owned(), Topic::from_wamp(uri), payload))
                }
                _ => tracing::warn!(key = %k.escape_debug(), "skipping a malformed will"),
            }
        }
        Ok(wills)
    }

    /// Stored messages of `realm` with `after < id < before` matching `pattern`, in ID order
    /// (at most [`HISTORY_READ_MAX`] of them).
    pub fn history_between(
        &self,
        realm: &str,
        after: u64,
        before: u64,
        pattern: &Pattern,
    ) -> Vec<Arc<Publication>> {
        self.history_where(realm, after, before, |topic| pattern.matches(topic))
    }

    /// Stored messages of `realm` with `after < id < before` whose topic passes `wanted`,
    /// in ID order (at most [`HISTORY_READ_MAX`] of them).
    pub fn history_where(
        &self,
        realm: &str,
        after: u64,
        before: u64,
        wanted: impl Fn(&Topic) -> bool,
    ) -> Vec<Arc<Publication>> {
        let prefix = format!("{realm}\0");
        let mut found = Vec::new();
        let mut cursor = after;
        while found.len() < HISTORY_READ_MAX {
            let page = match self.store.history_after(cursor, HISTORY_PAGE) {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read history");
                    break;
                }
            };
            let Some(last) = page.last().map(|r| r.id) else {
                break;
            };
            for record in page {
                if record.id >= before {
                    return found;
                }
                let Some(uri) = record.topic.strip_prefix(&prefix) else {
                    continue;
                };
                let topic = Topic::from_wamp(uri);
                if !wanted(&topic) {
                    continue;
                }
                let publication = rmp_serde::from_slice::<Value>(&record.payload)
                    .ok()
                    .and_then(|v| history_publication(record.id, topic, v));
                let Some(publication) = publication else {
                    tracing::warn!(id = record.id, "skipping a malformed history record");
                    continue;
                };
                found.push(Arc::new(publication));
            }
            cursor = last;
        }
        found
    }

    /// Applies the retention limits to the stored history; how many records went.
    pub fn compact(&self, policy: &RetentionPolicy, now_ms: u64) -> u64 {
        match self.store.compact_history(policy, now_ms) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "history compaction failed");
                0
            }
        }
    }

    /// Every stored retained message.
    pub fn retained(&self) -> Result<Vec<RestoredRetained>, StoreError> {
        let mut restored = Vec::new();
        for (k, bytes) in self.store.scan_retained("", RETAINED_LOAD_MAX)? {
            let Some((realm, uri)) = k.split_once('\0') else {
                tracing::warn!(key = %k.escape_debug(), "skipping a malformed retained key");
                continue;
            };
            let decoded: Result<Value, _> = rmp_serde::from_slice(&bytes);
            let parsed = match decoded {
                Ok(Value::List(mut parts)) if parts.len() == 3 => {
                    let payload = parts.pop().and_then(payload_from);
                    let qos = parts.pop().and_then(|v| v.as_u64());
                    let id = parts.pop().and_then(|v| v.as_u64());
                    id.zip(qos).zip(payload)
                }
                _ => None,
            };
            let Some(((id, qos), payload)) = parsed else {
                tracing::warn!(key = %k.escape_debug(), "skipping a malformed retained record");
                continue;
            };
            restored.push(RestoredRetained {
                realm: realm.to_owned(),
                topic: Topic::from_wamp(uri),
                id,
                qos: qos.min(2) as u8,
                payload,
            });
        }
        Ok(restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_records_keep_qos_publisher_and_properties() {
        let publication = Publication {
            id: 7,
            topic: Topic::from_wamp("a.b"),
            payload: Payload::Raw(Bytes::from_static(b"x")),
            publisher: 42,
            disclosed: None,
            qos: 2,
            retain: false,
            properties: MessageProperties {
                expires_at_ms: Some(99),
                payload_utf8: Some(true),
                content_type: Some("text/plain".into()),
                response_topic: Some("r/t".into()),
                correlation_data: Some(Bytes::from_static(b"\x01")),
                user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
            },
        };
        let bytes = encode(&history_value(&publication));
        let value: Value = rmp_serde::from_slice(&bytes).unwrap();
        let back = history_publication(7, Topic::from_wamp("a.b"), value).unwrap();
        assert_eq!(back.qos, 2);
        assert_eq!(back.publisher, 42);
        assert_eq!(back.payload, publication.payload);
        assert_eq!(back.properties, publication.properties);
        // The older form (payload only) still reads.
        let old = encode(&payload_value(&publication.payload));
        let value: Value = rmp_serde::from_slice(&old).unwrap();
        let back = history_publication(7, Topic::from_wamp("a.b"), value).unwrap();
        assert_eq!((back.qos, back.publisher), (0, 0));
    }

    #[test]
    fn payloads_round_trip_through_their_stored_form() {
        let mut kw = Dict::new();
        kw.insert("x".into(), Value::Bytes(vec![1, 2]));
        for payload in [
            Payload::Raw(Bytes::from_static(b"\x00raw")),
            Payload::Wamp {
                args: Some(vec![Value::Int(-3), Value::from("s")]),
                kwargs: Some(kw),
            },
            Payload::Wamp {
                args: None,
                kwargs: None,
            },
        ] {
            let bytes = encode(&payload_value(&payload));
            let back: Value = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(payload_from(back), Some(payload));
        }
    }
}
