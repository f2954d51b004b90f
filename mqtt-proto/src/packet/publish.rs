//! PUBLISH (spec 3.3): an application message, in either direction.

use bytes::{BufMut, Bytes, BytesMut};

use super::{check_packet_id, decode_packet_id};
use crate::error::Error;
use crate::properties::{Properties, PropertyContext};
use crate::protocol::{Protocol, QoS};
use crate::topic::validate_topic_name;
use crate::wire::{self, Reader};

const FLAG_DUP: u8 = 0b1000;
const FLAG_RETAIN: u8 = 0b0001;

/// An application message.
///
/// `topic` may be empty only in MQTT 5.0 and only with a Topic Alias property; mapping
/// aliases to topics is the session's job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publish {
    /// DUP: a re-delivery. Must be false for QoS 0 [MQTT-3.3.1-2].
    pub dup: bool,
    /// QoS level.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// Topic Name (no wildcards).
    pub topic: String,
    /// Packet Identifier: `Some` (non-zero) if and only if `qos` is 1 or 2.
    pub packet_id: Option<u16>,
    /// Payload, zero-copy from the input buffer.
    pub payload: Bytes,
    /// PUBLISH properties (5.0).
    pub properties: Properties,
}

impl Publish {
    pub(crate) fn decode(
        reader: &mut Reader,
        flags: u8,
        protocol: Protocol,
    ) -> Result<Publish, Error> {
        let qos = QoS::decode((flags >> 1) & 0b11, "PUBLISH QoS 3")?; // [MQTT-3.3.1-4]
        let dup = flags & FLAG_DUP != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(Error::MalformedPacket("DUP set on a QoS 0 PUBLISH")); // [MQTT-3.3.1-2]
        }
        let topic = reader.string()?;
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce | QoS::ExactlyOnce => Some(decode_packet_id(reader)?),
        };
        let properties = if protocol.is_v5() {
            Properties::decode(reader, PropertyContext::Publish)?
        } else {
            Properties::default()
        };
        check_topic(&topic, &properties, protocol)?;
        let payload = reader.rest();
        let retain = flags & FLAG_RETAIN != 0;
        Ok(Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            payload,
            properties,
        })
    }

    /// The number of bytes [`crate::encode`] appends for this PUBLISH in `protocol`, as
    /// [`crate::encoded_len`] gives it, without wrapping (and so cloning) it in a packet.
    pub fn encoded_len(&self, protocol: Protocol) -> Result<usize, Error> {
        let unencodable = |reason| Error::Unencodable {
            packet: super::PacketType::Publish,
            protocol,
            reason,
        };
        let body_len = self.body_len(protocol).map_err(unencodable)?;
        if body_len > crate::REMAINING_LENGTH_MAX_BYTES {
            return Err(unencodable(
                "packet longer than the largest remaining length",
            ));
        }
        // Fits: bounded by the largest remaining length just above.
        Ok(1 + wire::varint_len(body_len as u32) + body_len)
    }

    pub(crate) fn flags(&self) -> u8 {
        let mut flags = self.qos.value() << 1;
        if self.dup {
            flags |= FLAG_DUP;
        }
        if self.retain {
            flags |= FLAG_RETAIN;
        }
        flags
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> Result<usize, &'static str> {
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err("DUP set on a QoS 0 PUBLISH");
        }
        let properties = if protocol.is_v5() {
            &self.properties
        } else {
            &Properties::default()
        };
        check_topic(&self.topic, properties, protocol).map_err(|_| "topic name invalid")?;
        let mut len = wire::string_len(&self.topic)?;
        len += match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, None) => 0,
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(packet_id)) => check_packet_id(packet_id)?,
            _ => return Err("packet identifier must be present exactly for QoS 1 and 2"),
        };
        if protocol.is_v5() {
            len += self.properties.encoded_len(PropertyContext::Publish)?;
        }
        Ok(len + self.payload.len())
    }

    pub(crate) fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) {
        wire::put_string(buf, &self.topic);
        if let Some(packet_id) = self.packet_id {
            buf.put_u16(packet_id);
        }
        if protocol.is_v5() {
            self.properties.encode(buf);
        }
        buf.put_slice(&self.payload);
    }
}

