//! SUBSCRIBE (spec 3.8): a client's request for one or more subscriptions.

use bytes::{BufMut, BytesMut};

use super::{check_packet_id, decode_packet_id};
use crate::error::Error;
use crate::properties::{Properties, PropertyContext};
use crate::protocol::{Protocol, QoS};
use crate::topic::{parse_shared, validate_topic_filter};
use crate::wire::{self, Reader};

const OPTION_NO_LOCAL: u8 = 0b0000_0100;
const OPTION_RETAIN_AS_PUBLISHED: u8 = 0b0000_1000;
const RETAIN_HANDLING_SHIFT: u8 = 4;

/// When retained messages are sent for a new subscription (5.0, spec 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not exist yet.
    SendAtSubscribeIfNew = 1,
    /// 2: do not send them.
    DoNotSend = 2,
}

/// The options byte of one subscription. Only `qos` exists before MQTT 5.0; the other
/// fields decode as their defaults and are not sent to 3.x peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS the subscriber accepts.
    pub qos: QoS,
    /// No Local: do not forward the client's own publications (5.0).
    pub no_local: bool,
    /// Retain As Published: keep the RETAIN flag when forwarding (5.0).
    pub retain_as_published: bool,
    /// Retain Handling (5.0).
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    fn decode(byte: u8, protocol: Protocol) -> Result<SubscriptionOptions, Error> {
        let qos = QoS::decode(byte & 0b11, "subscription QoS 3")?;
        if !protocol.is_v5() {
            if byte & 0b1111_1100 != 0 {
                return Err(Error::MalformedPacket(
                    "SUBSCRIBE options reserved bits set",
                )); // [MQTT-3.8.3-4]
            }
            return Ok(SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            });
        }
        if byte & 0b1100_0000 != 0 {
            return Err(Error::MalformedPacket(
                "SUBSCRIBE options reserved bits set",
            )); // [MQTT-3.8.3-5]
        }
        let retain_handling = match (byte >> RETAIN_HANDLING_SHIFT) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(Error::ProtocolError("retain handling 3")),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & OPTION_NO_LOCAL != 0,
            retain_as_published: byte & OPTION_RETAIN_AS_PUBLISHED != 0,
            retain_handling,
        })
    }

    fn encode(&self, protocol: Protocol) -> u8 {
        let mut byte = self.qos.value();
        if protocol.is_v5() {
            if self.no_local {
                byte |= OPTION_NO_LOCAL;
            }
            if self.retain_as_published {
                byte |= OPTION_RETAIN_AS_PUBLISHED;
            }
            byte |= (self.retain_handling as u8) << RETAIN_HANDLING_SHIFT;
        }
        byte
    }
}

/// A request for one or more subscriptions. Every filter has been checked with
/// [`validate_topic_filter`](crate::validate_topic_filter).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscribe {
    /// Packet Identifier (non-zero).
    pub packet_id: u16,
    /// Topic filters with their options, in order; never empty.
    pub filters: Vec<(String, SubscriptionOptions)>,
    /// Properties (5.0): at most one subscription identifier and user properties.
    pub properties: Properties,
}

