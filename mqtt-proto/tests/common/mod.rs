//! proptest strategies for valid packets of each protocol version.

#![allow(dead_code)]

use bytes::Bytes;
use fox_mqtt_proto::{
    Auth, ConnAck, Connect, Disconnect, LastWill, Packet, PayloadFormat, Properties,
    PropertyFields, Protocol, PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode,
    RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// 512 cases, or `PROPTEST_CASES` from the environment for a longer run.
pub fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok());
    ProptestConfig {
        cases: cases.unwrap_or(512),
        ..ProptestConfig::default()
    }
}

pub const PROTOCOLS: [Protocol; 3] = [Protocol::V3_1, Protocol::V3_1_1, Protocol::V5];

pub fn protocol() -> impl Strategy<Value = Protocol> {
    prop::sample::select(PROTOCOLS.to_vec())
}

pub fn qos() -> impl Strategy<Value = QoS> {
    prop::sample::select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

/// Printable text without wildcards or U+0000, possibly non-ASCII.
pub fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _/$é€😀-]{0,12}"
}

pub fn topic_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _/$é€-]{1,16}"
}

pub fn topic_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![Just("+".to_owned()), "[a-z0-9é]{0,4}"];
    let plain = (vec(level, 1..4), any::<bool>()).prop_map(|(levels, hash)| {
        let mut filter = levels.join("/");
        if hash {
            filter.push_str(if filter.is_empty() { "#" } else { "/#" });
        }
        if filter.is_empty() {
            filter.push('x');
        }
        filter
    });
    (plain, option::weighted(0.2, "[a-z0-9]{1,4}")).prop_map(|(filter, group)| match group {
        Some(group) => format!("$share/{group}/{filter}"),
        None => filter,
    })
}

pub fn bytes(max_len: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max_len).prop_map(Bytes::from)
}

pub fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn user_properties() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((text(), text()), 0..3)
}

/// Properties that are valid in every context that allows them; `allowed` picks the
/// fields for one context by name.
fn any_properties() -> impl Strategy<Value = Properties> {
    let publish = (
        option::of(prop::sample::select(vec![
            PayloadFormat::Unspecified,
            PayloadFormat::Utf8,
        ])),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic_name()),
        option::of(bytes(8)),
        vec(1..=268_435_455u32, 0..3),
        option::of(1..=u16::MAX),
    );
    let connection = (
        option::of(any::<u32>()),
        option::of(text()),
        option::of(any::<u16>()),
        option::of(text()),
        option::of(bytes(8)),
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(any::<bool>()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
    );
    let limits = (
        option::of(1..=u16::MAX),
        option::of(any::<u16>()),
        option::of(prop::sample::select(vec![
            QoS::AtMostOnce,
            QoS::AtLeastOnce,
        ])),
        option::of(any::<bool>()),
        user_properties(),
        option::of(1..=u32::MAX),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
    );
    (publish, connection, limits).prop_map(|(publish, connection, limits)| {
        Properties::from(PropertyFields {
            payload_format_indicator: publish.0,
            message_expiry_interval_secs: publish.1,
            content_type: publish.2,
            response_topic: publish.3,
            correlation_data: publish.4,
            subscription_identifiers: publish.5,
            topic_alias: publish.6,
            session_expiry_interval_secs: connection.0,
            assigned_client_identifier: connection.1,
            server_keep_alive_secs: connection.2,
            authentication_method: connection.3,
            authentication_data: connection.4,
            request_problem_information: connection.5,
            will_delay_interval_secs: connection.6,
            request_response_information: connection.7,
            response_information: connection.8,
            server_reference: connection.9,
            reason_string: connection.10,
            receive_maximum: limits.0,
            topic_alias_maximum: limits.1,
            maximum_qos: limits.2,
            retain_available: limits.3,
            user_properties: limits.4,
            maximum_packet_size_bytes: limits.5,
            wildcard_subscription_available: limits.6,
            subscription_identifier_available: limits.7,
            shared_subscription_available: limits.8,
        })
    })
}

