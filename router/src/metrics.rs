//! Counters the gates and the realm bump where things happen; the admin listener reads
//! them for `GET /metrics` ([`crate::admin`]).
//!
//! Plain relaxed atomics in one [`Metrics`] shared by the whole router
//! ([`crate::realm::Shared::metrics`]). The message path stays cheap: a WAMP connection
//! adds up one read's (or one write's) worth of messages in a local [`Count`] and adds it
//! here once; MQTT traffic is already counted per realm for `$SYS` (`mqtt::Stats`), and
//! the scrape sums the realms instead of counting it twice. What the scrape can read from
//! the router's state (sessions, subscriptions, retained keys, history) is not counted
//! here at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A protocol the router speaks to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// WAMP v2.
    Wamp,
    /// MQTT 3.1, 3.1.1 and 5.
    Mqtt,
}

impl Protocol {
    /// Both, in label order.
    pub const ALL: [Self; 2] = [Self::Wamp, Self::Mqtt];

    /// The `protocol` label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Wamp => "wamp",
            Self::Mqtt => "mqtt",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a client connection speaks, over what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionKind {
    /// WAMP over WebSocket (`/ws`).
    WampWebSocket,
    /// WAMP over RawSocket.
    WampRawSocket,
    /// MQTT over TCP.
    MqttTcp,
    /// MQTT over WebSocket (`/mqtt`).
    MqttWebSocket,
}

impl ConnectionKind {
    /// Every kind, in label order.
    pub const ALL: [Self; 4] = [
        Self::WampWebSocket,
        Self::WampRawSocket,
        Self::MqttTcp,
        Self::MqttWebSocket,
    ];

    /// The protocol.
    pub fn protocol(self) -> Protocol {
        match self {
            Self::WampWebSocket | Self::WampRawSocket => Protocol::Wamp,
            Self::MqttTcp | Self::MqttWebSocket => Protocol::Mqtt,
        }
    }

    /// The `transport` label: `websocket`, `rawsocket` or `tcp`.
    pub fn transport(self) -> &'static str {
        match self {
            Self::WampWebSocket | Self::MqttWebSocket => "websocket",
            Self::WampRawSocket => "rawsocket",
            Self::MqttTcp => "tcp",
        }
    }

    /// The kind of a session's transport name ([`crate::realm::SessionInfo::transport`]:
    /// `websocket`, `rawsocket`, `mqtt`, `mqtt-websocket`).
    pub fn of_session_transport(transport: &str) -> Option<Self> {
        match transport {
            "websocket" => Some(Self::WampWebSocket),
            "rawsocket" => Some(Self::WampRawSocket),
            "mqtt" => Some(Self::MqttTcp),
            "mqtt-websocket" => Some(Self::MqttWebSocket),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Traffic of one batch, added up locally and then to a [`Traffic`] once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use = "a count is only seen once it is added to the metrics"]
pub struct Count {
    /// Protocol messages (WAMP messages, MQTT packets).
    pub messages: u64,
    /// Their encoded size, in bytes (without WebSocket or RawSocket framing).
    pub bytes: u64,
    /// How many of them were publications (WAMP PUBLISH in, EVENT out; MQTT PUBLISH).
    pub publications: u64,
}

impl Count {
    /// One message of `bytes`.
    pub fn message(&mut self, bytes: usize) {
        self.messages += 1;
        self.bytes += bytes as u64;
    }

    /// One publication (counted apart from the message that carries it).
    pub fn publication() -> Self {
        Count {
            publications: 1,
            ..Count::default()
        }
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.messages == 0 && self.bytes == 0 && self.publications == 0
    }
}

/// Traffic counters of one protocol, since start.
#[derive(Debug, Default)]
pub struct Traffic {
    messages_received: AtomicU64,
    messages_sent: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    publications_received: AtomicU64,
    publications_sent: AtomicU64,
}

/// A snapshot of [`Traffic`] (or a sum of several).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficTotals {
    /// From clients.
    pub received: Count,
    /// To clients.
    pub sent: Count,
}

impl TrafficTotals {
    /// Adds another snapshot.
    pub fn add(&mut self, other: &TrafficTotals) {
        for (mine, theirs) in [
            (&mut self.received, &other.received),
            (&mut self.sent, &other.sent),
        ] {
            mine.messages += theirs.messages;
            mine.bytes += theirs.bytes;
            mine.publications += theirs.publications;
        }
    }
}

impl Traffic {
    /// Adds what a batch received.
    pub fn received(&self, count: Count) {
        add(&self.messages_received, count.messages);
        add(&self.bytes_received, count.bytes);
        add(&self.publications_received, count.publications);
    }

