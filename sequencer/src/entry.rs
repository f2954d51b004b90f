//! The entry: cuts client publishes into segments, stores them on ndb, has sync vote them,
//! acks publishers with permanent IDs, and tails the permanent log for its subscribers.

use crate::config::wire_limits::{FRAME_CONTENT_BYTES_MAX, UNDECIDED_SEGMENTS_MAX};
use crate::config::{EntryConfig, Mutation};
use crate::id::{
    segment_digest, AdvanceId, NodeId, PermanentId, Publication, SeededRng, SegmentId,
};
use crate::message::{LogRecord, Message, Outcome, Resolution};
use crate::ready::Ready;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What an entry tells its clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryEvent {
    /// The publish is durable on a quorum of ndb and has its permanent ID.
    Acked {
        /// Where it sat before.
        advance: AdvanceId,
        /// Its publisher.
        publisher: u64,
        /// Its per-publisher sequence.
        sequence: u64,
        /// Its permanent ID.
        id: PermanentId,
    },
    /// The segment was aborted: the publish is not and will never be in the log. This
    /// happens when an ndb heard nothing of the segment from this entry for its
    /// `abort_after_ms` (cut off from ndb, or a restart forgot it), when another entry
    /// passed on this entry's lease expiry (also before a quorum stored it), or when the
    /// ID space is exhausted (the sync leader refuses the range).
    Rejected {
        /// Where it sat.
        advance: AdvanceId,
        /// Its publisher.
        publisher: u64,
        /// Its per-publisher sequence.
        sequence: u64,
    },
    /// A record of the permanent log for a local subscriber, in permanent-ID order.
    Deliver {
        /// The subscriber.
        subscriber: u64,
        /// The record.
        record: LogRecord,
    },
}

/// Why a publish was refused at once.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The open segment is full while `segments_in_flight_max` segments are in flight.
    #[error("entry busy: too many publishes wait for their ack")]
    Busy,
    /// The publication alone is larger than a segment may be (its KEEP would not fit in a
    /// frame); it is refused for good, never queued.
    #[error("publication of {bytes} bytes exceeds the segment limit of {bytes_max} bytes")]
    TooLarge {
        /// Its encoded size (upper bound), in bytes.
        bytes: usize,
        /// `segment_bytes_max`.
        bytes_max: usize,
    },
}

#[derive(Debug)]
struct OpenSegment {
    id: SegmentId,
    opened_ms: u64,
    messages: Vec<Publication>,
    /// `Publication::encoded_bytes_max` summed over `messages`.
    bytes: usize,
}

/// A segment cut and sent to ndb: `ExpectStored` until a quorum stored it, then `ExpectResolved`.
#[derive(Debug)]
struct SealedSegment {
    id: SegmentId,
    /// The segment sealed before it, undecided when this one was sealed (SEGMENT_OVER's
    /// `after`): sync decides this one only after that one.
    after: Option<SegmentId>,
    messages: Vec<Publication>,
    digest: u64,
    /// When it was sealed (and its KEEP sent).
    sealed_ms: u64,
    stored_by: BTreeSet<NodeId>,
    expect_resolved: bool,
    acked_early: bool,
    retry_at_ms: u64,
    sync_target: usize,
}

