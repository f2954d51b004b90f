//! The connection task: bytes in, the CONNECT step, then the sans-IO [`Session`] driven
//! by socket reads, the realm queue, the keep alive timer, takeover requests and the
//! shutdown signal; bytes out. WebSocket connections are bridged to the same task
//! through an in-memory duplex pipe (MQTT over WebSocket is a byte stream in binary
//! frames; a packet may span frames).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fox_mqtt_proto::{decode, encode, Protocol, ReasonCode};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use super::connect::Accepted;
use super::registry::Registry;
use super::session::{End, Flow, Parked, Session};
use super::sys::Stats;
use crate::engine::unix_ms;
use crate::metrics::{ConnectionKind, Metrics};
use crate::realm::backpressure::{draining, Backpressure, Draining, MessageRate};
use crate::realm::{Outbound, SessionStats};
use crate::router::Router;
use crate::tls::TlsContext;

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 8 * 1024;
/// A read of at most this many bytes into an empty buffer is copied out of the read chunk.
const SMALL_READ_MAX_BYTES: usize = 1024;
/// Realm messages taken in one go before writing.
pub(super) const OUTBOUND_BATCH_MAX: usize = 256;
/// Size of the WebSocket bridge pipe.
const BRIDGE_BUFFER_BYTES: usize = 64 * 1024;
/// A packet queue this small is freed once written (see `write_packets`).
const OUT_QUEUE_FREED_MAX_PACKETS: usize = 8;
/// Write buffer capacity kept between writes; a larger one (after a burst) is freed.
const OUT_RETAINED_MAX_BYTES: usize = 64 * 1024;
/// When we close a connection (a protocol violation, keep alive timeout, takeover, a
/// refused CONNECT), how long we go on reading and discarding what the client still sends
/// after our DISCONNECT (or CONNACK) and the shutdown of our write side. Closing a socket
/// with unread input resets it, and the client would get ECONNRESET or EPIPE instead of
/// reading the reason code.
const CLOSE_LINGER_MS: u64 = 1_000;
/// Most bytes read and discarded while lingering (a client that keeps sending past this
/// is reset): room for the rest of a packet a little over the limit.
const CLOSE_LINGER_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The transport name of MQTT over TCP (session meta API, listener settings).
pub(super) const TRANSPORT_TCP: &str = "mqtt";
/// The transport name of MQTT over WebSocket.
pub(super) const TRANSPORT_WEBSOCKET: &str = "mqtt-websocket";

/// Why the loop stopped.
pub(super) struct Exit {
    end: End,
    disconnect: Option<ReasonCode>,
    kick: Option<oneshot::Sender<Option<Parked>>>,
}

impl Exit {
    fn new(end: End, disconnect: Option<ReasonCode>) -> Self {
        Self {
            end,
            disconnect,
            kick: None,
        }
    }

    /// How the connection ended, for the log.
    fn describe(&self) -> String {
        match (self.disconnect, self.end) {
            (Some(reason), _) => format!("closed by the router ({reason:?})"),
            (None, End::Normal) => "DISCONNECT from the client".to_owned(),
            (None, End::Abnormal) => "connection lost".to_owned(),
        }
    }
}

async fn serve<R: Source, W: AsyncWrite + Unpin + Send>(
    router: Arc<Router>,
    reader: R,
    writer: W,
    transport: &'static str,
    peer: String,
    tls: Option<Arc<TlsContext>>,
) {
    let _open = ConnectionKind::of_session_transport(transport)
        .map(|kind| router.metrics().connection_opened(kind));
    // The CONNECT step runs in its own boxed future, freed once it is done: its state (the
    // CONNECT packet, twice, and the takeover) is not carried by an established connection.
    // Boxed result too: a local the size of a session would stay in this future.
    if let Some(started) = Box::pin(handshake(&router, reader, writer, transport, &peer, tls)).await
    {
        established(router, started, peer).await;
    }
}

