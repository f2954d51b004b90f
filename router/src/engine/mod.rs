//! The Engine seam: how a publish is ordered, stored, acknowledged and delivered.
//!
//! A realm publishes through `Arc<dyn Engine>` ([`crate::realm::Shared::engine`]); the
//! publisher's acknowledgement is an [`Ack`], which resolves with the permanent ID once the
//! message may be acknowledged (PUBLISHED, PUBACK, PUBREC wait for it). Delivery to local
//! subscribers comes from the engine in permanent-ID order, through [`Target::apply`]
//! (implemented by `Realm`) under the realm's order lock.
//!
//! Dependencies point one way: realms use engines; an engine knows a realm only as a
//! [`Target`], and the message types come from the leaf [`crate::message`]. The cluster's
//! log follower, which needs the router's realms, is [`crate::follow`].
//!
//! ```text
//! gate --Draft--> Engine::publish --> LocalEngine:   ID now, Target::apply now, store write
//!                                                     queued in ID order; Ack: Ready | Stored
//!                                     (a cluster entry: the ID is voted by the cluster; the
//!                                      log brings the publication back to Target::apply in
//!                                      permanent-ID order on every entry; Ack: Remote)
//! ```
//!
//! Layout: [`local`] (the single node: [`LocalEngine`], [`LocalSequencer`]), [`cluster`]
//! (an entry of the cluster: [`ClusterEngine`]).

pub mod cluster;
pub mod local;
pub mod record;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, MutexGuard};

use crate::durable::Durable;
use crate::message::{KvWrite, MessageProperties, Payload, Publication, PublishOptions, SessionId};
use crate::topic::Topic;

pub use cluster::ClusterEngine;
pub use local::{LocalEngine, LocalSequencer, PERMANENT_ID_MAX};

/// What an engine delivers ordered publications to: a realm (`crate::realm::Realm`).
pub trait Target {
    /// The realm's name.
    fn name(&self) -> &str;
    /// The realm's order lock: publications are applied under it in permanent-ID order.
    fn order(&self) -> MutexGuard<'_, ()>;
    /// The value of retained key `topic`, as the sync service's conditions see it
    /// (`crate::realm::sync::key_value`).
    fn value(&self, topic: &Topic) -> fox_wamp_proto::Value;
    /// Applies an ordered publication (retained table, history, fan-out), holding
    /// [`Target::order`], in permanent-ID order. `publisher` is `None` for
    /// router-originated messages.
    fn apply(
        &self,
        publication: &Arc<Publication>,
        publisher: Option<SessionId>,
        options: &PublishOptions,
    );
}

/// A durable write queued with `--data`: the answer to wait for before acknowledging, or
/// why it could not even be queued.
pub type StoreWrite = Result<fox_storage::Pending, fox_storage::StoreError>;

