//! An established connection's two phases. Active: the select loop, boxed for as long as
//! the connection has something to do (input to handle, packets to write, queued messages
//! to deliver, a backpressure or authorization wait). Idle: when every source of work is
//! pending, the box is freed and the task waits in [`super::idle::idle`], which holds no
//! future of its own, until the socket is readable, the session's queue is woken (a
//! message, a kill, an overflow, the router shutting down), a takeover request arrives or
//! the keep alive timer fires.
//!
//! An async fn's future is as large as its largest await state: what the loop needs only
//! while it runs stays out of the future that lives as long as the connection.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fox_mqtt_proto::ReasonCode;
use tokio::io::AsyncWrite;
use tokio::time::Sleep;

use super::{
    handle_input, handle_outbound, kicked, next_authorization, paused, write_packets, Exit, Source,
};
use crate::engine::unix_ms;
use crate::mqtt::registry::{Kicks, Registry};
use crate::mqtt::session::{packet_max_bytes, End, Flow, Session};
use crate::realm::backpressure::{drained, over_rate, rate_budget, Backpressure, MessageRate};
use crate::realm::{Kill, OutboundQueue};
use crate::router::Router;

/// What an established connection keeps between wake-ups.
pub(super) struct Connection<R, W> {
    pub(super) router: Arc<Router>,
    pub(super) session: Box<Session>,
    pub(super) rx: OutboundQueue,
    /// Takeover requests; `None` once the registry gave up the sender.
    pub(super) kicks: Option<Kicks>,
    pub(super) registry: Arc<Registry>,
    pub(super) reader: R,
    pub(super) writer: W,
    pub(super) peer: String,
    pub(super) shutdown: tokio::sync::watch::Receiver<bool>,
    /// `limits.session_message_rate_max`, when set (boxed: most connections have none).
    pub(super) rate: Option<Box<MessageRate>>,
    /// This connection's generation in the registry.
    pub(super) generation: u64,
    /// The keep alive timer is armed at the deadline known when it is armed; deadlines
    /// only move later, so when it fires the session checks the real one and it is re-armed.
    pub(super) keep_alive_armed: bool,
    /// Set when a write timed out: nothing more is written (it would block as long again).
    pub(super) writer_stuck: bool,
}

/// How an activation ended.
pub(super) enum Step {
    /// Nothing to do: wait idle, then activate again.
    Idle,
    /// The connection ends; the bytes read and not handled (for the linger).
    Exit(Exit, BytesMut),
}