/// A topic name must be valid [MQTT-3.3.2-1], [MQTT-3.3.2-2]; MQTT 5.0 allows an
/// empty one when a Topic Alias stands in for it (spec 3.3.2.3.4).
fn check_topic(topic: &str, properties: &Properties, protocol: Protocol) -> Result<(), Error> {
    if topic.is_empty() && protocol.is_v5() {
        if properties.topic_alias.is_none() {
            return Err(Error::ProtocolError("empty topic name without topic alias"));
        }
        return Ok(());
    }
    validate_topic_name(topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Packet;
    use crate::{decode, encode, ReasonCode};

    fn decode_publish(bytes: &[u8], protocol: Protocol) -> Result<Publish, Error> {
        let mut buf = BytesMut::from(bytes);
        match decode(&mut buf, Some(protocol), 1024)? {
            Some(Packet::Publish(publish)) => Ok(publish),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    fn encoded(publish: &Publish, protocol: Protocol) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode(&Packet::Publish(publish.clone()), protocol, &mut buf).expect("encodes");
        buf.to_vec()
    }

    #[test]
    fn publish_encoded_len_agrees_with_the_packet() {
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            packet_id: Some(3),
            topic: "a/b".into(),
            payload: Bytes::from_static(&[7; 200]),
            ..Publish::default()
        };
        for protocol in [Protocol::V3_1_1, Protocol::V5] {
            let packet = Packet::Publish(publish.clone());
            assert_eq!(
                publish.encoded_len(protocol),
                crate::encoded_len(&packet, protocol)
            );
            assert_eq!(
                publish.encoded_len(protocol),
                Ok(encoded(&publish, protocol).len())
            );
        }
        let bad = Publish {
            topic: "a/+".into(),
            ..Publish::default()
        };
        assert!(bad.encoded_len(Protocol::V3_1_1).is_err());
    }

    #[test]
    fn v3_1_1_qos1_retained_round_trip() {
        let bytes = [
            0x33, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'i',
        ];
        let publish = decode_publish(&bytes, Protocol::V3_1_1).expect("valid");
        assert_eq!(
            (publish.qos, publish.retain, publish.dup),
            (QoS::AtLeastOnce, true, false)
        );
        assert_eq!(publish.packet_id, Some(10));
        assert_eq!(&publish.payload[..], b"hi");
        assert_eq!(encoded(&publish, Protocol::V3_1_1), bytes);
    }

    #[test]
    fn v3_1_qos2_dup_round_trip() {
        let bytes = [0x3C, 0x07, 0x00, 0x01, b't', 0xAB, 0xCD, 0x00, 0xFF];
        let publish = decode_publish(&bytes, Protocol::V3_1).expect("valid");
        assert_eq!(
            (publish.qos, publish.dup, publish.retain),
            (QoS::ExactlyOnce, true, false)
        );
        assert_eq!(publish.packet_id, Some(0xABCD));
        assert_eq!(&publish.payload[..], &[0x00, 0xFF]);
        assert_eq!(encoded(&publish, Protocol::V3_1), bytes);
    }

    #[test]
    fn v5_qos0_with_properties_round_trip() {
        let bytes = [
            0x30, 0x0A, 0x00, 0x01, b't', 0x05, 0x02, 0x00, 0x00, 0x00, 0x3C, b'x',
        ];
        let publish = decode_publish(&bytes, Protocol::V5).expect("valid");
        assert_eq!(publish.packet_id, None);
        assert_eq!(publish.properties.message_expiry_interval_secs, Some(60));
        assert_eq!(encoded(&publish, Protocol::V5), bytes);
    }

    #[test]
    fn qos_3_is_malformed_mqtt_3_3_1_4() {
        let error = decode_publish(
            &[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01],
            Protocol::V3_1_1,
        )
        .expect_err("QoS 3");
        assert_eq!(error.reason_code(), ReasonCode::MalformedPacket);
    }

    #[test]
    fn dup_on_qos_0_is_malformed_mqtt_3_3_1_2() {
        assert!(decode_publish(&[0x38, 0x03, 0x00, 0x01, b't'], Protocol::V3_1_1).is_err());
        assert!(decode_publish(&[0x38, 0x04, 0x00, 0x01, b't', 0x00], Protocol::V5).is_err());
    }

    #[test]
    fn wildcards_in_topic_name_mqtt_3_3_2_2() {
        for wildcard in [b'+', b'#'] {
            let error = decode_publish(&[0x30, 0x03, 0x00, 0x01, wildcard], Protocol::V3_1_1)
                .expect_err("wildcard");
            assert_eq!(error.reason_code(), ReasonCode::TopicNameInvalid);
        }
    }

    #[test]
    fn empty_topic_needs_topic_alias_in_v5_spec_3_3_2_3_4() {
        assert!(decode_publish(&[0x30, 0x02, 0x00, 0x00], Protocol::V3_1_1).is_err());
        let error =
            decode_publish(&[0x30, 0x03, 0x00, 0x00, 0x00], Protocol::V5).expect_err("no alias");
        assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
        let with_alias = [0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01];
        let publish = decode_publish(&with_alias, Protocol::V5).expect("alias");
        assert_eq!(publish.properties.topic_alias, Some(1));
        assert_eq!(encoded(&publish, Protocol::V5), with_alias);
    }

    #[test]
    fn packet_id_zero_is_protocol_error_mqtt_2_2_1_3() {
        let error = decode_publish(
            &[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x00],
            Protocol::V3_1_1,
        )
        .expect_err("id 0");
        assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
    }

    #[test]
    fn body_shorter_than_fields_is_malformed() {
        // QoS 1 needs a packet identifier the body does not have.
        assert!(decode_publish(&[0x32, 0x03, 0x00, 0x01, b't'], Protocol::V3_1_1).is_err());
    }

    #[test]
    fn encode_refuses_inconsistent_packet_id() {
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            topic: "t".into(),
            ..Publish::default()
        };
        assert!(encode(
            &Packet::Publish(publish),
            Protocol::V5,
            &mut BytesMut::new()
        )
        .is_err());
    }
}
