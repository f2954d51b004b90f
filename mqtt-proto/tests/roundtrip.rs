//! Property tests: round trip of valid packets in every version, truncation, and
//! arbitrary or mutated bytes never panicking.

mod common;

use bytes::BytesMut;
use common::{connect, packet, protocol, PROTOCOLS};
use fox_mqtt_proto::{decode, encode, encoded_len, Packet, Protocol};
use proptest::prelude::*;

const MAX: usize = 1 << 20;

fn encode_to_vec(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, protocol, &mut buf).expect("valid packets encode");
    assert_eq!(encoded_len(packet, protocol), Ok(buf.len()));
    buf.to_vec()
}

/// Decodes every packet in `bytes` until it is used up, needs more, or fails.
fn drain(bytes: &[u8], mut protocol: Option<Protocol>) {
    let mut buf = BytesMut::from(bytes);
    // Each successful decode consumes at least two bytes.
    for _ in 0..bytes.len() {
        match decode(&mut buf, protocol, MAX) {
            Ok(Some(Packet::Connect(connect))) => protocol = Some(connect.protocol),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

fn check_round_trip(
    original: &Packet,
    protocol: Protocol,
    decode_as: Option<Protocol>,
) -> Result<(), TestCaseError> {
    let bytes = encode_to_vec(original, protocol);
    let mut buf = BytesMut::from(&bytes[..]);
    let decoded = decode(&mut buf, decode_as, MAX);
    prop_assert_eq!(decoded, Ok(Some(original.clone())));
    prop_assert!(buf.is_empty());
    for cut in 0..bytes.len() {
        let mut truncated = BytesMut::from(&bytes[..cut]);
        prop_assert_eq!(
            decode(&mut truncated, decode_as, MAX),
            Ok(None),
            "cut at {}",
            cut
        );
        prop_assert_eq!(truncated.len(), cut);
    }
    Ok(())
}

proptest! {
    #![proptest_config(common::config())]

    #[test]
    fn connect_round_trips_in_every_version(
        (protocol, connect) in protocol().prop_flat_map(|protocol| (Just(protocol), connect(protocol)))
    ) {
        check_round_trip(&Packet::Connect(Box::new(connect)), protocol, None)?;
    }

    #[test]
    fn v3_1_packets_round_trip(packet in packet(Protocol::V3_1)) {
        check_round_trip(&packet, Protocol::V3_1, Some(Protocol::V3_1))?;
    }

    #[test]
    fn v3_1_1_packets_round_trip(packet in packet(Protocol::V3_1_1)) {
        check_round_trip(&packet, Protocol::V3_1_1, Some(Protocol::V3_1_1))?;
    }

    #[test]
    fn v5_packets_round_trip(packet in packet(Protocol::V5)) {
        check_round_trip(&packet, Protocol::V5, Some(Protocol::V5))?;
    }

    /// A stream of packets cut into arbitrary chunks decodes to the same sequence:
    /// `Ok(None)` never consumes, and every packet is consumed exactly.
    #[test]
    fn chunked_stream_decodes_to_the_same_packets(
        packets in proptest::collection::vec(packet(Protocol::V5), 1..6),
        cuts in proptest::collection::vec(1..40usize, 1..20),
    ) {
        let mut stream = Vec::new();
        for packet in &packets {
            stream.extend(encode_to_vec(packet, Protocol::V5));
        }
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        let mut offset = 0;
        let mut cuts = cuts.into_iter().cycle();
        while offset < stream.len() {
            let end = (offset + cuts.next().unwrap_or(1)).min(stream.len());
            buf.extend_from_slice(&stream[offset..end]);
            offset = end;
            while let Some(packet) = decode(&mut buf, Some(Protocol::V5), MAX).expect("valid stream") {
                decoded.push(packet);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, packets);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        drain(&bytes, None);
        for protocol in PROTOCOLS {
            drain(&bytes, Some(protocol));
        }
    }

    /// Valid packets with a few bytes overwritten: the decoder must not panic, and
    /// anything it accepts must encode again and decode to the same packet.
    #[test]
    fn mutated_packets_never_panic_and_accepted_ones_re_encode(
        packet in packet(Protocol::V5),
        v3 in packet(Protocol::V3_1_1),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        for (packet, protocol) in [(packet, Protocol::V5), (v3, Protocol::V3_1_1)] {
            let mut bytes = encode_to_vec(&packet, protocol);
            for (index, value) in &mutations {
                let at = index.index(bytes.len());
                bytes[at] = *value;
            }
            let mut buf = BytesMut::from(&bytes[..]);
            if let Ok(Some(decoded)) = decode(&mut buf, Some(protocol), MAX) {
                let again = encode_to_vec(&decoded, protocol);
                let mut buf = BytesMut::from(&again[..]);
                prop_assert_eq!(decode(&mut buf, Some(protocol), MAX), Ok(Some(decoded)));
            }
        }
    }
}
