//! Target `mqtt_differential`: decode the same bytes with this crate and with
//! `mqttbytes` 0.6 (the codec the design first named; unmaintained since 2021), and
//! check that they agree on accept / reject and on every field both define.
//!
//! MQTT 3.1.1 is compared for every packet type (`mqttbytes::v4`), MQTT 5.0 for PUBLISH
//! only (`mqttbytes::v5`; its other v5 packets model properties and reason codes too
//! differently for a field comparison). Known, intentional differences (docs/fuzzing.md
//! has the table):
//! - [`MQTTBYTES_LAXER`]: rules of the specification that `mqttbytes` does not check; we
//!   reject, it accepts. Each names its clause.
//! - [`comparable`]: packets where we accept and `mqttbytes` refuses or reads other
//!   fields by design: a binary (non-UTF-8) password, an empty user name or password
//!   (absent for `mqttbytes`), an MQTT 3.1 or 5.0 CONNECT (not in `mqttbytes::v4`, which
//!   reads a level 5 CONNECT in the 3.1.1 layout: skipped).
//! - MQTT 5.0 PUBLISH is compared one way only (`Direction::OursAccepted`), and not
//!   at all with Subscription Identifiers (an `mqttbytes` bug, see [`oracle_v5`]).
//!
//! The mapping of our packets onto `mqttbytes`' types repeats the one in
//! `tests/oracle_mqttbytes.rs` (integration tests cannot see this `cfg(test)` module).

use bytes::BytesMut;
use mqttbytes::v4 as o4;
use mqttbytes::v5 as o5;

use super::PACKET_SIZE_MAX_BYTES;
use crate::{decode, Connect, Error, Packet, Protocol, QoS, ReasonCode};

/// Rules we enforce and `mqttbytes` 0.6 does not: a fragment of our error's text, and
/// the clause of MQTT 3.1.1 (or 5.0, where stated) that makes the packet invalid.
pub const MQTTBYTES_LAXER: &[(&str, &str)] = &[
    (
        "fixed header flags invalid",
        "MQTT-2.2.2-2: reserved flags of SUBSCRIBE, UNSUBSCRIBE, PUBREL are 0010",
    ),
    (
        "bytes beyond the packet's fields",
        "MQTT-2.2.3 / 3.x.2: the remaining length is exactly the fields",
    ),
    (
        "packet identifier 0",
        "MQTT-2.3.1-1: a packet identifier is non-zero",
    ),
    ("SUBSCRIBE without topic filters", "MQTT-3.8.3-3"),
    ("UNSUBSCRIBE without topic filters", "MQTT-3.10.3-2"),
    ("wildcard in topic name", "MQTT-3.3.2-2"),
    (
        "U+0000",
        "MQTT-1.5.3-2: a UTF-8 string must not contain U+0000",
    ),
    (
        "topic filter invalid",
        "MQTT-4.7.1-2, 4.7.1-3, 4.7.3-1: topic filter syntax",
    ),
    (
        "empty topic name",
        "MQTT-4.7.3-1: topic names are at least one character",
    ),
    ("DUP set on a QoS 0 PUBLISH", "MQTT-3.3.1-2"),
    ("CONNECT reserved flag set", "MQTT-3.1.2-3"),
    (
        "SUBSCRIBE options reserved bits set",
        "MQTT-3.8.3-4: bits 7-2 of the requested QoS byte are 0",
    ),
    (
        "empty client identifier without clean",
        "MQTT-3.1.3-7, 3.1.3-8: a zero-byte client identifier needs CleanSession 1",
    ),
    (
        "password flag without user name flag",
        "MQTT-3.1.2-22: no password without a user name (3.1.1)",
    ),
    ("session present with a failure code", "MQTT-3.2.2-4"),
    (
        "CONNACK reserved flags set",
        "MQTT 3.1.1 3.2.2.1: acknowledge flags bits 7-1 are reserved, 0",
    ),
];

