//! Group commit: many callers, fewer writes, every caller answered, bad batches isolated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fox_storage::{
    Batch, CommitStats, Committer, CommitterConfig, HistoryRecord, MemStore, RetentionPolicy,
    RocksStore, Store, StoreError, SyncMode, Table,
};

use crate::{one, record};

/// A MemStore whose writes take `delay`, like an fsync: callers pile up behind it.
struct SlowStore {
    inner: MemStore,
    delay: Duration,
    first_write_only: bool,
    written: AtomicBool,
}

impl SlowStore {
    fn new(delay: Duration, first_write_only: bool) -> Self {
        SlowStore {
            inner: MemStore::new(),
            delay,
            first_write_only,
            written: AtomicBool::new(false),
        }
    }
}

impl Store for SlowStore {
    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        if !(self.first_write_only && self.written.swap(true, Ordering::SeqCst)) {
            std::thread::sleep(self.delay);
        }
        self.inner.apply(batch)
    }
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }
    fn scan(
        &self,
        table: Table,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.scan(table, prefix, limit)
    }
    fn history_after(&self, after_id: u64, limit: usize) -> Result<Vec<HistoryRecord>, StoreError> {
        self.inner.history_after(after_id, limit)
    }
    fn history_first_id(&self) -> Result<Option<u64>, StoreError> {
        self.inner.history_first_id()
    }
    fn history_last_id(&self) -> Result<Option<u64>, StoreError> {
        self.inner.history_last_id()
    }
    fn compact_history(&self, policy: &RetentionPolicy, now_ms: u64) -> Result<u64, StoreError> {
        self.inner.compact_history(policy, now_ms)
    }
    fn last_permanent_id(&self) -> Result<Option<u64>, StoreError> {
        self.inner.last_permanent_id()
    }
}

const THREADS: usize = 8;
const BATCHES_PER_THREAD: usize = 40;

