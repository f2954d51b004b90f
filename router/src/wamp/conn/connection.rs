//! One WAMP connection's state between events, and the loop that waits for the next one
//! (a frame, a queued outbound message, a deadline, a verdict, a shutdown) and writes the
//! answers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fox_wamp_proto::{CloseUri, Serializer};

use super::{
    count_sent, handle_incoming, linger, next_authorization, next_outbound, next_verdict,
    outbound_message, overflowed, sleep_until, write_all, Answers, FrameReader, FrameWriter, Sent,
    SessionTimer, CLOSE_WAIT_MS, DRAIN_MIN, DRAIN_POLL, FENCED_MESSAGE, INCOMING_BATCH_MAX,
    KILLED_MESSAGE, KILLED_REASON, OUTBOUND_BATCH_MAX, SHUTDOWN_DRAIN,
};
use crate::auth::external::{verify, Verdict};
use crate::auth::hooks::{Decided, Key, Pending};
use crate::config::Limits;
use crate::engine::unix_ms;
use crate::metrics::Metrics;
use crate::realm::backpressure::{
    drained, draining, over_rate, rate_budget, Backpressure, Draining, MessageRate,
};
use crate::realm::queue::WakeBatch;
use crate::realm::{Kill, OutboundQueue, SessionStats};
use crate::router::Router;
use crate::wamp::session::{Entropy, Flow, WampSession};

/// A connection's state between events. Each `on_*` method handles one kind of event.
pub(super) struct Connection<R, W> {
    router: Arc<Router>,
    serializer: Serializer,
    pub(super) writer: W,
    incoming: R,
    transport: &'static str,
    peer: String,
    metrics: Arc<Metrics>,
    limits: Limits,
    session: WampSession,
    shutdown: tokio::sync::watch::Receiver<bool>,
    pub(super) shutting_down: bool,
    /// The handshake's deadline, then the GOODBYE wait's.
    timer: SessionTimer,
    outbound: Option<OutboundQueue>,
    stats: Option<Arc<SessionStats>>,
    /// The same stats, kept to the end even after an overflow dropped `stats`: publishers
    /// paused on our queue are released when the connection ends, however it ends.
    queue_stats: Option<Arc<SessionStats>>,
    answers: Answers,
    /// The established session's ID, for the log.
    session_id: u64,
    /// Set while a subscriber queue our publishes filled is draining: no reads meanwhile
    /// (see `engine::Backpressure`).
    backpressure: Option<Draining>,
    /// Shutting down: new acknowledged publishes are refused (`WampSession::drain`), and
    /// the GOODBYE waits until the answers to those in flight are queued, at least the
    /// first instant and at most the second.
    drain_until: Option<(tokio::time::Instant, tokio::time::Instant)>,
    /// `limits.session_message_rate_max`, when set (boxed: most connections have none).
    rate: Option<Box<MessageRate>>,
    /// Whether the peer's input ended (nothing to linger for), and whether our writing
    /// side still works (something was or can be written: linger so that the peer reads
    /// it).
    input_ended: bool,
    writable: bool,
    /// An external authenticator's verdict on AUTHENTICATE, awaited without reading.
    verdict: Option<Verdict>,
    /// The authorization hooks' answers for a parked message, awaited without reading.
    authorizing: Option<Pending>,
}

