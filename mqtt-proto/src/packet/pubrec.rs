//! PUBREC (spec 3.5): acknowledges receipt of a QoS 2 PUBLISH.

use super::ack::ack_packet;
use crate::reason;

ack_packet!(
    /// PUBREC: acknowledges receipt of a QoS 2 PUBLISH.
    PubRec,
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
    fn short_and_long_forms_spec_3_5_2() {
        check_standard_cases(0x50, 0x10);
        let packet = round_trip(&[0x50, 0x03, 0x00, 0x01, 0x10], Protocol::V5);
        let expected = PubRec {
            packet_id: 1,
            reason: ReasonCode::from_u8(0x10).expect("defined"),
            ..PubRec::default()
        };
        assert_eq!(packet, Packet::PubRec(expected));
    }
}
