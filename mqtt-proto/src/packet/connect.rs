//! CONNECT (spec 3.1): the first packet of a connection; it fixes the protocol.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::Error;
use crate::properties::{Properties, PropertyContext};
use crate::protocol::{Protocol, QoS};
use crate::topic::validate_topic_name;
use crate::wire::{self, Reader};

const FLAG_RESERVED: u8 = 0x01;
const FLAG_CLEAN_START: u8 = 0x02;
const FLAG_WILL: u8 = 0x04;
const WILL_QOS_SHIFT: u8 = 3;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_USERNAME: u8 = 0x80;

/// A client's request to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol name and level; decides how every later packet is coded.
    pub protocol: Protocol,
    /// Clean Start (5.0) / Clean Session (3.x).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 turns it off.
    pub keep_alive_secs: u16,
    /// Client Identifier; may be empty in 3.1.1 with clean session and always in 5.0.
    pub client_id: String,
    /// The will message, if the Will Flag is set.
    pub will: Option<LastWill>,
    /// User Name.
    pub username: Option<String>,
    /// Password: binary data, not necessarily UTF-8.
    pub password: Option<Bytes>,
    /// CONNECT properties (5.0).
    pub properties: Properties,
}

/// The will message published when the connection ends abnormally.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LastWill {
    /// Will Topic: a topic name (no wildcards).
    pub topic: String,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will properties (5.0).
    pub properties: Properties,
}

