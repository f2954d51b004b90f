//! The outbound inflight window: QoS 1 and 2 messages sent to the client and not yet
//! acknowledged, in send order, with packet-ID allocation.
//!
//! The window is small (at most `mqtt_inflight_max`, itself a `u16`), so entries live
//! in a `VecDeque` searched linearly: order is what retransmission needs.

// A sans-IO core: time, randomness and tasks come from its caller (router/clippy.toml).
#![deny(clippy::disallowed_methods)]

use std::collections::VecDeque;

use fox_mqtt_proto::Publish;

/// Where an outbound QoS 1 / 2 exchange stands.
#[allow(clippy::enum_variant_names)] // States are named for what they wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// QoS 1 PUBLISH sent; PUBACK awaited.
    AwaitPubAck,
    /// QoS 2 PUBLISH sent; PUBREC awaited.
    AwaitPubRec,
    /// PUBREL sent; PUBCOMP awaited.
    AwaitPubComp,
}

/// One message in flight.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its packet ID.
    pub packet_id: u16,
    /// The PUBLISH as first sent, with the full topic (aliases are per connection).
    pub publish: Publish,
    /// Where the exchange stands.
    pub phase: Phase,
    /// The permanent ID of the live message (0 for a retained replay): what a durable
    /// session has not yet had acknowledged (see `persist.rs`).
    pub id: u64,
}

/// The window.
#[derive(Clone, Debug, Default)]
pub struct Inflight {
    entries: VecDeque<Entry>,
    last_packet_id: u16,
}

impl Inflight {
    /// How many messages are in flight.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A free packet ID (1..=65535, after the last one given out). The caller keeps the
    /// window below 65,535 entries (it is bounded by a `u16` limit), so one is free.
    pub fn allocate(&mut self) -> u16 {
        assert!(
            self.entries.len() < usize::from(u16::MAX),
            "inflight window full"
        );
        loop {
            self.last_packet_id = self.last_packet_id.wrapping_add(1).max(1);
            let candidate = self.last_packet_id;
            if !self.entries.iter().any(|e| e.packet_id == candidate) {
                return candidate;
            }
        }
    }

    /// Adds a sent message.
    pub fn push(&mut self, entry: Entry) {
        debug_assert!(!self.entries.iter().any(|e| e.packet_id == entry.packet_id));
        self.entries.push_back(entry);
    }

    /// The entry with this packet ID, if it is in `phase`.
    pub fn get_mut(&mut self, packet_id: u16, phase: Phase) -> Option<&mut Entry> {
        self.entries
            .iter_mut()
            .find(|e| e.packet_id == packet_id && e.phase == phase)
    }

    /// Removes the entry with this packet ID if it is in `phase`; whether it was.
    pub fn complete(&mut self, packet_id: u16, phase: Phase) -> bool {
        let position = self
            .entries
            .iter()
            .position(|e| e.packet_id == packet_id && e.phase == phase);
        position.and_then(|i| self.entries.remove(i)).is_some()
    }

    /// Every entry, in send order (for retransmission).
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(packet_id: u16, phase: Phase) -> Entry {
        Entry {
            packet_id,
            publish: Publish::default(),
            phase,
            id: 0,
        }
    }

    #[test]
    fn allocation_skips_ids_in_use_and_zero() {
        let mut inflight = Inflight::default();
        let first = inflight.allocate();
        assert_eq!(first, 1);
        inflight.push(entry(first, Phase::AwaitPubAck));
        inflight.push(entry(2, Phase::AwaitPubAck));
        assert_eq!(inflight.allocate(), 3, "2 is in use");
        inflight.last_packet_id = u16::MAX;
        assert_eq!(
            inflight.allocate(),
            3,
            "wraps past 0, then 1 and 2 (in use)"
        );
    }

    #[test]
    fn completion_needs_the_right_phase() {
        let mut inflight = Inflight::default();
        inflight.push(entry(7, Phase::AwaitPubRec));
        assert!(!inflight.complete(7, Phase::AwaitPubAck));
        inflight
            .get_mut(7, Phase::AwaitPubRec)
            .expect("in flight")
            .phase = Phase::AwaitPubComp;
        assert!(inflight.complete(7, Phase::AwaitPubComp));
        assert!(inflight.is_empty());
    }
}
