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
//! Retained messages and the `when` / `watch` / `will` sync service go through the log too:
//! a conditional write is decided where it is applied (see [`crate::follow`]), and its
//! publisher's answer waits for this entry's verdict ([`ClusterEngine::resolve`]). So do
//! MQTT sessions that outlive their connection: their state is written to the log, and a
//! connection to another entry claims it there ([`crate::follow::applier::sessions`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fox_cluster::EntryHandle;
use fox_sequencer::PermanentId;
use tokio::sync::oneshot;

use super::record::{self, Conditional, Owner};
use super::{
    Ack, ClusterView, Draft, Engine, EngineError, Feature, KvOutcome, MemberStatus, MemberView,
    MeshView, SnapshotView, Target,
};
use crate::locks::lock;
use crate::message::{KvWrite, SessionId};

/// The publisher of every entry's lease beats: no session's ID (those are WAMP IDs, below
/// 2^53), so the order of no session's records is touched when beats go first.
pub const BEAT_PUBLISHER: SessionId = u64::MAX;

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
    /// This entry's life: sessions of an earlier one are gone (see [`record::Owner`]).
    incarnation: AtomicU64,
    /// Conditional writes waiting for this entry's verdict, by token.
    verdicts: Mutex<HashMap<u64, oneshot::Sender<Result<u64, EngineError>>>>,
    next_token: AtomicU64,
    /// Sessions (realm, session) that wrote a will or parked a write: their end goes in the
    /// log.
    kv_sessions: Mutex<HashSet<(String, SessionId)>>,
    /// Where a clean stop stands: [`RUNNING`], [`LEAVING`] or [`LEFT`].
    leaving: Arc<AtomicU8>,
    /// This entry's gossip, once started.
    gossip: std::sync::OnceLock<Arc<crate::gossip::Gossip>>,
    /// The MQTT clients whose sessions the log holds (kept by the log follower).
    mqtt_known: crate::follow::applier::sessions::Known,
    /// Set once the log follower applied this entry's start: what the log knew of MQTT
    /// sessions before it is known here.
    caught_up: tokio::sync::watch::Sender<bool>,
    /// The applier's newest checkpoints (kept by the log follower).
    checkpoints: Mutex<Vec<crate::follow::applier::Checkpoint>>,
    /// What this entry's snapshots did (written by the log follower).
    snapshots: Arc<crate::follow::snapshot::SnapshotStats>,
}

/// The entry serves.
const RUNNING: u8 = 0;
/// The entry stops: sessions that end now end abnormally (their wills fire: the clients
/// did not choose to leave).
const LEAVING: u8 = 1;
/// The log ordered the entry's leave, which ended all its sessions that hold keys.
const LEFT: u8 = 2;

/// The answer to a conditional write still waiting when its entry was fenced.
const FENCED: &str = "this entry lost its lease (it was fenced): the write is not applied";

/// How long a clean stop waits for the cluster to order the entry's leave.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A node of the cluster file.
#[derive(Debug, Clone)]
pub struct Member {
    /// Node ID.
    pub id: u32,
    /// `entry`, `ndb` or `sync`.
    pub role: &'static str,
    /// Node-to-node address.
    pub peer: SocketAddr,
    /// Entry: its rank for the coordinator (0 when `cluster.toml` gives none).
    pub rank: u32,
    /// Entry: its client listeners (WebSocket, RawSocket, MQTT).
    pub listeners: [Option<SocketAddr>; 3],
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
    /// Attaches this entry's gossip (the admin API and the `$fox/gossip` topics use it).
    pub fn set_gossip(&self, gossip: Arc<crate::gossip::Gossip>) {
        let _ = self.gossip.set(gossip);
    }

    /// The cluster's members, as `cluster.toml` names them.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// An engine publishing through `entry`, node `node` of a cluster of `members`.
    pub fn new(entry: EntryHandle, node: u32, members: Vec<Member>) -> Self {
        Self {
            entry,
            last_applied: AtomicU64::new(0),
            sequence: AtomicU64::new(1),
            node,
            members,
            acks: Arc::default(),
            incarnation: AtomicU64::new(super::unix_ms()),
            verdicts: Mutex::default(),
            next_token: AtomicU64::new(1),
            kv_sessions: Mutex::default(),
            leaving: Arc::new(AtomicU8::new(RUNNING)),
            gossip: std::sync::OnceLock::new(),
            mqtt_known: Arc::default(),
            caught_up: tokio::sync::watch::Sender::new(false),
            checkpoints: Mutex::default(),
            snapshots: Arc::default(),
        }
    }