/// Waits for every received publish to be ordered or stored. One that was not is
/// acknowledged with 0x80 (MQTT 5) or, in 3.x, which has no failure acknowledgement,
/// makes the caller close the connection (`false`). Either way its QoS 2 packet ID is
/// forgotten, so that the session handed on (parked, taken over, moved to another cluster
/// entry) treats the client's resend as a new publish, and keeps the IDs of those that
/// were ordered, so that a resend of one is not published twice.
async fn settle_acknowledgements(session: &mut Session) -> bool {
    let mut acknowledged = true;
    for (ack, packet_id) in session.take_durability() {
        let Err(e) = ack.wait().await else {
            continue;
        };
        if session.protocol().is_v5() {
            tracing::warn!(error = %e, packet_id, "publish not ordered or stored; acknowledged with 0x80");
        } else {
            tracing::error!(error = %e, packet_id, "publish not ordered or stored; closing without acknowledging");
            acknowledged = false;
        }
        session.refuse_acknowledgement(packet_id);
    }
    acknowledged
}

/// Writes what the session queued. A write that blocks longer than `timeout`
/// (`limits.write_timeout_ms`: a client that stopped reading) is an error.
async fn write_packets<W: AsyncWrite + Unpin>(
    session: &mut Session,
    writer: &mut W,
    out: &mut BytesMut,
    stats: &Stats,
    timeout: Duration,
) -> std::io::Result<()> {
    // Acknowledgements of received publishes go out only once those are durable.
    if !settle_acknowledgements(session).await {
        return Err(std::io::Error::other("publish not acknowledged"));
    }
    let protocol = session.protocol();
    let mut packets = 0;
    while let Some(packet) = session.poll_packet() {
        let before = out.len();
        match encode(&packet, protocol, out) {
            Ok(()) => {
                stats.count_packet_sent(out.len() - before);
                packets += 1;
            }
            Err(error) => tracing::warn!(%error, "MQTT packet not encodable; skipped"),
        }
    }
    session.handle().stats.count_sent(packets);
    // The packet queue is empty now. Its slots are 400 bytes each: a connection that only
    // ever queues a few packets at a time (an idle one: just its CONNACK) gives them back;
    // a busy one keeps its grown queue rather than regrow it on every wake-up.
    if session.out.capacity() <= OUT_QUEUE_FREED_MAX_PACKETS {
        session.out = std::collections::VecDeque::new();
    }
    if out.is_empty() {
        return Ok(());
    }
    let write = async {
        writer.write_all(out).await?;
        writer.flush().await
    };
    let written = tokio::time::timeout(timeout, write).await;
    out.clear();
    if out.capacity() > OUT_RETAINED_MAX_BYTES {
        // A burst grew the buffer: give the memory back rather than keep it per connection.
        *out = BytesMut::new();
    }
    written.map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client not reading"))?
}

/// The established connection: activations of the select loop, each in a box of its
/// own, and idle waits between them (see [`active`]); then the close.
async fn established<R, W>(router: Arc<Router>, started: Box<Started<R, W>>, peer: String)
where
    R: Source,
    W: AsyncWrite + Unpin,
{
    let Started {
        accepted,
        reader,
        writer,
        input,
    } = {
        // Moved out in a block of its own so that the box is freed here, not when the
        // connection ends (a destructured box lives to the end of its scope).
        let started = started;
        *started
    };
    let Accepted {
        session,
        rx,
        kicks,
        generation,
        registry,
    } = accepted;
    let mut connection = Connection {
        shutdown: router.shutdown_signal(),
        rate: match registry.realm().shared().limits.session_message_rate_max {
            0 => None,
            max => Some(Box::new(MessageRate::new(max, std::time::Instant::now()))),
        },
        router,
        session,
        rx,
        kicks: Some(kicks),
        registry,
        reader,
        writer,
        peer,
        generation,
        keep_alive_armed: false,
        writer_stuck: false,
    };
    tracing::info!(peer = %connection.peer, client = %connection.session.client_id(), realm = %connection.registry.realm().name, version = connection.session.protocol().level(), "MQTT client connected");
    connection
        .session
        .handle()
        .stats
        .attach(&connection.peer, unix_ms());
    let keep_alive = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(keep_alive);
    let mut input = input;
    let (exit, input) = loop {
        // Boxed: an idle connection does not carry the select loop's state.
        match Box::pin(active(&mut connection, keep_alive.as_mut(), input)).await {
            Step::Exit(exit, rest) => break (exit, rest),
            Step::Idle => {}
        }
        if let Wake::Kicked(reply) = idle(&mut connection, keep_alive.as_mut()).await {
            let exit = Exit {
                end: End::Abnormal,
                disconnect: Some(ReasonCode::SessionTakenOver),
                kick: Some(reply),
            };
            break (exit, BytesMut::new());
        }
        input = BytesMut::new();
    };
    // Boxed: only a closing connection carries this future.
    Box::pin(close(connection, exit, input)).await;
}

