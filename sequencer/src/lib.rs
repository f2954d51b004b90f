//! # fox-sequencer
//!
//! Gives every published message a permanent, cluster-wide, monotonic ID before its
//! publisher is acknowledged. Entry routers cut traffic into segments with nearly random
//! IDs (UUIDv7), ndb storage nodes keep that temporary history durably, and the sync tier
//! votes each closed segment a permanent range through a Raft log (raft-rs). Only then are
//! publishers acked, and every entry delivers events in permanent-ID order.
//!
//! ```text
//! client -> Entry --KEEP(seg, digest, msgs)------> Ndb x N   (temp history, group-commit fsync;
//!                                                            a copy not matching digest is dropped)
//!           Entry <--STORED(seg, count, digest)--- Ndb       (fsynced; quorum => segment closed)
//!           Entry --SEGMENT_OVER(seg, count, digest)--> Sync (any; forwarded to the leader)
//!                   stage one: the leader drafts a batch {floor, items}, where
//!                              floor = (now_ms - 2020-01-01) << 12 (`PermanentId::floor_at_unix_ms`)
//!                   stage two: Raft commits the draft (quorum vote); applying it sets
//!                              base = max(previous_end + 1, floor) per segment, in order
//!           Sync --RESOLVED(index, seg -> base | aborted)--> owner Entry, every Ndb
//!           Ndb: applies resolutions in index order, temp -> permanent log (FETCH from a
//!                peer ndb when it lacks the data); Entry: acks publishers base + offset
//!           Entry --READ(after)--> Ndb --LOG(records)--> Entry: delivers to subscribers
//! ```
//!
//! Tailing: an entry keeps the newest `log_cache_records_max` records of the permanent log
//! and trims the oldest as its live subscribers consume them. A subscriber that resumes
//! from before the cache refills from ndb (READ from its own position, LOG pages of at
//! most `read_records_max` records) until it reaches the cache, then goes on live.
//!
//! Recovery: an entry keeps no durable state. An ndb asks sync to ABORT a temporary
//! segment once its owner has not named it (KEEP, UNDECIDED) for `abort_after_ms`: the
//! entry died, or restarted and forgot it; a live entry names its undecided segments to
//! every ndb every `retry_ms`, so they wait for sync however long that takes. When an
//! entry's lease expires (the router applies it from the log), the other entries pass it
//! on (ABORT_OWNER) and ndb asks at once for the segments that entry cut until then. The
//! first committed decision for a segment wins, so a late SEGMENT_OVER of an aborted
//! segment is answered "aborted" and its publishers are rejected, never acked, and an
//! ABORT of a segment already made permanent changes nothing. This holds also for a segment aborted before a
//! quorum stored it: the entry acts on RESOLVED(aborted) whether or not it sent
//! SEGMENT_OVER, and an ndb answers a KEEP of an aborted segment with that RESOLVED (an
//! entry that missed the leader's message learns it from its own KEEP retries). An ndb rebuilds from its fsynced records; a sync
//! node from its Raft log and hard state, then replays the committed votes and rejoins.
//!
//! Beyond DESIGN.md's messages: KEEP carries a whole sealed segment (offsets `0..n`);
//! ABORT (ndb -> sync) resolves orphaned segments; UNDECIDED (entry -> ndb) names the
//! segments a live entry still waits for, ABORT_OWNER (entry -> ndb) passes on another
//! entry's lease expiry (both protocol version 6); PULL_RESOLUTIONS lets a lagging ndb
//! fill gaps in the resolution log; FETCH / SEGMENT_DATA let an ndb that missed a KEEP
//! copy the segment from a peer; READ / LOG is how entries tail the permanent log.
//!
//! ID exhaustion is refused when proposing: the leader drafts a segment whose range would
//! pass `PermanentId::MAX` (2^53) as an abort, so its SEGMENT_OVER is answered "aborted" and
//! its publishers are rejected. Applying a committed vote never asserts (a range that does
//! not fit there anyway is aborted alike on every replica), so replay cannot crash a node;
//! damaged durable Raft records make `Sync::recover` return a `SyncError`.
//!
//! Frame sizes: a KEEP, SEGMENT_DATA or LOG must fit in one frame
//! (`wire_limits::FRAME_SIZE_MAX_BYTES`, 16 MiB), so segments are capped in bytes as well
//! as in messages (`segment_bytes_max`, 8 MiB) and LOG answers as well as in records
//! (`log_read_bytes_max`, 8 MiB), both asserted below the frame limit less an envelope. A
//! publication larger than a segment may be is refused at once (`PublishError::TooLarge`).
//!
//! Ordering: an entry keeps up to `segments_in_flight_max` segments in flight and one
//! filling (`publish` answers `Busy` beyond); each SEGMENT_OVER names the undecided segment
//! sealed before it (`after`), and the sync leader drafts a segment only once that one got
//! a range (an aborted one does not count: its entry then names the one before it), so one
//! publisher's messages commit in publish order. The leader keeps up to
//! `votes_in_flight_max` proposals in flight, each taking every decision that is ready, and
//! drafts only once the entries of earlier terms are applied.
//!
//! ## Layout
//!
//! - [`id`]: `PermanentId`, `SegmentId`, `AdvanceId`, `NodeId`, `Publication`, digest, seeded RNG.
//! - [`message`]: the protocol messages; [`wire`]: handshake and frames (format documented there).
//! - [`entry`], [`ndb`], [`sync`]: the sans-IO state machines; [`ready`]: their output batch.
//! - [`config`]: membership, timings and limits, with units in their names.
//! - [`sim`]: the deterministic cluster simulation and its invariant checker; the
//!   `fox-sim` binary runs it over many seeds.
//!
//! ## Calling order (all three state machines)
//!
//! 1. Feed inputs: `handle_message(from, message, now_ms)`, `handle_timeout(now_ms)`
//!    (and `Entry::publish` / `Entry::subscribe`), with a non-decreasing `now_ms`.
//! 2. Take `ready()` and carry it out in order: append `writes` to the node's disk, fsync
//!    if `fsync` is set, then send `messages`, then hand `events` to clients.
//! 3. Sleep until `poll_timeout()` or the next input.
//!
//! No state machine reads a clock, touches a socket, or draws from an unseeded RNG.
//!
//! ## Wire format
//!
//! See [`wire`]: a handshake (hellos with `"FOXS"`, version range, node, cluster name and a
//! nonce, then HMAC-SHA256 proofs of the shared secret over both hellos; the secret never
//! crosses the wire) then frames of a u32 big-endian length and a postcard payload.

#![forbid(unsafe_code)]

pub mod config;
pub mod entry;
#[doc(hidden)]
pub mod fuzzing;
pub mod id;
pub mod message;
pub mod ndb;
pub mod ready;
pub mod sim;
pub mod sync;
pub mod wire;

pub use config::{EntryConfig, Membership, NdbConfig, SyncConfig};
pub use entry::{Entry, EntryEvent, PublishError};
pub use id::{byte_string, AdvanceId, NodeId, PermanentId, Publication, SegmentId};
pub use message::{CheckpointFile, LogPage, LogRecord, Message, NodeReport, Outcome, Resolution};
pub use ndb::{Ndb, NdbBase, NdbEvent, NdbWrite, ReadAnswer};
pub use ready::Ready;
pub use sync::{DecidedSegment, RaftStatus, Sync, SyncError, SyncEvent, SyncWrite};
