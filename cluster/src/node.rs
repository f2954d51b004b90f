//! `foxrouter node`: runs one ndb or sync node of `cluster.toml` until SIGTERM / ctrl-c.
//!
//! Start: load the file, open the store, rebuild the state machine from it (ndb from its
//! temp segments and applied resolutions, sync from its Raft log and hard state), bind the
//! peer port, dial the other ndb and sync nodes, then drive the state machine.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use fox_sequencer::{Ndb, NdbConfig, NodeId, Sync, SyncConfig, SyncWrite};
use fox_storage::{NodeStore, SyncMode};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::checkpoint::{CatchUp, CatchUpOptions, Puller};
use crate::clock::Clock;
use crate::config::{ClusterFile, NodeSpec, Role};
use crate::disk;
use crate::driver::{Driver, NodeStatus, SHUTDOWN_GRACE};
use crate::error::{blocking, ClusterError};
use crate::mesh::{Mesh, MeshConfig, MeshLimits};

/// Messages from peers waiting for the node's task at most.
pub const INBOX_MESSAGES_MAX: usize = 65_536;

/// Raft tick of real sync nodes, in ms: 10 ticks (100-150 ms) without a leader start an
/// election. The sequencer's default (2 ms) suits its simulator, not processes sharing a
/// loaded machine, where a 20 ms election timeout makes leaders churn.
pub const SYNC_TICK_MS: u64 = 10;
/// An ndb asks sync to abort a segment once its owner has not named it for this long, in
/// ms: its entry died (usually its lease expiry, 1.5 s after its last beat, has the
/// segment aborted first) or restarted. A live entry names its segments every 20 ms, also
/// through a leader failover; the margin covers an entry process stalled on a loaded
/// machine, whose segments would otherwise be aborted while it lives.
pub const NDB_ABORT_AFTER_MS: u64 = 2000;

/// How to run a node.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Do not wait for fsync (benchmarks only: a power loss can lose acknowledged messages).
    pub no_fsync: bool,
    /// Print `LISTEN peer <addr>` on stdout once the peer port is bound.
    pub announce_listen: bool,
    /// Mesh limits and timings.
    pub mesh: MeshLimits,
    /// Ndb: when and how fast it catches up from a peer's checkpoint at start.
    pub catch_up: CatchUpOptions,
    /// Ndb: the permanent log's newest records kept in memory, in bytes at most (`None`:
    /// `fox_sequencer::config::LOG_CACHE_BYTES_MAX_DEFAULT`); older ones are read from
    /// disk when a peer asks.
    pub log_cache_bytes: Option<usize>,
    /// Sync: the newest resolutions kept in memory, at most (`None`:
    /// `fox_sequencer::config::RESOLUTION_CACHE_MAX_DEFAULT`); older ones are read from
    /// disk when a peer asks.
    pub resolution_cache: Option<usize>,
}

/// A started ndb or sync node.
#[derive(Debug)]
pub struct RunningNode {
    /// Its ID.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// The bound peer address.
    pub peer_addr: SocketAddr,
    /// The mesh (for its counters and links).
    pub mesh: Mesh,
    /// What the node reports, updated after every turn of its driver.
    pub status: watch::Receiver<NodeStatus>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), ClusterError>>,
}

impl RunningNode {
    /// Stops the node cleanly: its task finishes the write in progress, links close.
    pub async fn stop(self) -> Result<(), ClusterError> {
        let _ = self.shutdown.send(true);
        match tokio::time::timeout(SHUTDOWN_GRACE, self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => Err(ClusterError::Task(error.to_string())),
            Err(_) => Err(ClusterError::Task("did not stop in time".into())),
        }
    }
}

/// Runs node `id` of `cluster_file` until SIGTERM or ctrl-c (a clean stop, `Ok`) or a
/// fatal error. Entries are refused: the router runs them ([`EntryHandle`](crate::EntryHandle)).
pub async fn run_node(
    cluster_file: &Path,
    id: u32,
    options: NodeOptions,
) -> Result<(), ClusterError> {
    let node = start_node(cluster_file, id, options).await?;
    run_until_signal(node).await
}

/// Runs a started node until SIGTERM or ctrl-c (a clean stop, `Ok`) or a fatal error.
pub async fn run_until_signal(mut node: RunningNode) -> Result<(), ClusterError> {
    let stopped_by_signal = tokio::select! {
        _ = wait_for_signal() => true,
        ended = &mut node.task => {
            return match ended {
                Ok(result) => result,
                Err(error) => Err(ClusterError::Task(error.to_string())),
            };
        }
    };
    tracing::info!(signal = stopped_by_signal, "stopping");
    node.stop().await
}

