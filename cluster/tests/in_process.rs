//! The whole cluster in one process: 3 ndb + 3 sync via `start_node`, one `EntryHandle`.
//! Faster than the process tests and needs no binary; clean stops and restarts from disk.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use fox_cluster::{
    init, start_node, ClusterFile, EntryHandle, EntryOptions, InitOptions, NodeOptions, Role,
    RunningNode,
};
use fox_sequencer::{PermanentId, Publication};

/// 16 free ports in a row, below the kernel's ephemeral range (32768 and up by default):
/// the nodes' own outgoing connections take ports from that range, and one could land on a
/// node's port while it restarts.
fn free_base_port() -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id();
    for attempt in 0..200u32 {
        let base = 10_000 + (seed.wrapping_add(attempt.wrapping_mul(7_919)) % 22_000) as u16;
        if (0..16).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free ports");
}

fn publication(sequence: u64) -> Publication {
    Publication {
        publisher: 3,
        sequence,
        payload: sequence.to_be_bytes().to_vec(),
    }
}

/// `cluster init` of 3 ndb, 3 sync and one entry in `dir`: the file, the cluster, the entry.
fn init_cluster(dir: &std::path::Path) -> (std::path::PathBuf, ClusterFile, u32) {
    let options = InitOptions {
        entries: 1,
        base_port: free_base_port(),
        ..InitOptions::default()
    };
    let report = init(dir, &options).expect("init");
    let entry_id = report.cluster.ids(Role::Entry)[0].0;
    (report.cluster_file, report.cluster, entry_id)
}

async fn start_all(
    file: &std::path::Path,
    cluster: &ClusterFile,
    options: impl Fn() -> NodeOptions,
) -> Vec<RunningNode> {
    let mut nodes = Vec::new();
    for id in cluster
        .ids(Role::Ndb)
        .iter()
        .chain(&cluster.ids(Role::Sync))
    {
        let node = start_node(file, id.0, options())
            .await
            .expect("node starts");
        nodes.push(node);
    }
    nodes
}

/// Every ndb and sync node started with `options`, then entry `entry_id` with `entry`.
async fn start_with_entry(
    file: &std::path::Path,
    cluster: &ClusterFile,
    entry_id: u32,
    options: impl Fn() -> NodeOptions,
    entry: EntryOptions,
) -> (Vec<RunningNode>, EntryHandle) {
    let nodes = start_all(file, cluster, options).await;
    let entry = EntryHandle::start(cluster, entry_id, entry)
        .await
        .expect("entry");
    (nodes, entry)
}

async fn publish_all(entry: &EntryHandle, sequences: std::ops::Range<u64>) -> BTreeMap<u64, u64> {
    let mut futures = Vec::new();
    for sequence in sequences {
        futures.push((sequence, entry.publish(publication(sequence))));
    }
    let mut acked = BTreeMap::new();
    for (sequence, future) in futures {
        let id = future.await.expect("acked");
        acked.insert(sequence, id.0);
    }
    acked
}

/// Stops the entry, then every node, cleanly.
async fn stop_all(entry: EntryHandle, nodes: Vec<RunningNode>) {
    entry.stop().await;
    for node in nodes {
        node.stop().await.expect("clean stop");
    }
}

