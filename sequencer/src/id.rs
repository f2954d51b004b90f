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
/// A segment's base is `max(previous_end + 1, floor)` where the floor is
/// [`PermanentId::floor_at_unix_ms`]: `epoch_ms << 12`, `epoch_ms` counting milliseconds
/// since [`PermanentId::EPOCH_UNIX_MS`] (2020-01-01T00:00:00Z). IDs thus also read as time
/// until 2^41 ms after the epoch (September 2089); past that the floor saturates and IDs
/// stay unique and increasing but stop reading as time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PermanentId(pub u64);

impl PermanentId {
    /// The largest permanent ID, 2^53 (the largest WAMP ID). The one definition: engines,
    /// the sync tier and the router all use this constant.
    pub const MAX: PermanentId = PermanentId(1 << 53);
    /// Bits of sub-millisecond sequence under the time floor.
    pub const TIME_SHIFT_BITS: u32 = 12;
    /// The ID epoch, 2020-01-01T00:00:00Z, in Unix milliseconds.
    pub const EPOCH_UNIX_MS: u64 = 1_577_836_800_000;
    /// IDs kept free above the highest floor: once the clock has run past the space (after
    /// 2089), bases keep `previous_end + 1` and these 2^32 IDs are what is left to hand out.
    pub const FLOOR_HEADROOM: u64 = 1 << 32;
    /// The highest floor, `MAX - FLOOR_HEADROOM`.
    pub const FLOOR_MAX: PermanentId = PermanentId(Self::MAX.0 - Self::FLOOR_HEADROOM);

    /// The time floor for IDs handed out at `unix_ms` (milliseconds since 1970): `epoch_ms << 12`
    /// with `epoch_ms = unix_ms - EPOCH_UNIX_MS`, clamped to `[1, FLOOR_MAX]` (a clock before
    /// 2020 gives 1). Both engines compute their floor here, the local sequencer of a single
    /// node and the sync leader of a cluster; the next base is `max(previous_end + 1, floor)`.
    ///
    /// Compatibility: a store written with the older `unix_ms << 12` floor keeps working.
    /// Its IDs lie above this floor (until about 2075), so the next IDs are `previous + 1`:
    /// still unique and increasing, they only stop reading as time until the floor catches up.
    pub fn floor_at_unix_ms(unix_ms: u64) -> PermanentId {
        let epoch_ms = unix_ms.saturating_sub(Self::EPOCH_UNIX_MS);
        let floor = epoch_ms.saturating_mul(1 << Self::TIME_SHIFT_BITS);
        PermanentId(floor.clamp(1, Self::FLOOR_MAX.0))
    }

    /// The next base after `previous_end` at `unix_ms`: `max(previous_end + 1, floor)`, or
    /// `None` when `count` IDs from there would pass [`PermanentId::MAX`] (the space is
    /// exhausted; the caller refuses the batch instead of handing out invalid IDs).
    pub fn next_base(previous_end: u64, floor: PermanentId, count: u64) -> Option<PermanentId> {
        let base = previous_end.checked_add(1)?.max(floor.0);
        let end = base.checked_add(count.checked_sub(1)?)?;
        (end <= Self::MAX.0).then_some(PermanentId(base))
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

    /// When its entry cut it, in Unix ms (by that entry's clock): the UUIDv7 timestamp,
    /// its first 48 bits (read as such from any UUID).
    pub fn unix_ms(self) -> u64 {
        let bytes = self.0.as_bytes();
        let mut time = [0u8; 8];
        time[2..].copy_from_slice(&bytes[..6]);
        u64::from_be_bytes(time)
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
    #[serde(with = "byte_string")]
    pub payload: Vec<u8>,
}

/// A `Vec<u8>` as one byte string (`#[serde(with = "fox_sequencer::byte_string")]`): in
/// postcard the same bytes as a sequence of `u8` (a varint length, then the bytes), written
/// and read in one copy rather than byte by byte; in MessagePack a `bin`, not an array of
/// numbers. Reads an array of numbers too (what a plain `Vec<u8>` was written as).
pub mod byte_string {
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    /// Writes `bytes` as one byte string.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    /// Reads a byte string (or an array of numbers).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(Bytes)
    }

    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // As long as the input's sequence, which the format bounds.
            let mut bytes = Vec::new();
            while let Some(byte) = seq.next_element::<u8>()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
}

impl Publication {
    /// Most bytes the wire encoding adds to a payload: three varints (publisher, sequence,
    /// payload length) of at most 10 bytes each.
    pub const ENCODING_OVERHEAD_BYTES_MAX: usize = 30;

