//! `fox-mqtt-proto`: a sans-IO, strictly validating codec for MQTT 3.1, 3.1.1 and 5.0
//! packets. It owns no socket, spawns no task and reads no clock: bytes go in, packets
//! come out, and the reverse. foxrouter's MQTT gate builds its sessions on it.
//!
//! The decoder accepts everything the specifications allow and rejects everything they
//! forbid, and every rejection carries the MQTT 5.0 reason code the server must answer
//! with ([`Error::reason_code`]). Rules that need session state (topic alias ranges,
//! receive maximum, packet identifiers in flight, client identifier length policy,
//! direction of a packet) are the gate's, not the codec's.
//!
//! # Layout
//!
//! ```text
//! lib.rs          decode / encode / encoded_len: fixed header, size limit, dispatch
//! protocol.rs     Protocol (3.1, 3.1.1, 5.0), QoS
//! reason.rs       ReasonCode (all MQTT 5.0 codes) and the 3.x return-code mapping
//! error.rs        Error, each decode error mapped to its reason code
//! properties/     Properties: every MQTT 5.0 property as a typed field; encode.rs
//! topic.rs        topic name / topic filter / shared subscription syntax
//! wire.rs         integers, variable byte integers, strings, binary data
//! packet/         one file per packet type; version differences live only there
//! ```
//!
//! # Calling order
//!
//! 1. A new connection decodes with `protocol = None`: only CONNECT is accepted.
//! 2. The CONNECT's [`Connect::protocol`] is the connection's protocol from then on:
//!    pass `Some(protocol)` to every later [`decode`] and to every [`encode`].
//! 3. [`decode`] returns `Ok(None)` while a packet is incomplete; read more bytes into
//!    the same buffer and call again. On `Err`, answer with the error's reason code
//!    where the protocol has a way to (CONNACK / DISCONNECT) and close.
//!
//! # Example
//!
//! ```
//! use bytes::BytesMut;
//! use fox_mqtt_proto::{decode, encode, Packet, Protocol, Publish, QoS};
//!
//! // A client's MQTT 3.1.1 CONNECT, arriving in two pieces.
//! let connect = [0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C,
//!                0x00, 0x01, b'c'];
//! let mut input = BytesMut::from(&connect[..5]);
//! assert_eq!(decode(&mut input, None, 1 << 20), Ok(None));
//! input.extend_from_slice(&connect[5..]);
//! let Some(Packet::Connect(connect)) = decode(&mut input, None, 1 << 20)? else {
//!     panic!("expected CONNECT");
//! };
//! assert_eq!(connect.protocol, Protocol::V3_1_1);
//! assert_eq!(connect.client_id, "c");
//! assert!(input.is_empty());
//!
//! // Answer a PUBLISH in the connection's protocol.
//! let publish = Packet::Publish(Publish {
//!     qos: QoS::AtLeastOnce,
//!     packet_id: Some(7),
//!     topic: "a/b".into(),
//!     payload: "hi".into(),
//!     ..Publish::default()
//! });
//! let mut output = BytesMut::new();
//! encode(&publish, connect.protocol, &mut output)?;
//! assert_eq!(&output[..], &[0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x07, b'h', b'i']);
//! # Ok::<(), fox_mqtt_proto::Error>(())
//! ```
//!
//! # Encoding across versions
//!
//! Domain types are shared, so some fields have no 3.x form. [`encode`] for 3.x
//! silently drops: properties; the MQTT 5.0 subscription options (no local, retain as
//! published, retain handling); reason codes below 0x80 on PUBACK, PUBREC, PUBREL,
//! PUBCOMP, UNSUBACK and DISCONNECT (they all mean success); and session present in
//! 3.1 CONNACK (3.1 has no such flag). It refuses ([`Error::Unencodable`]) reason codes
//! of 0x80 and above on those packets, CONNACK codes with no 3.x return code (see
//! [`ReasonCode::to_v3_connack`]) and AUTH. In every version it refuses what the
//! decoder would reject, so whatever [`encode`] writes, [`decode`] reads back.
//!
//! # Left to the gate
//!
//! The codec checks each packet on its own. Rules that need the session, the
//! direction or configuration are the gate's: which side may send which packet (a
//! server must reject a CONNACK from a client; a client must not send Subscription
//! Identifiers in PUBLISH, [MQTT-3.3.4-6]); Topic Alias ranges and mapping; Receive
//! Maximum and packet identifiers in flight; the 23-byte client identifier limit of
//! 3.1 and any client identifier policy; the Authentication Method of AUTH matching
//! the CONNECT's; Payload Format Indicator = UTF-8 payload validation (a MAY, reason
//! 0x99); Session Expiry on DISCONNECT after a CONNECT with 0; `$`-topics.