/// Starts node `id` of `cluster_file` (ndb or sync) and returns once its peer port is bound.
pub async fn start_node(
    cluster_file: &Path,
    id: u32,
    options: NodeOptions,
) -> Result<RunningNode, ClusterError> {
    let (cluster, warnings) = ClusterFile::load(cluster_file)?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let spec = cluster
        .node(id)
        .ok_or(ClusterError::UnknownNode(id))?
        .clone();
    if spec.role == Role::Entry {
        return Err(ClusterError::WrongRole {
            id,
            role: spec.role,
            hint: "entry nodes run inside the router (fox_cluster::EntryHandle), not `node`",
        });
    }
    let sync_mode = if options.no_fsync {
        tracing::warn!("--no-fsync: STORED and Raft votes go out before the disk has them; a power loss can lose acknowledged messages. Benchmarks only.");
        SyncMode::None
    } else {
        SyncMode::Fsync
    };
    let store = open_store(&spec, sync_mode).await?;
    let (inbox_sender, inbox) = mpsc::channel(INBOX_MESSAGES_MAX);
    let (shutdown, shutdown_receiver) = watch::channel(false);
    let mesh_config = MeshConfig {
        handshake: cluster.handshake_config(spec.node_id())?,
        listen: Some(spec.peer),
        dial: dial_targets(&cluster, spec.node_id()),
        limits: options.mesh.clone(),
    };
    let clock = Clock::new();
    // A sync node's state is rebuilt before its links come up; an ndb's after it has
    // asked its peers whether it is far behind (and pulled a checkpoint if so).
    let sync_core = match spec.role {
        Role::Ndb => None,
        _ => {
            let caches = (None, options.resolution_cache);
            Some(spawn_core(&cluster, &spec, Arc::clone(&store), clock, caches).await?)
        }
    };
    let mesh = Mesh::start(mesh_config, inbox_sender, shutdown_receiver.clone()).await?;
    let peer_addr = mesh.local_addr().unwrap_or(spec.peer);
    if options.announce_listen {
        println!("LISTEN peer {peer_addr}");
    }
    tracing::info!(node = %spec.node_id(), role = spec.role.name(), %peer_addr, "node running");
    let (status, status_receiver) = watch::channel(NodeStatus::default());
    let driver = Driver {
        store,
        mesh: mesh.clone(),
        inbox,
        shutdown: shutdown_receiver,
        clock,
        log_last_index: sync_core.as_ref().map_or(0, Core::log_last_index),
        status,
        checkpoints: None,
        reading: Default::default(),
    };
    let (node_id, role) = (spec.node_id(), spec.role);
    let task = match sync_core {
        Some(core) => tokio::spawn(async move {
            match core {
                Core::Ndb(ndb) => driver.run(*ndb).await,
                Core::Sync(sync, _) => driver.run(*sync).await,
            }
        }),
        None => {
            let ndb = NdbStart {
                cluster,
                spec,
                sync_mode,
                catch_up: options.catch_up.clone(),
                log_cache_bytes: options.log_cache_bytes,
            };
            tokio::spawn(async move {
                let Some((driver, core)) = ndb.prepare(driver).await? else {
                    return Ok(());
                };
                driver.run(core).await
            })
        }
    };
    Ok(RunningNode {
        id: node_id,
        role,
        peer_addr,
        mesh,
        status: status_receiver,
        shutdown,
        task,
    })
}

/// What an ndb's task needs before its state machine runs.
struct NdbStart {
    cluster: ClusterFile,
    spec: NodeSpec,
    sync_mode: SyncMode,
    catch_up: CatchUpOptions,
    log_cache_bytes: Option<usize>,
}

impl NdbStart {
    /// Catches up from a peer's checkpoint if it is far behind, starts serving
    /// checkpoints, and rebuilds the state machine. `None`: stopped meanwhile.
    async fn prepare(self, driver: Driver) -> Result<Option<(Driver, Ndb)>, ClusterError> {
        let Driver {
            store,
            mesh,
            mut inbox,
            shutdown,
            clock,
            log_last_index,
            status,
            checkpoints: _,
            reading,
        } = driver;
        let (applied_index, last_id) = disk::ndb_position(&store)?;
        let me = self.spec.node_id();
        let peers = self
            .cluster
            .nodes
            .iter()
            .filter(|node| node.role == Role::Ndb && node.node_id() != me)
            .map(|node| node.node_id())
            .collect();
        let puller = Puller {
            mesh: &mesh,
            inbox: &mut inbox,
            shutdown: shutdown.clone(),
            status: &status,
            peers,
            data: store.path().to_path_buf(),
            sync_mode: self.sync_mode,
            options: self.catch_up,
            own: NodeStatus {
                applied_index,
                last_id,
                ..NodeStatus::default()
            }
            .report(),
            dropped: 0,
        };
        // Only this task holds the store: the puller may close and replace it.
        let store = match puller.run(store).await? {
            CatchUp::Run(store) => store,
            CatchUp::Stopped => return Ok(None),
        };
        let server =
            crate::checkpoint::spawn_server(Arc::clone(&store), mesh.clone(), shutdown.clone())
                .await?;
        let caches = (self.log_cache_bytes, None);
        let core = spawn_core(&self.cluster, &self.spec, Arc::clone(&store), clock, caches).await?;
        let Core::Ndb(ndb) = core else {
            return Err(ClusterError::Task("an ndb rebuilt as sync".into()));
        };
        let driver = Driver {
            store,
            mesh,
            inbox,
            shutdown,
            clock,
            log_last_index,
            status,
            checkpoints: Some(server),
            reading,
        };
        Ok(Some((driver, *ndb)))
    }
}

