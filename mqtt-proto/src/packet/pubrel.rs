//! PUBREL (spec 3.6): releases a QoS 2 PUBLISH.

use bytes::BytesMut;

use super::ack;
use crate::error::Error;
use crate::properties::Properties;
use crate::protocol::Protocol;
use crate::reason::{self, ReasonCode};
use crate::wire::Reader;

/// PUBREL: releases a QoS 2 PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PubRel {
    /// Packet Identifier of the exchange (non-zero).
    pub packet_id: u16,
    /// Reason code (5.0); 3.x knows only success.
    pub reason: ReasonCode,
    /// Properties (5.0): reason string and user properties.
    pub properties: Properties,
}

impl PubRel {
    pub(crate) fn decode(reader: &mut Reader, protocol: Protocol) -> Result<PubRel, Error> {
        let fields = ack::decode(reader, protocol, reason::PUBREL_PUBCOMP)?;
        Ok(PubRel {
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
            reason::PUBREL_PUBCOMP,
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
    fn short_and_long_forms_spec_3_6_2() {
        check_standard_cases(0x62, 0x92);
        let packet = round_trip(&[0x62, 0x03, 0x00, 0x01, 0x92], Protocol::V5);
        let expected = PubRel {
            packet_id: 1,
            reason: ReasonCode::from_u8(0x92).expect("defined"),
            ..PubRel::default()
        };
        assert_eq!(packet, Packet::PubRel(expected));
    }
}
