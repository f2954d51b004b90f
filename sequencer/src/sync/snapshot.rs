//! Snapshots and log compaction of a sync node.
//!
//! ```text
//! every `snapshot_interval_entries` applied:  Snapshot{state as of the last applied index}
//!                                             (fsynced), then CompactLog{through} in the
//!                                             next batch; the in-memory log is compacted
//! leader, follower behind the first kept index:  raft-rs MsgSnapshot (data: SyncSnapshot,
//!                                             a few dozen bytes); lost: sent again after
//!                                             `snapshot_lost_ms`
//! follower, snapshot received:                Snapshot{installed} replaces its log; it pulls
//!                                             the resolutions it lacks from a peer sync node
//!                                             (PULL_RESOLUTIONS / RESOLVED, pages of
//!                                             `resolved_batch_max`), then applies the
//!                                             entries committed meanwhile, from its log
//! ```
//!
//! Every resolution stays: a sync node answers any PULL_RESOLUTIONS from index 1 (an ndb
//! that restarts far behind needs them) and needs every decided segment to keep "the
//! first decision for a segment wins". Only the Raft entries go.

use super::{node_id, raft_id, DecidedSegment, Sync, SyncSnapshot, SyncWrite};
use crate::id::NodeId;
use crate::message::{Message, Outcome, Resolution};
use raft::eraftpb::{MessageType, Snapshot};
use raft::{GetEntriesContext, ProgressState, SnapshotStatus, Storage};

/// After installing a leader's snapshot: the resolution log is filled from peers up to
/// the snapshot's length before any later entry is applied.
#[derive(Debug, Clone)]
pub(super) struct Filling {
    /// The resolution log's length at the snapshot.
    pub target: u64,
    /// The end of the permanent range at the snapshot.
    end: u64,
    /// The snapshot's Raft index: entries after it wait in the Raft log.
    after: u64,
    /// The last entry committed meanwhile (applied once filled).
    pub committed: u64,
    /// When to ask a peer again if no answer came.
    pull_at_ms: u64,
    /// Pulls sent (picks the next peer when one does not answer).
    pulls: u64,
    /// The peer that answered the last pull: asked again while it answers.
    source: Option<NodeId>,
    /// Leadership hand-overs asked for while filling (picks the next peer each time).
    hand_overs: u64,
}

/// Committed entries applied per step once a fill is done, at most.
const APPLY_BATCH_ENTRIES_MAX: u64 = 1024;

impl Sync {
    /// After recovery: the resolutions held durably (up to the snapshot's length), the
    /// oldest of them (`older`) as only what deciding needs.
    pub(super) fn restore(&mut self, older: &[DecidedSegment], resolutions: Vec<Resolution>) {
        let kept = self.snapshot.resolutions;
        for decided in older.iter().take_while(|decided| decided.index <= kept) {
            self.note_decided(*decided);
        }
        for resolution in resolutions {
            self.remember(resolution);
        }
        self.end = self.snapshot.end;
        self.start_fill();
    }

    /// Fill the resolution log from peers if it is shorter than the snapshot's.
    fn start_fill(&mut self) {
        let target = self.snapshot.resolutions;
        if self.held >= target {
            self.end = self.snapshot.end;
            self.filling = None;
            return;
        }
        self.filling = Some(Filling {
            target,
            end: self.snapshot.end,
            after: self.snapshot.raft_index,
            committed: self.snapshot.raft_index,
            pull_at_ms: self.now_ms,
            pulls: 0,
            source: None,
            hand_overs: 0,
        });
    }

