//! [`Committer`]: group commit. Many callers, one thread, one write (one fsync) per group.
//!
//! ```text
//! callers --submit(batch)--> bounded queue (queue_batches_max) --> committer thread
//!    ^                                                              | drain up to group_batches_max
//!    |                                                              | merge into one Batch
//!    +------------ oneshot answer per batch <---------------------- | store.apply (one fsync)
//! ```
//!
//! Batches are applied in queue order: whoever assigns permanent IDs submits in ID order
//! (submit returns once queued, so it can pipeline and wait for answers later).
//! If a merged group is rejected, its batches are applied one by one so that each caller
//! gets its own answer and one bad batch does not fail its neighbours.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::{Batch, Store, StoreError};

/// Queue and group sizes of a [`Committer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitterConfig {
    /// Batches waiting for the thread; a full queue makes `submit` wait (backpressure).
    /// Default 4096.
    pub queue_batches_max: usize,
    /// Most batches merged into one write. Default 256.
    pub group_batches_max: usize,
}

impl Default for CommitterConfig {
    fn default() -> Self {
        CommitterConfig {
            queue_batches_max: 4096,
            group_batches_max: 256,
        }
    }
}

/// Counters of a [`Committer`] since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Batches answered (successfully or not).
    pub batches: u64,
    /// Merged writes (groups) attempted; `batches / groups` is the mean group size.
    pub groups: u64,
    /// Batches answered with an error.
    pub batches_failed: u64,
    /// Whether a batch of the most recent group failed (the store refuses writes now).
    pub failing: bool,
    /// Whether the committer thread still takes batches (false once it stopped).
    pub running: bool,
    /// How long each group's write took: the store's `apply`, with its fsync under
    /// [`SyncMode::Fsync`](crate::SyncMode).
    pub write_latency: LatencyHistogram,
}

/// Upper bounds of the [`LatencyHistogram`] buckets, in microseconds; a last bucket takes
/// everything slower.
pub const WRITE_LATENCY_BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// Write latencies in fixed buckets: `counts[i]` writes took at most
/// `WRITE_LATENCY_BUCKETS_US[i]` (and more than the bound before); the last count is the
/// writes slower than every bound. Not cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Writes per bucket.
    pub counts: [u64; WRITE_LATENCY_BUCKETS_US.len() + 1],
    /// Sum of all latencies, in microseconds.
    pub sum_us: u64,
}

