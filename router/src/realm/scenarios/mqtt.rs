//! A seeded harness of WAMP sessions and MQTT clients (3.1.1 and 5) on one realm, its one
//! topic space (WAMP `a.b.c` is MQTT `a/b/c`), on the realm's virtual clock. WAMP
//! sessions join, subscribe (exact, prefix, wildcard), publish and leave; MQTT clients
//! connect (clean or persistent, with or without a will, MQTT 5 with a session expiry, a
//! will delay and a Receive Maximum; a second CONNECT takes the live connection over),
//! subscribe (`+`, `#`, QoS 0 to 2), unsubscribe, publish at QoS 0 to 2 (QoS 2 resent with
//! DUP, then released), acknowledge what they got when they like, and leave cleanly
//! (MQTT 5: with the will, or ending the session) or abruptly. Time moves on and the
//! timer wheel fires will delays and session expiries.
//!
//! MQTT clients go through the real codec and the real session core (`client.rs`). A WAMP
//! witness subscribed to every topic tells each message's permanent ID. After every step
//! the harness checks, against its model (`model.rs`):
//!
//! - the messages published are exactly those the model expects (wills included: when
//!   due, never after a clean DISCONNECT or a resume), each with an ID above every earlier
//!   step's;
//! - every WAMP session got one EVENT per matching subscription for every message
//!   published while it was subscribed (its own excluded), none missing, in ID order;
//! - every MQTT client got each message it is owed once (one copy per client, at the
//!   highest granted QoS, with every Subscription Identifier in MQTT 5), in ID order, with
//!   the MQTT topic name and payload the model gives; a persistent session gets what was
//!   published while it was away once it is back; a session that ended is owed nothing;
//!   and once its inflight window has room, nothing owed is still held back;
//! - CONNACK says session present exactly when a session is resumed; every SUBSCRIBE,
//!   UNSUBSCRIBE and QoS 1 / 2 PUBLISH of a client gets exactly one answer; and the
//!   registry counts the connected and parked clients the model counts.
//!
//! At the end every parked client comes back and every client acknowledges everything:
//! nothing owed is left. One proptest case is one seed (see the count below).

mod check;
mod client;
mod link;
mod model;
mod steps;

use std::collections::BTreeMap;

use bytes::Bytes;
use fox_mqtt_proto::Protocol;
use proptest::prelude::*;

use super::super::edge::Edge;
use super::*;
use crate::mqtt::Registry;
use crate::router::Router;
use client::{Client, Leaving};
use model::{
    pattern_matches, Publication, Publisher, SessionModel, WillModel, FILTERS, PATTERNS, TOPICS,
};

const WAMP_SESSIONS: usize = 3;
/// MQTT clients: the first two speak 3.1.1, the others 5.0.
const MQTT_CLIENTS: usize = 4;
const MQTT_V5_FIRST: usize = 2;
/// `limits.mqtt_inflight_max`: small, so that windows fill.
const INFLIGHT_MAX: u16 = 3;
/// MQTT 5 Session Expiry Intervals (3.1.1: clean session 0 keeps it for the maximum).
const EXPIRIES_SECS: [u32; 4] = [0, 1, 3, 3_600];
/// MQTT 5 Will Delay Intervals.
const WILL_DELAYS_SECS: [u32; 3] = [0, 1, 5];
/// MQTT 5 Receive Maximum.
const RECEIVE_MAXIMA: [Option<u16>; 3] = [None, Some(1), Some(2)];
/// Rounds of acknowledging everything at the end.
const SETTLE_ROUNDS_MAX: usize = 100;

/// How a client connects.
#[derive(Clone, Debug)]
struct ConnectSpec {
    clean: bool,
    /// Index into [`EXPIRIES_SECS`] (MQTT 5).
    expiry: usize,
    /// (topic, QoS, index into [`WILL_DELAYS_SECS`] (MQTT 5)).
    will: Option<(usize, u8, usize)>,
    /// Index into [`RECEIVE_MAXIMA`] (MQTT 5).
    receive_max: usize,
}