/// How a publish is ordered, stored, acknowledged and delivered.
pub trait Engine: Send + Sync + std::fmt::Debug {
    /// Orders one publication of `realm`. Delivery to the realm's subscribers happens
    /// through [`Target::apply`], in permanent-ID order; the answer says when the publisher
    /// may be acknowledged, and with which ID.
    fn publish(&self, realm: &dyn Target, draft: Draft<'_>) -> Ack;

    /// Orders a conditional write to a retained key (`when` / `watch` / `will`) and decides
    /// it where it is applied, by the sync service's applier ([`crate::follow::applier`]),
    /// so every node reaches the same verdict: a single node applies it at once and knows
    /// the outcome; a cluster entry learns it from its log follower (the answer resolves
    /// with the ID it was applied with, after a parked write's wake, or with
    /// [`EngineError::NotAccepted`]).
    fn publish_conditional(
        &self,
        realm: &dyn Target,
        draft: Draft<'_>,
        write: &KvWrite,
    ) -> KvOutcome;

    /// A session of `realm` ended (`abnormal`: without GOODBYE): the engine forgets or fires
    /// what it holds for it (a cluster entry tells the log about its wills and parked writes).
    fn session_ended(&self, realm: &dyn Target, session: SessionId, abnormal: bool) {
        let _ = (realm, session, abnormal);
    }

    /// Testament `index` of the draft's publisher (a WAMP session) was added: a cluster
    /// entry logs it, so that another entry publishes it if this one dies first.
    fn testament_added(&self, realm: &dyn Target, draft: Draft<'_>, index: u32) {
        let _ = (realm, draft, index);
    }

    /// A session dropped its testaments (`wamp.session.flush_testaments`).
    fn testaments_flushed(&self, realm: &dyn Target, session: SessionId) {
        let _ = (realm, session);
    }

    /// Publishes testament `index` of the leaving session (the draft's publisher); a
    /// cluster entry publishes it at most once, whichever entry gets there first.
    fn publish_testament(&self, realm: &dyn Target, draft: Draft<'_>, index: u32) -> Ack {
        let _ = index;
        self.publish(realm, draft)
    }

    /// The router is about to stop cleanly (SIGTERM), before it closes its sessions: a
    /// cluster entry tells the cluster it leaves, so another entry writes its sessions'
    /// wills at once. Resolves when that is done or given up.
    fn leave(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(std::future::ready(()))
    }

    /// Whether MQTT sessions outlive this process here: written to the store (`--data`) or
    /// to the cluster's log by [`Engine::record_session`].
    fn keeps_sessions(&self) -> bool {
        self.durable().is_some()
    }

    /// Writes MQTT client `client`'s session state (`crate::mqtt::persist`'s record), or
    /// deletes it (`None`); `session` is the realm session serving it. `handover`: the last
    /// word of a cluster entry whose session another entry claimed.
    fn record_session(
        &self,
        realm: &str,
        client: &str,
        session: SessionId,
        record: Option<Vec<u8>>,
        handover: bool,
    ) {
        let _ = (session, handover);
        if let Some(durable) = self.durable() {
            durable.record_session(realm, client, record);
        }
    }

    /// Resolves once this node knows every MQTT session that may be claimed: at once on a
    /// single node; on a cluster entry, once its log follower applied the entry's own start
    /// (a restarted entry replays the log first; a client connecting meanwhile would
    /// otherwise start afresh and lose its session).
    fn sessions_known(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(std::future::ready(()))
    }

    /// A connection of `client` (realm session `session`) found no session of it on this
    /// node: a cluster entry whose log knows the client's session claims it (the answer
    /// comes through the log follower, `crate::mqtt::cluster`); `false`: nothing to claim.
    fn claim_session(&self, realm: &str, client: &str, session: SessionId) -> bool {
        let _ = (realm, client, session);
        false
    }

    /// The last permanent ID applied on this node: a subscription made now (under the
    /// realm's order lock) receives every later publication live.
    fn last_applied(&self) -> u64;

    /// The store this node writes history, retained keys, wills and MQTT sessions to
    /// (`--data`), if any.
    fn durable(&self) -> Option<&Arc<Durable>>;

    /// Why this engine cannot serve `feature` (`None`: it can). The gates answer a client
    /// that uses it with their protocol's error and this text.
    fn refuses(&self, feature: Feature) -> Option<&'static str> {
        let _ = feature;
        None
    }

    /// This cluster entry's gossip (`None`: a single node, or gossip turned off).
    fn gossip(&self) -> Option<Arc<crate::gossip::Gossip>> {
        None
    }

    /// What this node knows of its cluster (`None`: a single node). For
    /// `GET /api/v1/cluster`, the `foxrouter_cluster_*` metrics and `/readyz`.
    fn cluster(&self) -> Option<ClusterView> {
        None
    }
}

/// A cluster entry's view of its cluster, read on demand (no cost on the message path
/// beyond the counters it reads).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterView {
    /// This node's ID.
    pub node: u32,
    /// Every node of the cluster file, this one included.
    pub members: Vec<MemberView>,
    /// The last permanent ID this entry applied (delivered to its subscribers).
    pub last_applied: u64,
    /// The highest last permanent ID an ndb node reported (0: none reported yet). This
    /// entry has caught up when `last_applied >= log_end` (reports are up to a second old).
    pub log_end: u64,
    /// The sync tier's leader, as the sync nodes that answered lately report it (the one
    /// of the highest term); `None` when none knows a leader or none answered.
    pub leader: Option<u32>,
    /// That leader's Raft term (0 when unknown).
    pub term: u64,
    /// Publishes the cluster gave a permanent ID (acknowledged to their publishers).
    pub acks: u64,
    /// Publishes the cluster could not order (no quorum, timeout): refused to their
    /// publishers, never falsely acknowledged.
    pub ack_errors: u64,
    /// Time from publish to permanent ID (acknowledged ones).
    #[serde(skip)]
    pub ack_latency: fox_storage::LatencyHistogram,
    /// The node-to-node mesh's counters.
    pub mesh: MeshView,
    /// The digest of the state derived from the log at this entry's newest checkpoints:
    /// every entry that applied the log through a checkpoint's record has the same digest
    /// there (one checkpoint per 5 s of log time; the newest 12).
    pub checkpoints: Vec<crate::follow::applier::Checkpoint>,
    /// This entry's snapshots (`None`: it keeps none: no `data` in `cluster.toml`, or
    /// none written yet).
    pub snapshot: Option<SnapshotView>,
}

