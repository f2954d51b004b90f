//! The behaviour every Store has: each case is a function of `&dyn Store`, run by the
//! `suite!` macro once on a MemStore and once on a RocksStore.

use fox_storage::{RetentionPolicy, Store, StoreError, Table, ID_MAX, KEY_SIZE_MAX_BYTES};

use crate::{one, record, Fixture};

fn ids(store: &dyn Store, after_id: u64, limit: usize) -> Vec<u64> {
    store
        .history_after(after_id, limit)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect()
}

fn keys(entries: Vec<(String, Vec<u8>)>) -> Vec<String> {
    entries.into_iter().map(|(key, _)| key).collect()
}

/// Appends ids with timestamp = id and a payload of `payload_len` bytes, one batch each.
fn append_all(store: &dyn Store, ids: &[u64], payload_len: usize) {
    for &id in ids {
        store
            .apply(&one(|b| {
                b.append_history(record(id, id, "t", &vec![7; payload_len]))
            }))
            .unwrap();
    }
}

pub(crate) fn retained_put_get_delete(store: &dyn Store) {
    assert_eq!(store.retained("a.b").unwrap(), None);
    store
        .apply(&one(|b| b.put_retained("a.b", b"one".to_vec())))
        .unwrap();
    assert_eq!(store.retained("a.b").unwrap(), Some(b"one".to_vec()));
    store
        .apply(&one(|b| b.put_retained("a.b", b"two".to_vec())))
        .unwrap();
    assert_eq!(store.retained("a.b").unwrap(), Some(b"two".to_vec()));
    store.apply(&one(|b| b.delete_retained("a.b"))).unwrap();
    assert_eq!(store.retained("a.b").unwrap(), None);
    store
        .apply(&one(|b| b.delete_retained("never.there")))
        .unwrap();
    store
        .apply(&one(|b| b.put_retained("empty", Vec::new())))
        .unwrap();
    assert_eq!(store.retained("empty").unwrap(), Some(Vec::new()));
    let big = vec![0xAB; 1 << 20];
    store
        .apply(&one(|b| b.put_retained("big", big.clone())))
        .unwrap();
    assert_eq!(store.retained("big").unwrap(), Some(big));
}

pub(crate) fn scan_prefix_and_limit(store: &dyn Store) {
    for key in ["b", "a/c", "ab", "a", "a/b", "a/b/c", "é/x", "a\0z"] {
        store
            .apply(&one(|b| b.put_retained(key, key.as_bytes().to_vec())))
            .unwrap();
    }
    assert_eq!(
        keys(store.scan_retained("a/", 100).unwrap()),
        ["a/b", "a/b/c", "a/c"]
    );
    assert_eq!(
        keys(store.scan_retained("a", 100).unwrap()),
        ["a", "a\0z", "a/b", "a/b/c", "a/c", "ab"]
    );
    assert_eq!(keys(store.scan_retained("a", 2).unwrap()), ["a", "a\0z"]);
    assert_eq!(store.scan_retained("", 100).unwrap().len(), 8);
    assert_eq!(keys(store.scan_retained("é", 100).unwrap()), ["é/x"]);
    assert!(store.scan_retained("zz", 100).unwrap().is_empty());
    assert!(store.scan_retained("a", 0).unwrap().is_empty());
    let (key, value) = &store.scan_retained("b", 1).unwrap()[0];
    assert_eq!((key.as_str(), value.as_slice()), ("b", b"b".as_slice()));
}

pub(crate) fn tables_are_separate(store: &dyn Store) {
    let key = "realm\0client";
    store
        .apply(&one(|b| {
            b.put_retained(key, b"r".to_vec())
                .put_session(key, b"s".to_vec())
                .put_will(key, b"w".to_vec())
        }))
        .unwrap();
    assert_eq!(store.retained(key).unwrap(), Some(b"r".to_vec()));
    assert_eq!(store.session(key).unwrap(), Some(b"s".to_vec()));
    assert_eq!(store.will(key).unwrap(), Some(b"w".to_vec()));
    store.apply(&one(|b| b.delete_will(key))).unwrap();
    assert_eq!(store.will(key).unwrap(), None);
    assert_eq!(store.session(key).unwrap(), Some(b"s".to_vec()));
    store
        .apply(&one(|b| {
            b.delete_session(key)
                .put_will("realm\0other", b"w2".to_vec())
        }))
        .unwrap();
    assert_eq!(store.session(key).unwrap(), None);
    assert_eq!(
        keys(store.scan(Table::Wills, "realm\0", 10).unwrap()),
        ["realm\0other"]
    );
    assert!(store.scan(Table::Sessions, "", 10).unwrap().is_empty());
    assert_eq!(keys(store.scan(Table::Retained, "", 10).unwrap()), [key]);
}

