//! Cluster membership, timings and limits, in one place with units in their names.

use crate::config::wire_limits::{LOG_READ_BYTES_MAX_DEFAULT, SEGMENT_BYTES_MAX_DEFAULT};
use crate::id::NodeId;

/// Who is in the cluster (static membership; a later issue adds changes).
#[derive(Clone, Debug)]
pub struct Membership {
    /// Entry routers.
    pub entries: Vec<NodeId>,
    /// ndb storage nodes.
    pub ndbs: Vec<NodeId>,
    /// sync voters.
    pub syncs: Vec<NodeId>,
}

impl Membership {
    /// Majority of the ndb tier.
    pub fn ndb_quorum(&self) -> usize {
        self.ndbs.len() / 2 + 1
    }
}

/// Deliberate bugs, for the checker's self-tests only. `None` in every real deployment.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mutation {
    /// Correct behaviour.
    #[default]
    None,
    /// Entry acks publishers as soon as a quorum of ndb stored the segment, before the vote,
    /// with a guessed ID.
    AckBeforeVote,
    /// Sync assigns `base = floor` and forgets `previous_end + 1`.
    BaseIgnoresPreviousEnd,
    /// Entry closes a segment after the first STORED instead of a quorum.
    StoredQuorumOfOne,
    /// Sync drafts a segment without waiting for the one its entry sealed before it.
    SyncIgnoresAfter,
    /// ndb skips its digest checks: it stores a KEEP whose messages do not match the
    /// entry's digest, and applies a resolution to whatever copy it holds of the count.
    NdbSkipsDigestCheck,
    /// ndb applies the lowest resolution it has instead of waiting for the next index.
    NdbAppliesOutOfOrder,
    /// Entry delivers a segment to its local subscribers once a quorum of ndb stored it,
    /// before the vote, with a guessed ID.
    DeliverBeforeVote,
    /// Sync drafts every segment as aborted (safe, but no progress).
    SyncAbortsEverySegment,
}

/// Timings and limits of an entry. Defaults suit a LAN; the simulator uses them as they are.
#[derive(Clone, Debug)]
pub struct EntryConfig {
    /// This entry.
    pub id: NodeId,
    /// The cluster.
    pub membership: Membership,
    /// Seed of the entry's RNG (segment IDs); the caller draws it, from the OS in production.
    pub seed: u64,
    /// How long a segment stays open to gather messages, in ms. 0 (the default): it is
    /// sealed as soon as the caller has handed over every publish waiting (the driver calls
    /// `handle_timeout` when its input queue drains), so a lone publisher waits for no
    /// timer and a busy entry still cuts large segments (what arrived meanwhile).
    pub segment_window_ms: u64,
    /// Segments sealed and waiting for their decision at most; one more fills meanwhile,
    /// and beyond, `publish` answers `Busy`. Pipelined segments keep publish order: each
    /// SEGMENT_OVER names the segment before it, and sync decides them in that order.
    pub segments_in_flight_max: usize,
    /// Messages per segment at most (must not exceed ndb's).
    pub segment_messages_max: usize,
    /// Encoded bytes per segment at most (`Publication::encoded_bytes_max` summed), so
    /// that its KEEP fits in a frame; at most `wire_limits::FRAME_CONTENT_BYTES_MAX` and
    /// not above ndb's. A single publication above it is refused at `publish` (`TooLarge`).
    pub segment_bytes_max: usize,
    /// Resend KEEP / SEGMENT_OVER to silent peers after this long, in ms; also how often
    /// at most the entry names its undecided segments to every ndb (UNDECIDED), once one
    /// has waited this long: well below ndb's `abort_after_ms`.
    pub retry_ms: u64,
    /// Look at the permanent log this often, in ms: send a tail READ if none is waiting
    /// (ndb holds one at the end of the log until records come: a long poll) and a READ
    /// for each lagging subscriber position that has none waiting.
    pub tail_poll_ms: u64,
    /// A tail READ is sent again every `retry_ms` until answered (ndb holds one per
    /// reader and position, so a resend costs nothing); after this long with no answer
    /// it goes to the next ndb, in ms; above ndb's `read_park_ms`.
    pub read_wait_ms: u64,
    /// Permanent-log records kept in memory at most, the newest ones. Live subscribers are
    /// served from them; one that resumes from before them (or `subscribe`s there) lags and
    /// refills from ndb (READ / LOG from its position) until it reaches them.
    pub log_cache_records_max: usize,
    /// Self-test only.
    #[doc(hidden)]
    pub mutation: Mutation,
}