/// The log from its start through `entry` holds exactly `acked` (sequence -> ID), in order.
async fn read_all_back(entry: &EntryHandle, acked: &BTreeMap<u64, u64>) {
    let mut subscription = entry.subscribe(PermanentId(0)).await.expect("subscribe");
    for (sequence, id) in acked {
        let record = tokio::time::timeout(Duration::from_secs(20), subscription.next())
            .await
            .expect("log in time")
            .expect("open");
        assert_eq!((record.publication.sequence, record.id.0), (*sequence, *id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_in_one_process_orders_and_survives_a_full_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, cluster, entry_id) = init_cluster(dir.path());
    let (nodes, entry) = start_with_entry(
        &file,
        &cluster,
        entry_id,
        NodeOptions::default,
        EntryOptions::default(),
    )
    .await;
    let acked = publish_all(&entry, 0..400).await;
    let ids: Vec<u64> = acked.values().copied().collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "IDs increase in publish order"
    );
    stop_all(entry, nodes).await;

    let (nodes, entry) = start_with_entry(
        &file,
        &cluster,
        entry_id,
        NodeOptions::default,
        EntryOptions::default(),
    )
    .await;
    read_all_back(&entry, &acked).await;
    let later = publish_all(&entry, 400..410).await;
    let highest = ids.last().copied().unwrap_or(0);
    assert!(
        later.values().all(|id| *id > highest),
        "new IDs above the old"
    );
    stop_all(entry, nodes).await;
}

/// How an ndb's status reads now.
fn status_of(node: &RunningNode) -> fox_cluster::NodeStatus {
    *node.status.borrow()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_ndb_pulls_a_peers_checkpoint_and_then_holds_the_whole_log() {
    catch_up_from_a_checkpoint(true).await;
}

/// An ndb stopped while the others went on (more than `checkpoint_after_resolutions`
/// behind) pulls a checkpoint too, and keeps the temporary segment it held (it answered
/// STORED for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ndb_far_behind_pulls_a_checkpoint_and_keeps_its_temporary_segments() {
    catch_up_from_a_checkpoint(false).await;
}

async fn catch_up_from_a_checkpoint(wipe: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, cluster, entry_id) = init_cluster(dir.path());
    let node_options = || NodeOptions {
        catch_up: fox_cluster::CatchUpOptions {
            checkpoint_after_resolutions: 0,
            ..fox_cluster::CatchUpOptions::default()
        },
        ..NodeOptions::default()
    };
    let mut nodes = start_all(&file, &cluster, node_options).await;
    let entry = EntryHandle::start(&cluster, entry_id, EntryOptions::default())
        .await
        .expect("entry");
    let mut acked = publish_all(&entry, 0..1500).await;
    // The first ndb stops (and loses its disk, or not); the others go on.
    let behind = nodes.remove(0);
    let behind_id = behind.id;
    behind.stop().await.expect("clean stop");
    let data = cluster
        .node(behind_id.0)
        .and_then(|n| n.data.clone())
        .expect("data");
    if wipe {
        std::fs::remove_dir_all(&data).expect("wipe");
    } else {
        hold_a_temporary_segment(&data, fox_sequencer::NodeId(entry_id));
    }
    acked.extend(publish_all(&entry, 1500..2000).await);
    let last_id = acked.values().copied().max().unwrap_or(0);
    let back = start_node(&file, behind_id.0, node_options())
        .await
        .expect("restarts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut temp_seen = false;
    loop {
        let status = status_of(&back);
        // The held segment is there until its owner, which never heard of it, lets the
        // ndb have it aborted (after 2 s).
        temp_seen |= status.catch_ups == 1 && status.temp_segments > 0;
        if status.catch_ups == 1 && status.last_id >= last_id && !status.catching_up {
            assert!(status.catch_up_bytes_total > 0);
            assert_eq!(status.catch_up_bytes_done, status.catch_up_bytes_total);
            assert_eq!(status.log_records, acked.len() as u64);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "caught up in time: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(wipe || temp_seen, "the temporary segment it held was kept");
    // Publishing goes on with it, and with the other ndb nodes gone the entry reads the
    // whole log from it alone.
    acked.extend(publish_all(&entry, 2000..2100).await);
    // A quorum of the others may have stored these without it: it fetches them from them
    // before they stop (else the read back below waits for segments nobody serves).
    holds_up_to(&back, &acked).await;
    let others: Vec<RunningNode> = {
        let (ndbs, syncs): (Vec<_>, Vec<_>) = nodes.into_iter().partition(|n| n.role == Role::Ndb);
        for ndb in ndbs {
            ndb.stop().await.expect("clean stop");
        }
        syncs
    };
    read_all_back(&entry, &acked).await;
    assert!(
        !data.join(fox_cluster::checkpoint::STAGING_DIR).exists(),
        "nothing staged is left"
    );
    entry.stop().await;
    back.stop().await.expect("clean stop");
    for node in others {
        node.stop().await.expect("clean stop");
    }
}

/// Writes a temporary segment into a stopped ndb's store, as if an entry had sent it.
fn hold_a_temporary_segment(data: &std::path::Path, owner: fox_sequencer::NodeId) {
    let store = fox_storage::NodeStore::open(
        data,
        fox_cluster::disk::NDB_FAMILIES,
        fox_storage::SyncMode::Fsync,
    )
    .expect("store");
    let held = fox_sequencer::NdbWrite::Temp {
        segment: fox_sequencer::SegmentId::new_v7(1_700_000_000_000, [7; 10]),
        owner,
        messages: vec![publication(999_999)],
    };
    let batch = fox_cluster::disk::ndb_batch(&[held]).expect("batch");
    store.write(&batch, true).expect("written");
}

/// A publish handed over with `publish_first` goes ahead of the thousands that wait for
/// the entry (what an entry's lease beat needs under a flood of client publishes), and the
/// publishes behind it keep their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_first_goes_ahead_of_a_long_queue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, cluster, entry_id) = init_cluster(dir.path());
    let (nodes, entry) = start_with_entry(
        &file,
        &cluster,
        entry_id,
        NodeOptions::default,
        EntryOptions::default(),
    )
    .await;
    publish_all(&entry, 0..10).await;
    const QUEUED: u64 = 30_000;
    let mut futures = Vec::new();
    for sequence in 10..10 + QUEUED {
        futures.push(entry.publish(publication(sequence)));
    }
    let beat = entry.publish_first(Publication {
        publisher: u64::MAX,
        sequence: 0,
        payload: b"beat".to_vec(),
    });
    let beat = beat.await.expect("the beat is acked").0;
    let mut ids = Vec::new();
    for future in futures {
        ids.push(future.await.expect("acked").0);
    }
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "the queue keeps its order"
    );
    let ahead_of = ids.iter().filter(|id| **id > beat).count();
    // The entry holds at most 9 segments of 1,024 messages; everything queued behind them
    // is ordered after the beat.
    assert!(
        ahead_of as u64 >= QUEUED - 9 * 1024,
        "the beat went ahead of {ahead_of} of {QUEUED} queued publishes"
    );
    stop_all(entry, nodes).await;
}

/// ndb nodes that keep only a few KiB of the log in memory: a subscriber from the log's
/// start reads it from their disks, in order and whole, also after they restart (which
/// reads back only the tail), and new publishes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndb_nodes_serve_the_log_from_disk_beyond_their_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, cluster, entry_id) = init_cluster(dir.path());
    let small = || NodeOptions {
        log_cache_bytes: Some(4 << 10),
        ..NodeOptions::default()
    };
    let (nodes, entry) =
        start_with_entry(&file, &cluster, entry_id, small, EntryOptions::default()).await;
    let mut acked = publish_all(&entry, 0..3_000).await;
    // Every ndb applies every record (memory holds a few of them).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let held: Vec<u64> = nodes
            .iter()
            .filter(|node| node.role == Role::Ndb)
            .map(|node| status_of(node).log_records)
            .collect();
        if held.iter().all(|n| *n == 3_000) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ndb nodes hold {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    read_all_back(&entry, &acked).await;
    stop_all(entry, nodes).await;
    let (nodes, entry) =
        start_with_entry(&file, &cluster, entry_id, small, EntryOptions::default()).await;
    acked.extend(publish_all(&entry, 3_000..3_100).await);
    read_all_back(&entry, &acked).await;
    stop_all(entry, nodes).await;
}

/// A flood of large publishes is refused beyond `queue_bytes_max` (`Overloaded`, nothing
/// sent) instead of filling the entry's memory; what was taken is ordered, and once the
/// queue drains publishes go through again. A publication larger than a segment is refused
/// at once and does not hold the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_publishes_is_refused_beyond_the_queue_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, cluster, entry_id) = init_cluster(dir.path());
    let nodes = start_all(&file, &cluster, NodeOptions::default).await;
    let options = EntryOptions {
        queue_bytes_max: 1 << 20,
        ..EntryOptions::default()
    };
    let entry = EntryHandle::start(&cluster, entry_id, options)
        .await
        .expect("entry");
    let large = |sequence: u64| Publication {
        publisher: 3,
        sequence,
        payload: vec![7; 64 << 10],
    };
    let futures: Vec<_> = (0..400)
        .map(|sequence| entry.publish(large(sequence)))
        .collect();
    let (mut acked, mut refused) = (Vec::new(), 0);
    for future in futures {
        match future.await {
            Ok(id) => acked.push(id.0),
            Err(fox_cluster::EntryError::Overloaded { .. }) => refused += 1,
            Err(error) => panic!("unexpected {error}"),
        }
    }
    assert!(refused > 0, "26 MB offered at once against a 1 MiB queue");
    assert!(
        acked.len() >= 8,
        "what was taken is ordered: {}",
        acked.len()
    );
    assert!(acked.windows(2).all(|pair| pair[0] < pair[1]));
    let too_large = Publication {
        publisher: 3,
        sequence: 1_000,
        payload: vec![1; 9 << 20],
    };
    assert!(matches!(
        entry.publish(too_large).await,
        Err(fox_cluster::EntryError::TooLarge { .. })
    ));
    publish_all(&entry, 2_000..2_010).await;
    stop_all(entry, nodes).await;
}