    /// Where the log follower counts this entry's snapshots.
    pub fn snapshot_stats(&self) -> Arc<crate::follow::snapshot::SnapshotStats> {
        self.snapshots.clone()
    }

    /// The applier's newest checkpoints, for [`Engine::cluster`].
    pub fn set_checkpoints(&self, checkpoints: Vec<crate::follow::applier::Checkpoint>) {
        *lock(&self.checkpoints) = checkpoints;
    }

    /// The log follower applied this entry's start (see [`Engine::sessions_known`]).
    pub fn set_caught_up(&self) {
        self.caught_up.send_replace(true);
    }

    /// The MQTT clients whose sessions the log holds, for the log follower to keep.
    pub fn mqtt_known(&self) -> crate::follow::applier::sessions::Known {
        self.mqtt_known.clone()
    }

    /// This node's ID.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// This entry's incarnation (its start time, Unix ms; then the time it was fenced).
    pub fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::Acquire)
    }

    /// Ends this entry's life: returns the sessions (realm, session) that hold keys (wills,
    /// parked writes), which the caller must end; every writer still waiting is answered
    /// with an error; later conditional writes belong to the new incarnation (returned).
    pub fn fence(&self) -> (Vec<(String, SessionId)>, u64) {
        let sessions: Vec<_> = lock(&self.kv_sessions).drain().collect();
        let next = super::unix_ms().max(self.incarnation() + 1);
        self.incarnation.store(next, Ordering::Release);
        // Writes still waiting are of the old life, which the log now refuses.
        let waiting: Vec<_> = lock(&self.verdicts).drain().collect();
        for (_, answer) in waiting {
            let _ = answer.send(Err(EngineError::Cluster(FENCED.into())));
        }
        (sessions, next)
    }

    /// Session `session` of this entry's present life.
    fn owner(&self, session: SessionId) -> Owner {
        Owner {
            node: self.node,
            incarnation: self.incarnation(),
            session,
        }
    }

    /// Hands `record` to the log in `session`'s order; a failure is only logged (`what`).
    fn log_quietly(&self, session: SessionId, record: Vec<u8>, what: &'static str) {
        let decided = self.submit(session, record);
        tokio::spawn(async move {
            if let Err(error) = decided.await {
                tracing::warn!(session, %error, "{what} could not be logged");
            }
        });
    }

    /// Whether sessions of this entry hold keys (wills, parked writes).
    pub fn holds_keys(&self) -> bool {
        !lock(&self.kv_sessions).is_empty()
    }

    /// Hands a record the router wrote to the cluster, in the order of calls; `publisher`
    /// is the session whose order it keeps. The future says whether it was ordered.
    pub fn submit(
        &self,
        publisher: SessionId,
        payload: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<PermanentId, fox_cluster::EntryError>> + Send + 'static
    {
        self.entry.publish(self.publication(publisher, payload))
    }

    /// A record of `publisher` for the entry, with the next sequence number.
    fn publication(&self, publisher: SessionId, payload: Vec<u8>) -> fox_sequencer::Publication {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        fox_sequencer::Publication {
            publisher,
            sequence,
            payload,
        }
    }

    /// Hands this entry's lease beat to the cluster ahead of every publish that waits for
    /// the entry ([`EntryHandle::publish_first`]), as publisher [`BEAT_PUBLISHER`], whose
    /// order no other record shares: a queue of client publishes cannot hold it back
    /// until the lease lapses.
    pub fn submit_beat(
        &self,
        payload: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<PermanentId, fox_cluster::EntryError>> + Send + 'static
    {
        self.entry
            .publish_first(self.publication(BEAT_PUBLISHER, payload))
    }

    /// The verdict on the conditional write of `token` (this entry's), once applied here.
    pub fn resolve(&self, token: u64, outcome: Result<u64, EngineError>) {
        if let Some(answer) = lock(&self.verdicts).remove(&token) {
            let _ = answer.send(outcome);
        }
    }

    /// Whether `owner` is a session of this entry's present life.
    pub fn owns(&self, owner: &Owner) -> bool {
        owner.node == self.node && owner.incarnation == self.incarnation()
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
        let (publication, _, options) = draft.into_publication(0);
        let record = record::encode_publish(realm.name(), &publication, options, None);
        let decided = self.submit(publisher, record);
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

    fn publish_conditional(
        &self,
        realm: &dyn Target,
        draft: Draft<'_>,
        write: &KvWrite,
    ) -> KvOutcome {
        let Some(publisher) = draft.publisher.map(|p| p.id) else {
            return KvOutcome::Applied(self.apply_here(realm, draft));
        };
        if write.watch || write.will.is_some() {
            lock(&self.kv_sessions).insert((realm.name().to_owned(), publisher));
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (answer, verdict) = oneshot::channel();
        lock(&self.verdicts).insert(token, answer);
        let kv = Conditional {
            write: write.clone(),
            owner: self.owner(publisher),
            token,
        };
        let (publication, _, options) = draft.into_publication(0);
        let record = record::encode_publish(realm.name(), &publication, options, Some(&kv));
        let decided = self.submit(publisher, record);
        let (acks, started) = (self.acks.clone(), Instant::now());
        KvOutcome::Applied(Ack::Remote(Box::pin(async move {
            let ordered = decided
                .await
                .map(|id| id.0)
                .map_err(|error| EngineError::Cluster(error.to_string()));
            acks.observe(&ordered, started);
            ordered?;
            // Applied here, refused, or (parked) applied once a wake of it is: the verdict of
            // this entry's log follower. It is gone only when the session ended.
            verdict.await.unwrap_or(Err(EngineError::Stopped))
        })))
    }

    fn session_ended(&self, realm: &dyn Target, session: SessionId, abnormal: bool) {
        let key = (realm.name().to_owned(), session);
        if !lock(&self.kv_sessions).remove(&key) {
            return;
        }
        let abnormal = match self.leaving.load(Ordering::Acquire) {
            RUNNING => abnormal,
            LEAVING => true,
            _ => return, // the leave record ended it
        };
        let record = record::encode_session_ended(realm.name(), &self.owner(session), abnormal);
        // If it is lost, the entry's next start ends this session for good (EntryStarted).
        self.log_quietly(session, record, "the end of a session");
    }

    fn testament_added(&self, realm: &dyn Target, draft: Draft<'_>, index: u32) {
        let Some(session) = draft.publisher.map(|p| p.id) else {
            return;
        };
        // Its end goes in the log, so the testament is published once when it ends.
        lock(&self.kv_sessions).insert((realm.name().to_owned(), session));
        let owner = self.owner(session);
        let (publication, _, options) = draft.into_publication(0);
        let record =
            record::encode_testament(realm.name(), &publication, options, (&owner, index), false);
        self.log_quietly(session, record, "a testament");
    }

    fn testaments_flushed(&self, realm: &dyn Target, session: SessionId) {
        let owner = self.owner(session);
        let record = record::encode_testaments_flushed(realm.name(), &owner);
        self.log_quietly(session, record, "a flush of testaments");
    }

    fn publish_testament(&self, realm: &dyn Target, draft: Draft<'_>, index: u32) -> Ack {
        let Some(session) = draft.publisher.map(|p| p.id) else {
            return self.apply_here(realm, draft);
        };
        let owner = self.owner(session);
        let (publication, _, options) = draft.into_publication(0);
        let record =
            record::encode_testament(realm.name(), &publication, options, (&owner, index), true);
        let decided = self.submit(session, record);
        Ack::Remote(Box::pin(async move {
            decided
                .await
                .map(|id| id.0)
                .map_err(|error| EngineError::Cluster(error.to_string()))
        }))
    }

    fn leave(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        if self.leaving.swap(LEAVING, Ordering::AcqRel) != RUNNING {
            return Box::pin(std::future::ready(()));
        }
        let (node, incarnation) = (self.node, self.incarnation());
        let decided = self.submit(0, record::encode_entry_left(node, incarnation));
        let leaving = self.leaving.clone();
        Box::pin(async move {
            match tokio::time::timeout(LEAVE_TIMEOUT, decided).await {
                Ok(Ok(id)) => {
                    leaving.store(LEFT, Ordering::Release);
                    tracing::info!(
                        node,
                        incarnation,
                        id = id.0,
                        "the cluster ordered this entry's leave"
                    );
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "this entry's leave was not ordered; its lease will expire")
                }
                Err(_) => tracing::warn!(
                    "this entry's leave was not ordered in time; its lease will expire"
                ),
            }
        })
    }

    fn gossip(&self) -> Option<Arc<crate::gossip::Gossip>> {
        self.gossip.get().cloned()
    }

    fn last_applied(&self) -> u64 {
        self.last_applied.load(Ordering::Acquire)
    }

    fn durable(&self) -> Option<&Arc<crate::durable::Durable>> {
        None
    }

    fn keeps_sessions(&self) -> bool {
        true
    }

    fn record_session(
        &self,
        realm: &str,
        client: &str,
        session: SessionId,
        body: Option<Vec<u8>>,
        handover: bool,
    ) {
        let owner = self.owner(session);
        let record = record::encode_mqtt_session(realm, client, &owner, body.as_deref(), handover);
        self.log_quietly(session, record, "an MQTT session's state");
    }

    fn sessions_known(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let mut caught_up = self.caught_up.subscribe();
        Box::pin(async move {
            let _ = caught_up.wait_for(|up| *up).await;
        })
    }

    fn claim_session(&self, realm: &str, client: &str, session: SessionId) -> bool {
        let key = (realm.to_owned(), client.to_owned());
        if !lock(&self.mqtt_known).contains(&key) {
            return false;
        }
        let record = record::encode_mqtt_claim(realm, client, &self.owner(session));
        self.log_quietly(session, record, "an MQTT session's claim");
        true
    }

    fn refuses(&self, feature: Feature) -> Option<&'static str> {
        match feature {
            Feature::Retain | Feature::SyncService | Feature::PersistentSession => None,
        }
    }

    fn cluster(&self) -> Option<ClusterView> {
        let mesh = self.entry.mesh();
        let reports = self.entry.peer_reports();
        let tier = Tier::of(&reports);
        let members = self
            .members
            .iter()
            .map(|m| {
                let peer = (m.id != self.node && m.role != "entry")
                    .then(|| mesh.link_version(fox_sequencer::NodeId(m.id)));
                MemberView {
                    id: m.id,
                    role: m.role,
                    peer: m.peer.to_string(),
                    linked: peer.map(|version| version.is_some()),
                    protocol: peer.flatten(),
                    status: reports
                        .iter()
                        .find(|peer| peer.node.0 == m.id)
                        .map(|peer| tier.status(m.role, peer)),
                }
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
            checkpoints: lock(&self.checkpoints).clone(),
            snapshot: SnapshotView::of(&self.snapshots),
            mesh: MeshView {
                links_established: stats.links_established,
                connections_refused: stats.connections_refused,
                frames_dropped_queue_full: stats.frames_dropped_queue_full,
                frames_dropped_no_link: stats.frames_dropped_no_link,
                frames_dropped_old_peer: stats.frames_dropped_old_peer,
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
    /// A router-originated message: applied on this entry only, with a random ID at or
    /// above [`super::LOCAL_ID_MIN`] (WAMP publication IDs are random in [1, 2^53]; these
    /// are never taken for a place in the log); not in the log, not in the history.
    fn apply_here(&self, realm: &dyn Target, draft: Draft<'_>) -> Ack {
        let id = super::LOCAL_ID_MIN
            + rand::random::<u64>() % (super::PERMANENT_ID_MAX - super::LOCAL_ID_MIN);
        let _order = realm.order();
        let (publication, _, options) = draft.into_publication(id);
        realm.apply(&publication, None, options);
        Ack::Ready(id)
    }
}
