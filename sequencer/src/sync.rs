//! The sync node: drafts permanent ranges for closed segments (stage one) and has the
//! Raft quorum vote them final (stage two). The resolution log is derived only from
//! committed Raft entries, so every sync node holds the same one.

use crate::config::{Mutation, SyncConfig};
use crate::id::{NodeId, PermanentId, SeededRng, SegmentId};
use crate::message::{Message, Outcome, RaftMessage, Resolution};
use crate::ready::Ready;
use raft::eraftpb::{Entry as RaftEntry, EntryType, HardState};
use raft::{RawNode, StateRole};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

mod snapshot;
mod storage;

use snapshot::Filling;
pub use storage::SyncSnapshot;
use storage::{Replayed, SyncStorage};

/// One record of a sync node's durable log (the Raft log and hard state, the resolution
/// log, snapshots).
#[derive(Clone, Debug, PartialEq)]
pub enum SyncWrite {
    /// Raft entries to append; an entry at an existing index replaces it and all after it.
    Entries(Vec<RaftEntry>),
    /// The latest Raft hard state (term, vote, commit).
    HardState(HardState),
    /// Resolutions applied (or pulled from a peer after installing a snapshot), by index;
    /// one at an index held replaces it and all after it. Not fsynced on their own: those
    /// after the latest snapshot are derived again from the Raft log.
    Resolutions(Vec<Resolution>),
    /// The state machine as of a Raft index (always fsynced). `installed`: a leader's
    /// snapshot, which replaces the whole Raft log (delete every entry with it, in one
    /// atomic write); else taken here, and the entries it covers go only with the
    /// `CompactLog` that a later batch carries, once this one is durable.
    Snapshot {
        /// What the state machine was.
        snapshot: SyncSnapshot,
        /// Received from a leader rather than taken here.
        installed: bool,
    },
    /// Delete Raft entries up to `through`: a durable snapshot covers them.
    CompactLog {
        /// The last index deleted.
        through: u64,
    },
}

/// What a sync node reports to its observer (metrics; the simulator's checker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncEvent {
    /// A resolution became final and was applied here.
    Applied(Resolution),
    /// One committed vote was applied, deciding `decided` segments.
    VoteApplied {
        /// Segments the vote decided (duplicates of earlier decisions excluded).
        decided: usize,
    },
    /// A peer asked for resolutions older than memory holds: the driver reads
    /// `count` of them from `from_index` on its disk (every one held is written there
    /// before this event is read) and sends them to `to` as one RESOLVED.
    ReadResolutions {
        /// Who asked.
        to: NodeId,
        /// The first index to send.
        from_index: u64,
        /// How many, at most (fewer if the disk holds fewer).
        count: u64,
    },
}

/// What a sync node remembers of each decided segment (the resolution itself may have
/// left memory: see [`SyncConfig::resolution_cache_max`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Decided {
    /// Its resolution's index.
    index: u64,
    /// Whether it got a permanent range (else it was aborted).
    range: bool,
}

/// What recovery needs of a resolution older than memory will hold
/// ([`Sync::recover_with`]): its segment, its index, whether it got a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecidedSegment {
    /// The segment.
    pub segment: SegmentId,
    /// Its resolution's index.
    pub index: u64,
    /// Whether it got a permanent range (else it was aborted).
    pub range: bool,
}

impl From<&Resolution> for DecidedSegment {
    fn from(resolution: &Resolution) -> DecidedSegment {
        DecidedSegment {
            segment: resolution.segment,
            index: resolution.index,
            range: matches!(resolution.outcome, Outcome::Permanent { .. }),
        }
    }
}

/// Why a sync node could not be built.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// raft-rs refused the configuration (timings from `SyncConfig`).
    #[error("raft configuration refused: {0}")]
    Config(#[source] raft::Error),
    /// The durable Raft records do not form one log (a damaged or foreign disk).
    #[error(
        "durable raft log damaged: entry {index} does not follow the log (last index {last_index})"
    )]
    LogNotContiguous {
        /// Index of the entry that does not fit.
        index: u64,
        /// Last index of the log replayed so far.
        last_index: u64,
    },
    /// The durable resolutions do not form one log (a damaged or foreign disk).
    #[error("durable resolutions damaged: resolution {index} does not follow the {held} held")]
    ResolutionsNotContiguous {
        /// Index of the resolution that does not fit.
        index: u64,
        /// Resolutions replayed so far.
        held: u64,
    },
    /// The durable snapshot names other voters than this cluster's sync nodes (a damaged
    /// or foreign disk).
    #[error("durable snapshot damaged or foreign: its voters {found:?} are not {expected:?}")]
    SnapshotVoters {
        /// The Raft IDs of the voters configured.
        expected: Vec<u64>,
        /// Those the snapshot names.
        found: Vec<u64>,
    },
    /// The durable hard state commits entries the durable log does not have.
    #[error(
        "durable raft state damaged: commit index {commit} beyond the last entry {last_index}"
    )]
    CommitBeyondLog {
        /// The hard state's commit index.
        commit: u64,
        /// Last index of the replayed log.
        last_index: u64,
    },
}

