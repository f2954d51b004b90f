//! [`ClusterEngine`]: an entry of the masterfree cluster.
//!
//! A publish is encoded into a record (realm, topic, payload, delivery options) and handed
//! to the entry ([`fox_cluster::EntryHandle`]); the cluster votes it a permanent ID, and
//! only then does the publisher's [`Ack`] resolve. Delivery does not happen at publish
//! time: [`crate::follow::follow_log`] tails the permanent log and applies every record
//! ([`decode_record`]), in permanent-ID order, to its realm, so every entry delivers the
//! same events in the same order, whichever entry the publisher used.
//!
//! Router-originated messages (meta events, `$SYS`) stay on this entry: they are applied
//! at once with a random publication ID and are not in the log.
//!
//! Not yet across the cluster (refused with a protocol error by the gates, see
//! [`Engine::refuses`]): retained messages and the `when` / `watch` / `will` sync service,
//! and MQTT persistent sessions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use fox_cluster::EntryHandle;
use fox_wamp_proto::{Dict, Value};

use super::{
    Ack, ClusterView, Draft, Engine, EngineError, Feature, MemberStatus, MemberView, MeshView,
    Target,
};
use crate::durable::{encode, history_publication, history_value};
use crate::message::{Publication, PublishOptions, SessionId};
use crate::topic::Topic;

/// The engine of a cluster entry.
#[derive(Debug)]
pub struct ClusterEngine {
    entry: EntryHandle,
    /// The last permanent ID applied on this entry (written by the log follower).
    last_applied: AtomicU64,
    /// Publish sequence: increases across every publisher of this entry, so each
    /// publisher's own sequence increases in its publish order.
    sequence: AtomicU64,
    /// This node and the cluster's members, for [`Engine::cluster`].
    node: u32,
    members: Vec<Member>,
    acks: Arc<AckStats>,
}

/// A node of the cluster file.
#[derive(Debug, Clone)]
pub struct Member {
    /// Node ID.
    pub id: u32,
    /// `entry`, `ndb` or `sync`.
    pub role: &'static str,
    /// Node-to-node address.
    pub peer: SocketAddr,
}

