//! A session as the realm sees it: who it is, and its bounded outbound queue.
//!
//! Slow-consumer policy: events past `session_queue_max` are dropped (newest first) and
//! counted in [`SessionStats::events_dropped`]; a message that must not be lost (RESULT,
//! INVOCATION, ERROR, ...) finding the queue full closes the session instead, with reason
//! `wamp.close.slow_consumer`, so no caller or callee ever waits on a message that was
//! silently thrown away.

// An edge: a session's handle and queue, shared with its connection task (the slow-consumer
// window is measured on the clock when a delivery finds the queue full).
#![allow(clippy::disallowed_methods)]

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use fox_wamp_proto::{Dict, Message, Value};
use tokio::sync::Notify;

use super::queue;
use super::{Publication, SessionId};
use crate::auth::Identity;

/// Who a session is and how it is connected.
#[derive(Debug)]
pub struct SessionInfo {
    /// Session ID.
    pub id: SessionId,
    /// Realm name.
    pub realm: String,
    /// Authenticated identity.
    pub identity: Identity,
    /// `websocket`, `rawsocket`, `mqtt` or `mqtt-websocket`.
    pub transport: &'static str,
    /// Peer address.
    pub peer: String,
    /// Roles and features from HELLO (empty for MQTT).
    pub roles: Dict,
}

impl SessionInfo {
    /// The session's details dict, as the session meta API returns it.
    pub fn details(&self) -> Dict {
        let mut transport = Dict::new();
        transport.insert("type".into(), Value::from(self.transport));
        transport.insert("peer".into(), Value::from(self.peer.as_str()));
        let mut d = Dict::new();
        d.insert("session".into(), Value::from(self.id));
        d.insert("realm".into(), Value::from(self.realm.as_str()));
        d.insert("authid".into(), Value::from(self.identity.authid.as_str()));
        d.insert(
            "authrole".into(),
            Value::from(self.identity.authrole.as_str()),
        );
        d.insert(
            "authmethod".into(),
            Value::from(self.identity.authmethod.as_str()),
        );
        d.insert(
            "authprovider".into(),
            Value::from(self.identity.authprovider.as_str()),
        );
        d.insert("transport".into(), Value::Dict(transport));
        d
    }

    /// The part of HELLO's `roles` that the router reads ([`FEATURES_READ`]), to keep
    /// for the session's life: a client's whole roles dict (autobahn and fox-bench announce
    /// dozens of features) was 5 KiB of every idle WAMP session.
    pub fn roles_read(roles: &Dict) -> Dict {
        let mut kept = Dict::new();
        for (role, feature) in FEATURES_READ {
            let announced = roles
                .get(*role)
                .and_then(|r| r.get("features"))
                .and_then(|f| f.get(feature))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if !announced {
                continue;
            }
            let mut features = Dict::new();
            features.insert((*feature).into(), Value::Bool(true));
            let mut entry = Dict::new();
            entry.insert("features".into(), Value::Dict(features));
            kept.insert((*role).into(), Value::Dict(entry));
        }
        kept
    }

    /// Whether the peer announced a feature for a role (`callee`, `call_canceling`); only
    /// those of [`FEATURES_READ`] are kept from HELLO.
    pub fn has_feature(&self, role: &str, feature: &str) -> bool {
        self.roles
            .get(role)
            .and_then(|r| r.get("features"))
            .and_then(|f| f.get(feature))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// The (role, feature) pairs of HELLO's `roles` that the router acts on: the only ones
/// a WAMP session keeps ([`SessionInfo::roles_read`]). A feature read with
/// [`SessionInfo::has_feature`] must be listed here.
pub const FEATURES_READ: &[(&str, &str)] = &[("callee", "call_canceling")];

/// A delivery of a publication to one subscription of one session.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The subscription it matched.
    pub subscription: u64,
    /// Whether that subscription is pattern-based (then EVENT.Details.topic is set).
    pub pattern_based: bool,
    /// The publication.
    pub publication: Arc<Publication>,
    /// QoS granted to the subscription (MQTT).
    pub qos: u8,
    /// Replayed from retained state rather than live.
    pub retained: bool,
}

/// What the realm sends to a session's gate.
///
/// Events are what fills queues, so they are stored inline; the rarer variants are boxed to
/// keep every queue slot small.
#[derive(Debug)]
pub enum Outbound {
    /// An event.
    Event(Delivery),
    /// A WAMP message (RPC traffic).
    Wamp(Box<Message>),
    /// Close the session (meta API kill, slow consumer): GOODBYE with this reason.
    Close(Box<Close>),
}

/// Why the router closes a session.
#[derive(Debug)]
pub struct Close {
    /// The reason URI.
    pub reason: String,
    /// A message for the peer.
    pub message: String,
}

impl Outbound {
    /// A WAMP message for the session.
    pub fn wamp(message: Message) -> Self {
        Self::Wamp(Box::new(message))
    }
}

/// Why the router closes a session at once (what the client and the log are told).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    /// The router's administrator (the admin API, `wamp.session.kill`).
    Administrator = 1,
    /// This cluster entry lost its lease: the keys its sessions held are released.
    Fenced = 2,
}

