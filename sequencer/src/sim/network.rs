//! The simulated network: per-message delay, loss, duplication, corruption, partitions
//! (groups that cannot talk to each other) and one-way cuts (asymmetric partitions).

use crate::id::{NodeId, SeededRng};
use crate::message::Message;
use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};

/// Fault rates of one run, drawn from its seed.
#[derive(Clone, Debug)]
pub struct NetworkFaults {
    /// Smallest one-way delay, in ms.
    pub delay_ms_min: u64,
    /// Largest one-way delay, in ms (a wide range reorders).
    pub delay_ms_max: u64,
    /// Loss per message, in parts per million.
    pub loss_ppm: u32,
    /// Duplication per message, in parts per million.
    pub duplicate_ppm: u32,
    /// Corruption of a KEEP or SEGMENT_DATA, in parts per million: one payload byte of one
    /// publication flips on the way (a frame damaged past TCP's checksum). Only these two
    /// carry a digest that lets their receiver tell, so only these are damaged.
    pub corrupt_ppm: u32,
}

struct InFlight {
    deliver_at_ms: u64,
    sequence: u64,
    from: NodeId,
    to: NodeId,
    message: Message,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.deliver_at_ms, self.sequence) == (other.deliver_at_ms, other.sequence)
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deliver_at_ms, other.sequence).cmp(&(self.deliver_at_ms, self.sequence))
    }
}

/// Messages in flight between nodes.
pub struct Network {
    faults: NetworkFaults,
    queue: BinaryHeap<InFlight>,
    sequence: u64,
    /// Partition group of each node; messages cross only within a group.
    groups: Vec<u8>,
    /// One-way cuts: `(from, to)` links that drop everything (asymmetric partitions).
    cuts: BTreeSet<(NodeId, NodeId)>,
    /// Messages corrupted.
    pub corrupted: u64,
    /// Messages sent, dropped, duplicated.
    pub sent: u64,
    /// Messages lost to faults or partitions.
    pub dropped: u64,
}

impl Network {
    /// A network of `nodes` nodes, all in one group.
    pub fn new(nodes: usize, faults: NetworkFaults) -> Network {
        Network {
            faults,
            queue: BinaryHeap::new(),
            sequence: 0,
            groups: vec![0; nodes],
            cuts: BTreeSet::new(),
            corrupted: 0,
            sent: 0,
            dropped: 0,
        }
    }

    /// Replace the fault rates.
    pub fn set_faults(&mut self, faults: NetworkFaults) {
        self.faults = faults;
    }

    /// Split nodes into groups (index = node).
    pub fn partition(&mut self, groups: Vec<u8>) {
        assert_eq!(groups.len(), self.groups.len());
        self.groups = groups;
    }

    /// Cut the link from `from` to `to` in that direction only.
    pub fn cut(&mut self, from: NodeId, to: NodeId) {
        self.cuts.insert((from, to));
    }

    /// Everyone can talk again, both ways.
    pub fn heal(&mut self) {
        self.heal_groups();
        self.heal_cuts();
    }

    /// The partition into groups ends.
    pub fn heal_groups(&mut self) {
        self.groups.iter_mut().for_each(|group| *group = 0);
    }

    /// The one-way cuts end.
    pub fn heal_cuts(&mut self) {
        self.cuts.clear();
    }

    /// Whether `from` can reach `to` now.
    pub fn connected(&self, from: NodeId, to: NodeId) -> bool {
        self.groups[from.0 as usize] == self.groups[to.0 as usize]
            && !self.cuts.contains(&(from, to))
    }

    /// Send a message at `now_ms`.
    pub fn send(
        &mut self,
        rng: &mut SeededRng,
        now_ms: u64,
        from: NodeId,
        to: NodeId,
        message: Message,
    ) {
        self.sent += 1;
        if !self.connected(from, to) || rng.chance_ppm(self.faults.loss_ppm) {
            self.dropped += 1;
            return;
        }
        if rng.chance_ppm(self.faults.duplicate_ppm) {
            self.enqueue(rng, now_ms, from, to, message.clone());
        }
        let message = self.maybe_corrupt(rng, message);
        self.enqueue(rng, now_ms, from, to, message);
    }

    fn maybe_corrupt(&mut self, rng: &mut SeededRng, mut message: Message) -> Message {
        let (Message::Keep { messages, .. } | Message::SegmentData { messages, .. }) = &mut message
        else {
            return message;
        };
        if messages.is_empty() || !rng.chance_ppm(self.faults.corrupt_ppm) {
            return message;
        }
        let which = rng.range(0, messages.len() as u64 - 1) as usize;
        let payload = &mut messages[which].payload;
        if payload.is_empty() {
            payload.push(0xff);
        } else {
            let byte = rng.range(0, payload.len() as u64 - 1) as usize;
            payload[byte] ^= 1 << rng.range(0, 7);
        }
        self.corrupted += 1;
        message
    }

    fn enqueue(
        &mut self,
        rng: &mut SeededRng,
        now_ms: u64,
        from: NodeId,
        to: NodeId,
        message: Message,
    ) {
        let delay_ms = rng.range(self.faults.delay_ms_min, self.faults.delay_ms_max);
        self.sequence += 1;
        let sequence = self.sequence;
        self.queue.push(InFlight {
            deliver_at_ms: now_ms + delay_ms,
            sequence,
            from,
            to,
            message,
        });
    }

    /// The next message due at or before `now_ms`, unless a partition cut its link meanwhile.
    pub fn next_due(&mut self, now_ms: u64) -> Option<(NodeId, NodeId, Message)> {
        // Each turn pops one message; bounded by the queue length.
        while self
            .queue
            .peek()
            .is_some_and(|head| head.deliver_at_ms <= now_ms)
        {
            let head = self.queue.pop()?;
            if self.connected(head.from, head.to) {
                return Some((head.from, head.to, head.message));
            }
            self.dropped += 1;
        }
        None
    }
}
