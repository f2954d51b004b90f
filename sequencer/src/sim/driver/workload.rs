//! The workload: publishers and subscribers on the entries.

use super::*;

/// A publisher reconnects to another entry before a publish with this chance, in parts
/// per million (and with `MOVE_FROM_DOWN_PPM` per try while its entry is down).
const PUBLISHER_MOVE_PPM: u32 = 30_000;
/// A subscriber moves to another entry, resuming with `after` = the last ID it saw, with
/// this chance per ms, in parts per million.
const SUBSCRIBER_MOVE_PPM: u32 = 3_000;
/// A client of a dead entry reconnects to another one with this chance per try.
const MOVE_FROM_DOWN_PPM: u32 = 100_000;

impl Sim {
    pub(super) fn workload(&mut self, now_ms: u64) {
        let spacing_ms =
            (2 * self.config.safety_ms / self.config.messages_per_publisher.max(1)).max(2);
        let burst = (self.config.messages_per_publisher * 2 / self.config.safety_ms.max(1)).max(1);
        for position in 0..self.publishers.len() {
            let publisher = &self.publishers[position];
            if publisher.quota == 0 || now_ms < publisher.next_at_ms {
                continue;
            }
            let down = self.slots[publisher.entry].node.is_none();
            let chance = if down {
                MOVE_FROM_DOWN_PPM
            } else {
                PUBLISHER_MOVE_PPM
            };
            if self.config.entries > 1 && self.rng.chance_ppm(chance) {
                // A new session: what the old one left unanswered may commit before or
                // after what this one publishes (DESIGN invariant 4 is per session).
                let entry = self.other_entry(self.publishers[position].entry);
                self.publishers[position].entry = entry;
                self.trace(&[8, now_ms, self.publishers[position].id, entry as u64]);
            }
            let entry = self.publishers[position].entry;
            let delay_ms = self.rng.range(1, spacing_ms);
            self.publishers[position].next_at_ms = now_ms + delay_ms;
            // A big workload publishes in bursts (until the entry answers Busy).
            for _ in 0..burst {
                if self.publishers[position].quota == 0 || !self.publish(position, entry, now_ms) {
                    break;
                }
            }
        }
        for position in 0..self.subscribers.len() {
            self.maybe_move_subscriber(position, now_ms);
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

    /// Another entry than `entry`, at random, that is not gone for good (a client fails
    /// to connect there and tries another); `entry` itself if there is none.
    pub(super) fn other_entry(&mut self, entry: usize) -> usize {
        let candidates: Vec<usize> = (0..self.config.entries)
            .filter(|index| *index != entry && !self.slots[*index].keep_down)
            .collect();
        if candidates.is_empty() {
            return entry;
        }
        candidates[self.rng.range(0, candidates.len() as u64 - 1) as usize]
    }

    /// Now and then a subscriber leaves its entry (or gives up on a dead one) and
    /// subscribes at another with `after` = the last ID it saw (invariant 6 across entries).
    fn maybe_move_subscriber(&mut self, position: usize, now_ms: u64) {
        let subscriber = &self.subscribers[position];
        let entry = subscriber.entry;
        let down = self.slots[entry].node.is_none();
        let chance = match (subscriber.joined, down) {
            (_, true) => MOVE_FROM_DOWN_PPM,
            (true, false) => SUBSCRIBER_MOVE_PPM,
            (false, false) => return,
        };
        if self.config.entries < 2 || !self.rng.chance_ppm(chance) {
            return;
        }
        let id = subscriber.id;
        if let Some(Node::Entry(node)) = &mut self.slots[entry].node {
            node.unsubscribe(id);
        }
        let to = self.other_entry(entry);
        let join_at_ms = now_ms + self.rng.range(1, 30);
        let subscriber = &mut self.subscribers[position];
        subscriber.entry = to;
        subscriber.joined = false;
        subscriber.join_at_ms = join_at_ms;
        self.trace(&[9, now_ms, id, to as u64]);
    }

    /// One publish; false if the entry is down or refused it.
    pub(super) fn publish(&mut self, position: usize, entry: usize, now_ms: u64) -> bool {
        let local_ms = self.local_ms(entry, now_ms);
        let incarnation = self.slots[entry].incarnation;
        let phase = self.phase(now_ms);
        let publisher = &self.publishers[position];
        let (id, sequence) = (publisher.id, publisher.next_sequence);
        let Some(Node::Entry(node)) = &mut self.slots[entry].node else {
            return false;
        };
        let publication = Publication {
            publisher: id,
            sequence,
            payload: sequence.to_le_bytes().to_vec(),
        };
        let Ok(advance) = node.publish(publication.clone(), local_ms) else {
            return false;
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
        // One session per entry incarnation the publisher talks to.
        let session = ((entry as u64) << 32) | incarnation;
        self.checker.on_publish(
            advance.segment,
            advance.offset,
            &publication,
            session,
            now_ms,
        );
        self.trace(&[6, now_ms, id, sequence]);
        self.process(entry, now_ms);
        true
    }
}
