//! Scenario tests of the sans-IO session with virtual time (no sockets), and a property
//! test feeding arbitrary bytes to the connection task over an in-memory pipe.

use std::sync::Arc;

use bytes::Bytes;
use fox_mqtt_proto::{
    ConnAck, Disconnect, Packet, Properties, Protocol, PubAck, PubComp, PubRec, PubRel, Publish,
    QoS, ReasonCode, Subscribe, SubscriptionOptions, Unsubscribe,
};

use super::registry::Registry;
use super::session::{End, Flow, Negotiated, Session, SessionState};
use crate::auth::Identity;
use crate::config::Config;
use crate::realm::{OutboundQueue, Realm, SessionHandle, SessionInfo};
use crate::router::Router;

const T0: u64 = 1_000_000;

fn registry() -> Arc<Registry> {
    let router = Router::new(Config::default());
    router.mqtt("realm1").expect("default realm")
}

fn handle(id: u64, queue_max: usize) -> (SessionHandle, OutboundQueue) {
    let identity = Identity {
        authid: format!("c{id}"),
        authrole: "anonymous".into(),
        authmethod: "anonymous".into(),
        authprovider: "static".into(),
    };
    let info = SessionInfo {
        id,
        realm: "realm1".into(),
        identity,
        transport: "mqtt",
        peer: "test".into(),
        roles: fox_wamp_proto::Dict::new(),
    };
    SessionHandle::new(info, queue_max)
}

struct Peer {
    session: Session,
    rx: OutboundQueue,
}

impl Peer {
    fn new(mqtt: &Arc<Registry>, id: u64, protocol: Protocol, state: SessionState) -> Self {
        Self::with_queue(mqtt, id, protocol, state, 16)
    }

    fn with_queue(
        mqtt: &Arc<Registry>,
        id: u64,
        protocol: Protocol,
        state: SessionState,
        queue_max: usize,
    ) -> Self {
        let (handle, rx) = handle(id, queue_max);
        mqtt.realm().join(handle.clone());
        let mut settings =
            Negotiated::from_limits(&mqtt.realm().shared().limits, protocol, format!("c{id}"));
        settings.keep_alive_secs = 10;
        settings.inflight_max = 2;
        settings.receive_max = 2;
        let mut session = Session::new(
            mqtt.clone(),
            handle,
            settings,
            state,
            None,
            ConnAck::default(),
            T0,
        );
        assert!(matches!(session.poll_packet(), Some(Packet::ConnAck(_))));
        Self { session, rx }
    }

    fn send(&mut self, packet: Packet) -> Flow {
        self.session.handle_packet(packet, T0).expect("accepted")
    }

    fn out(&mut self) -> Vec<Packet> {
        std::iter::from_fn(|| self.session.poll_packet()).collect()
    }

    /// Moves realm deliveries into the session while it wants them.
    fn pump(&mut self) {
        while self.session.wants_deliveries() {
            let Ok(message) = self.rx.try_recv() else {
                return;
            };
            self.session
                .handle_outbound(message, T0)
                .expect("delivered");
        }
    }
}

fn subscribe(filter: &str, qos: QoS) -> Packet {
    subscribe_with(filter, qos, Properties::default())
}

fn subscribe_with(filter: &str, qos: QoS, properties: Properties) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(
            filter.into(),
            SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )],
        properties,
    })
}

/// SUBSCRIBE properties: an optional Subscription Identifier, and the `fox-id` opt-in.
fn subscribe_properties(identifier: Option<u32>, fox_id: bool) -> Properties {
    let mut properties = Properties::default();
    properties.subscription_identifiers = identifier.into_iter().collect();
    if fox_id {
        let asked = (super::FOX_ID_PROPERTY.to_owned(), "true".to_owned());
        properties.user_properties.push(asked);
    }
    properties
}

fn fox_id_of(publish: &Publish) -> Option<&str> {
    let properties = &publish.properties.user_properties;
    let found = properties.iter().find(|(k, _)| k == super::FOX_ID_PROPERTY);
    found.map(|(_, v)| v.as_str())
}