    /// Every `snapshot_interval_entries` applied, a snapshot of the state machine at the
    /// last applied entry; its entries leave memory now and the disk after its fsync.
    pub(super) fn maybe_snapshot(&mut self) {
        let interval = self.config.snapshot_interval_entries;
        let (index, term) = self.applied;
        if interval == 0 || self.filling.is_some() || index < self.snapshot.raft_index + interval {
            return;
        }
        let voters = self
            .raft
            .store()
            .initial_state()
            .map(|state| state.conf_state.voters)
            .unwrap_or_default();
        let snapshot = SyncSnapshot {
            raft_index: index,
            raft_term: term,
            voters,
            resolutions: self.held,
            end: self.end,
        };
        if self.raft.mut_store().compact(snapshot.to_raft()).is_err() {
            // Only an index below the log's first: a snapshot covers it already.
            return;
        }
        self.out.writes.push(SyncWrite::Snapshot {
            snapshot: snapshot.clone(),
            installed: false,
        });
        self.out.fsync = true;
        self.compact_through = Some(index);
        self.snapshot = snapshot;
    }

    /// A leader's snapshot, handed by raft-rs: it replaces the log; the resolutions it
    /// covers and this node lacks are pulled from peers.
    pub(super) fn install(&mut self, raft_snapshot: Snapshot) {
        let metadata = raft_snapshot.get_metadata();
        let voters: Vec<u64> = (self.config.membership.syncs.iter())
            .map(|node| raft_id(*node))
            .collect();
        let ours = SyncSnapshot::from_raft(&raft_snapshot).filter(|s| s.has_voters(&voters));
        let snapshot = ours.unwrap_or(SyncSnapshot {
            // Not ours (a foreign or damaged peer): this node can fill to no known length,
            // so it stops applying, visibly (`filling_to`), rather than diverge.
            raft_index: metadata.index,
            raft_term: metadata.term,
            voters: metadata.get_conf_state().voters.clone(),
            resolutions: u64::MAX,
            end: 0,
        });
        // raft-rs restores only a snapshot past its commit index, so past the first index.
        if self.raft.mut_store().install(raft_snapshot).is_err() {
            return;
        }
        self.out.writes.push(SyncWrite::Snapshot {
            snapshot: snapshot.clone(),
            installed: true,
        });
        self.out.fsync = true;
        self.compact_through = None;
        self.applied = (snapshot.raft_index, snapshot.raft_term);
        // What this node applied is a prefix of the leader's (committed entries only), so
        // none goes here unless the snapshot is not ours.
        if snapshot.resolutions < self.held {
            let kept = snapshot.resolutions;
            self.by_segment.retain(|_, decided| decided.index <= kept);
            while self.resolutions.back().is_some_and(|r| r.index > kept) {
                self.resolutions.pop_back();
            }
            self.held = kept;
        }
        self.snapshot = snapshot;
        self.start_fill();
    }

    /// While leading: note a snapshot sent, to send it again if it is lost.
    pub(super) fn note_snapshot_sent(&mut self, message: &raft::eraftpb::Message) {
        if message.get_msg_type() == MessageType::MsgSnapshot {
            let lost_ms = self.now_ms + self.snapshot_lost_ms();
            self.snapshots_sent.insert(message.to, lost_ms);
        }
    }

    pub(super) fn snapshot_lost_ms(&self) -> u64 {
        4 * self.config.tick_ms * self.config.election_ticks as u64
    }

    /// A snapshot not acknowledged in time was lost (the network, or a peer too old for
    /// it): raft-rs sends it again.
    pub(super) fn report_lost_snapshots(&mut self, now_ms: u64) {
        let lost: Vec<u64> = self
            .snapshots_sent
            .iter()
            .filter(|(_, lost_ms)| now_ms >= **lost_ms)
            .map(|(to, _)| *to)
            .collect();
        for to in lost {
            self.snapshots_sent.remove(&to);
            let waiting = self
                .raft
                .raft
                .prs()
                .get(to)
                .is_some_and(|progress| progress.state == ProgressState::Snapshot);
            if self.is_leader() && waiting {
                self.raft.report_snapshot(to, SnapshotStatus::Failure);
            }
        }
    }

    /// While filling: ask a peer for the next page when it is time.
    pub(super) fn pull_missing(&mut self, now_ms: u64) {
        let Some(filling) = &mut self.filling else {
            return;
        };
        if now_ms < filling.pull_at_ms {
            return;
        }
        // No answer in time: the next pull goes to the next peer.
        filling.source = None;
        self.send_pull(now_ms);
    }

