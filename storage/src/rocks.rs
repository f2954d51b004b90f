//! [`RocksStore`]: RocksDB in a directory, durable.
//!
//! Column families: `retained`, `sessions`, `wills` (key = UTF-8 string, value = opaque),
//! `history` (layout in codec.rs), `meta` (`last_permanent_id` = u64 BE).
//! Open creates the directory and any missing column family.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode, Options,
    WriteBatch, WriteOptions, DB,
};

use crate::batch::{self, Op};
use crate::retention::{self, Entry};
use crate::{
    codec, Batch, HistoryRecord, RetentionPolicy, Store, StoreError, SyncMode, Table,
    SCAN_RESULTS_MAX,
};

const CF_HISTORY: &str = "history";
const CF_META: &str = "meta";
const META_LAST_ID: &[u8] = b"last_permanent_id";

/// A durable store in one RocksDB directory. One process at a time (RocksDB's LOCK file).
pub struct RocksStore {
    db: DB,
    path: PathBuf,
    sync: SyncMode,
    /// Held while validating and writing a batch, so two concurrent `apply` calls cannot
    /// both pass validation against the same last ID.
    write_lock: Mutex<()>,
    /// Held by `compact_history`, so two compactions do not count the same records.
    compact_lock: Mutex<()>,
    /// The last permanent ID (0 = none); changed only under `write_lock`, after the write.
    last_id: AtomicU64,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .field("sync", &self.sync)
            .finish()
    }
}

impl RocksStore {
    /// Opens (or creates) the store in `path`. `sync` decides whether writes fsync.
    pub fn open(path: impl AsRef<Path>, sync: SyncMode) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let names = Table::ALL
            .iter()
            .map(|table| table.name())
            .chain([CF_HISTORY, CF_META]);
        let descriptors = names.map(|name| {
            let mut cf_options = Options::default();
            cf_options.set_compression_type(DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(name, cf_options)
        });
        let db = DB::open_cf_descriptors(&options, &path, descriptors)?;
        let store = RocksStore {
            db,
            path,
            sync,
            write_lock: Mutex::new(()),
            compact_lock: Mutex::new(()),
            last_id: AtomicU64::new(0),
        };
        let stored = store.read_last_id()?;
        // Apply raises the stored last ID with every append, in the same WriteBatch, so the
        // history can never be ahead of it; take the max anyway so IDs are never reused.
        let history_last = store.history_last_id()?.unwrap_or(0);
        store
            .last_id
            .store(stored.max(history_last), Ordering::SeqCst);
        Ok(store)
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or(StoreError::MissingColumnFamily(name))
    }

    fn read_last_id(&self) -> Result<u64, StoreError> {
        let Some(value) = self.db.get_pinned_cf(self.cf(CF_META)?, META_LAST_ID)? else {
            return Ok(0);
        };
        let bytes: [u8; 8] = value.as_ref().try_into().map_err(|_| StoreError::Corrupt {
            table: CF_META,
            reason: format!("last_permanent_id of {} bytes", value.len()),
        })?;
        Ok(u64::from_be_bytes(bytes))
    }

    fn write_options(&self) -> WriteOptions {
        let mut options = WriteOptions::default();
        options.set_sync(self.sync == SyncMode::Fsync);
        options
    }

    fn write_batch(
        &self,
        batch: &Batch,
        last_id_before: u64,
        last_id_after: u64,
    ) -> Result<WriteBatch, StoreError> {
        let mut write = WriteBatch::default();
        for op in batch.ops() {
            match op {
                Op::Put { table, key, value } => write.put_cf(self.cf(table.name())?, key, value),
                Op::Delete { table, key } => write.delete_cf(self.cf(table.name())?, key),
                Op::AppendHistory(record) => write.put_cf(
                    self.cf(CF_HISTORY)?,
                    codec::encode_key(record.id),
                    codec::encode_value(record),
                ),
                Op::SetLastId(_) => {}
            }
        }
        if last_id_after != last_id_before {
            write.put_cf(self.cf(CF_META)?, META_LAST_ID, last_id_after.to_be_bytes());
        }
        Ok(write)
    }

