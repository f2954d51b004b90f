//! fox-storage: what foxrouter keeps — retained values, message history, MQTT
//! persistent sessions, pending wills and the sequencer's last permanent ID.
//!
//! Two implementations of one trait, [`Store`]:
//! - [`MemStore`]: in memory (the embedded default; gone at exit).
//! - [`RocksStore`]: RocksDB in a directory (`foxrouter serve --data DIR`), durable.
//!
//! Values are opaque bytes: the router serializes its own records. Storage only
//! understands keys: topics and session/will keys are strings, history is keyed by
//! permanent ID (`u64` in `[1, 2^53]`, stored big-endian so RocksDB iterates in
//! numeric order: 9 < 10 < 100).
//!
//! # Layout
//!
//! ```text
//! lib.rs        trait Store, Table, HistoryRecord, RetentionPolicy, SyncMode, limits
//! batch.rs      Batch (the only way to write) and its validation, shared by both stores
//! codec.rs      history record value encoding (RocksDB), decoding never panics
//! retention.rs  where compact_history cuts, shared by both stores
//! mem.rs        MemStore: BTreeMaps behind one RwLock
//! rocks.rs      RocksStore: column families retained, history, sessions, wills, meta
//! committer.rs  Committer: group commit thread, one fsync for many batches
//! node.rs       NodeStore: a cluster node's durable state (ndb, sync), column families + batches
//! ```
//!
//! # Calling order
//!
//! ```text
//! open (MemStore::new | RocksStore::open(dir, SyncMode::Fsync))
//!   -> read state back: last_permanent_id, scan(Wills, ..), scan(Sessions, ..), scan_retained
//!   -> Committer::start(Arc<dyn Store>, config)
//!   -> per publish: build a Batch (append_history + put_retained ...), committer.commit(batch).await,
//!      and only then acknowledge the publisher
//!   -> periodically: store.compact_history(&policy, now_ms)
//!   -> drop the Committer (drains its queue, joins its thread), then the store
//! ```
//!
//! Rules every write obeys (checked by [`Batch`] validation in both stores, so a bad batch
//! is an error and nothing of it is written):
//! - a batch is atomic: all of it or none of it, also across a crash (RocksDB WriteBatch);
//! - history IDs are in `[1, 2^53]` and strictly above [`Store::last_permanent_id`];
//!   appending raises the last permanent ID, so after any crash
//!   `last_permanent_id >= history_last_id` and the sequencer never reuses an ID;
//! - retention only ever deletes the oldest records (a prefix of history), so a subscriber
//!   resuming with `history_after(id, ..)` sees no holes, only a later start.

#![forbid(unsafe_code)]

mod batch;
mod codec;
mod committer;
mod error;
mod mem;
mod node;
mod retention;
mod rocks;

pub use batch::{Batch, Op};
pub use committer::{
    CommitStats, Committer, CommitterConfig, LatencyHistogram, Pending, WRITE_LATENCY_BUCKETS_US,
};
pub use error::StoreError;
pub use mem::MemStore;
pub use node::{u64_from_key, u64_key, KeyValue, NodeBatch, NodeOp, NodeStore};
pub use rocks::RocksStore;

/// Largest permanent ID: IDs live in `[1, ID_MAX]` so they are valid WAMP IDs (2^53).
pub const ID_MAX: u64 = 1 << 53;

/// Largest key (topic, session key, will key, history topic) in bytes.
pub const KEY_SIZE_MAX_BYTES: usize = 64 * 1024;

/// Most results any one read returns; larger `limit` arguments are clamped to this.
pub const SCAN_RESULTS_MAX: usize = 100_000;

/// The key/value tables. History and the last permanent ID have their own methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Retained values: key = the router's internal topic string.
    Retained,
    /// MQTT persistent sessions: key e.g. `"realm\0client_id"`.
    Sessions,
    /// Pending wills, published at restart if still pending: key as for sessions.
    Wills,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 3] = [Table::Retained, Table::Sessions, Table::Wills];

    /// The name, also the RocksDB column family name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Retained => "retained",
            Table::Sessions => "sessions",
            Table::Wills => "wills",
        }
    }
}