/// An entry router's sequencing core (sans-IO).
///
/// Calling order: `publish` / `subscribe` / `handle_message` / `handle_timeout` in any
/// order with a non-decreasing `now_ms`, then `ready()` and carry it out (the entry writes
/// nothing to disk, so: send, then hand events to clients), then sleep until `poll_timeout()`.
#[derive(Debug)]
pub struct Entry {
    config: EntryConfig,
    rng: SeededRng,
    open: Option<OpenSegment>,
    /// Segments in flight, oldest first (at most `segments_in_flight_max`).
    sealed: VecDeque<SealedSegment>,
    /// The sync node that last announced a resolution to us: the leader, most likely.
    leader_hint: Option<NodeId>,
    /// When the undecided segments may be named to ndb again (UNDECIDED).
    name_at_ms: u64,
    /// The newest part of the permanent log: every record with an ID in
    /// `(cache_after, tail_end]`, at most `log_cache_records_max` of them.
    cache: VecDeque<LogRecord>,
    cache_after: u64,
    /// The last ID the tail read from ndb (0: none yet).
    tail_end: u64,
    read_at_ms: u64,
    /// When the tail may READ again: 0 once its last READ was answered (or never sent),
    /// else `retry_ms` after it left (the same READ again, to the same ndb, which holds
    /// one per position: a lost READ or LOG costs no more than a retry).
    tail_read_retry_ms: u64,
    /// When the unanswered tail READ first left: after `read_wait_ms` of silence the
    /// tail turns to the next ndb.
    tail_read_since_ms: Option<u64>,
    /// The same per lagging position: its READ waits for an answer until then.
    refill_retry_ms: BTreeMap<u64, u64>,
    /// Rotations over ndb, one for the tail and one for refills: a shared one could send
    /// every tail READ to the same down ndb (with two laggers and three ndb, say).
    tail_target: usize,
    refill_target: usize,
    /// Each subscriber's cursor: the last ID it was handed. A cursor below `cache_after`
    /// lags: it refills from ndb (READ from the cursor) until it reaches the cache.
    subscribers: BTreeMap<u64, u64>,
    out: Ready<(), EntryEvent>,
}

impl Entry {
    /// A fresh entry (also after a restart: an entry keeps no durable state).
    pub fn new(config: EntryConfig, now_ms: u64) -> Entry {
        assert!(
            !config.membership.ndbs.is_empty(),
            "an entry needs ndb nodes"
        );
        assert!(
            !config.membership.syncs.is_empty(),
            "an entry needs sync nodes"
        );
        assert!(
            config.segment_bytes_max <= FRAME_CONTENT_BYTES_MAX,
            "segment_bytes_max must leave a KEEP within the frame limit"
        );
        assert!(
            config.segments_in_flight_max <= UNDECIDED_SEGMENTS_MAX,
            "one UNDECIDED must name every segment in flight"
        );
        let rng = SeededRng::new(config.seed);
        Entry {
            config,
            rng,
            open: None,
            sealed: VecDeque::new(),
            leader_hint: None,
            name_at_ms: 0,
            cache: VecDeque::new(),
            cache_after: 0,
            tail_end: 0,
            read_at_ms: now_ms,
            tail_read_retry_ms: 0,
            tail_read_since_ms: None,
            refill_retry_ms: BTreeMap::new(),
            tail_target: 0,
            refill_target: 0,
            subscribers: BTreeMap::new(),
            out: Ready::default(),
        }
    }

