use std::path::Path;
use std::time::{Duration, Instant};

use fox_sequencer::config::wire_limits::CHECKPOINT_CHUNK_BYTES_MAX;
use fox_sequencer::{CheckpointFile, NodeId};
use fox_storage::{NodeStore, SyncMode};
use sha2::{Digest, Sha256};

use super::serve::{make_checkpoint, HashCache};
use super::staging::{part_name, prepare_staging};
use super::*;
use crate::disk;

fn file(name: &str, content: &[u8]) -> CheckpointFile {
    CheckpointFile {
        name: name.into(),
        bytes: content.len() as u64,
        sha256: Sha256::digest(content).into(),
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn only_plain_rocksdb_names_are_checkpoint_files() {
    for good in [
        "000012.sst",
        "CURRENT",
        "MANIFEST-000005",
        "OPTIONS-000007",
        "000004.log",
        "LOG",
    ] {
        assert!(valid_file_name(good), "{good}");
    }
    let long = "a".repeat(CHECKPOINT_FILE_NAME_MAX_BYTES + 1);
    for bad in [
        "",
        "../CURRENT",
        "a/b",
        ".catchup",
        "..",
        "x.part",
        "COMPLETE",
        "sp ace",
        "née",
        long.as_str(),
    ] {
        assert!(!valid_file_name(bad), "{bad:?}");
    }
}

#[test]
fn staging_keeps_matching_files_resumes_partial_ones_and_drops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join(STAGING_DIR);
    std::fs::create_dir_all(&staging).unwrap();
    let chunk = CHECKPOINT_CHUNK_BYTES_MAX;
    let big = vec![7u8; chunk * 2 + 10];
    let files = vec![
        file("000001.sst", b"kept"),
        file("000002.sst", b"new content"),
        file("000003.sst", &big),
        file("CURRENT", b"MANIFEST-000009\n"),
    ];
    std::fs::write(staging.join("000001.sst"), b"kept").unwrap();
    // Same size, other content: pulled again.
    std::fs::write(staging.join("000002.sst"), b"old content").unwrap();
    // A partial file: resumed from its last whole chunk.
    std::fs::write(staging.join(part_name(&files[2])), &big[..chunk + 5]).unwrap();
    // A partial file of another file of the same name (another peer's): dropped.
    let other = file("000001.sst", b"other bytes");
    std::fs::write(staging.join(part_name(&other)), b"other").unwrap();
    std::fs::write(staging.join("000099.sst"), b"not listed").unwrap();
    std::fs::write(staging.join("COMPLETE"), b"000099.sst\n").unwrap();
    std::fs::create_dir_all(staging.join("stray")).unwrap();
    std::fs::write(staging.join(SOURCE), b"5\n").unwrap();
    let todo = prepare_staging(&staging, &files).unwrap();
    let plan: Vec<(&str, u64)> = todo
        .iter()
        .map(|(file, resume)| (file.name.as_str(), *resume))
        .collect();
    assert_eq!(
        plan,
        vec![
            ("000002.sst", 0),
            ("000003.sst", chunk as u64),
            ("CURRENT", 0)
        ]
    );
    assert_eq!(
        names_in(&staging),
        vec![
            SOURCE.to_string(),
            "000001.sst".to_string(),
            part_name(&files[2])
        ]
    );
}

#[test]
fn a_swap_cut_short_anywhere_finishes_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ndb");
    let staging = data.join(STAGING_DIR);
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::create_dir_all(data.join(CHECKPOINTS_DIR).join("17")).unwrap();
    for name in ["CURRENT", "MANIFEST-000001", "000001.sst", "LOCK"] {
        std::fs::write(data.join(name), format!("old {name}")).unwrap();
    }
    for name in ["CURRENT", "MANIFEST-000004", "000003.sst"] {
        std::fs::write(staging.join(name), format!("new {name}")).unwrap();
    }
    // No marker: nothing happens (a pull in progress is resumed instead).
    assert!(!finish_swap(&data).unwrap());
    assert!(data.join("000001.sst").exists());
    std::fs::write(
        staging.join(COMPLETE),
        "000003.sst\nCURRENT\nMANIFEST-000004\n",
    )
    .unwrap();
    // A crash after one file moved: the moved one stays, the old store's others go.
    std::fs::rename(staging.join("000003.sst"), data.join("000003.sst")).unwrap();
    assert!(finish_swap(&data).unwrap());
    assert_eq!(
        names_in(&data),
        vec!["000003.sst", "CURRENT", "MANIFEST-000004"]
    );
    for name in names_in(&data) {
        let content = std::fs::read_to_string(data.join(&name)).unwrap();
        assert_eq!(content, format!("new {name}"));
    }
    assert!(!finish_swap(&data).unwrap(), "done once");
}

