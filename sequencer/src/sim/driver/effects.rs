//! Carrying out ready batches: the simulated disks, the network, and client events.

use super::{EntryEvent, Message, NdbWrite, NodeId, SyncWrite};
use super::{Phase, Sim, SlotsView};
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
    ) -> bool {
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
        self.slots[index].disk.ndb_pending.extend(writes);
        if !fsync {
            return true;
        }
        if self.fsync_fails() {
            return false;
        }
        let all = self.slots[index].disk.ndb_pending.len();
        self.slots[index].disk.ndb_make_durable(all);
        true
    }

    /// Persist a sync node's writes; fsync if asked. False: the fsync failed.
    pub(super) fn persist_sync(
        &mut self,
        index: usize,
        writes: Vec<SyncWrite>,
        fsync: bool,
    ) -> bool {
        self.slots[index].disk.sync_pending.extend(writes);
        if !fsync {
            return true;
        }
        if self.fsync_fails() {
            return false;
        }
        let all = self.slots[index].disk.sync_pending.len();
        self.slots[index].disk.sync_make_durable(all);
        true
    }

    /// Whether this fsync fails (the node then stops before its batch's messages leave).
    fn fsync_fails(&mut self) -> bool {
        self.fsync_error_ppm > 0 && self.rng.chance_ppm(self.fsync_error_ppm)
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
                let (id, publication) = (record.id.0, &record.publication);
                let (publisher, sequence) = (publication.publisher, publication.sequence);
                self.trace(&[11, now_ms, subscriber, id, publisher, sequence]);
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
