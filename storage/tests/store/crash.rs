//! kill -9 durability. The parent re-runs this test binary as a child in "writer" mode
//! (env `FOX_STORAGE_CRASH_WRITER_DIR`): the child commits batches through a Committer with
//! `SyncMode::Fsync` from several threads and prints `ACK <id>` for each acknowledged one.
//! The parent SIGKILLs it mid-stream, reopens the store and checks that every acked batch is
//! there, whole, and that history is the gap-free prefix `1..=n` of what was submitted.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use fox_storage::{Committer, CommitterConfig, RocksStore, Store, SyncMode};

use crate::{one, record};

const WRITER_DIR_ENV: &str = "FOX_STORAGE_CRASH_WRITER_DIR";
const WRITER_THREADS: usize = 4;
/// The writer stops by itself after this many IDs (if nobody kills it).
const WRITER_IDS_MAX: u64 = 1_000_000;
const ACKS_BEFORE_KILL: usize = 300;
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn acked_batches_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("ACK ") {
                let _ = lines_tx.send(id.parse::<u64>().unwrap());
            }
        }
    });
    let mut acked = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while acked.len() < ACKS_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(id) => acked.push(id),
            Err(error) => {
                let _ = child.kill();
                panic!("writer gave {} acks before {error:?}", acked.len());
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the writer was killed, not finished: {status}"
    );
    reader.join().unwrap();
    acked.extend(lines_rx.try_iter()); // acks printed before the kill still count
    check_after_crash(dir.path(), &acked);
}

fn check_after_crash(dir: &std::path::Path, acked: &[u64]) {
    let store = RocksStore::open(dir, SyncMode::Fsync).unwrap();
    let acked_max = *acked.iter().max().unwrap();
    let last_id = store.last_permanent_id().unwrap().unwrap();
    assert!(
        last_id >= acked_max,
        "last id {last_id} < acked {acked_max}"
    );
    let history = store.history_after(0, 100_000).unwrap();
    let ids: Vec<u64> = history.iter().map(|r| r.id).collect();
    let expected: Vec<u64> = (1..=ids.len() as u64).collect();
    assert_eq!(ids, expected, "history is a gap-free prefix");
    assert_eq!(last_id, ids.len() as u64);
    for &id in acked {
        let record = &history[(id - 1) as usize];
        assert_eq!(record.payload, id.to_be_bytes(), "acked id {id}");
        let retained = store.retained(&format!("t/{id}")).unwrap();
        assert_eq!(
            retained,
            Some(id.to_be_bytes().to_vec()),
            "retained of acked id {id} (same batch)"
        );
    }
    println!("crash: {} acked, {} durable", acked.len(), ids.len());
}

/// Not a test on its own: does nothing unless run as the crash test's child.
#[test]
fn writer_child() {
    let Some(dir) = std::env::var_os(WRITER_DIR_ENV) else {
        return;
    };
    let store = Arc::new(RocksStore::open(dir, SyncMode::Fsync).unwrap());
    let committer = Arc::new(Committer::start(store, CommitterConfig::default()).unwrap());
    // IDs are taken and queued under one lock, so queue order is ID order.
    let next_id = Arc::new(Mutex::new(1u64));
    let threads: Vec<_> = (0..WRITER_THREADS)
        .map(|_| {
            let committer = Arc::clone(&committer);
            let next_id = Arc::clone(&next_id);
            std::thread::spawn(move || write_until_killed(&committer, &next_id))
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

fn write_until_killed(committer: &Committer, next_id: &Mutex<u64>) {
    loop {
        let (id, pending) = {
            let mut next = next_id.lock().unwrap();
            let id = *next;
            if id > WRITER_IDS_MAX {
                return;
            }
            *next += 1;
            let batch = one(|b| {
                b.append_history(record(id, id, "t", &id.to_be_bytes()))
                    .put_retained(format!("t/{id}"), id.to_be_bytes().to_vec())
            });
            (id, committer.submit_blocking(batch).unwrap())
        };
        pending.wait_blocking().unwrap();
        println!("ACK {id}");
    }
}