/// Bytes at the front of a stream: both decoders see the same input, and we check that
/// they agree (panicking with both answers when they do not).
pub fn check(data: &[u8]) {
    let Some(&first_byte) = data.first() else {
        return;
    };
    let packet_type = first_byte >> 4;
    let protocol = (packet_type != 1).then_some(Protocol::V3_1_1);
    let ours = decode(&mut BytesMut::from(data), protocol, PACKET_SIZE_MAX_BYTES);
    let theirs = o4::read(&mut BytesMut::from(data), PACKET_SIZE_MAX_BYTES);
    if let Ok(o4::Packet::Connect(connect)) = &theirs {
        if connect.protocol != mqttbytes::Protocol::V4 {
            // mqttbytes::v4 reads a level 5 CONNECT in the 3.1.1 layout (no properties).
            return;
        }
    }
    compare(&ours, theirs, oracle_v4, Direction::Both, data);
    if packet_type == 3 {
        let ours = decode(
            &mut BytesMut::from(data),
            Some(Protocol::V5),
            PACKET_SIZE_MAX_BYTES,
        );
        let theirs = o5::read(&mut BytesMut::from(data), PACKET_SIZE_MAX_BYTES);
        compare(&ours, theirs, oracle_v5, Direction::OursAccepted, data);
    }
}

/// Which disagreements fail the check.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Every one, except the rules of [`MQTTBYTES_LAXER`].
    Both,
    /// Only where we accept (MQTT 5.0: `mqttbytes` reads properties past their length,
    /// and accepts duplicates, unknown values and properties of other packets, so what it
    /// accepts and we reject is not worth listing rule by rule).
    OursAccepted,
}

fn compare<T: std::fmt::Debug + PartialEq>(
    ours: &Result<Option<Packet>, Error>,
    theirs: Result<T, mqttbytes::Error>,
    map: fn(&Packet) -> Option<T>,
    direction: Direction,
    data: &[u8],
) {
    match (ours, theirs) {
        (Ok(Some(packet)), theirs) => {
            if let Some(expected) = map(packet).filter(|_| comparable(packet)) {
                assert_eq!(
                    theirs.as_ref().ok(),
                    Some(&expected),
                    "{data:02x?}: ours {packet:?}, theirs {theirs:?}"
                );
            }
        }
        (Ok(None), Err(mqttbytes::Error::InsufficientBytes(_))) => {}
        (Ok(None), theirs) => panic!("{data:02x?}: we wait for more bytes, mqttbytes: {theirs:?}"),
        (Err(_), Err(_)) => {}
        (Err(_), Ok(_)) if direction == Direction::OursAccepted => {}
        (Err(error), Ok(theirs)) => {
            let text = error.to_string();
            assert!(
                MQTTBYTES_LAXER
                    .iter()
                    .any(|(fragment, _)| text.contains(fragment)),
                "{data:02x?}: we reject ({error}), mqttbytes accepts {theirs:?}"
            );
        }
    }
}

/// `false` for packets that both decoders accept or refuse differently on purpose.
pub fn comparable(packet: &Packet) -> bool {
    match packet {
        Packet::Connect(connect) => comparable_connect(connect),
        _ => true,
    }
}

fn comparable_connect(connect: &Connect) -> bool {
    let binary_password = connect
        .password
        .as_ref()
        .is_some_and(|password| std::str::from_utf8(password).is_err());
    let empty_login = connect.username.as_deref() == Some("")
        || connect.password.as_ref().is_some_and(|p| p.is_empty());
    connect.protocol == Protocol::V3_1_1 && !binary_password && !empty_login
}

fn oracle_qos(qos: QoS) -> mqttbytes::QoS {
    match qos {
        QoS::AtMostOnce => mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => mqttbytes::QoS::ExactlyOnce,
    }
}

fn oracle_connack_code(reason: ReasonCode) -> o4::ConnectReturnCode {
    match reason.to_v3_connack() {
        Some(0) => o4::ConnectReturnCode::Success,
        Some(1) => o4::ConnectReturnCode::RefusedProtocolVersion,
        Some(2) => o4::ConnectReturnCode::BadClientId,
        Some(3) => o4::ConnectReturnCode::ServiceUnavailable,
        Some(4) => o4::ConnectReturnCode::BadUserNamePassword,
        _ => o4::ConnectReturnCode::NotAuthorized,
    }
}

fn oracle_suback_code(reason: ReasonCode) -> o4::SubscribeReasonCode {
    match reason {
        ReasonCode::Success => o4::SubscribeReasonCode::Success(mqttbytes::QoS::AtMostOnce),
        ReasonCode::GrantedQoS1 => o4::SubscribeReasonCode::Success(mqttbytes::QoS::AtLeastOnce),
        ReasonCode::GrantedQoS2 => o4::SubscribeReasonCode::Success(mqttbytes::QoS::ExactlyOnce),
        _ => o4::SubscribeReasonCode::Failure,
    }
}

