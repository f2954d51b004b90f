//! Encoding of [`Properties`]: one visitor over the set fields feeds the length, the
//! per-context checks and the writer, so the three cannot disagree.

use bytes::{BufMut, BytesMut};

use super::{allowed, id, Properties, PropertyContext};
use crate::protocol::QoS;
use crate::wire;

/// One property as it goes on the wire; the single source for length, checks and
/// encoding, so the three cannot disagree.
enum Field<'a> {
    Byte(u8, u8),
    U16(u8, u16),
    U32(u8, u32),
    Varint(u8, u32),
    Str(u8, &'a str),
    Bin(u8, &'a [u8]),
    Pair(u8, &'a str, &'a str),
}

impl Field<'_> {
    fn identifier(&self) -> u8 {
        match *self {
            Field::Byte(identifier, _)
            | Field::U16(identifier, _)
            | Field::U32(identifier, _)
            | Field::Varint(identifier, _)
            | Field::Str(identifier, _)
            | Field::Bin(identifier, _)
            | Field::Pair(identifier, _, _) => identifier,
        }
    }

    /// Encoded size including the one-byte identifier, or why it cannot be encoded.
    fn len(&self) -> Result<usize, &'static str> {
        let value_len = match *self {
            Field::Byte(..) => 1,
            Field::U16(..) => 2,
            Field::U32(..) => 4,
            Field::Varint(_, value) => {
                if value == 0 || value > wire::VARINT_MAX {
                    return Err("subscription identifier out of 1..=268435455");
                }
                wire::varint_len(value)
            }
            Field::Str(_, value) => wire::string_len(value)?,
            Field::Bin(_, value) => wire::binary_len(value)?,
            Field::Pair(_, name, value) => wire::string_len(name)? + wire::string_len(value)?,
        };
        Ok(1 + value_len)
    }

    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(self.identifier());
        match *self {
            Field::Byte(_, value) => buf.put_u8(value),
            Field::U16(_, value) => buf.put_u16(value),
            Field::U32(_, value) => buf.put_u32(value),
            Field::Varint(_, value) => wire::put_varint(buf, value),
            Field::Str(_, value) => wire::put_string(buf, value),
            Field::Bin(_, value) => wire::put_binary(buf, value),
            Field::Pair(_, name, value) => {
                wire::put_string(buf, name);
                wire::put_string(buf, value);
            }
        }
    }
}

impl Properties {
    /// Calls `visit` for every property that is set, in identifier order.
    fn for_each_field<'a>(&'a self, visit: &mut dyn FnMut(Field<'a>)) {
        use Field as F;
        if let Some(format) = self.payload_format_indicator {
            visit(F::Byte(id::PAYLOAD_FORMAT_INDICATOR, format as u8));
        }
        if let Some(value) = self.message_expiry_interval_secs {
            visit(F::U32(id::MESSAGE_EXPIRY_INTERVAL, value));
        }
        if let Some(value) = &self.content_type {
            visit(F::Str(id::CONTENT_TYPE, value));
        }
        if let Some(value) = &self.response_topic {
            visit(F::Str(id::RESPONSE_TOPIC, value));
        }
        if let Some(value) = &self.correlation_data {
            visit(F::Bin(id::CORRELATION_DATA, value));
        }
        for value in &self.subscription_identifiers {
            visit(F::Varint(id::SUBSCRIPTION_IDENTIFIER, *value));
        }
        if let Some(value) = self.session_expiry_interval_secs {
            visit(F::U32(id::SESSION_EXPIRY_INTERVAL, value));
        }
        if let Some(value) = &self.assigned_client_identifier {
            visit(F::Str(id::ASSIGNED_CLIENT_IDENTIFIER, value));
        }
        if let Some(value) = self.server_keep_alive_secs {
            visit(F::U16(id::SERVER_KEEP_ALIVE, value));
        }
        if let Some(value) = &self.authentication_method {
            visit(F::Str(id::AUTHENTICATION_METHOD, value));
        }
        if let Some(value) = &self.authentication_data {
            visit(F::Bin(id::AUTHENTICATION_DATA, value));
        }
        if let Some(value) = self.request_problem_information {
            visit(F::Byte(id::REQUEST_PROBLEM_INFORMATION, u8::from(value)));
        }
        if let Some(value) = self.will_delay_interval_secs {
            visit(F::U32(id::WILL_DELAY_INTERVAL, value));
        }
        if let Some(value) = self.request_response_information {
            visit(F::Byte(id::REQUEST_RESPONSE_INFORMATION, u8::from(value)));
        }
        self.for_each_connack_field(visit);
    }