/// Counters of one session.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Events dropped because the queue was full.
    pub events_dropped: AtomicU64,
    /// Set when the session must close because a non-droppable message found its queue
    /// full.
    pub overflowed: AtomicBool,
    /// Why the router closes the session at once, if it does ([`Kill`] as a number, 0:
    /// not killed): see [`SessionHandle::kill`], [`SessionStats::kill`].
    killed: AtomicU8,
    /// Wakes the session task when `overflowed` is set or the session is killed.
    pub overflow: Notify,
    /// Set with every `overflow` notification and taken by an idle MQTT connection,
    /// which waits on its queue's waker rather than on `overflow` (see
    /// [`SessionHandle::wake`]): it wakes, and its select loop takes the notification.
    alerted: AtomicBool,
    /// Acknowledged WAMP publishes whose PUBLISHED (or ERROR) is not queued yet: a
    /// connection that shuts down waits for them before its GOODBYE (bounded), so that a
    /// publisher learns the fate of each (`crate::realm::sync::acknowledge_later`).
    pub acks_pending: AtomicU32,
    /// Messages from the client (WAMP messages, MQTT packets) since the session began.
    pub messages_received: AtomicU64,
    /// Messages to the client since the session began.
    pub messages_sent: AtomicU64,
    /// The connection serving the session, or the last one (an MQTT session outlives
    /// its connections; `live` says whether one serves it now).
    connection: Mutex<Option<Box<Connection>>>,
    /// Backpressure: whether a connection is draining the queue now (a parked MQTT
    /// session's queue only fills, so nobody waits for it).
    pub live: AtomicBool,
    /// Backpressure: the queue went past its high-water mark.
    congested: AtomicBool,
    /// Backpressure: wakes paused publishers once the queue is back under low water.
    drained: Notify,
    /// Backpressure: Unix ms before which publishers do not wait for this session (it did
    /// not drain in time; see `realm::backpressure::Backpressure`).
    ignored_until_ms: AtomicU64,
}

/// Backpressure: a live session's queue past `capacity / BACKPRESSURE_HIGH_WATER_DIVISOR`
/// messages of QoS 1 or 2 (or past half its capacity with other messages) pauses the
/// publishers into it (see [`crate::realm::backpressure::Backpressure`]) until it is back under half
/// that first mark.
pub const BACKPRESSURE_HIGH_WATER_DIVISOR: usize = 16;
/// The smallest high-water mark, in messages.
pub const BACKPRESSURE_HIGH_WATER_MIN: usize = 16;

fn high_water(capacity: usize) -> usize {
    (capacity / BACKPRESSURE_HIGH_WATER_DIVISOR).max(BACKPRESSURE_HIGH_WATER_MIN)
}

/// The high-water mark for messages that are not acknowledged (QoS 0, WAMP events).
fn unacknowledged_high_water(capacity: usize) -> usize {
    (capacity / 2).max(BACKPRESSURE_HIGH_WATER_MIN)
}

/// The connection serving a session (see [`SessionStats::attach`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The client's address.
    pub peer: String,
    /// When it connected (Unix ms).
    pub since_ms: u64,
}

impl SessionStats {
    /// Whether the session was alerted (killed, overflowed) since the last call: an idle
    /// MQTT connection then goes back to its select loop, which takes `overflow`'s
    /// notification. Clears the alert.
    pub fn take_alert(&self) -> bool {
        self.alerted.swap(false, Ordering::AcqRel)
    }

