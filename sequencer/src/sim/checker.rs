//! The history checker: the invariants of DESIGN.md, asserted as events happen and at the end.

use crate::id::{segment_digest, NodeId, PermanentId, Publication, SegmentId};
use crate::message::{LogRecord, Outcome, Resolution};
use std::collections::BTreeMap;

/// A message identity: `(publisher, sequence)`.
pub type MessageKey = (u64, u64);

/// What the cluster's tiers hold durably, for the quorum checks at ack time.
pub trait DurableView {
    /// ndb nodes whose fsynced records hold `segment` with these contents (`digest`).
    fn ndbs_holding(&self, segment: SegmentId, digest: u64) -> usize;
    /// sync nodes whose fsynced Raft log has term `raft_term` at `raft_index`.
    fn syncs_holding(&self, raft_index: u64, raft_term: u64) -> usize;
}

/// Records invariant violations; a run passes when there are none.
#[derive(Default)]
pub struct Checker {
    /// Violations found, each a sentence with the time.
    pub violations: Vec<String>,
    ndb_quorum: usize,
    sync_quorum: usize,
    published: BTreeMap<(SegmentId, u32), (MessageKey, u64)>,
    /// What each message was when published (its digest): a copy damaged on the way or
    /// on a disk differs.
    content: BTreeMap<MessageKey, u64>,
    /// Each segment's digest over what was published in it, once it is resolved.
    segment_content: BTreeMap<SegmentId, u64>,
    publications: BTreeMap<(SegmentId, u32), Publication>,
    resolutions: Vec<Resolution>,
    by_segment: BTreeMap<SegmentId, usize>,
    /// The reference permanent log, from committed resolutions: `(id, key)` in order.
    reference: Vec<(u64, MessageKey)>,
    id_of_key: BTreeMap<MessageKey, u64>,
    acked: BTreeMap<MessageKey, (u64, u64)>,
    /// Acked messages per session: sequence -> permanent ID.
    acked_by_session: BTreeMap<(u64, u64), BTreeMap<u64, u64>>,
    rejected: BTreeMap<MessageKey, SegmentId>,
    /// The session each message was published in: the publisher, and the entry
    /// incarnation it was connected to (a publisher that reconnects, to the same entry
    /// after a crash or to another, starts a new session).
    session_of: BTreeMap<MessageKey, (u64, u64)>,
    /// Committed messages per session: sequence -> permanent ID (invariant 4 over every
    /// committed message, acked or not: an ack lost with its entry hides nothing).
    committed_by_session: BTreeMap<(u64, u64), BTreeMap<u64, u64>>,
    /// Acks in time order: `(ack time, largest ID acked up to then)` (invariant 3).
    ack_timeline: Vec<(u64, u64)>,
    /// The last resolution each ndb applied (invariant 2: in index order, none skipped).
    ndb_applied: BTreeMap<NodeId, u64>,
}

const VIOLATIONS_MAX: usize = 20;

impl Checker {
    /// A checker for quorums of this size.
    pub fn new(ndb_quorum: usize, sync_quorum: usize) -> Checker {
        Checker {
            ndb_quorum,
            sync_quorum,
            ..Checker::default()
        }
    }

    fn fail(&mut self, now_ms: u64, text: String) {
        if self.violations.len() < VIOLATIONS_MAX {
            self.violations.push(format!("t={now_ms}ms: {text}"));
        }
    }

    /// An entry accepted a publish at `now_ms`, in `session` (the entry's incarnation:
    /// a publisher's session ends when its entry dies).
    pub fn on_publish(
        &mut self,
        segment: SegmentId,
        offset: u32,
        publication: &Publication,
        session: u64,
        now_ms: u64,
    ) {
        let key = (publication.publisher, publication.sequence);
        self.session_of.insert(key, (key.0, session));
        self.content.insert(key, digest_of(publication));
        self.publications
            .insert((segment, offset), publication.clone());
        if self
            .published
            .insert((segment, offset), (key, now_ms))
            .is_some()
        {
            self.fail(now_ms, format!("advance id {segment}/{offset} given twice"));
        }
    }