/// One step. The first index of a WAMP step other than `Join` picks one of the sessions
/// that joined, that of an MQTT step other than `Connect` one of the clients connected
/// (so that few steps are lost on absent ones; `Join` and `Connect` name their slot).
#[derive(Clone, Debug)]
enum Op {
    /// WAMP session slot.
    Join(usize),
    /// (session, index into [`PATTERNS`]).
    WampSubscribe(usize, usize),
    WampUnsubscribe(usize, usize),
    /// (session, index into [`TOPICS`]).
    WampPublish(usize, usize),
    Leave(usize),
    /// MQTT client slot: a CONNECT (a takeover when it is connected).
    Connect(usize, ConnectSpec),
    /// (client, index into [`FILTERS`], QoS).
    Subscribe(usize, usize, u8),
    Unsubscribe(usize, usize),
    /// (client, index into [`TOPICS`], QoS).
    Publish(usize, usize, u8),
    /// The client's oldest unreleased QoS 2 PUBLISH again, with DUP.
    Resend(usize),
    /// PUBREL for the client's oldest unreleased QoS 2 PUBLISH.
    Release(usize),
    /// The client acknowledges this many of the oldest messages it got.
    Acknowledge(usize, usize),
    Disconnect(usize, Leaving),
    /// Virtual time moves on, ms.
    Advance(u64),
}

fn connect_spec() -> impl Strategy<Value = ConnectSpec> {
    let will = prop::option::of((0..TOPICS.len(), 0u8..3, 0..WILL_DELAYS_SECS.len()));
    (
        prop::bool::weighted(0.3),
        0..EXPIRIES_SECS.len(),
        will,
        0..RECEIVE_MAXIMA.len(),
    )
        .prop_map(|(clean, expiry, will, receive_max)| ConnectSpec {
            clean,
            expiry,
            will,
            receive_max,
        })
}