fn publish(topic: &str, payload: &'static [u8], qos: QoS, packet_id: Option<u16>) -> Packet {
    Packet::Publish(Publish {
        qos,
        packet_id,
        topic: topic.into(),
        payload: Bytes::from_static(payload),
        ..Publish::default()
    })
}

fn publishes(packets: &[Packet]) -> Vec<&Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// The connection takes realm messages in batches; none may fall between two batches.
#[test]
fn outbound_batches_lose_no_message() {
    let mqtt = registry();
    let total = 3 * super::conn::OUTBOUND_BATCH_MAX + 5;
    let mut sub = Peer::with_queue(&mqtt, 1, Protocol::V3_1_1, SessionState::default(), total);
    let _ = sub.send(subscribe("b/x", QoS::AtMostOnce));
    let _ = sub.out();
    let mut publisher = Peer::new(&mqtt, 2, Protocol::V3_1_1, SessionState::default());
    for _ in 0..total {
        let _ = publisher.send(publish("b/x", b"m", QoS::AtMostOnce, None));
    }
    let mut delivered = 0;
    while let Ok(first) = sub.rx.try_recv() {
        assert!(
            super::conn::handle_outbound(&mut sub.session, &mut sub.rx, first, "t", T0).is_none()
        );
        delivered += publishes(&sub.out()).len();
    }
    assert_eq!(delivered, total);
}

/// Backpressure inside one read: the packets after a publish that congests a subscriber's
/// queue stay in the input until that queue drains, so one read of many publishes cannot
/// overflow a small queue.
#[test]
fn a_read_of_many_publishes_stops_at_the_one_that_congests_a_queue() {
    use crate::realm::backpressure::Backpressure;
    let mqtt = registry();
    let mut sub = Peer::with_queue(&mqtt, 1, Protocol::V3_1_1, SessionState::default(), 40);
    sub.session
        .handle()
        .stats
        .live
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sub.send(subscribe("c/x", QoS::AtMostOnce));
    let _ = sub.out();
    let mut publisher = Peer::new(&mqtt, 2, Protocol::V3_1_1, SessionState::default());
    let mut input = bytes::BytesMut::new();
    for _ in 0..100 {
        let packet = publish("c/x", b"m", QoS::AtMostOnce, None);
        fox_mqtt_proto::encode(&packet, Protocol::V3_1_1, &mut input).expect("encodable");
    }
    Backpressure::clear();
    let stats = &mqtt.stats;
    let exit = super::conn::handle_input(
        &mut publisher.session,
        &mut input,
        Protocol::V3_1_1,
        1 << 20,
        stats,
        "t",
        T0,
        u64::MAX,
    );
    assert!(exit.is_none());
    assert_eq!(sub.rx.len(), 21, "one past the QoS 0 mark (half of 40)");
    assert!(!input.is_empty(), "the rest waits");
    assert!(Backpressure::take(&publisher.session.handle().stats).is_some());
    assert_eq!(
        sub.session
            .handle()
            .stats
            .events_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn qos1_window_holds_back_until_puback() {
    let mqtt = registry();
    let mut sub = Peer::new(&mqtt, 1, Protocol::V5, SessionState::default());
    let asked = subscribe_properties(None, true);
    let _ = sub.send(subscribe_with("w/x", QoS::AtLeastOnce, asked));
    assert!(matches!(sub.out()[..], [Packet::SubAck(_)]));
    let mut publisher = Peer::new(&mqtt, 2, Protocol::V3_1_1, SessionState::default());
    for payload in [&b"0"[..], b"1", b"2"] {
        let _ = publisher.send(publish("w/x", payload, QoS::AtLeastOnce, Some(7)));
    }
    assert_eq!(publisher.out().len(), 3, "three PUBACKs");
    sub.pump();
    let sent = sub.out();
    let ids: Vec<Option<u16>> = publishes(&sent).iter().map(|p| p.packet_id).collect();
    assert_eq!(ids, vec![Some(1), Some(2)], "window of 2");
    assert!(!sub.session.wants_deliveries());
    let _ = sub.send(Packet::PubAck(PubAck {
        packet_id: 1,
        ..Default::default()
    }));
    sub.pump();
    let sent = sub.out();
    let third = publishes(&sent);
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].payload, Bytes::from_static(b"2"));
    assert!(
        fox_id_of(third[0]).is_some(),
        "permanent ID as a user property"
    );
}

