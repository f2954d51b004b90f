//! [`NodeStore`]: the durable state of a cluster node (ndb, sync) in one RocksDB directory.
//!
//! A small ordered key/value store with named column families and atomic write batches.
//! It knows nothing of the sequencer: the node driver (crate `fox-cluster`) chooses the
//! column families and encodes keys and values. Keys that must iterate in numeric order
//! are big-endian integers ([`u64_key`]).
//!
//! Group commit is the caller's: a node driver merges every output that arrived while the
//! previous write was on disk into one [`NodeBatch`], written with one fsync.
//!
//! ```text
//! open(dir, families, SyncMode)  -> read state back with scan / get
//!   -> per group: NodeBatch (put / delete / delete_range) -> write(batch, fsync)
//!   -> sync_wal() when an output asks for fsync but carries no write
//! ```

use std::path::{Path, PathBuf};

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode, Options,
    WriteBatch, WriteOptions, DB,
};

use crate::{StoreError, SyncMode, SCAN_RESULTS_MAX};

/// A key as 8 big-endian bytes, so that RocksDB iterates in numeric order.
pub fn u64_key(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

/// The number in an 8-byte big-endian key; `None` for any other length.
pub fn u64_from_key(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// One write of a [`NodeBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOp {
    /// Set `key` to `value` in `family`.
    Put {
        /// Column family.
        family: &'static str,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove `key` from `family`.
    Delete {
        /// Column family.
        family: &'static str,
        /// Key.
        key: Vec<u8>,
    },
    /// Remove every key in `[from, to)` from `family`.
    DeleteRange {
        /// Column family.
        family: &'static str,
        /// First key removed.
        from: Vec<u8>,
        /// First key kept.
        to: Vec<u8>,
    },
}

/// Writes applied together: all or none, also across a crash (one RocksDB WriteBatch),
/// in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeBatch {
    ops: Vec<NodeOp>,
}

impl NodeBatch {
    /// An empty batch.
    pub fn new() -> NodeBatch {
        NodeBatch::default()
    }

    /// Adds a put.
    pub fn put(&mut self, family: &'static str, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        let key = key.into();
        self.ops.push(NodeOp::Put { family, key, value });
    }

    /// Adds a delete.
    pub fn delete(&mut self, family: &'static str, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.ops.push(NodeOp::Delete { family, key });
    }

    /// Adds a range delete of `[from, to)`.
    pub fn delete_range(
        &mut self,
        family: &'static str,
        from: impl Into<Vec<u8>>,
        to: impl Into<Vec<u8>>,
    ) {
        let (from, to) = (from.into(), to.into());
        self.ops.push(NodeOp::DeleteRange { family, from, to });
    }

    /// Appends `other`'s writes after these.
    pub fn append(&mut self, other: NodeBatch) {
        self.ops.extend(other.ops);
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The writes, in order.
    pub fn ops(&self) -> &[NodeOp] {
        &self.ops
    }
}

/// One node's durable state. One process at a time (RocksDB's LOCK file).
pub struct NodeStore {
    db: DB,
    path: PathBuf,
    sync: SyncMode,
    families: Vec<&'static str>,
}

impl std::fmt::Debug for NodeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStore")
            .field("path", &self.path)
            .field("sync", &self.sync)
            .field("families", &self.families)
            .finish()
    }
}

impl NodeStore {
    /// Opens (or creates) the store in `path` with these column families (missing ones are
    /// created). With [`SyncMode::None`], `write(.., fsync = true)` does not wait for the disk.
    pub fn open(
        path: impl AsRef<Path>,
        families: &[&'static str],
        sync: SyncMode,
    ) -> Result<NodeStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let descriptors = families.iter().map(|name| {
            let mut family_options = Options::default();
            family_options.set_compression_type(DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*name, family_options)
        });
        let db = DB::open_cf_descriptors(&options, &path, descriptors)?;
        Ok(NodeStore {
            db,
            path,
            sync,
            families: families.to_vec(),
        })
    }