    /// Why the router closes the session at once (`None`: it does not).
    pub fn kill(&self) -> Option<Kill> {
        match self.killed.load(Ordering::Acquire) {
            1 => Some(Kill::Administrator),
            2 => Some(Kill::Fenced),
            _ => None,
        }
    }

    /// [`SessionStats::kill`], clearing it (a parked MQTT session may be resumed later).
    pub fn take_kill(&self) -> Option<Kill> {
        match self.killed.swap(0, Ordering::AcqRel) {
            1 => Some(Kill::Administrator),
            2 => Some(Kill::Fenced),
            _ => None,
        }
    }

    /// A connection starts serving the session (it drains the queue from now on).
    pub fn attach(&self, peer: &str, now_ms: u64) {
        let connection = Connection {
            peer: peer.to_owned(),
            since_ms: now_ms,
        };
        *self.connection_slot() = Some(Box::new(connection));
        self.live.store(true, Ordering::Relaxed);
    }

    /// The connection stopped serving the session (ended, or the session was parked).
    pub fn detach(&self) {
        self.live.store(false, Ordering::Relaxed);
    }

    /// The connection serving the session now; `None` while none does.
    pub fn connection(&self) -> Option<Connection> {
        if !self.live.load(Ordering::Relaxed) {
            return None;
        }
        self.connection_slot().as_deref().cloned()
    }

    fn connection_slot(&self) -> std::sync::MutexGuard<'_, Option<Box<Connection>>> {
        // Poisoned only if a holder panicked; the critical sections here are panic-free.
        crate::locks::lock(&self.connection)
    }

    /// Adds one batch's messages from the client.
    pub fn count_received(&self, messages: u64) {
        if messages > 0 {
            self.messages_received
                .fetch_add(messages, Ordering::Relaxed);
        }
    }

    /// Adds one batch's messages to the client.
    pub fn count_sent(&self, messages: u64) {
        if messages > 0 {
            self.messages_sent.fetch_add(messages, Ordering::Relaxed);
        }
    }

    /// Called by the connection that drains the queue, with the queue's length and
    /// capacity after taking from it: wakes the publishers paused on it once it is under
    /// the low-water mark (half the high-water mark).
    pub fn drained_to(&self, queue_len: usize, capacity: usize) {
        if queue_len <= high_water(capacity) / 2 && self.congested.swap(false, Ordering::AcqRel) {
            self.drained.notify_waiters();
        }
    }

    /// Whether the queue is past its high-water mark (backpressure).
    pub fn is_congested(&self) -> bool {
        self.congested.load(Ordering::Acquire)
    }

    /// Completes when [`SessionStats::drained_to`] finds the queue under low water.
    pub fn drained(&self) -> tokio::sync::futures::Notified<'_> {
        self.drained.notified()
    }

    /// Publishers do not wait for this session before `until_ms` (Unix ms).
    pub fn ignore_until(&self, until_ms: u64) {
        self.ignored_until_ms.store(until_ms, Ordering::Relaxed);
    }
}

/// The realm's handle on a session: cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    /// Who it is.
    pub info: Arc<SessionInfo>,
    tx: queue::Sender<Outbound>,
    /// Counters.
    pub stats: Arc<SessionStats>,
}

impl SessionHandle {
    /// A handle and the receiving end of its queue (capacity `queue_max`).
    pub fn new(info: SessionInfo, queue_max: usize) -> (Self, queue::Receiver<Outbound>) {
        let (tx, rx) = queue::channel(queue_max);
        let handle = Self {
            info: Arc::new(info),
            tx,
            stats: Arc::new(SessionStats::default()),
        };
        (handle, rx)
    }

    /// Queues an event; drops and counts it when the queue is full. An event that takes a
    /// live queue past its high-water mark records backpressure for the publisher (see
    /// [`crate::realm::backpressure::Backpressure`]). The mark is low for acknowledged messages (QoS 1
    /// or 2: latency) and half the queue for the others (QoS 0, WAMP events: pause the
    /// publisher rather than drop what it sends once the queue is full). Returns whether
    /// the event was dropped for a full queue.
    pub fn deliver(&self, delivery: Delivery) -> bool {
        let capacity = self.tx.max_capacity();
        let mark = if delivery.qos > 0 {
            high_water(capacity)
        } else {
            unacknowledged_high_water(capacity)
        };
        match self.tx.try_send(Outbound::Event(delivery)) {
            Ok(queued) => {
                if queued > mark {
                    self.congested();
                }
                false
            }
            Err(queue::TrySendError::Full(_)) => {
                let dropped = self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
                if dropped == 0 {
                    tracing::warn!(session = self.info.id, "slow consumer: dropping events");
                }
                true
            }
            Err(queue::TrySendError::Closed(_)) => false,
        }
    }