impl<R: FrameReader, W: FrameWriter> Connection<R, W> {
    pub(super) fn new(
        router: Arc<Router>,
        (serializer, writer, incoming): (Serializer, W, R),
        transport: &'static str,
        peer: String,
        tls: Option<Arc<crate::tls::TlsContext>>,
    ) -> Self {
        let metrics = router.metrics().clone();
        let limits = router.config.limits.clone();
        let entropy = Entropy {
            session_id: crate::realm::new_session_id(),
            nonce: rand::random(),
        };
        let mut session =
            WampSession::new(router.clone(), transport, peer.clone(), unix_ms(), entropy);
        session.set_tls(tls);
        let mut shutdown = router.shutdown_signal();
        let shutting_down = *shutdown.borrow_and_update();
        let rate = match limits.session_message_rate_max {
            0 => None,
            max => Some(Box::new(MessageRate::new(max, std::time::Instant::now()))),
        };
        Connection {
            router,
            serializer,
            writer,
            incoming,
            transport,
            peer,
            metrics,
            limits,
            session,
            shutdown,
            shutting_down,
            timer: SessionTimer::default(),
            outbound: None,
            stats: None,
            queue_stats: None,
            answers: Answers::default(),
            session_id: 0,
            backpressure: None,
            drain_until: None,
            rate,
            input_ended: false,
            writable: true,
            verdict: None,
            authorizing: None,
        }
    }

    /// Handles events and writes their answers until the connection is to close.
    pub(super) async fn run(&mut self) {
        loop {
            let deadline = self.timer.follow(self.session.poll_timeout());
            let reading =
                self.backpressure.is_none() && self.verdict.is_none() && self.authorizing.is_none();
            let flow = tokio::select! {
                biased;
                _ = crate::router::stopped(&mut self.shutdown), if !self.shutting_down => {
                    self.shutting_down = true;
                    if self.session.is_handshaking() {
                        break;
                    }
                    // Reads go on: a PUBLISH that crossed our GOODBYE would go unanswered
                    // (autobahn never fails it); one read while draining is refused at
                    // once. At least DRAIN_MIN, so that one already on its way is read.
                    self.session.drain();
                    let now = tokio::time::Instant::now();
                    self.drain_until = Some((now + DRAIN_MIN, now + SHUTDOWN_DRAIN));
                    Flow::Continue
                }
                _ = overflowed(&self.stats) => self.on_overflow(),
                _ = sleep_until(deadline), if deadline.is_some() => {
                    // The handshake or the GOODBYE wait is over: close without writing.
                    if self.session.handle_timeout(self.timer.fired_ms()) == Flow::Close {
                        break;
                    }
                    Flow::Continue
                }
                result = next_verdict(&mut self.verdict), if self.verdict.is_some() => {
                    self.verdict = None;
                    self.session.handle_verdict(result, &mut self.answers.replies)
                }
                answers = next_authorization(&mut self.authorizing), if self.authorizing.is_some() => {
                    self.on_authorization(answers)
                }
                frame = self.incoming.next_frame(), if reading => {
                    let Some(frame) = frame else {
                        self.input_ended = true;
                        break;
                    };
                    self.on_frames(frame)
                }
                _ = drained(&mut self.backpressure), if self.backpressure.is_some() => {
                    self.backpressure = None;
                    Flow::Continue
                }
                Some(out) = next_outbound(&mut self.outbound) => self.on_outbound(out),
                // While draining, look again shortly: the answers come from other tasks.
                // Last, so that a frame or an answer that is ready goes first: a PUBLISH
                // read before our GOODBYE is answered, one that crosses it is not.
                _ = tokio::time::sleep(DRAIN_POLL), if self.drain_until.is_some() => Flow::Continue,
            };
            if let Some((earliest, latest)) = self.drain_until {
                let now = tokio::time::Instant::now();
                if (!self.acks_pending() && now >= earliest) || now >= latest {
                    self.drain_until = None;
                    self.shutdown_goodbye();
                }
            }
            self.take_requests();
            let written = self.write().await;
            if !written || flow == Flow::Close {
                self.writable = written;
                break;
            }
        }
    }

    /// Whether acknowledged publishes of this session still wait for their answer.
    fn acks_pending(&self) -> bool {
        self.stats
            .as_ref()
            .is_some_and(|stats| stats.acks_pending.load(Ordering::Acquire) > 0)
    }