/// One decision proposed to the vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Item {
    Over {
        segment: SegmentId,
        owner: NodeId,
        count: u32,
        digest: u64,
    },
    Abort {
        segment: SegmentId,
        owner: NodeId,
    },
}

impl Item {
    fn segment(&self) -> SegmentId {
        match self {
            Item::Over { segment, .. } | Item::Abort { segment, .. } => *segment,
        }
    }
}

/// Stage one: the leader's draft, the payload of one Raft entry. Applying it is
/// deterministic: the base of each segment is `max(previous_end + 1, floor)`, where
/// `floor` was computed once from the proposer's clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Draft {
    floor: u64,
    items: Vec<Item>,
}

/// What [`Sync::raft_status`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RaftStatus {
    /// The current term.
    pub term: u64,
    /// The leader this node knows of, if any.
    pub leader: Option<NodeId>,
    /// The highest log index known committed.
    pub commit_index: u64,
    /// The Raft index of the latest snapshot (0: none); the log is compacted up to it.
    pub snapshot_index: u64,
    /// The snapshot index this node started from (0: it replayed its log from index 1).
    pub started_from_snapshot: u64,
    /// While this node fills its resolution log after installing a leader's snapshot:
    /// the length it fills to.
    pub filling_to: Option<u64>,
}

/// A sync node's core (sans-IO) around a raft-rs `RawNode`.
///
/// Calling order: `handle_message` / `handle_timeout` with non-decreasing `now_ms`, then
/// `ready()`: append its writes and fsync (Raft needs them durable before the messages
/// go), then send its messages, then read its events. After a crash, build it again with
/// `recover` from the records on disk; it replays the committed log and rejoins.
///
/// Determinism: raft-rs draws its randomized election timeout from an unseeded RNG. The
/// range is made one value wide (`max_election_tick = min + 1`); the randomness that
/// breaks split votes comes instead from the seeded RNG: each tick is jittered, and after
/// every change of term or role a node that does not lead withholds 0 to
/// `2 * election_ticks - 1` ticks (Raft's timeout in `[election, 2 * election)`, twice as
/// wide: two candidates split the vote whenever they start within one message delay of
/// each other). Tick jitter alone spread two nodes' timeouts by a few ms only: with one of
/// three sync nodes down and slow links, the other two split their votes again and again
/// (the simulator saw 350 ms without a leader).
pub struct Sync {
    config: SyncConfig,
    raft: RawNode<SyncStorage>,
    rng: SeededRng,
    /// The newest resolutions, at most `resolution_cache_max`; the older ones are on disk.
    resolutions: VecDeque<Resolution>,
    /// The resolution log's length (the index of the last one held).
    held: u64,
    /// Resolutions recorded and not yet handed out as a `SyncWrite::Resolutions`.
    unwritten: Vec<Resolution>,
    by_segment: BTreeMap<SegmentId, Decided>,
    end: u64,
    /// Decisions waiting for a draft, each with the segment it must follow (SEGMENT_OVER's
    /// `after`; none for aborts), in arrival order.
    queue: Vec<(Item, Option<SegmentId>)>,
    queued: BTreeSet<SegmentId>,
    /// While leading: segments drafted in proposals not yet applied, with the Raft index
    /// and whether drafted for a range (not an abort). A later draft follows them in the
    /// Raft log, so a segment may follow one drafted for a range; and a segment drafted
    /// already is not drafted again while that vote is in flight.
    drafted: BTreeMap<SegmentId, (u64, bool)>,
    /// While leading: the votes proposed and not yet applied, oldest first: Raft index and
    /// the time after which it counts as lost. At most `votes_in_flight_max`.
    inflight: VecDeque<(u64, u64)>,
    /// While leading: the end of the ranges drafted so far, committed or not (so that a
    /// draft never holds a segment that would pass `PermanentId::MAX`).
    proposed_end: u64,
    tick_at_ms: u64,
    /// The term and role seen after the last input: a change draws `ticks_withheld`.
    role_seen: (u64, StateRole),
    /// Ticks not handed to Raft yet (a follower's or candidate's seeded extra timeout).
    ticks_withheld: usize,
    /// The latest snapshot of the state machine (taken here or installed).
    snapshot: SyncSnapshot,
    /// The snapshot index this node was recovered from (0: none).
    started_from_snapshot: u64,
    /// The last Raft entry applied: index and term (where the next snapshot is taken).
    applied: (u64, u64),
    /// A snapshot taken here whose entries are deleted with the next batch (once the
    /// batch that holds the snapshot is durable).
    compact_through: Option<u64>,
    /// After installing a leader's snapshot: the resolutions still to pull from peers.
    filling: Option<Filling>,
    /// While leading: snapshots sent, by Raft ID, with the time after which one not yet
    /// acknowledged counts as lost (raft-rs then sends it again).
    snapshots_sent: BTreeMap<u64, u64>,
    /// The `now_ms` of the latest input.
    now_ms: u64,
    out: Ready<SyncWrite, SyncEvent>,
}