    /// A leader that is filling cannot draft (its resolution log is short), so it hands
    /// the leadership to a peer, one that was heard from recently if any; raft-rs gives
    /// up a transfer that does not finish within an election timeout, and then the next
    /// peer is asked. (Seed 62907: a filling node elected while the one peer holding
    /// every resolution followed, and nothing was decided for the rest of the run.)
    pub(super) fn hand_over_while_filling(&mut self) {
        if self.filling.is_none() || !self.is_leader() || self.raft.raft.lead_transferee.is_some() {
            return;
        }
        let own = raft_id(self.config.id);
        let peers: Vec<(u64, bool)> = (self.raft.raft.prs().iter())
            .filter(|(id, _)| **id != own)
            .map(|(id, progress)| (*id, progress.recent_active))
            .collect();
        let active: Vec<u64> = peers.iter().filter(|p| p.1).map(|p| p.0).collect();
        let candidates = if active.is_empty() {
            peers.iter().map(|p| p.0).collect()
        } else {
            active
        };
        let Some(filling) = &mut self.filling else {
            return;
        };
        if candidates.is_empty() {
            return;
        }
        let to = candidates[filling.hand_overs as usize % candidates.len()];
        filling.hand_overs += 1;
        self.raft.transfer_leader(to);
    }

    fn send_pull(&mut self, now_ms: u64) {
        let own = self.config.id;
        let leader = self.raft.raft.leader_id;
        let retry_ms = self.snapshot_lost_ms();
        let from_index = self.held + 1;
        let peers: Vec<NodeId> = (self.config.membership.syncs.iter())
            .copied()
            .filter(|node| *node != own)
            .collect();
        let Some(filling) = &mut self.filling else {
            return;
        };
        // The peer that answered last, else the leader first (it sent the snapshot), then
        // each peer in turn.
        let to = match (filling.source, filling.pulls) {
            (Some(source), _) => source,
            (None, 0) if leader != raft::INVALID_ID && leader != raft_id(own) => node_id(leader),
            (None, pulls) if !peers.is_empty() => peers[pulls as usize % peers.len()],
            _ => return,
        };
        filling.pulls += 1;
        filling.pull_at_ms = now_ms + retry_ms;
        self.out
            .messages
            .push((to, Message::PullResolutions { from_index }));
    }

    /// RESOLVED from a peer sync node: the resolutions this node lacks, in order.
    pub(super) fn on_fill(&mut self, from: NodeId, resolutions: Vec<Resolution>, now_ms: u64) {
        let Some(filling) = &self.filling else {
            return;
        };
        let (target, after) = (filling.target, filling.after);
        let held = self.held;
        for resolution in resolutions {
            let next = self.held + 1;
            if resolution.index != next || next > target || resolution.raft_index > after {
                continue;
            }
            if let Outcome::Permanent { base, count, .. } = resolution.outcome {
                self.end = self.end.max(base.0 + u64::from(count) - 1);
            }
            self.record(resolution);
        }
        if self.held == held {
            return;
        }
        self.write_resolutions();
        if self.held < target {
            if let Some(filling) = &mut self.filling {
                filling.source = Some(from);
            }
            self.send_pull(now_ms);
            return;
        }
        self.finish_fill();
    }

    /// The resolution log is whole again: apply what was committed meanwhile.
    fn finish_fill(&mut self) {
        let Some(filling) = self.filling.take() else {
            return;
        };
        self.end = filling.end;
        let mut next = filling.after + 1;
        // Bounded: each turn applies at least one entry of a finite range.
        while next <= filling.committed {
            let high = (filling.committed + 1).min(next + APPLY_BATCH_ENTRIES_MAX);
            let context = GetEntriesContext::empty(false);
            let Ok(entries) = self.raft.store().entries(next, high, None, context) else {
                // Compacted meanwhile by a newer snapshot: installing it started a new fill.
                return;
            };
            let Some(last) = entries.last() else {
                return;
            };
            next = last.index + 1;
            self.apply(entries);
            if self.filling.is_some() {
                return;
            }
        }
    }
}