fn leaving() -> impl Strategy<Value = Leaving> {
    prop_oneof![
        Just(Leaving::Abrupt),
        (any::<bool>(), prop::bool::weighted(0.3)).prop_map(|(with_will, expiry_zero)| {
            Leaving::Clean {
                with_will,
                expiry_zero,
            }
        }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let w = 0..WAMP_SESSIONS;
    let m = 0..MQTT_CLIENTS;
    prop_oneof![
        1 => w.clone().prop_map(Op::Join),
        2 => (w.clone(), 0..PATTERNS.len()).prop_map(|(s, p)| Op::WampSubscribe(s, p)),
        1 => (w.clone(), 0..PATTERNS.len()).prop_map(|(s, p)| Op::WampUnsubscribe(s, p)),
        4 => (w.clone(), 0..TOPICS.len()).prop_map(|(s, t)| Op::WampPublish(s, t)),
        1 => w.prop_map(Op::Leave),
        3 => (m.clone(), connect_spec()).prop_map(|(c, spec)| Op::Connect(c, spec)),
        4 => (m.clone(), 0..FILTERS.len(), 0u8..3).prop_map(|(c, f, q)| Op::Subscribe(c, f, q)),
        1 => (m.clone(), 0..FILTERS.len()).prop_map(|(c, f)| Op::Unsubscribe(c, f)),
        8 => (m.clone(), 0..TOPICS.len(), 0u8..3).prop_map(|(c, t, q)| Op::Publish(c, t, q)),
        1 => m.clone().prop_map(Op::Resend),
        2 => m.clone().prop_map(Op::Release),
        5 => (m.clone(), 1usize..4).prop_map(|(c, n)| Op::Acknowledge(c, n)),
        2 => (m, leaving()).prop_map(|(c, how)| Op::Disconnect(c, how)),
        2 => (1u64..3_000).prop_map(Op::Advance),
    ]
}

/// A WAMP session as the harness drives it and as the model sees it.
struct WampSession {
    peer: Peer,
    /// Pattern -> subscription ID.
    subscriptions: BTreeMap<usize, u64>,
    /// Events owed: (tag, subscription), and those received.
    owed: Vec<(String, u64)>,
    got: Vec<(String, u64)>,
    last_id: u64,
}

/// An MQTT client and the model of its session (`None`: the realm holds none).
struct MqttSlot {
    client: Client,
    session: Option<SessionModel>,
}

impl MqttSlot {
    fn v5(&self) -> bool {
        self.client.protocol.is_v5()
    }
}

struct World {
    edge: Arc<super::super::edge::SeededEdge>,
    router: Arc<Router>,
    realm: Arc<Realm>,
    registry: Arc<Registry>,
    runtime: tokio::runtime::Runtime,
    /// A WAMP session subscribed to every topic: it tells each message's permanent ID.
    witness: Peer,
    wamp: Vec<Option<WampSession>>,
    mqtt: Vec<MqttSlot>,
    publications: BTreeMap<String, Publication>,
    /// Messages published in this step, by the model's account.
    published: Vec<String>,
    /// The highest permanent ID of the steps before.
    last_id: u64,
    next_tag: u64,
    next_wamp_id: u64,
    /// Virtual time since the start, ms.
    now_ms: u64,
}

impl World {
    fn new() -> Self {
        let edge = Arc::new(super::super::edge::SeededEdge::new(7, 1_800_000_000_000));
        let mut config = crate::config::Config::default();
        config.limits.mqtt_sys_interval_ms = 0;
        config.limits.mqtt_inflight_max = INFLIGHT_MAX;
        let router = Router::with_edge(config, edge.clone());
        let registry = router.mqtt("realm1").expect("the default realm");
        let realm = registry.realm().clone();
        let witness = peer_with_queue(&realm, 1, "anonymous", false, 100_000);
        for (uri, _) in TOPICS {
            let pattern = Pattern::from_wamp(uri, MatchPolicy::Exact);
            realm.subscribe(&witness.handle, pattern, SubscribeOptions::default());
        }
        let protocol = |c| match c {
            c if c < MQTT_V5_FIRST => Protocol::V3_1_1,
            _ => Protocol::V5,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        Self {
            edge,
            router,
            realm,
            registry,
            runtime,
            witness,
            wamp: (0..WAMP_SESSIONS).map(|_| None).collect(),
            mqtt: (0..MQTT_CLIENTS)
                .map(|c| MqttSlot {
                    client: Client::new(format!("c{c}"), protocol(c)),
                    session: None,
                })
                .collect(),
            publications: BTreeMap::new(),
            published: Vec::new(),
            last_id: 0,
            next_tag: 0,
            next_wamp_id: 100,
            now_ms: 0,
        }
    }

    /// The virtual Unix time the session core is given.
    fn unix_ms(&self) -> u64 {
        self.edge.now_ms()
    }

    fn tag(&mut self, kind: &str) -> String {
        self.next_tag += 1;
        format!("{kind}{}", self.next_tag)
    }

    /// One step, then the checks.
    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        if let Some(op) = self.aimed(op) {
            self.apply(&op)?;
        }
        self.check()
    }

    /// `op` aimed at a WAMP session that joined or an MQTT client that is connected, the
    /// one its index picks among those (few steps are lost on absent ones); `None` when
    /// there is none.
    fn aimed(&self, op: &Op) -> Option<Op> {
        let mut op = op.clone();
        let (index, there): (&mut usize, Vec<bool>) = match &mut op {
            Op::WampSubscribe(s, _)
            | Op::WampUnsubscribe(s, _)
            | Op::WampPublish(s, _)
            | Op::Leave(s) => (s, self.wamp.iter().map(Option::is_some).collect()),
            Op::Subscribe(c, ..)
            | Op::Unsubscribe(c, _)
            | Op::Publish(c, ..)
            | Op::Resend(c)
            | Op::Release(c)
            | Op::Acknowledge(c, _)
            | Op::Disconnect(c, _) => (
                c,
                self.mqtt.iter().map(|s| s.client.is_connected()).collect(),
            ),
            Op::Join(_) | Op::Connect(..) | Op::Advance(_) => return Some(op),
        };
        let there: Vec<usize> = (0..there.len()).filter(|i| there[*i]).collect();
        *index = *there.get(*index % there.len().max(1))?;
        Some(op)
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Join(s) => self.join(s),
            Op::WampSubscribe(s, p) => self.wamp_subscribe(s, p)?,
            Op::WampUnsubscribe(s, p) => self.wamp_unsubscribe(s, p)?,
            Op::WampPublish(s, t) => self.wamp_publish(s, t),
            Op::Leave(s) => self.leave(s),
            Op::Connect(c, ref spec) => self.connect(c, spec)?,
            Op::Subscribe(c, f, qos) => self.subscribe(c, f, qos)?,
            Op::Unsubscribe(c, f) => self.unsubscribe(c, f)?,
            Op::Publish(c, t, qos) => self.publish(c, t, qos)?,
            Op::Resend(c) => self.mqtt_op(c, |client, now| client.resend(now))?,
            Op::Release(c) => self.mqtt_op(c, |client, now| client.release(now))?,
            Op::Acknowledge(c, n) => self.mqtt_op(c, |client, now| client.acknowledge(n, now))?,
            Op::Disconnect(c, how) => self.disconnect(c, how)?,
            Op::Advance(ms) => self.advance(ms),
        }
        Ok(())
    }

    /// A message enters the realm: the model notes what every session is owed.
    fn published(&mut self, tag: String, topic: usize, qos: u8, from: Publisher, mqtt: Bytes) {
        let seq = self.publications.len() as u64;
        for (s, session) in self.wamp.iter_mut().enumerate() {
            let Some(session) = session else { continue };
            if from == Publisher::Wamp(s) {
                continue; // exclude_me
            }
            for (&pattern, &subscription) in &session.subscriptions {
                if pattern_matches(pattern, TOPICS[topic].0) {
                    session.owed.push((tag.clone(), subscription));
                }
            }
        }
        for slot in &mut self.mqtt {
            let v5 = slot.v5();
            let Some(session) = slot.session.as_mut() else {
                continue;
            };
            session
                .owed
                .extend(session.owed_for(&tag, seq, topic, qos, v5));
        }
        let publication = Publication {
            topic,
            qos,
            id: None,
            mqtt_payload: mqtt,
        };
        self.publications.insert(tag.clone(), publication);
        self.published.push(tag);
    }

    fn will_published(&mut self, c: usize, will: WillModel) {
        let payload = Bytes::from(will.tag.clone());
        let from = Publisher::Mqtt(c);
        self.published(will.tag, will.topic, will.qos, from, payload);
    }

    fn join(&mut self, s: usize) {
        if self.wamp[s].is_some() {
            return;
        }
        self.next_wamp_id += 1;
        let peer = peer_with_queue(&self.realm, self.next_wamp_id, "anonymous", false, 100_000);
        self.wamp[s] = Some(WampSession {
            peer,
            subscriptions: BTreeMap::new(),
            owed: Vec::new(),
            got: Vec::new(),
            last_id: 0,
        });
    }

    fn wamp_subscribe(&mut self, s: usize, p: usize) -> Result<(), TestCaseError> {
        let Some(session) = self.wamp[s].as_mut() else {
            return Ok(());
        };
        let (uri, policy) = PATTERNS[p];
        let pattern = Pattern::from_wamp(uri, policy);
        let options = SubscribeOptions::default();
        let id = self.realm.subscribe(&session.peer.handle, pattern, options);
        if let Some(old) = session.subscriptions.insert(p, id) {
            prop_assert_eq!(old, id, "subscribing twice gives the same subscription");
        }
        Ok(())
    }

    fn wamp_unsubscribe(&mut self, s: usize, p: usize) -> Result<(), TestCaseError> {
        let Some(session) = self.wamp[s].as_mut() else {
            return Ok(());
        };
        if let Some(id) = session.subscriptions.remove(&p) {
            prop_assert!(self.realm.unsubscribe(session.peer.handle.info.id, id));
        }
        Ok(())
    }

    fn wamp_publish(&mut self, s: usize, t: usize) {
        let Some(session) = self.wamp[s].as_ref() else {
            return;
        };
        let info = session.peer.handle.info.clone();
        let tag = self.tag("p");
        let payload = Payload::Wamp {
            args: Some(vec![Value::from(tag.as_str())]),
            kwargs: None,
        };
        let topic = Topic::from_wamp(TOPICS[t].0);
        self.realm
            .publish(Some(&info), &topic, payload, &PublishOptions::default());
        // WAMP publishes at QoS 0; MQTT reads the JSON of its only argument.
        let mqtt = Bytes::from(format!("\"{tag}\""));
        self.published(tag, t, 0, Publisher::Wamp(s), mqtt);
    }

    fn leave(&mut self, s: usize) {
        if let Some(session) = self.wamp[s].take() {
            self.realm.leave(session.peer.handle.info.id);
        }
    }
}

proptest! {
    // One case is one seed: up to 150 steps of 3 WAMP sessions and 4 MQTT clients, then
    // the end. 2,000 cases take about 3 s in a debug build.
    #![proptest_config(ProptestConfig::with_cases(2_000))]
    #[test]
    fn wamp_and_mqtt_sessions_get_exactly_what_they_are_owed(
        ops in prop::collection::vec(op(), 1..150)
    ) {
        let mut world = World::new();
        for (i, op) in ops.iter().enumerate() {
            world
                .step(op)
                .map_err(|e| TestCaseError::fail(format!("step {i} ({op:?}): {e}")))?;
        }
        world
            .finish()
            .map_err(|e| TestCaseError::fail(format!("at the end: {e}")))?;
    }
}
