//! How a publish is ordered: the local sequencer that hands out permanent IDs.
//!
//! The ID format is the cluster's (DESIGN.md): an integer in [1, 2^53], strictly increasing,
//! `max(previous + 1, unix_ms << 12)`, so IDs also read as time. In a single process one
//! sequencer serves every realm and session. A restart resumes from the last ID the store
//! recorded (`resume_after`), so IDs never repeat or go backwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::realm::SessionStats;

/// The largest permanent ID (a valid WAMP ID).
pub const PERMANENT_ID_MAX: u64 = 1 << 53;

/// Strictly increasing permanent IDs for this process. Lock-free.
#[derive(Debug, Default)]
pub struct LocalSequencer {
    last: AtomicU64,
}

impl LocalSequencer {
    /// A sequencer whose first ID is greater than `last`.
    pub fn resume_after(last: u64) -> Self {
        Self {
            last: AtomicU64::new(last),
        }
    }

    /// The last ID handed out (0 before the first).
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// The next ID: `max(last + 1, now_ms << 12)`, clamped to the ID space.
    pub fn next(&self, now_ms: u64) -> u64 {
        let floor = now_ms.saturating_mul(1 << 12).min(PERMANENT_ID_MAX);
        let mut last = self.last.load(Ordering::Acquire);
        loop {
            let id = floor.max(last + 1);
            // Past 2^53 (year 2039 at the current clock) the format has no room left; IDs
            // still increase, which is the property every consumer relies on.
            debug_assert!(id > last);
            match self
                .last
                .compare_exchange_weak(last, id, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return id,
                Err(actual) => last = actual,
            }
        }
    }
}

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

/// Milliseconds since the Unix epoch (edge code only; cores take time as an argument).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_clock_and_never_repeat() {
        let s = LocalSequencer::default();
        let a = s.next(1000);
        assert_eq!(a, 1000 << 12);
        assert_eq!(s.next(1000), a + 1);
        assert_eq!(
            s.next(999),
            a + 2,
            "a clock going back does not move IDs back"
        );
        assert_eq!(s.next(2000), 2000 << 12);
    }

    #[test]
    fn resume_continues_after_the_stored_id() {
        let s = LocalSequencer::resume_after(5000 << 12);
        assert_eq!(s.next(1), (5000 << 12) + 1);
    }

    #[test]
    fn concurrent_ids_are_unique() {
        let s = std::sync::Arc::new(LocalSequencer::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || (0..10_000).map(|_| s.next(7)).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 40_000);
    }
}