/// Acknowledgements and their latency, counted as the answers come.
#[derive(Debug, Default)]
struct AckStats {
    acks: AtomicU64,
    errors: AtomicU64,
    latency_counts: [AtomicU64; fox_storage::WRITE_LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

impl AckStats {
    fn observe(&self, outcome: &Result<u64, EngineError>, started: Instant) {
        if outcome.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.acks.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let bucket = fox_storage::WRITE_LATENCY_BUCKETS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(fox_storage::WRITE_LATENCY_BUCKETS_US.len());
        self.latency_counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn latency(&self) -> fox_storage::LatencyHistogram {
        let mut histogram = fox_storage::LatencyHistogram::default();
        for (count, counter) in histogram.counts.iter_mut().zip(&self.latency_counts) {
            *count = counter.load(Ordering::Relaxed);
        }
        histogram.sum_us = self.latency_sum_us.load(Ordering::Relaxed);
        histogram
    }
}

impl ClusterEngine {
    /// An engine publishing through `entry`, node `node` of a cluster of `members`.
    pub fn new(entry: EntryHandle, node: u32, members: Vec<Member>) -> Self {
        Self {
            entry,
            last_applied: AtomicU64::new(0),
            sequence: AtomicU64::new(1),
            node,
            members,
            acks: Arc::default(),
        }
    }

    /// The entry this engine publishes through.
    pub fn entry(&self) -> &EntryHandle {
        &self.entry
    }

    /// Records that the log follower applied everything through `id`.
    pub fn set_last_applied(&self, id: u64) {
        self.last_applied.store(id, Ordering::Release);
    }
}

impl Engine for ClusterEngine {
    fn publish(&self, realm: &dyn Target, draft: Draft<'_>) -> Ack {
        let Some(publisher) = draft.publisher.map(|p| p.id) else {
            return self.apply_here(realm, draft);
        };
        let record = encode_record(realm.name(), &draft);
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let decided = self.entry.publish(fox_sequencer::Publication {
            publisher,
            sequence,
            payload: record,
        });
        let (acks, started) = (self.acks.clone(), Instant::now());
        Ack::Remote(Box::pin(async move {
            let outcome = decided
                .await
                .map(|id| id.0)
                .map_err(|error| EngineError::Cluster(error.to_string()));
            acks.observe(&outcome, started);
            outcome
        }))
    }

    fn last_applied(&self) -> u64 {
        self.last_applied.load(Ordering::Acquire)
    }

    fn durable(&self) -> Option<&Arc<crate::durable::Durable>> {
        None
    }

    fn refuses(&self, feature: Feature) -> Option<&'static str> {
        Some(match feature {
            Feature::Retain => "retained messages are not available on a cluster entry yet",
            Feature::SyncService => {
                "when / watch / will (the sync service) are not available on a cluster entry yet"
            }
            Feature::PersistentSession => {
                "MQTT persistent sessions are not available on a cluster entry yet"
            }
        })
    }

    fn cluster(&self) -> Option<ClusterView> {
        let mesh = self.entry.mesh();
        let reports = self.entry.peer_reports();
        let tier = Tier::of(&reports);
        let members = self
            .members
            .iter()
            .map(|m| MemberView {
                id: m.id,
                role: m.role,
                peer: m.peer.to_string(),
                linked: (m.id != self.node && m.role != "entry")
                    .then(|| mesh.is_linked(fox_sequencer::NodeId(m.id))),
                status: reports
                    .iter()
                    .find(|peer| peer.node.0 == m.id)
                    .map(|peer| tier.status(m.role, peer)),
            })
            .collect();
        let stats = mesh.stats();
        Some(ClusterView {
            node: self.node,
            members,
            last_applied: self.last_applied.load(Ordering::Acquire),
            log_end: tier.log_end,
            leader: tier.leader,
            term: tier.term,
            acks: self.acks.acks.load(Ordering::Relaxed),
            ack_errors: self.acks.errors.load(Ordering::Relaxed),
            ack_latency: self.acks.latency(),
            mesh: MeshView {
                links_established: stats.links_established,
                connections_refused: stats.connections_refused,
                frames_dropped_queue_full: stats.frames_dropped_queue_full,
                frames_dropped_no_link: stats.frames_dropped_no_link,
            },
        })
    }
}

/// Reports older than this do not name the leader (a node cut off keeps its last answer).
const REPORT_FRESH_MS: u64 = 3_000;

/// What the reports of the ndb and sync nodes say together.
#[derive(Debug, Default)]
struct Tier {
    leader: Option<u32>,
    term: u64,
    commit_index: u64,
    resolutions: u64,
    log_end: u64,
}

impl Tier {
    fn of(reports: &[fox_cluster::PeerReport]) -> Tier {
        let mut tier = Tier::default();
        for peer in reports {
            let report = &peer.report;
            tier.commit_index = tier.commit_index.max(report.commit_index);
            tier.resolutions = tier
                .resolutions
                .max(report.resolutions)
                .max(report.applied_index);
            tier.log_end = tier.log_end.max(report.last_id);
            if peer.age_ms <= REPORT_FRESH_MS && report.term >= tier.term {
                if let Some(leader) = report.leader {
                    tier.term = report.term;
                    tier.leader = Some(leader.0);
                }
            }
        }
        tier
    }

    fn status(&self, role: &str, peer: &fox_cluster::PeerReport) -> MemberStatus {
        let report = &peer.report;
        if role == "sync" {
            MemberStatus::Sync {
                age_ms: peer.age_ms,
                term: report.term,
                leader: report.leader.map(|node| node.0),
                commit_index: report.commit_index,
                resolutions: report.resolutions,
                lag: self.commit_index.saturating_sub(report.commit_index),
            }
        } else {
            MemberStatus::Ndb {
                age_ms: peer.age_ms,
                applied_index: report.applied_index,
                last_id: report.last_id,
                temp_segments: report.temp_segments,
                lag: self.resolutions.saturating_sub(report.applied_index),
            }
        }
    }
}

impl ClusterEngine {
    /// A router-originated message: applied on this entry only, with a random ID (WAMP
    /// publication IDs are random in [1, 2^53]); not in the log, not in the history.
    fn apply_here(&self, realm: &dyn Target, draft: Draft<'_>) -> Ack {
        let id = rand::random::<u64>() % super::PERMANENT_ID_MAX + 1;
        let _order = realm.order();
        let (publication, _, options) = draft.into_publication(id);
        realm.apply(&publication, None, options);
        Ack::Ready(id)
    }
}

/// A log record: `[realm, topic URI, history value, delivery options]`, MessagePack.
fn encode_record(realm: &str, draft: &Draft<'_>) -> Vec<u8> {
    let options = draft.options;
    let mut o = Dict::new();
    o.insert("x".into(), Value::Bool(options.exclude_me));
    o.insert("q".into(), Value::from(u64::from(options.qos)));
    let ids = |list: &[SessionId]| Value::List(list.iter().map(|&i| Value::from(i)).collect());
    let names =
        |list: &[String]| Value::List(list.iter().map(|n| Value::from(n.as_str())).collect());
    if !options.exclude.is_empty() {
        o.insert("e".into(), ids(&options.exclude));
    }
    if !options.exclude_authid.is_empty() {
        o.insert("ea".into(), names(&options.exclude_authid));
    }
    if !options.exclude_authrole.is_empty() {
        o.insert("er".into(), names(&options.exclude_authrole));
    }
    if let Some(list) = &options.eligible {
        o.insert("l".into(), ids(list));
    }
    if let Some(list) = &options.eligible_authid {
        o.insert("la".into(), names(list));
    }
    if let Some(list) = &options.eligible_authrole {
        o.insert("lr".into(), names(list));
    }
    if let Some(p) = draft.publisher.filter(|_| options.disclose_me) {
        let disclosed = vec![
            Value::from(p.id),
            Value::from(p.authid),
            Value::from(p.authrole),
        ];
        o.insert("d".into(), Value::List(disclosed));
    }
    let message = Publication {
        id: 0,
        topic: draft.topic.clone(),
        payload: draft.payload.clone(),
        publisher: draft.publisher.map_or(0, |p| p.id),
        disclosed: None,
        qos: options.qos,
        retain: false,
        properties: draft.properties.clone(),
    };
    encode(&Value::List(vec![
        Value::from(realm),
        Value::from(draft.topic.to_wamp()),
        history_value(&message),
        Value::Dict(o),
    ]))
}

/// A record of the permanent log with permanent ID `id`, published by session
/// `publisher`: its realm, the publication and its delivery options (`None`: malformed).
pub fn decode_record(
    id: u64,
    publisher: SessionId,
    bytes: &[u8],
) -> Option<(String, Publication, PublishOptions)> {
    let Value::List(parts) = rmp_serde::from_slice::<Value>(bytes).ok()? else {
        return None;
    };
    let [realm, topic, message, options] = <[Value; 4]>::try_from(parts).ok()?;
    let (Value::Str(realm), Value::Str(topic), Value::Dict(mut o)) = (realm, topic, options) else {
        return None;
    };
    let mut publication = history_publication(id, Topic::from_wamp(&topic), message)?;
    let ids = |v: Option<Value>| -> Option<Vec<SessionId>> {
        match v? {
            Value::List(list) => Some(list.iter().filter_map(Value::as_u64).collect()),
            _ => None,
        }
    };
    let names = |v: Option<Value>| -> Option<Vec<String>> {
        match v? {
            Value::List(list) => Some(
                list.into_iter()
                    .filter_map(|n| match n {
                        Value::Str(s) => Some(s),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        }
    };
    if let Some(Value::List(d)) = o.remove("d") {
        if let Ok([session, Value::Str(authid), Value::Str(authrole)]) = <[Value; 3]>::try_from(d) {
            publication.disclosed = session.as_u64().map(|session| (session, authid, authrole));
        }
    }
    let options = PublishOptions {
        exclude_me: !matches!(o.remove("x"), Some(Value::Bool(false))),
        disclose_me: publication.disclosed.is_some(),
        exclude: ids(o.remove("e")).unwrap_or_default(),
        exclude_authid: names(o.remove("ea")).unwrap_or_default(),
        exclude_authrole: names(o.remove("er")).unwrap_or_default(),
        eligible: ids(o.remove("l")),
        eligible_authid: names(o.remove("la")),
        eligible_authrole: names(o.remove("lr")),
        qos: publication.qos,
        retain: false,
    };
    publication.publisher = publisher;
    Some((realm, publication, options))
}