    /// Adds what a batch sent.
    pub fn sent(&self, count: Count) {
        add(&self.messages_sent, count.messages);
        add(&self.bytes_sent, count.bytes);
        add(&self.publications_sent, count.publications);
    }

    /// The counters now.
    pub fn totals(&self) -> TrafficTotals {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TrafficTotals {
            received: Count {
                messages: load(&self.messages_received),
                bytes: load(&self.bytes_received),
                publications: load(&self.publications_received),
            },
            sent: Count {
                messages: load(&self.messages_sent),
                bytes: load(&self.bytes_sent),
                publications: load(&self.publications_sent),
            },
        }
    }
}

/// Adds to a counter, skipping the atomic operation when there is nothing to add.
fn add(counter: &AtomicU64, value: u64) {
    if value > 0 {
        counter.fetch_add(value, Ordering::Relaxed);
    }
}

/// The router's counters (see the module docs for what is counted where).
#[derive(Debug, Default)]
pub struct Metrics {
    connections_open: [AtomicU64; ConnectionKind::ALL.len()],
    connections_opened: [AtomicU64; ConnectionKind::ALL.len()],
    /// WAMP messages in and out.
    pub wamp: Traffic,
    /// MQTT packets outside any realm's counters: CONNECT, and the CONNACK of a refused
    /// connection.
    pub mqtt_handshake: Traffic,
    calls: AtomicU64,
    call_errors: AtomicU64,
    queue_dropped: AtomicU64,
    backpressure_pauses: AtomicU64,
    auth_failures: [AtomicU64; Protocol::ALL.len()],
    session_moves: [AtomicU64; SessionMove::ALL.len()],
}

/// A step of an MQTT session's move between cluster entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionMove {
    /// A connection here claimed a session the log knew (served elsewhere, or before).
    Claimed,
    /// A claim here resumed a session (`session present`).
    Resumed,
    /// This entry ended its copy of a session another entry claimed, and handed it over.
    HandedOver,
    /// This entry adopted the session of an entry that is gone.
    Adopted,
}

impl SessionMove {
    /// Every step, in label order.
    pub const ALL: [SessionMove; 4] = [
        SessionMove::Claimed,
        SessionMove::Resumed,
        SessionMove::HandedOver,
        SessionMove::Adopted,
    ];

    /// The `kind` label.
    pub fn name(self) -> &'static str {
        match self {
            SessionMove::Claimed => "claimed",
            SessionMove::Resumed => "resumed",
            SessionMove::HandedOver => "handed_over",
            SessionMove::Adopted => "adopted",
        }
    }
}

/// Counters of [`Metrics`] that are not traffic, as read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventTotals {
    /// WAMP CALLs received.
    pub calls: u64,
    /// WAMP ERRORs answering a CALL.
    pub call_errors: u64,
    /// Events dropped because a session's queue was full.
    pub queue_dropped: u64,
    /// Times a publisher was paused until a subscriber's queue drained.
    pub backpressure_pauses: u64,
}

