//! MQTT 5.0 properties (spec 2.2.2): one struct with a typed optional field per
//! property, shared by every packet. Which properties a packet may carry is checked
//! against [`PropertyContext`] on decode (malformed packet) and on encode (unencodable).

mod encode;

use bytes::Bytes;

use crate::error::Error;
use crate::protocol::QoS;
use crate::wire::Reader;

/// Payload Format Indicator values (spec 3.3.2.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    /// 0: unspecified bytes.
    Unspecified = 0,
    /// 1: UTF-8 encoded character data.
    Utf8 = 1,
}

/// The properties of an MQTT 5.0 packet (or of a will). Empty by default; always empty
/// when decoded from MQTT 3.x and ignored when encoding for MQTT 3.x.
///
/// The fields are read and written through `Deref`/`DerefMut` to [`PropertyFields`]. They
/// are boxed, and allocated only when one is written: most packets carry none, and inline
/// (over 300 bytes) they made every packet that size, copied each time a packet moved.
#[derive(Clone, Default)]
pub struct Properties(Option<Box<PropertyFields>>);

/// No properties: what an unallocated [`Properties`] reads as.
static EMPTY: PropertyFields = PropertyFields::EMPTY;

impl std::ops::Deref for Properties {
    type Target = PropertyFields;

    fn deref(&self) -> &PropertyFields {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl std::ops::DerefMut for Properties {
    fn deref_mut(&mut self) -> &mut PropertyFields {
        self.0.get_or_insert_with(Box::default)
    }
}

impl Properties {
    /// The fields, by value.
    pub fn into_fields(self) -> PropertyFields {
        self.0.map(|fields| *fields).unwrap_or_default()
    }
}

impl From<PropertyFields> for Properties {
    fn from(fields: PropertyFields) -> Self {
        Self(Some(Box::new(fields)))
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Properties {}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// Every MQTT 5.0 property as a typed optional field (see [`Properties`]).
///
/// Time intervals are in seconds, as on the wire. `user_properties` keeps order and
/// duplicates. `subscription_identifiers` holds many values on PUBLISH and at most one
/// on SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PropertyFields {
    /// 0x01 Payload Format Indicator (PUBLISH, will).
    pub payload_format_indicator: Option<PayloadFormat>,
    /// 0x02 Message Expiry Interval in seconds (PUBLISH, will).
    pub message_expiry_interval_secs: Option<u32>,
    /// 0x03 Content Type (PUBLISH, will).
    pub content_type: Option<String>,
    /// 0x08 Response Topic (PUBLISH, will).
    pub response_topic: Option<String>,
    /// 0x09 Correlation Data (PUBLISH, will).
    pub correlation_data: Option<Bytes>,
    /// 0x0B Subscription Identifiers, each 1..=268,435,455 (PUBLISH many, SUBSCRIBE one).
    pub subscription_identifiers: Vec<u32>,
    /// 0x11 Session Expiry Interval in seconds (CONNECT, CONNACK, DISCONNECT).
    pub session_expiry_interval_secs: Option<u32>,
    /// 0x12 Assigned Client Identifier (CONNACK).
    pub assigned_client_identifier: Option<String>,
    /// 0x13 Server Keep Alive in seconds (CONNACK).
    pub server_keep_alive_secs: Option<u16>,
    /// 0x15 Authentication Method (CONNECT, CONNACK, AUTH).
    pub authentication_method: Option<String>,
    /// 0x16 Authentication Data (CONNECT, CONNACK, AUTH).
    pub authentication_data: Option<Bytes>,
    /// 0x17 Request Problem Information (CONNECT).
    pub request_problem_information: Option<bool>,
    /// 0x18 Will Delay Interval in seconds (will).
    pub will_delay_interval_secs: Option<u32>,
    /// 0x19 Request Response Information (CONNECT).
    pub request_response_information: Option<bool>,
    /// 0x1A Response Information (CONNACK).
    pub response_information: Option<String>,
    /// 0x1C Server Reference (CONNACK, DISCONNECT).
    pub server_reference: Option<String>,
    /// 0x1F Reason String (all acknowledgements, DISCONNECT, AUTH).
    pub reason_string: Option<String>,
    /// 0x21 Receive Maximum, non-zero (CONNECT, CONNACK).
    pub receive_maximum: Option<u16>,
    /// 0x22 Topic Alias Maximum (CONNECT, CONNACK).
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 Topic Alias, non-zero (PUBLISH).
    pub topic_alias: Option<u16>,
    /// 0x24 Maximum QoS, 0 or 1 (CONNACK).
    pub maximum_qos: Option<QoS>,
    /// 0x25 Retain Available (CONNACK).
    pub retain_available: Option<bool>,
    /// 0x26 User Properties, order kept, duplicates allowed (every packet and the will).
    pub user_properties: Vec<(String, String)>,
    /// 0x27 Maximum Packet Size in bytes, non-zero (CONNECT, CONNACK).
    pub maximum_packet_size_bytes: Option<u32>,
    /// 0x28 Wildcard Subscription Available (CONNACK).
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29 Subscription Identifier Available (CONNACK).
    pub subscription_identifier_available: Option<bool>,
    /// 0x2A Shared Subscription Available (CONNACK).
    pub shared_subscription_available: Option<bool>,
}

impl PropertyFields {
    /// No property set.
    pub const EMPTY: Self = Self {
        payload_format_indicator: None,
        message_expiry_interval_secs: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        subscription_identifiers: Vec::new(),
        session_expiry_interval_secs: None,
        assigned_client_identifier: None,
        server_keep_alive_secs: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval_secs: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        topic_alias: None,
        maximum_qos: None,
        retain_available: None,
        user_properties: Vec::new(),
        maximum_packet_size_bytes: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
    };
}

/// Where a property list appears; decides which properties are allowed (spec 2.2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PropertyContext {
    Connect,
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    PubAck,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Whether property `identifier` may appear in `context` (spec 2.2.2.2 table).
fn allowed(identifier: u8, context: PropertyContext) -> bool {
    use PropertyContext as C;
    match identifier {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::MESSAGE_EXPIRY_INTERVAL
        | id::CONTENT_TYPE
        | id::RESPONSE_TOPIC
        | id::CORRELATION_DATA => matches!(context, C::Publish | C::Will),
        id::SUBSCRIPTION_IDENTIFIER => matches!(context, C::Publish | C::Subscribe),
        id::SESSION_EXPIRY_INTERVAL => matches!(context, C::Connect | C::ConnAck | C::Disconnect),
        id::AUTHENTICATION_METHOD | id::AUTHENTICATION_DATA => {
            matches!(context, C::Connect | C::ConnAck | C::Auth)
        }
        id::REQUEST_PROBLEM_INFORMATION | id::REQUEST_RESPONSE_INFORMATION => context == C::Connect,
        id::WILL_DELAY_INTERVAL => context == C::Will,
        id::SERVER_REFERENCE => matches!(context, C::ConnAck | C::Disconnect),
        id::REASON_STRING => matches!(
            context,
            C::ConnAck | C::PubAck | C::SubAck | C::UnsubAck | C::Disconnect | C::Auth
        ),
        id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS_MAXIMUM | id::MAXIMUM_PACKET_SIZE => {
            matches!(context, C::Connect | C::ConnAck)
        }
        id::TOPIC_ALIAS => context == C::Publish,
        id::ASSIGNED_CLIENT_IDENTIFIER
        | id::SERVER_KEEP_ALIVE
        | id::RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => context == C::ConnAck,
        id::USER_PROPERTY => true,
        _ => false,
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), Error> {
    if slot.is_some() {
        return Err(Error::ProtocolError("property included more than once"));
    }
    *slot = Some(value);
    Ok(())
}

fn decode_flag(byte: u8) -> Result<bool, Error> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::ProtocolError("property value must be 0 or 1")),
    }
}

fn decode_non_zero_u16(value: u16, what: &'static str) -> Result<u16, Error> {
    if value == 0 {
        return Err(Error::ProtocolError(what));
    }
    Ok(value)
}

impl Properties {
    /// True if no property is set.
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(|fields| *fields == EMPTY)
    }

