//! The connection task shared by both WAMP transports: frames in, the session state
//! machine, frames out.
//!
//! Each transport hands this task a [`FrameReader`] that turns its framing into [`Incoming`]
//! values and a [`FrameWriter`]. This task reads (only when it is ready for more, so a peer
//! that floods us is slowed by TCP, not buffered), decodes, drives [`WampSession`], encodes,
//! and also drains the session's outbound queue, writing in batches with one flush per
//! batch. Reading in this task, rather than in a reader task of its own, saves a task
//! wake-up per received message.

use std::sync::Arc;
use std::time::Duration;

use fox_wamp_proto::CloseUri;
use fox_wamp_proto::{code, Message, Serializer};
use futures_util::FutureExt;
use tokio::time::Instant;

use super::session::{event_message, Entropy, Flow, WampSession};
use crate::auth::external::{verify, Verdict};
use crate::auth::{Denied, Identity};
use crate::engine::unix_ms;
use crate::metrics::{ConnectionKind, Count, Metrics};
use crate::realm::backpressure::{
    drained, draining, over_rate, rate_budget, Backpressure, Draining, MessageRate,
};
use crate::realm::queue::WakeBatch;
use crate::realm::{Kill, Outbound, OutboundQueue, SessionStats};
use crate::router::Router;

/// How many queued outbound messages are written before one flush.
const OUTBOUND_BATCH_MAX: usize = 256;
/// How many more waiting incoming frames are handled before writing the answers.
const INCOMING_BATCH_MAX: usize = 64;
/// After the router ends a session (ABORT, GOODBYE, its reply to the peer's GOODBYE) and
/// shuts its writing side, how long it still reads and drops the peer's input before
/// closing: closing a socket with unread input sends a reset, and a peer that is still
/// sending would then get ECONNRESET instead of reading our last message.
const LINGER_MS: u64 = 1_000;
/// The most input dropped while lingering, in bytes: a peer that sends more is cut off.
const LINGER_BYTES_MAX: usize = 4 << 20;
/// How long closing the transport (flushing what is buffered, a WebSocket close frame, the
/// TCP shutdown) may take: a peer that stopped reading never lets a flush finish.
const CLOSE_WAIT_MS: u64 = 1_000;
/// GOODBYE reason of a session the administrator kills (`DELETE /api/v1/sessions/{id}`),
/// as the session meta API's `wamp.session.kill` says it.
pub const KILLED_REASON: &str = CloseUri::Killed.as_str();
/// GOODBYE message of such a session.
const KILLED_MESSAGE: &str = "closed by the router's administrator";
/// GOODBYE message of a session closed because its cluster entry was fenced.
const FENCED_MESSAGE: &str =
    "this cluster entry lost its lease (cut off from the cluster): the keys its sessions held are released";

/// What a transport's reader hands the connection task.
#[derive(Debug)]
pub enum Incoming {
    /// One WAMP message's bytes.
    Frame(Vec<u8>),
    /// A RawSocket PING with its payload (answer with PONG).
    Ping(Vec<u8>),
    /// The transport saw a violation (oversized or malformed frame): ABORT and close.
    Violation(String),
}

/// The reading half of a transport.
pub trait FrameReader: Send {
    /// The next frame; `None` once the stream has ended. Cancel safe: a frame is never
    /// lost when the future is dropped before it completes.
    fn next_frame(&mut self) -> impl std::future::Future<Output = Option<Incoming>> + Send;

    /// The next frame if it can be had without waiting (already read or readable now).
    fn ready_frame(&mut self) -> Option<Incoming> {
        self.next_frame().now_or_never().flatten()
    }

    /// Reads some input and drops it, after the session ended; the bytes dropped, 0 once
    /// the stream has ended or failed. Cancel safe.
    fn discard(&mut self) -> impl std::future::Future<Output = usize> + Send;
}

