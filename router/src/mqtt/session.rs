//! The sans-IO MQTT session of one established connection: packets and deliveries in,
//! packets out, time passed in as Unix milliseconds. No socket, no clock, no task.
//!
//! Calling order (the connection task in `conn.rs` follows it):
//! 1. [`Session::new`] after CONNECT was accepted (`connect.rs`); the CONNACK and, for a
//!    resumed session, the retransmissions (PUBLISH with DUP, PUBREL) are queued first.
//! 2. [`Session::handle_packet`] for each decoded packet, [`Session::handle_outbound`]
//!    for each message from the realm, but only while [`Session::wants_deliveries`],
//!    [`Session::handle_timeout`] when [`Session::poll_timeout`] passes.
//! 3. After each, drain [`Session::poll_packet`] and write.
//! 4. [`Session::end`] once: publishes the will if due, and returns the state to park
//!    when the session outlives the connection.
//!
//! Inbound PUBLISH handling is in `inbound.rs`, outbound delivery and the inflight window
//! in `outbound.rs`, SUBSCRIBE / UNSUBSCRIBE in `subscribe.rs`.

// A sans-IO core: time, randomness and tasks come from its caller (router/clippy.toml).
#![deny(clippy::disallowed_methods)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use fox_mqtt_proto::{ConnAck, Disconnect, Packet, Properties, Protocol, ReasonCode};

use super::inflight::Inflight;
use super::registry::Registry;
use crate::config::Limits;
use crate::realm::{
    Delivery, MessageProperties, OutboundQueue, Payload, PublishOptions, Realm, SessionHandle,
};
use crate::topic::{Pattern, Topic};

/// A will message (MQTT) = a testament (WAMP): published when the connection ends
/// abnormally, after its delay.
#[derive(Clone, Debug)]
pub struct Will {
    /// Topic.
    pub topic: Topic,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// MQTT 5 properties passed through.
    pub properties: MessageProperties,
    /// MQTT 5 will delay, in seconds.
    pub delay_secs: u32,
}

impl Will {
    /// Publishes the will into the realm.
    pub fn publish(self, realm: &Realm, publisher: &SessionHandle) {
        let options = PublishOptions {
            exclude_me: false,
            qos: self.qos,
            retain: self.retain,
            ..PublishOptions::default()
        };
        let payload = Payload::Raw(self.payload);
        realm.publish_with(
            Some(&publisher.info),
            &self.topic,
            payload,
            &options,
            self.properties,
        );
    }
}

/// One MQTT subscription of a session, as the client asked for it.
#[derive(Clone, Debug)]
pub struct SubscriptionRecord {
    /// The broker's subscription ID.
    pub broker_id: u64,
    /// Granted QoS.
    pub qos: u8,
    /// MQTT 5 retain as published.
    pub retain_as_published: bool,
    /// MQTT 5 subscription identifier.
    pub identifier: Option<u32>,
    /// MQTT 5 no local.
    pub no_local: bool,
    /// The last ID before the subscription started (it is owed only later messages).
    pub since: u64,
    /// The filter as a pattern, without a `$share/GROUP/` prefix.
    pub pattern: Pattern,
    /// A shared subscription (`$share/GROUP/FILTER`): its deliveries are never merged
    /// with those of other subscriptions.
    pub shared: bool,
    /// The client asked for the permanent ID (`fox-id`) on this subscription's deliveries.
    pub fox_id: bool,
}

/// What of a session outlives its connection (clean session 0 / session expiry > 0).
#[derive(Debug, Default)]
pub struct SessionState {
    /// Subscriptions by topic filter, as the client wrote it.
    pub subscriptions: HashMap<String, SubscriptionRecord>,
    /// Topic filter by broker subscription ID. A session subscribing `a/b` and
    /// `$share/g/a/b` shares one broker subscription; the later filter wins.
    pub by_broker_id: HashMap<u64, String>,
    /// Outbound QoS 1 / 2 messages not yet acknowledged.
    pub inflight: Inflight,
    /// Inbound QoS 2 packet IDs: PUBREC sent, PUBREL awaited (exactly once).
    pub inbound_qos2: HashSet<u16>,
    /// Deliveries waiting for the inflight window (retained replays, mostly).
    pub pending: VecDeque<Delivery>,
    /// The highest permanent ID taken from the realm queue (live deliveries arrive in ID
    /// order, so everything at or below it not in `inflight` or `pending` is done).
    pub received_through: u64,
    /// The permanent ID of the last publication sent as one merged copy for all matching
    /// non-shared subscriptions: further deliveries of it (through the other
    /// subscriptions, in the same fan-out) are already covered (`outbound.rs`). Compared
    /// for equality, not order: a cluster entry's router-originated messages (meta
    /// events, `$fox/cluster`) carry random IDs outside the log's order.
    pub merged_last: u64,
}