/// Sync nodes that keep only the two newest resolutions in memory: an ndb that was
/// stopped while hundreds of segments were decided pulls the resolutions it missed,
/// which the sync nodes read from their disks, and then holds the whole log; a sync node
/// restarted with so small a memory decides nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_nodes_answer_old_resolutions_from_disk_beyond_their_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, cluster, entry_id) = init_cluster(dir.path());
    let small = || NodeOptions {
        resolution_cache: Some(2),
        ..NodeOptions::default()
    };
    let (mut nodes, entry) =
        start_with_entry(&file, &cluster, entry_id, small, EntryOptions::default()).await;
    // One publish at a time: each is a segment (and a resolution) of its own.
    let mut acked = BTreeMap::new();
    for sequence in 0..50 {
        acked.extend(publish_all(&entry, sequence..sequence + 1).await);
    }
    let behind = nodes.remove(0);
    assert_eq!(behind.role, Role::Ndb);
    let behind_id = behind.id;
    behind.stop().await.expect("clean stop");
    for sequence in 50..300 {
        acked.extend(publish_all(&entry, sequence..sequence + 1).await);
    }
    // A sync node restarts (its memory: the two newest resolutions, read back).
    let sync_at = nodes
        .iter()
        .position(|node| node.role == Role::Sync)
        .expect("a sync node");
    let sync = nodes.remove(sync_at);
    let sync_id = sync.id;
    sync.stop().await.expect("clean stop");
    nodes.push(
        start_node(&file, sync_id.0, small())
            .await
            .expect("restarts"),
    );
    let resolutions = nodes
        .iter()
        .filter(|node| node.role == Role::Sync)
        .map(|node| status_of(node).resolutions)
        .max()
        .unwrap_or(0);
    assert!(resolutions >= 250, "{resolutions} resolutions");
    let back = start_node(&file, behind_id.0, NodeOptions::default())
        .await
        .expect("restarts");
    holds_up_to(&back, &acked).await;
    assert_eq!(
        status_of(&back).catch_ups,
        0,
        "it pulled resolutions, not a checkpoint"
    );
    acked.extend(publish_all(&entry, 300..310).await);
    // A quorum of ndb may have stored these without it: it fetches them before the others
    // stop.
    holds_up_to(&back, &acked).await;
    for node in nodes.iter().filter(|node| node.role == Role::Sync) {
        let status = status_of(node);
        assert!(status.resolutions_cached <= 2, "{status:?}");
    }
    // With the other ndb nodes gone, the entry reads the whole log from it alone: every
    // acknowledged publish, once each, in order.
    let (ndbs, syncs): (Vec<_>, Vec<_>) = nodes.into_iter().partition(|n| n.role == Role::Ndb);
    for ndb in ndbs {
        ndb.stop().await.expect("clean stop");
    }
    read_all_back(&entry, &acked).await;
    // Lease beats go on deciding segments: the counts meet between two of them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let counts: Vec<u64> = syncs.iter().map(|n| status_of(n).resolutions).collect();
        if counts.iter().all(|n| *n == counts[0]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "every sync node holds one log: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    entry.stop().await;
    back.stop().await.expect("clean stop");
    for node in syncs {
        node.stop().await.expect("clean stop");
    }
}

/// Waits until ndb `node` holds the log through the last of `acked`.
async fn holds_up_to(node: &RunningNode, acked: &BTreeMap<u64, u64>) {
    let last_id = acked.values().copied().max().unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = status_of(node);
        if status.last_id >= last_id {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ndb caught up in time: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