#![forbid(unsafe_code)]

mod error;
#[doc(hidden)]
pub mod fuzzing;
mod packet;
mod properties;
mod protocol;
mod reason;
mod topic;
mod wire;

use bytes::{Buf, BufMut, BytesMut};

pub use error::Error;
pub use packet::{
    Auth, ConnAck, Connect, Disconnect, LastWill, Packet, PacketType, PubAck, PubComp, PubRec,
    PubRel, Publish, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};
pub use properties::{PayloadFormat, Properties, PropertyFields};
pub use protocol::{Protocol, QoS};
pub use reason::ReasonCode;
pub use topic::{parse_shared, validate_topic_filter, validate_topic_name};

use wire::{Reader, Varint};

/// Largest remaining length a fixed header can declare (four-byte variable byte
/// integer, spec 2.1.4).
pub const REMAINING_LENGTH_MAX_BYTES: usize = wire::VARINT_MAX as usize;

/// Largest possible packet: one type byte, four length bytes and the largest body.
pub const PACKET_SIZE_MAX_BYTES: usize = 1 + 4 + REMAINING_LENGTH_MAX_BYTES;

/// Decodes one packet from the front of `buf`.
///
/// `protocol` is `None` until the connection's CONNECT has been decoded: then only a
/// CONNECT is accepted and it names the protocol. `max_packet_size_bytes` bounds the
/// whole packet (fixed header included, as MQTT 5.0's Maximum Packet Size does); it is
/// checked as soon as the fixed header is complete, before the body is buffered.
///
/// Returns `Ok(None)` if `buf` does not yet hold a whole packet (nothing is consumed),
/// and `Ok(Some(packet))` after consuming exactly that packet's bytes. Payloads and
/// binary fields share `buf`'s allocation (no copy).
pub fn decode(
    buf: &mut BytesMut,
    protocol: Option<Protocol>,
    max_packet_size_bytes: usize,
) -> Result<Option<Packet>, Error> {
    let Some(&first_byte) = buf.first() else {
        return Ok(None);
    };
    let packet_type = packet::check_first_byte(first_byte, protocol)?;
    let (remaining_len, varint_len, minimal) = match wire::parse_varint(&buf[1..])? {
        Varint::Incomplete => return Ok(None),
        Varint::Complete {
            value,
            len,
            minimal,
        } => (value as usize, len, minimal),
    };
    let size_bytes = 1 + varint_len + remaining_len;
    if size_bytes > max_packet_size_bytes {
        return Err(Error::PacketTooLarge {
            size_bytes,
            max_bytes: max_packet_size_bytes,
        });
    }
    if buf.len() < size_bytes {
        // No `reserve` here: a peer's declared length must not make us allocate.
        return Ok(None);
    }
    let mut frame = buf.split_to(size_bytes).freeze();
    frame.advance(1 + varint_len);
    let mut reader = Reader::new(frame);
    let (packet, protocol) = match protocol {
        Some(protocol) => {
            let flags = first_byte & 0x0F;
            (
                Packet::decode_body(packet_type, flags, &mut reader, protocol)?,
                protocol,
            )
        }
        None => {
            let connect = decode_connect(&mut reader)?;
            let protocol = connect.protocol;
            (Packet::Connect(Box::new(connect)), protocol)
        }
    };
    if protocol.is_v5() && !minimal {
        return Err(Error::MalformedPacket(
            "remaining length not minimally encoded",
        ));
    }
    Ok(Some(packet))
}

fn decode_connect(reader: &mut Reader) -> Result<Connect, Error> {
    let connect = Connect::decode(reader)?;
    if !reader.is_empty() {
        return Err(Error::MalformedPacket("bytes beyond the packet's fields"));
    }
    Ok(connect)
}