impl Default for Connect {
    /// An MQTT 5.0 CONNECT with clean start, keep alive 60 s and an empty client id.
    fn default() -> Connect {
        Connect {
            protocol: Protocol::V5,
            clean_start: true,
            keep_alive_secs: 60,
            client_id: String::new(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        }
    }
}

/// The flag bits of CONNECT (spec 3.1.2.3), checked for consistency.
struct Flags {
    clean_start: bool,
    will: Option<(QoS, bool)>,
    username: bool,
    password: bool,
}

impl Flags {
    fn decode(byte: u8, protocol: Protocol) -> Result<Flags, Error> {
        // MQTT 3.1 leaves bit 0 unused; 3.1.1 and 5.0 require it clear [MQTT-3.1.2-3].
        if protocol != Protocol::V3_1 && byte & FLAG_RESERVED != 0 {
            return Err(Error::MalformedPacket("CONNECT reserved flag set"));
        }
        let will_qos = QoS::decode((byte >> WILL_QOS_SHIFT) & 0b11, "will QoS 3")?;
        let will_retain = byte & FLAG_WILL_RETAIN != 0;
        let will = if byte & FLAG_WILL != 0 {
            Some((will_qos, will_retain))
        } else if will_qos != QoS::AtMostOnce || will_retain {
            // [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15].
            return Err(Error::MalformedPacket(
                "will QoS or retain without will flag",
            ));
        } else {
            None
        };
        let username = byte & FLAG_USERNAME != 0;
        let password = byte & FLAG_PASSWORD != 0;
        if password && !username && !protocol.is_v5() {
            return Err(Error::MalformedPacket(
                "password flag without user name flag",
            ));
        }
        let clean_start = byte & FLAG_CLEAN_START != 0;
        Ok(Flags {
            clean_start,
            will,
            username,
            password,
        })
    }
}

impl Connect {
    pub(crate) fn decode(reader: &mut Reader) -> Result<Connect, Error> {
        let name = reader.binary()?;
        let level = reader.u8()?;
        let protocol = Protocol::from_name_and_level(&name, level).ok_or_else(|| {
            let name = String::from_utf8_lossy(&name).into_owned();
            Error::UnsupportedProtocolVersion { name, level }
        })?;
        let flags = Flags::decode(reader.u8()?, protocol)?;
        let keep_alive_secs = reader.u16()?;
        let properties = if protocol.is_v5() {
            let properties = Properties::decode(reader, PropertyContext::Connect)?;
            if properties.authentication_data.is_some()
                && properties.authentication_method.is_none()
            {
                return Err(Error::ProtocolError("authentication data without method"));
            }
            properties
        } else {
            Properties::default()
        };
        let client_id = reader.string()?;
        check_client_id(protocol, &client_id, flags.clean_start)
            .map_err(Error::ClientIdentifierNotValid)?;
        let will = match flags.will {
            Some((qos, retain)) => Some(LastWill::decode(reader, protocol, qos, retain)?),
            None => None,
        };
        let username = if flags.username {
            Some(reader.string()?)
        } else {
            None
        };
        let password = if flags.password {
            Some(reader.binary()?)
        } else {
            None
        };
        Ok(Connect {
            protocol,
            clean_start: flags.clean_start,
            keep_alive_secs,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> Result<usize, &'static str> {
        if protocol != self.protocol {
            return Err("CONNECT's protocol differs from the requested protocol");
        }
        check_client_id(protocol, &self.client_id, self.clean_start)?;
        if self.password.is_some() && self.username.is_none() && !protocol.is_v5() {
            return Err("password without user name before MQTT 5.0");
        }
        let mut len = wire::string_len(protocol.name())? + 1 + 1 + 2;
        if protocol.is_v5() {
            len += self.properties.encoded_len(PropertyContext::Connect)?;
            if self.properties.authentication_data.is_some()
                && self.properties.authentication_method.is_none()
            {
                return Err("authentication data without method");
            }
        }
        len += wire::string_len(&self.client_id)?;
        if let Some(will) = &self.will {
            len += will.body_len(protocol)?;
        }
        if let Some(username) = &self.username {
            len += wire::string_len(username)?;
        }
        if let Some(password) = &self.password {
            len += wire::binary_len(password)?;
        }
        Ok(len)
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= FLAG_CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= FLAG_WILL | will.qos.value() << WILL_QOS_SHIFT;
            if will.retain {
                flags |= FLAG_WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= FLAG_USERNAME;
        }
        if self.password.is_some() {
            flags |= FLAG_PASSWORD;
        }
        flags
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        wire::put_string(buf, self.protocol.name());
        buf.put_u8(self.protocol.level());
        buf.put_u8(self.flags());
        buf.put_u16(self.keep_alive_secs);
        if self.protocol.is_v5() {
            self.properties.encode(buf);
        }
        wire::put_string(buf, &self.client_id);
        if let Some(will) = &self.will {
            will.encode(self.protocol, buf);
        }
        if let Some(username) = &self.username {
            wire::put_string(buf, username);
        }
        if let Some(password) = &self.password {
            wire::put_binary(buf, password);
        }
    }
}

/// Client identifier rules the codec can check without policy: MQTT 3.1 requires
/// 1 to 23 characters (the length cap is left to the gate); 3.1.1 allows an empty id
/// only with clean session [MQTT-3.1.3-8]; 5.0 allows it always [MQTT-3.1.3-6].
fn check_client_id(
    protocol: Protocol,
    client_id: &str,
    clean_start: bool,
) -> Result<(), &'static str> {
    if !client_id.is_empty() {
        return Ok(());
    }
    match protocol {
        Protocol::V3_1 => Err("empty client identifier in MQTT 3.1"),
        Protocol::V3_1_1 if !clean_start => Err("empty client identifier without clean session"),
        Protocol::V3_1_1 | Protocol::V5 => Ok(()),
    }
}

impl LastWill {
    fn decode(
        reader: &mut Reader,
        protocol: Protocol,
        qos: QoS,
        retain: bool,
    ) -> Result<LastWill, Error> {
        let properties = if protocol.is_v5() {
            Properties::decode(reader, PropertyContext::Will)?
        } else {
            Properties::default()
        };
        let topic = reader.string()?;
        validate_topic_name(&topic)?;
        let payload = reader.binary()?;
        Ok(LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
    }

    fn body_len(&self, protocol: Protocol) -> Result<usize, &'static str> {
        validate_topic_name(&self.topic).map_err(|_| "will topic is not a valid topic name")?;
        let mut len = wire::string_len(&self.topic)? + wire::binary_len(&self.payload)?;
        if protocol.is_v5() {
            len += self.properties.encoded_len(PropertyContext::Will)?;
        }
        Ok(len)
    }