    /// A sync node applied a resolution (invariant 2: all sync nodes agree; IDs increase).
    pub fn on_resolution(&mut self, node: NodeId, resolution: &Resolution, now_ms: u64) {
        let position = resolution.index as usize;
        if position == 0 || position > self.resolutions.len() + 1 {
            return self.fail(
                now_ms,
                format!(
                    "{node} applied resolution {} out of order",
                    resolution.index
                ),
            );
        }
        if position <= self.resolutions.len() {
            if self.resolutions[position - 1] != *resolution {
                self.fail(
                    now_ms,
                    format!("{node} disagrees on resolution {}", resolution.index),
                );
            }
            return;
        }
        if self
            .by_segment
            .insert(resolution.segment, position - 1)
            .is_some()
        {
            self.fail(
                now_ms,
                format!("segment {} resolved twice", resolution.segment),
            );
        }
        self.resolutions.push(resolution.clone());
        let Outcome::Permanent {
            base,
            count,
            digest,
        } = resolution.outcome
        else {
            return;
        };
        self.check_segment_content(resolution.segment, count, digest, now_ms);
        let previous_end = self.reference.last().map_or(0, |(id, _)| *id);
        if base.0 <= previous_end || !base.is_valid() {
            self.fail(
                now_ms,
                format!("base {} not above previous end {previous_end}", base.0),
            );
        }
        for offset in 0..count {
            let id = base.0 + u64::from(offset);
            let Some((key, received_ms)) =
                self.published.get(&(resolution.segment, offset)).copied()
            else {
                self.fail(
                    now_ms,
                    format!("id {id} names unpublished {}/{offset}", resolution.segment),
                );
                continue;
            };
            if let Some(other) = self.id_of_key.insert(key, id) {
                self.fail(
                    now_ms,
                    format!("message {key:?} has two ids {other} and {id}"),
                );
            }
            self.reference.push((id, key));
            self.check_committed_order(key, id, now_ms);
            self.check_real_time_order(key, id, received_ms, now_ms);
        }
    }

    /// The vote's digest is that of what was published in the segment.
    fn check_segment_content(&mut self, segment: SegmentId, count: u32, digest: u64, now_ms: u64) {
        let published: Vec<Publication> = (0..count)
            .map_while(|offset| self.publications.get(&(segment, offset)).cloned())
            .collect();
        let actual = segment_digest(&published);
        self.segment_content.insert(segment, actual);
        if actual != digest {
            self.fail(
                now_ms,
                format!("segment {segment} voted with digest {digest:x}, published {actual:x}"),
            );
        }
    }

    /// Whether `record` is message `key` with ID `id`, as it was published.
    fn same_record(&self, record: &LogRecord, id: u64, key: MessageKey) -> bool {
        let publication = &record.publication;
        record.id.0 == id
            && (publication.publisher, publication.sequence) == key
            && self.content.get(&key) == Some(&digest_of(publication))
    }

    /// Invariant 4 over committed messages: within one session, IDs follow publish order.
    fn check_committed_order(&mut self, key: MessageKey, id: u64, now_ms: u64) {
        let Some(session) = self.session_of.get(&key).copied() else {
            return;
        };
        let committed = self.committed_by_session.entry(session).or_default();
        let sequence = key.1;
        let before = committed.range(..sequence).next_back().map(|(_, id)| *id);
        let after = committed.range(sequence + 1..).next().map(|(_, id)| *id);
        committed.insert(sequence, id);
        if before.is_some_and(|earlier| earlier >= id) || after.is_some_and(|later| later <= id) {
            self.fail(
                now_ms,
                format!(
                    "publisher {}: committed message {sequence} out of publish order",
                    key.0
                ),
            );
        }
    }

    /// Invariant 3, as each message commits: every ack given before it was received named
    /// a smaller ID. Exact at this point: a message commits after it was received, so
    /// every ack before its receipt is already known.
    fn check_real_time_order(&mut self, key: MessageKey, id: u64, received_ms: u64, now_ms: u64) {
        let position = self
            .ack_timeline
            .partition_point(|(at_ms, _)| *at_ms < received_ms);
        let Some((at_ms, largest)) = position.checked_sub(1).map(|p| self.ack_timeline[p]) else {
            return;
        };
        if largest >= id {
            self.fail(
                now_ms,
                format!("real-time order: {key:?} received at {received_ms} got {id}, not above {largest} acked by {at_ms}"),
            );
        }
    }

    fn reference_key(&self, id: u64) -> Option<MessageKey> {
        let position = self.reference.partition_point(|(known, _)| *known < id);
        self.reference
            .get(position)
            .filter(|(known, _)| *known == id)
            .map(|(_, key)| *key)
    }