/// The permanent ID is sent only to a subscription that asked for it; the publisher's
/// user properties go through unaltered.
#[test]
fn fox_id_only_when_asked_for() {
    let mqtt = registry();
    let mut sub = Peer::new(&mqtt, 1, Protocol::V5, SessionState::default());
    let _ = sub.send(subscribe("f/plain", QoS::AtMostOnce));
    let asked = subscribe_properties(None, true);
    let _ = sub.send(subscribe_with("f/asked", QoS::AtMostOnce, asked));
    let _ = sub.out();
    let mut publisher = Peer::new(&mqtt, 2, Protocol::V5, SessionState::default());
    for topic in ["f/plain", "f/asked"] {
        let _ = publisher.send(publish(topic, b"m", QoS::AtMostOnce, None));
    }
    sub.pump();
    let sent = sub.out();
    let sent = publishes(&sent);
    assert_eq!(sent.len(), 2);
    assert!(
        sent[0].properties.user_properties.is_empty(),
        "nothing added"
    );
    assert!(fox_id_of(sent[1]).is_some());
}

/// Overlapping subscriptions: one copy at the highest granted QoS with every identifier,
/// also when the connection takes the second delivery from the queue only later.
#[test]
fn overlapping_subscriptions_send_one_copy() {
    let mqtt = registry();
    let mut sub = Peer::new(&mqtt, 1, Protocol::V5, SessionState::default());
    let _ = sub.send(subscribe_with(
        "o/+",
        QoS::AtMostOnce,
        subscribe_properties(Some(7), false),
    ));
    let _ = sub.send(subscribe_with(
        "o/#",
        QoS::AtLeastOnce,
        subscribe_properties(Some(9), false),
    ));
    let _ = sub.out();
    let mut publisher = Peer::new(&mqtt, 2, Protocol::V5, SessionState::default());
    let _ = publisher.send(publish("o/x", b"m", QoS::ExactlyOnce, Some(1)));
    assert_eq!(sub.rx.len(), 2, "the realm delivers once per subscription");
    let first = sub.rx.try_recv().expect("first delivery");
    sub.session.handle_outbound(first, T0).expect("delivered");
    let sent = sub.out();
    let sent = publishes(&sent);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].qos, QoS::AtLeastOnce);
    assert_eq!(sent[0].properties.subscription_identifiers, vec![7, 9]);
    sub.pump();
    assert!(
        publishes(&sub.out()).is_empty(),
        "the second delivery is covered"
    );
}

#[test]
fn qos2_inbound_is_exactly_once() {
    let mqtt = registry();
    let mut sub = Peer::new(&mqtt, 1, Protocol::V3_1_1, SessionState::default());
    let _ = sub.send(subscribe("q2/x", QoS::ExactlyOnce));
    let _ = sub.out();
    let mut publisher = Peer::new(&mqtt, 2, Protocol::V3_1_1, SessionState::default());
    let _ = publisher.send(publish("q2/x", b"once", QoS::ExactlyOnce, Some(5)));
    let mut dup = publish("q2/x", b"once", QoS::ExactlyOnce, Some(5));
    if let Packet::Publish(p) = &mut dup {
        p.dup = true;
    }
    let _ = publisher.send(dup);
    let acks = publisher.out();
    assert!(matches!(acks[..], [Packet::PubRec(_), Packet::PubRec(_)]));
    let _ = publisher.send(Packet::PubRel(PubRel {
        packet_id: 5,
        ..Default::default()
    }));
    assert!(matches!(
        publisher.out()[..],
        [Packet::PubComp(PubComp { packet_id: 5, .. })]
    ));
    sub.pump();
    assert_eq!(publishes(&sub.out()).len(), 1, "published once");
}

