//! A sync node's Raft storage: raft-rs's `MemStorage` for the log and hard state, plus
//! the latest snapshot of the state machine (which `MemStorage` cannot hold), and the
//! replay of durable records into both.
//!
//! ```text
//! durable records (write order)       replayed into
//!   Entries / HardState                 the Raft log after the latest snapshot, hard state
//!   Resolutions                         the resolution log (kept up to the snapshot's count)
//!   Snapshot { installed: false }       taken here: entries up to its index may go
//!   Snapshot { installed: true }        a leader's: it replaces the whole log
//!   CompactLog { through }              entries up to `through` deleted (after the fsync
//!                                       of the snapshot that covers them)
//! ```

use super::{SyncError, SyncWrite};
use crate::message::Resolution;
use raft::eraftpb::{ConfState, Entry as RaftEntry, HardState, Snapshot, SnapshotMetadata};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use serde::{Deserialize, Serialize};

/// What applying the Raft log through `raft_index` made of a sync node's state machine.
/// The resolutions themselves are not in it: they are durable records of their own
/// ([`SyncWrite::Resolutions`]), and a node that installs a leader's snapshot pulls the
/// ones it lacks from its peers (PULL_RESOLUTIONS). It is also the `data` of the Raft
/// snapshot a leader sends (a few dozen bytes, whatever the log's length).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSnapshot {
    /// The last Raft index applied.
    pub raft_index: u64,
    /// Its term.
    pub raft_term: u64,
    /// Raft voters (the conf state) at that index.
    pub voters: Vec<u64>,
    /// Length of the resolution log then.
    pub resolutions: u64,
    /// The end of the permanent ID range then (0: no range yet).
    pub end: u64,
}

impl SyncSnapshot {
    /// The Raft snapshot that carries it.
    pub(super) fn to_raft(&self) -> Snapshot {
        let mut metadata = SnapshotMetadata {
            index: self.raft_index,
            term: self.raft_term,
            ..SnapshotMetadata::default()
        };
        metadata.set_conf_state(ConfState::from((self.voters.clone(), vec![])));
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(metadata);
        // Encoding integers and a Vec of integers into a Vec cannot fail.
        snapshot.data = postcard::to_allocvec(self)
            .expect("snapshot encodes")
            .into();
        snapshot
    }

    /// Whether its voters are `voters` (in any order).
    pub(super) fn has_voters(&self, voters: &[u64]) -> bool {
        let mut own = self.voters.clone();
        let mut expected = voters.to_vec();
        own.sort_unstable();
        expected.sort_unstable();
        own == expected
    }

    /// The state a leader's Raft snapshot carries; `None` if its data is not ours.
    pub(super) fn from_raft(snapshot: &Snapshot) -> Option<SyncSnapshot> {
        let decoded: SyncSnapshot = postcard::from_bytes(&snapshot.data).ok()?;
        let metadata = snapshot.get_metadata();
        (decoded.raft_index == metadata.index && decoded.raft_term == metadata.term)
            .then_some(decoded)
    }
}

/// raft-rs storage of a sync node: the log in a `MemStorage`, the latest snapshot beside.
pub(crate) struct SyncStorage {
    pub(super) log: MemStorage,
    snapshot: Snapshot,
}

impl SyncStorage {
    pub(super) fn new(voters: Vec<u64>) -> SyncStorage {
        SyncStorage {
            log: MemStorage::new_with_conf_state(ConfState::from((voters, vec![]))),
            snapshot: Snapshot::default(),
        }
    }

    /// The index of the latest snapshot (0: none).
    pub(super) fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    /// A leader's snapshot replaces the whole log.
    pub(super) fn install(&mut self, snapshot: Snapshot) -> Result<(), raft::Error> {
        self.log.wl().apply_snapshot(snapshot.clone())?;
        self.snapshot = snapshot;
        Ok(())
    }

    /// Our own snapshot at an applied index: entries up to it leave memory, the ones after
    /// it stay, and so does the hard state (its commit index may be ahead).
    pub(super) fn compact(&mut self, snapshot: Snapshot) -> Result<(), raft::Error> {
        let index = snapshot.get_metadata().index;
        let last = self.log.last_index()?;
        let kept = if last > index {
            let context = GetEntriesContext::empty(false);
            self.log.entries(index + 1, last + 1, None, context)?
        } else {
            Vec::new()
        };
        let mut core = self.log.wl();
        let hard_state = core.hard_state().clone();
        core.apply_snapshot(snapshot.clone())?;
        core.append(&kept)?;
        core.set_hardstate(hard_state);
        drop(core);
        self.snapshot = snapshot;
        Ok(())
    }
}

