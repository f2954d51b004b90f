//! The packet types, one file each, and the dispatch between the fixed header
//! (spec 2.1) and the packet bodies.
//!
//! Every packet type implements, crate-internally, the same three steps:
//! `decode(reader, flags/protocol)` for the body, `body_len(protocol)` which also
//! checks that the packet can be encoded, and `encode_body(protocol, buf)` which
//! cannot fail once `body_len` succeeded.

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod puback;
mod pubcomp;
mod publish;
mod pubrec;
mod pubrel;
mod suback;
mod subscribe;
mod unsuback;
mod unsubscribe;

pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, LastWill};
pub use disconnect::Disconnect;
pub use puback::PubAck;
pub use pubcomp::PubComp;
pub use publish::Publish;
pub use pubrec::PubRec;
pub use pubrel::PubRel;
pub use suback::SubAck;
pub use subscribe::{RetainHandling, Subscribe, SubscriptionOptions};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

use bytes::BytesMut;

use crate::error::Error;
use crate::protocol::Protocol;
use crate::wire::Reader;

/// The control packet type: the high nibble of the first byte (spec 2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 1: client request to connect.
    Connect = 1,
    /// 2: connect acknowledgement.
    ConnAck = 2,
    /// 3: publish message.
    Publish = 3,
    /// 4: publish acknowledgement (QoS 1).
    PubAck = 4,
    /// 5: publish received (QoS 2, part 1).
    PubRec = 5,
    /// 6: publish release (QoS 2, part 2).
    PubRel = 6,
    /// 7: publish complete (QoS 2, part 3).
    PubComp = 7,
    /// 8: subscribe request.
    Subscribe = 8,
    /// 9: subscribe acknowledgement.
    SubAck = 9,
    /// 10: unsubscribe request.
    Unsubscribe = 10,
    /// 11: unsubscribe acknowledgement.
    UnsubAck = 11,
    /// 12: ping request.
    PingReq = 12,
    /// 13: ping response.
    PingResp = 13,
    /// 14: disconnect notification.
    Disconnect = 14,
    /// 15: authentication exchange (MQTT 5.0 only).
    Auth = 15,
}

impl PacketType {
    /// The packet type for a first byte's high nibble; 0 is reserved.
    pub fn from_u8(value: u8) -> Option<PacketType> {
        use PacketType as T;
        let packet_type = match value {
            1 => T::Connect,
            2 => T::ConnAck,
            3 => T::Publish,
            4 => T::PubAck,
            5 => T::PubRec,
            6 => T::PubRel,
            7 => T::PubComp,
            8 => T::Subscribe,
            9 => T::SubAck,
            10 => T::Unsubscribe,
            11 => T::UnsubAck,
            12 => T::PingReq,
            13 => T::PingResp,
            14 => T::Disconnect,
            15 => T::Auth,
            _ => return None,
        };
        Some(packet_type)
    }

    /// The fixed-header flags this type must carry (spec 2.1.3, table 2-2); `None` for
    /// PUBLISH, whose flags carry DUP, QoS and RETAIN.
    pub fn required_flags(self) -> Option<u8> {
        match self {
            PacketType::Publish => None,
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }
}

/// One MQTT control packet, in the form shared by every protocol version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT, boxed: it is by far the largest packet and arrives once per
    /// connection, so the other variants need not carry its size.
    Connect(Box<Connect>),
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(PubAck),
    /// PUBREC.
    PubRec(PubRec),
    /// PUBREL.
    PubRel(PubRel),
    /// PUBCOMP.
    PubComp(PubComp),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect),
    /// AUTH (MQTT 5.0 only).
    Auth(Auth),
}

impl Packet {
    /// The packet's control packet type.
    pub fn packet_type(&self) -> PacketType {
        use PacketType as T;
        match self {
            Packet::Connect(_) => T::Connect,
            Packet::ConnAck(_) => T::ConnAck,
            Packet::Publish(_) => T::Publish,
            Packet::PubAck(_) => T::PubAck,
            Packet::PubRec(_) => T::PubRec,
            Packet::PubRel(_) => T::PubRel,
            Packet::PubComp(_) => T::PubComp,
            Packet::Subscribe(_) => T::Subscribe,
            Packet::SubAck(_) => T::SubAck,
            Packet::Unsubscribe(_) => T::Unsubscribe,
            Packet::UnsubAck(_) => T::UnsubAck,
            Packet::PingReq => T::PingReq,
            Packet::PingResp => T::PingResp,
            Packet::Disconnect(_) => T::Disconnect,
            Packet::Auth(_) => T::Auth,
        }
    }