#[test]
fn qos2_outbound_flow_and_retransmission_after_resume() {
    let mqtt = registry();
    let mut sub = Peer::new(&mqtt, 1, Protocol::V3_1_1, SessionState::default());
    let _ = sub.send(subscribe("rt/+", QoS::ExactlyOnce));
    let _ = sub.out();
    let mut publisher = Peer::new(&mqtt, 2, Protocol::V3_1_1, SessionState::default());
    let _ = publisher.send(publish("rt/a", b"a", QoS::ExactlyOnce, Some(1)));
    let _ = publisher.send(publish("rt/b", b"b", QoS::AtLeastOnce, Some(2)));
    sub.pump();
    let sent = sub.out();
    let first_id = publishes(&sent)[0].packet_id.expect("QoS 2");
    let _ = sub.send(Packet::PubRec(PubRec {
        packet_id: first_id,
        ..Default::default()
    }));
    assert!(matches!(sub.out()[..], [Packet::PubRel(_)]));
    // The connection drops: park, then resume on a new connection.
    let Peer { session, rx } = sub;
    let parked = {
        let mut session = session;
        session_with_expiry(&mut session);
        session.end(rx, End::Abnormal).expect("persistent")
    };
    let mut settings =
        Negotiated::from_limits(&mqtt.realm().shared().limits, Protocol::V3_1_1, "c1".into());
    settings.inflight_max = 2;
    let mut resumed = Session::new(
        mqtt.clone(),
        parked.handle,
        settings,
        parked.state,
        None,
        ConnAck::default(),
        T0,
    );
    let packets: Vec<Packet> = std::iter::from_fn(|| resumed.poll_packet()).collect();
    assert!(matches!(packets[0], Packet::ConnAck(_)));
    assert!(
        matches!(packets[1], Packet::PubRel(PubRel { packet_id, .. }) if packet_id == first_id)
    );
    let Packet::Publish(again) = &packets[2] else {
        panic!("PUBLISH resent")
    };
    assert!(again.dup);
    assert_eq!(again.payload, Bytes::from_static(b"b"));
}

fn session_with_expiry(session: &mut Session) {
    session.settings.expiry_secs = 60;
}

#[test]
fn keep_alive_times_out_at_one_and_a_half() {
    let mqtt = registry();
    let mut peer = Peer::new(&mqtt, 1, Protocol::V5, SessionState::default());
    assert_eq!(peer.session.poll_timeout(), Some(T0 + 15_000));
    assert!(peer.session.handle_timeout(T0 + 14_999).is_ok());
    let _ = peer.session.handle_packet(Packet::PingReq, T0 + 10_000);
    assert!(matches!(peer.out()[..], [Packet::PingResp]));
    assert!(peer.session.handle_timeout(T0 + 24_999).is_ok());
    let error = peer
        .session
        .handle_timeout(T0 + 25_000)
        .expect_err("timed out");
    assert_eq!(error.reason, ReasonCode::KeepAliveTimeout);
}

#[test]
fn unknown_topic_alias_is_a_protocol_error() {
    let mqtt = registry();
    let mut peer = Peer::new(&mqtt, 1, Protocol::V5, SessionState::default());
    let mut packet = Publish {
        topic: String::new(),
        ..Publish::default()
    };
    packet.properties.topic_alias = Some(1);
    let error = peer
        .session
        .handle_packet(Packet::Publish(packet.clone()), T0)
        .expect_err("unknown alias");
    assert_eq!(error.reason, ReasonCode::ProtocolError);
    packet.properties.topic_alias = Some(1000);
    let error = peer
        .session
        .handle_packet(Packet::Publish(packet), T0)
        .expect_err("alias out of range");
    assert_eq!(error.reason, ReasonCode::TopicAliasInvalid);
}

