//! MqttClient against a real mosquitto started on a free port.

mod common;

use bytes::Bytes;
use common::{start_mosquitto, within};
use fox_demos::mqtt::{ConnectOptions, MqttClient, Protocol, QoS, ReasonCode};

async fn connect(addr: std::net::SocketAddr, id: &str, protocol: Protocol) -> MqttClient {
    let mut options = ConnectOptions::new(id, protocol);
    // Mosquitto's default max_inflight_messages: on 3.1.1, which has no Receive Maximum to
    // announce it, Mosquitto answers QoS 2 publishes past it with a PUBREC (success in
    // 3.x) and drops them.
    options.inflight_max = MOSQUITTO_INFLIGHT_MAX;
    within(MqttClient::connect(addr, options))
        .await
        .expect("connect")
}

const MOSQUITTO_INFLIGHT_MAX: u16 = 20;

async fn round_trip(protocol: Protocol) {
    let broker = start_mosquitto();
    let subscriber = connect(broker.addr, "sub", protocol).await;
    let publisher = connect(broker.addr, "pub", protocol).await;
    let granted = within(subscriber.subscribe("t/#", QoS::ExactlyOnce))
        .await
        .expect("subscribe");
    assert_eq!(granted, ReasonCode::from_u8(2).expect("granted QoS 2"));
    let mut messages = subscriber.messages().expect("first take");
    assert!(subscriber.messages().is_none());
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let topic = format!("t/{}", qos as u8);
        within(publisher.publish(&topic, Bytes::from_static(b"hello"), qos, false))
            .await
            .expect("publish");
        let message = within(messages.recv()).await.expect("a message");
        assert_eq!(message.topic, topic);
        assert_eq!(&message.payload[..], b"hello");
        assert_eq!(message.qos, qos);
    }
    // Many QoS 1 and 2 publishes in flight at once, all acknowledged, all delivered.
    let publishes = (0..300u32).map(|i| {
        let publisher = publisher.clone();
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        async move {
            publisher
                .publish("t/many", Bytes::from(i.to_be_bytes().to_vec()), qos, false)
                .await
        }
    });
    for result in within(futures_util::future::join_all(publishes)).await {
        result.expect("acknowledged");
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 300 {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), messages.recv()).await;
        let message = next
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("{protocol:?}: {} of 300 delivered", seen.len()));
        seen.insert(message.payload.clone());
    }
    within(publisher.disconnect()).await.expect("disconnect");
    within(subscriber.disconnect()).await.expect("disconnect");
}

#[tokio::test]
async fn mqtt_3_1_1_qos_0_1_2() {
    round_trip(Protocol::V3_1_1).await;
}

#[tokio::test]
async fn mqtt_5_qos_0_1_2() {
    round_trip(Protocol::V5).await;
}

#[tokio::test]
async fn refused_connection_is_an_error() {
    let broker = start_mosquitto();
    let mut options = ConnectOptions::new("", Protocol::V3_1_1);
    options.clean_start = false; // An empty client id needs a clean session in 3.1.1.
    let refused = within(MqttClient::connect(broker.addr, options)).await;
    assert!(refused.is_err());
}
