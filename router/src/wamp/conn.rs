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

use super::session::{event_message, Flow, WampSession};
use crate::auth::external::Verdict;
use crate::auth::{Denied, Identity};
use crate::engine::unix_ms;
use crate::metrics::{ConnectionKind, Count, Metrics};
use crate::realm::{Outbound, OutboundQueue, SessionStats};
use crate::router::Router;

/// How many queued outbound messages are written before one flush.
const OUTBOUND_BATCH_MAX: usize = 256;
/// At shutdown, how long a session waits for the answers to its acknowledged publishes
/// before its GOODBYE (a healthy cluster orders them within milliseconds).
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);
/// At shutdown, how long a session reads at least before its GOODBYE: a PUBLISH already
/// on its way is answered (refused) rather than crossing the GOODBYE unanswered.
const DRAIN_MIN: Duration = Duration::from_millis(50);
/// How often a draining session looks whether those answers are queued.
const DRAIN_POLL: Duration = Duration::from_millis(5);
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
    // Nothing new (a turn that only looked, as a shutdown's drain does every few ms): no
    // flush either, since every earlier write ended with one; a peer that stopped reading
    // would block it with no deadline yet.
    if pongs.is_empty() && messages.is_empty() {
        return Ok(());
    }
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
    writer: W,
    incoming: R,
    transport: &'static str,
    peer: String,
    tls: Option<Arc<crate::tls::TlsContext>>,
) {
    let _open = ConnectionKind::of_session_transport(transport)
        .map(|kind| router.metrics().connection_opened(kind));
    let io = (serializer, writer, incoming);
    let mut connection = Connection::new(router, io, transport, peer, tls);
    if connection.shutting_down {
        connection.writer.close().await;
        return;
    }
    connection.run().await;
    connection.finish().await;
}

mod connection;

use connection::Connection;

#[cfg(test)]
mod tests;