    /// An entry acked a publish (invariants 1, 2, 4, 5).
    pub fn on_ack(
        &mut self,
        view: &dyn DurableView,
        segment: SegmentId,
        offset: u32,
        key: MessageKey,
        id: u64,
        now_ms: u64,
    ) {
        // Every ack counts for real-time order, even one that breaks another invariant.
        let largest = self
            .ack_timeline
            .last()
            .map_or(id, |(_, largest)| id.max(*largest));
        self.ack_timeline.push((now_ms, largest));
        if self.published.get(&(segment, offset)).map(|(k, _)| *k) != Some(key) {
            self.fail(
                now_ms,
                format!("ack for {key:?} names the wrong advance id"),
            );
        }
        let Some(position) = self.by_segment.get(&segment).copied() else {
            return self.fail(
                now_ms,
                format!("ack of {key:?} as {id} before its segment was voted"),
            );
        };
        let resolution = self.resolutions[position].clone();
        if self.reference_key(id) != Some(key) {
            self.fail(
                now_ms,
                format!("ack of {key:?} as {id}, but the vote gave it another id"),
            );
        }
        let digest = self.segment_content.get(&segment).copied().unwrap_or(0);
        let ndbs = view.ndbs_holding(segment, digest);
        if ndbs < self.ndb_quorum {
            self.fail(
                now_ms,
                format!("ack of {key:?} while only {ndbs} ndb hold it durably"),
            );
        }
        let syncs = view.syncs_holding(resolution.raft_index, resolution.raft_term);
        if syncs < self.sync_quorum {
            self.fail(
                now_ms,
                format!("ack of {key:?} while only {syncs} sync nodes hold the vote"),
            );
        }
        if self.acked.insert(key, (id, now_ms)).is_some() {
            self.fail(now_ms, format!("message {key:?} acked twice"));
        }
        self.check_publisher_order(key, id, now_ms);
    }

    /// Invariant 4: the acked messages of one session have IDs in publish order (across
    /// sessions, a message published after an ack is ordered after it: invariant 3).
    fn check_publisher_order(&mut self, key: MessageKey, id: u64, now_ms: u64) {
        let (publisher, sequence) = key;
        let session = self.session_of.get(&key).copied().unwrap_or((publisher, 0));
        let acked = self.acked_by_session.entry(session).or_default();
        let before = acked.range(..sequence).next_back().map(|(_, id)| *id);
        let after = acked.range(sequence + 1..).next().map(|(_, id)| *id);
        acked.insert(sequence, id);
        if before.is_some_and(|earlier| earlier >= id) || after.is_some_and(|later| later <= id) {
            self.fail(
                now_ms,
                format!("publisher {publisher}: message {sequence} out of publish order"),
            );
        }
    }

    /// An entry rejected a publish: its segment must have been aborted.
    pub fn on_reject(&mut self, segment: SegmentId, key: MessageKey, now_ms: u64) {
        let aborted = self
            .by_segment
            .get(&segment)
            .is_some_and(|position| self.resolutions[*position].outcome == Outcome::Aborted);
        if !aborted {
            self.fail(
                now_ms,
                format!("reject of {key:?} but its segment was not aborted"),
            );
        }
        self.rejected.insert(key, segment);
    }

    /// An ndb appended records to its permanent log (invariant 2: ndb agree with the vote).
    pub fn on_ndb_append(
        &mut self,
        node: NodeId,
        resolution: &Resolution,
        messages: &[Publication],
        now_ms: u64,
    ) {
        let applied = self.ndb_applied.insert(node, resolution.index).unwrap_or(0);
        if resolution.index != applied + 1 {
            self.fail(
                now_ms,
                format!(
                    "{node} applied resolution {} after {applied}",
                    resolution.index
                ),
            );
        }
        let Outcome::Permanent { base, .. } = resolution.outcome else {
            return;
        };
        for (offset, publication) in messages.iter().enumerate() {
            let id = base.0 + offset as u64;
            let key = (publication.publisher, publication.sequence);
            let record = LogRecord {
                id: PermanentId(id),
                publication: publication.clone(),
            };
            if self.reference_key(id) != Some(key) || !self.same_record(&record, id, key) {
                self.fail(
                    now_ms,
                    format!("{node} stores {key:?} as {id}, not what the vote decided and was published"),
                );
            }
        }
    }

    /// An ndb (re)started with resolutions up to `applied_index` applied.
    pub fn on_ndb_start(&mut self, node: NodeId, applied_index: u64) {
        self.ndb_applied.insert(node, applied_index);
    }

