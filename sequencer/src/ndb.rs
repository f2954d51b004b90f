//! The ndb storage node: keeps the temporary history of open segments durably, then moves
//! each segment into the permanent log in the order sync resolved them.

use crate::config::wire_limits::FRAME_CONTENT_BYTES_MAX;
use crate::config::{Mutation, NdbConfig};
use crate::id::{segment_digest, NodeId, PermanentId, Publication, SegmentId};
use crate::message::{LogPage, LogRecord, Message, Outcome, Resolution};
use crate::ready::Ready;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Segments asked for in one FETCH round at most, from the next pending resolutions.
const FETCH_AHEAD_MAX: usize = 64;

/// Parked READs per reader at most (a tail and a few lagging positions).
const PARKED_PER_READER_MAX: usize = 16;

/// One record of an ndb's durable log. Recovery replays them in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NdbWrite {
    /// A segment entered the temporary history.
    Temp {
        /// The segment.
        segment: SegmentId,
        /// Its entry.
        owner: NodeId,
        /// Its messages.
        messages: Vec<Publication>,
    },
    /// Resolution `resolution.index` was applied: for a permanent segment, `messages` were
    /// appended to the permanent log with IDs `base + offset`.
    Applied {
        /// The resolution.
        resolution: Resolution,
        /// The segment's messages (empty when aborted).
        messages: Vec<Publication>,
    },
}

/// Work for the driver: reads of the permanent log's records that this ndb keeps on disk
/// only (older than its memory holds, [`NdbConfig::log_cache_records_max`] and
/// `log_cache_bytes_max`). Every such record is final and was handed to the disk in an
/// earlier or the same batch's writes: the driver reads after persisting them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NdbEvent {
    /// Send `to` a LOG `{after, records}` (early: the records are final) with the records
    /// of IDs above `after`, in order: at least one, at most `records_max`, and no more
    /// encoded bytes (`LogRecord::encoded_bytes_max` summed) than `bytes_max` beyond the
    /// first.
    ReadLog {
        /// The reader.
        to: NodeId,
        /// Its position.
        after: u64,
        /// Records at most.
        records_max: usize,
        /// Encoded bytes at most.
        bytes_max: usize,
    },
    /// Send `to` a SEGMENT_DATA `{segment, owner, messages}` (early) with the publications
    /// of IDs `first .. first + count`, the decided segment `segment`.
    ReadSegment {
        /// The peer that fetches it.
        to: NodeId,
        /// The segment.
        segment: SegmentId,
        /// What SEGMENT_DATA names as its owner (this ndb: the receiver checks count and
        /// digest).
        owner: NodeId,
        /// Its first permanent ID.
        first: u64,
        /// Its records.
        count: usize,
    },
}

impl NdbEvent {
    /// The first permanent ID the read wants: it takes records from there on, in order.
    pub fn first_id(&self) -> u64 {
        match *self {
            NdbEvent::ReadLog { after, .. } => after.saturating_add(1),
            NdbEvent::ReadSegment { first, .. } => first,
        }
    }

    /// Its answer, to be filled with the log's records from [`NdbEvent::first_id`] on.
    pub fn answer(self) -> ReadAnswer {
        match self {
            NdbEvent::ReadLog {
                to,
                after,
                records_max,
                bytes_max,
            } => ReadAnswer::Log {
                to,
                after,
                page: LogPage::new(records_max, bytes_max),
            },
            NdbEvent::ReadSegment {
                to,
                segment,
                owner,
                first,
                count,
            } => ReadAnswer::Segment {
                to,
                segment,
                owner,
                first,
                count,
                messages: Vec::new(),
            },
        }
    }
}

/// A read's answer being filled, from memory (the ndb itself) or from disk (its driver,
/// the simulator's model of its disk): the same caps and checks either way.
#[derive(Debug)]
pub enum ReadAnswer {
    /// A LOG.
    Log {
        /// The reader.
        to: NodeId,
        /// Its position.
        after: u64,
        /// The records.
        page: LogPage,
    },
    /// A SEGMENT_DATA.
    Segment {
        /// The peer that fetches it.
        to: NodeId,
        /// The segment.
        segment: SegmentId,
        /// What it names as the owner.
        owner: NodeId,
        /// Its first permanent ID.
        first: u64,
        /// Its records.
        count: usize,
        /// Its publications so far.
        messages: Vec<Publication>,
    },
}

