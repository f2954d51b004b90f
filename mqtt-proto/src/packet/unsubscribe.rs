//! UNSUBSCRIBE (spec 3.10): a client's request to remove subscriptions.

use bytes::{BufMut, BytesMut};

use super::{check_packet_id, decode_packet_id};
use crate::error::Error;
use crate::properties::{Properties, PropertyContext};
use crate::protocol::Protocol;
use crate::topic::validate_topic_filter;
use crate::wire::{self, Reader};

/// A request to remove subscriptions. Every filter has been checked with
/// [`validate_topic_filter`](crate::validate_topic_filter).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unsubscribe {
    /// Packet Identifier (non-zero).
    pub packet_id: u16,
    /// Topic filters, in order; never empty.
    pub filters: Vec<String>,
    /// Properties (5.0): user properties.
    pub properties: Properties,
}

impl Unsubscribe {
    pub(crate) fn decode(reader: &mut Reader, protocol: Protocol) -> Result<Unsubscribe, Error> {
        let packet_id = decode_packet_id(reader)?;
        let properties = if protocol.is_v5() {
            Properties::decode(reader, PropertyContext::Unsubscribe)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        // Each filter takes at least two bytes, so this loop is bounded by the body.
        while !reader.is_empty() {
            let filter = reader.string()?;
            validate_topic_filter(&filter)?;
            filters.push(filter);
        }
        if filters.is_empty() {
            return Err(Error::ProtocolError("UNSUBSCRIBE without topic filters"));
            // [MQTT-3.10.3-2]
        }
        Ok(Unsubscribe {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> Result<usize, &'static str> {
        let mut len = check_packet_id(self.packet_id)?;
        if protocol.is_v5() {
            len += self.properties.encoded_len(PropertyContext::Unsubscribe)?;
        }
        if self.filters.is_empty() {
            return Err("UNSUBSCRIBE without topic filters");
        }
        for filter in &self.filters {
            validate_topic_filter(filter).map_err(|_| "topic filter invalid")?;
            len += wire::string_len(filter)?;
        }
        Ok(len)
    }

    pub(crate) fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) {
        buf.put_u16(self.packet_id);
        if protocol.is_v5() {
            self.properties.encode(buf);
        }
        for filter in &self.filters {
            wire::put_string(buf, filter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ack::test_support::round_trip;
    use crate::packet::Packet;
    use crate::{decode, ReasonCode};

    #[test]
    fn two_filters_spec_3_10_3() {
        let bytes = [
            0xA2, 0x0A, 0x00, 0x11, 0x00, 0x01, b'a', 0x00, 0x03, b'b', b'/', b'+',
        ];
        let Packet::Unsubscribe(unsubscribe) = round_trip(&bytes, Protocol::V3_1_1) else {
            panic!()
        };
        assert_eq!(unsubscribe.filters, vec!["a".to_owned(), "b/+".to_owned()]);
        let v5 = [0xA2, 0x05, 0x00, 0x11, 0x00, 0x00, 0x01, b'a'];
        let mut v5 = v5.to_vec();
        v5[1] = (v5.len() - 2) as u8;
        round_trip(&v5, Protocol::V5);
    }

    #[test]
    fn zero_filters_is_protocol_error_mqtt_3_10_3_2() {
        let mut buf = BytesMut::from(&[0xA2, 0x02, 0x00, 0x01][..]);
        let error = decode(&mut buf, Some(Protocol::V3_1_1), 1024).expect_err("no filters");
        assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
    }

    #[test]
    fn fixed_header_flags_must_be_0010_mqtt_3_10_1_1() {
        let mut buf = BytesMut::from(&[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'][..]);
        assert!(decode(&mut buf, Some(Protocol::V3_1_1), 1024).is_err());
    }

    #[test]
    fn invalid_filter_is_rejected() {
        let mut buf = BytesMut::from(&[0xA2, 0x06, 0x00, 0x01, 0x00, 0x02, b'a', b'+'][..]);
        let error = decode(&mut buf, Some(Protocol::V3_1_1), 1024).expect_err("a+");
        assert_eq!(error.reason_code(), ReasonCode::TopicFilterInvalid);
    }
}