    fn for_each_connack_field<'a>(&'a self, visit: &mut dyn FnMut(Field<'a>)) {
        use Field as F;
        if let Some(value) = &self.response_information {
            visit(F::Str(id::RESPONSE_INFORMATION, value));
        }
        if let Some(value) = &self.server_reference {
            visit(F::Str(id::SERVER_REFERENCE, value));
        }
        if let Some(value) = &self.reason_string {
            visit(F::Str(id::REASON_STRING, value));
        }
        if let Some(value) = self.receive_maximum {
            visit(F::U16(id::RECEIVE_MAXIMUM, value));
        }
        if let Some(value) = self.topic_alias_maximum {
            visit(F::U16(id::TOPIC_ALIAS_MAXIMUM, value));
        }
        if let Some(value) = self.topic_alias {
            visit(F::U16(id::TOPIC_ALIAS, value));
        }
        if let Some(value) = self.maximum_qos {
            visit(F::Byte(id::MAXIMUM_QOS, value.value()));
        }
        if let Some(value) = self.retain_available {
            visit(F::Byte(id::RETAIN_AVAILABLE, u8::from(value)));
        }
        for (name, value) in &self.user_properties {
            visit(F::Pair(id::USER_PROPERTY, name, value));
        }
        if let Some(value) = self.maximum_packet_size_bytes {
            visit(F::U32(id::MAXIMUM_PACKET_SIZE, value));
        }
        if let Some(value) = self.wildcard_subscription_available {
            visit(F::Byte(
                id::WILDCARD_SUBSCRIPTION_AVAILABLE,
                u8::from(value),
            ));
        }
        if let Some(value) = self.subscription_identifier_available {
            visit(F::Byte(
                id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                u8::from(value),
            ));
        }
        if let Some(value) = self.shared_subscription_available {
            visit(F::Byte(id::SHARED_SUBSCRIPTION_AVAILABLE, u8::from(value)));
        }
    }

