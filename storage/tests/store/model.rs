//! Model test: random op sequences give the same answers and the same state on MemStore
//! (the model) and RocksStore.

use fox_storage::{Batch, MemStore, RetentionPolicy, RocksStore, Store, SyncMode, Table};
use proptest::prelude::*;

use crate::record;

#[derive(Debug, Clone)]
enum Step {
    Apply(Vec<WriteOp>),
    Compact(RetentionPolicy, u64),
}

#[derive(Debug, Clone)]
enum WriteOp {
    Put(Table, String, Vec<u8>),
    Delete(Table, String),
    /// Appends `last + gap` (gap 0 is a rejected duplicate), timestamp, payload length.
    Append {
        gap: u64,
        timestamp_ms: u64,
        payload_len: usize,
    },
    /// Sets `last + delta - 2`: 0 and 1 go back, rejected; 2 is equal, a no-op.
    SetLast {
        delta: u64,
    },
}

fn table() -> impl Strategy<Value = Table> {
    prop_oneof![
        Just(Table::Retained),
        Just(Table::Sessions),
        Just(Table::Wills)
    ]
}

fn key() -> impl Strategy<Value = String> {
    // Small alphabet: prefixes and overwrites collide often.
    "[ab/]{0,3}"
}

fn write_op() -> impl Strategy<Value = WriteOp> {
    prop_oneof![
        (table(), key(), proptest::collection::vec(any::<u8>(), 0..4))
            .prop_map(|(t, k, v)| WriteOp::Put(t, k, v)),
        (table(), key()).prop_map(|(t, k)| WriteOp::Delete(t, k)),
        (0u64..50, 0u64..100, 0usize..20).prop_map(|(gap, timestamp_ms, payload_len)| {
            WriteOp::Append {
                gap,
                timestamp_ms,
                payload_len,
            }
        }),
        (0u64..5).prop_map(|delta| WriteOp::SetLast { delta }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let policy = (
        proptest::option::of(0u64..6),
        proptest::option::of(0u64..60),
        proptest::option::of(0u64..200),
    )
        .prop_map(|(max_count, max_age_ms, max_bytes)| RetentionPolicy {
            max_count,
            max_age_ms,
            max_bytes,
        });
    prop_oneof![
        4 => proptest::collection::vec(write_op(), 0..5).prop_map(Step::Apply),
        1 => (policy, 0u64..160).prop_map(|(p, now)| Step::Compact(p, now)),
    ]
}

/// Builds the batch against the model's current last id (the same for both stores).
fn batch(ops: &[WriteOp], last: u64) -> Batch {
    let mut batch = Batch::new();
    let mut next = last;
    for op in ops {
        match op {
            WriteOp::Put(t, k, v) => batch.put(*t, k.clone(), v.clone()),
            WriteOp::Delete(t, k) => batch.delete(*t, k.clone()),
            WriteOp::Append {
                gap,
                timestamp_ms,
                payload_len,
            } => {
                next += gap;
                batch.append_history(record(next, *timestamp_ms, "t", &vec![1; *payload_len]))
            }
            WriteOp::SetLast { delta } => {
                next = (next + delta).saturating_sub(2);
                batch.set_last_id(next)
            }
        };
    }
    batch
}

fn assert_same_state(model: &dyn Store, rocks: &dyn Store) {
    for table in Table::ALL {
        assert_eq!(
            model.scan(table, "", 1000).unwrap(),
            rocks.scan(table, "", 1000).unwrap()
        );
        assert_eq!(
            model.scan(table, "a", 2).unwrap(),
            rocks.scan(table, "a", 2).unwrap()
        );
    }
    assert_eq!(
        model.history_after(0, 1000).unwrap(),
        rocks.history_after(0, 1000).unwrap()
    );
    assert_eq!(
        model.history_after(40, 3).unwrap(),
        rocks.history_after(40, 3).unwrap()
    );
    assert_eq!(
        model.history_first_id().unwrap(),
        rocks.history_first_id().unwrap()
    );
    assert_eq!(
        model.history_last_id().unwrap(),
        rocks.history_last_id().unwrap()
    );
    assert_eq!(
        model.last_permanent_id().unwrap(),
        rocks.last_permanent_id().unwrap()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn mem_and_rocks_agree(steps in proptest::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let rocks = RocksStore::open(dir.path(), SyncMode::None).unwrap();
        let model = MemStore::new();
        for step in &steps {
            match step {
                Step::Apply(ops) => {
                    let batch = batch(ops, model.last_permanent_id().unwrap().unwrap_or(0));
                    let expected = model.apply(&batch).map_err(|e| e.to_string());
                    prop_assert_eq!(expected, rocks.apply(&batch).map_err(|e| e.to_string()));
                }
                Step::Compact(policy, now_ms) => {
                    let expected = model.compact_history(policy, *now_ms).unwrap();
                    prop_assert_eq!(expected, rocks.compact_history(policy, *now_ms).unwrap());
                }
            }
            assert_same_state(&model, &rocks);
        }
        // And the durable one says the same after a reopen.
        drop(rocks);
        let reopened = RocksStore::open(dir.path(), SyncMode::None).unwrap();
        assert_same_state(&model, &reopened);
    }
}