/// The contexts of spec 2.2.2.2, as far as tests need them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Context {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubAck,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

/// Keeps only the properties `context` allows.
pub fn restrict(p: Properties, context: Context) -> Properties {
    use Context as C;
    let is = |contexts: &[Context]| contexts.contains(&context);
    let keep = |value: bool| value;
    let p = p.into_fields();
    let mut out = Properties::from(PropertyFields {
        user_properties: p.user_properties,
        ..PropertyFields::default()
    });
    if is(&[C::Publish, C::Will]) {
        out.payload_format_indicator = p.payload_format_indicator;
        out.message_expiry_interval_secs = p.message_expiry_interval_secs;
        out.content_type = p.content_type;
        out.response_topic = p.response_topic;
        out.correlation_data = p.correlation_data;
    }
    if context == C::Publish {
        out.subscription_identifiers = p.subscription_identifiers;
        out.topic_alias = p.topic_alias;
    } else if context == C::Subscribe {
        out.subscription_identifiers = p.subscription_identifiers.into_iter().take(1).collect();
    }
    if is(&[C::Connect, C::ConnAck, C::Disconnect]) {
        out.session_expiry_interval_secs = p.session_expiry_interval_secs;
    }
    if is(&[C::Connect, C::ConnAck, C::Auth]) {
        out.authentication_method = p.authentication_method;
        out.authentication_data = if out.authentication_method.is_some() {
            p.authentication_data
        } else {
            None
        };
    }
    if context == C::Connect {
        out.request_problem_information = p.request_problem_information;
        out.request_response_information = p.request_response_information;
    }
    if context == C::Will {
        out.will_delay_interval_secs = p.will_delay_interval_secs;
    }
    if is(&[C::ConnAck, C::Disconnect]) {
        out.server_reference = p.server_reference;
    }
    if is(&[
        C::ConnAck,
        C::PubAck,
        C::SubAck,
        C::UnsubAck,
        C::Disconnect,
        C::Auth,
    ]) {
        out.reason_string = p.reason_string;
    }
    if is(&[C::Connect, C::ConnAck]) {
        out.receive_maximum = p.receive_maximum;
        out.topic_alias_maximum = p.topic_alias_maximum;
        out.maximum_packet_size_bytes = p.maximum_packet_size_bytes;
    }
    if keep(context == C::ConnAck) {
        out.assigned_client_identifier = p.assigned_client_identifier;
        out.server_keep_alive_secs = p.server_keep_alive_secs;
        out.response_information = p.response_information;
        out.maximum_qos = p.maximum_qos;
        out.retain_available = p.retain_available;
        out.wildcard_subscription_available = p.wildcard_subscription_available;
        out.subscription_identifier_available = p.subscription_identifier_available;
        out.shared_subscription_available = p.shared_subscription_available;
    }
    out
}

/// Properties for `context`, or none at all before MQTT 5.0.
pub fn properties(protocol: Protocol, context: Context) -> BoxedStrategy<Properties> {
    if protocol != Protocol::V5 {
        return Just(Properties::default()).boxed();
    }
    option::weighted(0.7, any_properties())
        .prop_map(move |p| p.map(|p| restrict(p, context)).unwrap_or_default())
        .boxed()
}

fn reason(codes: &'static [ReasonCode]) -> impl Strategy<Value = ReasonCode> {
    prop::sample::select(codes)
}

