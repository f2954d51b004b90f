//! Backpressure from subscribers to publishers (see [`Backpressure`]).

// An edge: the connection task waits here (deadlines on the clock), outside the cores.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;

use crate::realm::SessionStats;

use crate::engine::unix_ms;

/// Longest a publisher waits for one congested queue. A session that does not drain in
/// that time is not waited for during [`BACKPRESSURE_IGNORE_MS`]: a stuck or very slow
/// subscriber costs each publisher at most this once per such period, and its queue then
/// drops the newest messages when full, as without backpressure.
pub const BACKPRESSURE_WAIT_MAX_MS: u64 = 20;
/// How long a session that did not drain in time is not waited for.
pub const BACKPRESSURE_IGNORE_MS: u64 = 1_000;

std::thread_local! {
    /// The congested queue the publishes of the current call ran into. Publishing is
    /// synchronous, so the publisher's task takes it right after, on the same thread.
    static CONGESTED: std::cell::RefCell<Option<Arc<SessionStats>>> =
        const { std::cell::RefCell::new(None) };
}

/// Backpressure from subscribers to publishers: a publish that leaves a live subscriber's
/// queue past its high-water mark (low for QoS 1 / 2, half the queue otherwise; see
/// `realm::session`) makes the publisher's connection stop reading its socket (its client
/// then waits for acknowledgements, and TCP holds the rest) until that queue is back under
/// low water. Without it a fast publisher fills a slower subscriber's queue to its limit:
/// latency becomes a full queue's, and messages are dropped past it.
///
/// Calling order, in a publisher's connection task: [`Backpressure::clear`], handle the
/// input (publishes record congestion), [`Backpressure::take`]; if `Some`, do not read
/// until [`Backpressure::drained`] completes (keep serving the session's own queue).
#[derive(Debug)]
pub struct Backpressure {
    stats: Arc<SessionStats>,
    deadline: tokio::time::Instant,
}

impl Backpressure {
    /// Records that a publish congested the queue of the session with these stats.
    pub fn record(stats: Arc<SessionStats>) {
        CONGESTED.with(|c| *c.borrow_mut() = Some(stats));
    }

    /// Whether a publish since [`Backpressure::clear`] congested a queue other than `own`
    /// (what [`Backpressure::take`] would return): stop taking more input, a batch of
    /// publishes could overshoot the queue.
    pub fn is_recorded_for(own: &Arc<SessionStats>) -> bool {
        CONGESTED.with(|c| c.borrow().as_ref().is_some_and(|s| !Arc::ptr_eq(s, own)))
    }

    /// Forgets any congestion recorded on this thread (call before handling input).
    pub fn clear() {
        CONGESTED.with(|c| c.borrow_mut().take());
    }

    /// The congestion recorded since [`Backpressure::clear`], if any, unless it is the
    /// publisher's own queue (`own`): the publisher's connection drains that one, and it
    /// may need to read acknowledgements from its client to do so.
    pub fn take(own: &Arc<SessionStats>) -> Option<Self> {
        let stats = CONGESTED.with(|c| c.borrow_mut().take())?;
        if Arc::ptr_eq(&stats, own) {
            return None;
        }
        let wait = std::time::Duration::from_millis(BACKPRESSURE_WAIT_MAX_MS);
        Some(Self {
            stats,
            deadline: tokio::time::Instant::now() + wait,
        })
    }

    /// Waits until the queue is back under low water (`true`) or the wait limit passed
    /// (`false`: the session is then not waited for during [`BACKPRESSURE_IGNORE_MS`]).
    /// Cancel safe.
    pub async fn drained(&self) -> bool {
        let notified = self.stats.drained();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.stats.is_congested() {
            return true;
        }
        tokio::select! {
            () = notified => true,
            () = tokio::time::sleep_until(self.deadline) => {
                self.stats.ignore_until(unix_ms() + BACKPRESSURE_IGNORE_MS);
                false
            }
        }
    }
}

/// A connection's wait for a congested queue to drain ([`Backpressure::drained`]). Boxed:
/// it holds a timer, and inline it would make every connection's future larger for a state
/// few connections are ever in.
pub type Draining = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;

/// The wait for the congestion recorded by [`Backpressure::take`], if any.
pub fn draining(backpressure: Option<Backpressure>) -> Option<Draining> {
    backpressure.map(|b| Box::pin(async move { b.drained().await }) as Draining)
}

