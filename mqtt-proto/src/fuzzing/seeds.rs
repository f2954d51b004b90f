//! Seed corpora: a handful of valid inputs per target (written to
//! `fuzz/corpus/<target>/` by the tests when `FOX_FUZZ_WRITE_SEEDS=1`).

use bytes::BytesMut;

use crate::{
    encode, ConnAck, Connect, Disconnect, LastWill, Packet, PayloadFormat, Properties,
    PropertyFields, Protocol, PubAck, PubRel, Publish, QoS, ReasonCode, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};

/// The seeds of `target` (empty for an unknown target).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "mqtt_v3_1" => packets(Protocol::V3_1),
        "mqtt_v3_1_1" => packets(Protocol::V3_1_1),
        "mqtt_v5" => packets(Protocol::V5),
        "mqtt_connect" => [Protocol::V3_1, Protocol::V3_1_1, Protocol::V5]
            .into_iter()
            .flat_map(|protocol| [connect(protocol, false), connect(protocol, true)])
            .map(|connect| encoded(&connect, connect_protocol(&connect)))
            .collect(),
        "mqtt_stream" => [Protocol::V3_1, Protocol::V3_1_1, Protocol::V5]
            .into_iter()
            .map(|protocol| {
                // Selector 0 (a new connection), read size 1 + 0x1c >> 2 = 8 bytes.
                let mut stream = vec![0x1c];
                stream.extend(encoded(&connect(protocol, true), protocol));
                for packet in sample_packets(protocol) {
                    stream.extend(encoded(&packet, protocol));
                }
                stream
            })
            .collect(),
        "mqtt_differential" => {
            let mut seeds: Vec<Vec<u8>> = sample_packets(Protocol::V3_1_1)
                .iter()
                .map(|packet| encoded(packet, Protocol::V3_1_1))
                .collect();
            seeds.push(encoded(&connect(Protocol::V3_1_1, true), Protocol::V3_1_1));
            seeds.push(encoded(&sample_packets(Protocol::V5)[0], Protocol::V5));
            seeds
        }
        _ => Vec::new(),
    }
}

fn connect_protocol(packet: &Packet) -> Protocol {
    match packet {
        Packet::Connect(connect) => connect.protocol,
        _ => unreachable!("only CONNECTs here"),
    }
}

fn encoded(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut buf = BytesMut::new();
    if let Err(error) = encode(packet, protocol, &mut buf) {
        unreachable!("seed {packet:?} does not encode: {error}");
    }
    buf.to_vec()
}

fn packets(protocol: Protocol) -> Vec<Vec<u8>> {
    sample_packets(protocol)
        .iter()
        .map(|packet| encoded(packet, protocol))
        .collect()
}

fn properties(protocol: Protocol, fields: PropertyFields) -> Properties {
    if protocol.is_v5() {
        Properties::from(fields)
    } else {
        Properties::default()
    }
}

fn connect(protocol: Protocol, full: bool) -> Packet {
    let will = full.then(|| LastWill {
        topic: "clients/c1/status".into(),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: properties(
            protocol,
            PropertyFields {
                will_delay_interval_secs: Some(5),
                content_type: Some("text/plain".into()),
                ..PropertyFields::default()
            },
        ),
    });
    Packet::Connect(Box::new(Connect {
        protocol,
        clean_start: !full,
        keep_alive_secs: 60,
        client_id: "c1".into(),
        will,
        username: full.then(|| "user".into()),
        password: full.then(|| "secret".into()),
        properties: properties(
            protocol,
            PropertyFields {
                session_expiry_interval_secs: Some(3600),
                receive_maximum: Some(20),
                ..PropertyFields::default()
            },
        ),
    }))
}

fn sample_packets(protocol: Protocol) -> Vec<Packet> {
    let publish_properties = PropertyFields {
        payload_format_indicator: Some(PayloadFormat::Utf8),
        message_expiry_interval_secs: Some(30),
        response_topic: Some("reply/to".into()),
        correlation_data: Some("id-1".into()),
        user_properties: vec![("k".into(), "v".into())],
        ..PropertyFields::default()
    };
    vec![
        Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            packet_id: Some(7),
            topic: "a/b".into(),
            payload: "hello".into(),
            properties: properties(protocol, publish_properties),
            ..Publish::default()
        }),
        Packet::Publish(Publish {
            retain: true,
            topic: "sensors/é/temperature".into(),
            payload: vec![0, 1, 2, 255].into(),
            ..Publish::default()
        }),
        Packet::ConnAck(ConnAck {
            session_present: protocol != Protocol::V3_1,
            reason: ReasonCode::Success,
            ..ConnAck::default()
        }),
        Packet::PubAck(PubAck {
            packet_id: 7,
            ..PubAck::default()
        }),
        Packet::PubRel(PubRel {
            packet_id: 8,
            ..PubRel::default()
        }),
        Packet::Subscribe(Subscribe {
            packet_id: 9,
            filters: vec![
                ("a/+/c".into(), SubscriptionOptions::default()),
                (
                    "$share/g/x/#".into(),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..SubscriptionOptions::default()
                    },
                ),
            ],
            ..Subscribe::default()
        }),
        Packet::SubAck(SubAck {
            packet_id: 9,
            reasons: vec![ReasonCode::GrantedQoS1, ReasonCode::UnspecifiedError],
            ..SubAck::default()
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 10,
            filters: vec!["a/+/c".into()],
            ..Unsubscribe::default()
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: 10,
            reasons: vec![ReasonCode::Success],
            ..UnsubAck::default()
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
    ]
}