#[test]
fn the_bucket_bounds_the_rate() {
    let mut bucket = Bucket::new(10_000_000);
    let burst = bucket.burst as u64;
    assert!(bucket.take(burst).is_none(), "the burst is there at once");
    let wait = bucket.take(1_000_000).expect("then it waits");
    let waited = wait.saturating_duration_since(Instant::now());
    assert!(
        waited > Duration::from_millis(50) && waited <= Duration::from_millis(101),
        "{waited:?}"
    );
    assert!(Bucket::new(0).take(u64::MAX).is_none(), "0: no bound");
}

#[test]
fn a_checkpoint_lists_every_file_with_its_hash_and_reuses_sst_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ndb");
    let store = NodeStore::open(&data, disk::NDB_FAMILIES, SyncMode::None).unwrap();
    let applied = fox_sequencer::Resolution {
        index: 1,
        segment: fox_sequencer::SegmentId::new_v7(1_700_000_000_000, [1; 10]),
        owner: NodeId(9),
        outcome: fox_sequencer::Outcome::Permanent {
            base: fox_sequencer::PermanentId(1),
            count: 1,
            digest: 0,
        },
        raft_index: 1,
        raft_term: 1,
    };
    let publication = fox_sequencer::Publication {
        publisher: 1,
        sequence: 1,
        payload: vec![5; 100],
    };
    let batch = disk::ndb_batch(&[fox_sequencer::NdbWrite::Applied {
        resolution: applied,
        messages: vec![publication],
    }])
    .unwrap();
    store.write(&batch, true).unwrap();
    let root = data.join(CHECKPOINTS_DIR);
    let hashes = HashCache::default();
    let (applied_index, last_id, files) =
        make_checkpoint(&store, &root, &root.join("1"), &hashes).unwrap();
    assert_eq!((applied_index, last_id), (1, 1));
    assert!(files.iter().any(|file| file.name == "CURRENT"));
    assert!(files.iter().any(|file| file.name.ends_with(".sst")));
    for listed in &files {
        let content = std::fs::read(root.join("1").join(&listed.name)).unwrap();
        assert_eq!(listed.bytes, content.len() as u64);
        let hash: [u8; 32] = Sha256::digest(&content).into();
        assert_eq!(listed.sha256, hash, "{}", listed.name);
    }
    let cached = hashes.lock().unwrap().len();
    assert_eq!(
        cached,
        files.iter().filter(|f| f.name.ends_with(".sst")).count()
    );
    // A second checkpoint shares the SST files (and their hashes).
    let (_, _, again) = make_checkpoint(&store, &root, &root.join("2"), &hashes).unwrap();
    let sst = |files: &[CheckpointFile]| -> Vec<CheckpointFile> {
        files
            .iter()
            .filter(|f| f.name.ends_with(".sst"))
            .cloned()
            .collect()
    };
    assert_eq!(sst(&files), sst(&again));
    // The copy opens as an ndb store with the same position.
    drop(store);
    let copy = NodeStore::open(root.join("1"), disk::NDB_FAMILIES, SyncMode::None).unwrap();
    assert_eq!(disk::ndb_position(&copy).unwrap(), (1, 1));
}