    /// Reads a property length and that many bytes of properties.
    pub(crate) fn decode(reader: &mut Reader, context: PropertyContext) -> Result<Self, Error> {
        let len = reader.varint()? as usize;
        let mut properties_reader = Reader::new(reader.take(len)?);
        let mut properties = Properties::default();
        // Each property consumes at least one byte, so this loop ends.
        while !properties_reader.is_empty() {
            properties.decode_one(&mut properties_reader, context)?;
        }
        Ok(properties)
    }

    fn decode_one(&mut self, reader: &mut Reader, context: PropertyContext) -> Result<(), Error> {
        let identifier = reader.u8()?;
        if !allowed(identifier, context) {
            // Spec 2.2.2.2: an identifier not valid for the packet type is malformed.
            return Err(Error::MalformedPacket("property not valid for this packet"));
        }
        match identifier {
            id::PAYLOAD_FORMAT_INDICATOR => {
                let format = match reader.u8()? {
                    0 => PayloadFormat::Unspecified,
                    1 => PayloadFormat::Utf8,
                    _ => return Err(Error::ProtocolError("payload format indicator above 1")),
                };
                set_once(&mut self.payload_format_indicator, format)
            }
            id::MESSAGE_EXPIRY_INTERVAL => {
                set_once(&mut self.message_expiry_interval_secs, reader.u32()?)
            }
            id::CONTENT_TYPE => set_once(&mut self.content_type, reader.string()?),
            id::RESPONSE_TOPIC => {
                let topic = reader.string()?;
                crate::topic::validate_topic_name(&topic)?;
                set_once(&mut self.response_topic, topic)
            }
            id::CORRELATION_DATA => set_once(&mut self.correlation_data, reader.binary()?),
            id::SUBSCRIPTION_IDENTIFIER => self.decode_subscription_identifier(reader, context),
            _ => self.decode_connection_property(identifier, reader),
        }
    }

