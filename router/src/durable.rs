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
//! - history topic `"<realm>\0<topic URI>"`, payload `payload`
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

use crate::realm::{Payload, Publication};
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

fn payload_value(payload: &Payload) -> Value {
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

fn payload_from(value: Value) -> Option<Payload> {
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

fn encode(value: &Value) -> Vec<u8> {
    // Serializing a Value into a Vec cannot fail: no I/O, every variant is representable.
    rmp_serde::to_vec(value).unwrap_or_default()
}

impl Durable {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, sync: SyncMode) -> anyhow::Result<Self> {
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir, sync)?);
        let committer = Committer::start(store.clone(), CommitterConfig::default())?;
        Ok(Self { store, committer })
    }

    /// The last permanent ID ever stored (0 for a new store).
    pub fn last_id(&self) -> anyhow::Result<u64> {
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
        batch.append_history(HistoryRecord {
            id: publication.id,
            timestamp_ms: now_ms,
            topic: k,
            payload: encode(&payload),
        });
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

    /// Wills left by sessions that died with the previous process: (realm, key, value).
    pub fn wills(&self) -> anyhow::Result<Vec<(String, Topic, Payload)>> {
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
                if !pattern.matches(&topic) {
                    continue;
                }
                let payload = rmp_serde::from_slice::<Value>(&record.payload)
                    .ok()
                    .and_then(payload_from);
                let Some(payload) = payload else {
                    tracing::warn!(id = record.id, "skipping a malformed history record");
                    continue;
                };
                found.push(Arc::new(Publication {
                    id: record.id,
                    topic,
                    payload,
                    publisher: 0,
                    disclosed: None,
                    qos: 0,
                    retain: false,
                    properties: Default::default(),
                }));
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
    pub fn retained(&self) -> anyhow::Result<Vec<RestoredRetained>> {
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
