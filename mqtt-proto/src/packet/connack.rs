//! CONNACK (spec 3.2): the server's answer to CONNECT.

use bytes::{BufMut, BytesMut};

use crate::error::Error;
use crate::properties::{Properties, PropertyContext};
use crate::protocol::Protocol;
use crate::reason::{self, ReasonCode};
use crate::wire::Reader;

/// The server's answer to CONNECT. `reason` is a v5 reason code in every version;
/// 3.x return codes map onto it (see [`ReasonCode::to_v3_connack`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// Session Present; must be false unless `reason` is Success. Not sent in 3.1.
    pub session_present: bool,
    /// Connect Reason Code (5.0) / Connect Return Code (3.x).
    pub reason: ReasonCode,
    /// CONNACK properties (5.0).
    pub properties: Properties,
}

impl ConnAck {
    pub(crate) fn decode(reader: &mut Reader, protocol: Protocol) -> Result<ConnAck, Error> {
        let flags = reader.u8()?;
        // 3.1 has no flags here (the byte is unused); later versions reserve bits 7-1
        // [MQTT-3.2.2-1].
        let session_present = match protocol {
            Protocol::V3_1 => false,
            Protocol::V3_1_1 | Protocol::V5 if flags & 0xFE != 0 => {
                return Err(Error::MalformedPacket("CONNACK reserved flags set"))
            }
            Protocol::V3_1_1 | Protocol::V5 => flags & 0x01 != 0,
        };
        let code = reader.u8()?;
        let (reason, properties) = if protocol.is_v5() {
            let reason = ReasonCode::decode(code, reason::CONNACK)?;
            (
                reason,
                Properties::decode(reader, PropertyContext::ConnAck)?,
            )
        } else {
            let reason = ReasonCode::from_v3_connack(code)
                .ok_or(Error::MalformedPacket("CONNACK return code above 5"))?;
            (reason, Properties::default())
        };
        if session_present && reason != ReasonCode::Success {
            // [MQTT-3.2.2-4] (3.1.1), [MQTT-3.2.2-6] (5.0).
            return Err(Error::ProtocolError("session present with a failure code"));
        }
        Ok(ConnAck {
            session_present,
            reason,
            properties,
        })
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> Result<usize, &'static str> {
        if self.session_present && self.reason != ReasonCode::Success {
            return Err("session present with a failure code");
        }
        if !protocol.is_v5() {
            self.reason
                .to_v3_connack()
                .ok_or("reason code has no 3.x CONNACK return code")?;
            return Ok(2);
        }
        if !reason::CONNACK.contains(&self.reason) {
            return Err("reason code not valid for CONNACK");
        }
        Ok(2 + self.properties.encoded_len(PropertyContext::ConnAck)?)
    }

    pub(crate) fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) {
        let session_present = self.session_present && protocol != Protocol::V3_1;
        buf.put_u8(u8::from(session_present));
        if protocol.is_v5() {
            buf.put_u8(self.reason.value());
            self.properties.encode(buf);
        } else {
            // Checked by body_len.
            buf.put_u8(self.reason.to_v3_connack().unwrap_or(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Packet;
    use crate::{decode, encode};

    fn round_trip(bytes: &[u8], protocol: Protocol) -> ConnAck {
        let mut buf = BytesMut::from(bytes);
        let Ok(Some(Packet::ConnAck(connack))) = decode(&mut buf, Some(protocol), 1024) else {
            panic!("expected CONNACK from {bytes:?}");
        };
        let mut out = BytesMut::new();
        encode(&Packet::ConnAck(connack.clone()), protocol, &mut out).expect("encodes");
        assert_eq!(&out[..], bytes);
        connack
    }

    #[test]
    fn v3_1_1_accepted_with_session_present() {
        let connack = round_trip(&[0x20, 0x02, 0x01, 0x00], Protocol::V3_1_1);
        assert!(connack.session_present);
        assert_eq!(connack.reason, ReasonCode::Success);
    }

    #[test]
    fn v3_return_codes_map_to_reason_codes() {
        let connack = round_trip(&[0x20, 0x02, 0x00, 0x05], Protocol::V3_1);
        assert_eq!(connack.reason, ReasonCode::NotAuthorized);
        let mut buf = BytesMut::from(&[0x20, 0x02, 0x00, 0x06][..]);
        assert!(decode(&mut buf, Some(Protocol::V3_1_1), 1024).is_err());
    }

    #[test]
    fn v5_with_reason_and_properties() {
        let connack = round_trip(
            &[0x20, 0x06, 0x00, 0x8A, 0x03, 0x21, 0x00, 0x0A],
            Protocol::V5,
        );
        assert_eq!(connack.reason, ReasonCode::Banned);
        assert_eq!(connack.properties.receive_maximum, Some(10));
    }

    #[test]
    fn reserved_acknowledge_flags_mqtt_3_2_2_1() {
        let mut buf = BytesMut::from(&[0x20, 0x02, 0x02, 0x00][..]);
        assert!(decode(&mut buf, Some(Protocol::V3_1_1), 1024).is_err());
    }

    #[test]
    fn session_present_with_failure_mqtt_3_2_2_4() {
        let mut buf = BytesMut::from(&[0x20, 0x03, 0x01, 0x80, 0x00][..]);
        assert!(decode(&mut buf, Some(Protocol::V5), 1024).is_err());
    }

    #[test]
    fn reason_code_not_allowed_on_connack_is_malformed() {
        // 0x04 (Disconnect with Will Message) is a DISCONNECT code.
        let mut buf = BytesMut::from(&[0x20, 0x03, 0x00, 0x04, 0x00][..]);
        assert!(decode(&mut buf, Some(Protocol::V5), 1024).is_err());
    }

    #[test]
    fn encode_v3_refuses_codes_without_return_code() {
        let connack = ConnAck {
            reason: ReasonCode::MalformedPacket,
            ..ConnAck::default()
        };
        assert!(encode(
            &Packet::ConnAck(connack),
            Protocol::V3_1_1,
            &mut BytesMut::new()
        )
        .is_err());
        let banned = ConnAck {
            reason: ReasonCode::Banned,
            ..ConnAck::default()
        };
        let mut out = BytesMut::new();
        encode(&Packet::ConnAck(banned), Protocol::V3_1_1, &mut out).expect("Banned maps to 5");
        assert_eq!(&out[..], &[0x20, 0x02, 0x00, 0x05]);
    }
}
