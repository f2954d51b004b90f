//! AUTH (spec 3.15): extended authentication exchange, MQTT 5.0 only.

use bytes::{BufMut, BytesMut};

use crate::error::Error;
use crate::properties::{Properties, PropertyContext};
use crate::protocol::Protocol;
use crate::reason::{self, ReasonCode};
use crate::wire::Reader;

/// One step of an extended authentication exchange (5.0 only).
///
/// The spec requires an Authentication Method property; the codec leaves checking it
/// against the CONNECT's method to the gate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Success, Continue authentication or Re-authenticate.
    pub reason: ReasonCode,
    /// Properties: authentication method and data, reason string, user properties.
    pub properties: Properties,
}

impl Auth {
    pub(crate) fn decode(reader: &mut Reader, protocol: Protocol) -> Result<Auth, Error> {
        debug_assert!(protocol.is_v5(), "check_first_byte rejects AUTH before 5.0");
        let mut auth = Auth::default();
        if !reader.is_empty() {
            auth.reason = ReasonCode::decode(reader.u8()?, reason::AUTH)?;
            if !reader.is_empty() {
                auth.properties = Properties::decode(reader, PropertyContext::Auth)?;
            }
        }
        Ok(auth)
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> Result<usize, &'static str> {
        if !protocol.is_v5() {
            return Err("AUTH exists only in MQTT 5.0");
        }
        if !reason::AUTH.contains(&self.reason) {
            return Err("reason code not valid for AUTH");
        }
        if self.properties.is_empty() && self.reason == ReasonCode::Success {
            return Ok(0);
        }
        Ok(1 + self.properties.encoded_len(PropertyContext::Auth)?)
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        if self.properties.is_empty() && self.reason == ReasonCode::Success {
            return;
        }
        buf.put_u8(self.reason.value());
        self.properties.encode(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ack::test_support::round_trip;
    use crate::packet::Packet;
    use crate::{decode, encode};

    #[test]
    fn continue_authentication_with_method_and_data_spec_3_15() {
        let bytes = [
            0xF0, 0x0C, 0x18, 0x0A, 0x15, 0x00, 0x03, b'g', b's', b'2', 0x16, 0x00, 0x01, 0xAA,
        ];
        let Packet::Auth(auth) = round_trip(&bytes, Protocol::V5) else {
            panic!()
        };
        assert_eq!(auth.reason, ReasonCode::ContinueAuthentication);
        assert_eq!(
            auth.properties.authentication_method.as_deref(),
            Some("gs2")
        );
        round_trip(&[0xF0, 0x00], Protocol::V5);
    }

    #[test]
    fn auth_is_not_representable_before_v5() {
        let error = encode(
            &Packet::Auth(Auth::default()),
            Protocol::V3_1_1,
            &mut BytesMut::new(),
        )
        .expect_err("v3");
        assert!(!error.is_peer_error());
        let mut buf = BytesMut::from(&[0xF0, 0x00][..]);
        assert!(decode(&mut buf, Some(Protocol::V3_1_1), 1024).is_err());
    }

    #[test]
    fn reason_code_not_allowed_is_malformed_spec_3_15_2_1() {
        let mut buf = BytesMut::from(&[0xF0, 0x02, 0x80, 0x00][..]);
        assert!(decode(&mut buf, Some(Protocol::V5), 1024).is_err());
    }
}