/// The select loop, from a wake-up until the connection ends or has nothing to do.
/// `input`: bytes read and not yet handled (those that came with CONNECT).
#[allow(clippy::too_many_lines)] // One select loop; its arms call out to short helpers.
pub(super) async fn active<R, W>(
    connection: &mut Connection<R, W>,
    mut keep_alive: Pin<&mut Sleep>,
    mut input: BytesMut,
) -> Step
where
    R: Source,
    W: AsyncWrite + Unpin,
{
    let Connection {
        router,
        session,
        rx,
        kicks,
        registry,
        reader,
        writer,
        peer,
        shutdown,
        rate,
        keep_alive_armed,
        writer_stuck,
        ..
    } = connection;
    let protocol = session.protocol();
    let max_in = packet_max_bytes(&router.config.limits);
    let write_timeout = Duration::from_millis(router.config.limits.write_timeout_ms);
    let mut out = BytesMut::new();
    let stats = &registry.stats;
    let session_stats = session.handle().stats.clone();
    let metrics = router.metrics();
    // Packets that arrived in the same read as CONNECT (a client that pipelines SUBSCRIBE or
    // PUBLISH behind it, as paho does) are already in `input`.
    let mut leftover = !input.is_empty();
    // Set while a subscriber queue our publishes filled is draining: no reads meanwhile.
    let mut backpressure = None;
    // The authorization hooks' answers for a parked packet, awaited without reading.
    let mut authorizing: Option<crate::auth::hooks::Pending> = None;
    let peer = peer.as_str();
    loop {
        if backpressure.is_none()
            && !session.awaits_authorization()
            && std::mem::take(&mut leftover)
        {
            Backpressure::clear();
            let budget = rate_budget(rate);
            if let Some(exit) = handle_input(
                session,
                &mut input,
                protocol,
                max_in,
                stats,
                peer,
                unix_ms(),
                budget,
            ) {
                return Step::Exit(exit, input);
            }
            backpressure =
                paused(metrics, &session_stats).or_else(|| over_rate(rate, &session_stats, peer));
            leftover = backpressure.is_some() && !input.is_empty();
        }
        if let Err(error) = write_packets(session, writer, &mut out, stats, write_timeout).await {
            if error.kind() == std::io::ErrorKind::TimedOut {
                tracing::info!(%peer, client = %session.client_id(), timeout_ms = write_timeout.as_millis() as u64, "closing an MQTT connection whose write blocked (limits.write_timeout_ms): the client stopped reading");
                *writer_stuck = true;
            }
            return Step::Exit(Exit::new(End::Abnormal, None), input);
        }
        if input.is_empty() {
            // Nothing partial is buffered: let the read buffer go while waiting (decoded
            // payloads keep their own share of it alive as long as they need it).
            input = BytesMut::new();
        }
        if !*keep_alive_armed {
            if let Some(deadline_ms) = session.poll_timeout() {
                let wait = Duration::from_millis(deadline_ms.saturating_sub(unix_ms()));
                keep_alive
                    .as_mut()
                    .reset(tokio::time::Instant::now() + wait);
                *keep_alive_armed = true;
            }
        }
        if authorizing.is_none() {
            authorizing = session.take_authorization(router);
        }
        let wants = session.wants_deliveries();
        let reading = backpressure.is_none() && !session.awaits_authorization();
        // Nothing half done that only this loop waits for: when every other arm is
        // pending, the connection goes idle.
        let idles = R::IDLES && reading && authorizing.is_none() && input.is_empty();
        tokio::select! {
            biased;
            _ = crate::router::stopped(shutdown) => return Step::Exit(Exit::new(End::Normal, Some(ReasonCode::ServerShuttingDown)), input),
            _ = session_stats.overflow.notified() => {
                // Taken back: a persistent session outlives this connection.
                match session_stats.take_kill() {
                    Some(Kill::Fenced) => tracing::info!(%peer, client = %session.client_id(), "MQTT session closed: this entry was fenced"),
                    Some(Kill::Administrator) => tracing::info!(%peer, client = %session.client_id(), "MQTT session killed by the administrator"),
                    None => tracing::info!(%peer, client = %session.client_id(), "MQTT session closed: queue full for a close request"),
                }
                return Step::Exit(Exit::new(End::Abnormal, Some(ReasonCode::AdministrativeAction)), input);
            }
            reply = kicked(kicks) => {
                let exit = Exit { end: End::Abnormal, disconnect: Some(ReasonCode::SessionTakenOver), kick: Some(reply) };
                return Step::Exit(exit, input);
            }
            () = keep_alive.as_mut(), if *keep_alive_armed => {
                *keep_alive_armed = false;
                if let Err(v) = session.handle_timeout(unix_ms()) {
                    tracing::info!(%peer, client = %session.client_id(), "MQTT {}", v.message);
                    return Step::Exit(Exit::new(End::Abnormal, Some(v.reason)), input);
                }
            }
            answers = next_authorization(&mut authorizing), if authorizing.is_some() => {
                authorizing = None;
                let wakes = crate::realm::queue::WakeBatch::begin();
                let handled = session.handle_authorization(answers, unix_ms());
                drop(wakes);
                match handled {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Disconnected) => return Step::Exit(Exit::new(End::Normal, None), input),
                    Err(v) => {
                        tracing::info!(%peer, client = %session.client_id(), reason = ?v.reason, "MQTT protocol violation: {}", v.message);
                        return Step::Exit(Exit::new(End::Abnormal, Some(v.reason)), input);
                    }
                }
                backpressure = paused(metrics, &session_stats);
                leftover = !input.is_empty();
            }
            read = reader.read_some(&mut input), if reading => {
                match read {
                    Ok(0) | Err(_) => return Step::Exit(Exit::new(End::Abnormal, None), input),
                    Ok(_) => {}
                }
                Backpressure::clear();
                let budget = rate_budget(rate);
                if let Some(exit) = handle_input(session, &mut input, protocol, max_in, stats, peer, unix_ms(), budget) {
                    return Step::Exit(exit, input);
                }
                backpressure = paused(metrics, &session_stats)
                    .or_else(|| over_rate(rate, &session_stats, peer));
                // Packets after the one that congested a queue (or past the session's
                // rate) wait until it has drained (or the rate allows them).
                leftover = backpressure.is_some() && !input.is_empty();
            }
            Some(message) = rx.recv(), if wants => {
                if let Some(exit) = handle_outbound(session, rx, message, peer, unix_ms()) {
                    return Step::Exit(exit, input);
                }
                session_stats.drained_to(rx.len(), rx.max_capacity());
            }
            _ = drained(&mut backpressure), if backpressure.is_some() => backpressure = None,
            // Polled last (biased): reached only when every arm above is pending.
            () = std::future::ready(()), if idles => return Step::Idle,
        }
    }
}
