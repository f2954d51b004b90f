//! The checks the `cargo fuzz` targets run (`fuzz/fuzz_targets/mqtt_*.rs` are one-line
//! wrappers), kept here so that `cargo test` replays the committed corpora and
//! regressions (`fuzz/corpus/<target>`, `fuzz/regressions/<target>`) through the very
//! same code. Not part of the API: hidden from the docs, and a check panics on purpose
//! when the property it states does not hold. See `docs/fuzzing.md`.
//!
//! [`differential`] (the `mqttbytes` oracle) is compiled for this crate's own tests and
//! with the `mqttbytes-differential` feature, which the fuzz package turns on.

#[cfg(any(test, feature = "mqttbytes-differential"))]
pub mod differential;
mod seeds;
#[cfg(test)]
mod tests;

use bytes::BytesMut;

pub use seeds::seeds;

use crate::{decode, encode, encoded_len, Packet, Protocol};

/// Packet size limit for every decode: above anything libFuzzer generates by default.
const PACKET_SIZE_MAX_BYTES: usize = 1 << 20;

/// Most packets one input may yield (the loop bound of [`stream`]).
const PACKETS_MAX: usize = 1 << 16;

/// Target `mqtt_v3_1`: see [`packet`].
pub fn v3_1(data: &[u8]) {
    packet(Protocol::V3_1, data);
}

/// Target `mqtt_v3_1_1`: see [`packet`].
pub fn v3_1_1(data: &[u8]) {
    packet(Protocol::V3_1_1, data);
}

/// Target `mqtt_v5`: see [`packet`].
pub fn v5(data: &[u8]) {
    packet(Protocol::V5, data);
}

/// Target `mqtt_connect`: the first packet of a connection (`protocol = None`), which
/// must be a CONNECT of any version; round trip as in [`packet`].
pub fn connect(data: &[u8]) {
    if let Some((packet, _)) = decode_one(data, None) {
        let Packet::Connect(connect) = &packet else {
            panic!("decoded {packet:?} as a connection's first packet");
        };
        round_trip(&packet, connect.protocol, None);
    }
}

/// One packet after the CONNECT, in `protocol`: arbitrary bytes never panic; an incomplete
/// packet consumes nothing; a decoded packet consumes exactly its bytes, every shorter
/// prefix of them is incomplete, and it re-encodes (with the length [`encoded_len`]
/// announces) to bytes that decode to the same packet.
pub fn packet(protocol: Protocol, data: &[u8]) {
    let Some((packet, used)) = decode_one(data, Some(protocol)) else {
        return;
    };
    for cut in 0..used {
        let mut prefix = BytesMut::from(&data[..cut]);
        assert_eq!(
            decode(&mut prefix, Some(protocol), PACKET_SIZE_MAX_BYTES),
            Ok(None),
            "a prefix of {cut} bytes is not incomplete"
        );
    }
    round_trip(&packet, protocol, Some(protocol));
}

/// Decodes the front of `data`; `Some((packet, bytes used))` when a whole packet decodes.
fn decode_one(data: &[u8], protocol: Option<Protocol>) -> Option<(Packet, usize)> {
    let mut buf = BytesMut::from(data);
    match decode(&mut buf, protocol, PACKET_SIZE_MAX_BYTES) {
        Ok(Some(packet)) => Some((packet, data.len() - buf.len())),
        Ok(None) => {
            assert_eq!(buf.len(), data.len(), "an incomplete packet consumed bytes");
            None
        }
        Err(error) => {
            // After an error the connection closes: what `buf` still holds is irrelevant.
            let _ = error.reason_code();
            None
        }
    }
}

/// `packet`, decoded in `protocol`, encodes and decodes back to itself.
fn round_trip(packet: &Packet, protocol: Protocol, decode_as: Option<Protocol>) {
    let mut encoded = BytesMut::new();
    if let Err(error) = encode(packet, protocol, &mut encoded) {
        panic!("decoded {packet:?} ({protocol:?}) but cannot encode it: {error}");
    }
    assert_eq!(encoded_len(packet, protocol), Ok(encoded.len()));
    let bytes = encoded.clone();
    match decode(&mut encoded, decode_as, PACKET_SIZE_MAX_BYTES) {
        Ok(Some(decoded)) => assert_eq!(&decoded, packet, "round trip changed the packet"),
        other => {
            panic!("{packet:?} encoded ({protocol:?}) as {bytes:?}, which decodes as {other:?}")
        }
    }
    assert!(encoded.is_empty(), "the encoding has trailing bytes");
}

/// Target `mqtt_stream`: the streaming decoder. The first byte picks the protocol (0: a
/// new connection, whose CONNECT names it; 1: 3.1; 2: 3.1.1; 3: 5.0) and the read size
/// (1 to 64 bytes); the rest is a byte stream. Reading it piece by piece yields exactly
/// the packets, and the error, of decoding it all at once.
pub fn stream(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let protocol = match selector % 4 {
        0 => None,
        1 => Some(Protocol::V3_1),
        2 => Some(Protocol::V3_1_1),
        _ => Some(Protocol::V5),
    };
    let read_size_bytes = 1 + usize::from(selector >> 2);
    let whole = decode_stream([stream], protocol);
    let pieces = decode_stream(stream.chunks(read_size_bytes), protocol);
    assert_eq!(
        pieces, whole,
        "reading in pieces of {read_size_bytes} bytes differs"
    );
}

/// Every packet of a stream, then the error that ended it, or else the bytes left over.
type Decoded = (Vec<Packet>, Result<usize, crate::Error>);

fn decode_stream<'a>(
    reads: impl IntoIterator<Item = &'a [u8]>,
    protocol: Option<Protocol>,
) -> Decoded {
    let mut protocol = protocol;
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            assert!(packets.len() < PACKETS_MAX, "more packets than bytes");
            match decode(&mut buf, protocol, PACKET_SIZE_MAX_BYTES) {
                Ok(Some(packet)) => {
                    if let Packet::Connect(connect) = &packet {
                        protocol = Some(connect.protocol);
                    }
                    packets.push(packet);
                }
                Ok(None) => break,
                Err(error) => return (packets, Err(error)),
            }
        }
    }
    (packets, Ok(buf.len()))
}