    /// This entry's node ID.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Accept a publish into the open segment; its ack or rejection comes as an event.
    pub fn publish(
        &mut self,
        publication: Publication,
        now_ms: u64,
    ) -> Result<AdvanceId, PublishError> {
        let bytes = publication.encoded_bytes_max();
        let bytes_max = self.config.segment_bytes_max;
        if bytes > bytes_max {
            return Err(PublishError::TooLarge { bytes, bytes_max });
        }
        // Backpressure: `segments_in_flight_max` segments in flight and one filling, each
        // at most `segment_messages_max` and `segment_bytes_max` (ndb refuses larger KEEPs,
        // and a frame could not carry them); beyond, the client waits.
        if !self.open_fits(bytes) {
            // Cut the open segment here if a slot is free; it is full for this one.
            self.seal(now_ms);
            if !self.open_fits(bytes) {
                return Err(PublishError::Busy);
            }
        }
        let open = match &mut self.open {
            Some(open) => open,
            None => {
                let mut random_bytes = [0u8; 10];
                random_bytes[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
                random_bytes[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes()[..2]);
                let id = SegmentId::new_v7(now_ms, random_bytes);
                self.open.insert(OpenSegment {
                    id,
                    opened_ms: now_ms,
                    messages: Vec::new(),
                    bytes: 0,
                })
            }
        };
        let offset = u32::try_from(open.messages.len()).map_err(|_| PublishError::Busy)?;
        open.messages.push(publication);
        open.bytes += bytes;
        let advance = AdvanceId {
            owner: self.config.id,
            segment: open.id,
            offset,
        };
        // A full segment goes at once; others when the caller's input drains (it calls
        // `handle_timeout`, due at once with `segment_window_ms` 0) or the window ends.
        if !self.open_fits(0) {
            self.seal(now_ms);
        }
        Ok(advance)
    }

    /// Deliver the permanent log to `subscriber` from the first record after `after`
    /// (0: from the start). Resuming with the last ID seen gives no gap and no duplicate.
    /// From before the records cached here, the subscriber is first served from ndb.
    pub fn subscribe(&mut self, subscriber: u64, after: PermanentId) {
        self.subscribers.insert(subscriber, after.0);
        if after.0 > self.tail_end {
            // Nobody needs what the tail has not read up to there (every cached record
            // went to the live subscribers; one that lags reads from ndb): the tail goes
            // on from `after`, not through the whole log first (an entry that starts from
            // its snapshot would otherwise wait for that).
            self.cache.clear();
            self.cache_after = after.0;
            self.tail_end = after.0;
            // The READ in flight asked from the old end: the next poll reads from here.
            self.tail_read_retry_ms = 0;
            self.tail_read_since_ms = None;
        } else if after.0 < self.cache_after {
            self.send_refill_read(after.0, self.read_at_ms);
        }
        self.deliver();
    }

    /// Stop delivering to `subscriber`.
    pub fn unsubscribe(&mut self, subscriber: u64) {
        self.subscribers.remove(&subscriber);
    }

    /// One message from `from`. Messages that make no sense here are ignored.
    pub fn handle_message(&mut self, from: NodeId, message: Message, now_ms: u64) {
        match message {
            Message::Stored {
                segment,
                count,
                digest,
            } => self.on_stored(from, segment, count, digest, now_ms),
            Message::Resolved { resolutions } => {
                if self.config.membership.syncs.contains(&from) {
                    self.leader_hint = Some(from);
                }
                for resolution in resolutions {
                    self.on_resolution(&resolution);
                }
            }
            Message::Log { after, records } => self.on_log(from, after, records, now_ms),
            _ => {}
        }
    }

    /// Timers: seal the open segment, retry silent peers, name the undecided segments,
    /// poll the permanent log.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.maybe_seal(now_ms);
        self.retry(now_ms);
        self.name_undecided(now_ms);
        if now_ms >= self.read_at_ms {
            self.read_log(now_ms);
        }
    }

    /// When to call `handle_timeout` next. With `segment_window_ms` 0 an open segment
    /// makes it due at once: the caller seals it when its input has drained.
    pub fn poll_timeout(&self) -> u64 {
        let mut deadline = self.read_at_ms;
        for sealed in &self.sealed {
            deadline = deadline.min(sealed.retry_at_ms);
        }
        if let Some(oldest) = self.sealed.front() {
            let name_at_ms = oldest.sealed_ms + self.config.retry_ms;
            deadline = deadline.min(name_at_ms.max(self.name_at_ms));
        }
        if let Some(open) = &self.open {
            if self.sealed.len() < self.config.segments_in_flight_max {
                deadline = deadline.min(open.opened_ms + self.config.segment_window_ms);
            }
        }
        deadline
    }

    /// The batch of outputs accumulated since the last call.
    pub fn ready(&mut self) -> Ready<(), EntryEvent> {
        std::mem::take(&mut self.out)
    }

    /// The permanent log records held in memory (for checks): every record with an ID
    /// above the first value, up to the newest this entry has read, oldest first.
    pub fn log_cache(&self) -> (PermanentId, impl Iterator<Item = &LogRecord> + '_) {
        (PermanentId(self.cache_after), self.cache.iter())
    }

    /// Whether a segment waits for ndb or sync.
    pub fn has_segment_in_flight(&self) -> bool {
        !self.sealed.is_empty() || self.open.is_some()
    }

    /// Segments sealed and not yet decided.
    pub fn segments_in_flight(&self) -> usize {
        self.sealed.len()
    }

    /// Whether the open segment (or a new one) can take a publication of `bytes`.
    fn open_fits(&self, bytes: usize) -> bool {
        self.open.as_ref().is_none_or(|open| {
            open.messages.len() < self.config.segment_messages_max
                && open.bytes + bytes <= self.config.segment_bytes_max
        })
    }

    fn maybe_seal(&mut self, now_ms: u64) {
        let Some(open) = &self.open else { return };
        let full = open.messages.len() >= self.config.segment_messages_max
            || open.bytes >= self.config.segment_bytes_max;
        if !full && now_ms < open.opened_ms + self.config.segment_window_ms {
            return;
        }
        self.seal(now_ms);
    }

