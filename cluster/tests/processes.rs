//! End-to-end: real `foxrouter node` processes (3 ndb + 3 sync) and an in-process
//! `EntryHandle`, with kill -9 and restarts.
//!
//! The binary: `FOXROUTER_BIN` if set, else `$CARGO_TARGET_DIR/debug/foxrouter`, else
//! `<workspace>/target/debug/foxrouter` (`CARGO_BIN_EXE_*` only exists for a crate's own
//! binaries). Build it first: `cargo build -p fox-router`. Each test runs its own cluster
//! in a temp dir on free ports; processes are killed on drop, also when a test fails.
//! Tests take a global lock: several clusters at once would starve a 2-core machine.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fox_cluster::{ClusterFile, EntryError, EntryHandle, EntryOptions, Role};
use fox_sequencer::{PermanentId, Publication};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

static SERIAL: Mutex<()> = Mutex::new(());

fn foxrouter_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("FOXROUTER_BIN") {
        return PathBuf::from(bin);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let bin = target.join("debug").join("foxrouter");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p fox-router` or set FOXROUTER_BIN",
        bin.display()
    );
    bin
}

/// A base port with `count` free ports above it, below the kernel's ephemeral range
/// (32768 and up by default): the nodes' own outgoing connections take ports from that
/// range, and one could land on a listener's port before the node binds it.
fn free_base_port(count: u16) -> u16 {
    for _ in 0..200 {
        let base = 10_000 + (rand_u16() % 22_000);
        let free = (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free port range found");
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ std::process::id().rotate_left(7)) as u16
}

struct TestCluster {
    dir: tempfile::TempDir,
    file: PathBuf,
    cluster: ClusterFile,
    bin: PathBuf,
    children: BTreeMap<u32, Child>,
}

impl TestCluster {
    fn init() -> TestCluster {
        let bin = foxrouter_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        let base = free_base_port(20);
        let status = Command::new(&bin)
            .args(["cluster", "init"])
            .arg(dir.path())
            .args(["--entries", "1", "--base-port", &base.to_string()])
            .stdout(Stdio::null())
            .status()
            .expect("run cluster init");
        assert!(status.success(), "cluster init failed");
        let file = dir.path().join("cluster.toml");
        let (cluster, _) = ClusterFile::load(&file).expect("load cluster.toml");
        TestCluster {
            dir,
            file,
            cluster,
            bin,
            children: BTreeMap::new(),
        }
    }

    fn ids(&self, role: Role) -> Vec<u32> {
        self.cluster.ids(role).iter().map(|n| n.0).collect()
    }

    fn entry_id(&self) -> u32 {
        self.ids(Role::Entry)[0]
    }

    /// Starts node `id` and waits for its `LISTEN peer` line.
    fn start(&mut self, id: u32) {
        self.start_with(id, &[]);
    }

    /// Starts node `id` with extra arguments and waits for its `LISTEN peer` line.
    fn start_with(&mut self, id: u32, extra: &[&str]) {
        let log = self.dir.path().join("logs").join(format!("n{id}.err"));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut child = Command::new(&self.bin)
            .args(["node", "--cluster"])
            .arg(&self.file)
            .args(["--id", &id.to_string(), "--log", "info"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn foxrouter node");
        let stdout = child.stdout.take().expect("piped stdout");
        self.children.insert(id, child);
        let (lines, receiver) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(line) if line.starts_with("LISTEN peer ") => return,
                Ok(_) => {}
                Err(_) => panic!("node {id} did not listen; see {}", log.display()),
            }
        }
    }

    fn start_all(&mut self) {
        for id in self.ids(Role::Ndb).into_iter().chain(self.ids(Role::Sync)) {
            self.start(id);
        }
    }

    fn kill9(&mut self, id: u32) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The sync node whose log last said it became leader, if any does now.
    fn sync_leader(&self) -> Option<u32> {
        self.ids(Role::Sync).into_iter().find(|id| {
            let log = self.dir.path().join("logs").join(format!("n{id}.err"));
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let last = text
                .lines()
                .rev()
                .find(|l| l.contains("sync leadership changed"));
            last.is_some_and(|line| line.contains("leader=true"))
        })
    }

    fn is_running(&mut self, id: u32) -> bool {
        match self.children.get_mut(&id) {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    async fn entry(&self, publish_timeout_ms: u64) -> EntryHandle {
        let options = EntryOptions {
            publish_timeout_ms,
            ..EntryOptions::default()
        };
        EntryHandle::start(&self.cluster, self.entry_id(), options)
            .await
            .expect("entry starts")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let ids: Vec<u32> = self.children.keys().copied().collect();
        for id in ids {
            self.kill9(id);
        }
        if std::thread::panicking() {
            // The temp dir goes with the test: show the end of each node's log first.
            for node in &self.cluster.nodes {
                let log = self
                    .dir
                    .path()
                    .join("logs")
                    .join(format!("n{}.err", node.id));
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(15)..];
                eprintln!(
                    "--- node {} ({:?}) log tail:\n{}",
                    node.id,
                    node.role,
                    tail.join("\n")
                );
            }
        }
    }
}

fn publication(sequence: u64) -> Publication {
    Publication {
        publisher: 7,
        sequence,
        payload: format!("message {sequence}").into_bytes(),
    }
}

/// Outcomes of a run of publishes: sequence -> (result, latency).
type Outcomes = Arc<Mutex<BTreeMap<u64, (Result<PermanentId, EntryError>, Duration)>>>;

/// Publishes `sequences` in order with at most `in_flight` waiting at once.
async fn publish_range(
    entry: &EntryHandle,
    sequences: std::ops::Range<u64>,
    in_flight: usize,
    outcomes: &Outcomes,
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
) {
    let permits = Arc::new(Semaphore::new(in_flight));
    let mut tasks = JoinSet::new();
    for sequence in sequences {
        if stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        {
            break;
        }
        let permit = Arc::clone(&permits).acquire_owned().await.expect("open");
        let started = Instant::now();
        let decided = entry.publish(publication(sequence));
        let outcomes = Arc::clone(outcomes);
        tasks.spawn(async move {
            let result = decided.await;
            let latency = started.elapsed();
            outcomes
                .lock()
                .expect("lock")
                .insert(sequence, (result, latency));
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Checks the acks: unique IDs, increasing in publish order. Returns sequence -> ID.
fn check_acks(outcomes: &Outcomes) -> BTreeMap<u64, u64> {
    let outcomes = outcomes.lock().expect("lock");
    let acked: BTreeMap<u64, u64> = outcomes
        .iter()
        .filter_map(|(sequence, (result, _))| result.as_ref().ok().map(|id| (*sequence, id.0)))
        .collect();
    let mut previous = 0;
    for (sequence, id) in &acked {
        assert!(
            *id > previous,
            "ack of {sequence} has ID {id} <= {previous}"
        );
        assert!(PermanentId(*id).is_valid());
        previous = *id;
    }
    acked
}

/// Reads the permanent log from the start until every acked ID was seen; checks that the
/// log is strictly increasing, has each publication once, and holds every ack as acked.
async fn check_log(entry: &EntryHandle, acked: &BTreeMap<u64, u64>) -> BTreeMap<u64, u64> {
    let mut subscription = entry.subscribe(PermanentId(0)).await.expect("subscribe");
    let want: BTreeSet<u64> = acked.values().copied().collect();
    let mut seen = BTreeSet::new();
    let mut logged = BTreeMap::new();
    let mut previous = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !want.is_subset(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        let record = tokio::time::timeout(left, subscription.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "log incomplete: {} of {} acked seen",
                    want.intersection(&seen).count(),
                    want.len()
                )
            })
            .expect("subscription open");
        assert!(record.id.0 > previous, "log not increasing");
        previous = record.id.0;
        seen.insert(record.id.0);
        let sequence = record.publication.sequence;
        assert_eq!(record.publication, publication(sequence), "payload intact");
        let duplicate = logged.insert(sequence, record.id.0);
        assert!(
            duplicate.is_none(),
            "publication {sequence} is in the log twice"
        );
        if let Some(acked_id) = acked.get(&sequence) {
            assert_eq!(*acked_id, record.id.0, "acked ID differs from the log");
        }
    }
    logged
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Waits until one publish is acked, or panics after `within`.
async fn wait_for_an_ack(entry: &EntryHandle, sequence: u64, within: Duration) -> (u64, Duration) {
    let started = Instant::now();
    let mut sequence = sequence;
    while started.elapsed() < within {
        if let Ok(id) = entry.publish(publication(sequence)).await {
            return (id.0, started.elapsed());
        }
        sequence += 1;
    }
    panic!("no ack within {within:?}");
}

#[test]
fn publishes_get_increasing_ids_and_the_log_reads_them_back() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = TestCluster::init();
    cluster.start_all();
    runtime().block_on(async {
        let entry = cluster.entry(10_000).await;
        wait_for_an_ack(&entry, 1_000_000, Duration::from_secs(20)).await;
        let outcomes: Outcomes = Arc::default();
        let count = 3000;
        let started = Instant::now();
        publish_range(&entry, 0..count, 64, &outcomes, None).await;
        let elapsed = started.elapsed();
        let acked = check_acks(&outcomes);
        assert_eq!(acked.len() as u64, count, "every publish acked");
        let mut latencies: Vec<Duration> = outcomes.lock().expect("lock").values().map(|(_, l)| *l).collect();
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        eprintln!(
            "{count} publishes, 64 in flight: {:.0} acks/s ({elapsed:?}), latency p50 {:?} p99 {:?} max {:?}",
            count as f64 / elapsed.as_secs_f64(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
        let logged = check_log(&entry, &acked).await;
        let in_range: Vec<_> = logged.keys().filter(|s| **s < count).collect();
        assert_eq!(in_range.len() as u64, count, "exactly the acked messages");
        entry.stop().await;
    });
}

#[test]
fn kill9_of_an_ndb_and_a_sync_under_load_loses_nothing_acked() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = TestCluster::init();
    cluster.start_all();
    let ndb = cluster.ids(Role::Ndb)[0];
    let runtime = runtime();
    let entry = runtime.block_on(async {
        let entry = cluster.entry(10_000).await;
        wait_for_an_ack(&entry, 1_000_000, Duration::from_secs(20)).await;
        entry
    });
    let sync = cluster
        .sync_leader()
        .expect("a sync leader logged its election");
    let outcomes: Outcomes = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (entry, outcomes, stop) = (entry.clone(), Arc::clone(&outcomes), Arc::clone(&stop));
        runtime.spawn(async move {
            publish_range(&entry, 0..1_000_000, 32, &outcomes, Some(stop)).await
        })
    };
    std::thread::sleep(Duration::from_millis(800));
    cluster.kill9(ndb);
    cluster.kill9(sync);
    std::thread::sleep(Duration::from_millis(1000));
    cluster.start(ndb);
    cluster.start(sync);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    runtime.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(20), load).await;
        let acked = check_acks(&outcomes);
        let failed: Vec<String> = outcomes
            .lock()
            .expect("lock")
            .values()
            .filter_map(|(result, _)| result.as_ref().err().map(|e| e.to_string()))
            .collect();
        eprintln!(
            "kill -9 of ndb {ndb} and sync {sync} under load: {} acked, {} failed {:?}",
            acked.len(),
            failed.len(),
            failed.first()
        );
        assert!(
            acked.len() > 100,
            "progress with a minority down: {}",
            acked.len()
        );
        check_log(&entry, &acked).await;
        entry.stop().await;
    });
}

#[test]
fn two_ndb_down_means_no_acks_and_their_return_resumes_acks() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = TestCluster::init();
    cluster.start_all();
    let ndbs = cluster.ids(Role::Ndb);
    let runtime = runtime();
    runtime.block_on(async {
        let entry = cluster.entry(1500).await;
        wait_for_an_ack(&entry, 1_000_000, Duration::from_secs(20)).await;
        cluster.kill9(ndbs[0]);
        cluster.kill9(ndbs[1]);
        let started = Instant::now();
        let refused = entry.publish(publication(1)).await;
        assert!(
            matches!(refused, Err(EntryError::Timeout { .. })),
            "{refused:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "errors in bounded time"
        );
        // Longer than ndb's abort delay: the lone ndb has the stuck segment aborted.
        tokio::time::sleep(Duration::from_millis(3000)).await;
        cluster.start(ndbs[0]);
        cluster.start(ndbs[1]);
        let (_, took) = wait_for_an_ack(&entry, 2, Duration::from_secs(10)).await;
        eprintln!("acks resumed {took:?} after the ndb restarted");
        entry.stop().await;
    });
}

#[test]
fn kill9_of_everything_keeps_the_log_and_new_ids_are_higher() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = TestCluster::init();
    cluster.start_all();
    let runtime = runtime();
    let acked = runtime.block_on(async {
        let entry = cluster.entry(10_000).await;
        wait_for_an_ack(&entry, 1_000_000, Duration::from_secs(20)).await;
        let outcomes: Outcomes = Arc::default();
        publish_range(&entry, 0..500, 32, &outcomes, None).await;
        entry.stop().await;
        check_acks(&outcomes)
    });
    assert_eq!(acked.len(), 500);
    let all: Vec<u32> = cluster.children.keys().copied().collect();
    for id in &all {
        cluster.kill9(*id);
    }
    cluster.start_all();
    runtime.block_on(async {
        let entry = cluster.entry(10_000).await;
        check_log(&entry, &acked).await;
        let highest = acked.values().max().copied().unwrap_or(0);
        let (id, _) = wait_for_an_ack(&entry, 2_000_000, Duration::from_secs(20)).await;
        assert!(id > highest, "new ID {id} not above {highest}");
        entry.stop().await;
    });
}

#[test]
fn garbage_wrong_secret_and_strangers_are_refused_and_the_node_survives() {
    use fox_sequencer::wire::{Handshake, NONCE_BYTES};
    use fox_sequencer::NodeId;
    use std::io::{Read, Write};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = TestCluster::init();
    let ndb = cluster.ids(Role::Ndb)[0];
    cluster.start(ndb);
    let address: SocketAddr = cluster.cluster.node(ndb).expect("ndb").peer;
    let entry = NodeId(cluster.entry_id());
    let good = cluster.cluster.handshake_config(entry).expect("config");
    let mut wrong_secret = good.clone();
    wrong_secret.secret = vec![0x55; 32];
    let mut stranger = good.clone();
    stranger.node = NodeId(4242);
    stranger.members.insert(NodeId(4242));
    // The socket of a handshake the node completed with us, if it did.
    let handshake = |config: fox_sequencer::wire::HandshakeConfig| -> Option<std::net::TcpStream> {
        let mut socket = std::net::TcpStream::connect(address).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let (mut state, hello) =
            Handshake::initiate(config, NodeId(ndb), [9; NONCE_BYTES]).expect("initiate");
        socket.write_all(&hello).expect("send hello");
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 256];
        for _ in 0..16 {
            let read = match socket.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(read) => read,
            };
            buffer.extend_from_slice(&chunk[..read]);
            let Ok(step) = state.receive(&buffer) else {
                return None;
            };
            buffer.drain(..step.used);
            if socket.write_all(&step.send).is_err() {
                return None;
            }
            state = step.state;
            if state.established().is_some() {
                return Some(socket);
            }
        }
        None
    };
    let try_handshake = |config| handshake(config).is_some();
    for _ in 0..20 {
        let mut socket = std::net::TcpStream::connect(address).expect("connect");
        let _ = socket.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\x13garbage");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest);
        assert!(rest.is_empty(), "the node answered garbage");
    }
    assert!(!try_handshake(wrong_secret), "a wrong secret was accepted");
    assert!(!try_handshake(stranger), "an unknown node was accepted");
    assert!(cluster.is_running(ndb), "the node died");
    assert!(try_handshake(good.clone()), "the right secret was refused");
    // After a completed handshake: a frame over the size cap (refused on its header) and a
    // frame whose payload is not a message each close that link, and only that link.
    let oversized = u32::MAX.to_be_bytes().to_vec();
    let mut garbage = 7u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xff, 0xfe, 0xfd, 0x00, 0x13, 0x37, 0x42]);
    for bad in [oversized, garbage] {
        let mut socket = handshake(good.clone()).expect("handshake");
        socket.write_all(&bad).expect("send the bad frame");
        // Heartbeats may come first; the link then ends (EOF or reset).
        let deadline = Instant::now() + Duration::from_secs(4);
        let mut chunk = [0u8; 4096];
        loop {
            assert!(Instant::now() < deadline, "the link was not closed");
            match socket.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    assert!(cluster.is_running(ndb), "the node died of a bad frame");
    assert!(try_handshake(good), "the node stopped accepting links");
    let log = std::fs::read_to_string(cluster.dir.path().join("logs").join(format!("n{ndb}.err")))
        .expect("log");
    assert_eq!(
        log.matches("bad frame from a cluster node; closing")
            .count(),
        2,
        "{log}"
    );
    let refusals = log.matches("refused a node connection").count();
    assert!(
        (1..=4).contains(&refusals),
        "refusals logged {refusals} times:\n{log}"
    );
}

#[test]
fn an_entry_node_serves_clients_and_no_fsync_is_logged_loudly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = TestCluster::init();
    let entry = cluster.entry_id();
    let mut child = Command::new(&cluster.bin)
        .args(["node", "--cluster"])
        .arg(&cluster.file)
        .args(["--id", &entry.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run node");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_sender, lines) = std_mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_sender.send(line).is_err() {
                return;
            }
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    let first = first.expect("the entry prints its listeners");
    assert!(
        first.starts_with("LISTEN "),
        "an entry runs the router's gates: {first}"
    );
    let ndb = cluster.ids(Role::Ndb)[0];
    cluster.start_with(ndb, &["--no-fsync"]);
    let log = std::fs::read_to_string(cluster.dir.path().join("logs").join(format!("n{ndb}.err")))
        .expect("log");
    assert!(log.contains("WARN") && log.contains("--no-fsync"), "{log}");
}