    /// Closes the session at once, ahead of anything queued for it (the admin API's
    /// kick): a WAMP session gets GOODBYE `wamp.close.killed`, an MQTT 5 client DISCONNECT
    /// 0x98 (administrative action), an MQTT 3.x client a closed connection. A session
    /// that no connection serves (a parked MQTT session) closes when one resumes it; the
    /// admin API ends those through the MQTT gate's registry (`Registry::end_parked`).
    pub fn kill(&self) {
        self.close_now(Kill::Administrator);
    }

    /// Closes the session as [`SessionHandle::kill`] does, because its cluster entry lost
    /// its lease (cut off from the cluster): the keys it held are someone else's now.
    pub fn fence(&self) {
        self.close_now(Kill::Fenced);
    }

    fn close_now(&self, why: Kill) {
        self.stats.killed.store(why as u8, Ordering::Release);
        self.alert();
    }

    /// Notifies `overflow`, and the idle wait of an MQTT connection through the queue.
    fn alert(&self) {
        self.stats.overflow.notify_one();
        self.stats.alerted.store(true, Ordering::Release);
        self.wake();
    }

    /// Wakes the session's connection task if it waits idle on its queue (an MQTT
    /// connection between activations, see `mqtt::conn`): a flag it reads on waking
    /// (killed, overflowed, the router shutting down) was set.
    pub fn wake(&self) {
        self.tx.wake_consumer();
    }

    fn congested(&self) {
        if !self.stats.live.load(Ordering::Relaxed) {
            return;
        }
        let ignored_until_ms = self.stats.ignored_until_ms.load(Ordering::Relaxed);
        if ignored_until_ms != 0 && crate::engine::unix_ms() < ignored_until_ms {
            return;
        }
        self.stats.congested.store(true, Ordering::Release);
        crate::realm::backpressure::Backpressure::record(self.stats.clone());
    }