impl ReadAnswer {
    /// Adds the next record of the log; whether more are wanted. `Err(id)`: the log lacks
    /// record `id` of a segment (whose IDs are consecutive).
    pub fn push(&mut self, record: LogRecord) -> Result<bool, u64> {
        match self {
            ReadAnswer::Log { page, .. } => Ok(page.push(record)),
            ReadAnswer::Segment {
                first,
                count,
                messages,
                ..
            } => {
                let expected = *first + messages.len() as u64;
                if record.id.0 != expected {
                    return Err(expected);
                }
                messages.push(record.publication);
                Ok(messages.len() < *count)
            }
        }
    }

    /// The message to send, and to whom.
    pub fn finish(self) -> (NodeId, Message) {
        match self {
            ReadAnswer::Log { to, after, page } => {
                let records = page.into_records();
                (to, Message::Log { after, records })
            }
            ReadAnswer::Segment {
                to,
                segment,
                owner,
                messages,
                ..
            } => {
                let data = Message::SegmentData {
                    segment,
                    owner,
                    messages,
                };
                (to, data)
            }
        }
    }
}

#[derive(Debug)]
struct TempSegment {
    owner: NodeId,
    messages: Vec<Publication>,
    digest: u64,
    /// When to ask sync to abort it: `abort_after_ms` after its owner last named it (its
    /// KEEP, an UNDECIDED) or this ndb got it; once `aborting`, when to ask again.
    abort_at_ms: u64,
    /// This ndb asks sync to abort it (its owner fell silent, or its lease expired): a
    /// name from the owner no longer defers it, since an ABORT may be on its way already.
    aborting: bool,
}

/// Where a decided segment went.
#[derive(Debug, PartialEq, Eq)]
enum Decided {
    /// Into the permanent log: `count` records with IDs from `first`, whose messages have
    /// digest `digest` (a late KEEP is answered from these, without the records).
    Permanent {
        first: u64,
        count: usize,
        digest: u64,
    },
    /// Dropped by this resolution, kept to answer its owner's late KEEP (else an entry
    /// that missed the RESOLVED would resend it forever).
    Aborted(Resolution),
}

/// An ndb storage node's core (sans-IO).
///
/// Calling order: `handle_message` / `handle_timeout` with non-decreasing `now_ms`, then
/// `ready()`: append its writes to the disk, fsync if it says so, then send its messages
/// (STORED is only ever released in a batch that fsyncs). After a crash, build it again
/// with `recover` from the records that reached the disk before the last fsync.
#[derive(Debug)]
pub struct Ndb {
    config: NdbConfig,
    temp: BTreeMap<SegmentId, TempSegment>,
    unsynced: BTreeSet<SegmentId>,
    decided: BTreeMap<SegmentId, Decided>,
    /// `decided`'s segments in the order they were decided: the oldest are forgotten
    /// beyond `decided_segments_max`.
    decided_order: VecDeque<SegmentId>,
    /// The newest records of the permanent log, in ID order; older ones are on disk only.
    log: VecDeque<LogRecord>,
    /// `LogRecord::encoded_bytes_max` summed over `log`.
    log_bytes: usize,
    /// Records of the permanent log in all (memory and disk).
    log_count: u64,
    /// The last permanent ID (0: none yet).
    log_end_id: u64,
    /// The last ID held on disk only (0: memory holds the whole log).
    stored_end: u64,
    applied_index: u64,
    pending: BTreeMap<u64, Resolution>,
    held: Vec<(NodeId, Message)>,
    commit_at_ms: Option<u64>,
    pull_at_ms: u64,
    pull_target: usize,
    fetch_at_ms: u64,
    fetch_target: usize,
    /// Segments of the fetch window asked for, and when: asked again only `retry_ms`
    /// later, so that each arrival that moves the window does not ask the whole window
    /// again (at most `FETCH_AHEAD_MAX` entries).
    asked: BTreeMap<SegmentId, u64>,
    abort_target: usize,
    /// The latest `now_ms` seen: a jump beyond [`PAUSE_GAP_MS`] is a pause of this node
    /// (`aborts.rs`), not its owners' silence.
    last_now_ms: u64,
    /// Long polls: READs at (or past) the end of the log, by reader and `after`, with
    /// their deadline; answered when the log grows past `after` or at the deadline. At
    /// most `PARKED_PER_READER_MAX` per reader (its oldest position goes first).
    parked: BTreeMap<(NodeId, u64), u64>,
    out: Ready<NdbWrite, NdbEvent>,
}