impl Storage for SyncStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.log.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<RaftEntry>> {
        self.log.entries(low, high, max_size, context)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        self.log.term(index)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.log.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.log.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let index = self.snapshot_index();
        // raft-rs asks only once the log is compacted past a follower, so one exists.
        if index == 0 || index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

/// What the durable records of a sync node amount to.
#[derive(Default)]
pub(super) struct Replayed {
    /// The latest snapshot.
    pub snapshot: Option<SyncSnapshot>,
    /// The Raft log after it, contiguous.
    pub entries: Vec<RaftEntry>,
    pub hard_state: Option<HardState>,
    /// The resolution log from `after + 1` (at most to the snapshot's count: the rest is
    /// derived again from the entries after it; none without a snapshot).
    pub resolutions: Vec<Resolution>,
    /// Resolutions before `resolutions`, held elsewhere (`Sync::recover_with`'s `older`).
    after: u64,
}

impl Replayed {
    /// Index of the first entry of `entries` (whether or not there is one).
    fn log_start(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.raft_index) + 1
    }

    /// Replays durable records, in write order; records that do not form one log are an
    /// error, never a panic. Entries may be written before the snapshot that covers them
    /// (a log runs ahead of what is applied), so the latest snapshot is found first: the
    /// log starts after it, and if it was installed, the entries written before it are
    /// the log it replaced.
    /// The resolution log's first `after` resolutions are held elsewhere.
    pub fn from_records(records: &[SyncWrite], after: u64) -> Result<Replayed, SyncError> {
        let mut replayed = Replayed {
            after,
            ..Replayed::default()
        };
        let latest = records
            .iter()
            .rposition(|record| matches!(record, SyncWrite::Snapshot { .. }));
        let mut replaced = false;
        if let Some(SyncWrite::Snapshot {
            snapshot,
            installed,
        }) = latest.map(|position| &records[position])
        {
            replayed.snapshot = Some(snapshot.clone());
            replaced = *installed;
        }
        for (position, record) in records.iter().enumerate() {
            let replaced_here = replaced && latest.is_some_and(|latest| position < latest);
            match record {
                SyncWrite::Entries(_) if replaced_here => {}
                SyncWrite::Entries(entries) => replayed.entries(entries)?,
                SyncWrite::HardState(state) => replayed.hard_state = Some(state.clone()),
                SyncWrite::Resolutions(resolutions) => replayed.resolutions(resolutions)?,
                // Covered by the latest snapshot.
                SyncWrite::Snapshot { .. } | SyncWrite::CompactLog { .. } => {}
            }
        }
        let kept = replayed.snapshot.as_ref().map_or(0, |s| s.resolutions);
        let kept_here = kept.saturating_sub(replayed.after);
        replayed.resolutions.truncate(kept_here as usize);
        let log_start = replayed.log_start();
        let last_index = log_start + replayed.entries.len() as u64 - 1;
        if let Some(state) = &mut replayed.hard_state {
            // A snapshot's entries were all committed; a commit index lost in a crash is
            // learned again from the leader.
            state.commit = state.commit.max(log_start - 1);
            if state.commit > last_index {
                let commit = state.commit;
                return Err(SyncError::CommitBeyondLog { commit, last_index });
            }
        }
        Ok(replayed)
    }

    fn entries(&mut self, entries: &[RaftEntry]) -> Result<(), SyncError> {
        let start = self.log_start();
        let next = start + self.entries.len() as u64;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let first_index = first.index;
        for (offset, entry) in entries.iter().enumerate() {
            if entry.index != first_index + offset as u64 {
                let (index, last_index) = (entry.index, next - 1);
                return Err(SyncError::LogNotContiguous { index, last_index });
            }
        }
        if first_index == 0 || first_index > next {
            let last_index = next - 1;
            return Err(SyncError::LogNotContiguous {
                index: first_index,
                last_index,
            });
        }
        // Entries at or below the snapshot are covered by it.
        let skip = start.saturating_sub(first_index) as usize;
        let Some(kept) = entries.get(skip..).filter(|kept| !kept.is_empty()) else {
            return Ok(());
        };
        self.entries.truncate((kept[0].index - start) as usize);
        self.entries.extend_from_slice(kept);
        Ok(())
    }

    fn resolutions(&mut self, resolutions: &[Resolution]) -> Result<(), SyncError> {
        let Some(first) = resolutions.first() else {
            return Ok(());
        };
        let held = self.after + self.resolutions.len() as u64;
        for (offset, resolution) in resolutions.iter().enumerate() {
            if resolution.index != first.index + offset as u64 || first.index <= self.after {
                let index = resolution.index;
                return Err(SyncError::ResolutionsNotContiguous { index, held });
            }
        }
        if first.index > held + 1 {
            let index = first.index;
            return Err(SyncError::ResolutionsNotContiguous { index, held });
        }
        self.resolutions
            .truncate((first.index - 1 - self.after) as usize);
        self.resolutions.extend_from_slice(resolutions);
        Ok(())
    }
}
