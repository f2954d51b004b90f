//! End of a run: liveness checks and the report.

use super::{Node, Sim, SimReport};

impl Sim {
    pub(super) fn final_checks(&mut self) {
        self.checker.check_acked_are_committed();
        let mut failures = Vec::new();
        for publisher in &self.publishers {
            for outstanding in &publisher.outstanding {
                // Publishes to an entry incarnation that died are lost to their client.
                if outstanding.incarnation == self.slots[outstanding.entry].incarnation {
                    failures.push(format!(
                        "publisher {} message {} ({:?} phase) never answered",
                        publisher.id, outstanding.sequence, outstanding.phase
                    ));
                }
            }
            // After the heal every publisher publishes its quota: an entry that answers
            // `Busy` for the whole liveness phase makes no progress either.
            if publisher.quota > 0 {
                failures.push(format!(
                    "publisher {} could not publish {} messages after the heal",
                    publisher.id, publisher.quota
                ));
            }
        }
        for slot in &self.slots {
            match &slot.node {
                Some(Node::Entry(node)) => {
                    let (after, records) = node.log_cache();
                    let what = format!("entry {}", slot.id);
                    self.checker.check_log_window(&what, after, records);
                    if node.has_segment_in_flight() {
                        failures.push(format!("entry {} still has a segment in flight", slot.id));
                    }
                }
                Some(Node::Ndb(node)) => {
                    let what = format!("ndb {}", slot.id);
                    self.checker.check_log_complete(&what, &slot.disk.ndb_log());
                    let (after, records) = node.log_cache();
                    self.checker.check_log_window(&what, after, records);
                    for segment in node.temp_segments().into_iter().take(2) {
                        let fate = self.checker.fate(segment);
                        failures.push(format!(
                            "ndb {} has segment {segment} stuck in temp (applied {}, {fate})",
                            slot.id,
                            node.applied_index()
                        ));
                    }
                }
                Some(Node::Sync(node))
                    if node.resolution_count() != self.checker.resolution_count() =>
                {
                    failures.push(format!(
                        "sync {} applied {} of {} resolutions",
                        slot.id,
                        node.resolution_count(),
                        self.checker.resolution_count()
                    ));
                }
                _ => {}
            }
        }
        let last_id = self.checker.last_id();
        for subscriber in &self.subscribers {
            if self.slots[subscriber.entry].node.is_some() && subscriber.last_seen < last_id {
                failures.push(format!(
                    "subscriber {} stopped at {} of {last_id}",
                    subscriber.id, subscriber.last_seen
                ));
            }
        }
        for text in failures.into_iter().take(5) {
            self.checker.liveness_failure(text);
        }
    }

    pub(super) fn report(self, total_ms: u64) -> SimReport {
        let votes = self.checker.votes_with_decisions();
        SimReport {
            seed: self.config.seed,
            violations: self.checker.violations.clone(),
            trace_hash: self.trace_hash,
            published: self.published,
            acked: self.checker.acked_count(),
            rejected: self.checker.rejected_count(),
            votes,
            resolutions: self.checker.resolution_count(),
            simulated_ms: total_ms,
            messages_sent: self.network.sent,
            messages_dropped: self.network.dropped,
            aborted_segments: self.checker.aborted_count(),
            crashes: self.crashes,
            partitions: self.partitions,
            entries_killed: self.entries_killed,
            lease_expiries: self.lease_expiries,
            fsync_errors: self.fsync_errors,
            clock_steps: self.clock_steps,
            ndb_wipes: self.ndb_wipes,
            messages_corrupted: self.network.corrupted,
            sync_restarts_from_snapshot: self.snapshot_counts[0],
            sync_snapshots_installed: self.snapshot_counts[1],
            sync_snapshots_taken: self.snapshot_counts[2],
            sync_fills: self.snapshot_counts[3],
            sync_disk_reads: self.sync_disk_reads,
        }
    }
}