/// The last snapshot an entry wrote, and how many it wrote.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SnapshotView {
    /// The record it stands at.
    pub at: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// When it was written (Unix ms).
    pub written_ms: u64,
    /// Snapshots written since the entry started.
    pub writes: u64,
    /// Snapshots that could not be written.
    pub failures: u64,
}

impl SnapshotView {
    fn of(stats: &crate::follow::snapshot::SnapshotStats) -> Option<Self> {
        use std::sync::atomic::Ordering::Acquire;
        let view = Self {
            at: stats.at.load(Acquire),
            bytes: stats.bytes.load(Acquire),
            written_ms: stats.written_ms.load(Acquire),
            writes: stats.writes.load(Acquire),
            failures: stats.failures.load(Acquire),
        };
        (view.writes + view.failures > 0).then_some(view)
    }
}

/// One node of the cluster as this entry sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberView {
    /// Node ID.
    pub id: u32,
    /// `entry`, `ndb` or `sync`.
    pub role: &'static str,
    /// Its node-to-node address.
    pub peer: String,
    /// Whether this entry has a link to it now (`None`: this node, or an entry: entries
    /// do not link to each other).
    pub linked: Option<bool>,
    /// The node protocol version of that link (what its handshake negotiated; `None`
    /// without a link). During a rolling upgrade, a link to a node not yet upgraded shows
    /// its older version.
    pub protocol: Option<u16>,
    /// What an ndb or sync node last reported to this entry (`None`: an entry, or no
    /// answer yet).
    pub status: Option<MemberStatus>,
}

/// What an ndb or sync node last reported (STATUS, asked every second).
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(untagged)]
pub enum MemberStatus {
    /// A sync node.
    Sync {
        /// How long ago it answered, in ms.
        age_ms: u64,
        /// Its Raft term.
        term: u64,
        /// The leader it knows of.
        leader: Option<u32>,
        /// Its highest Raft index known committed.
        commit_index: u64,
        /// Segments resolved (the resolution log's length).
        resolutions: u64,
        /// Raft entries behind the highest commit index any sync node reported.
        lag: u64,
    },
    /// An ndb node.
    Ndb {
        /// How long ago it answered, in ms.
        age_ms: u64,
        /// The last resolution applied to its permanent log.
        applied_index: u64,
        /// The last permanent ID in its log.
        last_id: u64,
        /// Temporary segments held, not yet resolved.
        temp_segments: u64,
        /// Resolutions behind the highest count any ndb or sync node reported.
        lag: u64,
    },
}

impl MemberStatus {
    /// How long ago the node answered, in ms.
    pub fn age_ms(&self) -> u64 {
        match self {
            MemberStatus::Sync { age_ms, .. } | MemberStatus::Ndb { age_ms, .. } => *age_ms,
        }
    }

    /// How far behind its tier it is (Raft entries for sync, resolutions for ndb).
    pub fn lag(&self) -> u64 {
        match self {
            MemberStatus::Sync { lag, .. } | MemberStatus::Ndb { lag, .. } => *lag,
        }
    }
}

/// The mesh counters since start.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct MeshView {
    /// Links established (reconnects count again).
    pub links_established: u64,
    /// Connections refused (handshake failed, timed out, too many).
    pub connections_refused: u64,
    /// Frames dropped: the peer's queue was full.
    pub frames_dropped_queue_full: u64,
    /// Frames dropped: no link to the peer.
    pub frames_dropped_no_link: u64,
    /// Frames dropped: the peer's protocol version has no such message (a node of an
    /// older version, during a rolling upgrade).
    pub frames_dropped_old_peer: u64,
}

impl ClusterView {
    /// (linked, total) among the members of `role`.
    pub fn linked(&self, role: &str) -> (usize, usize) {
        let of_role = self.members.iter().filter(|m| m.role == role);
        let total = of_role.clone().count();
        let linked = of_role.filter(|m| m.linked == Some(true)).count();
        (linked, total)
    }
}

/// What a gate asks the engine for before it uses it.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// Retained messages (WAMP `retain`, MQTT RETAIN).
    Retain,
    /// Conditional writes to retained keys: `when` / `watch` / `will`.
    SyncService,
    /// MQTT sessions that outlive their connection.
    PersistentSession,
}

/// Who published a draft: the session and its identity.
#[derive(Clone, Copy, Debug)]
pub struct Publisher<'a> {
    /// The session.
    pub id: SessionId,
    /// Its authid.
    pub authid: &'a str,
    /// Its authrole.
    pub authrole: &'a str,
}