/// The writing half of a transport.
pub trait FrameWriter: Send {
    /// Queues one message's bytes.
    fn feed(
        &mut self,
        bytes: Vec<u8>,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
    /// Answers a RawSocket PING (no-op on WebSocket, which answers pings itself).
    fn pong(
        &mut self,
        payload: Vec<u8>,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
    /// Writes everything queued.
    fn flush(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
    /// Closes the transport.
    fn close(&mut self) -> impl std::future::Future<Output = ()> + Send;
    /// The largest message the peer takes, in bytes (RawSocket: what it announced).
    fn limit(&self) -> usize {
        usize::MAX
    }
}

/// What one write sent, for the metrics.
#[derive(Default)]
struct Sent {
    count: Count,
    call_errors: u64,
}

impl Sent {
    fn message(&mut self, message: &Message, bytes: usize) {
        self.count.message(bytes);
        match message {
            Message::Event { .. } => self.count.publications += 1,
            Message::Error {
                request_type: code::CALL,
                ..
            } => self.call_errors += 1,
            _ => {}
        }
    }
}

async fn write_all<W: FrameWriter>(
    writer: &mut W,
    serializer: Serializer,
    pongs: &mut Vec<Vec<u8>>,
    messages: &mut Vec<Message>,
    sent: &mut Sent,
) -> std::io::Result<()> {
    for payload in pongs.drain(..) {
        writer.pong(payload).await?;
    }
    for message in messages.drain(..) {
        let mut bytes = serializer.encode(&message);
        if bytes.len() > writer.limit() {
            if let Some(smaller) = compact_welcome(&message) {
                bytes = serializer.encode(&smaller);
            }
        }
        sent.message(&message, bytes.len());
        writer.feed(bytes).await?;
    }
    writer.flush().await
}

/// A WELCOME without its roles' feature lists (`roles: {"broker": {}, "dealer": {}}`), for a
/// RawSocket peer whose announced maximum (2^9 is allowed) is below the full one (about
/// 730 bytes): the spec makes the features optional, so such a peer joins, assuming the
/// basic profile, instead of being closed before it ever hears WELCOME. `None` for any
/// other message.
fn compact_welcome(message: &Message) -> Option<Message> {
    let Message::Welcome { session, details } = message else {
        return None;
    };
    let mut details = details.clone();
    if let Some(fox_wamp_proto::Value::Dict(roles)) = details.get_mut("roles") {
        for role in roles.values_mut() {
            *role = fox_wamp_proto::Value::Dict(fox_wamp_proto::Dict::new());
        }
    }
    Some(Message::Welcome {
        session: *session,
        details,
    })
}

/// Adds what one write sent to the router's and the session's counters.
fn count_sent(metrics: &Metrics, stats: Option<&SessionStats>, sent: Sent) {
    if sent.count.is_empty() {
        return;
    }
    metrics.wamp.sent(sent.count);
    metrics.call_errors(sent.call_errors);
    if let Some(stats) = stats {
        stats.count_sent(sent.count.messages);
    }
}

async fn overflowed(stats: &Option<Arc<SessionStats>>) {
    match stats {
        Some(stats) => stats.overflow.notified().await,
        None => std::future::pending().await,
    }
}

async fn next_verdict(verdict: &mut Option<Verdict>) -> Result<Identity, Denied> {
    match verdict {
        Some(verdict) => verdict.await,
        None => std::future::pending().await,
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

async fn next_outbound(rx: &mut Option<OutboundQueue>) -> Option<Outbound> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn outbound_message(session: &mut WampSession, out: Outbound, replies: &mut Vec<Message>) {
    match out {
        Outbound::Event(delivery) => replies.push(event_message(&delivery)),
        Outbound::Wamp(message) => {
            session.sending(&message);
            replies.push(*message)
        }
        Outbound::Close(close) => {
            session.goodbye(&close.reason, &close.message, unix_ms(), replies)
        }
    }
}

/// What the connection task writes after handling a batch of incoming frames.
#[derive(Default)]
struct Answers {
    /// RawSocket PONG payloads, written first.
    pongs: Vec<Vec<u8>>,
    /// WAMP messages for this session's peer.
    replies: Vec<Message>,
    /// What the batch received, for the metrics.
    received: Count,
    /// CALLs among them.
    calls: u64,
}

impl Answers {
    /// Adds what the batch received to the router's and the session's counters.
    fn count_received(&mut self, metrics: &Metrics, stats: Option<&SessionStats>) {
        let received = std::mem::take(&mut self.received);
        metrics.wamp.received(received);
        metrics.calls(std::mem::take(&mut self.calls));
        if let Some(stats) = stats {
            stats.count_received(received.messages);
        }
    }
}

/// Handles one frame from the transport. Synchronous, so that a whole batch of frames runs
/// inside one [`WakeBatch`].
fn handle_incoming(
    session: &mut WampSession,
    serializer: Serializer,
    message_size_max_bytes: usize,
    peer: &str,
    frame: Incoming,
    now_ms: u64,
    answers: &mut Answers,
) -> Flow {
    match frame {
        Incoming::Frame(bytes) => match serializer.decode(&bytes, message_size_max_bytes) {
            Ok(message) => {
                answers.received.message(bytes.len());
                match message {
                    Message::Publish { .. } => answers.received.publications += 1,
                    Message::Call { .. } => answers.calls += 1,
                    _ => {}
                }
                session.handle_message(message, now_ms, &mut answers.replies)
            }
            Err(e) => {
                tracing::info!(%peer, error = %e, "protocol violation: undecodable message");
                session.protocol_violation(&e.to_string(), &mut answers.replies);
                Flow::Close
            }
        },
        Incoming::Ping(payload) => {
            answers.pongs.push(payload);
            Flow::Continue
        }
        Incoming::Violation(reason) => {
            tracing::info!(%peer, %reason, "protocol violation on the transport");
            session.protocol_violation(&reason, &mut answers.replies);
            Flow::Close
        }
    }
}

/// The session's deadline ([`WampSession::poll_timeout`], Unix milliseconds) as a tokio
/// timer. It is converted once, when the session sets it, and then measured on the
/// monotonic clock: a step of the wall clock during the wait does not move it.
#[derive(Default)]
struct SessionTimer {
    deadline_ms: Option<u64>,
    at: Option<Instant>,
}

impl SessionTimer {
    /// Follows the session's deadline; the instant it falls on, if any.
    fn follow(&mut self, deadline_ms: Option<u64>) -> Option<Instant> {
        if deadline_ms != self.deadline_ms {
            self.deadline_ms = deadline_ms;
            self.at = deadline_ms.map(|deadline_ms| {
                let wait_ms = deadline_ms.saturating_sub(unix_ms());
                Instant::now() + Duration::from_millis(wait_ms)
            });
        }
        self.at
    }

    /// The time to hand the session once the timer fired: at least its deadline (the
    /// monotonic clock says it passed, whatever the wall clock says).
    fn fired_ms(&self) -> u64 {
        let now_ms = unix_ms();
        self.deadline_ms
            .map_or(now_ms, |deadline_ms| now_ms.max(deadline_ms))
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads and drops the peer's input until it ends, for at most [`LINGER_MS`] and
/// [`LINGER_BYTES_MAX`] (see there).
async fn linger<R: FrameReader>(reader: &mut R) {
    let deadline = Instant::now() + Duration::from_millis(LINGER_MS);
    let mut discarded_bytes = 0;
    while discarded_bytes < LINGER_BYTES_MAX {
        match tokio::time::timeout_at(deadline, reader.discard()).await {
            Ok(0) | Err(_) => return,
            Ok(bytes) => discarded_bytes += bytes,
        }
    }
}

/// Runs one WAMP connection to its end.
pub async fn drive<R: FrameReader, W: FrameWriter>(
    router: Arc<Router>,
    serializer: Serializer,
    mut writer: W,
    mut incoming: R,
    transport: &'static str,
    peer: String,
    tls: Option<Arc<crate::tls::TlsContext>>,
) {
    let _open = ConnectionKind::of_session_transport(transport)
        .map(|kind| router.metrics().connection_opened(kind));
    let metrics = router.metrics().clone();
    let limits = router.config.limits.clone();
    let write_timeout = Duration::from_millis(limits.write_timeout_ms);
    let entropy = Entropy {
        session_id: crate::realm::new_session_id(),
        nonce: rand::random(),
    };
    let mut session = WampSession::new(router.clone(), transport, peer.clone(), unix_ms(), entropy);
    session.set_tls(tls);
    let mut shutdown = router.shutdown_signal();
    let mut shutting_down = *shutdown.borrow_and_update();
    if shutting_down {
        writer.close().await;
        return;
    }
    // The handshake's deadline, then the GOODBYE wait's.
    let mut timer = SessionTimer::default();
    let mut outbound: Option<OutboundQueue> = None;
    let mut stats: Option<Arc<SessionStats>> = None;
    // The same stats, kept to the end even after an overflow dropped `stats`: publishers
    // paused on our queue are released when the connection ends, however it ends.
    let mut queue_stats: Option<Arc<SessionStats>> = None;
    let mut answers = Answers::default();
    // The established session's ID, for the log.
    let mut session_id = 0;
    let limit = limits.message_size_max_bytes;
    // Set while a subscriber queue our publishes filled is draining: no reads meanwhile
    // (see `engine::Backpressure`).
    let mut backpressure: Option<Draining> = None;
    // `limits.session_message_rate_max`, when set (boxed: most connections have none).
    let mut rate = match limits.session_message_rate_max {
        0 => None,
        max => Some(Box::new(MessageRate::new(max, std::time::Instant::now()))),
    };
    // Whether the peer's input ended (nothing to linger for), and whether our writing side
    // still works (something was or can be written: linger so that the peer reads it).
    let mut input_ended = false;
    let mut writable = true;
    // An external authenticator's verdict on AUTHENTICATE, awaited without reading.
    let mut verdict: Option<Verdict> = None;
    // The authorization hooks' answers for a parked message, awaited without reading.
    let mut authorizing: Option<crate::auth::hooks::Pending> = None;
    loop {
        let deadline = timer.follow(session.poll_timeout());
        let flow = tokio::select! {
            biased;
            _ = crate::router::stopped(&mut shutdown), if !shutting_down => {
                shutting_down = true;
                if session.is_handshaking() {
                    break;
                }
                session.goodbye(CloseUri::SystemShutdown.as_str(), "the router is shutting down", unix_ms(), &mut answers.replies);
                Flow::Continue
            }
            _ = overflowed(&stats) => {
                match stats.as_ref().and_then(|s| s.kill()) {
                    Some(Kill::Fenced) => {
                        tracing::info!(%peer, session = session_id, "WAMP session closed: this entry was fenced");
                        session.goodbye(KILLED_REASON, FENCED_MESSAGE, unix_ms(), &mut answers.replies);
                    }
                    Some(Kill::Administrator) => {
                        tracing::info!(%peer, session = session_id, "WAMP session killed by the administrator");
                        session.goodbye(KILLED_REASON, KILLED_MESSAGE, unix_ms(), &mut answers.replies);
                    }
                    None => session.goodbye(CloseUri::SlowConsumer.as_str(), "outbound queue full", unix_ms(), &mut answers.replies),
                }
                stats = None;
                Flow::Continue
            }
            _ = sleep_until(deadline), if deadline.is_some() => {
                // The handshake or the GOODBYE wait is over: close without writing.
                if session.handle_timeout(timer.fired_ms()) == Flow::Close {
                    break;
                }
                Flow::Continue
            }
            result = next_verdict(&mut verdict), if verdict.is_some() => {
                verdict = None;
                session.handle_verdict(result, &mut answers.replies)
            }
            answers_of_hooks = next_authorization(&mut authorizing), if authorizing.is_some() => {
                authorizing = None;
                let wakes = WakeBatch::begin();
                let flow = session.handle_authorization(answers_of_hooks, unix_ms(), &mut answers.replies);
                drop(wakes);
                if let Some(own) = &stats {
                    backpressure = draining(Backpressure::take(own));
                }
                flow
            }
            frame = incoming.next_frame(), if backpressure.is_none() && verdict.is_none() && authorizing.is_none() => {
                let Some(frame) = frame else {
                    input_ended = true;
                    break;
                };
                Backpressure::clear();
                // Other sessions' connections are woken once, after the whole batch.
                let wakes = WakeBatch::begin();
                let budget = rate_budget(&mut rate);
                // One clock read for the batch.
                let now_ms = unix_ms();
                let mut flow = handle_incoming(&mut session, serializer, limit, &peer, frame, now_ms, &mut answers);
                // Frames already waiting are handled before writing, so their answers go
                // out in one flush (as many as the session's rate allows).
                for _ in 0..INCOMING_BATCH_MAX.min(budget.saturating_sub(1) as usize) {
                    if flow != Flow::Continue
                        || stats.as_ref().is_some_and(Backpressure::is_recorded_for)
                        || session.awaits_verdict()
                        || session.awaits_authorization()
                    {
                        break;
                    }
                    let Some(frame) = incoming.ready_frame() else { break };
                    flow = handle_incoming(&mut session, serializer, limit, &peer, frame, now_ms, &mut answers);
                }
                drop(wakes);
                answers.count_received(&metrics, stats.as_deref());
                if let Some(own) = &stats {
                    backpressure = draining(Backpressure::take(own));
                    if backpressure.is_some() {
                        metrics.backpressure_paused();
                    } else {
                        backpressure = over_rate(&mut rate, own, &peer);
                    }
                }
                flow
            }
            _ = drained(&mut backpressure), if backpressure.is_some() => {
                backpressure = None;
                Flow::Continue
            }
            Some(out) = next_outbound(&mut outbound) => {
                outbound_message(&mut session, out, &mut answers.replies);
                if let Some(rx) = outbound.as_mut() {
                    for _ in 0..OUTBOUND_BATCH_MAX {
                        let Ok(out) = rx.try_recv() else { break };
                        outbound_message(&mut session, out, &mut answers.replies);
                    }
                    if let Some(stats) = &stats {
                        stats.drained_to(rx.len(), rx.max_capacity());
                    }
                }
                Flow::Continue
            }
        };
        if let Some(login) = session.take_login() {
            verdict = Some(verify(router.clone(), login));
        }
        if let Some(pending) = session.take_authorization() {
            authorizing = Some(pending);
        }
        if outbound.is_none() {
            if let Some(rx) = session.take_outbound() {
                outbound = Some(rx);
                stats = session.handle().map(|h| h.stats.clone());
                if let Some(handle) = session.handle() {
                    session_id = handle.info.id;
                    handle.stats.attach(&peer, unix_ms());
                    let info = &handle.info;
                    tracing::info!(%peer, session = info.id, realm = %info.realm, authid = %info.identity.authid, transport, "WAMP session opened");
                }
                queue_stats = stats.clone();
                if shutting_down {
                    session.goodbye(
                        CloseUri::SystemShutdown.as_str(),
                        "",
                        unix_ms(),
                        &mut answers.replies,
                    );
                }
            }
        }
        // A peer that stops reading blocks this write; its queue then fills and the realm
        // signals overflow, which must still end the session (and its registrations).
        let mut sent = Sent::default();
        // While handshaking or closing, the write has the same deadline as the session: a
        // GOODBYE (or CHALLENGE) to a peer that stopped reading must not wait forever, nor
        // keep the connection and its buffers (the overflow signal is gone by then).
        let write_deadline = timer.follow(session.poll_timeout());
        let written = tokio::select! {
            result = write_all(&mut writer, serializer, &mut answers.pongs, &mut answers.replies, &mut sent) => result.is_ok(),
            _ = overflowed(&stats) => {
                tracing::info!(%peer, "closing a session that stopped reading");
                false
            }
            _ = sleep_until(write_deadline), if write_deadline.is_some() => {
                tracing::info!(%peer, session = session_id, "closing a connection that stopped reading before its session ended");
                false
            }
            // Events alone never overflow the queue into a close (they are dropped): a
            // write blocked this long is a peer that stopped reading.
            _ = tokio::time::sleep(write_timeout) => {
                tracing::info!(%peer, session = session_id, timeout_ms = limits.write_timeout_ms, "closing a WAMP connection whose write blocked (limits.write_timeout_ms): the peer stopped reading");
                false
            }
        };
        count_sent(&metrics, queue_stats.as_deref(), sent);
        if !written || flow == Flow::Close {
            writable = written;
            break;
        }
    }
    if let (Some(stats), Some(rx)) = (&queue_stats, &outbound) {
        // Nobody drains the queue now: publishers paused on it go on.
        stats.detach();
        stats.drained_to(0, rx.max_capacity());
    }
    if let Some(stats) = &queue_stats {
        let (received, sent) = (
            stats
                .messages_received
                .load(std::sync::atomic::Ordering::Relaxed),
            stats
                .messages_sent
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        tracing::info!(%peer, session = session_id, received, sent, "WAMP session closed");
    }
    session.finish();
    let closed = tokio::time::timeout(Duration::from_millis(CLOSE_WAIT_MS), writer.close()).await;
    if closed.is_err() {
        // Dropping the writer (and the reader) closes the socket without the flush.
        writable = false;
    }
    if writable && !input_ended {
        linger(&mut incoming).await;
    }
}

#[cfg(test)]
mod tests;