const CONNACK_V3: &[ReasonCode] = &[
    ReasonCode::Success,
    ReasonCode::UnsupportedProtocolVersion,
    ReasonCode::ClientIdentifierNotValid,
    ReasonCode::ServerUnavailable,
    ReasonCode::BadUserNameOrPassword,
    ReasonCode::NotAuthorized,
];
const CONNACK_V5: &[ReasonCode] = &[
    ReasonCode::Success,
    ReasonCode::UnspecifiedError,
    ReasonCode::MalformedPacket,
    ReasonCode::Banned,
    ReasonCode::ServerMoved,
];
const PUBACK_V5: &[ReasonCode] = &[
    ReasonCode::Success,
    ReasonCode::NoMatchingSubscribers,
    ReasonCode::QuotaExceeded,
    ReasonCode::PayloadFormatInvalid,
];
const PUBREL_V5: &[ReasonCode] = &[ReasonCode::Success, ReasonCode::PacketIdentifierNotFound];
const SUBACK_V3: &[ReasonCode] = &[
    ReasonCode::Success,
    ReasonCode::GrantedQoS1,
    ReasonCode::GrantedQoS2,
    ReasonCode::UnspecifiedError,
];
const SUBACK_V5: &[ReasonCode] = &[
    ReasonCode::Success,
    ReasonCode::GrantedQoS2,
    ReasonCode::NotAuthorized,
    ReasonCode::WildcardSubscriptionsNotSupported,
];
const UNSUBACK_V5: &[ReasonCode] = &[
    ReasonCode::Success,
    ReasonCode::NoSubscriptionExisted,
    ReasonCode::TopicFilterInvalid,
];
const DISCONNECT_V5: &[ReasonCode] = &[
    ReasonCode::Success,
    ReasonCode::DisconnectWithWillMessage,
    ReasonCode::ServerShuttingDown,
    ReasonCode::PacketTooLarge,
];
const AUTH_V5: &[ReasonCode] = &[
    ReasonCode::Success,
    ReasonCode::ContinueAuthentication,
    ReasonCode::ReAuthenticate,
];

fn success_only(protocol: Protocol, v5: &'static [ReasonCode]) -> BoxedStrategy<ReasonCode> {
    if protocol == Protocol::V5 {
        reason(v5).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    }
}

pub fn connect(protocol: Protocol) -> impl Strategy<Value = Connect> {
    let will = option::of((
        topic_name(),
        bytes(16),
        qos(),
        any::<bool>(),
        properties(protocol, Context::Will),
    ));
    let client_id = if protocol == Protocol::V3_1 {
        "[a-z0-9]{1,23}".boxed()
    } else {
        "[a-z0-9]{0,23}".boxed()
    };
    (
        any::<bool>(),
        any::<u16>(),
        client_id,
        will,
        option::of(text()),
        option::of(bytes(12)),
        properties(protocol, Context::Connect),
    )
        .prop_map(
            move |(
                clean_start,
                keep_alive_secs,
                client_id,
                will,
                username,
                password,
                properties,
            )| {
                let clean_start =
                    clean_start || (client_id.is_empty() && protocol == Protocol::V3_1_1);
                let password = if protocol != Protocol::V5 && username.is_none() {
                    None
                } else {
                    password
                };
                let will = will.map(|(topic, payload, qos, retain, properties)| LastWill {
                    topic,
                    payload,
                    qos,
                    retain,
                    properties,
                });
                Connect {
                    protocol,
                    clean_start,
                    keep_alive_secs,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }
            },
        )
}

pub fn publish(protocol: Protocol) -> impl Strategy<Value = Publish> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        packet_id(),
        bytes(64),
        properties(protocol, Context::Publish),
        any::<bool>(),
    )
        .prop_map(
            move |(dup, qos, retain, topic, packet_id, payload, properties, empty_topic)| {
                let qos_zero = qos == QoS::AtMostOnce;
                let topic = if empty_topic && properties.topic_alias.is_some() {
                    String::new()
                } else {
                    topic
                };
                Publish {
                    dup: dup && !qos_zero,
                    qos,
                    retain,
                    topic,
                    packet_id: if qos_zero { None } else { Some(packet_id) },
                    payload,
                    properties,
                }
            },
        )
}

pub fn subscription_options(protocol: Protocol) -> BoxedStrategy<SubscriptionOptions> {
    if protocol != Protocol::V5 {
        return qos()
            .prop_map(|qos| SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            })
            .boxed();
    }
    let handling = prop::sample::select(vec![
        RetainHandling::SendAtSubscribe,
        RetainHandling::SendAtSubscribeIfNew,
        RetainHandling::DoNotSend,
    ]);
    (qos(), any::<bool>(), any::<bool>(), handling)
        .prop_map(
            |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                qos,
                no_local,
                retain_as_published,
                retain_handling,
            },
        )
        .boxed()
}