#[test]
fn subscriptions_past_the_limit_are_refused_with_quota_exceeded() {
    let mut config = Config::default();
    config.limits.subscriptions_per_session_max = 2;
    let router = Router::new(config);
    let mqtt = router.mqtt("realm1").expect("default realm");
    let mut peer = Peer::new(&mqtt, 1, Protocol::V5, SessionState::default());
    let suback = |peer: &mut Peer, filter: &str| {
        let _ = peer.send(subscribe(filter, QoS::AtMostOnce));
        match peer.out().pop() {
            Some(Packet::SubAck(ack)) => ack.reasons,
            other => panic!("SUBACK: {other:?}"),
        }
    };
    assert_eq!(suback(&mut peer, "l/1"), vec![ReasonCode::Success]);
    assert_eq!(suback(&mut peer, "l/+"), vec![ReasonCode::Success]);
    assert_eq!(suback(&mut peer, "l/3"), vec![ReasonCode::QuotaExceeded]);
    // The same filter again replaces a subscription: not one more.
    assert_eq!(suback(&mut peer, "l/+"), vec![ReasonCode::Success]);
    let _ = peer.send(Packet::Unsubscribe(Unsubscribe {
        packet_id: 9,
        filters: vec!["l/1".into()],
        properties: Properties::default(),
    }));
    let _ = peer.out();
    assert_eq!(suback(&mut peer, "l/3"), vec![ReasonCode::Success]);
}

#[test]
fn unsubscribe_reports_missing_subscriptions() {
    let mqtt = registry();
    let mut peer = Peer::new(&mqtt, 1, Protocol::V5, SessionState::default());
    let _ = peer.send(subscribe("u/x", QoS::AtMostOnce));
    let _ = peer.out();
    let _ = peer.send(Packet::Unsubscribe(Unsubscribe {
        packet_id: 2,
        filters: vec!["u/x".into(), "u/y".into()],
        properties: Properties::default(),
    }));
    let Some(Packet::UnsubAck(ack)) = peer.out().pop() else {
        panic!("UNSUBACK")
    };
    assert_eq!(
        ack.reasons,
        vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
    );
}

#[test]
fn disconnect_cannot_turn_on_session_expiry() {
    let mqtt = registry();
    let mut peer = Peer::new(&mqtt, 1, Protocol::V5, SessionState::default());
    let mut disconnect = Disconnect::default();
    disconnect.properties.session_expiry_interval_secs = Some(30);
    let error = peer
        .session
        .handle_packet(Packet::Disconnect(disconnect), T0)
        .expect_err("MQTT-3.14.2-2");
    assert_eq!(error.reason, ReasonCode::ProtocolError);
}

/// DISCONNECT 0x04 (with will) keeps the will as a lost connection would (MQTT-3.1.2-8):
/// one with a delay is parked with the session, so that a client back in time cancels it;
/// one without is published as the connection ends. A normal DISCONNECT deletes it.
#[test]
fn disconnect_with_will_waits_for_the_will_delay() {
    let mqtt = registry();
    let mut sub = Peer::new(&mqtt, 1, Protocol::V5, SessionState::default());
    let _ = sub.send(subscribe("wd/#", QoS::AtMostOnce));
    let _ = sub.out();
    let cases = [
        (ReasonCode::DisconnectWithWillMessage, 5, true, 0),
        (ReasonCode::DisconnectWithWillMessage, 0, false, 1),
        (ReasonCode::Success, 5, false, 0),
    ];
    for (id, (reason, delay_secs, held, published)) in (2..).zip(cases) {
        let (handle, rx) = handle(id, 16);
        mqtt.realm().join(handle.clone());
        let limits = &mqtt.realm().shared().limits;
        let mut settings = Negotiated::from_limits(limits, Protocol::V5, format!("c{id}"));
        settings.expiry_secs = 60;
        let will = super::Will {
            topic: crate::topic::Topic::from_mqtt("wd/x"),
            payload: Bytes::from_static(b"gone"),
            qos: 0,
            retain: false,
            properties: Default::default(),
            delay_secs,
        };
        let connack = ConnAck::default();
        let state = SessionState::default();
        let mut session = Session::new(
            mqtt.clone(),
            handle,
            settings,
            state,
            Some(will),
            connack,
            T0,
        );
        let disconnect = Packet::Disconnect(Disconnect {
            reason,
            ..Disconnect::default()
        });
        assert_eq!(
            session.handle_packet(disconnect, T0),
            Ok(Flow::Disconnected)
        );
        let parked = session.end(rx, End::Normal).expect("expiry 60 s: parked");
        assert_eq!(
            parked.will.is_some(),
            held,
            "{reason:?}, delay {delay_secs} s"
        );
        sub.pump();
        assert_eq!(publishes(&sub.out()).len(), published, "{reason:?}");
        mqtt.realm().leave(parked.handle.info.id);
    }
}

