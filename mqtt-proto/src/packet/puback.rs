//! PUBACK (spec 3.4): acknowledges a QoS 1 PUBLISH.

use bytes::BytesMut;

use super::ack;
use crate::error::Error;
use crate::properties::Properties;
use crate::protocol::Protocol;
use crate::reason::{self, ReasonCode};
use crate::wire::Reader;

/// PUBACK: acknowledges a QoS 1 PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PubAck {
    /// Packet Identifier of the exchange (non-zero).
    pub packet_id: u16,
    /// Reason code (5.0); 3.x knows only success.
    pub reason: ReasonCode,
    /// Properties (5.0): reason string and user properties.
    pub properties: Properties,
}

impl PubAck {
    pub(crate) fn decode(reader: &mut Reader, protocol: Protocol) -> Result<PubAck, Error> {
        let fields = ack::decode(reader, protocol, reason::PUBACK_PUBREC)?;
        Ok(PubAck {
            packet_id: fields.packet_id,
            reason: fields.reason,
            properties: fields.properties,
        })
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> Result<usize, &'static str> {
        ack::body_len(
            self.packet_id,
            self.reason,
            &self.properties,
            protocol,
            reason::PUBACK_PUBREC,
        )
    }

    pub(crate) fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) {
        ack::encode(self.packet_id, self.reason, &self.properties, protocol, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::super::ack::test_support::{check_standard_cases, round_trip};
    use super::*;
    use crate::Packet;

    #[test]
    fn short_and_long_forms_spec_3_4_2() {
        check_standard_cases(0x40, 0x10);
        let packet = round_trip(&[0x40, 0x03, 0x00, 0x01, 0x10], Protocol::V5);
        let expected = PubAck {
            packet_id: 1,
            reason: ReasonCode::from_u8(0x10).expect("defined"),
            ..PubAck::default()
        };
        assert_eq!(packet, Packet::PubAck(expected));
    }
}
