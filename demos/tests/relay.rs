//! fox-relay on ephemeral loopback ports, driven by the crate's own MQTT and WAMP clients
//! and by fox-bench's scenarios (which must count what the relay forwards).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::within;
use fox_demos::bench::{self, Config, Scenario, Target};
use fox_demos::mqtt::{ConnectOptions, MqttClient, Protocol, QoS, ReasonCode};
use fox_demos::relay::{self, Relay};
use fox_demos::wamp::{acknowledge, Transport, WampClient};
use fox_wamp_proto::{Dict, Serializer, Value};

struct Running {
    mqtt: std::net::SocketAddr,
    rawsocket: std::net::SocketAddr,
    ws: std::net::SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start() -> Running {
    let any = "127.0.0.1:0".parse().ok();
    let config = relay::Config {
        mqtt: any,
        rawsocket: any,
        ws: any,
    };
    let relay = Relay::bind(&config).await.expect("bind");
    Running {
        mqtt: relay.mqtt_addr().expect("mqtt listener"),
        rawsocket: relay.rawsocket_addr().expect("rawsocket listener"),
        ws: relay.ws_addr().expect("ws listener"),
        task: tokio::spawn(relay.run()),
    }
}

async fn mqtt_round_trip(protocol: Protocol) {
    let relay = start().await;
    let connect = |id: &str| MqttClient::connect(relay.mqtt, ConnectOptions::new(id, protocol));
    let subscriber = within(connect("sub")).await.expect("connect");
    let other = within(connect("other")).await.expect("connect");
    let publisher = within(connect("pub")).await.expect("connect");
    for (client, filter) in [(&subscriber, "t/1"), (&other, "t/2")] {
        let granted = within(client.subscribe(filter, QoS::ExactlyOnce))
            .await
            .expect("subscribe");
        assert_eq!(granted, ReasonCode::from_u8(2).expect("granted QoS 2"));
    }
    let mut messages = subscriber.messages().expect("first take");
    let mut others = other.messages().expect("first take");
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let body = Bytes::from(vec![qos as u8; 10]);
        within(publisher.publish("t/1", body.clone(), qos, false))
            .await
            .expect("acknowledged");
        let message = within(messages.recv()).await.expect("forwarded");
        assert_eq!((message.topic.as_str(), message.qos), ("t/1", qos));
        assert_eq!(message.payload, body);
    }
    let stray = tokio::time::timeout(Duration::from_millis(200), others.recv()).await;
    assert!(stray.is_err(), "t/2 got a t/1 message: {stray:?}");
}

#[tokio::test]
async fn mqtt_3_1_1_publishes_reach_exact_topic_subscribers() {
    mqtt_round_trip(Protocol::V3_1_1).await;
}

#[tokio::test]
async fn mqtt_5_publishes_reach_exact_topic_subscribers() {
    mqtt_round_trip(Protocol::V5).await;
}

async fn join(url: &str, transport: Transport) -> WampClient {
    let mut client = within(WampClient::connect(url, "realm1", transport))
        .await
        .expect("connect");
    within(client.join(None)).await.expect("join");
    client
}

async fn wamp_round_trip(url: &str, transport: Transport) {
    let subscriber = join(url, transport).await;
    let publisher = join(url, transport).await;
    let (_, mut events) = within(subscriber.subscribe("bench.t", Dict::new()))
        .await
        .expect("subscribe");
    let args = vec![Value::Int(42), Value::Str("x".repeat(92))];
    let publication =
        within(publisher.publish("bench.t", args.clone(), Dict::new(), acknowledge()))
            .await
            .expect("published");
    assert!(publication.is_some(), "PUBLISHED carries the publication");
    let event = within(events.recv()).await.expect("an EVENT");
    assert_eq!(event.args, args);
    within(publisher.leave()).await.expect("GOODBYE answered");
    within(subscriber.leave()).await.expect("GOODBYE answered");
}