    /// An upper bound of its encoded size, in bytes; segments and reads are capped on it.
    pub fn encoded_bytes_max(&self) -> usize {
        self.payload
            .len()
            .saturating_add(Self::ENCODING_OVERHEAD_BYTES_MAX)
    }
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

    const YEAR_2089_UNIX_MS: u64 = 3_755_376_000_000; // 2089-01-01T00:00:00Z

    /// The payload is one byte string on the wire: the same bytes as the sequence of
    /// `u8` it was before (nodes of both binaries talk), and it reads back.
    #[test]
    fn a_publication_encodes_as_before_and_reads_back() {
        let publication = Publication {
            publisher: 1,
            sequence: 300,
            payload: vec![1, 2, 3, 0xff],
        };
        let bytes = postcard::to_allocvec(&publication).unwrap();
        assert_eq!(bytes, vec![0x01, 0xac, 0x02, 0x04, 1, 2, 3, 0xff]);
        #[derive(Serialize)]
        struct AsBefore {
            publisher: u64,
            sequence: u64,
            payload: Vec<u8>,
        }
        let before = AsBefore {
            publisher: 1,
            sequence: 300,
            payload: vec![1, 2, 3, 0xff],
        };
        assert_eq!(bytes, postcard::to_allocvec(&before).unwrap());
        let read: Publication = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(read, publication);
    }

    #[test]
    fn a_segment_id_tells_when_it_was_cut() {
        for unix_ms in [0, 1, 1_767_225_600_123, (1 << 48) - 1] {
            let segment = SegmentId::new_v7(unix_ms, [0xff; 10]);
            assert_eq!(segment.unix_ms(), unix_ms);
        }
    }

    #[test]
    fn floor_counts_from_2020() {
        let epoch = PermanentId::EPOCH_UNIX_MS;
        assert_eq!(
            PermanentId::floor_at_unix_ms(epoch).0,
            1,
            "clamped to the first ID"
        );
        assert_eq!(PermanentId::floor_at_unix_ms(epoch + 1).0, 1 << 12);
        let floor = PermanentId::floor_at_unix_ms(1_767_225_600_000); // 2026-01-01
        assert_eq!(floor.0 >> 12, 1_767_225_600_000 - epoch);
        assert!(floor.0 < 1 << 50, "small: 2026 uses a tenth of the space");
    }

    #[test]
    fn floor_before_the_epoch_clamps_to_one() {
        assert_eq!(PermanentId::floor_at_unix_ms(0).0, 1);
        assert_eq!(PermanentId::floor_at_unix_ms(1_000_000_000_000).0, 1); // 2001
    }

    #[test]
    fn floor_reads_as_time_through_2089_and_saturates_below_max() {
        let floor = PermanentId::floor_at_unix_ms(YEAR_2089_UNIX_MS);
        assert_eq!(
            floor.0 >> 12,
            YEAR_2089_UNIX_MS - PermanentId::EPOCH_UNIX_MS
        );
        assert!(floor.is_valid());
        assert!(floor < PermanentId::FLOOR_MAX);
        let saturated = PermanentId::floor_at_unix_ms(u64::MAX);
        assert_eq!(saturated, PermanentId::FLOOR_MAX);
        assert!(saturated.is_valid());
        assert_eq!(
            PermanentId::MAX.0 - saturated.0,
            PermanentId::FLOOR_HEADROOM
        );
    }

    #[test]
    fn an_old_unix_floor_store_keeps_increasing() {
        // A store written with `unix_ms << 12` (2026) is far above the new floor.
        let previous_end = 1_767_225_600_000u64 << 12;
        let floor = PermanentId::floor_at_unix_ms(1_767_225_600_001);
        let base = PermanentId::next_base(previous_end, floor, 10).map(|id| id.0);
        assert_eq!(base, Some(previous_end + 1));
    }

    #[test]
    fn next_base_refuses_to_pass_max() {
        let floor = PermanentId::FLOOR_MAX;
        assert_eq!(PermanentId::next_base(0, floor, 1), Some(floor));
        let last = PermanentId::MAX.0;
        assert_eq!(
            PermanentId::next_base(last - 2, floor, 2),
            Some(PermanentId(last - 1))
        );
        assert_eq!(PermanentId::next_base(last - 2, floor, 3), None);
        assert_eq!(PermanentId::next_base(last, floor, 1), None);
        assert_eq!(PermanentId::next_base(u64::MAX, floor, 1), None);
        assert_eq!(
            PermanentId::next_base(0, floor, 0),
            None,
            "an empty range has no base"
        );
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