#[test]
fn qos2_receive_maximum_enforced() {
    let mqtt = registry();
    let mut peer = Peer::new(&mqtt, 1, Protocol::V5, SessionState::default());
    let _ = peer.send(publish("rm/x", b"1", QoS::ExactlyOnce, Some(1)));
    let _ = peer.send(publish("rm/x", b"2", QoS::ExactlyOnce, Some(2)));
    let error = peer
        .session
        .handle_packet(publish("rm/x", b"3", QoS::ExactlyOnce, Some(3)), T0)
        .expect_err("receive maximum 2");
    assert_eq!(error.reason, ReasonCode::ReceiveMaximumExceeded);
}

mod arbitrary_bytes {
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::config::Config;
    use crate::router::Router;

    fn connect_v5() -> Vec<u8> {
        vec![
            0x10, 0x0E, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 1, b'c',
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever arrives, the connection task ends without panicking.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), after_connect in any::<bool>()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let router = Router::new(Config::default());
                let (mut near, far) = tokio::io::duplex(4096);
                let task = tokio::spawn(crate::mqtt::run(router, far, "mqtt", "test".into(), None));
                let mut input = if after_connect { connect_v5() } else { Vec::new() };
                input.extend_from_slice(&bytes);
                let _ = near.write_all(&input).await;
                let _ = near.shutdown().await;
                let mut sink = Vec::new();
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), near.read_to_end(&mut sink)).await;
                let joined = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
                assert!(matches!(joined, Ok(Ok(()))), "connection task ended cleanly");
            });
        }
    }
}

mod registry {
    use super::*;
    use crate::mqtt::registry::Previous;

    fn parked(realm: &Arc<Realm>, id: u64) -> Box<crate::mqtt::Parked> {
        let (handle, rx) = handle(id, 16);
        realm.join(handle.clone());
        Box::new(crate::mqtt::Parked {
            handle,
            rx,
            state: SessionState::default(),
            expiry_secs: 60,
            will: None,
            parked_ms: 0,
        })
    }

    #[tokio::test]
    async fn park_then_claim_resumes() {
        let mqtt = registry();
        let (kick, _kicks) = tokio::sync::oneshot::channel();
        let (generation, previous) = mqtt.claim("c", kick);
        assert!(matches!(previous, Previous::None));
        let parked = parked(mqtt.realm(), 1);
        assert!(mqtt.park("c", generation, parked).is_ok());
        assert_eq!(mqtt.counts(), (0, 1));
        let (kick, _kicks) = tokio::sync::oneshot::channel();
        let (_, previous) = mqtt.claim("c", kick);
        assert!(matches!(previous, Previous::Parked(p) if p.handle.info.id == 1));
        assert_eq!(mqtt.counts(), (1, 0));
    }

    #[tokio::test]
    async fn superseded_connection_hands_its_state_over() {
        let mqtt = registry();
        let (kick, _old_kicks) = tokio::sync::oneshot::channel();
        let (old, _) = mqtt.claim("c", kick);
        let (kick, _kicks) = tokio::sync::oneshot::channel();
        let (new, previous) = mqtt.claim("c", kick);
        assert!(matches!(previous, Previous::Live(_, None)));
        // The old connection ends before it sees the kick: its state waits for the new one.
        assert!(mqtt.park("c", old, parked(mqtt.realm(), 1)).is_ok());
        assert!(
            mqtt.take_handoff("c", old).is_none(),
            "not the old generation's"
        );
        let handed = mqtt.take_handoff("c", new).expect("handed over");
        assert_eq!(handed.handle.info.id, 1);
        assert!(mqtt.release("c", new).is_none());
        assert_eq!(mqtt.counts(), (0, 0));
    }
}