    /// The router shuts down: what is queued for the client goes first (the answers a
    /// drain waited for among it), then GOODBYE.
    fn shutdown_goodbye(&mut self) {
        if let Some(rx) = self.outbound.as_mut() {
            while let Ok(out) = rx.try_recv() {
                outbound_message(&mut self.session, out, &mut self.answers.replies);
            }
        }
        self.goodbye(
            CloseUri::SystemShutdown.as_str(),
            "the router is shutting down",
        );
    }

    fn goodbye(&mut self, reason: &str, message: &str) {
        let replies = &mut self.answers.replies;
        self.session.goodbye(reason, message, unix_ms(), replies);
    }

    /// Our outbound queue overflowed (a slow consumer), or the session was killed.
    fn on_overflow(&mut self) -> Flow {
        let (peer, session) = (&self.peer, self.session_id);
        match self.stats.as_ref().and_then(|s| s.kill()) {
            Some(Kill::Fenced) => {
                tracing::info!(%peer, session, "WAMP session closed: this entry was fenced");
                self.goodbye(KILLED_REASON, FENCED_MESSAGE);
            }
            Some(Kill::Administrator) => {
                tracing::info!(%peer, session, "WAMP session killed by the administrator");
                self.goodbye(KILLED_REASON, KILLED_MESSAGE);
            }
            None => self.goodbye(CloseUri::SlowConsumer.as_str(), "outbound queue full"),
        }
        self.stats = None;
        Flow::Continue
    }

    /// The authorization hooks answered for the parked message.
    fn on_authorization(&mut self, answers: Vec<(Key, Decided)>) -> Flow {
        self.authorizing = None;
        let wakes = WakeBatch::begin();
        let replies = &mut self.answers.replies;
        let flow = self
            .session
            .handle_authorization(answers, unix_ms(), replies);
        drop(wakes);
        if let Some(own) = &self.stats {
            self.backpressure = draining(Backpressure::take(own));
        }
        flow
    }

    /// A frame from the peer, and the frames already waiting after it (as many as the
    /// session's rate allows), so that their answers go out in one flush.
    fn on_frames(&mut self, frame: super::Incoming) -> Flow {
        Backpressure::clear();
        // Other sessions' connections are woken once, after the whole batch.
        let wakes = WakeBatch::begin();
        let budget = rate_budget(&mut self.rate);
        // One clock read for the batch.
        let now_ms = unix_ms();
        let (serializer, limit) = (self.serializer, self.limits.message_size_max_bytes);
        let (session, answers, peer) = (&mut self.session, &mut self.answers, &self.peer);
        let mut flow = handle_incoming(session, serializer, limit, peer, frame, now_ms, answers);
        for _ in 0..INCOMING_BATCH_MAX.min(budget.saturating_sub(1) as usize) {
            if flow != Flow::Continue
                || self
                    .stats
                    .as_ref()
                    .is_some_and(Backpressure::is_recorded_for)
                || session.awaits_verdict()
                || session.awaits_authorization()
            {
                break;
            }
            let Some(frame) = self.incoming.ready_frame() else {
                break;
            };
            flow = handle_incoming(session, serializer, limit, peer, frame, now_ms, answers);
        }
        drop(wakes);
        answers.count_received(&self.metrics, self.stats.as_deref());
        if let Some(own) = &self.stats {
            self.backpressure = draining(Backpressure::take(own));
            if self.backpressure.is_some() {
                self.metrics.backpressure_paused();
            } else {
                self.backpressure = over_rate(&mut self.rate, own, peer);
            }
        }
        flow
    }

    /// A message from our outbound queue, and those queued after it (a batch).
    fn on_outbound(&mut self, out: crate::realm::Outbound) -> Flow {
        outbound_message(&mut self.session, out, &mut self.answers.replies);
        if let Some(rx) = self.outbound.as_mut() {
            for _ in 0..OUTBOUND_BATCH_MAX {
                let Ok(out) = rx.try_recv() else { break };
                outbound_message(&mut self.session, out, &mut self.answers.replies);
            }
            if let Some(stats) = &self.stats {
                stats.drained_to(rx.len(), rx.max_capacity());
            }
        }
        Flow::Continue
    }

