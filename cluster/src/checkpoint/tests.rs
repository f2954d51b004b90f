use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fox_sequencer::config::wire_limits::CHECKPOINT_CHUNK_BYTES_MAX;
use fox_sequencer::{CheckpointFile, Message, NodeId};
use fox_storage::{NodeStore, SyncMode};
use sha2::{Digest, Sha256};

use super::serve::{make_checkpoint, read_and_hash, HashCache, Server};
use super::staging::{part_name, prepare_staging};
use super::*;
use crate::disk;

fn file(name: &str, content: &[u8]) -> CheckpointFile {
    CheckpointFile {
        name: name.into(),
        bytes: content.len() as u64,
        sha256: Some(Sha256::digest(content).into()),
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
    std::fs::write(
        staging.join(part_name(&files[2], NodeId(5))),
        &big[..chunk + 5],
    )
    .unwrap();
    // A partial file of the same name from another peer: dropped.
    std::fs::write(staging.join(part_name(&files[1], NodeId(6))), b"new").unwrap();
    std::fs::write(staging.join("000099.sst"), b"not listed").unwrap();
    std::fs::write(staging.join("COMPLETE"), b"000099.sst\n").unwrap();
    std::fs::create_dir_all(staging.join("stray")).unwrap();
    std::fs::write(staging.join(SOURCE), b"5\n").unwrap();
    let todo = prepare_staging(&staging, &files, NodeId(5)).unwrap();
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
            part_name(&files[2], NodeId(5))
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
        assert_eq!(
            listed.sha256, None,
            "a listing reads no file: {}",
            listed.name
        );
    }
    // An SST file hashed while it was served is named with its hash by the next listing
    // (a second checkpoint shares the SST files); other files never are.
    let sst = files.iter().find(|f| f.name.ends_with(".sst")).unwrap();
    let content = std::fs::read(root.join("1").join(&sst.name)).unwrap();
    let hash: [u8; 32] = Sha256::digest(&content).into();
    hashes
        .lock()
        .unwrap()
        .insert(sst.name.clone(), (sst.bytes, hash));
    let (_, _, again) = make_checkpoint(&store, &root, &root.join("2"), &hashes).unwrap();
    let named = again.iter().find(|f| f.name == sst.name).unwrap();
    assert_eq!(named.sha256, Some(hash));
    assert!(again
        .iter()
        .filter(|f| !f.name.ends_with(".sst"))
        .all(|f| f.sha256.is_none()));
    // The copy opens as an ndb store with the same position.
    drop(store);
    let copy = NodeStore::open(root.join("1"), disk::NDB_FAMILIES, SyncMode::None).unwrap();
    assert_eq!(disk::ndb_position(&copy).unwrap(), (1, 1));
}

/// What a server sent, in order.
#[derive(Clone, Default)]
struct Sent(Arc<std::sync::Mutex<Vec<(NodeId, Message)>>>);

impl crate::driver::Outbox for Sent {
    fn send(&self, to: NodeId, message: Message) {
        self.0.lock().unwrap().push((to, message));
    }
}

