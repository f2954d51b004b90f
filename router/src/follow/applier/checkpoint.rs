//! Checkpoints: a digest of the applier's derived state at points of the log, the same on
//! every entry that applied the same records.

use std::collections::VecDeque;

use super::{log_time_ms, Applier};

/// An entry that keeps checkpoints ([`Applier::with_checkpoints`]) takes one at the first
/// record of every period this long of log time.
pub const CHECKPOINT_MS: u64 = 5_000;

/// Checkpoints kept (the newest).
pub const CHECKPOINTS_KEPT: usize = 12;

/// The digest of the derived state after one record: every entry that applied the log
/// through `at` has the same `digest` there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    /// The record.
    pub at: u64,
    /// [`Applier::digest`] after it.
    pub digest: u64,
}

impl Applier {
    /// Takes a [`Checkpoint`] at the first record of every [`CHECKPOINT_MS`] of log time
    /// after record `after` (the start of what it applies: 0, or a snapshot's record).
    pub fn with_checkpoints(mut self, after: u64) -> Self {
        self.checkpoints = Some(VecDeque::new());
        self.period = log_time_ms(after) / CHECKPOINT_MS;
        self
    }

    /// The newest checkpoints, oldest first.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        self.checkpoints
            .as_ref()
            .map_or_else(Vec::new, |c| c.iter().copied().collect())
    }

    /// The newest checkpoint.
    pub fn last_checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoints.as_ref()?.back().copied()
    }

    pub(super) fn checkpoint(&mut self, id: u64) {
        let period = log_time_ms(id) / CHECKPOINT_MS;
        if self.checkpoints.is_none() || period == self.period {
            return;
        }
        self.period = period;
        let digest = self.digest();
        if let Some(kept) = &mut self.checkpoints {
            if kept.len() >= CHECKPOINTS_KEPT {
                kept.pop_front();
            }
            kept.push_back(Checkpoint { at: id, digest });
        }
    }

    /// A digest of the state derived from the log (parked writes, wills, testaments,
    /// entries' lives and leases, the coordinator, MQTT sessions), leaving out what is this
    /// entry's own (its identity, its requests, its claims): every entry that applied the
    /// same records has the same digest, whatever its clock did meanwhile.
    pub fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.digest_lines().hash(&mut hasher);
        hasher.finish()
    }

    /// What [`Applier::digest`] hashes: one line per item of derived state, sorted.
    pub fn digest_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (name, kv) in &self.realms {
            let parked = kv
                .parked
                .iter()
                .filter(|(_, queue)| !queue.is_empty())
                .map(|(topic, queue)| format!("{name} parked {topic:?} {queue:?}"));
            let wills = kv
                .wills
                .iter()
                .map(|(topic, will)| format!("{name} will {topic:?} {will:?}"));
            let testaments = kv
                .testaments
                .iter()
                .map(|(key, t)| format!("{name} testament {key:?} {t:?}"));
            lines.extend(parked.chain(wills).chain(testaments));
        }
        lines.extend(self.started.iter().map(|e| format!("started {e:?}")));
        lines.extend(self.leases.iter().map(|e| format!("lease {e:?}")));
        lines.extend(self.expired.iter().map(|e| format!("expired {e:?}")));
        // Only while rule 2 holds (no live entry runs a binary without it), so that entries
        // of both binaries have the same digest while they share the log.
        if self.stalls_excluded() {
            lines.push(format!("stalled {}", self.clock.stalled_ms));
            lines.extend(self.marks.iter().map(|e| format!("mark {e:?}")));
        }
        lines.push(format!("coordinator {:?}", self.coordinator));
        self.sessions.digest_lines(&mut lines);
        lines.sort();
        lines
    }
}