/// A session waiting for its client to come back.
#[derive(Debug)]
pub struct Parked {
    /// The realm's handle: still registered, so subscriptions keep matching.
    pub handle: SessionHandle,
    /// Its queue: fills while the client is away (bounded; newest dropped when full).
    pub rx: OutboundQueue,
    /// Subscriptions, inflight messages, inbound QoS 2 state.
    pub state: SessionState,
    /// Session expiry interval in seconds (> 0).
    pub expiry_secs: u32,
    /// A will waiting for its delay.
    pub will: Option<Will>,
    /// When the connection ended, Unix ms (set when parked).
    pub parked_ms: u64,
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The client sent DISCONNECT (or the router shut down): no will, unless the
    /// DISCONNECT asked for it (MQTT 5, reason 0x04).
    Normal,
    /// Network error, keep alive timeout, protocol violation, kill: the will is due.
    Abnormal,
}

/// What the connection does after a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Flow {
    /// Keep going.
    Continue,
    /// The client sent DISCONNECT: close after writing what is queued.
    Disconnected,
}

/// A protocol violation or a reason to close from our side: DISCONNECT with `reason`
/// (MQTT 5) or close (3.x), and the will is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The reason code.
    pub reason: ReasonCode,
    /// For the log.
    pub message: &'static str,
}

impl Violation {
    /// A violation with this reason.
    pub fn new(reason: ReasonCode, message: &'static str) -> Self {
        Self { reason, message }
    }
}

/// Room a packet has beyond the largest payload: a PUBLISH's fixed header, topic, packet ID
/// and properties together may take this many bytes more than
/// `limits.message_size_max_bytes`, which MQTT counts against the payload alone.
pub const PACKET_HEADROOM_BYTES: usize = 64 * 1024;

/// The largest packet we accept (and announce as Maximum Packet Size): the payload limit
/// plus [`PACKET_HEADROOM_BYTES`], at most what MQTT can encode.
pub fn packet_max_bytes(limits: &Limits) -> usize {
    limits
        .message_size_max_bytes
        .saturating_add(PACKET_HEADROOM_BYTES)
        .min(fox_mqtt_proto::PACKET_SIZE_MAX_BYTES)
}

/// Settings fixed at CONNECT: ours from the limits, the client's from its CONNECT.
#[derive(Clone, Debug)]
pub struct Negotiated {
    /// The connection's protocol.
    pub protocol: Protocol,
    /// Client identifier.
    pub client_id: String,
    /// Keep alive in force, seconds (0: none).
    pub keep_alive_secs: u16,
    /// Outbound QoS 1/2 window: min(client's Receive Maximum, our inflight max).
    pub inflight_max: u16,
    /// Largest packet the client accepts.
    pub client_packet_max_bytes: usize,
    /// Topic aliases the client accepts from us.
    pub client_topic_alias_max: u16,
    /// Inbound QoS 2 window we announced.
    pub receive_max: u16,
    /// Topic aliases we accept.
    pub topic_alias_max: u16,
    /// Session expiry in seconds (0: ends with the connection).
    pub expiry_secs: u32,
    /// Largest queue of pending deliveries.
    pub pending_max: usize,
    /// MQTT 5: every delivery carries the permanent ID as user property `fox-id` (the
    /// listener's switch, or the client asked in CONNECT).
    pub fox_id: bool,
    /// Largest PUBLISH payload accepted (`limits.message_size_max_bytes`).
    pub payload_max_bytes: usize,
}

impl Negotiated {
    /// Our side's settings from the limits, for a client of `protocol`.
    pub fn from_limits(limits: &Limits, protocol: Protocol, client_id: String) -> Self {
        Self {
            protocol,
            client_id,
            keep_alive_secs: 0,
            inflight_max: limits.mqtt_inflight_max.max(1),
            client_packet_max_bytes: usize::MAX,
            client_topic_alias_max: 0,
            receive_max: limits.mqtt_receive_max.max(1),
            topic_alias_max: limits.mqtt_topic_alias_max,
            expiry_secs: 0,
            pending_max: limits.session_queue_max.max(1),
            fox_id: false,
            payload_max_bytes: limits.message_size_max_bytes,
        }
    }
}

/// MQTT 5 topic aliases of one connection, allocated on first use.
#[derive(Debug, Default)]
pub struct TopicAliases {
    /// Topics by the aliases the client set.
    pub inbound: HashMap<u16, String>,
    /// Our aliases by topic.
    pub outbound: HashMap<String, u16>,
}

