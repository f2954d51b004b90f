//! Carrying out ready batches: the simulated disks, the network, and client events.

use super::{EntryEvent, Message, NdbWrite, NodeId, SyncWrite};
use super::{Outcome, Phase, Sim, SlotsView};
use crate::id::segment_digest;
use crate::wire;

impl Sim {
    pub(super) fn send(&mut self, now_ms: u64, from: NodeId, to: NodeId, message: Message) {
        let message = if self.config.wire_roundtrip {
            self.roundtrip(message)
        } else {
            message
        };
        self.network.send(&mut self.rng, now_ms, from, to, message);
    }

    pub(super) fn roundtrip(&mut self, message: Message) -> Message {
        let limit = crate::config::wire_limits::FRAME_SIZE_MAX_BYTES;
        let decoded =
            wire::encode_frame(&message, limit).and_then(|frame| wire::decode_frame(&frame, limit));
        match decoded {
            Ok(Some((decoded, _))) if decoded == message => decoded,
            _ => {
                self.checker.liveness_failure(format!(
                    "wire round trip changed a {} message",
                    message.kind()
                ));
                message
            }
        }
    }

    pub(super) fn persist_ndb(
        &mut self,
        index: usize,
        writes: Vec<NdbWrite>,
        fsync: bool,
        now_ms: u64,
    ) {
        let node = self.slots[index].id;
        for write in &writes {
            if let NdbWrite::Applied {
                resolution,
                messages,
            } = write
            {
                self.checker
                    .on_ndb_append(node, resolution, messages, now_ms);
            }
        }
        let disk = &mut self.slots[index].disk;
        disk.ndb_pending.extend(writes);
        if !fsync {
            return;
        }
        for write in disk.ndb_pending.drain(..) {
            match &write {
                NdbWrite::Temp {
                    segment, messages, ..
                } => {
                    disk.ndb_segments
                        .insert((*segment, segment_digest(messages)));
                }
                NdbWrite::Applied {
                    resolution,
                    messages,
                } => {
                    if matches!(resolution.outcome, Outcome::Permanent { .. }) {
                        let digest = segment_digest(messages);
                        disk.ndb_segments.insert((resolution.segment, digest));
                    }
                }
            }
            disk.ndb_synced.push(write);
        }
    }

    pub(super) fn persist_sync(&mut self, index: usize, writes: Vec<SyncWrite>, fsync: bool) {
        let disk = &mut self.slots[index].disk;
        disk.sync_pending.extend(writes);
        if !fsync {
            return;
        }
        for write in std::mem::take(&mut disk.sync_pending) {
            if let SyncWrite::Entries(entries) = &write {
                if let Some(first) = entries.first() {
                    disk.sync_terms
                        .truncate(first.index.saturating_sub(1) as usize);
                    disk.sync_terms
                        .extend(entries.iter().map(|entry| entry.term));
                }
            }
            disk.sync_records.push(write);
        }
    }

    pub(super) fn on_entry_event(&mut self, index: usize, event: EntryEvent, now_ms: u64) {
        match event {
            EntryEvent::Acked {
                advance,
                publisher,
                sequence,
                id,
            } => {
                self.trace(&[1, now_ms, publisher, sequence, id.0]);
                let view = SlotsView(&self.slots);
                self.checker.on_ack(
                    &view,
                    advance.segment,
                    advance.offset,
                    (publisher, sequence),
                    id.0,
                    now_ms,
                );
                self.answered(publisher, sequence, true, now_ms);
            }
            EntryEvent::Rejected {
                advance,
                publisher,
                sequence,
            } => {
                self.trace(&[2, now_ms, publisher, sequence]);
                self.checker
                    .on_reject(advance.segment, (publisher, sequence), now_ms);
                self.answered(publisher, sequence, false, now_ms);
            }
            EntryEvent::Deliver { subscriber, record } => {
                let Some(position) = self
                    .subscribers
                    .iter()
                    .position(|s| s.id == subscriber && s.entry == index)
                else {
                    return;
                };
                let last_seen = self.subscribers[position].last_seen;
                self.checker
                    .on_delivery(subscriber, last_seen, &record, now_ms);
                self.subscribers[position].last_seen = record.id.0;
            }
        }
    }

    /// A publish got its answer. One published after the network healed must be acked:
    /// with only a minority of each tier down, refusing it is a liveness failure.
    pub(super) fn answered(&mut self, publisher: u64, sequence: u64, acked: bool, now_ms: u64) {
        let Some(found) = self.publishers.iter_mut().find(|p| p.id == publisher) else {
            return;
        };
        let Some(position) = found
            .outstanding
            .iter()
            .position(|o| o.sequence == sequence)
        else {
            return;
        };
        let outstanding = found.outstanding.remove(position);
        if !acked && outstanding.phase == Phase::Liveness {
            self.checker.liveness_failure(format!(
                "t={now_ms}ms: publisher {publisher} message {sequence}, published after the heal, was rejected"
            ));
        }
    }
}