/// Every other ndb and sync node: entries dial us, we answer on their links.
fn dial_targets(cluster: &ClusterFile, me: NodeId) -> Vec<(NodeId, SocketAddr)> {
    let others = cluster.nodes.iter().filter(|node| node.node_id() != me);
    others
        .filter(|node| node.role != Role::Entry)
        .map(|node| (node.node_id(), node.peer))
        .collect()
}

async fn open_store(spec: &NodeSpec, sync_mode: SyncMode) -> Result<Arc<NodeStore>, ClusterError> {
    let data = spec
        .data
        .clone()
        .ok_or(ClusterError::NoDataDirectory { id: spec.id })?;
    std::fs::create_dir_all(&data).map_err(|source| ClusterError::DataDirectory {
        path: data.clone(),
        source,
    })?;
    let families = match spec.role {
        Role::Ndb => disk::NDB_FAMILIES,
        _ => disk::SYNC_FAMILIES,
    };
    let ndb = spec.role == Role::Ndb;
    let store = blocking(move || {
        // A checkpoint swap that a crash cut short is finished before the store opens.
        if ndb && crate::checkpoint::finish_swap(&data)? {
            tracing::info!("finished swapping in a pulled checkpoint");
        }
        Ok(NodeStore::open(&data, families, sync_mode)?)
    })
    .await?;
    Ok(Arc::new(store))
}

enum Core {
    Ndb(Box<Ndb>),
    /// The state machine and the last Raft index on disk.
    Sync(Box<Sync>, u64),
}

impl Core {
    fn log_last_index(&self) -> u64 {
        match self {
            Core::Ndb(_) => 0,
            Core::Sync(_, last) => *last,
        }
    }
}

/// Rebuilds the state machine from the store (on a blocking thread: it reads what memory
/// will hold). `caches`: an ndb's log cache in bytes, a sync node's resolution cache
/// (`None`: the defaults).
async fn spawn_core(
    cluster: &ClusterFile,
    spec: &NodeSpec,
    store: Arc<NodeStore>,
    clock: Clock,
    caches: (Option<usize>, Option<usize>),
) -> Result<Core, ClusterError> {
    let (log_cache_bytes, resolution_cache) = caches;
    let membership = cluster.membership();
    let (id, role) = (spec.node_id(), spec.role);
    let snapshot_interval_entries = spec.snapshot_interval_entries;
    let seed: u64 = rand::thread_rng().gen();
    blocking(move || match role {
        Role::Ndb => {
            let mut config = NdbConfig::new(id, membership);
            config.abort_after_ms = NDB_ABORT_AFTER_MS;
            if let Some(bytes) = log_cache_bytes {
                config.log_cache_bytes_max = bytes;
            }
            let (tail_records, tail_bytes) =
                (config.log_cache_records_max, config.log_cache_bytes_max);
            let keep = config.decided_segments_max;
            let (base, records) = disk::ndb_records(&store, tail_records, tail_bytes, keep)?;
            let ndb = Ndb::recover_from(config, base, &records, clock.now_ms());
            drop(records);
            tracing::info!(
                applied_index = ndb.applied_index(),
                log = ndb.log_records(),
                in_memory = ndb.log_cache().1.count(),
                temp = ndb.temp_segments().len(),
                "ndb state rebuilt"
            );
            Ok(Core::Ndb(Box::new(ndb)))
        }
        _ => {
            // Raft IDs are node IDs plus one (raft-rs reserves 0), as in `fox_sequencer::sync`.
            let voters: Vec<u64> = membership
                .syncs
                .iter()
                .map(|n| u64::from(n.0) + 1)
                .collect();
            let mut config = SyncConfig::new(id, membership, seed);
            config.tick_ms = SYNC_TICK_MS;
            if let Some(interval) = snapshot_interval_entries {
                config.snapshot_interval_entries = interval;
            }
            if let Some(cache) = resolution_cache {
                config.resolution_cache_max = cache.max(1);
            }
            let disk::SyncRecovery { older, records } =
                disk::sync_records(&store, &voters, config.resolution_cache_max)?;
            let log_last_index = records
                .iter()
                .filter_map(|record| match record {
                    SyncWrite::Entries(entries) => entries.last().map(|e| e.index),
                    SyncWrite::Snapshot { snapshot, .. } => Some(snapshot.raft_index),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            let sync = Sync::recover_with(config, &older, &records, clock.now_ms());
            drop(older);
            let sync = sync.map_err(|error| ClusterError::Corrupt {
                what: "sync Raft log",
                reason: error.to_string(),
            })?;
            let raft = sync.raft_status();
            tracing::info!(
                resolutions = sync.resolution_count(),
                in_memory = sync.resolutions_cached(),
                started_from_snapshot = raft.started_from_snapshot,
                commit_index = raft.commit_index,
                "sync state rebuilt"
            );
            Ok(Core::Sync(Box::new(sync), log_last_index))
        }
    })
    .await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
