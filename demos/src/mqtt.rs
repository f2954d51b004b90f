//! An async MQTT 3.1.1 / 5.0 client built on `fox-mqtt-proto`.
//!
//! ```text
//!  caller tasks ──encode──► bounded channel ──► writer task ──► TCP
//!  TCP ──► reader task ──decode──► PUBACK/PUBCOMP/SUBACK by packet id ──► oneshot
//!                                  PUBLISH ──► messages channel (PUBACK / PUBREC sent for you)
//! ```
//!
//! Calling order: [`MqttClient::connect`] (CONNECT / CONNACK), then concurrent
//! [`publish`](MqttClient::publish) and [`subscribe`](MqttClient::subscribe) from any number
//! of tasks, [`messages`](MqttClient::messages) once to take the stream of received
//! PUBLISH packets, and [`disconnect`](MqttClient::disconnect). QoS 1 and 2 publishes wait
//! for PUBACK / PUBCOMP; up to `inflight_max` (capped by the broker's Receive Maximum) can
//! be outstanding at once.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use fox_mqtt_proto::{
    decode, encode, Connect, Disconnect, Packet, PubAck, PubComp, PubRec, PubRel, Subscribe,
    SubscriptionOptions,
};
pub use fox_mqtt_proto::{Protocol, Publish, QoS, ReasonCode};

/// Largest packet accepted from the broker, in bytes.
pub const PACKET_SIZE_MAX_BYTES: usize = 16 << 20;
/// Encoded packets queued toward the writer task before senders wait.
pub const OUTGOING_QUEUE_MAX: usize = 4096;
/// Received PUBLISH packets queued before the reader waits (backpressure to the broker).
pub const MESSAGE_QUEUE_MAX: usize = 4096;
/// Most bytes the writer coalesces into one socket write.
const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;
/// First byte of every DISCONNECT packet (type 14, flags 0): the writer closes after it.
const DISCONNECT_FIRST_BYTE: u8 = 0xE0;
/// Bytes reserved in the read buffer before each read.
const READ_RESERVE_BYTES: usize = 8 * 1024;

/// Everything that can go wrong on an MQTT connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The broker sent bytes that do not decode, or we built an unencodable packet.
    #[error("codec: {0}")]
    Codec(#[from] fox_mqtt_proto::Error),
    /// CONNACK refused the connection.
    #[error("connection refused: {0:?}")]
    Refused(ReasonCode),
    /// The broker answered out of order.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A PUBACK / PUBREC / PUBCOMP carried an error reason code.
    #[error("publish failed: {0:?}")]
    PublishFailed(ReasonCode),
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
}

/// CONNECT parameters.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Client identifier.
    pub client_id: String,
    /// Protocol version.
    pub protocol: Protocol,
    /// Clean session (3.1.1) / clean start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds (0: none); PINGREQ is sent every half of it.
    pub keep_alive_secs: u16,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// Most QoS 1/2 publishes awaiting their acknowledgement. Default 1024.
    pub inflight_max: u16,
    /// Local address to bind before connecting (e.g. one of 127.0.0.x to spread source ports).
    pub local_ip: Option<IpAddr>,
}

impl ConnectOptions {
    /// Clean start, keep alive 60 s, no credentials.
    pub fn new(client_id: impl Into<String>, protocol: Protocol) -> Self {
        ConnectOptions {
            client_id: client_id.into(),
            protocol,
            clean_start: true,
            keep_alive_secs: 60,
            username: None,
            password: None,
            inflight_max: 1024,
            local_ip: None,
        }
    }
}

enum Waiter {
    Ack(oneshot::Sender<Result<(), Error>>),
    SubAck(oneshot::Sender<Vec<ReasonCode>>),
}

struct Shared {
    protocol: Protocol,
    out: mpsc::Sender<Bytes>,
    waiters: Mutex<HashMap<u16, Waiter>>,
    packet_id_last: Mutex<u16>,
    inflight: Arc<Semaphore>,
}

impl Shared {
    async fn send(&self, packet: &Packet) -> Result<(), Error> {
        let mut buf = BytesMut::new();
        encode(packet, self.protocol, &mut buf)?;
        self.out.send(buf.freeze()).await.map_err(|_| Error::Closed)
    }

    /// A free packet id, registered with `waiter`. At most `u16::MAX` probes.
    fn register(&self, waiter: Waiter) -> Result<u16, Error> {
        let mut waiters = self.waiters.lock().map_err(|_| Error::Closed)?;
        let mut last = self.packet_id_last.lock().map_err(|_| Error::Closed)?;
        for _ in 0..u16::MAX {
            *last = if *last == u16::MAX { 1 } else { *last + 1 };
            if !waiters.contains_key(&last) {
                waiters.insert(*last, waiter);
                return Ok(*last);
            }
        }
        Err(Error::Protocol("no free packet identifier".into()))
    }

    fn take(&self, packet_id: u16) -> Option<Waiter> {
        self.waiters.lock().ok()?.remove(&packet_id)
    }
}