    /// The low nibble of the first byte.
    pub(crate) fn flags(&self) -> u8 {
        match self {
            Packet::Publish(publish) => publish.flags(),
            other => other.packet_type().required_flags().unwrap_or(0),
        }
    }

    /// Decodes a body whose fixed header has been checked by [`check_first_byte`].
    pub(crate) fn decode_body(
        packet_type: PacketType,
        flags: u8,
        reader: &mut Reader,
        protocol: Protocol,
    ) -> Result<Packet, Error> {
        use PacketType as T;
        let packet = match packet_type {
            // Unreachable: check_first_byte admits CONNECT only with `protocol = None`,
            // which `crate::decode` handles itself. Decoding it anyway keeps this total.
            T::Connect => Packet::Connect(Box::new(Connect::decode(reader)?)),
            T::ConnAck => Packet::ConnAck(ConnAck::decode(reader, protocol)?),
            T::Publish => Packet::Publish(Publish::decode(reader, flags, protocol)?),
            T::PubAck => Packet::PubAck(PubAck::decode(reader, protocol)?),
            T::PubRec => Packet::PubRec(PubRec::decode(reader, protocol)?),
            T::PubRel => Packet::PubRel(PubRel::decode(reader, protocol)?),
            T::PubComp => Packet::PubComp(PubComp::decode(reader, protocol)?),
            T::Subscribe => Packet::Subscribe(Subscribe::decode(reader, protocol)?),
            T::SubAck => Packet::SubAck(SubAck::decode(reader, protocol)?),
            T::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(reader, protocol)?),
            T::UnsubAck => Packet::UnsubAck(UnsubAck::decode(reader, protocol)?),
            T::PingReq => Packet::PingReq,
            T::PingResp => Packet::PingResp,
            T::Disconnect => Packet::Disconnect(Disconnect::decode(reader, protocol)?),
            T::Auth => Packet::Auth(Auth::decode(reader, protocol)?),
        };
        if !reader.is_empty() {
            return Err(Error::MalformedPacket("bytes beyond the packet's fields"));
        }
        Ok(packet)
    }

    /// Size of the body (the remaining length), checking that the packet can be
    /// encoded for `protocol`.
    pub(crate) fn body_len(&self, protocol: Protocol) -> Result<usize, Error> {
        let result = match self {
            Packet::Connect(connect) => connect.body_len(protocol),
            Packet::ConnAck(connack) => connack.body_len(protocol),
            Packet::Publish(publish) => publish.body_len(protocol),
            Packet::PubAck(puback) => puback.body_len(protocol),
            Packet::PubRec(pubrec) => pubrec.body_len(protocol),
            Packet::PubRel(pubrel) => pubrel.body_len(protocol),
            Packet::PubComp(pubcomp) => pubcomp.body_len(protocol),
            Packet::Subscribe(subscribe) => subscribe.body_len(protocol),
            Packet::SubAck(suback) => suback.body_len(protocol),
            Packet::Unsubscribe(unsubscribe) => unsubscribe.body_len(protocol),
            Packet::UnsubAck(unsuback) => unsuback.body_len(protocol),
            Packet::PingReq | Packet::PingResp => Ok(0),
            Packet::Disconnect(disconnect) => disconnect.body_len(protocol),
            Packet::Auth(auth) => auth.body_len(protocol),
        };
        result.map_err(|reason| Error::Unencodable {
            packet: self.packet_type(),
            protocol,
            reason,
        })
    }

    /// Writes the body; [`Packet::body_len`] must have succeeded for `protocol`.
    pub(crate) fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) {
        match self {
            Packet::Connect(connect) => connect.encode_body(buf),
            Packet::ConnAck(connack) => connack.encode_body(protocol, buf),
            Packet::Publish(publish) => publish.encode_body(protocol, buf),
            Packet::PubAck(puback) => puback.encode_body(protocol, buf),
            Packet::PubRec(pubrec) => pubrec.encode_body(protocol, buf),
            Packet::PubRel(pubrel) => pubrel.encode_body(protocol, buf),
            Packet::PubComp(pubcomp) => pubcomp.encode_body(protocol, buf),
            Packet::Subscribe(subscribe) => subscribe.encode_body(protocol, buf),
            Packet::SubAck(suback) => suback.encode_body(protocol, buf),
            Packet::Unsubscribe(unsubscribe) => unsubscribe.encode_body(protocol, buf),
            Packet::UnsubAck(unsuback) => unsuback.encode_body(protocol, buf),
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(disconnect) => disconnect.encode_body(protocol, buf),
            Packet::Auth(auth) => auth.encode_body(buf),
        }
    }
}