/// Appends `packet`, encoded for `protocol`, to `buf`.
///
/// Fails with [`Error::Unencodable`] (and leaves `buf` unchanged) if the packet cannot
/// be represented in `protocol` or breaks a rule the decoder enforces; see the crate
/// docs for the fields that 3.x silently drops.
pub fn encode(packet: &Packet, protocol: Protocol, buf: &mut BytesMut) -> Result<(), Error> {
    let body_len = checked_body_len(packet, protocol)?;
    let remaining_len = body_len as u32; // Fits: checked_body_len bounds it by VARINT_MAX.
    buf.reserve(1 + wire::varint_len(remaining_len) + body_len);
    buf.put_u8((packet.packet_type() as u8) << 4 | packet.flags());
    wire::put_varint(buf, remaining_len);
    let body_start = buf.len();
    packet.encode_body(protocol, buf);
    assert_eq!(
        buf.len() - body_start,
        body_len,
        "body_len disagrees with encode_body"
    );
    Ok(())
}

/// The number of bytes [`encode`] appends for `packet` in `protocol`.
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> Result<usize, Error> {
    let body_len = checked_body_len(packet, protocol)?;
    Ok(1 + wire::varint_len(body_len as u32) + body_len)
}

fn checked_body_len(packet: &Packet, protocol: Protocol) -> Result<usize, Error> {
    let body_len = packet.body_len(protocol)?;
    if body_len > REMAINING_LENGTH_MAX_BYTES {
        return Err(Error::Unencodable {
            packet: packet.packet_type(),
            protocol,
            reason: "packet longer than the largest remaining length",
        });
    }
    Ok(body_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINGREQ: [u8; 2] = [0xC0, 0x00];

    #[test]
    fn incomplete_input_is_not_an_error() {
        let mut buf = BytesMut::new();
        assert_eq!(decode(&mut buf, Some(Protocol::V5), 100), Ok(None));
        let mut buf = BytesMut::from(&[0x30, 0x80][..]);
        assert_eq!(decode(&mut buf, Some(Protocol::V5), 1000), Ok(None));
        assert_eq!(buf.len(), 2, "nothing consumed");
    }

    #[test]
    fn consumes_exactly_one_packet() {
        let mut buf = BytesMut::from(&[PINGREQ, PINGREQ].concat()[..]);
        assert_eq!(
            decode(&mut buf, Some(Protocol::V3_1_1), 100),
            Ok(Some(Packet::PingReq))
        );
        assert_eq!(buf.len(), 2);
    }

    #[test]
    fn huge_declared_length_rejected_before_buffering() {
        // PUBLISH declaring 268,435,455 bytes with only the fixed header present.
        let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
        let result = decode(&mut buf, Some(Protocol::V5), 1 << 20);
        let error = result.expect_err("too large");
        assert_eq!(
            error,
            Error::PacketTooLarge {
                size_bytes: PACKET_SIZE_MAX_BYTES,
                max_bytes: 1 << 20
            }
        );
        assert_eq!(error.reason_code(), ReasonCode::PacketTooLarge);
    }

    #[test]
    fn remaining_length_of_five_bytes_is_malformed_spec_2_1_4() {
        let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01][..]);
        let error = decode(&mut buf, Some(Protocol::V5), usize::MAX).expect_err("5-byte varint");
        assert_eq!(error.reason_code(), ReasonCode::MalformedPacket);
    }

    #[test]
    fn non_minimal_remaining_length_is_malformed_in_v5_mqtt_1_5_5_1() {
        let mut buf = BytesMut::from(&[0xC0, 0x80, 0x00][..]);
        assert!(decode(&mut buf, Some(Protocol::V5), 100).is_err());
        let mut buf = BytesMut::from(&[0xC0, 0x80, 0x00][..]);
        assert_eq!(
            decode(&mut buf, Some(Protocol::V3_1_1), 100),
            Ok(Some(Packet::PingReq))
        );
    }

    #[test]
    fn trailing_bytes_beyond_fields_are_malformed() {
        let mut buf = BytesMut::from(&[0xC0, 0x01, 0x00][..]);
        let error = decode(&mut buf, Some(Protocol::V3_1_1), 100).expect_err("PINGREQ with a body");
        assert_eq!(
            error,
            Error::MalformedPacket("bytes beyond the packet's fields")
        );
    }

    #[test]
    fn encoded_len_matches_encode() {
        let mut buf = BytesMut::new();
        encode(&Packet::PingResp, Protocol::V5, &mut buf).expect("encodes");
        assert_eq!(&buf[..], &[0xD0, 0x00]);
        assert_eq!(encoded_len(&Packet::PingResp, Protocol::V5), Ok(2));
    }
}
