//! Identifiers: nodes, publications, segments, advance and permanent IDs.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// A node of the cluster (entry, ndb or sync), unique within one cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Permanent ID: an integer in `[1, 2^53]`, a valid WAMP publication ID, strictly
/// increasing in the order the cluster commits messages.
///
/// A segment's base is `max(previous_end + 1, unix_ms << 12)`, so IDs also read as time
/// (until 2^53 >> 12 ms, in the year 2039; past that the floor saturates and IDs stay
/// monotonic but stop reading as time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PermanentId(pub u64);

impl PermanentId {
    /// The largest permanent ID, 2^53 (the largest WAMP ID).
    pub const MAX: PermanentId = PermanentId(1 << 53);
    /// Bits of sub-millisecond sequence under the time floor.
    pub const TIME_SHIFT_BITS: u32 = 12;

    /// IDs kept free above the highest floor, so that a saturated clock still leaves room.
    pub const FLOOR_HEADROOM: u64 = 1 << 32;

    /// The time floor for a base proposed at `unix_ms`: `unix_ms << 12`, capped at
    /// `MAX - FLOOR_HEADROOM`.
    pub fn floor_at(unix_ms: u64) -> PermanentId {
        let floor = unix_ms.saturating_mul(1 << Self::TIME_SHIFT_BITS);
        PermanentId(floor.clamp(1, Self::MAX.0 - Self::FLOOR_HEADROOM))
    }

    /// Whether the ID lies in `[1, 2^53]`.
    pub fn is_valid(self) -> bool {
        self.0 >= 1 && self.0 <= Self::MAX.0
    }
}

impl fmt::Display for PermanentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A segment: a run of messages cut by one entry, named by a UUIDv7 (nearly random,
/// roughly time-ordered).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SegmentId(pub Uuid);

impl SegmentId {
    /// A UUIDv7 from a unix time in ms and 10 random bytes (the caller owns the RNG).
    pub fn new_v7(unix_ms: u64, random_bytes: [u8; 10]) -> SegmentId {
        SegmentId(uuid::Builder::from_unix_timestamp_millis(unix_ms, &random_bytes).into_uuid())
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.simple().to_string();
        // The tail is the random part; the head is the timestamp shared by neighbours.
        write!(f, "seg-{}", &text[20..])
    }
}

/// Advance (temporary) ID: where a message sits before it has a permanent ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AdvanceId {
    /// The entry that cut the segment.
    pub owner: NodeId,
    /// The segment.
    pub segment: SegmentId,
    /// Position inside the segment, from 0.
    pub offset: u32,
}

/// One published message as the sequencer sees it: opaque payload plus who sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// The publishing session, unique cluster-wide for the life of a session.
    pub publisher: u64,
    /// Per-publisher sequence number, increasing in publish order.
    pub sequence: u64,
    /// Topic, arguments and options, encoded by the router; opaque here.
    pub payload: Vec<u8>,
}

/// FNV-1a 64 over the messages of a segment: carried in SEGMENT_OVER and checked by ndb
/// before it moves a segment to the permanent log. Not cryptographic; it catches
/// divergent replicas, not an attacker (the link is authenticated by the handshake).
pub fn segment_digest(messages: &[Publication]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for message in messages {
        eat(&message.publisher.to_le_bytes());
        eat(&message.sequence.to_le_bytes());
        eat(&(message.payload.len() as u64).to_le_bytes());
        eat(&message.payload);
    }
    hash
}

/// SplitMix64: the small seeded PRNG used by the state machines (segment IDs, timer
/// jitter) and the simulator. Never seeded from the OS inside the crate.
#[derive(Clone, Debug)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SeededRng {
        SeededRng {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high]` (inclusive); `low` when the range is empty.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.next_u64() % (high - low + 1)
    }

    /// True with probability `parts_per_million / 1e6`.
    pub fn chance_ppm(&mut self, parts_per_million: u32) -> bool {
        self.next_u64() % 1_000_000 < u64::from(parts_per_million)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_reads_as_time_and_stays_in_wamp_range() {
        let floor = PermanentId::floor_at(1_700_000_000_000);
        assert_eq!(floor.0 >> 12, 1_700_000_000_000);
        assert!(floor.is_valid());
        assert!(PermanentId::floor_at(u64::MAX).is_valid());
        assert!(PermanentId::floor_at(0).is_valid());
    }

    #[test]
    fn segment_ids_are_v7_and_time_ordered() {
        let early = SegmentId::new_v7(1_000, [0xff; 10]);
        let late = SegmentId::new_v7(2_000, [0; 10]);
        assert_eq!(early.0.get_version_num(), 7);
        assert!(early < late);
    }

    #[test]
    fn digest_depends_on_every_field() {
        let base = vec![Publication {
            publisher: 1,
            sequence: 2,
            payload: vec![3],
        }];
        let mut other = base.clone();
        other[0].sequence = 3;
        assert_ne!(segment_digest(&base), segment_digest(&other));
    }

    #[test]
    fn rng_is_reproducible() {
        let mut a = SeededRng::new(7);
        let mut b = SeededRng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_eq!(a.range(5, 5), 5);
    }
}