/// An MQTT client connection. Cheap to clone: clones share the connection, which stays
/// open until [`disconnect`](Self::disconnect) or the broker closes it.
#[derive(Clone)]
pub struct MqttClient {
    shared: Arc<Shared>,
    messages: Arc<Mutex<Option<mpsc::Receiver<Publish>>>>,
}

impl MqttClient {
    /// Connects to `addr`, sends CONNECT and waits for a successful CONNACK.
    pub async fn connect(addr: SocketAddr, options: ConnectOptions) -> Result<Self, Error> {
        let mut stream = open(addr, options.local_ip).await?;
        let protocol = options.protocol;
        let connect = Packet::Connect(Box::new(Connect {
            protocol,
            clean_start: options.clean_start,
            keep_alive_secs: options.keep_alive_secs,
            client_id: options.client_id.clone(),
            username: options.username.clone(),
            password: options.password.clone(),
            ..Connect::default()
        }));
        let mut buf = BytesMut::new();
        encode(&connect, protocol, &mut buf)?;
        stream.write_all(&buf).await?;
        let mut input = BytesMut::with_capacity(READ_RESERVE_BYTES);
        let connack = loop {
            if let Some(packet) = decode(&mut input, Some(protocol), PACKET_SIZE_MAX_BYTES)? {
                break packet;
            }
            input.reserve(READ_RESERVE_BYTES);
            if stream.read_buf(&mut input).await? == 0 {
                return Err(Error::Closed);
            }
        };
        let Packet::ConnAck(connack) = connack else {
            return Err(Error::Protocol("expected CONNACK".into()));
        };
        if connack.reason.is_error() {
            return Err(Error::Refused(connack.reason));
        }
        let receive_maximum = connack.properties.receive_maximum.unwrap_or(u16::MAX);
        let inflight = options.inflight_max.min(receive_maximum).max(1);
        Ok(Self::start(
            stream,
            input,
            protocol,
            inflight,
            options.keep_alive_secs,
        ))
    }

    fn start(
        stream: TcpStream,
        input: BytesMut,
        protocol: Protocol,
        inflight: u16,
        keep_alive_secs: u16,
    ) -> Self {
        let (out_tx, out_rx) = mpsc::channel(OUTGOING_QUEUE_MAX);
        let (messages_tx, messages_rx) = mpsc::channel(MESSAGE_QUEUE_MAX);
        let shared = Arc::new(Shared {
            protocol,
            out: out_tx,
            waiters: Mutex::new(HashMap::new()),
            packet_id_last: Mutex::new(0),
            inflight: Arc::new(Semaphore::new(usize::from(inflight))),
        });
        let (read, write) = stream.into_split();
        tokio::spawn(write_loop(write, out_rx));
        tokio::spawn(read_loop(read, input, shared.clone(), messages_tx));
        if keep_alive_secs > 0 {
            let period = Duration::from_millis(u64::from(keep_alive_secs) * 500);
            tokio::spawn(ping_loop(Arc::downgrade(&shared), period));
        }
        MqttClient {
            shared,
            messages: Arc::new(Mutex::new(Some(messages_rx))),
        }
    }

    /// The connection's protocol.
    pub fn protocol(&self) -> Protocol {
        self.shared.protocol
    }

    /// The stream of received PUBLISH packets; `Some` only on the first call.
    pub fn messages(&self) -> Option<mpsc::Receiver<Publish>> {
        self.messages.lock().ok()?.take()
    }

    /// Publishes; QoS 0 returns once queued, QoS 1 after PUBACK, QoS 2 after PUBCOMP.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
    ) -> Result<(), Error> {
        let mut publish = Publish {
            qos,
            retain,
            topic: topic.to_owned(),
            payload,
            ..Publish::default()
        };
        if qos == QoS::AtMostOnce {
            return self.shared.send(&Packet::Publish(publish)).await;
        }
        let permit = self.acquire().await?;
        let (tx, rx) = oneshot::channel();
        let packet_id = self.shared.register(Waiter::Ack(tx))?;
        publish.packet_id = Some(packet_id);
        if let Err(error) = self.shared.send(&Packet::Publish(publish)).await {
            self.shared.take(packet_id);
            return Err(error);
        }
        let outcome = rx.await.map_err(|_| Error::Closed)?;
        drop(permit);
        outcome
    }

    /// Subscribes to one filter; returns the SUBACK reason code (granted QoS on success).
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<ReasonCode, Error> {
        let (tx, rx) = oneshot::channel();
        let packet_id = self.shared.register(Waiter::SubAck(tx))?;
        let options = SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        };
        let subscribe = Subscribe {
            packet_id,
            filters: vec![(filter.to_owned(), options)],
            ..Subscribe::default()
        };
        self.shared.send(&Packet::Subscribe(subscribe)).await?;
        let reasons = rx.await.map_err(|_| Error::Closed)?;
        reasons
            .first()
            .copied()
            .ok_or_else(|| Error::Protocol("empty SUBACK".into()))
    }

    /// Sends DISCONNECT; the writer then closes the socket once its queue is drained.
    pub async fn disconnect(self) -> Result<(), Error> {
        self.shared
            .send(&Packet::Disconnect(Disconnect::default()))
            .await
    }

    async fn acquire(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.shared
            .inflight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)
    }
}

