//! [`MemStore`]: the in-memory store, the embedded default.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::batch::{self, Op};
use crate::retention::{self, Entry};
use crate::{Batch, HistoryRecord, RetentionPolicy, Store, StoreError, Table, SCAN_RESULTS_MAX};

/// Everything in `BTreeMap`s behind one `RwLock`: same semantics as
/// [`RocksStore`](crate::RocksStore), nothing survives the process.
#[derive(Debug, Default)]
pub struct MemStore {
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    tables: [BTreeMap<String, Vec<u8>>; 3],
    history: BTreeMap<u64, HistoryRecord>,
    /// 0 until the first ID is committed.
    last_id: u64,
}

impl State {
    fn table(&self, table: Table) -> &BTreeMap<String, Vec<u8>> {
        &self.tables[table as usize]
    }

    fn table_mut(&mut self, table: Table) -> &mut BTreeMap<String, Vec<u8>> {
        &mut self.tables[table as usize]
    }
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while holding the lock cannot leave State half-written: `apply` validates
    // before it mutates, and the mutations themselves do not panic. So poison is ignored.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for MemStore {
    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut state = self.write();
        let last_id = batch::validate(batch.ops(), state.last_id)?;
        for op in batch.ops() {
            match op {
                Op::Put { table, key, value } => {
                    state.table_mut(*table).insert(key.clone(), value.clone());
                }
                Op::Delete { table, key } => {
                    state.table_mut(*table).remove(key);
                }
                Op::AppendHistory(record) => {
                    state.history.insert(record.id, record.clone());
                }
                Op::SetLastId(_) => {}
            }
        }
        state.last_id = last_id;
        Ok(())
    }

    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read().table(table).get(key).cloned())
    }

    fn scan(
        &self,
        table: Table,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let state = self.read();
        let range = state
            .table(table)
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded));
        Ok(range
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit.min(SCAN_RESULTS_MAX))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn history_after(&self, after_id: u64, limit: usize) -> Result<Vec<HistoryRecord>, StoreError> {
        let state = self.read();
        let range = state
            .history
            .range((Bound::Excluded(after_id), Bound::Unbounded));
        Ok(range
            .take(limit.min(SCAN_RESULTS_MAX))
            .map(|(_, record)| record.clone())
            .collect())
    }

    fn history_first_id(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.read().history.keys().next().copied())
    }

    fn history_last_id(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.read().history.keys().next_back().copied())
    }

    fn compact_history(&self, policy: &RetentionPolicy, now_ms: u64) -> Result<u64, StoreError> {
        let mut state = self.write();
        let entry = |record: &HistoryRecord| -> Result<Entry, StoreError> {
            Ok(Entry {
                id: record.id,
                timestamp_ms: record.timestamp_ms,
                size_bytes: record.size_bytes(),
            })
        };
        let newest_first = state.history.values().rev().map(entry);
        let oldest_first = state.history.values().map(entry);
        let Some(first_kept) =
            retention::first_kept_id(policy, now_ms, newest_first, oldest_first)?
        else {
            return Ok(0);
        };
        let kept = state.history.split_off(&first_kept);
        let deleted = std::mem::replace(&mut state.history, kept);
        Ok(deleted.len() as u64)
    }

    fn last_permanent_id(&self) -> Result<Option<u64>, StoreError> {
        let last_id = self.read().last_id;
        Ok((last_id != 0).then_some(last_id))
    }
}
