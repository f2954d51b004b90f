//! Integration tests of fox-storage, one binary (RocksDB links once):
//! - `suite`: one behaviour suite run against MemStore and RocksStore;
//! - `rocks`: what only the durable store has (reopen, corrupt data);
//! - `crash`: kill -9 of a writer child, every acked batch must be there after reopen;
//! - `committer`: group commit;
//! - `model`: proptest, random op sequences agree on both stores.

mod committer;
mod crash;
mod model;
mod rocks;
mod suite;

use fox_storage::{Batch, HistoryRecord, MemStore, RocksStore, Store, SyncMode};

/// A store under test, with the temp dir it lives in (removed on drop, also on failure).
pub(crate) struct Fixture {
    pub(crate) store: Box<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    pub(crate) fn mem() -> Self {
        Fixture {
            store: Box::new(MemStore::new()),
            _dir: None,
        }
    }

    pub(crate) fn rocks() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // SyncMode::None: these tests are about semantics; durability has its own test.
        let store = RocksStore::open(dir.path(), SyncMode::None).expect("open");
        Fixture {
            store: Box::new(store),
            _dir: Some(dir),
        }
    }
}

pub(crate) fn record(id: u64, timestamp_ms: u64, topic: &str, payload: &[u8]) -> HistoryRecord {
    HistoryRecord {
        id,
        timestamp_ms,
        topic: topic.to_owned(),
        payload: payload.to_vec(),
    }
}

/// A batch of one op, built by `build`.
pub(crate) fn one(build: impl FnOnce(&mut Batch) -> &mut Batch) -> Batch {
    let mut batch = Batch::new();
    build(&mut batch);
    batch
}