    /// History entries for retention, walking in `direction` from the matching end.
    fn entries(
        &self,
        mode: IteratorMode<'_>,
    ) -> Result<impl Iterator<Item = Result<Entry, StoreError>> + '_, StoreError> {
        let iterator = self.db.iterator_cf(self.cf(CF_HISTORY)?, mode);
        Ok(iterator.map(|item| {
            let (key, value) = item?;
            Ok(Entry {
                id: codec::decode_key(&key)?,
                timestamp_ms: codec::decode_timestamp_ms(&value)?,
                size_bytes: codec::stored_size_of_value(value.len()),
            })
        }))
    }

    fn first_or_last_history_id(&self, mode: IteratorMode<'_>) -> Result<Option<u64>, StoreError> {
        match self.db.iterator_cf(self.cf(CF_HISTORY)?, mode).next() {
            None => Ok(None),
            Some(item) => Ok(Some(codec::decode_key(&item?.0)?)),
        }
    }
}

impl Store for RocksStore {
    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        // Poison only means another apply panicked; the guarded state is in RocksDB itself.
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let last_id = self.last_id.load(Ordering::SeqCst);
        let last_id_after = batch::validate(batch.ops(), last_id)?;
        let write = self.write_batch(batch, last_id, last_id_after)?;
        self.db.write_opt(write, &self.write_options())?;
        self.last_id.store(last_id_after, Ordering::SeqCst);
        Ok(())
    }

    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(table.name())?, key)?
            .map(|value| value.to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mode = IteratorMode::From(prefix.as_bytes(), Direction::Forward);
        let mut found = Vec::new();
        for item in self.db.iterator_cf(self.cf(table.name())?, mode) {
            if found.len() >= limit.min(SCAN_RESULTS_MAX) {
                break;
            }
            let (key, value) = item?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let key = String::from_utf8(key.into_vec()).map_err(|e| StoreError::Corrupt {
                table: table.name(),
                reason: format!("key is not UTF-8: {e}"),
            })?;
            found.push((key, value.into_vec()));
        }
        Ok(found)
    }

    fn history_after(&self, after_id: u64, limit: usize) -> Result<Vec<HistoryRecord>, StoreError> {
        let Some(start) = after_id.checked_add(1) else {
            return Ok(Vec::new());
        };
        let start = codec::encode_key(start);
        let mode = IteratorMode::From(&start, Direction::Forward);
        let iterator = self.db.iterator_cf(self.cf(CF_HISTORY)?, mode);
        iterator
            .take(limit.min(SCAN_RESULTS_MAX))
            .map(|item| {
                let (key, value) = item?;
                codec::decode(&key, &value)
            })
            .collect()
    }

    fn history_first_id(&self) -> Result<Option<u64>, StoreError> {
        self.first_or_last_history_id(IteratorMode::Start)
    }

    fn history_last_id(&self) -> Result<Option<u64>, StoreError> {
        self.first_or_last_history_id(IteratorMode::End)
    }

    fn compact_history(&self, policy: &RetentionPolicy, now_ms: u64) -> Result<u64, StoreError> {
        let _guard = self
            .compact_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let newest_first = self.entries(IteratorMode::End)?;
        let oldest_first = self.entries(IteratorMode::Start)?;
        let Some(first_kept) =
            retention::first_kept_id(policy, now_ms, newest_first, oldest_first)?
        else {
            return Ok(0);
        };
        // Appends only add IDs above every existing one, so racing appends never fall in
        // [0, first_kept) and the count below stays exact.
        let first_kept_key = codec::encode_key(first_kept);
        let mut deleted: u64 = 0;
        for item in self
            .db
            .iterator_cf(self.cf(CF_HISTORY)?, IteratorMode::Start)
        {
            let (key, _) = item?;
            if key.as_ref() >= first_kept_key.as_slice() {
                break;
            }
            deleted += 1;
        }
        if deleted > 0 {
            let mut write = WriteBatch::default();
            write.delete_range_cf(self.cf(CF_HISTORY)?, codec::encode_key(0), first_kept_key);
            self.db.write_opt(write, &self.write_options())?;
        }
        Ok(deleted)
    }

    fn last_permanent_id(&self) -> Result<Option<u64>, StoreError> {
        let last_id = self.last_id.load(Ordering::SeqCst);
        Ok((last_id != 0).then_some(last_id))
    }
}