#[tokio::test]
async fn wamp_rawsocket_publish_becomes_event() {
    let relay = start().await;
    let addr = relay.rawsocket.to_string();
    wamp_round_trip(&addr, Transport::RawSocket(Serializer::MsgPack)).await;
    wamp_round_trip(&addr, Transport::RawSocket(Serializer::Json)).await;
}

#[tokio::test]
async fn wamp_websocket_publish_becomes_event() {
    let relay = start().await;
    let url = format!("ws://{}/ws", relay.ws);
    wamp_round_trip(&url, Transport::WebSocket(Serializer::Json)).await;
    wamp_round_trip(&url, Transport::WebSocket(Serializer::MsgPack)).await;
}

fn config(target: Target, scenario: Scenario, connections: usize, qos: QoS) -> Config {
    Config {
        target,
        label: "relay".into(),
        scenario,
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(100),
        connections,
        inflight: 16,
        payload_bytes: 100,
        rate: None,
        qos,
        mqtt_protocol: Protocol::V3_1_1,
        realm: "realm1".into(),
        callees: 1,
        delivery: false,
        router_pid: None,
        source_ips: 1,
        threads: 1,
        part: (0, 1),
        topic_prefix: None,
    }
}

/// fox-bench's own scenarios run against the relay and count deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fox_bench_scenarios_count_what_the_relay_forwards() {
    let relay = start().await;
    let mqtt = Target::Mqtt(relay.mqtt);
    let rawsocket = Target::Wamp(
        relay.rawsocket.to_string(),
        Transport::RawSocket(Serializer::MsgPack),
    );
    let ws = Target::Wamp(
        format!("ws://{}/ws", relay.ws),
        Transport::WebSocket(Serializer::Json),
    );
    let runs = [
        config(mqtt.clone(), Scenario::Pairs, 4, QoS::AtLeastOnce),
        config(mqtt.clone(), Scenario::Pairs, 2, QoS::ExactlyOnce),
        config(mqtt.clone(), Scenario::Fanout, 3, QoS::AtMostOnce),
        config(mqtt, Scenario::Fanin, 3, QoS::AtLeastOnce),
        config(rawsocket, Scenario::Pairs, 2, QoS::AtMostOnce),
        config(ws.clone(), Scenario::Fanout, 3, QoS::AtMostOnce),
        config(ws, Scenario::Acked, 2, QoS::AtMostOnce),
    ];
    for run in runs {
        let key = run.scenario_key();
        let outcome = bench::run(run).await;
        let json = outcome.to_json();
        assert!(json.get("error").is_none(), "{key}: {json}");
        let messages = json["messages"].as_u64().unwrap_or(0);
        assert!(messages > 0, "{key}: nothing counted: {json}");
    }
}

/// Two load generators split one fan-out row: part 0 has the publisher and half of the
/// subscribers, part 1 the other half, on the shared topic; both count deliveries, timed
/// against the publisher's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parts_of_a_split_fan_out_row_share_its_publisher() {
    let relay = start().await;
    let part = |part| {
        let mut run = config(
            Target::Mqtt(relay.mqtt),
            Scenario::Fanout,
            4,
            QoS::AtLeastOnce,
        );
        run.duration = Duration::from_millis(500);
        run.warmup = Duration::from_millis(300);
        run.part = (part, 2);
        run.topic_prefix = Some(format!("split{}", relay.mqtt.port()));
        bench::run(run)
    };
    let (first, second) = tokio::join!(part(0), part(1));
    for outcome in [first, second] {
        let json = outcome.to_json();
        assert!(json.get("error").is_none(), "{json}");
        assert_eq!(json["key"], "fanout-mqtt3-qos1-n4-k16-p100");
        assert!(json["messages"].as_u64().unwrap_or(0) > 0, "{json}");
        let p99_us = json["p99_us"].as_f64().unwrap_or(f64::MAX);
        assert!(p99_us < 10_000_000.0, "latency across clocks: {json}");
    }
}