impl LatencyHistogram {
    /// Writes observed.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The bucket of a latency.
fn latency_bucket(latency_us: u64) -> usize {
    WRITE_LATENCY_BUCKETS_US
        .iter()
        .position(|bound| latency_us <= *bound)
        .unwrap_or(WRITE_LATENCY_BUCKETS_US.len())
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    groups: AtomicU64,
    batches_failed: AtomicU64,
    failing: AtomicBool,
    latency_counts: [AtomicU64; WRITE_LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

impl Counters {
    fn observe_write(&self, latency: Duration) {
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_counts[latency_bucket(latency_us)].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(latency_us, Ordering::Relaxed);
    }

    fn write_latency(&self) -> LatencyHistogram {
        LatencyHistogram {
            counts: std::array::from_fn(|i| self.latency_counts[i].load(Ordering::Relaxed)),
            sum_us: self.latency_sum_us.load(Ordering::Relaxed),
        }
    }
}

struct Request {
    batch: Batch,
    answer: oneshot::Sender<Result<(), StoreError>>,
}

/// The answer to one submitted batch, to wait for.
#[derive(Debug)]
#[must_use = "a submitted batch is durable only once its Pending answers Ok"]
pub struct Pending {
    answer: oneshot::Receiver<Result<(), StoreError>>,
}

impl Pending {
    /// Waits (async, any runtime) until the batch is written, or failed.
    pub async fn wait(self) -> Result<(), StoreError> {
        self.answer
            .await
            .map_err(|_| StoreError::CommitterStopped)?
    }

    /// Waits on a plain thread (not inside an async task: that would block its runtime).
    pub fn wait_blocking(self) -> Result<(), StoreError> {
        self.answer
            .blocking_recv()
            .map_err(|_| StoreError::CommitterStopped)?
    }
}

/// Owns a store's writes: a dedicated thread applying queued batches in groups.
/// Share it with `Arc<Committer>`; dropping it drains the queue and joins the thread.
pub struct Committer {
    queue: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Committer {
    /// Starts the committer thread for `store`.
    pub fn start(store: Arc<dyn Store>, config: CommitterConfig) -> Result<Self, StoreError> {
        assert!(
            config.queue_batches_max > 0,
            "queue_batches_max must be positive"
        );
        assert!(
            config.group_batches_max > 0,
            "group_batches_max must be positive"
        );
        let (queue, receiver) = mpsc::channel(config.queue_batches_max);
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("fox-storage-committer".into())
            .spawn(move || {
                run(
                    &*store,
                    receiver,
                    config.group_batches_max,
                    &thread_counters,
                )
            })?;
        Ok(Committer {
            queue: Some(queue),
            thread: Some(thread),
            counters,
        })
    }

    /// Queues `batch` (waiting while the queue is full) and returns its [`Pending`] answer.
    pub async fn submit(&self, batch: Batch) -> Result<Pending, StoreError> {
        let (request, pending) = request(batch);
        let queue = self.queue.as_ref().ok_or(StoreError::CommitterStopped)?;
        queue
            .send(request)
            .await
            .map_err(|_| StoreError::CommitterStopped)?;
        Ok(pending)
    }

    /// [`submit`](Self::submit) for plain threads (panics inside an async runtime).
    pub fn submit_blocking(&self, batch: Batch) -> Result<Pending, StoreError> {
        let (request, pending) = request(batch);
        let queue = self.queue.as_ref().ok_or(StoreError::CommitterStopped)?;
        queue
            .blocking_send(request)
            .map_err(|_| StoreError::CommitterStopped)?;
        Ok(pending)
    }

    /// Queues `batch` without waiting for room. `Ok(Err(batch))` hands the batch back when
    /// the queue is full. Safe to call from async code that cannot await (inside a lock).
    pub fn try_submit(&self, batch: Batch) -> Result<Result<Pending, Batch>, StoreError> {
        let (request, pending) = request(batch);
        let queue = self.queue.as_ref().ok_or(StoreError::CommitterStopped)?;
        match queue.try_send(request) {
            Ok(()) => Ok(Ok(pending)),
            Err(mpsc::error::TrySendError::Full(request)) => Ok(Err(request.batch)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StoreError::CommitterStopped),
        }
    }

    /// Queues `batch` and waits until it is durable (per the store's [`SyncMode`](crate::SyncMode)).
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.submit(batch).await?.wait().await
    }

    /// [`commit`](Self::commit) for plain threads.
    pub fn commit_blocking(&self, batch: Batch) -> Result<(), StoreError> {
        self.submit_blocking(batch)?.wait_blocking()
    }

    /// Counters since start.
    pub fn stats(&self) -> CommitStats {
        CommitStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            groups: self.counters.groups.load(Ordering::Relaxed),
            batches_failed: self.counters.batches_failed.load(Ordering::Relaxed),
            failing: self.counters.failing.load(Ordering::Relaxed),
            running: self.queue.as_ref().is_some_and(|queue| !queue.is_closed()),
            write_latency: self.counters.write_latency(),
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the queue lets the thread answer what is queued, then return.
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            // A panic in the thread already answered its callers with CommitterStopped.
            let _ = thread.join();
        }
    }
}

fn request(batch: Batch) -> (Request, Pending) {
    let (answer, receiver) = oneshot::channel();
    (Request { batch, answer }, Pending { answer: receiver })
}

/// The committer thread: block for one request, take what else is queued (capped), write.
fn run(
    store: &dyn Store,
    mut receiver: mpsc::Receiver<Request>,
    group_batches_max: usize,
    counters: &Counters,
) {
    let mut group = Vec::with_capacity(group_batches_max);
    while receiver.blocking_recv_many(&mut group, group_batches_max) > 0 {
        assert!(group.len() <= group_batches_max, "a group is capped");
        commit_group(store, std::mem::take(&mut group), counters);
    }
}

fn commit_group(store: &dyn Store, group: Vec<Request>, counters: &Counters) {
    let mut merged = Batch::new();
    let mut lengths = Vec::with_capacity(group.len());
    let mut answers = Vec::with_capacity(group.len());
    for request in group {
        lengths.push(request.batch.len());
        merged.append(request.batch);
        answers.push(request.answer);
    }
    counters.groups.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let applied = store.apply(&merged);
    counters.observe_write(started.elapsed());
    let results: Vec<Result<(), StoreError>> = match applied {
        Ok(()) => answers.iter().map(|_| Ok(())).collect(),
        // One by one: each caller gets its own verdict; a rejected merged batch wrote nothing.
        Err(_) if answers.len() > 1 => merged
            .split(&lengths)
            .iter()
            .map(|batch| store.apply(batch))
            .collect(),
        Err(error) => vec![Err(error)],
    };
    assert_eq!(results.len(), answers.len(), "one result per batch");
    let failing = results.iter().any(Result::is_err);
    counters.failing.store(failing, Ordering::Relaxed);
    for (answer, result) in answers.into_iter().zip(results) {
        counters.batches.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            counters.batches_failed.fetch_add(1, Ordering::Relaxed);
        }
        // A caller that stopped waiting (dropped its Pending) does not need the answer.
        let _ = answer.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_the_bucket_of_their_upper_bound() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(50), 0, "a bound is inclusive");
        assert_eq!(latency_bucket(51), 1);
        assert_eq!(
            latency_bucket(1_000_000),
            WRITE_LATENCY_BUCKETS_US.len() - 1
        );
        assert_eq!(latency_bucket(1_000_001), WRITE_LATENCY_BUCKETS_US.len());
        assert!(
            WRITE_LATENCY_BUCKETS_US.windows(2).all(|w| w[0] < w[1]),
            "bounds increase"
        );
    }

    #[test]
    fn observed_writes_are_counted_and_summed() {
        let counters = Counters::default();
        counters.observe_write(Duration::from_micros(40));
        counters.observe_write(Duration::from_millis(3));
        counters.observe_write(Duration::from_secs(2));
        let histogram = counters.write_latency();
        assert_eq!(histogram.count(), 3);
        assert_eq!(histogram.sum_us, 40 + 3_000 + 2_000_000);
        assert_eq!(histogram.counts[0], 1);
        assert_eq!(histogram.counts[latency_bucket(3_000)], 1);
        assert_eq!(histogram.counts[WRITE_LATENCY_BUCKETS_US.len()], 1);
    }
}
