//! The trace hash: FNV-1a 64 over what the run did, in order: node starts and crashes,
//! faults, publishes, every message delivered (whole: its wire encoding), acks,
//! rejections, deliveries to subscribers, and every resolution a sync node applies.
//!
//! Equal hashes for a seed mean equal trajectories, also across builds:
//! `tests/simulation.rs` pins the hashes of a few seeds, so a change that moves the
//! trajectories (on purpose, or by letting something of the build or the process leak
//! in) shows.

use super::{Message, Sim};

/// FNV-1a 64 offset basis: the trace hash of an empty run.
pub(super) const TRACE_HASH_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds bytes into an FNV-1a 64 hash; `postcard` encodes into it without a buffer.
struct TraceSink(u64);

impl Extend<u8> for TraceSink {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
        for byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl Sim {
    /// Folds `values` (little-endian) into the trace hash.
    pub(super) fn trace(&mut self, values: &[u64]) {
        let mut sink = TraceSink(self.trace_hash);
        sink.extend(values.iter().flat_map(|value| value.to_le_bytes()));
        self.trace_hash = sink.0;
    }

    /// Folds a whole message into the trace hash: its wire encoding (a Raft message's
    /// protobuf bytes inside), not only its kind.
    pub(super) fn trace_message(&mut self, message: &Message) {
        match postcard::to_extend(message, TraceSink(self.trace_hash)) {
            Ok(sink) => self.trace_hash = sink.0,
            // Only a Raft message that protobuf refuses to encode could get here (none
            // does: proto3 has no required fields); a marker stands for it, as on every run.
            Err(_) => self.trace(&[u64::MAX]),
        }
    }
}
