//! [`Batch`]: the only way to write, and the rules a batch must keep.

use crate::{HistoryRecord, StoreError, Table, ID_MAX, KEY_SIZE_MAX_BYTES};

/// One write of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Set `key` in `table` to `value`.
    Put {
        /// Which table.
        table: Table,
        /// The key.
        key: String,
        /// The value (opaque).
        value: Vec<u8>,
    },
    /// Remove `key` from `table` (no error if absent).
    Delete {
        /// Which table.
        table: Table,
        /// The key.
        key: String,
    },
    /// Append one history record; its ID must be above the last permanent ID.
    AppendHistory(HistoryRecord),
    /// Raise the last permanent ID (IDs used without a history record).
    SetLastId(u64),
}

/// Writes applied atomically by [`Store::apply`](crate::Store::apply), in order.
///
/// ```
/// use fox_storage::{Batch, HistoryRecord, MemStore, Store};
/// let store = MemStore::new();
/// let mut batch = Batch::new();
/// batch
///     .append_history(HistoryRecord { id: 7, timestamp_ms: 1, topic: "a.b".into(), payload: b"m".to_vec() })
///     .put_retained("a.b", b"m".to_vec());
/// store.apply(&batch).unwrap();
/// assert_eq!(store.last_permanent_id().unwrap(), Some(7));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` in `table`.
    pub fn put(
        &mut self,
        table: Table,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.ops.push(Op::Put {
            table,
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Removes `key` from `table`.
    pub fn delete(&mut self, table: Table, key: impl Into<String>) -> &mut Self {
        self.ops.push(Op::Delete {
            table,
            key: key.into(),
        });
        self
    }

    /// Sets the retained value of `topic`.
    pub fn put_retained(
        &mut self,
        topic: impl Into<String>,
        value: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.put(Table::Retained, topic, value)
    }

    /// Clears the retained value of `topic`.
    pub fn delete_retained(&mut self, topic: impl Into<String>) -> &mut Self {
        self.delete(Table::Retained, topic)
    }

    /// Stores a session.
    pub fn put_session(&mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.put(Table::Sessions, key, value)
    }

    /// Removes a session.
    pub fn delete_session(&mut self, key: impl Into<String>) -> &mut Self {
        self.delete(Table::Sessions, key)
    }

    /// Stores a pending will.
    pub fn put_will(&mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.put(Table::Wills, key, value)
    }

    /// Removes a pending will.
    pub fn delete_will(&mut self, key: impl Into<String>) -> &mut Self {
        self.delete(Table::Wills, key)
    }

    /// Appends a history record (and raises the last permanent ID to its ID).
    pub fn append_history(&mut self, record: HistoryRecord) -> &mut Self {
        self.ops.push(Op::AppendHistory(record));
        self
    }

    /// Raises the last permanent ID to `id` (equal is a no-op, lower is an error).
    pub fn set_last_id(&mut self, id: u64) -> &mut Self {
        self.ops.push(Op::SetLastId(id));
        self
    }

    /// Moves every op of `other` to the end of this batch (group commit merges this way).
    pub fn append(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }

    /// Splits this batch back into batches of `lengths` ops each (the inverse of `append`).
    /// Ops beyond the sum of `lengths` go to a last batch if any remain.
    pub fn split(self, lengths: &[usize]) -> Vec<Batch> {
        let mut rest = self.ops.into_iter();
        let mut parts: Vec<Batch> = lengths
            .iter()
            .map(|&len| Batch {
                ops: rest.by_ref().take(len).collect(),
            })
            .collect();
        let tail: Vec<Op> = rest.collect();
        if !tail.is_empty() {
            parts.push(Batch { ops: tail });
        }
        parts
    }

    /// The ops in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Number of ops.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True without ops.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Checks `ops` against the rules, starting from `last_id` (0 = none yet); returns the last
/// permanent ID after the batch. Pure, so both stores reject exactly the same batches.
pub(crate) fn validate(ops: &[Op], last_id: u64) -> Result<u64, StoreError> {
    let mut last = last_id;
    for op in ops {
        match op {
            Op::Put { key, .. } | Op::Delete { key, .. } => check_key(key)?,
            Op::AppendHistory(record) => {
                check_key(&record.topic)?;
                check_id(record.id)?;
                if record.id <= last {
                    return Err(StoreError::HistoryIdNotIncreasing {
                        id: record.id,
                        last,
                    });
                }
                last = record.id;
            }
            Op::SetLastId(id) => {
                check_id(*id)?;
                if *id < last {
                    return Err(StoreError::LastIdBackwards { id: *id, last });
                }
                last = *id;
            }
        }
    }
    assert!(last >= last_id, "the last permanent id only grows");
    Ok(last)
}

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.len() > KEY_SIZE_MAX_BYTES {
        return Err(StoreError::KeyTooLarge {
            size_bytes: key.len(),
            size_max_bytes: KEY_SIZE_MAX_BYTES,
        });
    }
    Ok(())
}

fn check_id(id: u64) -> Result<(), StoreError> {
    if id == 0 || id > ID_MAX {
        return Err(StoreError::IdOutOfRange { id });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> HistoryRecord {
        HistoryRecord {
            id,
            timestamp_ms: 0,
            topic: "t".into(),
            payload: vec![],
        }
    }

    #[test]
    fn validate_walks_ids_in_order() {
        let mut batch = Batch::new();
        batch
            .append_history(record(5))
            .set_last_id(5)
            .append_history(record(6))
            .set_last_id(9);
        assert_eq!(validate(batch.ops(), 4).unwrap(), 9);
        assert!(matches!(
            validate(batch.ops(), 5),
            Err(StoreError::HistoryIdNotIncreasing { id: 5, last: 5 })
        ));
        let mut back = Batch::new();
        back.set_last_id(3);
        assert!(matches!(
            validate(back.ops(), 4),
            Err(StoreError::LastIdBackwards { id: 3, last: 4 })
        ));
    }

    #[test]
    fn validate_rejects_ids_out_of_range_and_long_keys() {
        for id in [0, ID_MAX + 1] {
            let mut batch = Batch::new();
            batch.append_history(record(id));
            assert!(matches!(
                validate(batch.ops(), 0),
                Err(StoreError::IdOutOfRange { .. })
            ));
        }
        let mut batch = Batch::new();
        batch.put_retained("k".repeat(KEY_SIZE_MAX_BYTES + 1), vec![]);
        assert!(matches!(
            validate(batch.ops(), 0),
            Err(StoreError::KeyTooLarge { .. })
        ));
        let mut ok = Batch::new();
        ok.append_history(record(ID_MAX))
            .put_retained("k".repeat(KEY_SIZE_MAX_BYTES), vec![]);
        assert_eq!(validate(ok.ops(), 0).unwrap(), ID_MAX);
    }

    #[test]
    fn split_inverts_append() {
        let mut a = Batch::new();
        a.put_retained("a", vec![1]).delete_retained("b");
        let mut b = Batch::new();
        b.put_will("w", vec![2]);
        let mut merged = Batch::new();
        merged.append(a.clone());
        merged.append(b.clone());
        assert_eq!(merged.split(&[2, 1]), vec![a, b]);
    }
}