/// One message of the permanent history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    /// Permanent ID, in `[1, ID_MAX]`; the key.
    pub id: u64,
    /// When the router committed it, Unix milliseconds (used by age retention).
    pub timestamp_ms: u64,
    /// The router's internal topic string.
    pub topic: String,
    /// The router's serialized message.
    pub payload: Vec<u8>,
}

impl HistoryRecord {
    /// Stored size in bytes (key + encoded value), what `max_bytes` retention counts.
    /// The same number for both stores.
    pub fn size_bytes(&self) -> u64 {
        codec::stored_size_bytes(self.topic.len(), self.payload.len())
    }
}

/// How much history [`Store::compact_history`] keeps. Each `Some` limit is applied; the
/// strictest wins. All `None` (the default) keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep at most this many newest records.
    pub max_count: Option<u64>,
    /// Delete records older than this: `now_ms - timestamp_ms > max_age_ms`. Deletion stops
    /// at the first (oldest-first) record young enough, so history stays a contiguous range.
    pub max_age_ms: Option<u64>,
    /// Keep at most this many bytes ([`HistoryRecord::size_bytes`]) of newest records.
    pub max_bytes: Option<u64>,
}

/// Whether [`RocksStore`] writes wait for the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// Every write (one per committer group) fsyncs the WAL before returning: an
    /// acknowledged write survives power loss. The default.
    #[default]
    Fsync,
    /// Writes reach the OS page cache only: they survive a process crash (kill -9) but not
    /// power loss. For benchmarks.
    None,
}

/// What foxrouter keeps. Both implementations have the same semantics; the behaviour suite
/// in `tests/` runs against each.
///
/// Reads see every batch that `apply` returned `Ok` for. Writes go only through
/// [`Store::apply`]; concurrent `apply` calls are serialized (use a [`Committer`] to group
/// them under one fsync).
pub trait Store: Send + Sync {
    /// Validates and writes `batch` atomically: all of it or, on error, none of it.
    fn apply(&self, batch: &Batch) -> Result<(), StoreError>;

    /// The value under `key` in `table`.
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Entries of `table` whose key starts with `prefix`, in byte order of keys, at most
    /// `limit` (clamped to [`SCAN_RESULTS_MAX`]). An empty prefix lists the table.
    fn scan(
        &self,
        table: Table,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// History records with `id > after_id`, in ID order, at most `limit` (clamped to
    /// [`SCAN_RESULTS_MAX`]). `after_id = 0` starts at the oldest kept record.
    fn history_after(&self, after_id: u64, limit: usize) -> Result<Vec<HistoryRecord>, StoreError>;

    /// The oldest kept history ID; records below it were never written or compacted away.
    fn history_first_id(&self) -> Result<Option<u64>, StoreError>;

    /// The newest history ID.
    fn history_last_id(&self) -> Result<Option<u64>, StoreError>;

    /// Deletes the oldest history records that `policy` does not keep (see
    /// [`RetentionPolicy`]); returns how many. `now_ms` is the caller's clock.
    /// Costs a walk over the kept records for count/bytes limits: a maintenance call,
    /// not for the publish path.
    fn compact_history(&self, policy: &RetentionPolicy, now_ms: u64) -> Result<u64, StoreError>;

    /// The highest permanent ID ever committed (appended or set), `None` on a new store.
    fn last_permanent_id(&self) -> Result<Option<u64>, StoreError>;

    /// The retained value of `topic`.
    fn retained(&self, topic: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Table::Retained, topic)
    }

    /// Retained values whose topic starts with `prefix`, at most `limit`.
    fn scan_retained(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.scan(Table::Retained, prefix, limit)
    }

    /// The session stored under `key`.
    fn session(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Table::Sessions, key)
    }

    /// The pending will stored under `key`.
    fn will(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Table::Wills, key)
    }
}