impl EntryConfig {
    /// Defaults for entry `id` in `membership`.
    pub fn new(id: NodeId, membership: Membership, seed: u64) -> EntryConfig {
        EntryConfig {
            id,
            membership,
            seed,
            segment_window_ms: 0,
            segments_in_flight_max: 8,
            segment_messages_max: 1024,
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
            retry_ms: 20,
            tail_poll_ms: 5,
            read_wait_ms: 150,
            log_cache_records_max: 1 << 20,
            mutation: Mutation::None,
        }
    }
}

/// Timings and limits of an ndb node.
#[derive(Clone, Debug)]
pub struct NdbConfig {
    /// This ndb.
    pub id: NodeId,
    /// The cluster.
    pub membership: Membership,
    /// Group commit: fsync this long after the first unsynced write, in ms. 0 (the
    /// default): as soon as the driver's input has drained (it calls `handle_timeout`
    /// then); writes that arrive during an fsync share the next one.
    pub group_commit_ms: u64,
    /// A READ at the end of the log waits here up to this long for new records (long
    /// poll), in ms; then it is answered empty. At most one waits per reader.
    pub read_park_ms: u64,
    /// Ask sync for resolutions this often, in ms.
    pub pull_ms: u64,
    /// Ask sync to abort a temporary segment once its owner has not named it (a KEEP, an
    /// UNDECIDED) for this long, in ms: its entry died, or restarted and forgot it. A live
    /// entry names its undecided segments every `retry_ms` (its own), far below this.
    pub abort_after_ms: u64,
    /// Resend FETCH / ABORT after this long, in ms.
    pub retry_ms: u64,
    /// Records per LOG answer at most.
    pub read_records_max: usize,
    /// Encoded bytes per LOG answer at most (`LogRecord::encoded_bytes_max` summed; one
    /// record is always sent, and a record is never above `segment_bytes_max`); at most
    /// `wire_limits::FRAME_CONTENT_BYTES_MAX`, so that the answer fits in a frame.
    pub log_read_bytes_max: usize,
    /// Messages per KEEP accepted at most.
    pub segment_messages_max: usize,
    /// Encoded bytes per KEEP accepted at most (as the entry's `segment_bytes_max`).
    pub segment_bytes_max: usize,
    /// Resolutions buffered ahead of the applied index at most.
    pub pending_resolutions_max: usize,
    /// Permanent-log records kept in memory at most, the newest ones (the tail that
    /// entries read live); older ones are read from disk by the driver.
    pub log_cache_records_max: usize,
    /// The same in encoded bytes (`LogRecord::encoded_bytes_max` summed).
    pub log_cache_bytes_max: usize,
    /// Decided segments remembered at most, the latest (to answer a late KEEP, and a
    /// FETCH of a peer that is behind: a peer further behind than this cannot fetch
    /// segment by segment, and pulls a checkpoint, which it does from 5,000 resolutions
    /// behind). About 80 bytes each.
    pub decided_segments_max: usize,
    /// Self-test only.
    #[doc(hidden)]
    pub mutation: Mutation,
}

impl NdbConfig {
    /// Defaults for ndb `id` in `membership`.
    pub fn new(id: NodeId, membership: Membership) -> NdbConfig {
        NdbConfig {
            id,
            membership,
            group_commit_ms: 0,
            read_park_ms: 100,
            pull_ms: 10,
            abort_after_ms: 300,
            retry_ms: 20,
            read_records_max: 4096,
            log_read_bytes_max: LOG_READ_BYTES_MAX_DEFAULT,
            segment_messages_max: 1024,
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
            pending_resolutions_max: 65_536,
            log_cache_records_max: LOG_CACHE_RECORDS_MAX_DEFAULT,
            log_cache_bytes_max: LOG_CACHE_BYTES_MAX_DEFAULT,
            decided_segments_max: 1 << 20,
            mutation: Mutation::None,
        }
    }
}

/// Default `log_cache_records_max` of an ndb.
pub const LOG_CACHE_RECORDS_MAX_DEFAULT: usize = 1 << 20;
/// Default `log_cache_bytes_max` of an ndb: 256 MiB.
pub const LOG_CACHE_BYTES_MAX_DEFAULT: usize = 256 << 20;

/// Default `snapshot_interval_entries` of a sync node.
pub const SNAPSHOT_INTERVAL_ENTRIES_DEFAULT: u64 = 10_000;

/// Default `resolution_cache_max` of a sync node: the newest 262,144 resolutions (about
/// 21 MB), minutes of a busy cluster's decisions.
pub const RESOLUTION_CACHE_MAX_DEFAULT: usize = 1 << 18;