/// One established MQTT session on one connection.
#[derive(Debug)]
pub struct Session {
    /// The realm's MQTT clients; the realm itself is [`Registry::realm`].
    pub(super) registry: Arc<Registry>,
    pub(super) handle: SessionHandle,
    pub(super) settings: Negotiated,
    pub(super) state: SessionState,
    /// Boxed, as the aliases: most sessions have none, and the session is held for the
    /// whole connection (an inline will is 180 bytes per idle connection).
    pub(super) will: Option<Box<Will>>,
    /// The client's DISCONNECT asked for its will (0x04): it is due at the end as after a
    /// lost connection (after its delay, or when the session ends: MQTT-3.1.2-8).
    pub(super) will_asked: bool,
    pub(super) last_packet_ms: u64,
    pub(super) aliases: Option<Box<TopicAliases>>,
    pub(super) out: VecDeque<Packet>,
    /// With `--data`: store writes of publishes this session received that must be durable
    /// before any packet queued after them (PUBACK, PUBREC) is written.
    pub(super) durability: Vec<(crate::engine::Ack, u16)>,
    /// When this session's durable record was last written, Unix ms (`persist.rs`).
    pub(super) persisted_ms: u64,
    /// Whether the store may hold a record for this client id: nothing to delete otherwise.
    pub(super) stored: bool,
    /// The authorization hooks' answers and parked packet, when the hooks decide for this
    /// session (`authorization.rs`; boxed: most sessions have none).
    pub(super) authorization: Option<Box<super::authorization::Authorization>>,
}

impl Session {
    /// An established session: queues `connack`, then retransmits what `state` holds in
    /// flight (PUBLISH with DUP, PUBREL), in order.
    pub fn new(
        registry: Arc<Registry>,
        handle: SessionHandle,
        settings: Negotiated,
        state: SessionState,
        will: Option<Will>,
        connack: ConnAck,
        now_ms: u64,
    ) -> Self {
        let mut session = Self {
            registry,
            handle,
            settings,
            state,
            will: will.map(Box::new),
            will_asked: false,
            last_packet_ms: now_ms,
            aliases: None,
            out: VecDeque::new(),
            durability: Vec::new(),
            persisted_ms: 0,
            stored: false,
            authorization: None,
        };
        let info = &session.handle.info;
        session.authorization = session
            .realm()
            .shared()
            .authorizer
            .hooks_for(&info.realm, &info.identity.authrole)
            .map(|hooks| Box::new(super::authorization::Authorization::new(hooks.session())));
        session.out.push_back(Packet::ConnAck(connack));
        session.retransmit();
        session.drain_pending(now_ms);
        session
    }

    /// The realm this session is in.
    pub fn realm(&self) -> &Arc<Realm> {
        self.registry.realm()
    }

    /// The realm's handle on this session.
    pub fn handle(&self) -> &SessionHandle {
        &self.handle
    }

    /// The connection's protocol.
    pub fn protocol(&self) -> Protocol {
        self.settings.protocol
    }

    /// The client identifier (assigned by us when the client sent an empty one).
    pub fn client_id(&self) -> &str {
        &self.settings.client_id
    }

    /// Queues a packet to write (the connection's own DISCONNECT).
    pub fn queue(&mut self, packet: Packet) {
        self.out.push_back(packet);
    }

    /// Store writes to wait for before writing the queued packets (see `durability`).
    pub fn take_durability(&mut self) -> Vec<(crate::engine::Ack, u16)> {
        std::mem::take(&mut self.durability)
    }

    /// The publish of `packet_id` could not be ordered or stored: its queued PUBACK or
    /// PUBREC reports 0x80 (Unspecified error) instead of success (MQTT 5), or is not sent
    /// at all (3.x has no failure acknowledgement: the caller closes the connection), and a
    /// QoS 2 packet ID is forgotten, so a resend is a new publish.
    pub fn refuse_acknowledgement(&mut self, packet_id: u16) {
        let v5 = self.settings.protocol.is_v5();
        let acknowledges = |packet: &Packet| match packet {
            Packet::PubAck(ack) => ack.packet_id == packet_id,
            Packet::PubRec(rec) => rec.packet_id == packet_id,
            _ => false,
        };
        if !v5 {
            self.out.retain(|packet| !acknowledges(packet));
        }
        for packet in self.out.iter_mut().filter(|p| acknowledges(p)) {
            match packet {
                Packet::PubAck(ack) => ack.reason = ReasonCode::UnspecifiedError,
                Packet::PubRec(rec) => rec.reason = ReasonCode::UnspecifiedError,
                _ => {}
            }
        }
        self.state.inbound_qos2.remove(&packet_id);
    }