/// Checks the first byte of a packet: a defined type for the protocol, the flags that
/// type requires [MQTT-2.2.2-2], and CONNECT first and only first [MQTT-3.1.0-1],
/// [MQTT-3.1.0-2]. Runs before the body is buffered, so garbage is rejected at once.
pub(crate) fn check_first_byte(byte: u8, protocol: Option<Protocol>) -> Result<PacketType, Error> {
    let packet_type =
        PacketType::from_u8(byte >> 4).ok_or(Error::MalformedPacket("reserved packet type 0"))?;
    let flags = byte & 0x0F;
    match (protocol, packet_type) {
        (None, PacketType::Connect) => {}
        (None, _) => return Err(Error::ProtocolError("first packet is not CONNECT")),
        (Some(_), PacketType::Connect) => return Err(Error::ProtocolError("second CONNECT")),
        (Some(Protocol::V3_1 | Protocol::V3_1_1), PacketType::Auth) => {
            return Err(Error::MalformedPacket(
                "packet type 15 is reserved before MQTT 5.0",
            ))
        }
        (Some(_), _) => {}
    }
    let Some(required) = packet_type.required_flags() else {
        return Ok(packet_type);
    };
    // MQTT 3.1 sent SUBSCRIBE, UNSUBSCRIBE and PUBREL with QoS 1 and let retries set DUP.
    let dup_allowed = protocol == Some(Protocol::V3_1) && required == 0b0010;
    if flags == required || (dup_allowed && flags == required | 0b1000) {
        return Ok(packet_type);
    }
    Err(Error::MalformedPacket(
        "fixed header flags invalid for packet type",
    ))
}

/// Reads a Packet Identifier, which must be non-zero [MQTT-2.2.1-3].
pub(crate) fn decode_packet_id(reader: &mut Reader) -> Result<u16, Error> {
    let packet_id = reader.u16()?;
    if packet_id == 0 {
        return Err(Error::ProtocolError("packet identifier 0"));
    }
    Ok(packet_id)
}

/// Encode-side twin of [`decode_packet_id`].
pub(crate) fn check_packet_id(packet_id: u16) -> Result<usize, &'static str> {
    if packet_id == 0 {
        return Err("packet identifier 0");
    }
    Ok(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_flags_must_match_table_2_2_mqtt_2_2_2_2() {
        let v5 = Some(Protocol::V5);
        assert_eq!(check_first_byte(0x82, v5), Ok(PacketType::Subscribe));
        assert!(check_first_byte(0x80, v5).is_err());
        assert!(check_first_byte(0xA0, v5).is_err());
        assert_eq!(check_first_byte(0xA2, v5), Ok(PacketType::Unsubscribe));
        assert!(check_first_byte(0x60, v5).is_err());
        assert_eq!(check_first_byte(0x62, v5), Ok(PacketType::PubRel));
        assert!(check_first_byte(0x41, v5).is_err());
        assert!(check_first_byte(0xC1, v5).is_err());
        assert!(check_first_byte(0xE8, v5).is_err());
        assert_eq!(check_first_byte(0x3F, v5), Ok(PacketType::Publish));
    }

    #[test]
    fn mqtt_3_1_allows_dup_on_qos1_control_packets() {
        let v3_1 = Some(Protocol::V3_1);
        assert_eq!(check_first_byte(0x8A, v3_1), Ok(PacketType::Subscribe));
        assert_eq!(check_first_byte(0x6A, v3_1), Ok(PacketType::PubRel));
        assert!(check_first_byte(0x8A, Some(Protocol::V3_1_1)).is_err());
        assert!(check_first_byte(0x4A, v3_1).is_err());
    }

    #[test]
    fn connect_first_and_only_first_mqtt_3_1_0_1_and_2() {
        assert_eq!(check_first_byte(0x10, None), Ok(PacketType::Connect));
        assert_eq!(
            check_first_byte(0x30, None),
            Err(Error::ProtocolError("first packet is not CONNECT"))
        );
        assert_eq!(
            check_first_byte(0x10, Some(Protocol::V5)),
            Err(Error::ProtocolError("second CONNECT"))
        );
    }

    #[test]
    fn packet_type_zero_and_auth_before_v5_are_rejected() {
        assert!(check_first_byte(0x00, Some(Protocol::V5)).is_err());
        assert!(check_first_byte(0xF0, Some(Protocol::V3_1_1)).is_err());
        assert_eq!(
            check_first_byte(0xF0, Some(Protocol::V5)),
            Ok(PacketType::Auth)
        );
    }
}
