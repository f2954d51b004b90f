//! Backpressure from subscribers to publishers (see [`Backpressure`]).

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