    /// Seal the open segment and send it to ndb, unless `segments_in_flight_max` are in
    /// flight already.
    fn seal(&mut self, now_ms: u64) {
        if self.sealed.len() >= self.config.segments_in_flight_max {
            return;
        }
        let Some(open) = self.open.take() else { return };
        let digest = segment_digest(&open.messages);
        for ndb in &self.config.membership.ndbs {
            let keep = Message::Keep {
                segment: open.id,
                owner: self.config.id,
                digest,
                messages: open.messages.clone(),
            };
            self.out.messages.push((*ndb, keep));
        }
        let syncs = &self.config.membership.syncs;
        let sync_target = match self.leader_hint {
            Some(hint) => syncs.iter().position(|s| *s == hint).unwrap_or(0),
            None => (self.rng.next_u64() % syncs.len() as u64) as usize,
        };
        let after = self.sealed.back().map(|previous| previous.id);
        self.sealed.push_back(SealedSegment {
            id: open.id,
            after,
            messages: open.messages,
            digest,
            sealed_ms: now_ms,
            stored_by: BTreeSet::new(),
            expect_resolved: false,
            acked_early: false,
            retry_at_ms: now_ms + self.config.retry_ms,
            sync_target,
        });
    }

    fn on_stored(
        &mut self,
        from: NodeId,
        segment: SegmentId,
        count: u32,
        digest: u64,
        now_ms: u64,
    ) {
        let quorum = match self.config.mutation {
            Mutation::StoredQuorumOfOne => 1,
            _ => self.config.membership.ndb_quorum(),
        };
        let is_ndb = self.config.membership.ndbs.contains(&from);
        let Some(position) = self.position(segment) else {
            return;
        };
        let sealed = &mut self.sealed[position];
        if !is_ndb || sealed.digest != digest || sealed.messages.len() != count as usize {
            return;
        }
        sealed.stored_by.insert(from);
        if sealed.expect_resolved || sealed.stored_by.len() < quorum {
            return;
        }
        sealed.expect_resolved = true;
        sealed.retry_at_ms = now_ms + self.config.retry_ms;
        if self.config.mutation == Mutation::AckBeforeVote {
            self.ack_early(position, now_ms);
        }
        if self.config.mutation == Mutation::DeliverBeforeVote {
            self.deliver_early(position, now_ms);
        }
        self.send_segment_over(position);
    }

    /// Where segment `segment` sits in `sealed`.
    fn position(&self, segment: SegmentId) -> Option<usize> {
        self.sealed.iter().position(|sealed| sealed.id == segment)
    }

    fn send_segment_over(&mut self, position: usize) {
        let sealed = &self.sealed[position];
        let syncs = &self.config.membership.syncs;
        let target = syncs[sealed.sync_target % syncs.len()];
        let count = u32::try_from(sealed.messages.len()).unwrap_or(u32::MAX);
        let over = Message::SegmentOver {
            segment: sealed.id,
            owner: self.config.id,
            count,
            digest: sealed.digest,
            after: sealed.after,
        };
        self.out.messages.push((target, over));
    }

    fn ack_early(&mut self, position: usize, now_ms: u64) {
        let sealed = &mut self.sealed[position];
        sealed.acked_early = true;
        let base = PermanentId::floor_at_unix_ms(now_ms).0;
        for (offset, message) in sealed.messages.iter().enumerate() {
            let advance = AdvanceId {
                owner: self.config.id,
                segment: sealed.id,
                offset: offset as u32,
            };
            let id = PermanentId(base + offset as u64);
            let (publisher, sequence) = (message.publisher, message.sequence);
            self.out.events.push(EntryEvent::Acked {
                advance,
                publisher,
                sequence,
                id,
            });
        }
    }

    fn deliver_early(&mut self, position: usize, now_ms: u64) {
        let base = PermanentId::floor_at_unix_ms(now_ms).0;
        for (offset, message) in self.sealed[position].messages.iter().enumerate() {
            let record = LogRecord {
                id: PermanentId(base + offset as u64),
                publication: message.clone(),
            };
            for subscriber in self.subscribers.keys() {
                let record = record.clone();
                let subscriber = *subscriber;
                self.out
                    .events
                    .push(EntryEvent::Deliver { subscriber, record });
            }
        }
    }

