//! SUBACK (spec 3.9): the server's answer to SUBSCRIBE, one reason code per filter.

use bytes::{BufMut, BytesMut};

use super::{check_packet_id, decode_packet_id};
use crate::error::Error;
use crate::properties::{Properties, PropertyContext};
use crate::protocol::Protocol;
use crate::reason::{self, ReasonCode};
use crate::wire::Reader;

/// The 3.x SUBACK failure return code.
const V3_FAILURE: u8 = 0x80;

/// The answer to SUBSCRIBE.
///
/// In 3.x the return codes 0, 1, 2 and 0x80 map to Granted QoS 0/1/2 and Unspecified
/// error; when encoding for 3.x every failure code (0x80 and above) becomes 0x80.
/// (MQTT 3.1 defined only the granted QoS values; 0x80 is accepted there too, as
/// brokers commonly do.)
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubAck {
    /// Packet Identifier of the SUBSCRIBE.
    pub packet_id: u16,
    /// One reason code per requested filter, in order; never empty.
    pub reasons: Vec<ReasonCode>,
    /// Properties (5.0): reason string and user properties.
    pub properties: Properties,
}

impl SubAck {
    pub(crate) fn decode(reader: &mut Reader, protocol: Protocol) -> Result<SubAck, Error> {
        let packet_id = decode_packet_id(reader)?;
        let properties = if protocol.is_v5() {
            Properties::decode(reader, PropertyContext::SubAck)?
        } else {
            Properties::default()
        };
        let mut reasons = Vec::with_capacity(reader.remaining());
        while !reader.is_empty() {
            let code = reader.u8()?;
            let reason = if protocol.is_v5() {
                ReasonCode::decode(code, reason::SUBACK)?
            } else {
                decode_v3(code)?
            };
            reasons.push(reason);
        }
        if reasons.is_empty() {
            return Err(Error::MalformedPacket("SUBACK without reason codes"));
        }
        Ok(SubAck {
            packet_id,
            reasons,
            properties,
        })
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> Result<usize, &'static str> {
        let mut len = check_packet_id(self.packet_id)?;
        if self.reasons.is_empty() {
            return Err("SUBACK without reason codes");
        }
        if !self
            .reasons
            .iter()
            .all(|reason| reason::SUBACK.contains(reason))
        {
            return Err("reason code not valid for SUBACK");
        }
        if protocol.is_v5() {
            len += self.properties.encoded_len(PropertyContext::SubAck)?;
        }
        Ok(len + self.reasons.len())
    }

    pub(crate) fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) {
        buf.put_u16(self.packet_id);
        if protocol.is_v5() {
            self.properties.encode(buf);
        }
        for reason in &self.reasons {
            let byte = if protocol.is_v5() || !reason.is_error() {
                reason.value()
            } else {
                V3_FAILURE
            };
            buf.put_u8(byte);
        }
    }
}

fn decode_v3(code: u8) -> Result<ReasonCode, Error> {
    match code {
        0x00 => Ok(ReasonCode::GRANTED_QOS_0),
        0x01 => Ok(ReasonCode::GrantedQoS1),
        0x02 => Ok(ReasonCode::GrantedQoS2),
        V3_FAILURE => Ok(ReasonCode::UnspecifiedError),
        _ => Err(Error::MalformedPacket(
            "SUBACK return code not 0, 1, 2 or 0x80",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ack::test_support::round_trip;
    use crate::packet::Packet;
    use crate::{decode, encode};

    #[test]
    fn v3_1_1_return_codes_spec_3_9_3() {
        let packet = round_trip(
            &[0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x80],
            Protocol::V3_1_1,
        );
        let Packet::SubAck(suback) = packet else {
            panic!("SUBACK")
        };
        assert_eq!(
            suback.reasons,
            vec![
                ReasonCode::Success,
                ReasonCode::GrantedQoS1,
                ReasonCode::GrantedQoS2,
                ReasonCode::UnspecifiedError
            ]
        );
        let mut buf = BytesMut::from(&[0x90, 0x03, 0x00, 0x0A, 0x03][..]);
        assert!(
            decode(&mut buf, Some(Protocol::V3_1_1), 1024).is_err(),
            "3 is not a return code"
        );
    }

    #[test]
    fn v5_reason_codes_and_properties() {
        let packet = round_trip(
            &[0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x8F, 0xA2],
            Protocol::V5,
        );
        let Packet::SubAck(suback) = packet else {
            panic!("SUBACK")
        };
        assert_eq!(suback.reasons[1], ReasonCode::TopicFilterInvalid);
        let mut buf = BytesMut::from(&[0x90, 0x04, 0x00, 0x0A, 0x00, 0x10][..]);
        assert!(
            decode(&mut buf, Some(Protocol::V5), 1024).is_err(),
            "0x10 is not a SUBACK code"
        );
    }

    #[test]
    fn v5_failure_codes_collapse_to_0x80_in_v3() {
        let suback = SubAck {
            packet_id: 1,
            reasons: vec![ReasonCode::NotAuthorized],
            ..SubAck::default()
        };
        let mut out = BytesMut::new();
        encode(&Packet::SubAck(suback), Protocol::V3_1_1, &mut out).expect("encodes");
        assert_eq!(&out[..], &[0x90, 0x03, 0x00, 0x01, 0x80]);
    }

    #[test]
    fn empty_suback_is_malformed() {
        let mut buf = BytesMut::from(&[0x90, 0x02, 0x00, 0x0A][..]);
        assert!(decode(&mut buf, Some(Protocol::V3_1_1), 1024).is_err());
    }
}