pub fn subscribe(protocol: Protocol) -> impl Strategy<Value = Subscribe> {
    let filters = vec((topic_filter(), subscription_options(protocol)), 1..4).prop_map(|filters| {
        // No Local on a shared subscription is a protocol error [MQTT-3.8.3-4].
        filters
            .into_iter()
            .map(|(filter, mut options)| {
                if filter.starts_with("$share/") {
                    options.no_local = false;
                }
                (filter, options)
            })
            .collect()
    });
    (
        packet_id(),
        filters,
        properties(protocol, Context::Subscribe),
    )
        .prop_map(|(packet_id, filters, properties)| Subscribe {
            packet_id,
            filters,
            properties,
        })
}

pub fn packet(protocol: Protocol) -> BoxedStrategy<Packet> {
    let v5 = protocol == Protocol::V5;
    let connack_codes = if v5 { CONNACK_V5 } else { CONNACK_V3 };
    let connack = (
        any::<bool>(),
        reason(connack_codes),
        properties(protocol, Context::ConnAck),
    )
        .prop_map(move |(session_present, reason, properties)| {
            let session_present =
                session_present && reason == ReasonCode::Success && protocol != Protocol::V3_1;
            Packet::ConnAck(ConnAck {
                session_present,
                reason,
                properties,
            })
        });
    let ack = || (packet_id(), properties(protocol, Context::PubAck));
    let mut choices = vec![
        connack.boxed(),
        publish(protocol).prop_map(Packet::Publish).boxed(),
        (ack(), success_only(protocol, PUBACK_V5))
            .prop_map(|((packet_id, properties), reason)| {
                Packet::PubAck(PubAck {
                    packet_id,
                    reason,
                    properties,
                })
            })
            .boxed(),
        (ack(), success_only(protocol, PUBACK_V5))
            .prop_map(|((packet_id, properties), reason)| {
                Packet::PubRec(PubRec {
                    packet_id,
                    reason,
                    properties,
                })
            })
            .boxed(),
        (ack(), success_only(protocol, PUBREL_V5))
            .prop_map(|((packet_id, properties), reason)| {
                Packet::PubRel(PubRel {
                    packet_id,
                    reason,
                    properties,
                })
            })
            .boxed(),
        (ack(), success_only(protocol, PUBREL_V5))
            .prop_map(|((packet_id, properties), reason)| {
                Packet::PubComp(PubComp {
                    packet_id,
                    reason,
                    properties,
                })
            })
            .boxed(),
        subscribe(protocol).prop_map(Packet::Subscribe).boxed(),
        (
            packet_id(),
            vec(reason(if v5 { SUBACK_V5 } else { SUBACK_V3 }), 1..4),
            properties(protocol, Context::SubAck),
        )
            .prop_map(|(packet_id, reasons, properties)| {
                Packet::SubAck(SubAck {
                    packet_id,
                    reasons,
                    properties,
                })
            })
            .boxed(),
        (
            packet_id(),
            vec(topic_filter(), 1..4),
            properties(protocol, Context::Unsubscribe),
        )
            .prop_map(|(packet_id, filters, properties)| {
                Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    filters,
                    properties,
                })
            })
            .boxed(),
        (
            packet_id(),
            vec(reason(UNSUBACK_V5), 1..4),
            properties(protocol, Context::UnsubAck),
        )
            .prop_map(move |(packet_id, reasons, properties)| {
                let reasons = if v5 { reasons } else { Vec::new() };
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    reasons,
                    properties,
                })
            })
            .boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        (
            success_only(protocol, DISCONNECT_V5),
            properties(protocol, Context::Disconnect),
        )
            .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
            .boxed(),
    ];
    if v5 {
        choices.push(
            (reason(AUTH_V5), properties(protocol, Context::Auth))
                .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
                .boxed(),
        );
    }
    prop::strategy::Union::new(choices).boxed()
}