pub(crate) fn history_in_numeric_order(store: &dyn Store) {
    assert_eq!(store.history_first_id().unwrap(), None);
    assert_eq!(store.history_last_id().unwrap(), None);
    append_all(store, &[9, 10], 1);
    store
        .apply(&one(|b| {
            b.append_history(record(100, 5, "x", b"p"))
                .append_history(record(256, 6, "y", b""))
        }))
        .unwrap();
    assert_eq!(ids(store, 0, 100), [9, 10, 100, 256]);
    assert_eq!(ids(store, 9, 100), [10, 100, 256]);
    assert_eq!(ids(store, 11, 2), [100, 256]);
    assert_eq!(ids(store, 10, 1), [100]);
    assert!(ids(store, 256, 100).is_empty());
    assert!(ids(store, u64::MAX, 100).is_empty());
    assert!(ids(store, 0, 0).is_empty());
    assert_eq!(
        store.history_after(99, 1).unwrap(),
        [record(100, 5, "x", b"p")]
    );
    assert_eq!(store.history_first_id().unwrap(), Some(9));
    assert_eq!(store.history_last_id().unwrap(), Some(256));
    assert_eq!(store.last_permanent_id().unwrap(), Some(256));
}

pub(crate) fn history_ids_strictly_increase(store: &dyn Store) {
    append_all(store, &[5], 0);
    let rejected = |id| {
        store
            .apply(&one(|b| b.append_history(record(id, 0, "t", b""))))
            .unwrap_err()
    };
    assert!(matches!(
        rejected(5),
        StoreError::HistoryIdNotIncreasing { id: 5, last: 5 }
    ));
    assert!(matches!(
        rejected(4),
        StoreError::HistoryIdNotIncreasing { id: 4, last: 5 }
    ));
    assert!(matches!(
        rejected(ID_MAX + 1),
        StoreError::IdOutOfRange { .. }
    ));
    assert!(matches!(
        rejected(u64::MAX),
        StoreError::IdOutOfRange { .. }
    ));
    let within = one(|b| {
        b.append_history(record(7, 0, "t", b""))
            .append_history(record(6, 0, "t", b""))
    });
    assert!(store.apply(&within).unwrap_err().is_rejected_batch());
    append_all(store, &[ID_MAX], 0);
    assert_eq!(ids(store, 0, 10), [5, ID_MAX]);
}

pub(crate) fn last_permanent_id_only_grows(store: &dyn Store) {
    assert_eq!(store.last_permanent_id().unwrap(), None);
    assert!(matches!(
        store.apply(&one(|b| b.set_last_id(0))),
        Err(StoreError::IdOutOfRange { id: 0 })
    ));
    store.apply(&one(|b| b.set_last_id(50))).unwrap();
    assert_eq!(store.last_permanent_id().unwrap(), Some(50));
    store.apply(&one(|b| b.set_last_id(50))).unwrap();
    assert!(matches!(
        store.apply(&one(|b| b.set_last_id(49))),
        Err(StoreError::LastIdBackwards { id: 49, last: 50 })
    ));
    let stale = one(|b| b.append_history(record(40, 0, "t", b"")));
    assert!(matches!(
        store.apply(&stale),
        Err(StoreError::HistoryIdNotIncreasing { id: 40, last: 50 })
    ));
    store
        .apply(&one(|b| {
            b.append_history(record(51, 0, "t", b"")).set_last_id(60)
        }))
        .unwrap();
    assert_eq!(store.last_permanent_id().unwrap(), Some(60));
    assert_eq!(store.history_last_id().unwrap(), Some(51));
}

pub(crate) fn batch_is_atomic(store: &dyn Store) {
    let bad = one(|b| {
        b.put_retained("r", b"1".to_vec())
            .put_session("s", b"1".to_vec())
            .put_will("w", b"1".to_vec())
            .append_history(record(1, 0, "t", b""))
            .set_last_id(3)
            .append_history(record(2, 0, "t", b""))
    });
    assert!(matches!(
        store.apply(&bad),
        Err(StoreError::HistoryIdNotIncreasing { id: 2, last: 3 })
    ));
    assert_eq!(store.retained("r").unwrap(), None);
    assert_eq!(store.session("s").unwrap(), None);
    assert_eq!(store.will("w").unwrap(), None);
    assert_eq!(store.history_last_id().unwrap(), None);
    assert_eq!(store.last_permanent_id().unwrap(), None);
    let long_key = one(|b| {
        b.put_retained("r", b"1".to_vec())
            .put_session("k".repeat(KEY_SIZE_MAX_BYTES + 1), b"".to_vec())
    });
    assert!(matches!(
        store.apply(&long_key),
        Err(StoreError::KeyTooLarge { .. })
    ));
    assert_eq!(store.retained("r").unwrap(), None);
    let good = one(|b| {
        b.put_retained("r", b"1".to_vec())
            .delete_retained("r")
            .put_retained("r", b"2".to_vec())
    });
    store.apply(&good).unwrap();
    assert_eq!(
        store.retained("r").unwrap(),
        Some(b"2".to_vec()),
        "ops apply in order"
    );
}