/// What recovery needs of the oldest applied resolutions ([`Ndb::recover_from`]): how far
/// they go, and the permanent log they made (its records are on disk).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NdbBase {
    /// The last of them.
    pub applied_index: u64,
    /// Records of the permanent log they made.
    pub log_records: u64,
    /// The last permanent ID among them (0: none).
    pub last_id: u64,
}

impl NdbBase {
    /// `resolution` (the next index) applied on top.
    pub fn add(&mut self, resolution: &Resolution) {
        self.applied_index = resolution.index;
        if let Outcome::Permanent { base, count, .. } = resolution.outcome {
            self.log_records += u64::from(count);
            self.last_id = self.last_id.max(base.0 + u64::from(count) - 1);
        }
    }
}

impl Ndb {
    /// A new, empty ndb.
    pub fn new(config: NdbConfig, now_ms: u64) -> Ndb {
        assert!(
            !config.membership.syncs.is_empty(),
            "an ndb needs sync nodes"
        );
        assert!(
            config.segment_bytes_max <= FRAME_CONTENT_BYTES_MAX,
            "segment_bytes_max must leave a KEEP within the frame limit"
        );
        assert!(
            config.log_read_bytes_max <= FRAME_CONTENT_BYTES_MAX,
            "log_read_bytes_max must leave a LOG within the frame limit"
        );
        Ndb {
            config,
            temp: BTreeMap::new(),
            unsynced: BTreeSet::new(),
            decided: BTreeMap::new(),
            decided_order: VecDeque::new(),
            log: VecDeque::new(),
            log_bytes: 0,
            log_count: 0,
            log_end_id: 0,
            stored_end: 0,
            applied_index: 0,
            pending: BTreeMap::new(),
            held: Vec::new(),
            commit_at_ms: None,
            pull_at_ms: now_ms,
            pull_target: 0,
            fetch_at_ms: now_ms,
            asked: BTreeMap::new(),
            fetch_target: 0,
            abort_target: 0,
            last_now_ms: 0,
            parked: BTreeMap::new(),
            out: Ready::default(),
        }
    }