    /// The next packet to write.
    #[must_use]
    pub fn poll_packet(&mut self) -> Option<Packet> {
        self.out.pop_front()
    }

    /// When the keep alive runs out (1.5 x keep alive after the last packet), Unix ms.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        let keep_alive_ms = u64::from(self.settings.keep_alive_secs) * 1000;
        (keep_alive_ms > 0).then(|| self.last_packet_ms + keep_alive_ms * 3 / 2)
    }

    /// Checks the keep alive.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), Violation> {
        match self.poll_timeout() {
            Some(deadline) if now_ms >= deadline => Err(Violation::new(
                ReasonCode::KeepAliveTimeout,
                "keep alive timeout",
            )),
            _ => Ok(()),
        }
    }

    /// One decoded packet from the client.
    pub fn handle_packet(&mut self, packet: Packet, now_ms: u64) -> Result<Flow, Violation> {
        self.last_packet_ms = now_ms;
        let flow = match packet {
            Packet::Publish(publish) => self
                .handle_publish(publish, now_ms)
                .map(|()| Flow::Continue),
            Packet::PubAck(ack) => {
                let flow = self.handle_puback(ack.packet_id);
                self.persist_progress(now_ms);
                flow
            }
            Packet::PubRec(rec) => self.handle_pubrec(rec.packet_id, rec.reason),
            Packet::PubRel(rel) => self.handle_pubrel(rel.packet_id),
            Packet::PubComp(comp) => {
                let flow = self.handle_pubcomp(comp.packet_id);
                self.persist_progress(now_ms);
                flow
            }
            Packet::Subscribe(subscribe) => self.handle_subscribe(subscribe, now_ms),
            Packet::Unsubscribe(unsubscribe) => self.handle_unsubscribe(unsubscribe, now_ms),
            Packet::PingReq => {
                self.out.push_back(Packet::PingResp);
                Ok(Flow::Continue)
            }
            Packet::Disconnect(disconnect) => self.handle_disconnect(disconnect),
            Packet::Connect(_) => Err(Violation::new(ReasonCode::ProtocolError, "second CONNECT")),
            Packet::Auth(_) => Err(Violation::new(
                ReasonCode::ProtocolError,
                "AUTH without an authentication method",
            )),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(Violation::new(
                    ReasonCode::ProtocolError,
                    "server-to-client packet from the client",
                ))
            }
        }?;
        self.drain_pending(now_ms);
        Ok(flow)
    }

    fn handle_disconnect(&mut self, disconnect: Disconnect) -> Result<Flow, Violation> {
        if let Some(expiry_secs) = disconnect.properties.session_expiry_interval_secs {
            // MQTT-3.14.2-2: a session that was to end cannot be made to persist.
            if self.settings.expiry_secs == 0 && expiry_secs != 0 {
                return Err(Violation::new(
                    ReasonCode::ProtocolError,
                    "session expiry set on DISCONNECT after 0 on CONNECT",
                ));
            }
            self.settings.expiry_secs = expiry_secs;
        }
        if disconnect.reason == ReasonCode::DisconnectWithWillMessage {
            self.will_asked = true;
        } else {
            self.will = None;
        }
        Ok(Flow::Disconnected)
    }

    /// The DISCONNECT we send before closing (MQTT 5 only; 3.x just closes).
    pub fn disconnect_packet(&self, reason: ReasonCode) -> Option<Packet> {
        self.settings.protocol.is_v5().then(|| {
            Packet::Disconnect(Disconnect {
                reason,
                properties: Properties::default(),
            })
        })
    }

    /// Ends the connection: publishes the will if it is due now, then either parks the
    /// session (expiry > 0) or removes it from the realm. A will with a delay is parked
    /// with the session and published by the registry when the delay passes, unless the
    /// client comes back first. The will is due after an abnormal end, or when the
    /// client's DISCONNECT asked for it.
    pub fn end(mut self, rx: OutboundQueue, how: End) -> Option<Parked> {
        let due = how == End::Abnormal || self.will_asked;
        let mut will = self.will.take().filter(|_| due);
        let expiry_secs = self.settings.expiry_secs;
        if let Some(w) = will.take_if(|w| w.delay_secs == 0 || expiry_secs == 0) {
            w.publish(self.realm(), &self.handle);
        }
        if expiry_secs == 0 {
            self.forget();
            self.realm().leave(self.handle.info.id);
            return None;
        }
        Some(Parked {
            handle: self.handle,
            rx,
            state: self.state,
            expiry_secs,
            will: will.map(|w| *w),
            parked_ms: 0,
        })
    }
}
