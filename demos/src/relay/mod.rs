//! `fox-relay`: the physical-limit baseline for fox-bench. It accepts fox-bench's
//! publishers and subscribers (MQTT 3.1.1 / 5.0 over TCP, WAMP over RawSocket and
//! WebSocket) and copies each publish to the connections subscribed to exactly its topic,
//! with nothing else in the way: what a router's rows are compared against to say how far
//! the router is from the cost of moving the bytes (`RATIO ... relay` in bench/compare.sh).
//!
//! ```text
//!  publisher ─TCP─► reader task ─► exact-topic lookup ─► subscriber's queue ─► writer ─TCP─► subscriber
//!                       └─► fixed answers (CONNACK, SUBACK, PUBACK, PUBREC, PUBCOMP, WELCOME,
//!                           SUBSCRIBED, PUBLISHED) ─► its own queue ─► writer ─TCP─► publisher
//! ```
//!
//! # What it does
//! - MQTT: splits the byte stream into packets by the fixed header (type byte and
//!   remaining length) and forwards every PUBLISH **as received, byte for byte** (same QoS,
//!   same packet identifier) to the connections that subscribed to exactly its topic name.
//!   It answers CONNECT with a fixed CONNACK (3.1.1 or 5.0, as the CONNECT's protocol level
//!   says), SUBSCRIBE with a SUBACK granting each requested QoS, a QoS 1 PUBLISH with
//!   PUBACK, a QoS 2 PUBLISH with PUBREC and its PUBREL with PUBCOMP, a subscriber's PUBREC
//!   with PUBREL, and PINGREQ with PINGRESP. The publisher's acknowledgement goes out once
//!   the PUBLISH is in every subscriber's queue.
//! - WAMP: HELLO gets a WELCOME, SUBSCRIBE a SUBSCRIBED (one subscription ID per topic, as
//!   a broker shares it), PUBLISH becomes one EVENT (decoded and encoded with the project's
//!   codec: WAMP has no frame a subscriber accepts as the publisher sent it, so the WAMP
//!   figure includes one decode and one encode per publish, the floor for any WAMP router)
//!   and a PUBLISHED when the publisher asked for `acknowledge`; GOODBYE is answered.
//!   RawSocket pings get their pong.
//! - Backpressure: every connection has one bounded queue ([`OUTGOING_QUEUE_MAX`]) drained
//!   by its writer task, which coalesces what is queued into one socket write
//!   ([`WRITE_BATCH_BYTES_MAX`]); a full queue stops the publisher's reader, and with it the
//!   publisher's TCP window.
//!
//! # What it does not do
//! No wildcards, no retained messages, no sessions (every connection is clean and
//! forgotten when it closes), no authentication or authorization, no QoS downgrade to the
//! subscription's QoS, no packet-identifier rewriting (so MQTT QoS 2 fan-in, where two
//! publishers' identifiers meet at one subscriber, is not supported), no retransmission, no
//! keep-alive enforcement, no MQTT 5 properties (topic aliases would break the lookup), and
//! no translation between MQTT versions or between a publisher's and a subscriber's
//! transport (WAMP serializers may differ: the EVENT is encoded once per serializer). No
//! WAMP RPC: CALL, REGISTER and anything else not listed above closes the connection.
//! Nor is it lean when idle (each connection reserves a [`READ_RESERVE_BYTES`] read
//! buffer): a throughput baseline, not an idle-memory one. It is a measuring instrument for
//! loopback benchmarks, never a broker.
//!
//! # Calling order
//! [`Relay::bind`] the listeners named in a [`Config`] (port 0 for a free one), read their
//! addresses, then [`Relay::run`] until the task is dropped or aborted.

pub mod mqtt;
mod topics;
pub mod wamp;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use topics::Topics;

/// Messages queued toward one connection before its publishers wait (the same bound as
/// fox-bench's own client queues).
pub const OUTGOING_QUEUE_MAX: usize = 4096;
/// Most bytes a writer task gathers into one socket write.
pub const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;
/// Largest MQTT packet or WAMP message accepted, in bytes (2^20: RawSocket exponent 11).
pub const FRAME_SIZE_MAX_BYTES: usize = 1 << 20;
/// Bytes reserved in a reader's buffer before each read.
pub const READ_RESERVE_BYTES: usize = 64 * 1024;
/// Connections open at once, over all listeners; further ones wait in the accept queue.
pub const CONNECTIONS_MAX: usize = 100_000;

/// Which listeners to open; `None` leaves one out.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// MQTT 3.1.1 / 5.0 over TCP.
    pub mqtt: Option<SocketAddr>,
    /// WAMP RawSocket (JSON, MsgPack, CBOR).
    pub rawsocket: Option<SocketAddr>,
    /// WAMP over WebSocket (any path; subprotocols wamp.2.json / msgpack / cbor).
    pub ws: Option<SocketAddr>,
}

/// The bound listeners; [`run`](Self::run) serves them.
pub struct Relay {
    mqtt: Option<TcpListener>,
    rawsocket: Option<TcpListener>,
    ws: Option<TcpListener>,
}

impl Relay {
    /// Binds every listener named in `config`.
    pub async fn bind(config: &Config) -> std::io::Result<Relay> {
        async fn listen(addr: Option<SocketAddr>) -> std::io::Result<Option<TcpListener>> {
            match addr {
                Some(addr) => TcpListener::bind(addr).await.map(Some),
                None => Ok(None),
            }
        }
        Ok(Relay {
            mqtt: listen(config.mqtt).await?,
            rawsocket: listen(config.rawsocket).await?,
            ws: listen(config.ws).await?,
        })
    }

    /// The MQTT listener's address.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The RawSocket listener's address.
    pub fn rawsocket_addr(&self) -> Option<SocketAddr> {
        self.rawsocket.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The WebSocket listener's address.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Accepts and serves connections until an accept fails.
    pub async fn run(self) -> std::io::Result<()> {
        let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        let mqtt_topics = Arc::new(Topics::new());
        let wamp_topics = Arc::new(Topics::new());
        let mut accepts = tokio::task::JoinSet::new();
        if let Some(listener) = self.mqtt {
            let topics = mqtt_topics.clone();
            accepts.spawn(accept_loop(listener, permits.clone(), move |stream| {
                mqtt::serve(stream, topics.clone())
            }));
        }
        if let Some(listener) = self.rawsocket {
            let topics = wamp_topics.clone();
            accepts.spawn(accept_loop(listener, permits.clone(), move |stream| {
                wamp::serve_rawsocket(stream, topics.clone())
            }));
        }
        if let Some(listener) = self.ws {
            let topics = wamp_topics.clone();
            accepts.spawn(accept_loop(listener, permits.clone(), move |stream| {
                wamp::serve_websocket(stream, topics.clone())
            }));
        }
        match accepts.join_next().await {
            Some(Ok(result)) => result,
            Some(Err(join)) => Err(std::io::Error::other(join)),
            None => Ok(()),
        }
    }
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    permits: Arc<Semaphore>,
    serve: F,
) -> std::io::Result<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(std::io::Error::other)?;
        let (stream, _) = listener.accept().await?;
        // Small frames both ways: no Nagle delay (fox-bench and the routers do the same).
        stream.set_nodelay(true)?;
        let connection = serve(stream);
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
}
