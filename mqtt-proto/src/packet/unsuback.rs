//! UNSUBACK (spec 3.11): the server's answer to UNSUBSCRIBE.

use bytes::{BufMut, BytesMut};

use super::{check_packet_id, decode_packet_id};
use crate::error::Error;
use crate::properties::{Properties, PropertyContext};
use crate::protocol::Protocol;
use crate::reason::{self, ReasonCode};
use crate::wire::Reader;

/// The answer to UNSUBSCRIBE. 3.x carries no reason codes: `reasons` decodes empty
/// and is not sent (failure codes cannot be sent at all).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubAck {
    /// Packet Identifier of the UNSUBSCRIBE.
    pub packet_id: u16,
    /// One reason code per filter (5.0, never empty there).
    pub reasons: Vec<ReasonCode>,
    /// Properties (5.0): reason string and user properties.
    pub properties: Properties,
}

impl UnsubAck {
    pub(crate) fn decode(reader: &mut Reader, protocol: Protocol) -> Result<UnsubAck, Error> {
        let packet_id = decode_packet_id(reader)?;
        if !protocol.is_v5() {
            return Ok(UnsubAck {
                packet_id,
                ..UnsubAck::default()
            });
        }
        let properties = Properties::decode(reader, PropertyContext::UnsubAck)?;
        let mut reasons = Vec::with_capacity(reader.remaining());
        while !reader.is_empty() {
            reasons.push(ReasonCode::decode(reader.u8()?, reason::UNSUBACK)?);
        }
        if reasons.is_empty() {
            return Err(Error::MalformedPacket("UNSUBACK without reason codes"));
        }
        Ok(UnsubAck {
            packet_id,
            reasons,
            properties,
        })
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> Result<usize, &'static str> {
        let len = check_packet_id(self.packet_id)?;
        if !self
            .reasons
            .iter()
            .all(|reason| reason::UNSUBACK.contains(reason))
        {
            return Err("reason code not valid for UNSUBACK");
        }
        if !protocol.is_v5() {
            if self.reasons.iter().any(|reason| reason.is_error()) {
                return Err("failure reason codes cannot be sent before MQTT 5.0");
            }
            return Ok(len);
        }
        if self.reasons.is_empty() {
            return Err("UNSUBACK without reason codes");
        }
        Ok(len + self.properties.encoded_len(PropertyContext::UnsubAck)? + self.reasons.len())
    }

    pub(crate) fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) {
        buf.put_u16(self.packet_id);
        if !protocol.is_v5() {
            return;
        }
        self.properties.encode(buf);
        for reason in &self.reasons {
            buf.put_u8(reason.value());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ack::test_support::round_trip;
    use crate::packet::Packet;
    use crate::{decode, encode};

    #[test]
    fn v3_1_1_has_only_the_packet_id_spec_3_11() {
        let Packet::UnsubAck(unsuback) = round_trip(&[0xB0, 0x02, 0x00, 0x05], Protocol::V3_1_1)
        else {
            panic!()
        };
        assert_eq!(unsuback.packet_id, 5);
        assert!(unsuback.reasons.is_empty());
        let mut buf = BytesMut::from(&[0xB0, 0x03, 0x00, 0x05, 0x00][..]);
        assert!(decode(&mut buf, Some(Protocol::V3_1_1), 1024).is_err());
    }

    #[test]
    fn v5_reason_codes_spec_3_11_3() {
        let Packet::UnsubAck(unsuback) =
            round_trip(&[0xB0, 0x05, 0x00, 0x05, 0x00, 0x00, 0x11], Protocol::V5)
        else {
            panic!()
        };
        assert_eq!(
            unsuback.reasons,
            vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
        );
        let mut empty = BytesMut::from(&[0xB0, 0x03, 0x00, 0x05, 0x00][..]);
        assert!(decode(&mut empty, Some(Protocol::V5), 1024).is_err());
    }

    #[test]
    fn v3_encoding_drops_success_codes_and_refuses_failures() {
        let ok = UnsubAck {
            packet_id: 5,
            reasons: vec![ReasonCode::NoSubscriptionExisted],
            ..UnsubAck::default()
        };
        let mut out = BytesMut::new();
        encode(&Packet::UnsubAck(ok), Protocol::V3_1_1, &mut out).expect("encodes");
        assert_eq!(&out[..], &[0xB0, 0x02, 0x00, 0x05]);
        let failed = UnsubAck {
            packet_id: 5,
            reasons: vec![ReasonCode::NotAuthorized],
            ..UnsubAck::default()
        };
        assert!(encode(&Packet::UnsubAck(failed), Protocol::V3_1_1, &mut out).is_err());
    }
}
