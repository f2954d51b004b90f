//! PUBREL (spec 3.6): releases a QoS 2 PUBLISH.

use super::ack::ack_packet;
use crate::reason;

ack_packet!(
    /// PUBREL: releases a QoS 2 PUBLISH.
    PubRel,
    reason::PUBREL_PUBCOMP
);

#[cfg(test)]
mod tests {
    use super::super::ack::test_support::{check_standard_cases, round_trip};
    use super::*;
    use crate::protocol::Protocol;
    use crate::reason::ReasonCode;
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
