//! Protocol versions and quality-of-service levels.

use crate::error::Error;

/// The MQTT protocol version a connection speaks, fixed by its CONNECT packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl Protocol {
    /// The protocol name carried in CONNECT.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V3_1 => "MQIsdp",
            Protocol::V3_1_1 | Protocol::V5 => "MQTT",
        }
    }

    /// The protocol level byte carried in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Protocol::V3_1 => 3,
            Protocol::V3_1_1 => 4,
            Protocol::V5 => 5,
        }
    }

    /// True for MQTT 5.0 (properties, reason codes, AUTH).
    pub fn is_v5(self) -> bool {
        self == Protocol::V5
    }

    /// The protocol for a CONNECT's name and level, or `None` if unsupported.
    pub fn from_name_and_level(name: &[u8], level: u8) -> Option<Protocol> {
        match (name, level) {
            (b"MQIsdp", 3) => Some(Protocol::V3_1),
            (b"MQTT", 4) => Some(Protocol::V3_1_1),
            (b"MQTT", 5) => Some(Protocol::V5),
            _ => None,
        }
    }
}

/// Quality of service of a PUBLISH, a will or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    /// QoS 0: fire and forget.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: acknowledged with PUBACK.
    AtLeastOnce = 1,
    /// QoS 2: four-way PUBREC / PUBREL / PUBCOMP handshake.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for its two-bit wire value; 3 is reserved and yields `None`.
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// The wire value (0, 1 or 2).
    pub fn value(self) -> u8 {
        self as u8
    }

    /// Like [`QoS::from_u8`], mapping 3 to a malformed-packet error.
    pub(crate) fn decode(value: u8, what: &'static str) -> Result<QoS, Error> {
        QoS::from_u8(value).ok_or(Error::MalformedPacket(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_levels_round_trip() {
        for protocol in [Protocol::V3_1, Protocol::V3_1_1, Protocol::V5] {
            let name = protocol.name().as_bytes();
            assert_eq!(
                Protocol::from_name_and_level(name, protocol.level()),
                Some(protocol)
            );
        }
        assert_eq!(Protocol::from_name_and_level(b"MQTT", 3), None);
        assert_eq!(Protocol::from_name_and_level(b"MQIsdp", 4), None);
    }

    #[test]
    fn qos_three_is_reserved() {
        assert_eq!(QoS::from_u8(3), None);
        assert_eq!(QoS::from_u8(2), Some(QoS::ExactlyOnce));
    }
}