    /// Queues a message that must not be dropped; on a full queue the session is told to
    /// close. Returns whether it was queued.
    pub fn send(&self, message: Outbound) -> bool {
        match self.tx.try_send(message) {
            Ok(_) => true,
            Err(queue::TrySendError::Full(_)) => {
                if !self.stats.overflowed.swap(true, Ordering::AcqRel) {
                    tracing::warn!(session = self.info.id, "slow consumer: closing session");
                }
                self.alert();
                false
            }
            Err(queue::TrySendError::Closed(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realm::backpressure::{Backpressure, BACKPRESSURE_WAIT_MAX_MS};
    use crate::realm::{MessageProperties, Payload, Publication};

    fn dict(entries: &[(&str, Value)]) -> Dict {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn a_session_keeps_only_the_hello_features_the_router_reads() {
        let features = dict(&[
            ("call_canceling", Value::Bool(true)),
            ("progressive_call_results", Value::Bool(true)),
        ]);
        let roles = dict(&[
            (
                "callee",
                Value::Dict(dict(&[("features", Value::Dict(features))])),
            ),
            ("subscriber", Value::Dict(Dict::new())),
        ]);
        let kept = SessionInfo::roles_read(&roles);
        let callee = kept.get("callee").and_then(|r| r.get("features"));
        assert_eq!(kept.len(), 1);
        assert_eq!(
            callee.and_then(|f| f.get("call_canceling")),
            Some(&Value::Bool(true))
        );
        assert_eq!(callee.and_then(|f| f.get("progressive_call_results")), None);
        assert!(SessionInfo::roles_read(&dict(&[("caller", Value::Dict(Dict::new()))])).is_empty());
    }
    use crate::topic::Topic;

    fn session(queue_max: usize) -> (SessionHandle, queue::Receiver<Outbound>) {
        let info = SessionInfo {
            id: 7,
            realm: "r".into(),
            identity: Identity {
                authid: "a".into(),
                authrole: "anonymous".into(),
                authmethod: "anonymous".into(),
                authprovider: "static".into(),
            },
            transport: "mqtt",
            peer: "test".into(),
            roles: Dict::new(),
        };
        let (handle, rx) = SessionHandle::new(info, queue_max);
        handle.stats.live.store(true, Ordering::Relaxed);
        (handle, rx)
    }

    fn delivery(qos: u8) -> Delivery {
        let publication = Publication {
            id: 1,
            topic: Topic::from_mqtt("a/b"),
            payload: Payload::Raw(bytes::Bytes::from_static(b"x")),
            publisher: 1,
            disclosed: None,
            qos,
            retain: false,
            properties: MessageProperties::default(),
        };
        Delivery {
            subscription: 1,
            pattern_based: false,
            publication: Arc::new(publication),
            qos,
            retained: false,
        }
    }

    #[tokio::test]
    async fn acknowledged_deliveries_past_high_water_pause_the_publisher_until_drained() {
        // 64 / 32 is below the minimum mark of 16.
        let (handle, mut rx) = session(64);
        let other = Arc::new(SessionStats::default());
        Backpressure::clear();
        for _ in 0..BACKPRESSURE_HIGH_WATER_MIN {
            handle.deliver(delivery(1));
        }
        assert!(
            Backpressure::take(&other).is_none(),
            "at the mark, not past it"
        );
        handle.deliver(delivery(1));
        let pause = Backpressure::take(&other).expect("past the mark");
        assert!(handle.stats.is_congested());
        // 17 queued; low water is 8.
        for _ in 0..8 {
            rx.try_recv().expect("queued");
            handle.stats.drained_to(rx.len(), rx.max_capacity());
        }
        assert!(handle.stats.is_congested(), "9 left: above low water");
        rx.try_recv().expect("queued");
        handle.stats.drained_to(rx.len(), rx.max_capacity());
        assert!(!handle.stats.is_congested());
        assert!(pause.drained().await, "drained, not timed out");
    }

    #[test]
    fn qos0_pauses_publishers_only_past_half_the_queue_and_parked_sessions_never() {
        let (handle, _rx) = session(64);
        let other = Arc::new(SessionStats::default());
        Backpressure::clear();
        for _ in 0..32 {
            handle.deliver(delivery(0));
        }
        assert!(
            Backpressure::take(&other).is_none(),
            "QoS 0 is not held to the low mark of acknowledged messages"
        );
        handle.deliver(delivery(0));
        assert!(
            Backpressure::take(&other).is_some(),
            "past half the queue: pause rather than drop"
        );
        let (parked, _rx) = session(64);
        parked.stats.live.store(false, Ordering::Relaxed);
        for _ in 0..64 {
            parked.deliver(delivery(1));
        }
        assert!(
            Backpressure::take(&other).is_none(),
            "nobody drains a parked queue"
        );
    }

    #[tokio::test]
    async fn a_queue_that_does_not_drain_is_waited_for_once_then_ignored() {
        let (handle, _rx) = session(64);
        let other = Arc::new(SessionStats::default());
        Backpressure::clear();
        for _ in 0..20 {
            handle.deliver(delivery(1));
        }
        let pause = Backpressure::take(&other).expect("past the mark");
        let started = std::time::Instant::now();
        assert!(!pause.drained().await, "timed out");
        assert!(started.elapsed().as_millis() >= u128::from(BACKPRESSURE_WAIT_MAX_MS));
        handle.deliver(delivery(1));
        assert!(
            Backpressure::take(&other).is_none(),
            "a stuck subscriber is not waited for again at once"
        );
    }

    #[test]
    fn a_publisher_is_not_paused_by_its_own_queue() {
        let (handle, _rx) = session(64);
        Backpressure::clear();
        for _ in 0..20 {
            handle.deliver(delivery(1));
        }
        assert!(Backpressure::take(&handle.stats).is_none());
    }

    /// A busy session's queue holds thousands of slots: a slot is one `Outbound`.
    #[test]
    fn queue_slots_stay_small() {
        assert!(
            std::mem::size_of::<Outbound>() <= 32,
            "{} bytes",
            std::mem::size_of::<Outbound>()
        );
    }
}