pub(crate) fn retention_by_count(store: &dyn Store) {
    let policy = RetentionPolicy {
        max_count: Some(3),
        ..Default::default()
    };
    assert_eq!(
        store.compact_history(&policy, 0).unwrap(),
        0,
        "empty history"
    );
    append_all(store, &[9, 10, 100, 101, 1000], 0);
    assert_eq!(
        store
            .compact_history(&RetentionPolicy::default(), 0)
            .unwrap(),
        0
    );
    assert_eq!(store.compact_history(&policy, 0).unwrap(), 2);
    assert_eq!(ids(store, 0, 10), [100, 101, 1000]);
    assert_eq!(store.compact_history(&policy, 0).unwrap(), 0);
    assert_eq!(store.history_first_id().unwrap(), Some(100));
    let none = RetentionPolicy {
        max_count: Some(0),
        ..Default::default()
    };
    assert_eq!(store.compact_history(&none, 0).unwrap(), 3);
    assert_eq!(store.history_last_id().unwrap(), None);
    assert_eq!(
        store.last_permanent_id().unwrap(),
        Some(1000),
        "compaction keeps the last id"
    );
    assert!(store
        .apply(&one(|b| b.append_history(record(1000, 0, "t", b""))))
        .is_err());
    append_all(store, &[1001], 0);
    assert_eq!(ids(store, 0, 10), [1001]);
}

pub(crate) fn retention_by_age(store: &dyn Store) {
    append_all(store, &[10, 20, 30, 40], 0);
    // timestamp_ms = id; now 45, max age 20: 10 and 20 are older than 20 ms.
    let policy = RetentionPolicy {
        max_age_ms: Some(20),
        ..Default::default()
    };
    assert_eq!(store.compact_history(&policy, 45).unwrap(), 2);
    assert_eq!(ids(store, 0, 10), [30, 40]);
    assert_eq!(
        store.compact_history(&policy, 50).unwrap(),
        0,
        "age exactly 20 is kept"
    );
    assert_eq!(
        store.compact_history(&policy, 0).unwrap(),
        0,
        "clock behind timestamps deletes nothing"
    );
    assert_eq!(store.compact_history(&policy, u64::MAX).unwrap(), 2);
    assert_eq!(store.history_first_id().unwrap(), None);
}

pub(crate) fn retention_by_age_stops_at_first_young_record(store: &dyn Store) {
    // Timestamps out of ID order: 3 is young, so 4 (old) stays; history has no holes.
    for (id, timestamp_ms) in [(1, 0), (2, 0), (3, 100), (4, 0)] {
        store
            .apply(&one(|b| {
                b.append_history(record(id, timestamp_ms, "t", b""))
            }))
            .unwrap();
    }
    let policy = RetentionPolicy {
        max_age_ms: Some(10),
        ..Default::default()
    };
    assert_eq!(store.compact_history(&policy, 100).unwrap(), 2);
    assert_eq!(ids(store, 0, 10), [3, 4]);
}

pub(crate) fn retention_by_bytes(store: &dyn Store) {
    append_all(store, &[1, 2, 3, 4], 100);
    let size = store.history_after(0, 1).unwrap()[0].size_bytes();
    assert_eq!(size, 8 + 13 + 1 + 100, "key + header + topic + payload");
    let policy = RetentionPolicy {
        max_bytes: Some(2 * size + size / 2),
        ..Default::default()
    };
    assert_eq!(store.compact_history(&policy, 0).unwrap(), 2);
    assert_eq!(ids(store, 0, 10), [3, 4]);
    let exact = RetentionPolicy {
        max_bytes: Some(2 * size),
        ..Default::default()
    };
    assert_eq!(store.compact_history(&exact, 0).unwrap(), 0);
    let below = RetentionPolicy {
        max_bytes: Some(size - 1),
        ..Default::default()
    };
    assert_eq!(
        store.compact_history(&below, 0).unwrap(),
        2,
        "not even the newest fits"
    );
}

pub(crate) fn retention_strictest_limit_wins(store: &dyn Store) {
    append_all(store, &[1, 2, 3, 4, 5, 6], 0);
    let policy = RetentionPolicy {
        max_count: Some(5),
        max_age_ms: Some(2),
        max_bytes: Some(u64::MAX),
    };
    // count keeps 2..=6; age at now 6 keeps 4..=6.
    assert_eq!(store.compact_history(&policy, 6).unwrap(), 3);
    assert_eq!(ids(store, 0, 10), [4, 5, 6]);
    let policy = RetentionPolicy {
        max_count: Some(1),
        max_age_ms: Some(1000),
        max_bytes: None,
    };
    assert_eq!(store.compact_history(&policy, 6).unwrap(), 2);
    assert_eq!(ids(store, 0, 10), [6]);
}

macro_rules! suite {
    ($name:ident, $fixture:expr) => {
        mod $name {
            use super::*;
            suite!(@cases $fixture;
                retained_put_get_delete, scan_prefix_and_limit, tables_are_separate,
                history_in_numeric_order, history_ids_strictly_increase,
                last_permanent_id_only_grows, batch_is_atomic, retention_by_count,
                retention_by_age, retention_by_age_stops_at_first_young_record,
                retention_by_bytes, retention_strictest_limit_wins);
        }
    };
    (@cases $fixture:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let fixture: Fixture = $fixture;
                super::$case(&*fixture.store);
            }
        )*
    };
}

suite!(mem, Fixture::mem());
suite!(rocks, Fixture::rocks());
