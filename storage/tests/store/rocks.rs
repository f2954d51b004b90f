//! What only the durable store has: data survives reopen, corrupt data is an error.

use fox_storage::{RetentionPolicy, RocksStore, Store, StoreError, SyncMode, Table};

use crate::{one, record};

#[test]
fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RocksStore::open(dir.path(), SyncMode::Fsync).unwrap();
        store
            .apply(&one(|b| {
                b.put_retained("a.b", b"r".to_vec())
                    .put_session("realm\0c", b"s".to_vec())
                    .put_will("realm\0c", b"w".to_vec())
                    .append_history(record(9, 1, "a.b", b"m9"))
                    .append_history(record(10, 2, "a.b", b"m10"))
                    .set_last_id(12)
            }))
            .unwrap();
        assert_eq!(store.path(), dir.path());
    }
    let store = RocksStore::open(dir.path(), SyncMode::Fsync).unwrap();
    assert_eq!(store.retained("a.b").unwrap(), Some(b"r".to_vec()));
    assert_eq!(store.session("realm\0c").unwrap(), Some(b"s".to_vec()));
    assert_eq!(store.will("realm\0c").unwrap(), Some(b"w".to_vec()));
    assert_eq!(
        store.history_after(0, 10).unwrap(),
        [record(9, 1, "a.b", b"m9"), record(10, 2, "a.b", b"m10")]
    );
    assert_eq!(store.last_permanent_id().unwrap(), Some(12));
    // Compacting everything away must not lose the last id across a reopen.
    let all = RetentionPolicy {
        max_count: Some(0),
        ..Default::default()
    };
    assert_eq!(store.compact_history(&all, 0).unwrap(), 2);
    drop(store);
    let store = RocksStore::open(dir.path(), SyncMode::Fsync).unwrap();
    assert_eq!(store.history_last_id().unwrap(), None);
    assert_eq!(store.last_permanent_id().unwrap(), Some(12));
    assert!(store
        .apply(&one(|b| b.append_history(record(12, 0, "t", b""))))
        .is_err());
}

#[test]
fn second_open_of_the_same_directory_fails() {
    let dir = tempfile::tempdir().unwrap();
    let _first = RocksStore::open(dir.path(), SyncMode::None).unwrap();
    assert!(matches!(
        RocksStore::open(dir.path(), SyncMode::None),
        Err(StoreError::Rocks(_))
    ));
}

/// Writes behind the store's back with plain RocksDB, then reads through the store.
fn with_raw_db(dir: &std::path::Path, write: impl FnOnce(&rocksdb::DB)) {
    drop(RocksStore::open(dir, SyncMode::None).unwrap());
    let names = ["retained", "sessions", "wills", "history", "meta"];
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir, names).unwrap();
    write(&db);
}

#[test]
fn corrupt_newest_history_key_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    with_raw_db(dir.path(), |db| {
        let history = db.cf_handle("history").unwrap();
        db.put_cf(history, 5u64.to_be_bytes(), [1u8, 0, 0]).unwrap();
        db.put_cf(history, [1u8, 2, 3], b"short key").unwrap();
    });
    // [1,2,3] sorts after every 8-byte key below 2^56, so it is the newest key: open reads
    // it to recover the last id and reports it.
    let error = RocksStore::open(dir.path(), SyncMode::None).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Corrupt {
                table: "history",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn corrupt_values_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    with_raw_db(dir.path(), |db| {
        db.put_cf(
            db.cf_handle("history").unwrap(),
            5u64.to_be_bytes(),
            [1u8, 0, 0],
        )
        .unwrap();
        db.put_cf(db.cf_handle("retained").unwrap(), [0xFFu8, 0xFE], b"v")
            .unwrap();
    });
    let store = RocksStore::open(dir.path(), SyncMode::None).unwrap();
    assert_eq!(store.history_last_id().unwrap(), Some(5));
    assert!(matches!(
        store.history_after(0, 10),
        Err(StoreError::Corrupt {
            table: "history",
            ..
        })
    ));
    let age = RetentionPolicy {
        max_age_ms: Some(0),
        ..Default::default()
    };
    assert!(matches!(
        store.compact_history(&age, 10),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.scan(Table::Retained, "", 10),
        Err(StoreError::Corrupt {
            table: "retained",
            ..
        })
    ));
}

#[test]
fn corrupt_last_id_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    with_raw_db(dir.path(), |db| {
        db.put_cf(
            db.cf_handle("meta").unwrap(),
            b"last_permanent_id",
            [1u8, 2],
        )
        .unwrap();
    });
    assert!(matches!(
        RocksStore::open(dir.path(), SyncMode::None),
        Err(StoreError::Corrupt { table: "meta", .. })
    ));
}