    fn retry(&mut self, now_ms: u64) {
        // Bounded by `segments_in_flight_max`.
        for position in 0..self.sealed.len() {
            let sealed = &mut self.sealed[position];
            if now_ms < sealed.retry_at_ms {
                continue;
            }
            sealed.retry_at_ms = now_ms + self.config.retry_ms;
            if sealed.expect_resolved {
                sealed.sync_target += 1;
                self.send_segment_over(position);
                continue;
            }
            for ndb in &self.config.membership.ndbs {
                if !sealed.stored_by.contains(ndb) {
                    let keep = Message::Keep {
                        segment: sealed.id,
                        owner: self.config.id,
                        digest: sealed.digest,
                        messages: sealed.messages.clone(),
                    };
                    self.out.messages.push((*ndb, keep));
                }
            }
        }
    }

    fn on_resolution(&mut self, resolution: &Resolution) {
        if resolution.owner != self.config.id {
            return;
        }
        let Some(position) = self.position(resolution.segment) else {
            return;
        };
        let sealed = &self.sealed[position];
        // An abort ends the segment in either state: one decided before a quorum stored it
        // (an ndb asked for it) would otherwise wedge the entry, since ndbs never answer a
        // KEEP of an aborted segment with STORED. A permanent range only follows our
        // SEGMENT_OVER, so before it a "permanent" answer is not ours to act on.
        let aborted = resolution.outcome == Outcome::Aborted;
        if !sealed.expect_resolved && !aborted {
            return;
        }
        let Some(sealed) = self.sealed.remove(position) else {
            return;
        };
        if aborted {
            self.repoint_after(sealed.id, sealed.after);
        }
        let agreed = match resolution.outcome {
            Outcome::Permanent {
                base,
                count,
                digest,
            } => {
                (count as usize == sealed.messages.len() && digest == sealed.digest).then_some(base)
            }
            Outcome::Aborted => None,
        };
        for (offset, message) in sealed.messages.into_iter().enumerate() {
            let advance = AdvanceId {
                owner: self.config.id,
                segment: sealed.id,
                offset: offset as u32,
            };
            let (publisher, sequence) = (message.publisher, message.sequence);
            let event = match agreed {
                Some(_) if sealed.acked_early => continue,
                Some(base) => EntryEvent::Acked {
                    advance,
                    publisher,
                    sequence,
                    id: PermanentId(base.0 + offset as u64),
                },
                None => EntryEvent::Rejected {
                    advance,
                    publisher,
                    sequence,
                },
            };
            self.out.events.push(event);
        }
    }

    /// Segment `aborted` will never get a range, so sync does not let it stand for the
    /// segments before it (they may still be open): the one sealed after it follows the
    /// one it followed instead, and tells sync at once if it waits for its vote already.
    fn repoint_after(&mut self, aborted: SegmentId, before: Option<SegmentId>) {
        let before = before.filter(|segment| self.position(*segment).is_some());
        let Some(position) = self
            .sealed
            .iter()
            .position(|sealed| sealed.after == Some(aborted))
        else {
            return;
        };
        self.sealed[position].after = before;
        if self.sealed[position].expect_resolved {
            self.send_segment_over(position);
        }
    }

    /// The poll: the tail reads on from its end, and each lagging subscriber position
    /// reads from there, unless a READ of theirs still waits for its answer (ndb holds a
    /// tail READ until records come); one unanswered for `read_wait_ms` is sent again.
    fn read_log(&mut self, now_ms: u64) {
        self.read_at_ms = now_ms + self.config.tail_poll_ms;
        if now_ms >= self.tail_read_retry_ms {
            let silent_since = *self.tail_read_since_ms.get_or_insert(now_ms);
            if now_ms >= silent_since + self.config.read_wait_ms {
                // That ndb has not answered for long: try the next one.
                let ndbs = self.config.membership.ndbs.len();
                self.tail_target = (self.tail_target + 1) % ndbs;
                self.tail_read_since_ms = Some(now_ms);
            }
            self.send_tail_read(now_ms);
        }
        let cache_after = self.cache_after;
        let lagging: BTreeSet<u64> = self
            .subscribers
            .values()
            .copied()
            .filter(|cursor| *cursor < cache_after)
            .collect();
        self.refill_retry_ms
            .retain(|cursor, _| lagging.contains(cursor));
        // One READ per distinct position: bounded by the number of subscribers.
        for cursor in lagging {
            if self
                .refill_retry_ms
                .get(&cursor)
                .is_none_or(|retry_ms| now_ms >= *retry_ms)
            {
                self.send_refill_read(cursor, now_ms);
            }
        }
    }