    /// A subscriber got a record (invariants 2 and 6: the next one after its last, no gap).
    pub fn on_delivery(
        &mut self,
        subscriber: u64,
        last_seen: u64,
        record: &LogRecord,
        now_ms: u64,
    ) {
        let key = (record.publication.publisher, record.publication.sequence);
        let position = self.reference.partition_point(|(id, _)| *id <= last_seen);
        let expected = self.reference.get(position).copied();
        let same =
            expected.is_some_and(|(id, expected_key)| self.same_record(record, id, expected_key));
        if !same {
            self.fail(now_ms, format!("subscriber {subscriber} after {last_seen} got {} {key:?}, expected {expected:?}", record.id));
        }
    }

    /// The reference log's last ID (0 if empty).
    pub fn last_id(&self) -> u64 {
        self.reference.last().map_or(0, |(id, _)| *id)
    }

    /// A random-ish ID from the reference log for resuming subscribers.
    pub fn id_at(&self, position: usize) -> PermanentId {
        if self.reference.is_empty() {
            return PermanentId(0);
        }
        PermanentId(self.reference[position % self.reference.len()].0)
    }

    /// Committed votes (distinct Raft entries) that decided at least one segment.
    pub fn votes_with_decisions(&self) -> u64 {
        let entries: std::collections::BTreeSet<(u64, u64)> = self
            .resolutions
            .iter()
            .map(|r| (r.raft_index, r.raft_term))
            .collect();
        entries.len() as u64
    }

    /// A segment's fate, in words.
    pub fn fate(&self, segment: SegmentId) -> String {
        match self.by_segment.get(&segment) {
            Some(position) => format!("{:?}", self.resolutions[*position]),
            None => "undecided".to_owned(),
        }
    }

    /// Segments aborted so far.
    pub fn aborted_count(&self) -> u64 {
        self.resolutions
            .iter()
            .filter(|r| r.outcome == Outcome::Aborted)
            .count() as u64
    }

    /// Resolutions decided so far.
    pub fn resolution_count(&self) -> u64 {
        self.resolutions.len() as u64
    }

    /// Messages acked so far.
    pub fn acked_count(&self) -> u64 {
        self.acked.len() as u64
    }

    /// Messages rejected so far.
    pub fn rejected_count(&self) -> u64 {
        self.rejected.len() as u64
    }

    /// Whether a message was acked.
    pub fn is_acked(&self, key: MessageKey) -> bool {
        self.acked.contains_key(&key)
    }

    /// Whether a message got an answer (ack or reject).
    pub fn is_answered(&self, key: MessageKey) -> bool {
        self.acked.contains_key(&key) || self.rejected.contains_key(&key)
    }

    /// End of run: a node's log equals the reference (invariants 1 and 2, and liveness).
    pub fn check_log_complete(&mut self, what: &str, log: &[LogRecord]) {
        let matches = log.len() == self.reference.len()
            && log
                .iter()
                .zip(&self.reference)
                .all(|(record, (id, key))| self.same_record(record, *id, *key));
        if !matches {
            let text = format!(
                "{what} log has {} records, reference {} (or they differ)",
                log.len(),
                self.reference.len()
            );
            self.fail(0, text);
        }
    }

    /// End of run: an entry's cached window of the log is the reference from just after
    /// `after` (0 or an ID of the log) to its end.
    pub fn check_log_window<'a>(
        &mut self,
        what: &str,
        after: PermanentId,
        records: impl Iterator<Item = &'a LogRecord>,
    ) {
        let start = self.reference.partition_point(|(id, _)| *id <= after.0);
        let starts_on_a_record = after.0 == 0 || self.reference_key(after.0).is_some();
        let mut expected = self.reference[start..].iter();
        let same = records
            .zip(expected.by_ref())
            .all(|(record, (id, key))| self.same_record(record, *id, *key));
        if !starts_on_a_record || !same || expected.next().is_some() {
            let text = format!(
                "{what} log cache after {} differs from the reference ({} records)",
                after.0,
                self.reference.len()
            );
            self.fail(0, text);
        }
    }

    /// End of run: every acked message is in the reference log with its acked ID.
    pub fn check_acked_are_committed(&mut self) {
        let mut found = Vec::new();
        for (key, (id, _)) in &self.acked {
            if self.id_of_key.get(key) != Some(id) {
                found.push(format!("acked {key:?} as {id} is not in the permanent log"));
            }
        }
        for text in found.into_iter().take(3) {
            self.fail(0, text);
        }
    }

    /// Record a liveness failure found by the driver.
    pub fn liveness_failure(&mut self, text: String) {
        self.fail(0, format!("liveness: {text}"));
    }
}

/// One publication's digest (what the checker compares copies by).
fn digest_of(publication: &Publication) -> u64 {
    segment_digest(std::slice::from_ref(publication))
}