/// Completes when the congested queue drained or the wait limit passed; never without a
/// wait. Cancel safe.
pub async fn drained(draining: &mut Option<Draining>) -> bool {
    match draining {
        Some(draining) => draining.as_mut().await,
        None => std::future::pending().await,
    }
}

/// `limits.session_message_rate_max`: a token bucket over the messages one session sends
/// (a burst of `rate`, then `rate` per second). Over it, the connection stops reading until
/// the bucket has refilled: the client is slowed down by TCP, not disconnected, as EMQX's
/// rate limiter does. Sans-IO: the caller passes the time and the session's count.
#[derive(Debug)]
pub struct MessageRate {
    bucket: crate::connection_rate::TokenBucket,
    /// The session's received-message count at the last look.
    counted: u64,
    /// Whether the first throttling was logged (once per session).
    logged: bool,
}

impl MessageRate {
    /// `rate` messages per second, starting full at `now`.
    pub fn new(rate: u32, now: std::time::Instant) -> Self {
        Self {
            bucket: crate::connection_rate::TokenBucket::full(rate, now),
            counted: 0,
            logged: false,
        }
    }

    /// How many whole messages the session may send now (the rest of a read waits).
    pub fn budget(&mut self, now: std::time::Instant) -> u64 {
        self.bucket.refill(now).max(0.0) as u64
    }

    /// Takes the messages received since the last call (`total` is the session's count so
    /// far); returns until when reading must pause, if not even one more message fits.
    pub fn after(&mut self, total: u64, now: std::time::Instant) -> Option<std::time::Instant> {
        let received = total.saturating_sub(self.counted);
        self.counted = total;
        self.bucket.refill(now);
        self.bucket.take(received as f64);
        let until = self.bucket.when(1.0);
        (until > now).then_some(until)
    }

    /// True the first time it is asked after a throttling (log it then, once).
    pub fn first_throttle(&mut self) -> bool {
        !std::mem::replace(&mut self.logged, true)
    }
}

/// The pause [`MessageRate::after`] asks for, as a [`Draining`] wait (no reads meanwhile).
pub fn throttle(until: std::time::Instant) -> Draining {
    Box::pin(async move {
        tokio::time::sleep_until(until.into()).await;
        true
    })
}

/// How many messages the session may send in the next batch (all of them without a rate).
pub fn rate_budget(rate: &mut Option<Box<MessageRate>>) -> u64 {
    rate.as_mut()
        .map_or(u64::MAX, |rate| rate.budget(std::time::Instant::now()))
}

/// The session's rate check after a batch of input: the pause, if it is over its rate.
pub fn over_rate(
    rate: &mut Option<Box<MessageRate>>,
    stats: &SessionStats,
    peer: &str,
) -> Option<Draining> {
    let rate = rate.as_mut()?;
    let total = stats
        .messages_received
        .load(std::sync::atomic::Ordering::Relaxed);
    let until = rate.after(total, std::time::Instant::now())?;
    if rate.first_throttle() {
        tracing::info!(%peer, "session over limits.session_message_rate_max: reading paused until it is back under (logged once per session)");
    }
    Some(throttle(until))
}

#[cfg(test)]
mod rate_tests {
    use std::time::{Duration, Instant};

    use super::MessageRate;

    #[test]
    fn a_burst_of_rate_then_pauses_as_long_as_the_excess_takes() {
        let t0 = Instant::now();
        let mut rate = MessageRate::new(100, t0);
        assert_eq!(rate.budget(t0), 100, "the burst");
        assert_eq!(rate.after(99, t0), None, "one more fits");
        assert_eq!(rate.after(100, t0), Some(t0 + Duration::from_millis(10)));
        assert_eq!(rate.budget(t0), 0);
        // Half a second later, 50 more.
        let later = t0 + Duration::from_millis(500);
        assert_eq!(rate.budget(later), 50);
        assert_eq!(
            rate.after(150, later),
            Some(later + Duration::from_millis(10))
        );
        assert!(rate.first_throttle());
        assert!(!rate.first_throttle(), "logged once");
        // Idle for long: the bucket holds at most `rate`.
        let idle = later + Duration::from_secs(60);
        assert_eq!(rate.budget(idle), 100);
    }
}