    /// What the session asks of its connection after an event: an authenticator's or the
    /// hooks' answer to wait for, and, once it is established, its outbound queue.
    fn take_requests(&mut self) {
        if let Some(login) = self.session.take_login() {
            self.verdict = Some(verify(self.router.clone(), login));
        }
        if let Some(pending) = self.session.take_authorization() {
            self.authorizing = Some(pending);
        }
        if self.outbound.is_some() {
            return;
        }
        let Some(rx) = self.session.take_outbound() else {
            return;
        };
        self.outbound = Some(rx);
        self.stats = self.session.handle().map(|h| h.stats.clone());
        if let Some(handle) = self.session.handle() {
            self.session_id = handle.info.id;
            handle.stats.attach(&self.peer, unix_ms());
            let info = &handle.info;
            let (peer, transport) = (&self.peer, self.transport);
            tracing::info!(%peer, session = info.id, realm = %info.realm, authid = %info.identity.authid, transport, "WAMP session opened");
        }
        self.queue_stats = self.stats.clone();
        if self.shutting_down {
            self.goodbye(CloseUri::SystemShutdown.as_str(), "");
        }
    }

    /// Writes the answers; whether the peer could be written to.
    async fn write(&mut self) -> bool {
        let (peer, session) = (&self.peer, self.session_id);
        // A peer that stops reading blocks this write; its queue then fills and the realm
        // signals overflow, which must still end the session (and its registrations).
        let mut sent = Sent::default();
        // While handshaking or closing, the write has the same deadline as the session: a
        // GOODBYE (or CHALLENGE) to a peer that stopped reading must not wait forever, nor
        // keep the connection and its buffers (the overflow signal is gone by then).
        let write_deadline = self.timer.follow(self.session.poll_timeout());
        let write_timeout = Duration::from_millis(self.limits.write_timeout_ms);
        let answers = &mut self.answers;
        let written = tokio::select! {
            result = write_all(&mut self.writer, self.serializer, &mut answers.pongs, &mut answers.replies, &mut sent) => result.is_ok(),
            _ = overflowed(&self.stats) => {
                tracing::info!(%peer, "closing a session that stopped reading");
                false
            }
            _ = sleep_until(write_deadline), if write_deadline.is_some() => {
                tracing::info!(%peer, session, "closing a connection that stopped reading before its session ended");
                false
            }
            // Events alone never overflow the queue into a close (they are dropped): a
            // write blocked this long is a peer that stopped reading.
            _ = tokio::time::sleep(write_timeout) => {
                tracing::info!(%peer, session, timeout_ms = self.limits.write_timeout_ms, "closing a WAMP connection whose write blocked (limits.write_timeout_ms): the peer stopped reading");
                false
            }
        };
        count_sent(&self.metrics, self.queue_stats.as_deref(), sent);
        written
    }

    /// Ends the session, closes the transport and lingers for the peer's last input.
    pub(super) async fn finish(&mut self) {
        if let (Some(stats), Some(rx)) = (&self.queue_stats, &self.outbound) {
            // Nobody drains the queue now: publishers paused on it go on.
            stats.detach();
            stats.drained_to(0, rx.max_capacity());
        }
        if let Some(stats) = &self.queue_stats {
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            let received = stats.messages_received.load(relaxed);
            let sent = stats.messages_sent.load(relaxed);
            let (peer, session) = (&self.peer, self.session_id);
            tracing::info!(%peer, session, received, sent, "WAMP session closed");
        }
        self.session.finish();
        let closing = self.writer.close();
        let closed = tokio::time::timeout(Duration::from_millis(CLOSE_WAIT_MS), closing).await;
        if closed.is_err() {
            // Dropping the writer (and the reader) closes the socket without the flush.
            self.writable = false;
        }
        if self.writable && !self.input_ended {
            linger(&mut self.incoming).await;
        }
    }
}