    /// Rebuild from the durable records (those fsynced before a crash), in write order. An
    /// `Applied` record of a permanent resolution may come without its messages: they are
    /// on disk, and memory does not hold them (the driver reads only the newest records
    /// back, as many as memory holds).
    pub fn recover<'a>(
        config: NdbConfig,
        records: impl IntoIterator<Item = &'a NdbWrite>,
        now_ms: u64,
    ) -> Ndb {
        Self::recover_from(config, NdbBase::default(), records, now_ms)
    }

    /// As [`Ndb::recover`], where the resolutions up to `base.applied_index` were applied
    /// and are summed up in `base` (older than any decision this node remembers), and
    /// `records` hold the temporary segments and the resolutions after them: so that a
    /// restart need not hold every resolution in memory at once.
    pub fn recover_from<'a>(
        config: NdbConfig,
        base: NdbBase,
        records: impl IntoIterator<Item = &'a NdbWrite>,
        now_ms: u64,
    ) -> Ndb {
        let mut ndb = Ndb::new(config, now_ms);
        ndb.applied_index = base.applied_index;
        ndb.log_count = base.log_records;
        ndb.log_end_id = base.last_id;
        ndb.stored_end = base.last_id;
        for record in records {
            match record {
                NdbWrite::Temp {
                    segment,
                    owner,
                    messages,
                } => {
                    let digest = segment_digest(messages);
                    ndb.insert_temp(*segment, *owner, messages.clone(), digest, now_ms);
                }
                NdbWrite::Applied {
                    resolution,
                    messages,
                } => {
                    if resolution.index != ndb.applied_index + 1 {
                        // A hole means a damaged disk; stop here and re-learn the rest from sync.
                        break;
                    }
                    ndb.apply(resolution, messages.clone());
                }
            }
        }
        let decided = &ndb.decided;
        ndb.temp.retain(|segment, _| !decided.contains_key(segment));
        ndb
    }

    /// One message from `from`. Messages that make no sense here are ignored.
    pub fn handle_message(&mut self, from: NodeId, message: Message, now_ms: u64) {
        self.observe_time(now_ms);
        match message {
            Message::Keep {
                segment,
                owner,
                digest,
                messages,
            } => self.on_keep(from, (segment, owner, digest), messages, now_ms),
            Message::Resolved { resolutions } => self.on_resolved(resolutions, now_ms),
            Message::Fetch { segment } => self.on_fetch(from, segment),
            Message::SegmentData {
                segment,
                owner,
                messages,
            } => self.on_segment_data(segment, owner, messages, now_ms),
            Message::Read { after } => self.on_read(from, after, now_ms),
            Message::Undecided { owner, segments } => {
                self.on_undecided(from, owner, &segments, now_ms);
            }
            Message::AbortOwner {
                owner,
                cut_until_ms,
            } => self.on_abort_owner(from, owner, cut_until_ms, now_ms),
            _ => {}
        }
    }

    /// Timers: group commit, pulling resolutions, fetching, aborting segments whose owner
    /// fell silent.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.observe_time(now_ms);
        if self.commit_at_ms.is_some_and(|at| now_ms >= at) {
            self.commit_at_ms = None;
            self.out.fsync = true;
            self.unsynced.clear();
            self.out.messages.append(&mut self.held);
        }
        if now_ms >= self.pull_at_ms {
            self.pull(now_ms);
        }
        if now_ms >= self.fetch_at_ms {
            self.try_apply(now_ms);
        }
        self.request_aborts(now_ms);
        self.release_parked(now_ms);
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> u64 {
        let mut deadline = self.pull_at_ms;
        if let Some(at) = self.commit_at_ms {
            deadline = deadline.min(at);
        }
        if self.pending.contains_key(&(self.applied_index + 1)) {
            deadline = deadline.min(self.fetch_at_ms);
        }
        if let Some(until) = self.parked.values().min().copied() {
            deadline = deadline.min(until);
        }
        // Bounded by the number of temporary segments, which KEEP admission bounds.
        let abort_at = self.temp.values().map(|temp| temp.abort_at_ms).min();
        abort_at.map_or(deadline, |at| deadline.min(at))
    }

    /// The batch of outputs accumulated since the last call.
    pub fn ready(&mut self) -> Ready<NdbWrite, NdbEvent> {
        std::mem::take(&mut self.out)
    }

    /// The newest records of the permanent log, those memory holds: every record with an
    /// ID above the first value, oldest first (for checks).
    pub fn log_cache(&self) -> (PermanentId, impl Iterator<Item = &LogRecord> + '_) {
        (PermanentId(self.stored_end), self.log.iter())
    }

    /// Records in the permanent log (memory and disk).
    pub fn log_records(&self) -> u64 {
        self.log_count
    }

    /// Of them, those memory holds, and their encoded bytes (`LogRecord::encoded_bytes_max`
    /// summed).
    pub fn log_cached(&self) -> (u64, u64) {
        (self.log.len() as u64, self.log_bytes as u64)
    }

    /// The last permanent ID (0: none yet).
    pub fn last_id(&self) -> u64 {
        self.log_end_id
    }

    /// Resolutions applied so far.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Segments in the temporary history, not yet resolved.
    pub fn temp_segments(&self) -> Vec<SegmentId> {
        self.temp.keys().copied().collect()
    }

    /// How many temporary segments this ndb holds (not yet resolved).
    pub fn temp_segment_count(&self) -> usize {
        self.temp.len()
    }

    fn write(&mut self, record: NdbWrite, now_ms: u64) {
        self.out.writes.push(record);
        if self.commit_at_ms.is_none() {
            self.commit_at_ms = Some(now_ms + self.config.group_commit_ms);
        }
    }

    /// Send now if nothing unsynced could be announced by it, else after the next fsync.
    fn reply_durable(&mut self, to: NodeId, message: Message) {
        if self.commit_at_ms.is_some() {
            self.held.push((to, message));
        } else {
            self.out.messages.push((to, message));
        }
    }

    /// Writes a segment to temporary history (durable) and holds it in memory.
    /// Keeps a segment's copy (`digest`: its messages' digest, computed by the caller when
    /// it checked them).
    fn keep_temp(
        &mut self,
        segment: SegmentId,
        owner: NodeId,
        messages: Vec<Publication>,
        digest: u64,
        now_ms: u64,
    ) {
        self.write(
            NdbWrite::Temp {
                segment,
                owner,
                messages: messages.clone(),
            },
            now_ms,
        );
        self.insert_temp(segment, owner, messages, digest, now_ms);
    }

    fn insert_temp(
        &mut self,
        segment: SegmentId,
        owner: NodeId,
        messages: Vec<Publication>,
        digest: u64,
        now_ms: u64,
    ) {
        let abort_at_ms = now_ms + self.config.abort_after_ms;
        self.temp.insert(
            segment,
            TempSegment {
                owner,
                messages,
                digest,
                abort_at_ms,
                aborting: false,
            },
        );
    }

    fn on_keep(
        &mut self,
        from: NodeId,
        (segment, owner, digest): (SegmentId, NodeId, u64),
        messages: Vec<Publication>,
        now_ms: u64,
    ) {
        let bytes: usize = messages.iter().map(Publication::encoded_bytes_max).sum();
        if from != owner
            || messages.is_empty()
            || messages.len() > self.config.segment_messages_max
            || bytes > self.config.segment_bytes_max
        {
            return;
        }
        // A copy that is not what the entry cut (damaged on the way) is dropped: held
        // under the segment's ID it would be answered for, and applied, as the segment.
        // The entry resends to an ndb that did not answer.
        let held_digest = segment_digest(&messages);
        if held_digest != digest && self.config.mutation != Mutation::NdbSkipsDigestCheck {
            return;
        }
        match self.decided.get(&segment) {
            Some(Decided::Permanent { count, digest, .. }) => {
                let reply = Message::Stored {
                    segment,
                    count: *count as u32,
                    digest: *digest,
                };
                self.reply_durable(from, reply);
                return;
            }
            Some(Decided::Aborted(resolution)) => {
                // Committed by the sync quorum: final whether or not this ndb fsynced it.
                let resolutions = vec![resolution.clone()];
                self.out
                    .messages
                    .push((from, Message::Resolved { resolutions }));
                return;
            }
            None => {}
        }
        if self.temp.contains_key(&segment) {
            self.named(owner, segment, now_ms);
        } else {
            self.keep_temp(segment, owner, messages, held_digest, now_ms);
            self.unsynced.insert(segment);
        }
        let Some(temp) = self.temp.get(&segment) else {
            return;
        };
        let reply = Message::Stored {
            segment,
            count: temp.messages.len() as u32,
            digest: temp.digest,
        };
        if self.unsynced.contains(&segment) {
            self.held.push((from, reply));
        } else {
            self.out.messages.push((from, reply));
        }
    }

    fn on_resolved(&mut self, resolutions: Vec<Resolution>, now_ms: u64) {
        for resolution in resolutions {
            if resolution.index <= self.applied_index {
                // Applied already: a copy held since (a KEEP that came after this ndb
                // forgot the decision, then asked sync to abort it) is not the log's.
                if self.temp.remove(&resolution.segment).is_some() {
                    self.unsynced.remove(&resolution.segment);
                }
                continue;
            }
            // Full: keep the lowest indices, those applied next. Dropping the new one
            // instead would wedge an ndb whose buffer holds only later resolutions: the
            // one it needs next could never get in. What is dropped is pulled again.
            if self.pending.len() >= self.config.pending_resolutions_max {
                match self.pending.keys().next_back().copied() {
                    Some(highest) if highest > resolution.index => {
                        self.pending.remove(&highest);
                    }
                    _ => continue,
                }
            }
            self.pending.entry(resolution.index).or_insert(resolution);
        }
        self.try_apply(now_ms);
    }

    fn try_apply(&mut self, now_ms: u64) {
        let end = self.log_end();
        self.apply_pending(now_ms);
        if self.log_end() > end {
            self.answer_parked();
        }
    }

    /// Whether this ndb knows of more decided resolutions than one fetch round covers
    /// and has not applied them: it is catching up, and its log's end is not the log's.
    fn catching_up(&self) -> bool {
        self.pending.len() > FETCH_AHEAD_MAX
    }

    /// The last permanent ID here (0: none yet).
    fn log_end(&self) -> u64 {
        self.log_end_id
    }

    fn apply_pending(&mut self, now_ms: u64) {
        // Each turn applies one resolution or stops; bounded by the pending map.
        for _ in 0..=self.pending.len() {
            let mut next = self.applied_index + 1;
            if self.config.mutation == Mutation::NdbAppliesOutOfOrder {
                next = self.pending.keys().next().copied().unwrap_or(next);
            }
            let Some(resolution) = self.pending.get(&next) else {
                return;
            };
            let messages = match &resolution.outcome {
                Outcome::Aborted => Vec::new(),
                Outcome::Permanent { .. } => match self.matching_temp(resolution) {
                    Some(temp) => temp.messages.clone(),
                    None => {
                        self.fetch(now_ms);
                        return;
                    }
                },
            };
            let Some(resolution) = self.pending.remove(&next) else {
                return;
            };
            self.apply(&resolution, messages.clone());
            // Written without an fsync of its own (it rides on the next one): a resolution
            // is final in sync's log, and one lost in a crash is pulled and applied again
            // from the segment's temp record, which was fsynced before its STORED.
            self.out.writes.push(NdbWrite::Applied {
                resolution,
                messages,
            });
        }
    }

    /// The temporary copy of a permanent resolution's segment, if this ndb holds one with
    /// the decided count and digest (another copy under the same ID is not the segment).
    fn matching_temp(&self, resolution: &Resolution) -> Option<&TempSegment> {
        let Outcome::Permanent { count, digest, .. } = resolution.outcome else {
            return None;
        };
        let skip_digest = self.config.mutation == Mutation::NdbSkipsDigestCheck;
        self.temp.get(&resolution.segment).filter(|temp| {
            (temp.digest == digest || skip_digest) && temp.messages.len() == count as usize
        })
    }

    fn apply(&mut self, resolution: &Resolution, messages: Vec<Publication>) {
        if self.config.mutation != Mutation::NdbAppliesOutOfOrder {
            assert_eq!(
                resolution.index,
                self.applied_index + 1,
                "resolutions apply in order"
            );
        }
        self.applied_index = resolution.index;
        self.temp.remove(&resolution.segment);
        self.pending.remove(&resolution.index);
        let Outcome::Permanent {
            base,
            count,
            digest,
        } = resolution.outcome
        else {
            let aborted = Decided::Aborted(resolution.clone());
            self.remember(resolution.segment, aborted);
            return;
        };
        let count = count as usize;
        let decided = Decided::Permanent {
            first: base.0,
            count,
            digest,
        };
        self.remember(resolution.segment, decided);
        self.log_count += count as u64;
        self.log_end_id = self.log_end_id.max(base.0 + count as u64 - 1);
        if messages.is_empty() {
            // Recovered from disk without its messages: older than memory holds.
            self.stored_end = self.log_end_id;
            self.log.clear();
            self.log_bytes = 0;
            return;
        }
        for (offset, publication) in messages.into_iter().enumerate() {
            let id = PermanentId(base.0 + offset as u64);
            let record = LogRecord { id, publication };
            self.log_bytes += record.encoded_bytes_max();
            self.log.push_back(record);
        }
        // Bounded by the records just added.
        while self.log.len() > self.config.log_cache_records_max
            || (self.log_bytes > self.config.log_cache_bytes_max && !self.log.is_empty())
        {
            let Some(oldest) = self.log.pop_front() else {
                break;
            };
            self.log_bytes -= oldest.encoded_bytes_max();
            self.stored_end = oldest.id.0;
        }
    }

    /// Remembers where `segment` went, forgetting the oldest decisions beyond
    /// `decided_segments_max` (a late KEEP or a FETCH of one that old no longer comes: its
    /// entry stopped asking long ago, and a peer that far behind pulls a checkpoint).
    fn remember(&mut self, segment: SegmentId, decided: Decided) {
        if self.decided.insert(segment, decided).is_none() {
            self.decided_order.push_back(segment);
        }
        while self.decided_order.len() > self.config.decided_segments_max {
            let Some(oldest) = self.decided_order.pop_front() else {
                break;
            };
            self.decided.remove(&oldest);
        }
    }

    /// Asks a peer for the segments this ndb lacks among the next pending resolutions
    /// (the one that blocks applying and up to `FETCH_AHEAD_MAX - 1` after it), all at
    /// once: a lagging ndb catches up in one round trip per batch, not one per segment.
    fn fetch(&mut self, now_ms: u64) {
        if now_ms < self.fetch_at_ms {
            return;
        }
        self.fetch_at_ms = now_ms + self.config.retry_ms;
        let peers: Vec<NodeId> = self
            .config
            .membership
            .ndbs
            .iter()
            .copied()
            .filter(|n| *n != self.config.id)
            .collect();
        if peers.is_empty() {
            return;
        }
        self.fetch_target = (self.fetch_target + 1) % peers.len();
        let missing: Vec<SegmentId> = self
            .pending
            .values()
            .take(FETCH_AHEAD_MAX)
            .filter(|resolution| matches!(resolution.outcome, Outcome::Permanent { .. }))
            .filter(|resolution| self.matching_temp(resolution).is_none())
            .map(|resolution| resolution.segment)
            .collect();
        let retry_ms = self.config.retry_ms;
        self.asked.retain(|segment, _| missing.contains(segment));
        for segment in missing {
            match self.asked.get(&segment) {
                Some(at) if now_ms < at + retry_ms => continue,
                _ => {
                    self.asked.insert(segment, now_ms);
                }
            }
            self.out
                .messages
                .push((peers[self.fetch_target], Message::Fetch { segment }));
        }
    }

    fn on_fetch(&mut self, from: NodeId, segment: SegmentId) {
        if let Some(temp) = self.temp.get(&segment) {
            let data = Message::SegmentData {
                segment,
                owner: temp.owner,
                messages: temp.messages.clone(),
            };
            self.out.messages.push((from, data));
            return;
        }
        let Some(Decided::Permanent { first, count, .. }) = self.decided.get(&segment) else {
            return;
        };
        let (first, count) = (*first, *count);
        // The owner is not kept for permanent segments; the receiver checks count and digest.
        // Decided and applied, these records are final (as a LOG's): they leave before
        // this batch's fsync, so a peer catching up is not held to this ndb's group commit.
        let owner = self.config.id;
        self.read(NdbEvent::ReadSegment {
            to: from,
            segment,
            owner,
            first,
            count,
        });
    }

    /// Answers `read` from memory (early: its records are final), or hands it to the
    /// driver when it starts before what memory holds.
    fn read(&mut self, read: NdbEvent) {
        if read.first_id() <= self.stored_end {
            self.out.events.push(read);
            return;
        }
        let start = self
            .log
            .partition_point(|record| record.id.0 < read.first_id());
        let mut answer = read.answer();
        for record in self.log.range(start..) {
            if answer.push(record.clone()) != Ok(true) {
                break;
            }
        }
        self.out.early.push(answer.finish());
    }

    fn on_segment_data(
        &mut self,
        segment: SegmentId,
        owner: NodeId,
        messages: Vec<Publication>,
        now_ms: u64,
    ) {
        // One of the next pending resolutions (those `fetch` asks for).
        let wanted = self
            .pending
            .values()
            .take(FETCH_AHEAD_MAX)
            .find(|resolution| resolution.segment == segment);
        let Some(resolution) = wanted else {
            return;
        };
        let blocking = resolution.index == self.applied_index + 1;
        // A copy held already is kept only if it is the decided one: a different copy
        // under the same ID (damaged) is replaced, else applying would wait for it forever.
        if self.matching_temp(resolution).is_some() {
            return;
        }
        let Outcome::Permanent { count, digest, .. } = resolution.outcome else {
            return;
        };
        let skip_digest = self.config.mutation == Mutation::NdbSkipsDigestCheck;
        let held_digest = segment_digest(&messages);
        if messages.len() != count as usize || (held_digest != digest && !skip_digest) {
            return;
        }
        let owner = if owner == self.config.id {
            resolution.owner
        } else {
            owner
        };
        self.keep_temp(segment, owner, messages, held_digest, now_ms);
        // Apply what can be applied. Data for the resolution that blocked applying moves
        // the round on: what is still missing then is asked for at once.
        if blocking {
            self.fetch_at_ms = now_ms;
        }
        self.try_apply(now_ms);
    }

    fn on_read(&mut self, from: NodeId, after: u64, now_ms: u64) {
        if after >= self.log_end() {
            if self.catching_up() {
                // Far behind (a wiped disk, a long absence): the log has certainly grown
                // past this ndb's end, so an empty answer would hold the reader here until
                // it caught up. Silence sends the reader to another ndb.
                return;
            }
            // Nothing to send yet: hold it. A reader sends an unanswered READ again every
            // few ms; the copy keeps the first one's deadline, so an idle log still answers
            // empty after `read_park_ms` (a reader that hears nothing turns to another ndb).
            let until = now_ms + self.config.read_park_ms;
            self.parked.entry((from, after)).or_insert(until);
            let mine = self.parked.range((from, 0)..=(from, u64::MAX));
            if mine.count() > PARKED_PER_READER_MAX {
                if let Some((&oldest, _)) = self.parked.range((from, 0)..=(from, u64::MAX)).next() {
                    self.parked.remove(&oldest);
                }
            }
            return;
        }
        self.answer_read(from, after);
    }

    /// The parked READs the grown log can answer now.
    fn answer_parked(&mut self) {
        let end = self.log_end();
        let ready: Vec<(NodeId, u64)> = self
            .parked
            .keys()
            .filter(|(_, after)| *after < end)
            .copied()
            .collect();
        for (reader, after) in ready {
            self.parked.remove(&(reader, after));
            self.answer_read(reader, after);
        }
    }

    /// Parked READs whose time is up get an empty LOG (the reader asks again).
    fn release_parked(&mut self, now_ms: u64) {
        let due: Vec<(NodeId, u64)> = self
            .parked
            .iter()
            .filter(|(_, until)| **until <= now_ms)
            .map(|(key, _)| *key)
            .collect();
        for (reader, after) in due {
            self.parked.remove(&(reader, after));
            let records = Vec::new();
            self.out
                .early
                .push((reader, Message::Log { after, records }));
        }
    }

    fn answer_read(&mut self, from: NodeId, after: u64) {
        // Early: a LOG need not wait for this batch's fsync. Its records are final (the
        // resolution is in sync's Raft log, the segment fsynced on a quorum of ndb before
        // it was decided), so after a crash this ndb applies the same records again, or
        // fetches the segment from a peer, with the same IDs. Under load every batch
        // fsyncs KEEPs, and tailing entries would otherwise deliver one fsync later.
        self.read(NdbEvent::ReadLog {
            to: from,
            after,
            records_max: self.config.read_records_max,
            bytes_max: self.config.log_read_bytes_max,
        });
    }

    fn pull(&mut self, now_ms: u64) {
        self.pull_at_ms = now_ms + self.config.pull_ms;
        let syncs = &self.config.membership.syncs;
        self.pull_target = (self.pull_target + 1) % syncs.len();
        let from_index = self.applied_index + 1;
        self.out.messages.push((
            syncs[self.pull_target],
            Message::PullResolutions { from_index },
        ));
    }
}

mod aborts;
#[cfg(test)]
mod tests;