/// Says goodbye (the DISCONNECT `exit` asks for), hands the session on and lingers.
async fn close<R, W>(connection: Connection<R, W>, exit: Exit, input: BytesMut)
where
    R: Source,
    W: AsyncWrite + Unpin,
{
    let Connection {
        mut session,
        rx,
        registry,
        mut reader,
        mut writer,
        peer,
        generation,
        writer_stuck,
        router,
        ..
    } = connection;
    let session_stats = session.handle().stats.clone();
    session_stats.detach();
    tracing::info!(%peer, client = %session.client_id(), how = exit.describe(), "MQTT client disconnected");
    // Nobody drains the queue now: publishers paused on it go on.
    session_stats.drained_to(0, rx.max_capacity());
    if let Some(packet) = exit
        .disconnect
        .and_then(|reason| session.disconnect_packet(reason))
    {
        session.queue(packet);
    }
    if writer_stuck {
        // Nothing more is written, but what the session hands on must know which of its
        // received publishes were ordered.
        settle_acknowledgements(&mut session).await;
    } else {
        let write_timeout = Duration::from_millis(router.config.limits.write_timeout_ms);
        let mut out = BytesMut::new();
        let stats = &registry.stats;
        let _ = write_packets(&mut session, &mut writer, &mut out, stats, write_timeout).await;
        let _ = writer.shutdown().await;
    }
    // We close while the client may still be sending (not at shutdown: nobody waits then).
    let lingers = exit
        .disconnect
        .is_some_and(|reason| reason != ReasonCode::ServerShuttingDown);
    // The session's own copy is the only one kept while the connection lasts.
    let client_id = session.client_id().to_owned();
    finish(
        &registry, &client_id, generation, session, rx, exit.end, exit.kick,
    );
    if lingers {
        linger(&mut reader, input).await;
    }
}

/// The hooks' answers, when asked (pending forever otherwise; the select guards it).
async fn next_authorization(
    pending: &mut Option<crate::auth::hooks::Pending>,
) -> Vec<(crate::auth::hooks::Key, crate::auth::hooks::Decided)> {
    match pending {
        Some(answers) => answers.await,
        None => std::future::pending().await,
    }
}

/// Ends the session (`end`: how the connection ended) and hands it on: to the connection
/// that took it over (`kick`), to the registry (parked, expiry > 0), or out of the realm.
pub(crate) fn finish(
    registry: &Arc<Registry>,
    client_id: &str,
    generation: u64,
    session: Box<Session>,
    rx: crate::realm::OutboundQueue,
    end: End,
    kick: Option<oneshot::Sender<Option<Parked>>>,
) {
    let realm = registry.realm();
    let parked = (*session).end(rx, end);
    match (kick, parked) {
        (Some(reply), parked) => {
            // The new connection gave up waiting: nobody resumes this session.
            if let Err(Some(parked)) = reply.send(parked) {
                realm.leave(parked.handle.info.id);
            }
        }
        (None, Some(parked)) => {
            if let Err(parked) = registry.park(client_id, generation, Box::new(parked)) {
                realm.leave(parked.handle.info.id);
            }
        }
        (None, None) => {
            if let Some(stale) = registry.release(client_id, generation) {
                realm.leave(stale.handle.info.id);
            }
        }
    }
}

/// After our write side is shut down: reads and discards the client's input until it
/// closes, for at most [`CLOSE_LINGER_MS`] and [`CLOSE_LINGER_MAX_BYTES`], so that the
/// close that follows does not reset a connection whose client is still sending before it
/// has read our last packet.
async fn linger<R: Source>(reader: &mut R, mut input: BytesMut) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(CLOSE_LINGER_MS);
    let mut discarded_bytes = input.len();
    input.clear();
    while discarded_bytes < CLOSE_LINGER_MAX_BYTES {
        match tokio::time::timeout_at(deadline, reader.read_some(&mut input)).await {
            Ok(Ok(read)) if read > 0 => discarded_bytes += read,
            // End of input, an error or the deadline.
            _ => return,
        }
        input.clear();
    }
}

/// Backpressure after a read: the wait for the subscriber queue that the read's publishes
/// congested, if any (counted in the metrics).
fn paused(metrics: &Metrics, session_stats: &Arc<SessionStats>) -> Option<Draining> {
    let pause = draining(Backpressure::take(session_stats));
    if pause.is_some() {
        metrics.backpressure_paused();
    }
    pause
}