fn oracle_connect(connect: &Connect) -> o4::Connect {
    let password = connect
        .password
        .as_ref()
        .map(|password| String::from_utf8_lossy(password).into_owned());
    let login = connect.username.as_ref().map(|username| o4::Login {
        username: username.clone(),
        password: password.unwrap_or_default(),
    });
    o4::Connect {
        protocol: mqttbytes::Protocol::V4,
        keep_alive: connect.keep_alive_secs,
        client_id: connect.client_id.clone(),
        clean_session: connect.clean_start,
        last_will: connect.will.as_ref().map(|will| o4::LastWill {
            topic: will.topic.clone(),
            message: will.payload.clone(),
            qos: oracle_qos(will.qos),
            retain: will.retain,
        }),
        login,
    }
}

/// Our packet as `mqttbytes::v4` models it.
pub fn oracle_v4(packet: &Packet) -> Option<o4::Packet> {
    let oracle = match packet {
        Packet::Connect(connect) => o4::Packet::Connect(oracle_connect(connect)),
        Packet::ConnAck(connack) => o4::Packet::ConnAck(o4::ConnAck {
            session_present: connack.session_present,
            code: oracle_connack_code(connack.reason),
        }),
        Packet::Publish(publish) => o4::Packet::Publish(o4::Publish {
            dup: publish.dup,
            qos: oracle_qos(publish.qos),
            retain: publish.retain,
            topic: publish.topic.clone(),
            pkid: publish.packet_id.unwrap_or(0),
            payload: publish.payload.clone(),
        }),
        Packet::PubAck(ack) => o4::Packet::PubAck(o4::PubAck {
            pkid: ack.packet_id,
        }),
        Packet::PubRec(ack) => o4::Packet::PubRec(o4::PubRec {
            pkid: ack.packet_id,
        }),
        Packet::PubRel(ack) => o4::Packet::PubRel(o4::PubRel {
            pkid: ack.packet_id,
        }),
        Packet::PubComp(ack) => o4::Packet::PubComp(o4::PubComp {
            pkid: ack.packet_id,
        }),
        Packet::Subscribe(subscribe) => o4::Packet::Subscribe(o4::Subscribe {
            pkid: subscribe.packet_id,
            filters: subscribe
                .filters
                .iter()
                .map(|(path, options)| o4::SubscribeFilter {
                    path: path.clone(),
                    qos: oracle_qos(options.qos),
                })
                .collect(),
        }),
        Packet::SubAck(suback) => o4::Packet::SubAck(o4::SubAck {
            pkid: suback.packet_id,
            return_codes: suback
                .reasons
                .iter()
                .copied()
                .map(oracle_suback_code)
                .collect(),
        }),
        Packet::Unsubscribe(unsubscribe) => o4::Packet::Unsubscribe(o4::Unsubscribe {
            pkid: unsubscribe.packet_id,
            topics: unsubscribe.filters.clone(),
        }),
        Packet::UnsubAck(unsuback) => o4::Packet::UnsubAck(o4::UnsubAck {
            pkid: unsuback.packet_id,
        }),
        Packet::PingReq => o4::Packet::PingReq,
        Packet::PingResp => o4::Packet::PingResp,
        Packet::Disconnect(_) => o4::Packet::Disconnect,
        Packet::Auth(_) => return None,
    };
    Some(oracle)
}

/// Our MQTT 5.0 PUBLISH as `mqttbytes::v5` models it (other packets: not compared).
pub fn oracle_v5(packet: &Packet) -> Option<o5::Packet> {
    let Packet::Publish(publish) = packet else {
        return None;
    };
    let p = &publish.properties;
    if !p.subscription_identifiers.is_empty() {
        // mqttbytes 0.6 (src/v5/publish.rs) counts a Subscription Identifier's property
        // byte twice against the property length, so it stops reading properties early
        // and takes the rest for payload.
        return None;
    }
    let properties = (!p.is_empty()).then(|| o5::PublishProperties {
        payload_format_indicator: p.payload_format_indicator.map(|format| format as u8),
        message_expiry_interval: p.message_expiry_interval_secs,
        topic_alias: p.topic_alias,
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
        subscription_identifiers: p
            .subscription_identifiers
            .iter()
            .map(|id| *id as usize)
            .collect(),
        content_type: p.content_type.clone(),
    });
    Some(o5::Packet::Publish(o5::Publish {
        dup: publish.dup,
        qos: oracle_qos(publish.qos),
        retain: publish.retain,
        topic: publish.topic.clone(),
        pkid: publish.packet_id.unwrap_or(0),
        properties,
        payload: publish.payload.clone(),
    }))
}