    /// The directory of this store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `write(.., true)` really fsyncs.
    pub fn sync_mode(&self) -> SyncMode {
        self.sync
    }

    fn family(&self, name: &'static str) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or(StoreError::MissingColumnFamily(name))
    }

    /// Writes `batch` atomically; with `fsync` (and [`SyncMode::Fsync`]) waits until the
    /// write-ahead log, with every earlier write, is on disk.
    pub fn write(&self, batch: &NodeBatch, fsync: bool) -> Result<(), StoreError> {
        let mut write = WriteBatch::default();
        for op in batch.ops() {
            match op {
                NodeOp::Put { family, key, value } => {
                    write.put_cf(self.family(family)?, key, value)
                }
                NodeOp::Delete { family, key } => write.delete_cf(self.family(family)?, key),
                NodeOp::DeleteRange { family, from, to } => {
                    write.delete_range_cf(self.family(family)?, from, to)
                }
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(fsync && self.sync == SyncMode::Fsync);
        self.db.write_opt(write, &options)?;
        Ok(())
    }

    /// Fsyncs the write-ahead log (every earlier write), unless [`SyncMode::None`].
    pub fn sync_wal(&self) -> Result<(), StoreError> {
        if self.sync == SyncMode::Fsync {
            self.db.flush_wal(true)?;
        }
        Ok(())
    }

    /// The value under `key` in `family`.
    pub fn get(&self, family: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.db.get_pinned_cf(self.family(family)?, key)?;
        Ok(value.map(|value| value.to_vec()))
    }

    /// Entries of `family` with keys `>= from`, in key order, at most `limit` (clamped to
    /// [`SCAN_RESULTS_MAX`]). Page on with the last key plus a zero byte.
    pub fn scan(
        &self,
        family: &'static str,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let mode = IteratorMode::From(from, Direction::Forward);
        let iterator = self.db.iterator_cf(self.family(family)?, mode);
        let mut found = Vec::new();
        for item in iterator.take(limit.min(SCAN_RESULTS_MAX)) {
            let (key, value) = item?;
            found.push((key.into_vec(), value.into_vec()));
        }
        Ok(found)
    }

    /// Writes a consistent copy of the whole store (every column family, as of now) to
    /// the new directory `dir` (it must not exist; its parent must). SST files are hard
    /// links when `dir` is on the same file system, so this is cheap and the copy holds
    /// no more disk than the store until the store compacts. Blocking.
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<(), StoreError> {
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db)?;
        checkpoint.create_checkpoint(dir)?;
        Ok(())
    }

    /// Up to `limit` entries of `family` before key `before` (`None`: from its end), last
    /// first (`limit` clamped to [`SCAN_RESULTS_MAX`]).
    pub fn scan_back(
        &self,
        family: &'static str,
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let mode = match before {
            Some(key) => IteratorMode::From(key, Direction::Reverse),
            None => IteratorMode::End,
        };
        let mut found = Vec::new();
        for item in self.db.iterator_cf(self.family(family)?, mode) {
            let (key, value) = item?;
            if before.is_some_and(|before| *key >= *before) {
                continue;
            }
            found.push((key.into_vec(), value.into_vec()));
            if found.len() >= limit.min(SCAN_RESULTS_MAX) {
                break;
            }
        }
        Ok(found)
    }

    /// The last entry of `family`, by key order.
    pub fn last(&self, family: &'static str) -> Result<Option<KeyValue>, StoreError> {
        let mut iterator = self.db.iterator_cf(self.family(family)?, IteratorMode::End);
        match iterator.next() {
            None => Ok(None),
            Some(item) => {
                let (key, value) = item?;
                Ok(Some((key.into_vec(), value.into_vec())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAMILIES: &[&str] = &["log", "meta"];

    #[test]
    fn scan_back_reads_from_the_end_or_before_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(dir.path(), FAMILIES, SyncMode::None).unwrap();
        let mut batch = NodeBatch::new();
        for key in 1u8..=5 {
            batch.put("log", vec![key], vec![key]);
        }
        store.write(&batch, false).unwrap();
        let keys = |found: Vec<KeyValue>| found.into_iter().map(|(k, _)| k[0]).collect::<Vec<_>>();
        assert_eq!(keys(store.scan_back("log", None, 2).unwrap()), vec![5, 4]);
        assert_eq!(
            keys(store.scan_back("log", Some(&[4]), 10).unwrap()),
            vec![3, 2, 1]
        );
        assert!(store.scan_back("meta", None, 10).unwrap().is_empty());
    }

    #[test]
    fn batches_are_atomic_ordered_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = NodeStore::open(dir.path(), FAMILIES, SyncMode::Fsync).unwrap();
            let mut batch = NodeBatch::new();
            for id in [3u64, 1, 2, 10] {
                batch.put("log", u64_key(id), vec![id as u8]);
            }
            batch.put("meta", b"applied".to_vec(), u64_key(7).to_vec());
            batch.delete("log", u64_key(2));
            store.write(&batch, true).unwrap();
            let mut truncate = NodeBatch::new();
            truncate.delete_range("log", u64_key(5), u64_key(u64::MAX));
            store.write(&truncate, false).unwrap();
            store.sync_wal().unwrap();
        }
        let store = NodeStore::open(dir.path(), FAMILIES, SyncMode::Fsync).unwrap();
        let keys: Vec<u64> = store
            .scan("log", &[], 100)
            .unwrap()
            .iter()
            .filter_map(|(key, _)| u64_from_key(key))
            .collect();
        assert_eq!(keys, vec![1, 3]);
        let applied = store.get("meta", b"applied").unwrap().unwrap();
        assert_eq!(u64_from_key(&applied), Some(7));
        let last = store.last("log").unwrap().unwrap();
        assert_eq!(u64_from_key(&last.0), Some(3));
        assert!(store.get("log", &u64_key(2)).unwrap().is_none());
    }

    #[test]
    fn a_checkpoint_is_a_store_with_everything_written_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(dir.path().join("live"), FAMILIES, SyncMode::None).unwrap();
        let mut batch = NodeBatch::new();
        batch.put("log", u64_key(1), b"one".to_vec());
        batch.put("meta", b"applied".to_vec(), u64_key(1).to_vec());
        store.write(&batch, false).unwrap();
        // The store's own directory may hold it: RocksDB ignores what it did not write.
        let copy = dir.path().join("live").join(".checkpoints-1");
        store.checkpoint(&copy).unwrap();
        let mut later = NodeBatch::new();
        later.put("log", u64_key(2), b"two".to_vec());
        store.write(&later, false).unwrap();
        assert!(
            store.checkpoint(&copy).is_err(),
            "an existing directory is refused"
        );
        drop(store);
        let reopened = NodeStore::open(dir.path().join("live"), FAMILIES, SyncMode::None).unwrap();
        assert_eq!(reopened.scan("log", &[], 10).unwrap().len(), 2);
        drop(reopened);
        let copied = NodeStore::open(&copy, FAMILIES, SyncMode::None).unwrap();
        let keys: Vec<u64> = copied
            .scan("log", &[], 10)
            .unwrap()
            .iter()
            .filter_map(|(key, _)| u64_from_key(key))
            .collect();
        assert_eq!(keys, vec![1]);
        assert_eq!(
            copied.get("meta", b"applied").unwrap(),
            Some(u64_key(1).to_vec())
        );
    }

    #[test]
    fn an_unknown_family_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(dir.path(), FAMILIES, SyncMode::None).unwrap();
        let mut batch = NodeBatch::new();
        batch.put("nope", b"k".to_vec(), vec![]);
        assert!(matches!(
            store.write(&batch, true),
            Err(StoreError::MissingColumnFamily("nope"))
        ));
        assert!(u64_from_key(b"short").is_none());
    }
}