/// Decodes and handles every complete packet in `input`, all at `now_ms` (the clock is
/// read once per wake-up, not once per packet), stopping after a publish that congests a
/// subscriber's queue (backpressure: the rest stays in `input` until it drains), or after
/// `budget` packets (`limits.session_message_rate_max`).
#[allow(clippy::too_many_arguments)]
pub(super) fn handle_input(
    session: &mut Session,
    input: &mut BytesMut,
    protocol: Protocol,
    max_in: usize,
    stats: &Stats,
    peer: &str,
    now_ms: u64,
    budget: u64,
) -> Option<Exit> {
    let mut packets = 0;
    let exit = handle_packets(
        session,
        input,
        protocol,
        max_in,
        stats,
        peer,
        now_ms,
        &mut packets,
        budget,
    );
    session.handle().stats.count_received(packets);
    exit
}

/// [`handle_input`]'s loop; counts the packets it decodes into `packets`, and stops
/// before the one past `budget`.
#[allow(clippy::too_many_arguments)]
fn handle_packets(
    session: &mut Session,
    input: &mut BytesMut,
    protocol: Protocol,
    max_in: usize,
    stats: &Stats,
    peer: &str,
    now_ms: u64,
    packets: &mut u64,
    budget: u64,
) -> Option<Exit> {
    // Subscribers' connections are woken once, after the whole read is handled.
    let _wakes = crate::realm::queue::WakeBatch::begin();
    loop {
        if *packets >= budget {
            return None;
        }
        let before = input.len();
        let packet = match decode(input, Some(protocol), max_in) {
            Ok(Some(packet)) => packet,
            Ok(None) => return None,
            Err(error) => {
                tracing::info!(%peer, client = %session.client_id(), %error, "MQTT protocol violation");
                return Some(Exit::new(End::Abnormal, Some(error.reason_code())));
            }
        };
        stats.count_packet_received(before - input.len());
        *packets += 1;
        let Some(packet) = session.park_for_authorization(packet) else {
            // The rest waits in `input` until the hooks have answered.
            return None;
        };
        match session.handle_packet(packet, now_ms) {
            Ok(Flow::Continue) if Backpressure::is_recorded_for(&session.handle().stats) => {
                return None
            }
            Ok(Flow::Continue) => {}
            Ok(Flow::Disconnected) => return Some(Exit::new(End::Normal, None)),
            Err(v) => {
                tracing::info!(%peer, client = %session.client_id(), reason = ?v.reason, "MQTT protocol violation: {}", v.message);
                return Some(Exit::new(End::Abnormal, Some(v.reason)));
            }
        }
    }
}

/// Handles one realm message and then more, up to a batch, while the session wants them.
/// A message is taken from the queue only to be handled: one taken past the batch's end
/// would be lost.
pub(super) fn handle_outbound(
    session: &mut Session,
    rx: &mut crate::realm::OutboundQueue,
    first: Outbound,
    peer: &str,
    now_ms: u64,
) -> Option<Exit> {
    let mut message = first;
    let mut handled = 0;
    loop {
        if let Err(v) = session.handle_outbound(message, now_ms) {
            tracing::info!(%peer, client = %session.client_id(), "MQTT session closed: {}", v.message);
            return Some(Exit::new(End::Abnormal, Some(v.reason)));
        }
        handled += 1;
        if handled >= OUTBOUND_BATCH_MAX || !session.wants_deliveries() {
            return None;
        }
        message = rx.try_recv().ok()?;
    }
}

/// The takeover request of a newer connection with the same client identifier; never
/// completes once the sender is gone (the slot was taken without a kick). Cancel safe.
async fn kicked(kicks: &mut Option<super::registry::Kicks>) -> oneshot::Sender<Option<Parked>> {
    if let Some(rx) = kicks.as_mut() {
        let answer = rx.await;
        *kicks = None;
        if let Ok(reply) = answer {
            return reply;
        }
    }
    std::future::pending().await
}

mod active;
mod handshake;
mod idle;
mod transport;

use active::{active, Connection, Step};
use handshake::{handshake, Started};
use idle::{idle, Wake};
use transport::Source;
pub use transport::{run, serve_tcp, serve_tls, serve_websocket};

#[cfg(test)]
mod tests;