async fn open(addr: SocketAddr, local_ip: Option<IpAddr>) -> Result<TcpStream, Error> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local_ip {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn write_loop(mut write: OwnedWriteHalf, mut out: mpsc::Receiver<Bytes>) {
    let mut batch = Vec::with_capacity(16 * 1024);
    while let Some(first) = out.recv().await {
        crate::let_others_queue().await;
        let mut is_disconnect = first.first() == Some(&DISCONNECT_FIRST_BYTE);
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH_BYTES_MAX && !is_disconnect {
            let Ok(next) = out.try_recv() else { break };
            is_disconnect = next.first() == Some(&DISCONNECT_FIRST_BYTE);
            batch.extend_from_slice(&next);
        }
        if write.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
        if is_disconnect {
            break;
        }
    }
    let _ = write.shutdown().await;
}

async fn read_loop(
    mut read: OwnedReadHalf,
    mut input: BytesMut,
    shared: Arc<Shared>,
    messages: mpsc::Sender<Publish>,
) {
    let mut incoming_qos2 = HashSet::new();
    'read: loop {
        loop {
            let packet = match decode(&mut input, Some(shared.protocol), PACKET_SIZE_MAX_BYTES) {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "undecodable packet from broker");
                    break 'read;
                }
            };
            if !handle(&shared, packet, &messages, &mut incoming_qos2).await {
                break 'read;
            }
        }
        input.reserve(READ_RESERVE_BYTES);
        match read.read_buf(&mut input).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if let Ok(mut waiters) = shared.waiters.lock() {
        waiters.clear(); // Dropped senders wake every waiter with `Closed`.
    }
    shared.inflight.close();
}

/// Handles one packet from the broker; `false` ends the connection.
async fn handle(
    shared: &Shared,
    packet: Packet,
    messages: &mpsc::Sender<Publish>,
    incoming_qos2: &mut HashSet<u16>,
) -> bool {
    match packet {
        Packet::Publish(publish) => return receive(shared, publish, messages, incoming_qos2).await,
        Packet::PubAck(ack) => resolve(shared, ack.packet_id, ack.reason),
        Packet::PubRec(rec) => {
            if rec.reason.is_error() {
                resolve(shared, rec.packet_id, rec.reason);
            } else {
                let rel = PubRel {
                    packet_id: rec.packet_id,
                    ..PubRel::default()
                };
                return shared.send(&Packet::PubRel(rel)).await.is_ok();
            }
        }
        Packet::PubComp(comp) => resolve(shared, comp.packet_id, comp.reason),
        Packet::PubRel(rel) => {
            incoming_qos2.remove(&rel.packet_id);
            let comp = PubComp {
                packet_id: rel.packet_id,
                ..PubComp::default()
            };
            return shared.send(&Packet::PubComp(comp)).await.is_ok();
        }
        Packet::SubAck(suback) => {
            if let Some(Waiter::SubAck(tx)) = shared.take(suback.packet_id) {
                let _ = tx.send(suback.reasons);
            }
        }
        Packet::Disconnect(disconnect) => {
            tracing::debug!(reason = ?disconnect.reason, "broker disconnected");
            return false;
        }
        _ => {}
    }
    true
}

async fn receive(
    shared: &Shared,
    publish: Publish,
    messages: &mpsc::Sender<Publish>,
    incoming_qos2: &mut HashSet<u16>,
) -> bool {
    let packet_id = publish.packet_id.unwrap_or(0);
    match publish.qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => {
            let ack = PubAck {
                packet_id,
                ..PubAck::default()
            };
            if shared.send(&Packet::PubAck(ack)).await.is_err() {
                return false;
            }
        }
        QoS::ExactlyOnce => {
            let rec = PubRec {
                packet_id,
                ..PubRec::default()
            };
            if shared.send(&Packet::PubRec(rec)).await.is_err() {
                return false;
            }
            if !incoming_qos2.insert(packet_id) {
                return true; // A retransmission of a message already delivered.
            }
        }
    }
    // A dropped receiver means nobody listens: keep acknowledging, discard the message.
    let _ = messages.send(publish).await;
    true
}

fn resolve(shared: &Shared, packet_id: u16, reason: ReasonCode) {
    if let Some(Waiter::Ack(tx)) = shared.take(packet_id) {
        let outcome = if reason.is_error() {
            Err(Error::PublishFailed(reason))
        } else {
            Ok(())
        };
        let _ = tx.send(outcome);
    }
}

async fn ping_loop(shared: std::sync::Weak<Shared>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.send(&Packet::PingReq).await.is_err() {
            return;
        }
    }
}