    /// Checks the values a decoder would reject as protocol errors.
    fn check_values(&self, context: PropertyContext) -> Result<(), &'static str> {
        if self.receive_maximum == Some(0) {
            return Err("receive maximum 0");
        }
        if self.topic_alias == Some(0) {
            return Err("topic alias 0");
        }
        if self.maximum_packet_size_bytes == Some(0) {
            return Err("maximum packet size 0");
        }
        if self.maximum_qos == Some(QoS::ExactlyOnce) {
            return Err("maximum QoS 2 (omit the property instead)");
        }
        if context == PropertyContext::Subscribe && self.subscription_identifiers.len() > 1 {
            return Err("more than one subscription identifier on SUBSCRIBE");
        }
        if let Some(topic) = &self.response_topic {
            crate::topic::validate_topic_name(topic)
                .map_err(|_| "response topic is not a topic name")?;
        }
        Ok(())
    }

    /// Encoded size of the property length plus the properties, or why the
    /// properties cannot be encoded in `context`.
    pub(crate) fn encoded_len(&self, context: PropertyContext) -> Result<usize, &'static str> {
        self.check_values(context)?;
        let mut total: usize = 0;
        let mut failure = None;
        self.for_each_field(&mut |field| {
            if !allowed(field.identifier(), context) {
                failure = Some("property not valid for this packet");
            }
            match field.len() {
                Ok(len) => total += len,
                Err(reason) => failure = Some(reason),
            }
        });
        if let Some(reason) = failure {
            return Err(reason);
        }
        let len = u32::try_from(total)
            .ok()
            .filter(|len| *len <= wire::VARINT_MAX);
        let len = len.ok_or("properties longer than 268435455 bytes")?;
        Ok(wire::varint_len(len) + total)
    }

    /// Writes the property length and the properties; [`Properties::encoded_len`]
    /// must have succeeded for the same context.
    pub(crate) fn encode(&self, buf: &mut BytesMut) {
        let mut total: usize = 0;
        self.for_each_field(&mut |field| total += field.len().unwrap_or(0));
        let total = u32::try_from(total).expect("checked by encoded_len");
        let start = buf.len();
        wire::put_varint(buf, total);
        let body_start = buf.len();
        self.for_each_field(&mut |field| field.encode(buf));
        debug_assert_eq!(buf.len() - body_start, total as usize);
        debug_assert!(buf.len() > start);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::error::Error;
    use crate::properties::{PayloadFormat, PropertyFields};
    use crate::wire::Reader;

    fn decode(bytes: &'static [u8], context: PropertyContext) -> Result<Properties, Error> {
        let mut reader = Reader::new(Bytes::from_static(bytes));
        let properties = Properties::decode(&mut reader, context)?;
        assert!(reader.is_empty());
        Ok(properties)
    }

    fn round_trip(properties: &Properties, context: PropertyContext) -> Properties {
        let len = properties.encoded_len(context).expect("encodable");
        let mut buf = BytesMut::new();
        properties.encode(&mut buf);
        assert_eq!(buf.len(), len);
        let mut reader = Reader::new(buf.freeze());
        Properties::decode(&mut reader, context).expect("decodes")
    }

    #[test]
    fn empty_properties_are_one_zero_byte() {
        assert_eq!(
            decode(&[0], PropertyContext::Publish),
            Ok(Properties::default())
        );
        assert_eq!(
            Properties::default().encoded_len(PropertyContext::Connect),
            Ok(1)
        );
    }

    #[test]
    fn properties_are_allocated_only_when_written_and_keep_packets_small() {
        let mut properties = Properties::default();
        assert!(properties.0.is_none() && properties.is_empty());
        assert_eq!(properties.content_type, None, "reads see no property");
        assert_eq!(properties.clone().0, None);
        properties.topic_alias = Some(2);
        assert!(properties.0.is_some() && !properties.is_empty());
        properties.topic_alias = None;
        assert!(properties.is_empty());
        assert_eq!(properties, Properties::default(), "equal by content");
        // A PUBLISH moves by value through the router several times per delivery.
        let size = std::mem::size_of::<crate::Packet>();
        assert!(size <= 128, "a packet is {size} bytes");
    }

    #[test]
    fn every_connack_property_round_trips() {
        let properties = Properties::from(PropertyFields {
            session_expiry_interval_secs: Some(10),
            assigned_client_identifier: Some("id".into()),
            server_keep_alive_secs: Some(30),
            authentication_method: Some("SCRAM".into()),
            authentication_data: Some(Bytes::from_static(b"\x00\xff")),
            response_information: Some("r".into()),
            server_reference: Some("s".into()),
            reason_string: Some("why".into()),
            receive_maximum: Some(5),
            topic_alias_maximum: Some(0),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            user_properties: vec![("k".into(), "v".into()), ("k".into(), "v".into())],
            maximum_packet_size_bytes: Some(1024),
            wildcard_subscription_available: Some(true),
            subscription_identifier_available: Some(false),
            shared_subscription_available: Some(true),
            ..PropertyFields::default()
        });
        assert_eq!(
            round_trip(&properties, PropertyContext::ConnAck),
            properties
        );
    }

    #[test]
    fn publish_properties_round_trip_with_many_subscription_identifiers() {
        let properties = Properties::from(PropertyFields {
            payload_format_indicator: Some(PayloadFormat::Utf8),
            message_expiry_interval_secs: Some(60),
            content_type: Some("text/plain".into()),
            response_topic: Some("reply/to".into()),
            correlation_data: Some(Bytes::from_static(b"c")),
            subscription_identifiers: vec![1, 268_435_455, 1],
            topic_alias: Some(3),
            ..PropertyFields::default()
        });
        assert_eq!(
            round_trip(&properties, PropertyContext::Publish),
            properties
        );
    }

    #[test]
    fn encode_rejects_properties_not_valid_for_the_packet() {
        let properties = Properties::from(PropertyFields {
            topic_alias: Some(1),
            ..PropertyFields::default()
        });
        assert!(properties.encoded_len(PropertyContext::Connect).is_err());
        let properties = Properties::from(PropertyFields {
            receive_maximum: Some(0),
            ..PropertyFields::default()
        });
        assert!(properties.encoded_len(PropertyContext::Connect).is_err());
    }
}
