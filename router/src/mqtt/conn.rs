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
use super::session::{packet_max_bytes, End, Flow, Parked, Session};
use super::sys::Stats;
use crate::engine::unix_ms;
use crate::metrics::{ConnectionKind, Metrics};
use crate::realm::backpressure::{
    drained, draining, over_rate, rate_budget, Backpressure, Draining, MessageRate,
};
use crate::realm::{Kill, Outbound, SessionStats};
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

#[allow(clippy::too_many_lines)] // One select loop; its arms call out to short helpers.
async fn established<R, W>(router: Arc<Router>, started: Box<Started<R, W>>, peer: String)
where
    R: Source,
    W: AsyncWrite + Unpin,
{
    let Started {
        accepted,
        mut reader,
        mut writer,
        mut input,
    } = {
        // Moved out in a block of its own so that the box is freed here, not when the
        // connection ends (a destructured box lives to the end of its scope).
        let started = started;
        *started
    };
    let Accepted {
        mut session,
        mut rx,
        kicks,
        generation,
        registry,
    } = accepted;
    let mut kicks = Some(kicks);
    let protocol = session.protocol();
    let max_in = packet_max_bytes(&router.config.limits);
    let write_timeout = Duration::from_millis(router.config.limits.write_timeout_ms);
    // Set when a write timed out: nothing more is written (it would block as long again).
    let mut writer_stuck = false;
    let mut shutdown = router.shutdown_signal();
    let mut out = BytesMut::new();
    let stats = &registry.stats;
    let session_stats = session.handle().stats.clone();
    let metrics = router.metrics();
    tracing::info!(%peer, client = %session.client_id(), realm = %registry.realm().name, version = protocol.level(), "MQTT client connected");
    // Packets that arrived in the same read as CONNECT (a client that pipelines SUBSCRIBE or
    // PUBLISH behind it, as paho does) are already in `input`.
    let mut leftover = !input.is_empty();
    // The keep alive timer is armed at the deadline known when it is armed; deadlines only
    // move later, so when it fires the session checks the real one and it is re-armed.
    let keep_alive = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(keep_alive);
    let mut keep_alive_armed = false;
    // Set while a subscriber queue our publishes filled is draining: no reads meanwhile.
    let mut backpressure: Option<Draining> = None;
    // `limits.session_message_rate_max`, when set (boxed: most connections have none).
    let mut rate = match registry.realm().shared().limits.session_message_rate_max {
        0 => None,
        max => Some(Box::new(MessageRate::new(max, std::time::Instant::now()))),
    };
    session_stats.attach(&peer, unix_ms());
    // The authorization hooks' answers for a parked packet, awaited without reading.
    let mut authorizing: Option<crate::auth::hooks::Pending> = None;
    let exit = loop {
        if backpressure.is_none()
            && !session.awaits_authorization()
            && std::mem::take(&mut leftover)
        {
            Backpressure::clear();
            let now_ms = unix_ms();
            let budget = rate_budget(&mut rate);
            if let Some(exit) = handle_input(
                &mut session,
                &mut input,
                protocol,
                max_in,
                stats,
                &peer,
                now_ms,
                budget,
            ) {
                break exit;
            }
            backpressure = paused(metrics, &session_stats)
                .or_else(|| over_rate(&mut rate, &session_stats, &peer));
            leftover = backpressure.is_some() && !input.is_empty();
        }
        if let Err(error) =
            write_packets(&mut session, &mut writer, &mut out, stats, write_timeout).await
        {
            if error.kind() == std::io::ErrorKind::TimedOut {
                tracing::info!(%peer, client = %session.client_id(), timeout_ms = write_timeout.as_millis() as u64, "closing an MQTT connection whose write blocked (limits.write_timeout_ms): the client stopped reading");
                writer_stuck = true;
            }
            break Exit::new(End::Abnormal, None);
        }
        if input.is_empty() {
            // Nothing partial is buffered: let the read buffer go while waiting (decoded
            // payloads keep their own share of it alive as long as they need it).
            input = BytesMut::new();
        }
        if !keep_alive_armed {
            if let Some(deadline_ms) = session.poll_timeout() {
                let wait = Duration::from_millis(deadline_ms.saturating_sub(unix_ms()));
                keep_alive
                    .as_mut()
                    .reset(tokio::time::Instant::now() + wait);
                keep_alive_armed = true;
            }
        }
        if authorizing.is_none() {
            authorizing = session.take_authorization(&router);
        }
        let wants = session.wants_deliveries();
        let reading = backpressure.is_none() && !session.awaits_authorization();
        tokio::select! {
            biased;
            _ = crate::router::stopped(&mut shutdown) => break Exit::new(End::Normal, Some(ReasonCode::ServerShuttingDown)),
            _ = session_stats.overflow.notified() => {
                // Taken back: a persistent session outlives this connection.
                match session_stats.take_kill() {
                    Some(Kill::Fenced) => tracing::info!(%peer, client = %session.client_id(), "MQTT session closed: this entry was fenced"),
                    Some(Kill::Administrator) => tracing::info!(%peer, client = %session.client_id(), "MQTT session killed by the administrator"),
                    None => tracing::info!(%peer, client = %session.client_id(), "MQTT session closed: queue full for a close request"),
                }
                break Exit::new(End::Abnormal, Some(ReasonCode::AdministrativeAction));
            }
            reply = kicked(&mut kicks) => {
                break Exit { end: End::Abnormal, disconnect: Some(ReasonCode::SessionTakenOver), kick: Some(reply) };
            }
            () = &mut keep_alive, if keep_alive_armed => {
                keep_alive_armed = false;
                if let Err(v) = session.handle_timeout(unix_ms()) {
                    tracing::info!(%peer, client = %session.client_id(), "MQTT {}", v.message);
                    break Exit::new(End::Abnormal, Some(v.reason));
                }
            }
            answers = next_authorization(&mut authorizing), if authorizing.is_some() => {
                authorizing = None;
                let wakes = crate::realm::queue::WakeBatch::begin();
                let handled = session.handle_authorization(answers, unix_ms());
                drop(wakes);
                match handled {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Disconnected) => break Exit::new(End::Normal, None),
                    Err(v) => {
                        tracing::info!(%peer, client = %session.client_id(), reason = ?v.reason, "MQTT protocol violation: {}", v.message);
                        break Exit::new(End::Abnormal, Some(v.reason));
                    }
                }
                backpressure = paused(metrics, &session_stats);
                leftover = !input.is_empty();
            }
            read = reader.read_some(&mut input), if reading => {
                match read {
                    Ok(0) | Err(_) => break Exit::new(End::Abnormal, None),
                    Ok(_) => {}
                }
                Backpressure::clear();
                let budget = rate_budget(&mut rate);
                if let Some(exit) = handle_input(&mut session, &mut input, protocol, max_in, stats, &peer, unix_ms(), budget) {
                    break exit;
                }
                backpressure = paused(metrics, &session_stats)
                    .or_else(|| over_rate(&mut rate, &session_stats, &peer));
                // Packets after the one that congested a queue (or past the session's
                // rate) wait until it has drained (or the rate allows them).
                leftover = backpressure.is_some() && !input.is_empty();
            }
            Some(message) = rx.recv(), if wants => {
                if let Some(exit) = handle_outbound(&mut session, &mut rx, message, &peer, unix_ms()) {
                    break exit;
                }
                session_stats.drained_to(rx.len(), rx.max_capacity());
            }
            _ = drained(&mut backpressure), if backpressure.is_some() => backpressure = None,
        }
    };
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
        // Boxed: only a closing connection carries this future.
        Box::pin(linger(&mut reader, input)).await;
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

mod handshake;
mod transport;

use handshake::{handshake, Started};
use transport::Source;
pub use transport::{run, serve_tcp, serve_tls, serve_websocket};

#[cfg(test)]
mod tests;