impl Subscribe {
    pub(crate) fn decode(reader: &mut Reader, protocol: Protocol) -> Result<Subscribe, Error> {
        let packet_id = decode_packet_id(reader)?;
        let properties = if protocol.is_v5() {
            Properties::decode(reader, PropertyContext::Subscribe)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        // Each entry takes at least three bytes, so this loop is bounded by the body.
        while !reader.is_empty() {
            let filter = reader.string()?;
            validate_topic_filter(&filter)?;
            let options = SubscriptionOptions::decode(reader.u8()?, protocol)?;
            check_shared_no_local(&filter, &options).map_err(Error::ProtocolError)?;
            filters.push((filter, options));
        }
        if filters.is_empty() {
            return Err(Error::ProtocolError("SUBSCRIBE without topic filters"));
            // [MQTT-3.8.3-3]
        }
        Ok(Subscribe {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn body_len(&self, protocol: Protocol) -> Result<usize, &'static str> {
        let mut len = check_packet_id(self.packet_id)?;
        if protocol.is_v5() {
            len += self.properties.encoded_len(PropertyContext::Subscribe)?;
        }
        if self.filters.is_empty() {
            return Err("SUBSCRIBE without topic filters");
        }
        for (filter, options) in &self.filters {
            validate_topic_filter(filter).map_err(|_| "topic filter invalid")?;
            if protocol.is_v5() {
                check_shared_no_local(filter, options)?;
            }
            len += wire::string_len(filter)? + 1;
        }
        Ok(len)
    }

    pub(crate) fn encode_body(&self, protocol: Protocol, buf: &mut BytesMut) {
        buf.put_u16(self.packet_id);
        if protocol.is_v5() {
            self.properties.encode(buf);
        }
        for (filter, options) in &self.filters {
            wire::put_string(buf, filter);
            buf.put_u8(options.encode(protocol));
        }
    }
}

/// No Local on a shared subscription is a protocol error [MQTT-3.8.3-4] (5.0).
fn check_shared_no_local(filter: &str, options: &SubscriptionOptions) -> Result<(), &'static str> {
    if options.no_local && parse_shared(filter).is_some() {
        return Err("no local on a shared subscription");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ack::test_support::round_trip;
    use crate::packet::Packet;
    use crate::{decode, ReasonCode};

    fn decode_error(bytes: &[u8], protocol: Protocol) -> Error {
        let mut buf = BytesMut::from(bytes);
        decode(&mut buf, Some(protocol), 1024).expect_err("invalid SUBSCRIBE")
    }

    #[test]
    fn v3_1_1_two_filters_spec_3_8_3() {
        let bytes = [
            0x82, 0x0C, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x01, 0x00, 0x01, b'c', 0x02,
        ];
        let Packet::Subscribe(subscribe) = round_trip(&bytes, Protocol::V3_1_1) else {
            panic!("SUBSCRIBE")
        };
        assert_eq!(subscribe.packet_id, 10);
        assert_eq!(subscribe.filters[0].0, "a/b");
        let qos_2 = SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            ..SubscriptionOptions::default()
        };
        assert_eq!(subscribe.filters[1], ("c".to_owned(), qos_2));
    }

    #[test]
    fn v3_1_subscribe_may_carry_dup_spec_v3_1_section_3_8() {
        let bytes = [0x82, 0x06, 0x00, 0x02, 0x00, 0x01, b'x', 0x01];
        let Packet::Subscribe(subscribe) = round_trip(&bytes, Protocol::V3_1) else {
            panic!("SUBSCRIBE")
        };
        let retried = [0x8A, 0x06, 0x00, 0x02, 0x00, 0x01, b'x', 0x01];
        let mut buf = BytesMut::from(&retried[..]);
        assert_eq!(
            decode(&mut buf, Some(Protocol::V3_1), 1024),
            Ok(Some(Packet::Subscribe(subscribe)))
        );
    }

    #[test]
    fn v5_options_and_subscription_identifier_spec_3_8_3_1() {
        let bytes = [
            0x82, 0x09, 0x00, 0x01, 0x02, 0x0B, 0x07, 0x00, 0x01, b't', 0x2D,
        ];
        let Packet::Subscribe(subscribe) = round_trip(&bytes, Protocol::V5) else {
            panic!("SUBSCRIBE")
        };
        assert_eq!(subscribe.properties.subscription_identifiers, vec![7]);
        let options = subscribe.filters[0].1;
        assert_eq!(options.qos, QoS::AtLeastOnce);
        assert!(options.no_local);
        assert!(options.retain_as_published);
        assert_eq!(options.retain_handling, RetainHandling::DoNotSend);
    }

    #[test]
    fn zero_filters_is_protocol_error_mqtt_3_8_3_3() {
        let error = decode_error(&[0x82, 0x02, 0x00, 0x01], Protocol::V3_1_1);
        assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
        assert_eq!(
            decode_error(&[0x82, 0x03, 0x00, 0x01, 0x00], Protocol::V5).reason_code(),
            ReasonCode::ProtocolError
        );
    }

    #[test]
    fn v3_options_reserved_bits_mqtt_3_8_3_4() {
        round_trip(
            &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b't', 0x02],
            Protocol::V3_1_1,
        );
        decode_error(
            &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b't', 0x04],
            Protocol::V3_1_1,
        );
        decode_error(
            &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b't', 0x03],
            Protocol::V3_1_1,
        ); // QoS 3
    }

    #[test]
    fn v5_options_reserved_bits_and_retain_handling_3_mqtt_3_8_3_5() {
        let reserved = decode_error(
            &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b't', 0x40],
            Protocol::V5,
        );
        assert_eq!(reserved.reason_code(), ReasonCode::MalformedPacket);
        let handling = decode_error(
            &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b't', 0x30],
            Protocol::V5,
        );
        assert_eq!(handling.reason_code(), ReasonCode::ProtocolError);
    }

    #[test]
    fn invalid_topic_filters_spec_4_7_1() {
        let error = decode_error(
            &[0x82, 0x07, 0x00, 0x01, 0x00, 0x02, b'a', b'#', 0x00],
            Protocol::V3_1_1,
        );
        assert_eq!(error.reason_code(), ReasonCode::TopicFilterInvalid);
        decode_error(
            &[0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00],
            Protocol::V3_1_1,
        ); // empty filter
    }

    #[test]
    fn no_local_on_shared_subscription_mqtt_3_8_3_4_v5() {
        let mut bytes = vec![0x82, 0x00, 0x00, 0x01, 0x00, 0x00, 0x0A];
        bytes.extend_from_slice(b"$share/g/t");
        bytes.push(0x04);
        bytes[1] = (bytes.len() - 2) as u8;
        assert_eq!(
            decode_error(&bytes, Protocol::V5).reason_code(),
            ReasonCode::ProtocolError
        );
    }

    #[test]
    fn fixed_header_flags_must_be_0010_mqtt_3_8_1_1() {
        decode_error(
            &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b't', 0x00],
            Protocol::V3_1_1,
        );
    }

    #[test]
    fn packet_id_zero_is_protocol_error() {
        let error = decode_error(
            &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b't', 0x00],
            Protocol::V3_1_1,
        );
        assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
    }
}