/// Timings and limits of a sync node.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// This sync node.
    pub id: NodeId,
    /// The cluster.
    pub membership: Membership,
    /// Seed of the tick jitter (Raft's own election timeout is fixed, see `Sync`).
    pub seed: u64,
    /// Raft tick period, in ms; each tick is jittered by up to half of it.
    pub tick_ms: u64,
    /// Election timeout, in ticks.
    pub election_ticks: usize,
    /// Heartbeat period, in ticks.
    pub heartbeat_ticks: usize,
    /// Segment decisions per proposal at most ("one vote decides many segments").
    pub batch_items_max: usize,
    /// Votes proposed and not yet applied at most (pipelined Raft proposals): each takes
    /// every decision that is ready when it is proposed.
    pub votes_in_flight_max: usize,
    /// Decisions waiting for a proposal at most; beyond, SEGMENT_OVERs are dropped (entries retry).
    pub queue_items_max: usize,
    /// Resolutions per RESOLVED answer at most.
    pub resolved_batch_max: usize,
    /// The newest resolutions memory holds, at most (about 80 bytes each); older ones
    /// asked for (an ndb or sync node far behind) are read from disk
    /// ([`crate::SyncEvent::ReadResolutions`]).
    pub resolution_cache_max: usize,
    /// Take a snapshot of the state machine and compact the Raft log below it every this
    /// many applied entries (0: never).
    pub snapshot_interval_entries: u64,
    /// Self-test only.
    #[doc(hidden)]
    pub mutation: Mutation,
}

impl SyncConfig {
    /// Defaults for sync node `id` in `membership`.
    pub fn new(id: NodeId, membership: Membership, seed: u64) -> SyncConfig {
        SyncConfig {
            id,
            membership,
            seed,
            tick_ms: 2,
            election_ticks: 10,
            heartbeat_ticks: 2,
            batch_items_max: 512,
            votes_in_flight_max: 4,
            queue_items_max: 8192,
            resolved_batch_max: 512,
            resolution_cache_max: RESOLUTION_CACHE_MAX_DEFAULT,
            snapshot_interval_entries: SNAPSHOT_INTERVAL_ENTRIES_DEFAULT,
            mutation: Mutation::None,
        }
    }
}

/// Wire limits.
pub mod wire_limits {
    /// Largest frame payload accepted, in bytes (16 MiB).
    pub const FRAME_SIZE_MAX_BYTES: usize = 16 << 20;
    /// Most bytes a KEEP, SEGMENT_DATA or LOG adds around its publications or records
    /// (kind tag, segment ID, owner, `after`, list length), rounded up.
    pub const ENVELOPE_BYTES_MAX: usize = 64;
    /// The most a byte limit on the content of one frame may be set to.
    pub const FRAME_CONTENT_BYTES_MAX: usize = FRAME_SIZE_MAX_BYTES - ENVELOPE_BYTES_MAX;
    /// Default `segment_bytes_max` of entries and ndb (8 MiB).
    pub const SEGMENT_BYTES_MAX_DEFAULT: usize = 8 << 20;
    /// Default `log_read_bytes_max` of ndb (8 MiB).
    pub const LOG_READ_BYTES_MAX_DEFAULT: usize = 8 << 20;
    const _: () = assert!(SEGMENT_BYTES_MAX_DEFAULT <= FRAME_CONTENT_BYTES_MAX);
    const _: () = assert!(LOG_READ_BYTES_MAX_DEFAULT <= FRAME_CONTENT_BYTES_MAX);
    /// Segments one UNDECIDED names at most (an ndb reads no more); an entry's
    /// `segments_in_flight_max` may not exceed it.
    pub const UNDECIDED_SEGMENTS_MAX: usize = 64;
    /// Files one CHECKPOINT_FILES lists at most (a checkpoint with more is not served).
    pub const CHECKPOINT_FILES_MAX: usize = 65_536;
    /// Bytes one CHECKPOINT_READ asks for at most (a larger ask is answered with this).
    pub const CHECKPOINT_CHUNK_BYTES_MAX: usize = 1 << 20;
    /// Longest checkpoint file name, in bytes.
    pub const CHECKPOINT_FILE_NAME_MAX_BYTES: usize = 255;
    const _: () = assert!(
        CHECKPOINT_CHUNK_BYTES_MAX + ENVELOPE_BYTES_MAX + CHECKPOINT_FILE_NAME_MAX_BYTES
            <= FRAME_SIZE_MAX_BYTES
    );
    /// Longest cluster name, in bytes.
    pub const CLUSTER_NAME_MAX_BYTES: usize = 64;
    /// Longest shared secret, in bytes.
    pub const SECRET_MAX_BYTES: usize = 128;
    const _: () = assert!(CLUSTER_NAME_MAX_BYTES <= u8::MAX as usize);
    const _: () = assert!(SECRET_MAX_BYTES <= u8::MAX as usize);
    const _: () = assert!(FRAME_SIZE_MAX_BYTES <= u32::MAX as usize);
}