    fn encode(&self, protocol: Protocol, buf: &mut BytesMut) {
        if protocol.is_v5() {
            self.properties.encode(buf);
        }
        wire::put_string(buf, &self.topic);
        wire::put_binary(buf, &self.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Packet;
    use crate::{decode, encode, ReasonCode};

    fn decode_connect(bytes: &[u8]) -> Result<Connect, Error> {
        let mut buf = BytesMut::from(bytes);
        match decode(&mut buf, None, 1 << 16)? {
            Some(Packet::Connect(connect)) => Ok(*connect),
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }

    fn encoded(connect: &Connect) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode(
            &Packet::Connect(Box::new(connect.clone())),
            connect.protocol,
            &mut buf,
        )
        .expect("encodes");
        buf.to_vec()
    }

    /// Spec 3.1.1 figure 3.6-like CONNECT: user, password, will, keep alive 10.
    const V3_1_1_FULL: &[u8] = &[
        0x10, 0x1C, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xEE, 0x00,
        0x0A, // flags: user, pass, will retain, QoS 1, will, clean
        0x00, 0x01, b'c', 0x00, 0x01, b't', 0x00, 0x02, 0xFF, 0x00, 0x00, 0x01, b'u', 0x00, 0x03,
        0x00, 0xC3, 0x28,
    ];

    #[test]
    fn v3_1_1_connect_with_will_and_binary_password() {
        let connect = decode_connect(V3_1_1_FULL).expect("valid");
        assert_eq!(connect.protocol, Protocol::V3_1_1);
        assert!(connect.clean_start);
        assert_eq!(connect.keep_alive_secs, 10);
        let will = connect.will.clone().expect("will");
        assert_eq!(
            (will.topic.as_str(), &will.payload[..]),
            ("t", &[0xFF, 0x00][..])
        );
        assert_eq!((will.qos, will.retain), (QoS::AtLeastOnce, true));
        assert_eq!(connect.username.as_deref(), Some("u"));
        assert_eq!(
            connect.password.as_deref(),
            Some(&[0x00, 0xC3, 0x28][..]),
            "not UTF-8, kept as bytes"
        );
        assert_eq!(encoded(&connect), V3_1_1_FULL);
    }

    #[test]
    fn v3_1_connect_mqisdp_level_3() {
        let bytes = [
            0x10, 0x0F, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3C,
            0x00, 0x01, b'a',
        ];
        let connect = decode_connect(&bytes).expect("valid");
        assert_eq!(connect.protocol, Protocol::V3_1);
        assert_eq!(encoded(&connect), bytes);
    }

    #[test]
    fn v5_connect_with_properties_and_will_properties() {
        let bytes = [
            0x10, 0x1D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x06, 0x00,
            0x3C, // will + clean
            0x05, 0x11, 0x00, 0x00, 0x00, 0x0A, // session expiry 10
            0x00, 0x00, // empty client id
            0x05, 0x18, 0x00, 0x00, 0x00, 0x05, // will delay 5
            0x00, 0x01, b'w', 0x00, 0x00,
        ];
        let connect = decode_connect(&bytes).expect("valid");
        assert_eq!(connect.protocol, Protocol::V5);
        assert_eq!(connect.properties.session_expiry_interval_secs, Some(10));
        assert_eq!(
            connect
                .will
                .as_ref()
                .and_then(|will| will.properties.will_delay_interval_secs),
            Some(5)
        );
        assert_eq!(encoded(&connect), bytes);
    }

    #[test]
    fn reserved_flag_must_be_zero_mqtt_3_1_2_3() {
        let mut bytes = V3_1_1_FULL.to_vec();
        bytes[9] |= 0x01;
        let error = decode_connect(&bytes).expect_err("reserved bit");
        assert_eq!(error.reason_code(), ReasonCode::MalformedPacket);
    }

    #[test]
    fn will_qos_or_retain_without_will_flag_mqtt_3_1_2_11_13_15() {
        let base = [
            0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x01,
            b'c',
        ];
        assert!(decode_connect(&base).is_ok());
        for flags in [0x0A, 0x12, 0x22] {
            let mut bytes = base;
            bytes[9] = flags;
            assert!(decode_connect(&bytes).is_err(), "flags {flags:#x}");
        }
    }

    #[test]
    fn will_qos_3_is_malformed_mqtt_3_1_2_14() {
        let mut bytes = V3_1_1_FULL.to_vec();
        bytes[9] |= 0x18;
        assert_eq!(
            decode_connect(&bytes),
            Err(Error::MalformedPacket("will QoS 3"))
        );
    }

    #[test]
    fn password_without_username_mqtt_3_1_2_22_but_allowed_in_v5() {
        let v3 = [
            0x10, 0x0F, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x42, 0x00, 0x3C, 0x00, 0x00,
            0x00, 0x01, 0xAA,
        ];
        assert!(decode_connect(&v3).is_err());
        let v5 = [
            0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x42, 0x00, 0x3C, 0x00, 0x00,
            0x00, 0x00, 0x01, 0xAA,
        ];
        let connect = decode_connect(&v5).expect("v5 allows a password alone");
        assert_eq!(connect.password.as_deref(), Some(&[0xAA][..]));
        assert_eq!(connect.username, None);
    }

    #[test]
    fn empty_client_id_rules_mqtt_3_1_3_8() {
        let clean = [
            0x10, 0x0C, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x00,
        ];
        assert!(decode_connect(&clean).is_ok());
        let mut persistent = clean;
        persistent[9] = 0x00;
        let error = decode_connect(&persistent).expect_err("empty id without clean session");
        assert_eq!(error.reason_code(), ReasonCode::ClientIdentifierNotValid);
        let v3_1 = [
            0x10, 0x0E, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3C,
            0x00, 0x00,
        ];
        assert!(decode_connect(&v3_1).is_err());
        let long_id = "x".repeat(100);
        let connect = Connect {
            protocol: Protocol::V3_1,
            client_id: long_id,
            ..Connect::default()
        };
        let bytes = encoded(&connect);
        assert_eq!(
            decode_connect(&bytes),
            Ok(connect),
            "3.1's 23-byte cap is the gate's policy"
        );
    }

    #[test]
    fn unsupported_protocol_level_is_0x84() {
        let bytes = [
            0x10, 0x0C, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x06, 0x02, 0x00, 0x3C, 0x00, 0x00,
        ];
        let error = decode_connect(&bytes).expect_err("level 6");
        assert_eq!(
            error,
            Error::UnsupportedProtocolVersion {
                name: "MQTT".into(),
                level: 6
            }
        );
        assert_eq!(error.reason_code().to_v3_connack(), Some(1));
    }

    #[test]
    fn will_topic_with_wildcard_is_invalid_mqtt_3_1_3_and_4_7() {
        let mut bytes = V3_1_1_FULL.to_vec();
        bytes[17] = b'#';
        let error = decode_connect(&bytes).expect_err("wildcard");
        assert_eq!(error.reason_code(), ReasonCode::TopicNameInvalid);
    }

    #[test]
    fn authentication_data_without_method_is_protocol_error_spec_3_1_2_11_10() {
        let bytes = [
            0x10, 0x11, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C, 0x04, 0x16,
            0x00, 0x01, 0xAB, 0x00, 0x00,
        ];
        assert_eq!(
            decode_connect(&bytes),
            Err(Error::ProtocolError("authentication data without method"))
        );
    }

    #[test]
    fn encode_refuses_protocol_mismatch() {
        let packet = Packet::Connect(Box::default());
        assert!(encode(&packet, Protocol::V3_1_1, &mut BytesMut::new()).is_err());
    }
}
