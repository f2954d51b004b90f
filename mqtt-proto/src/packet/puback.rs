//! PUBACK (spec 3.4): acknowledges a QoS 1 PUBLISH.

use super::ack::ack_packet;
use crate::reason;

ack_packet!(
    /// PUBACK: acknowledges a QoS 1 PUBLISH.
    PubAck,
    reason::PUBACK_PUBREC
);

#[cfg(test)]
mod tests {
    use super::super::ack::test_support::{check_standard_cases, round_trip};
    use super::*;
    use crate::protocol::Protocol;
    use crate::reason::ReasonCode;
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