    fn decode_subscription_identifier(
        &mut self,
        reader: &mut Reader,
        context: PropertyContext,
    ) -> Result<(), Error> {
        let value = reader.varint()?;
        if value == 0 {
            return Err(Error::ProtocolError("subscription identifier 0"));
        }
        if context == PropertyContext::Subscribe && !self.subscription_identifiers.is_empty() {
            return Err(Error::ProtocolError(
                "subscription identifier more than once",
            ));
        }
        self.subscription_identifiers.push(value);
        Ok(())
    }

    fn decode_connection_property(
        &mut self,
        identifier: u8,
        reader: &mut Reader,
    ) -> Result<(), Error> {
        match identifier {
            id::SESSION_EXPIRY_INTERVAL => {
                set_once(&mut self.session_expiry_interval_secs, reader.u32()?)
            }
            id::ASSIGNED_CLIENT_IDENTIFIER => {
                set_once(&mut self.assigned_client_identifier, reader.string()?)
            }
            id::SERVER_KEEP_ALIVE => set_once(&mut self.server_keep_alive_secs, reader.u16()?),
            id::AUTHENTICATION_METHOD => {
                set_once(&mut self.authentication_method, reader.string()?)
            }
            id::AUTHENTICATION_DATA => set_once(&mut self.authentication_data, reader.binary()?),
            id::REQUEST_PROBLEM_INFORMATION => set_once(
                &mut self.request_problem_information,
                decode_flag(reader.u8()?)?,
            ),
            id::WILL_DELAY_INTERVAL => set_once(&mut self.will_delay_interval_secs, reader.u32()?),
            id::REQUEST_RESPONSE_INFORMATION => set_once(
                &mut self.request_response_information,
                decode_flag(reader.u8()?)?,
            ),
            id::RESPONSE_INFORMATION => set_once(&mut self.response_information, reader.string()?),
            id::SERVER_REFERENCE => set_once(&mut self.server_reference, reader.string()?),
            id::REASON_STRING => set_once(&mut self.reason_string, reader.string()?),
            _ => self.decode_limit_property(identifier, reader),
        }
    }

