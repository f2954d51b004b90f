//! The body shared by PUBACK, PUBREC, PUBREL and PUBCOMP (spec 3.4 - 3.7): a packet
//! identifier and, in 5.0, a reason code and properties that may be left off.

use bytes::{BufMut, BytesMut};

use super::{check_packet_id, decode_packet_id};
use crate::error::Error;
use crate::properties::{Properties, PropertyContext};
use crate::protocol::Protocol;
use crate::reason::ReasonCode;
use crate::wire::Reader;

/// The decoded fields of a publish acknowledgement.
pub(crate) struct AckFields {
    pub(crate) packet_id: u16,
    pub(crate) reason: ReasonCode,
    pub(crate) properties: Properties,
}

pub(crate) fn decode(
    reader: &mut Reader,
    protocol: Protocol,
    allowed: &[ReasonCode],
) -> Result<AckFields, Error> {
    let packet_id = decode_packet_id(reader)?;
    let mut fields = AckFields {
        packet_id,
        reason: ReasonCode::Success,
        properties: Properties::default(),
    };
    // 3.x: the identifier is all (the caller rejects trailing bytes). 5.0: remaining
    // length 2 means Success; 3 means no properties (spec 3.4.2.1, 3.4.2.2.1).
    if protocol.is_v5() && !reader.is_empty() {
        fields.reason = ReasonCode::decode(reader.u8()?, allowed)?;
        if !reader.is_empty() {
            fields.properties = Properties::decode(reader, PropertyContext::PubAck)?;
        }
    }
    Ok(fields)
}

pub(crate) fn body_len(
    packet_id: u16,
    reason: ReasonCode,
    properties: &Properties,
    protocol: Protocol,
    allowed: &[ReasonCode],
) -> Result<usize, &'static str> {
    let len = check_packet_id(packet_id)?;
    if !protocol.is_v5() {
        if reason.is_error() {
            return Err("failure reason codes cannot be sent before MQTT 5.0");
        }
        return Ok(len);
    }
    if !allowed.contains(&reason) {
        return Err("reason code not valid for this packet");
    }
    if properties.is_empty() {
        let reason_len = usize::from(reason != ReasonCode::Success);
        return Ok(len + reason_len);
    }
    Ok(len + 1 + properties.encoded_len(PropertyContext::PubAck)?)
}

pub(crate) fn encode(
    packet_id: u16,
    reason: ReasonCode,
    properties: &Properties,
    protocol: Protocol,
    buf: &mut BytesMut,
) {
    buf.put_u16(packet_id);
    if !protocol.is_v5() {
        return;
    }
    if properties.is_empty() {
        if reason != ReasonCode::Success {
            buf.put_u8(reason.value());
        }
        return;
    }
    buf.put_u8(reason.value());
    properties.encode(buf);
}

/// Shared unit tests for the four packets: `first_byte` is the type and flags.
/// Defines one of PUBACK / PUBREC / PUBREL / PUBCOMP: the struct and its codec glue over
/// this module's shared fields. Each packet keeps its own file (and tests).
macro_rules! ack_packet {
    ($(#[$doc:meta])* $name:ident, $reasons:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            /// Packet Identifier of the exchange (non-zero).
            pub packet_id: u16,
            /// Reason code (5.0); 3.x knows only success.
            pub reason: $crate::reason::ReasonCode,
            /// Properties (5.0): reason string and user properties.
            pub properties: $crate::properties::Properties,
        }

        impl $name {
            pub(crate) fn decode(
                reader: &mut $crate::wire::Reader,
                protocol: $crate::protocol::Protocol,
            ) -> Result<$name, $crate::error::Error> {
                let fields = super::ack::decode(reader, protocol, $reasons)?;
                Ok($name {
                    packet_id: fields.packet_id,
                    reason: fields.reason,
                    properties: fields.properties,
                })
            }

            pub(crate) fn body_len(
                &self,
                protocol: $crate::protocol::Protocol,
            ) -> Result<usize, &'static str> {
                super::ack::body_len(self.packet_id, self.reason, &self.properties, protocol, $reasons)
            }

            pub(crate) fn encode_body(&self, protocol: $crate::protocol::Protocol, buf: &mut bytes::BytesMut) {
                super::ack::encode(self.packet_id, self.reason, &self.properties, protocol, buf);
            }
        }
    };
}
pub(crate) use ack_packet;

#[cfg(test)]
pub(crate) mod test_support {
    use bytes::BytesMut;

    use crate::{decode, encode, Packet, Protocol};

    /// Decodes `bytes` and encodes the result back to the same bytes.
    pub(crate) fn round_trip(bytes: &[u8], protocol: Protocol) -> Packet {
        let mut buf = BytesMut::from(bytes);
        let packet = decode(&mut buf, Some(protocol), 1024)
            .expect("valid")
            .expect("complete");
        let mut out = BytesMut::new();
        encode(&packet, protocol, &mut out).expect("encodes");
        assert_eq!(&out[..], bytes, "{packet:?}");
        packet
    }

    /// The standard cases for a publish acknowledgement with type nibble `first_byte`.
    pub(crate) fn check_standard_cases(first_byte: u8, failure_code: u8) {
        round_trip(&[first_byte, 0x02, 0x12, 0x34], Protocol::V3_1_1);
        round_trip(&[first_byte, 0x02, 0x12, 0x34], Protocol::V3_1);
        round_trip(&[first_byte, 0x02, 0x12, 0x34], Protocol::V5);
        round_trip(&[first_byte, 0x03, 0x12, 0x34, failure_code], Protocol::V5);
        round_trip(
            &[
                first_byte,
                0x07,
                0x12,
                0x34,
                failure_code,
                0x03,
                0x1F,
                0x00,
                0x00,
            ],
            Protocol::V5,
        );
        let mut v3_with_reason = BytesMut::from(&[first_byte, 0x03, 0x12, 0x34, 0x00][..]);
        assert!(
            decode(&mut v3_with_reason, Some(Protocol::V3_1_1), 1024).is_err(),
            "3.x length is 2"
        );
        let mut id_zero = BytesMut::from(&[first_byte, 0x02, 0x00, 0x00][..]);
        let error = decode(&mut id_zero, Some(Protocol::V5), 1024).expect_err("packet id 0");
        assert_eq!(error.reason_code().value(), 0x82, "[MQTT-2.2.1-3]");
        let mut bad_reason = BytesMut::from(&[first_byte, 0x03, 0x12, 0x34, 0x81][..]);
        assert!(decode(&mut bad_reason, Some(Protocol::V5), 1024).is_err());
        let mut short = BytesMut::from(&[first_byte, 0x01, 0x12][..]);
        assert!(decode(&mut short, Some(Protocol::V5), 1024).is_err());
        // Success without properties is always encoded in the two-byte short form.
        let mut out = BytesMut::new();
        let long_form = round_trip(&[first_byte, 0x02, 0x12, 0x34], Protocol::V5);
        encode(&long_form, Protocol::V5, &mut out).expect("encodes");
        assert_eq!(out.len(), 4);
    }
}