    /// A tail READ to the ndb that answered the last one (the next one after a silence).
    fn send_tail_read(&mut self, now_ms: u64) {
        let ndbs = &self.config.membership.ndbs;
        let after = self.tail_end;
        self.tail_read_retry_ms = now_ms + self.config.retry_ms;
        self.out
            .messages
            .push((ndbs[self.tail_target], Message::Read { after }));
    }

    fn send_refill_read(&mut self, after: u64, now_ms: u64) {
        let ndbs = &self.config.membership.ndbs;
        self.refill_target = (self.refill_target + 1) % ndbs.len();
        self.refill_retry_ms
            .insert(after, now_ms + self.config.retry_ms);
        self.out
            .messages
            .push((ndbs[self.refill_target], Message::Read { after }));
    }

    fn on_log(&mut self, from: NodeId, after: u64, mut records: Vec<LogRecord>, now_ms: u64) {
        if after == self.tail_end {
            // The tail's READ was answered (maybe empty, after the long poll): the next
            // poll may read again, from the same ndb.
            self.tail_read_retry_ms = 0;
            self.tail_read_since_ms = None;
            if let Some(position) = self.config.membership.ndbs.iter().position(|n| *n == from) {
                self.tail_target = position;
            }
        }
        self.refill_retry_ms.remove(&after);
        // Keep the run of valid, increasing IDs above `after`; an ndb answers no other.
        let mut previous = after;
        let valid = records
            .iter()
            .take_while(|record| {
                let fits = record.id.0 > previous && record.id.is_valid();
                previous = record.id.0;
                fits
            })
            .count();
        records.truncate(valid);
        let Some(last) = records.last().map(|record| record.id.0) else {
            return;
        };
        if after == self.tail_end {
            self.append_to_cache(records);
            // More may be waiting, or will come: read on at once (ndb holds the READ
            // until there is something to answer).
            self.send_tail_read(now_ms);
        } else if after < self.cache_after && self.subscribers.values().any(|c| *c == after) {
            self.refill(after, &records);
            if last < self.cache_after {
                self.send_refill_read(last, now_ms);
            }
        }
    }

    /// The tail read on: cache, deliver to the live subscribers, then trim the cache to its
    /// cap, oldest first (every live subscriber has had what is trimmed).
    fn append_to_cache(&mut self, records: Vec<LogRecord>) {
        for record in records {
            self.tail_end = record.id.0;
            self.cache.push_back(record);
        }
        self.deliver();
        while self.cache.len() > self.config.log_cache_records_max {
            let Some(oldest) = self.cache.pop_front() else {
                break;
            };
            self.cache_after = oldest.id.0;
        }
    }

    /// Records read from `after` for the subscribers lagging there.
    fn refill(&mut self, after: u64, records: &[LogRecord]) {
        for (subscriber, cursor) in &mut self.subscribers {
            if *cursor != after {
                continue;
            }
            for record in records {
                let event = EntryEvent::Deliver {
                    subscriber: *subscriber,
                    record: record.clone(),
                };
                self.out.events.push(event);
                *cursor = record.id.0;
            }
        }
        // Those that reached the cache go on from it.
        self.deliver();
    }

    /// Hand every live subscriber the cached records after its cursor.
    fn deliver(&mut self) {
        for (subscriber, cursor) in &mut self.subscribers {
            if *cursor < self.cache_after {
                continue;
            }
            let start = self.cache.partition_point(|record| record.id.0 <= *cursor);
            for record in self.cache.range(start..) {
                let event = EntryEvent::Deliver {
                    subscriber: *subscriber,
                    record: record.clone(),
                };
                self.out.events.push(event);
            }
            *cursor = (*cursor).max(self.tail_end);
        }
    }
}

mod aborts;
#[cfg(test)]
mod tests;