/// A publication before it has a permanent ID.
#[derive(Debug)]
pub struct Draft<'a> {
    /// The publishing session; `None` for router-originated messages (meta events, wills).
    pub publisher: Option<Publisher<'a>>,
    /// Topic.
    pub topic: &'a Topic,
    /// Payload.
    pub payload: Payload,
    /// Publish options.
    pub options: &'a PublishOptions,
    /// Message properties (MQTT 5) that travel with the message.
    pub properties: MessageProperties,
}

impl<'a> Draft<'a> {
    /// The publication with its permanent ID, with the publisher and options that its
    /// delivery needs.
    pub fn into_publication(
        self,
        id: u64,
    ) -> (Arc<Publication>, Option<Publisher<'a>>, &'a PublishOptions) {
        let (publication, publisher, options) = self.into_owned(id);
        (Arc::new(publication), publisher, options)
    }

    /// [`Draft::into_publication`], the publication owned (a record of the log owns its).
    pub fn into_owned(self, id: u64) -> (Publication, Option<Publisher<'a>>, &'a PublishOptions) {
        let Draft {
            publisher,
            topic,
            payload,
            options,
            properties,
        } = self;
        let disclosed = publisher
            .filter(|_| options.disclose_me)
            .map(|p| (p.id, p.authid.to_owned(), p.authrole.to_owned()));
        let publication = Publication {
            id,
            topic: topic.clone(),
            payload,
            publisher: publisher.map_or(0, |p| p.id),
            disclosed,
            qos: options.qos,
            retain: options.retain,
            properties,
        };
        (publication, publisher, options)
    }
}

/// Why a publish cannot be acknowledged.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store could not write it.
    #[error("the message could not be stored: {0}")]
    Store(#[from] fox_storage::StoreError),
    /// The engine stopped before the message was ordered.
    #[error("the router stopped before the message was ordered")]
    Stopped,
    /// The cluster did not order it (no quorum within the timeout, segment aborted,
    /// entry overloaded): never acknowledged.
    #[error("the cluster did not order the message: {0}")]
    Cluster(String),
    /// A conditional write whose `when` did not hold where it was applied (and was not
    /// parked): not written, not delivered.
    #[error("not accepted: the when condition does not hold")]
    NotAccepted,
}

/// What became of a conditional write ([`Engine::publish_conditional`]).
#[derive(Debug)]
pub enum KvOutcome {
    /// Applied now (a single node), or ordered and decided later (a cluster entry): the
    /// answer resolves with the ID it was applied with, or why not.
    Applied(Ack),
    /// `when` does not hold and `watch` was not asked (or too many writes are parked on
    /// the key): refused at once, not delivered.
    Refused,
    /// Parked until `when` holds (a single node): the answer resolves once it is applied,
    /// or fails when its session ends first.
    Parked(Ack),
}

/// When a publisher may be acknowledged, and with which permanent ID.
#[must_use = "an acknowledgement must be waited for before the publisher is answered"]
pub enum Ack {
    /// Ordered and applied; nothing to wait for.
    Ready(u64),
    /// Ordered and applied; acknowledge once the store's write is durable.
    Stored(u64, StoreWrite),
    /// Ordered elsewhere (the cluster): the permanent ID once it is decided.
    Remote(RemoteAck),
}

/// The cluster's answer to one publish.
pub type RemoteAck =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, EngineError>> + Send>>;

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ready(id) => write!(f, "Ready({id})"),
            Self::Stored(id, _) => write!(f, "Stored({id})"),
            Self::Remote(_) => f.write_str("Remote"),
        }
    }
}

impl Ack {
    /// The permanent ID, when it is already known.
    pub fn id(&self) -> Option<u64> {
        match self {
            Self::Ready(id) | Self::Stored(id, _) => Some(*id),
            Self::Remote(_) => None,
        }
    }

    /// Whether the publisher can be answered at once (no wait).
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready(_))
    }

    /// Waits until the publisher may be acknowledged: the permanent ID, or why not.
    pub async fn wait(self) -> Result<u64, EngineError> {
        match self {
            Self::Ready(id) => Ok(id),
            Self::Stored(id, Ok(pending)) => pending.wait().await.map(|()| id).map_err(Into::into),
            Self::Stored(_, Err(error)) => Err(error.into()),
            Self::Remote(decided) => decided.await,
        }
    }
}

/// Router-originated messages of a cluster entry (meta events, `$SYS`), which are not in
/// the log, take random IDs at or above this one, far beyond the log's (a permanent ID's
/// time reaches it in 2054), so that nothing takes them for a place in the log.
pub const LOCAL_ID_MIN: u64 = 1 << 52;

/// Whether `id` can be a place in the permanent log (not a cluster entry's local message).
pub fn is_logged(id: u64) -> bool {
    id < LOCAL_ID_MIN
}

/// Milliseconds since the Unix epoch (edge code only; cores take time as an argument).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
