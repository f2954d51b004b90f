//! The workload: publishers and subscribers on the entries.

use super::*;

impl Sim {
    pub(super) fn workload(&mut self, now_ms: u64) {
        let spacing_ms =
            (2 * self.config.safety_ms / self.config.messages_per_publisher.max(1)).max(2);
        for position in 0..self.publishers.len() {
            let publisher = &self.publishers[position];
            if publisher.quota == 0 || now_ms < publisher.next_at_ms {
                continue;
            }
            let entry = publisher.entry;
            let delay_ms = self.rng.range(1, spacing_ms);
            self.publishers[position].next_at_ms = now_ms + delay_ms;
            self.publish(position, entry, now_ms);
        }
        for position in 0..self.subscribers.len() {
            let subscriber = &self.subscribers[position];
            let entry = subscriber.entry;
            if subscriber.joined
                || now_ms < subscriber.join_at_ms
                || self.slots[entry].node.is_none()
            {
                continue;
            }
            // A late joiner starts from some ID already in the log; a rejoiner resumes.
            let after = if subscriber.id >= 2000 && subscriber.last_seen == 0 {
                let pick = self.rng.range(0, 1 << 16) as usize;
                self.checker.id_at(pick)
            } else {
                PermanentId(subscriber.last_seen)
            };
            self.subscribers[position].joined = true;
            self.subscribers[position].last_seen = after.0;
            let id = self.subscribers[position].id;
            if let Some(Node::Entry(node)) = &mut self.slots[entry].node {
                node.subscribe(id, after);
            }
            self.process(entry, now_ms);
        }
    }

    pub(super) fn publish(&mut self, position: usize, entry: usize, now_ms: u64) {
        let local_ms = now_ms + self.slots[entry].skew_ms;
        let incarnation = self.slots[entry].incarnation;
        let phase = self.phase(now_ms);
        let publisher = &self.publishers[position];
        let (id, sequence) = (publisher.id, publisher.next_sequence);
        let Some(Node::Entry(node)) = &mut self.slots[entry].node else {
            return;
        };
        let publication = Publication {
            publisher: id,
            sequence,
            payload: sequence.to_le_bytes().to_vec(),
        };
        let Ok(advance) = node.publish(publication.clone(), local_ms) else {
            return;
        };
        let publisher = &mut self.publishers[position];
        publisher.next_sequence += 1;
        publisher.quota -= 1;
        publisher.outstanding.push(Outstanding {
            sequence,
            entry,
            incarnation,
            phase,
        });
        self.published += 1;
        self.checker.on_publish(
            advance.segment,
            advance.offset,
            &publication,
            incarnation,
            now_ms,
        );
        self.trace(&[6, now_ms, id, sequence]);
        self.process(entry, now_ms);
    }
}