/// THREADS threads commit BATCHES_PER_THREAD batches each and wait for every answer.
fn hammer(store: Arc<dyn Store>) -> CommitStats {
    let committer =
        Arc::new(Committer::start(Arc::clone(&store), CommitterConfig::default()).unwrap());
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let committer = Arc::clone(&committer);
            std::thread::spawn(move || {
                for i in 0..BATCHES_PER_THREAD {
                    let batch =
                        one(|b| b.put_session(format!("{thread}/{i:03}"), vec![thread as u8]));
                    committer.commit_blocking(batch).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for thread in 0..THREADS {
        let sessions = store
            .scan(Table::Sessions, &format!("{thread}/"), 1000)
            .unwrap();
        assert_eq!(
            sessions.len(),
            BATCHES_PER_THREAD,
            "every answered batch is in the store"
        );
    }
    committer.stats()
}

#[test]
fn concurrent_commits_are_grouped_slow_store() {
    let stats = hammer(Arc::new(SlowStore::new(Duration::from_millis(2), false)));
    assert_eq!(stats.batches, (THREADS * BATCHES_PER_THREAD) as u64);
    assert_eq!(stats.batches_failed, 0);
    assert!(stats.groups < stats.batches, "{stats:?}");
}

#[test]
fn concurrent_commits_are_grouped_rocks_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let stats = hammer(Arc::new(
        RocksStore::open(dir.path(), SyncMode::Fsync).unwrap(),
    ));
    assert_eq!(stats.batches, (THREADS * BATCHES_PER_THREAD) as u64);
    assert!(stats.groups < stats.batches, "{stats:?}");
    println!("rocks fsync: {stats:?}");
}

#[test]
fn a_rejected_batch_fails_alone_in_its_group() {
    // The first write blocks the thread for 200 ms while the rest queue up as one group.
    let store = Arc::new(SlowStore::new(Duration::from_millis(200), true));
    let committer = Committer::start(
        Arc::clone(&store) as Arc<dyn Store>,
        CommitterConfig::default(),
    )
    .unwrap();
    let first = committer
        .submit_blocking(one(|b| b.set_last_id(1)))
        .unwrap();
    let pending: Vec<_> = (2..12u64)
        .map(|id| {
            // ID 5 is submitted twice: the second one must fail, alone.
            let id = if id == 6 { 5 } else { id };
            committer
                .submit_blocking(one(|b| b.append_history(record(id, 0, "t", b""))))
                .unwrap()
        })
        .collect();
    first.wait_blocking().unwrap();
    let results: Vec<bool> = pending
        .into_iter()
        .map(|p| p.wait_blocking().is_ok())
        .collect();
    let expected: Vec<bool> = (2..12u64).map(|id| id != 6).collect();
    assert_eq!(results, expected);
    assert_eq!(store.history_after(0, 100).unwrap().len(), 9);
    let stats = committer.stats();
    assert_eq!((stats.batches, stats.batches_failed), (11, 1));
    assert_eq!(stats.write_latency.count(), stats.groups);
    assert!(
        stats.groups <= 2,
        "the first write, then everything queued behind it: {stats:?}"
    );
}

#[test]
fn async_commit_needs_no_runtime_thread_of_its_own() {
    // Drive the async API with a trivial executor: the committer needs no tokio runtime.
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let committer = Committer::start(
        Arc::clone(&store),
        CommitterConfig {
            queue_batches_max: 1,
            group_batches_max: 1,
        },
    )
    .unwrap();
    for id in 1..=3u64 {
        block_on(committer.commit(one(|b| b.append_history(record(id, 0, "t", b""))))).unwrap();
    }
    assert_eq!(store.history_last_id().unwrap(), Some(3));
    let stats = committer.stats();
    assert_eq!(stats.groups, 3);
    assert_eq!(
        stats.write_latency.count(),
        3,
        "one latency per group write"
    );
    assert!(stats.running && !stats.failing, "{stats:?}");
}

#[test]
fn drop_answers_everything_queued() {
    let store: Arc<dyn Store> = Arc::new(SlowStore::new(Duration::from_millis(50), true));
    let committer = Committer::start(Arc::clone(&store), CommitterConfig::default()).unwrap();
    let pending: Vec<_> = (1..=20u64)
        .map(|id| {
            committer
                .submit_blocking(one(|b| b.set_last_id(id)))
                .unwrap()
        })
        .collect();
    drop(committer);
    for p in pending {
        p.wait_blocking().unwrap();
    }
    assert_eq!(store.last_permanent_id().unwrap(), Some(20));
}

/// A store whose writes panic: stands for a bug in a Store implementation.
struct PanickingStore(MemStore);

impl Store for PanickingStore {
    fn apply(&self, _batch: &Batch) -> Result<(), StoreError> {
        panic!("PanickingStore::apply (expected by the test)");
    }
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(table, key)
    }
    fn scan(
        &self,
        table: Table,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.0.scan(table, prefix, limit)
    }
    fn history_after(&self, after_id: u64, limit: usize) -> Result<Vec<HistoryRecord>, StoreError> {
        self.0.history_after(after_id, limit)
    }
    fn history_first_id(&self) -> Result<Option<u64>, StoreError> {
        self.0.history_first_id()
    }
    fn history_last_id(&self) -> Result<Option<u64>, StoreError> {
        self.0.history_last_id()
    }
    fn compact_history(&self, policy: &RetentionPolicy, now_ms: u64) -> Result<u64, StoreError> {
        self.0.compact_history(policy, now_ms)
    }
    fn last_permanent_id(&self) -> Result<Option<u64>, StoreError> {
        self.0.last_permanent_id()
    }
}

#[test]
fn a_dead_committer_thread_answers_stopped_not_silence() {
    let committer = Committer::start(
        Arc::new(PanickingStore(MemStore::new())),
        CommitterConfig::default(),
    )
    .unwrap();
    let result = committer.commit_blocking(one(|b| b.set_last_id(1)));
    assert!(
        matches!(result, Err(StoreError::CommitterStopped)),
        "{result:?}"
    );
    let later = committer.commit_blocking(one(|b| b.set_last_id(2)));
    assert!(
        matches!(later, Err(StoreError::CommitterStopped)),
        "{later:?}"
    );
    drop(committer); // joins the panicked thread without panicking itself
}

/// A minimal single-future executor (parks the thread between polls).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}