impl Metrics {
    /// A connection of `kind` starts; the returned guard counts it open until dropped.
    pub fn connection_opened(self: &Arc<Self>, kind: ConnectionKind) -> ConnectionGuard {
        self.connections_opened[kind.index()].fetch_add(1, Ordering::Relaxed);
        self.connections_open[kind.index()].fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            metrics: self.clone(),
            kind,
        }
    }

    /// Connections of `kind` open now.
    pub fn connections_open(&self, kind: ConnectionKind) -> u64 {
        self.connections_open[kind.index()].load(Ordering::Relaxed)
    }

    /// Connections of `kind` accepted since start.
    pub fn connections_opened_total(&self, kind: ConnectionKind) -> u64 {
        self.connections_opened[kind.index()].load(Ordering::Relaxed)
    }

    /// WAMP CALLs received (`count` in one batch).
    pub fn calls(&self, count: u64) {
        add(&self.calls, count);
    }

    /// WAMP ERRORs sent in answer to CALLs (`count` in one batch).
    pub fn call_errors(&self, count: u64) {
        add(&self.call_errors, count);
    }

    /// Events dropped at full session queues.
    pub fn queue_dropped(&self, count: u64) {
        add(&self.queue_dropped, count);
    }

    /// A publisher paused for a congested subscriber queue.
    pub fn backpressure_paused(&self) {
        self.backpressure_pauses.fetch_add(1, Ordering::Relaxed);
    }

    /// A client failed to authenticate.
    pub fn auth_failed(&self, protocol: Protocol) {
        self.auth_failures[protocol.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Authentication failures of `protocol` since start.
    pub fn auth_failures(&self, protocol: Protocol) -> u64 {
        self.auth_failures[protocol.index()].load(Ordering::Relaxed)
    }

    /// An MQTT session's move between cluster entries took a step here.
    pub fn session_moved(&self, step: SessionMove) {
        self.session_moves[step as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How often `step` happened here since start.
    pub fn session_moves(&self, step: SessionMove) -> u64 {
        self.session_moves[step as usize].load(Ordering::Relaxed)
    }

    /// The other counters now.
    pub fn events(&self) -> EventTotals {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        EventTotals {
            calls: load(&self.calls),
            call_errors: load(&self.call_errors),
            queue_dropped: load(&self.queue_dropped),
            backpressure_pauses: load(&self.backpressure_pauses),
        }
    }
}

/// Counts a connection open while it lives ([`Metrics::connection_opened`]).
#[derive(Debug)]
#[must_use = "the connection counts as open only while the guard lives"]
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
    kind: ConnectionKind,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let open = &self.metrics.connections_open[self.kind.index()];
        let before = open.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(before > 0, "a connection closed that was never opened");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_counts_its_connection_open_until_dropped() {
        let metrics = Arc::new(Metrics::default());
        let first = metrics.connection_opened(ConnectionKind::MqttTcp);
        let second = metrics.connection_opened(ConnectionKind::MqttTcp);
        let other = metrics.connection_opened(ConnectionKind::WampRawSocket);
        assert_eq!(metrics.connections_open(ConnectionKind::MqttTcp), 2);
        drop(first);
        assert_eq!(metrics.connections_open(ConnectionKind::MqttTcp), 1);
        assert_eq!(metrics.connections_opened_total(ConnectionKind::MqttTcp), 2);
        drop((second, other));
        for kind in ConnectionKind::ALL {
            assert_eq!(metrics.connections_open(kind), 0, "{kind:?}");
        }
        assert_eq!(
            metrics.connections_opened_total(ConnectionKind::WampRawSocket),
            1
        );
        assert_eq!(
            metrics.connections_opened_total(ConnectionKind::WampWebSocket),
            0
        );
    }

    #[test]
    fn batches_add_up() {
        let traffic = Traffic::default();
        let mut batch = Count::default();
        assert!(batch.is_empty());
        batch.message(10);
        batch.message(5);
        batch.publications += 1;
        traffic.received(batch);
        traffic.sent(Count {
            messages: 1,
            bytes: 3,
            publications: 0,
        });
        let totals = traffic.totals();
        assert_eq!(
            totals.received,
            Count {
                messages: 2,
                bytes: 15,
                publications: 1
            }
        );
        assert_eq!(totals.sent.bytes, 3);
        let mut sum = totals;
        sum.add(&totals);
        assert_eq!(sum.received.bytes, 30);
        assert_eq!(sum.sent.messages, 2);
    }

    #[test]
    fn session_transports_map_to_their_labels() {
        for (name, protocol, transport) in [
            ("websocket", "wamp", "websocket"),
            ("rawsocket", "wamp", "rawsocket"),
            ("mqtt", "mqtt", "tcp"),
            ("mqtt-websocket", "mqtt", "websocket"),
        ] {
            let kind = ConnectionKind::of_session_transport(name).expect(name);
            assert_eq!(
                (kind.protocol().name(), kind.transport()),
                (protocol, transport)
            );
        }
        assert_eq!(ConnectionKind::of_session_transport("carrier pigeon"), None);
    }
}
