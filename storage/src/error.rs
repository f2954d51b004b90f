//! The one error type of this crate.

/// Why a store operation failed.
///
/// API misuse (a batch that breaks a rule) is kept apart from trouble with the disk
/// (`Rocks`, `Corrupt`, `Io`): the former means nothing was written and the caller has a
/// bug; the latter means the store may be unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A history ID outside `[1, ID_MAX]`, or a last ID set to 0 or above `ID_MAX`.
    #[error("permanent id {id} outside [1, 2^53]")]
    IdOutOfRange {
        /// The offending ID.
        id: u64,
    },
    /// A history append whose ID is not above the last permanent ID.
    #[error("history id {id} is not above the last permanent id {last}")]
    HistoryIdNotIncreasing {
        /// The appended ID.
        id: u64,
        /// The last permanent ID at that point of the batch.
        last: u64,
    },
    /// `set_last_id` below the current last permanent ID.
    #[error("last permanent id would go back from {last} to {id}")]
    LastIdBackwards {
        /// The requested ID.
        id: u64,
        /// The current last permanent ID.
        last: u64,
    },
    /// A key (or history topic) longer than `KEY_SIZE_MAX_BYTES`.
    #[error("key of {size_bytes} bytes exceeds the limit of {size_max_bytes}")]
    KeyTooLarge {
        /// The key's size.
        size_bytes: usize,
        /// The limit.
        size_max_bytes: usize,
    },
    /// A record on disk that does not decode: a bug or disk damage, never a panic.
    #[error("corrupt record in {table}: {reason}")]
    Corrupt {
        /// Column family.
        table: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A column family missing after open (cannot happen unless RocksDB misbehaves).
    #[error("column family {0} missing")]
    MissingColumnFamily(&'static str),
    /// RocksDB failed (I/O, lock held by another process, ...).
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Operating system error (e.g. the committer thread could not start).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The committer thread is gone (dropped, or it panicked): the batch's fate is unknown
    /// if it was already queued.
    #[error("committer stopped")]
    CommitterStopped,
}

impl StoreError {
    /// True for a batch rejected by validation: nothing of it was written, the store is fine.
    pub fn is_rejected_batch(&self) -> bool {
        matches!(
            self,
            StoreError::IdOutOfRange { .. }
                | StoreError::HistoryIdNotIncreasing { .. }
                | StoreError::LastIdBackwards { .. }
                | StoreError::KeyTooLarge { .. }
        )
    }
}