impl std::fmt::Debug for Sync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sync")
            .field("id", &self.config.id)
            .field("resolutions", &self.held)
            .finish()
    }
}

impl Sync {
    /// A new sync node with an empty log.
    pub fn new(config: SyncConfig, now_ms: u64) -> Result<Sync, SyncError> {
        Self::recover(config, &[], now_ms)
    }

    /// Rebuild from the durable records, in write order. Records that do not form one
    /// Raft log (a damaged disk) are an error, never a panic.
    pub fn recover(
        config: SyncConfig,
        records: &[SyncWrite],
        now_ms: u64,
    ) -> Result<Sync, SyncError> {
        Self::recover_with(config, &[], records, now_ms)
    }

    /// As [`Sync::recover`], where the resolution log starts with `older` (indexes 1 to
    /// `older.len()`, only what recovery needs of each) and `records` hold the rest of it
    /// (a `SyncWrite::Resolutions` from `older.len() + 1`): so that a restart need not hold
    /// every resolution in memory at once.
    pub fn recover_with(
        config: SyncConfig,
        older: &[DecidedSegment],
        records: &[SyncWrite],
        now_ms: u64,
    ) -> Result<Sync, SyncError> {
        if let Some((position, decided)) = (older.iter().enumerate())
            .find(|(position, decided)| decided.index != *position as u64 + 1)
        {
            let (index, held) = (decided.index, position as u64);
            return Err(SyncError::ResolutionsNotContiguous { index, held });
        }
        let voters: Vec<u64> = config
            .membership
            .syncs
            .iter()
            .map(|n| raft_id(*n))
            .collect();
        let replayed = Replayed::from_records(records, older.len() as u64)?;
        let snapshot = replayed.snapshot.clone().unwrap_or_default();
        if replayed.snapshot.is_some() && !snapshot.has_voters(&voters) {
            let found = snapshot.voters;
            return Err(SyncError::SnapshotVoters {
                expected: voters,
                found,
            });
        }
        let mut storage = SyncStorage::new(voters);
        load(&mut storage, &replayed)?;
        let raft_config = raft::Config {
            id: raft_id(config.id),
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            min_election_tick: config.election_ticks,
            max_election_tick: config.election_ticks + 1,
            check_quorum: true,
            pre_vote: true,
            applied: snapshot.raft_index,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raft = RawNode::new(&raft_config, storage, &logger).map_err(SyncError::Config)?;
        let mut rng = SeededRng::new(config.seed);
        let tick_at_ms = now_ms + rng.range(1, config.tick_ms);
        let mut sync = Sync {
            config,
            raft,
            rng,
            resolutions: VecDeque::new(),
            held: 0,
            unwritten: Vec::new(),
            by_segment: BTreeMap::new(),
            end: 0,
            queue: Vec::new(),
            queued: BTreeSet::new(),
            drafted: BTreeMap::new(),
            inflight: VecDeque::new(),
            proposed_end: 0,
            tick_at_ms,
            role_seen: (0, StateRole::Follower),
            ticks_withheld: 0,
            started_from_snapshot: snapshot.raft_index,
            applied: (snapshot.raft_index, snapshot.raft_term),
            snapshot,
            compact_through: None,
            filling: None,
            snapshots_sent: BTreeMap::new(),
            now_ms,
            out: Ready::default(),
        };
        sync.restore(older, replayed.resolutions);
        sync.process_ready();
        Ok(sync)
    }

    /// One message from `from`. Messages that make no sense here are ignored.
    pub fn handle_message(&mut self, from: NodeId, message: Message, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        match message {
            Message::Raft(RaftMessage(raft_message))
                if self.config.membership.syncs.contains(&from) =>
            {
                // A step error is a stale or foreign message; Raft ignores it safely.
                let _ = self.raft.step(raft_message);
            }
            Message::SegmentOver {
                segment,
                owner,
                count,
                digest,
                after,
            } if count > 0 => {
                let over = Item::Over {
                    segment,
                    owner,
                    count,
                    digest,
                };
                self.on_item(from, over, after);
            }
            Message::Abort { segment, owner } => {
                self.on_item(from, Item::Abort { segment, owner }, None);
            }
            Message::PullResolutions { from_index } => self.on_pull(from, from_index),
            Message::Resolved { resolutions } if self.config.membership.syncs.contains(&from) => {
                self.on_fill(from, resolutions, now_ms);
            }
            _ => {}
        }
        self.note_role();
        self.propose(now_ms);
        self.process_ready();
    }

    /// After a change of term or role, a node that does not lead waits a seeded extra
    /// 0 to `2 * election_ticks - 1` ticks before its next election timeout (Raft's
    /// randomized timeout, drawn here so that one seed gives one run).
    fn note_role(&mut self) {
        let raft = &self.raft.raft;
        let role = (raft.term, raft.state);
        if role == self.role_seen {
            return;
        }
        self.role_seen = role;
        self.ticks_withheld = match role.1 {
            StateRole::Leader => 0,
            _ => self.rng.range(0, 2 * self.config.election_ticks as u64 - 1) as usize,
        };
    }

    /// Timers: Raft ticks (jittered) and proposals.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        // Catch up on missed ticks, at most a few per call.
        for _ in 0..8 {
            if now_ms < self.tick_at_ms {
                break;
            }
            if self.ticks_withheld > 0 {
                self.ticks_withheld -= 1;
            } else {
                self.raft.tick();
                self.note_role();
            }
            let half = self.config.tick_ms / 2;
            self.tick_at_ms += half.max(1) + self.rng.range(0, self.config.tick_ms);
        }
        if self.tick_at_ms <= now_ms {
            // Fell far behind (a long pause): skip the missed ticks rather than burst them.
            self.tick_at_ms = now_ms + 1;
        }
        self.report_lost_snapshots(now_ms);
        self.pull_missing(now_ms);
        self.hand_over_while_filling();
        self.propose(now_ms);
        self.process_ready();
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> u64 {
        self.tick_at_ms
    }

    /// The batch of outputs accumulated since the last call.
    pub fn ready(&mut self) -> Ready<SyncWrite, SyncEvent> {
        let ready = std::mem::take(&mut self.out);
        if ready.fsync {
            // The snapshot that covers these entries is in `ready`, fsynced before any
            // write of the next batch.
            if let Some(through) = self.compact_through.take() {
                self.out.writes.push(SyncWrite::CompactLog { through });
            }
        }
        ready
    }

    /// The newest final resolutions applied here, in order: the whole log while it is
    /// shorter than `resolution_cache_max`, else its tail (the rest is on disk).
    pub fn resolutions(&self) -> Vec<Resolution> {
        self.resolutions.iter().cloned().collect()
    }

    /// The resolution log's length: the index of the last resolution applied here.
    pub fn resolution_count(&self) -> u64 {
        self.held
    }

    /// How many resolutions memory holds (the newest).
    pub fn resolutions_cached(&self) -> u64 {
        self.resolutions.len() as u64
    }

    /// Resolution `index`, if memory holds it.
    fn cached(&self, index: u64) -> Option<&Resolution> {
        let first = self.held + 1 - self.resolutions.len() as u64;
        let position = index.checked_sub(first)?;
        self.resolutions.get(usize::try_from(position).ok()?)
    }

    /// Whether this node leads the vote now.
    pub fn is_leader(&self) -> bool {
        self.raft.raft.state == StateRole::Leader
    }

    /// The Raft state an operator watches: term, the leader this node knows, the commit
    /// index.
    pub fn raft_status(&self) -> RaftStatus {
        let raft = &self.raft.raft;
        RaftStatus {
            term: raft.term,
            // Raft IDs are node IDs plus one (raft-rs reserves 0 for "none").
            leader: (raft.leader_id != 0)
                .then(|| u32::try_from(raft.leader_id - 1).ok().map(NodeId))
                .flatten(),
            commit_index: raft.raft_log.committed,
            snapshot_index: self.snapshot.raft_index,
            started_from_snapshot: self.started_from_snapshot,
            filling_to: self.filling.as_ref().map(|filling| filling.target),
        }
    }

    fn on_item(&mut self, from: NodeId, item: Item, after: Option<SegmentId>) {
        let segment = item.segment();
        if let Some(decided) = self.by_segment.get(&segment) {
            let index = decided.index;
            match self.cached(index).cloned() {
                Some(resolution) => self.out.messages.push((
                    from,
                    Message::Resolved {
                        resolutions: vec![resolution],
                    },
                )),
                None => self.out.events.push(SyncEvent::ReadResolutions {
                    to: from,
                    from_index: index,
                    count: 1,
                }),
            }
            return;
        }
        if self.is_leader() {
            if self.queued.contains(&segment) {
                // An abort overrides a SEGMENT_OVER that waits for its `after`: that one
                // may never come (its entry died before a quorum stored it). A repeated
                // SEGMENT_OVER names the `after` its entry holds now (it moves back past a
                // segment that was aborted).
                if let Some(queued) = self.queue.iter_mut().find(|(q, _)| q.segment() == segment) {
                    match (&queued.0, &item) {
                        (_, Item::Abort { .. }) => *queued = (item, None),
                        (Item::Over { .. }, Item::Over { .. }) => queued.1 = after,
                        (Item::Abort { .. }, Item::Over { .. }) => {}
                    }
                }
            } else if self.queue.len() < self.config.queue_items_max
                || self.make_room_for(&item, after)
            {
                self.queued.insert(segment);
                self.queue.push((item, after));
            }
            return;
        }
        let leader = self.raft.raft.leader_id;
        if leader == raft::INVALID_ID || leader == raft_id(self.config.id) {
            return;
        }
        let message = match item {
            Item::Over {
                segment,
                owner,
                count,
                digest,
            } => Message::SegmentOver {
                segment,
                owner,
                count,
                digest,
                after,
            },
            Item::Abort { segment, owner } => Message::Abort { segment, owner },
        };
        self.out.messages.push((node_id(leader), message));
    }

    /// A full queue makes room for an item that can be drafted now, or that a queued one
    /// waits for, by dropping the newest item that waits for a segment not even queued
    /// (its entry resends it). Else segments that wait could fill the queue and keep out
    /// the very ones they wait for, until ndb aborted them all.
    fn make_room_for(&mut self, item: &Item, after: Option<SegmentId>) -> bool {
        let segment = item.segment();
        let useful = matches!(item, Item::Abort { .. })
            || after.is_none_or(|after| self.got_a_range(after))
            || self.queue.iter().any(|(_, waits)| *waits == Some(segment));
        if !useful {
            return false;
        }
        let blocked = self.queue.iter().rposition(|(queued, waits)| {
            matches!(queued, Item::Over { .. })
                && waits.is_some_and(|a| !self.got_a_range(a) && !self.queued.contains(&a))
        });
        let Some(position) = blocked else {
            return false;
        };
        let (dropped, _) = self.queue.remove(position);
        self.queued.remove(&dropped.segment());
        true
    }

    /// PULL_RESOLUTIONS: a page from `from_index`, from memory, or read from disk if it
    /// starts before the resolutions memory holds.
    fn on_pull(&mut self, from: NodeId, from_index: u64) {
        let from_index = from_index.max(1);
        if from_index > self.held {
            return;
        }
        let count = (self.held - from_index + 1).min(self.config.resolved_batch_max as u64);
        if self.cached(from_index).is_none() {
            self.out.events.push(SyncEvent::ReadResolutions {
                to: from,
                from_index,
                count,
            });
            return;
        }
        let resolutions = (from_index..from_index + count)
            .filter_map(|index| self.cached(index).cloned())
            .collect();
        self.out
            .messages
            .push((from, Message::Resolved { resolutions }));
    }

    /// Stage one: draft the next batch, if leading and no vote is in flight.
    fn propose(&mut self, now_ms: u64) {
        if !self.is_leader() || self.queue.is_empty() || self.filling.is_some() {
            return;
        }
        // Only once every entry of earlier terms is applied: one of them may decide a
        // segment (an abort drafted by an earlier leader) that a draft of ours would
        // otherwise take as still open, and order another segment after.
        if !self.raft.raft.apply_to_current_term() {
            return;
        }
        if self
            .inflight
            .front()
            .is_some_and(|(_, expires_ms)| now_ms >= *expires_ms)
        {
            // A vote did not come back in time: propose on. What was drafted is kept: a
            // leader's own entries commit in log order while it leads (and all of this is
            // forgotten when it stops), so they still precede the next draft; forgetting an
            // abort in flight would let its segment be drafted for a range too, and a
            // segment after it go before the ones it follows.
            self.inflight.clear();
        }
        if self.inflight.len() >= self.config.votes_in_flight_max {
            return;
        }
        let items = self.take_ready_items();
        if items.is_empty() {
            return;
        }
        let floor = PermanentId::floor_at_unix_ms(now_ms);
        let draft = Draft {
            floor: floor.0,
            items: self.refuse_what_does_not_fit(items, floor),
        };
        // Encoding a Vec of plain structs into a Vec cannot fail.
        let data = postcard::to_allocvec(&draft).expect("draft encodes");
        if self.raft.propose(Vec::new(), data).is_ok() {
            let index = self.raft.raft.raft_log.last_index();
            self.drafted.extend(draft.items.iter().map(|item| {
                let range = matches!(item, Item::Over { .. });
                (item.segment(), (index, range))
            }));
            let expires_ms = now_ms + 4 * self.config.tick_ms * self.config.election_ticks as u64;
            self.inflight.push_back((index, expires_ms));
        }
    }

    /// The queued items that may be drafted now, in queue order, at most
    /// `batch_items_max`: aborts, and segments whose `after` got a range: decided so,
    /// drafted so in a vote in flight, or taken so earlier in this batch. The others stay
    /// queued (their `after` comes from the same entry, which retries it; or is aborted by
    /// ndb if it died). An `after` that was aborted does not count: the segments before it
    /// may still be open, so the entry names the one before it in its next SEGMENT_OVER.
    /// Items decided meanwhile (a duplicate, an abort that won) or drafted in a vote in
    /// flight are dropped.
    fn take_ready_items(&mut self) -> Vec<Item> {
        let mut taken: BTreeSet<SegmentId> = BTreeSet::new();
        let mut items = Vec::new();
        // Each pass takes at least one item or stops; an item can unblock another only if
        // it comes first in the queue (an entry's segments arrive roughly in order), so a
        // few passes suffice; the loop is bounded by the queue's length.
        for _ in 0..self.queue.len().max(1) {
            let before = items.len();
            let queue = std::mem::take(&mut self.queue);
            for (item, after) in queue {
                let segment = item.segment();
                if self.by_segment.contains_key(&segment) || self.drafted.contains_key(&segment) {
                    self.queued.remove(&segment);
                    continue;
                }
                let ready = match after {
                    _ if self.config.mutation == Mutation::SyncIgnoresAfter => true,
                    None => true,
                    Some(after) => self.got_a_range(after) || taken.contains(&after),
                };
                if ready && items.len() < self.config.batch_items_max {
                    self.queued.remove(&segment);
                    if matches!(item, Item::Over { .. }) {
                        taken.insert(segment);
                    }
                    items.push(item);
                } else {
                    self.queue.push((item, after));
                }
            }
            if items.len() == before || items.len() >= self.config.batch_items_max {
                break;
            }
        }
        items
    }

    /// Whether `segment` was decided a range, or drafted for one in a vote in flight.
    fn got_a_range(&self, segment: SegmentId) -> bool {
        if let Some(decided) = self.by_segment.get(&segment) {
            return decided.range;
        }
        self.drafted.get(&segment).is_some_and(|(_, range)| *range)
    }

    /// Exhaustion is refused here, at proposal time: a segment whose range would pass
    /// `PermanentId::MAX` is drafted as an abort, so its entry rejects its publishers.
    /// Applying the draft then never meets an impossible range on any replica.
    fn refuse_what_does_not_fit(&mut self, items: Vec<Item>, floor: PermanentId) -> Vec<Item> {
        let mut end = self.end.max(self.proposed_end);
        let items = items
            .into_iter()
            .map(|item| match item {
                Item::Over {
                    segment,
                    owner,
                    count,
                    ..
                } => match PermanentId::next_base(end, floor, u64::from(count)) {
                    Some(base) => {
                        end = base.0 + u64::from(count) - 1;
                        item
                    }
                    None => Item::Abort { segment, owner },
                },
                abort => abort,
            })
            .collect();
        self.proposed_end = end;
        items
    }

    fn process_ready(&mut self) {
        // Each turn consumes one Raft ready; Raft produces a bounded number per input.
        for _ in 0..8 {
            if !self.raft.has_ready() {
                break;
            }
            self.process_one_ready();
        }
        if !self.is_leader() {
            // Not (or no longer) leading: entries and ndb retry elsewhere.
            self.queue.clear();
            self.queued.clear();
            self.drafted.clear();
            self.inflight.clear();
            self.proposed_end = 0;
        }
    }

    fn process_one_ready(&mut self) {
        let mut ready = self.raft.ready();
        // raft-rs's verdict: entries, a new term or a vote must be durable before this
        // ready's persisted messages leave; a hard state whose commit alone moved need
        // not (a follower learns each commit in an append of its own, which would
        // otherwise cost a second fsync per vote).
        self.out.fsync |= ready.must_sync();
        if !ready.snapshot().is_empty() {
            // raft-rs hands a snapshot before the entries that follow it.
            self.install(ready.snapshot().clone());
        }
        if !ready.entries().is_empty() {
            let entries = ready.take_entries();
            // raft-rs hands entries that follow the persisted log; MemStorage accepts them.
            self.raft
                .mut_store()
                .log
                .wl()
                .append(&entries)
                .expect("raft entries follow the log");
            self.out.writes.push(SyncWrite::Entries(entries));
        }
        if let Some(state) = ready.hs() {
            self.raft.mut_store().log.wl().set_hardstate(state.clone());
            self.out.writes.push(SyncWrite::HardState(state.clone()));
        }
        // A leader's appends may leave before its own copy is durable (Raft thesis 10.2.1;
        // raft-rs's `messages`): its fsync and its followers' then overlap. Votes and a
        // follower's answers (`persisted_messages`) wait for the fsync.
        let early = ready.take_messages();
        for message in early {
            self.note_snapshot_sent(&message);
            let to = node_id(message.to);
            self.out
                .early
                .push((to, Message::Raft(RaftMessage(message))));
        }
        self.send_raft(ready.take_persisted_messages());
        self.apply(ready.take_committed_entries());
        let mut light = self.raft.advance(ready);
        if let Some(commit) = light.commit_index() {
            // Not fsynced on its own: a commit index lost in a crash is learned again from
            // the leader, and the entries it covers are durable on a quorum already.
            let mut store = self.raft.mut_store().log.wl();
            store.mut_hard_state().commit = commit;
            self.out
                .writes
                .push(SyncWrite::HardState(store.hard_state().clone()));
        }
        self.send_raft(light.take_messages());
        self.apply(light.take_committed_entries());
        self.raft.advance_apply();
        self.maybe_snapshot();
    }

    fn send_raft(&mut self, messages: Vec<raft::eraftpb::Message>) {
        for message in messages {
            self.note_snapshot_sent(&message);
            self.out
                .messages
                .push((node_id(message.to), Message::Raft(RaftMessage(message))));
        }
    }

    /// Stage two done: apply committed votes, in log order, on every node alike. While
    /// the resolution log is being filled, they wait in the Raft log (`Filling`).
    fn apply(&mut self, entries: Vec<RaftEntry>) {
        if let Some(filling) = &mut self.filling {
            if let Some(last) = entries.last() {
                filling.committed = filling.committed.max(last.index);
            }
            return;
        }
        for entry in entries {
            self.applied = (entry.index, entry.term);
            while self
                .inflight
                .front()
                .is_some_and(|(index, _)| entry.index >= *index)
            {
                self.inflight.pop_front();
            }
            self.drafted.retain(|_, (index, _)| *index > entry.index);
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            // Only our own proposals are in the log; a draft that does not decode is skipped
            // on every node alike, so agreement holds.
            let Ok(draft) = postcard::from_bytes::<Draft>(&entry.data) else {
                continue;
            };
            let first = self.unwritten.len();
            self.apply_draft(draft, entry.index, entry.term);
            let decided = self.unwritten.len() - first;
            self.out.events.push(SyncEvent::VoteApplied { decided });
            if self.is_leader() && decided > 0 {
                self.announce(first);
            }
        }
        self.write_resolutions();
    }

    /// The resolutions recorded since the last call, as one write.
    fn write_resolutions(&mut self) {
        if !self.unwritten.is_empty() {
            let recorded = std::mem::take(&mut self.unwritten);
            self.out.writes.push(SyncWrite::Resolutions(recorded));
        }
    }

    fn apply_draft(&mut self, draft: Draft, raft_index: u64, raft_term: u64) {
        for item in draft.items {
            let segment = item.segment();
            if self.by_segment.contains_key(&segment) {
                continue;
            }
            let (owner, outcome) = match item {
                Item::Abort { owner, .. } => (owner, Outcome::Aborted),
                Item::Over { owner, .. }
                    if self.config.mutation == Mutation::SyncAbortsEverySegment =>
                {
                    (owner, Outcome::Aborted)
                }
                Item::Over {
                    owner,
                    count,
                    digest,
                    ..
                } => (owner, self.assign_range(draft.floor, count, digest)),
            };
            let index = self.held + 1;
            let resolution = Resolution {
                index,
                segment,
                owner,
                outcome,
                raft_index,
                raft_term,
            };
            self.record(resolution);
        }
    }

    /// Appends `resolution` (the next index) to the resolution log, applied here or pulled
    /// from a peer; the observer sees it applied.
    fn record(&mut self, resolution: Resolution) {
        self.out.events.push(SyncEvent::Applied(resolution.clone()));
        self.unwritten.push(resolution.clone());
        self.remember(resolution);
    }

    /// Holds `resolution` (the next index): its segment as decided, itself in memory
    /// while it is among the newest.
    fn remember(&mut self, resolution: Resolution) {
        self.note_decided(DecidedSegment::from(&resolution));
        self.resolutions.push_back(resolution);
        while self.resolutions.len() > self.config.resolution_cache_max.max(1) {
            self.resolutions.pop_front();
        }
    }

    /// Holds `decided` (the next index) as decided: the first decision for its segment.
    fn note_decided(&mut self, decided: DecidedSegment) {
        let (index, range) = (decided.index, decided.range);
        self.by_segment
            .insert(decided.segment, Decided { index, range });
        self.held = index;
    }

    /// `base = max(previous_end + 1, floor)`. A range past `PermanentId::MAX` is refused
    /// at proposal time; one met here anyway (drafted by an earlier leader whose view of
    /// the end was behind) is aborted, the same on every replica, and never asserted on.
    fn assign_range(&mut self, floor: u64, count: u32, digest: u64) -> Outcome {
        let previous_end = match self.config.mutation {
            Mutation::BaseIgnoresPreviousEnd => 0,
            _ => self.end,
        };
        let Some(base) = PermanentId::next_base(previous_end, PermanentId(floor), count.into())
        else {
            return Outcome::Aborted;
        };
        self.end = self.end.max(base.0 + u64::from(count) - 1);
        Outcome::Permanent {
            base,
            count,
            digest,
        }
    }

    /// The leader pushes fresh resolutions (those recorded from `unwritten[first]` on):
    /// each to its entry, all to every ndb.
    fn announce(&mut self, first: usize) {
        let fresh = &self.unwritten[first..];
        for ndb in &self.config.membership.ndbs {
            self.out.messages.push((
                *ndb,
                Message::Resolved {
                    resolutions: fresh.to_vec(),
                },
            ));
        }
        let mut by_owner: BTreeMap<NodeId, Vec<Resolution>> = BTreeMap::new();
        for resolution in fresh {
            by_owner
                .entry(resolution.owner)
                .or_default()
                .push(resolution.clone());
        }
        for (owner, resolutions) in by_owner {
            if self.config.membership.entries.contains(&owner) {
                self.out
                    .messages
                    .push((owner, Message::Resolved { resolutions }));
            }
        }
    }
}

/// Loads replayed records into the Raft storage: the snapshot, the log after it, the
/// hard state.
fn load(storage: &mut SyncStorage, replayed: &Replayed) -> Result<(), SyncError> {
    let last_index = replayed.entries.last().map_or(0, |entry| entry.index);
    if let Some(snapshot) = &replayed.snapshot {
        // A new storage holds no entry: the snapshot is past its first index.
        storage
            .install(snapshot.to_raft())
            .map_err(|_| SyncError::LogNotContiguous {
                index: snapshot.raft_index,
                last_index,
            })?;
    }
    let mut core = storage.log.wl();
    // `Replayed` checked that the entries follow the snapshot and each other.
    core.append(&replayed.entries)
        .map_err(|_| SyncError::LogNotContiguous {
            index: replayed.entries.first().map_or(0, |entry| entry.index),
            last_index,
        })?;
    if let Some(state) = &replayed.hard_state {
        core.set_hardstate(state.clone());
    }
    Ok(())
}

/// Raft IDs start at 1; node IDs at 0.
fn raft_id(node: NodeId) -> u64 {
    u64::from(node.0) + 1
}

fn node_id(raft_id: u64) -> NodeId {
    NodeId(raft_id.saturating_sub(1) as u32)
}

#[cfg(test)]
mod tests;