impl Sent {
    fn take(&self) -> Vec<(NodeId, Message)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn data_of(sent: Vec<(NodeId, Message)>) -> (Vec<u8>, bool) {
    let (data, _, gone) = piece_of(sent);
    (data, gone)
}

fn piece_of(sent: Vec<(NodeId, Message)>) -> (Vec<u8>, Option<[u8; 32]>, bool) {
    match sent.as_slice() {
        [(
            NodeId(2),
            Message::CheckpointData {
                data, sha256, gone, ..
            },
        )] => (data.clone(), *sha256, *gone),
        other => panic!("one CHECKPOINT_DATA to n2 expected: {other:?}"),
    }
}

/// Reads of what the listing names are answered with the file's bytes; anything else (an
/// unknown checkpoint, a name outside the listing such as a path, an offset past the end,
/// a piece larger than the limit) is answered without a byte from outside the checkpoint.
#[tokio::test]
async fn a_server_answers_only_reads_of_listed_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ndb");
    let store = Arc::new(NodeStore::open(&data, disk::NDB_FAMILIES, SyncMode::None).unwrap());
    // 3 MiB that do not compress: the checkpoint's SST file is larger than one piece.
    let mut batch = fox_storage::NodeBatch::new();
    for key in 0..3u64 {
        let value: Vec<u8> = (0..1 << 20).map(|_| rand::random::<u8>()).collect();
        batch.put("log", fox_storage::u64_key(key).to_vec(), value);
    }
    store.write(&batch, false).unwrap();
    std::fs::write(dir.path().join("secret"), b"not served").unwrap();
    let sent = Sent::default();
    let mut server = Server::new(Arc::clone(&store), sent.clone()).await.unwrap();
    server.handle(NodeId(2), Message::CheckpointOpen).await;
    let (checkpoint, files) = match sent.take().as_slice() {
        [(
            NodeId(2),
            Message::CheckpointFiles {
                checkpoint, files, ..
            },
        )] => (*checkpoint, files.clone()),
        other => panic!("a listing expected: {other:?}"),
    };
    let current = files
        .iter()
        .find(|f| f.name == "CURRENT")
        .expect("CURRENT listed");
    let read = |file: &str, offset: u64, bytes: u32| Message::CheckpointRead {
        checkpoint,
        file: file.into(),
        offset,
        bytes,
    };
    // A file read in one piece: the piece carries its hash (the listing had none).
    assert_eq!(current.sha256, None);
    server.handle(NodeId(2), read("CURRENT", 0, 1 << 20)).await;
    let (bytes, sha256, gone) = piece_of(sent.take());
    assert!(!gone);
    assert_eq!(bytes.len() as u64, current.bytes);
    let hash: [u8; 32] = Sha256::digest(&bytes).into();
    assert_eq!(sha256, Some(hash));
    // A piece past the end is empty; a piece above the limit is cut to it.
    server
        .handle(NodeId(2), read("CURRENT", current.bytes + 5, 10))
        .await;
    assert_eq!(data_of(sent.take()), (Vec::new(), false));
    let sst = files
        .iter()
        .find(|f| f.name.ends_with(".sst") && f.bytes > CHECKPOINT_CHUNK_BYTES_MAX as u64)
        .expect("an SST file of more than one piece");
    server.handle(NodeId(2), read(&sst.name, 0, u32::MAX)).await;
    let (first, sha256, _) = piece_of(sent.take());
    assert_eq!(first.len(), CHECKPOINT_CHUNK_BYTES_MAX);
    assert_eq!(sha256, None, "not the last piece");
    // Read on in order, the last piece carries the file's hash; read out of order (a
    // resumed pull starts in the middle), the whole file is hashed again.
    let path = data
        .join(CHECKPOINTS_DIR)
        .join(checkpoint.to_string())
        .join(&sst.name);
    let whole = std::fs::read(&path).unwrap();
    let expected: [u8; 32] = Sha256::digest(&whole).into();
    let chunk = CHECKPOINT_CHUNK_BYTES_MAX as u64;
    let mut offset = chunk;
    let mut last = None;
    while offset < sst.bytes {
        server
            .handle(NodeId(2), read(&sst.name, offset, chunk as u32))
            .await;
        last = piece_of(sent.take()).1;
        offset += chunk;
    }
    assert_eq!(last, Some(expected));
    let last_offset = (sst.bytes - 1) / chunk * chunk;
    server
        .handle(NodeId(2), read(&sst.name, last_offset, chunk as u32))
        .await;
    assert_eq!(piece_of(sent.take()).1, Some(expected), "known now");
    let unknown = CheckpointFile {
        sha256: None,
        ..sst.clone()
    };
    let (_, hash, _) = read_and_hash(&path, &unknown, last_offset, chunk as usize, None).unwrap();
    assert_eq!(hash, Some(expected));
    for (name, id) in [
        ("../../secret", checkpoint),
        ("/etc/passwd", checkpoint),
        ("CURRENT", checkpoint + 1),
    ] {
        let message = Message::CheckpointRead {
            checkpoint: id,
            file: name.into(),
            offset: 0,
            bytes: 100,
        };
        server.handle(NodeId(2), message).await;
        assert_eq!(data_of(sent.take()), (Vec::new(), true), "{name} of {id}");
    }
    // Other messages are not the server's to answer.
    server.handle(NodeId(2), Message::StatusQuery).await;
    assert!(sent.take().is_empty());
    // A second OPEN within the reuse time gets the same checkpoint; at the end every
    // checkpoint directory is gone.
    server.handle(NodeId(2), Message::CheckpointOpen).await;
    assert!(matches!(
        sent.take().as_slice(),
        [(_, Message::CheckpointFiles { checkpoint: again, .. })] if *again == checkpoint
    ));
    // Another ndb gets a checkpoint of the store as it is now, not that one.
    server.handle(NodeId(3), Message::CheckpointOpen).await;
    assert!(matches!(
        sent.take().as_slice(),
        [(NodeId(3), Message::CheckpointFiles { checkpoint: other, .. })] if *other != checkpoint
    ));
    server.expire(true).await;
    let left: Vec<_> = std::fs::read_dir(data.join(CHECKPOINTS_DIR))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
