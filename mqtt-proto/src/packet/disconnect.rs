//! DISCONNECT (spec 3.14): the end of a connection, from either side in 5.0.

use bytes::{BufMut, BytesMut};

use crate::error::Error;
use crate::properties::{Properties, PropertyContext};
use crate::protocol::Protocol;
use crate::reason::{self, ReasonCode};
use crate::wire::Reader;

/// The end of a connection. 3.x DISCONNECT has no body: it decodes as Normal
/// disconnection, and failure codes cannot be encoded for 3.x.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Disconnect Reason Code (5.0).
    pub reason: ReasonCode,
    /// Properties (5.0): session expiry, reason string, server reference, user properties.
    pub properties: Properties,
}

impl Disconnect {
    pub(crate) fn decode(reader: &mut Reader, protocol: Protocol) -> Result<Disconnect, Error> {
        let mut disconnect = Disconnect::default();
        // Remaining length 0 means Normal disconnection; below 2, no properties
        // (spec 3.14.2.1, 3.14.2.2.1). 3.x bodies must be empty (checked by the caller).
        if protocol.is_v5() && !reader.is_empty() {
            disconnect.reason = ReasonCode::decode(reader.u8()?, reason::DISCONNECT)?;
            if !reader.is_empty() {
                disconnect.properties = Properties::decode(reader, PropertyContext::Disconnect)?;
            }
        }
        Ok(disconnect)
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> Result<usize, &'static str> {
        if !reason::DISCONNECT.contains(&self.reason) {
            return Err("reason code not valid for DISCONNECT");
        }
        if !protocol.is_v5() {
            if self.reason.is_error() {
                return Err("failure reason codes cannot be sent before MQTT 5.0");
            }
            return Ok(0);
        }
        if self.properties.is_empty() {
            return Ok(usize::from(self.reason != ReasonCode::NORMAL_DISCONNECTION));
        }
        Ok(1 + self.properties.encoded_len(PropertyContext::Disconnect)?)
    }

    pub(crate) fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) {
        if !protocol.is_v5() {
            return;
        }
        if self.properties.is_empty() && self.reason == ReasonCode::NORMAL_DISCONNECTION {
            return;
        }
        buf.put_u8(self.reason.value());
        if !self.properties.is_empty() {
            self.properties.encode(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;
    use crate::packet::ack::test_support::round_trip;
    use crate::packet::Packet;

    #[test]
    fn v3_disconnect_is_empty_spec_3_14() {
        assert_eq!(
            round_trip(&[0xE0, 0x00], Protocol::V3_1_1),
            Packet::Disconnect(Disconnect::default())
        );
        let mut buf = BytesMut::from(&[0xE0, 0x01, 0x00][..]);
        assert!(decode(&mut buf, Some(Protocol::V3_1_1), 1024).is_err());
    }

    #[test]
    fn v5_short_and_long_forms_spec_3_14_2() {
        round_trip(&[0xE0, 0x00], Protocol::V5);
        let Packet::Disconnect(with_reason) = round_trip(&[0xE0, 0x01, 0x04], Protocol::V5) else {
            panic!()
        };
        assert_eq!(with_reason.reason, ReasonCode::DisconnectWithWillMessage);
        let Packet::Disconnect(long) = round_trip(
            &[0xE0, 0x07, 0x8E, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00],
            Protocol::V5,
        ) else {
            panic!()
        };
        assert_eq!(long.properties.session_expiry_interval_secs, Some(0));
        // Reason 0x00 with explicit empty properties decodes to the short form's value.
        let mut buf = BytesMut::from(&[0xE0, 0x02, 0x00, 0x00][..]);
        assert_eq!(
            decode(&mut buf, Some(Protocol::V5), 1024),
            Ok(Some(Packet::Disconnect(Disconnect::default())))
        );
    }

    #[test]
    fn reason_code_not_allowed_is_malformed() {
        let mut buf = BytesMut::from(&[0xE0, 0x01, 0x18][..]);
        assert!(
            decode(&mut buf, Some(Protocol::V5), 1024).is_err(),
            "0x18 is an AUTH code"
        );
    }
}