    fn decode_limit_property(&mut self, identifier: u8, reader: &mut Reader) -> Result<(), Error> {
        match identifier {
            id::RECEIVE_MAXIMUM => {
                let value = decode_non_zero_u16(reader.u16()?, "receive maximum 0")?;
                set_once(&mut self.receive_maximum, value)
            }
            id::TOPIC_ALIAS_MAXIMUM => set_once(&mut self.topic_alias_maximum, reader.u16()?),
            id::TOPIC_ALIAS => {
                let value = decode_non_zero_u16(reader.u16()?, "topic alias 0")?;
                set_once(&mut self.topic_alias, value)
            }
            id::MAXIMUM_QOS => {
                let qos = match reader.u8()? {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => return Err(Error::ProtocolError("maximum QoS other than 0 or 1")),
                };
                set_once(&mut self.maximum_qos, qos)
            }
            id::RETAIN_AVAILABLE => {
                set_once(&mut self.retain_available, decode_flag(reader.u8()?)?)
            }
            id::USER_PROPERTY => {
                let name = reader.string()?;
                let value = reader.string()?;
                self.user_properties.push((name, value));
                Ok(())
            }
            id::MAXIMUM_PACKET_SIZE => {
                let value = reader.u32()?;
                if value == 0 {
                    return Err(Error::ProtocolError("maximum packet size 0"));
                }
                set_once(&mut self.maximum_packet_size_bytes, value)
            }
            id::WILDCARD_SUBSCRIPTION_AVAILABLE => set_once(
                &mut self.wildcard_subscription_available,
                decode_flag(reader.u8()?)?,
            ),
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => set_once(
                &mut self.subscription_identifier_available,
                decode_flag(reader.u8()?)?,
            ),
            id::SHARED_SUBSCRIPTION_AVAILABLE => set_once(
                &mut self.shared_subscription_available,
                decode_flag(reader.u8()?)?,
            ),
            // `allowed` accepted only the identifiers matched above and in the callers.
            _ => Err(Error::MalformedPacket("unknown property identifier")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &'static [u8], context: PropertyContext) -> Result<Properties, Error> {
        let mut reader = Reader::new(Bytes::from_static(bytes));
        let properties = Properties::decode(&mut reader, context)?;
        assert!(reader.is_empty());
        Ok(properties)
    }

    #[test]
    fn property_not_valid_for_packet_is_malformed_spec_2_2_2_2() {
        // Topic Alias (0x23) in CONNECT.
        let result = decode(&[3, 0x23, 0, 1], PropertyContext::Connect);
        assert_eq!(
            result.map_err(|error| error.reason_code().value()),
            Err(0x81)
        );
        // Unknown identifier 0x7F.
        assert!(decode(&[2, 0x7F, 0], PropertyContext::Publish).is_err());
    }

    #[test]
    fn duplicate_single_valued_property_is_protocol_error_spec_2_2_2_2() {
        let result = decode(
            &[10, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2],
            PropertyContext::Publish,
        );
        assert_eq!(
            result,
            Err(Error::ProtocolError("property included more than once"))
        );
    }

    #[test]
    fn subscription_identifier_once_on_subscribe_spec_3_8_2_1_2() {
        assert!(decode(&[4, 0x0B, 1, 0x0B, 2], PropertyContext::Subscribe).is_err());
        let publish =
            decode(&[4, 0x0B, 1, 0x0B, 2], PropertyContext::Publish).expect("many on PUBLISH");
        assert_eq!(publish.subscription_identifiers, vec![1, 2]);
    }

    #[test]
    fn invalid_property_values_are_protocol_errors() {
        for (bytes, context) in [
            (&[3u8, 0x21, 0, 0][..], PropertyContext::Connect), // receive maximum 0, 3.1.2.11.3
            (&[5, 0x27, 0, 0, 0, 0][..], PropertyContext::Connect), // maximum packet size 0, 3.1.2.11.4
            (&[2, 0x0B, 0][..], PropertyContext::Publish), // subscription identifier 0, 3.3.2.3.8
            (&[2, 0x01, 2][..], PropertyContext::Publish), // payload format indicator 2, 3.3.2.3.2
            (&[3, 0x23, 0, 0][..], PropertyContext::Publish), // topic alias 0, 3.3.2.3.4
            (&[2, 0x24, 2][..], PropertyContext::ConnAck), // maximum QoS 2, 3.2.2.3.4
            (&[2, 0x17, 2][..], PropertyContext::Connect), // request problem information 2
            (&[2, 0x25, 7][..], PropertyContext::ConnAck), // retain available 7
        ] {
            let bytes: &'static [u8] = Box::leak(bytes.to_vec().into_boxed_slice());
            let error = decode(bytes, context).expect_err("invalid value");
            assert_eq!(error.reason_code().value(), 0x82, "{bytes:?}");
        }
    }

    #[test]
    fn property_length_beyond_body_is_malformed() {
        assert!(decode(&[9, 0x02, 0, 0], PropertyContext::Publish).is_err());
        // A property cut in the middle by the property length.
        assert!(decode(&[2, 0x02, 0], PropertyContext::Publish).is_err());
    }
}
