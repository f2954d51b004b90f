//! The serving side: every ndb hands out checkpoints of its store to catching-up peers.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fox_sequencer::config::wire_limits::{CHECKPOINT_CHUNK_BYTES_MAX, CHECKPOINT_FILES_MAX};
use fox_sequencer::{CheckpointFile, Message, NodeId};
use fox_storage::NodeStore;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use super::{
    blocking, hash_file, io_error, stopped, valid_file_name, CHECKPOINTS_DIR, SERVED_IDLE,
    SERVED_MAX, SERVED_REUSE, SERVER_QUEUE_MAX,
};
use crate::disk;
use crate::driver::Outbox;
use crate::error::ClusterError;
use crate::mesh::Mesh;

struct Served {
    id: u64,
    dir: PathBuf,
    files: Vec<CheckpointFile>,
    /// Files whose hash is not known yet, hashed as their pieces are read in order.
    hashing: HashMap<String, Hashing>,
    applied_index: u64,
    last_id: u64,
    created: Instant,
    used: Instant,
    /// The ndb nodes it was made for or handed to: only they get it again (a resumed
    /// pull); another puller gets a checkpoint of the store as it is now.
    pullers: Vec<NodeId>,
}

impl Served {
    fn listing(&self) -> Message {
        Message::CheckpointFiles {
            checkpoint: self.id,
            applied_index: self.applied_index,
            last_id: self.last_id,
            files: self.files.clone(),
        }
    }
}

/// SHA-256 of SST files by name and size, learnt while serving them: they never change
/// once written, so a later listing names their hashes at once.
pub(super) type HashCache = Arc<Mutex<HashMap<String, (u64, [u8; 32])>>>;

pub(super) struct Server<O: Outbox = Mesh> {
    store: Arc<NodeStore>,
    mesh: O,
    root: PathBuf,
    served: Vec<Served>,
    next_id: u64,
    hashes: HashCache,
}

/// Starts the task that serves checkpoints of `store` to catching-up peers; returns where
/// the driver forwards their CHECKPOINT_OPEN and CHECKPOINT_READ. Checkpoints left by an
/// earlier run are deleted first.
pub async fn spawn_server<O: Outbox>(
    store: Arc<NodeStore>,
    mesh: O,
    mut shutdown: watch::Receiver<bool>,
) -> Result<mpsc::Sender<(NodeId, Message)>, ClusterError> {
    let mut server = Server::new(store, mesh).await?;
    let (sender, mut requests) = mpsc::channel(SERVER_QUEUE_MAX);
    tokio::spawn(async move {
        let mut sweep = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                () = stopped(&mut shutdown) => break,
                request = requests.recv() => match request {
                    Some((from, message)) => server.handle(from, message).await,
                    None => break,
                },
                _ = sweep.tick() => server.expire(false).await,
            }
        }
        server.expire(true).await;
    });
    Ok(sender)
}

impl<O: Outbox> Server<O> {
    /// A server of `store`'s checkpoints; those an earlier run left are deleted.
    pub(super) async fn new(store: Arc<NodeStore>, mesh: O) -> Result<Server<O>, ClusterError> {
        let root = store.path().join(CHECKPOINTS_DIR);
        let fresh = root.clone();
        blocking(move || {
            if fresh.exists() {
                std::fs::remove_dir_all(&fresh).map_err(io_error("removing old checkpoints"))?;
            }
            Ok(())
        })
        .await?;
        // Numbers from the clock: a restarted server never reuses one a puller still holds.
        let next_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_millis() as u64);
        Ok(Server {
            store,
            mesh,
            root,
            served: Vec::new(),
            next_id,
            hashes: HashCache::default(),
        })
    }

    /// One request (others are ignored); answers go out through the outbox.
    pub(super) async fn handle(&mut self, from: NodeId, message: Message) {
        match message {
            Message::CheckpointOpen => self.open(from).await,
            Message::CheckpointRead {
                checkpoint,
                file,
                offset,
                bytes,
            } => self.read(from, checkpoint, file, offset, bytes).await,
            _ => {}
        }
    }

    async fn open(&mut self, from: NodeId) {
        let now = Instant::now();
        if let Some(served) = self.served.iter_mut().rev().find(|served| {
            now.duration_since(served.created) < SERVED_REUSE && served.pullers.contains(&from)
        }) {
            served.used = now;
            let listing = served.listing();
            self.mesh.send(from, listing);
            return;
        }
        if self.served.len() >= SERVED_MAX {
            let oldest = self.served.remove(0);
            remove_served(oldest).await;
        }
        let id = self.next_id;
        self.next_id += 1;
        let dir = self.root.join(id.to_string());
        let (store, root, target) = (Arc::clone(&self.store), self.root.clone(), dir.clone());
        let hashes = Arc::clone(&self.hashes);
        let started = Instant::now();
        let made = blocking(move || make_checkpoint(&store, &root, &target, &hashes)).await;
        match made {
            Ok((applied_index, last_id, files)) => {
                let bytes: u64 = files.iter().map(|file| file.bytes).sum();
                tracing::info!(
                    peer = %from,
                    checkpoint = id,
                    files = files.len(),
                    bytes,
                    applied_index,
                    last_id,
                    ms = started.elapsed().as_millis() as u64,
                    "checkpoint made for a catching-up ndb"
                );
                let served = Served {
                    id,
                    dir,
                    files,
                    hashing: HashMap::new(),
                    applied_index,
                    last_id,
                    created: now,
                    used: Instant::now(),
                    pullers: vec![from],
                };
                self.mesh.send(from, served.listing());
                self.served.push(served);
            }
            Err(error) => {
                tracing::warn!(peer = %from, %error, "no checkpoint for a catching-up ndb");
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }

    async fn read(&mut self, from: NodeId, checkpoint: u64, file: String, offset: u64, bytes: u32) {
        let gone = |file: String| Message::CheckpointData {
            checkpoint,
            file,
            offset,
            data: Vec::new(),
            sha256: None,
            gone: true,
        };
        let Some(served) = self
            .served
            .iter_mut()
            .find(|served| served.id == checkpoint)
        else {
            self.mesh.send(from, gone(file));
            return;
        };
        let Some(index) = served.files.iter().position(|known| known.name == file) else {
            self.mesh.send(from, gone(file));
            return;
        };
        served.used = Instant::now();
        let known = served.files[index].clone();
        let path = served.dir.join(&known.name);
        let hashing = served.hashing.remove(&known.name);
        let wanted = (bytes as usize).min(CHECKPOINT_CHUNK_BYTES_MAX);
        let read = blocking(move || {
            read_and_hash(&path, &known, offset, wanted, hashing)
                .map_err(io_error(format!("reading {}", path.display())))
        })
        .await;
        match read {
            Ok((data, sha256, hashing)) => {
                let file_entry = &mut served.files[index];
                if let Some(hashing) = hashing {
                    served.hashing.insert(file_entry.name.clone(), hashing);
                }
                if file_entry.sha256.is_none() && sha256.is_some() {
                    file_entry.sha256 = sha256;
                    if let (true, Some(hash)) = (file_entry.name.ends_with(".sst"), sha256) {
                        let mut cache = self.hashes.lock().unwrap_or_else(PoisonError::into_inner);
                        cache.insert(file_entry.name.clone(), (file_entry.bytes, hash));
                    }
                }
                let message = Message::CheckpointData {
                    checkpoint,
                    file,
                    offset,
                    data,
                    sha256,
                    gone: false,
                };
                self.mesh.send(from, message);
            }
            Err(error) => {
                tracing::warn!(peer = %from, %error, "a checkpoint read failed");
                self.mesh.send(from, gone(file));
            }
        }
    }

    /// Deletes checkpoints nobody read for [`SERVED_IDLE`] (all of them with `all`).
    pub(super) async fn expire(&mut self, all: bool) {
        let now = Instant::now();
        let (gone, kept): (Vec<Served>, Vec<Served>) = std::mem::take(&mut self.served)
            .into_iter()
            .partition(|served| all || now.duration_since(served.used) >= SERVED_IDLE);
        self.served = kept;
        for served in gone {
            tracing::debug!(checkpoint = served.id, "checkpoint deleted");
            remove_served(served).await;
        }
    }
}

async fn remove_served(served: Served) {
    let dir = served.dir;
    let _ =
        blocking(move || std::fs::remove_dir_all(&dir).map_err(io_error("removing a checkpoint")))
            .await;
}

/// A file hashed as the puller reads it: the bytes up to `next` are in `hasher`.
pub(super) struct Hashing {
    next: u64,
    hasher: Sha256,
}

impl Default for Hashing {
    fn default() -> Self {
        Hashing {
            next: 0,
            hasher: Sha256::new(),
        }
    }
}

/// A piece read: its bytes, the file's hash if it ends the file, and the hashing state to
/// keep if the file is not done.
pub(super) type Piece = (Vec<u8>, Option<[u8; 32]>, Option<Hashing>);

/// Up to `bytes` of `file` (at `path`) from `offset`, fewer at its end; and, on the piece
/// that ends the file, its SHA-256: from the listing, else from the pieces hashed in order
/// as they were read, else (pieces read out of order: a resumed or repeated read) from
/// the whole file read again. The hashing state to keep, if the file is not done. Blocking.
pub(super) fn read_and_hash(
    path: &Path,
    file: &CheckpointFile,
    offset: u64,
    bytes: usize,
    hashing: Option<Hashing>,
) -> std::io::Result<Piece> {
    let mut opened = std::fs::File::open(path)?;
    opened.seek(SeekFrom::Start(offset))?;
    let mut data = Vec::with_capacity(bytes);
    opened.take(bytes as u64).read_to_end(&mut data)?;
    if file.sha256.is_some() {
        let last = offset + data.len() as u64 == file.bytes && !data.is_empty();
        return Ok((data, file.sha256.filter(|_| last), None));
    }
    let mut hashing = hashing.unwrap_or_default();
    if offset == hashing.next {
        hashing.hasher.update(&data);
        hashing.next += data.len() as u64;
    }
    let last = offset + data.len() as u64 == file.bytes && !data.is_empty();
    if !last {
        return Ok((data, None, Some(hashing)));
    }
    let sha256 = if hashing.next == file.bytes {
        hashing.hasher.finalize().into()
    } else {
        hash_file(path)?
    };
    Ok((data, Some(sha256), None))
}

/// Makes a checkpoint of `store` in `dir` and lists its files with the hashes known
/// already, and where the store stood just before it (the checkpoint holds at least that).
/// Reads no file: the cost of a listing is the checkpoint's. Blocking.
pub(super) fn make_checkpoint(
    store: &NodeStore,
    root: &Path,
    dir: &Path,
    hashes: &HashCache,
) -> Result<(u64, u64, Vec<CheckpointFile>), ClusterError> {
    let (applied_index, last_id) = disk::ndb_position(store)?;
    std::fs::create_dir_all(root).map_err(io_error("creating the checkpoint directory"))?;
    store.checkpoint(dir)?;
    let mut files = Vec::new();
    let listing = std::fs::read_dir(dir).map_err(io_error("listing a checkpoint"))?;
    let mut cache = hashes.lock().unwrap_or_else(PoisonError::into_inner);
    let mut seen = HashSet::new();
    for entry in listing {
        let entry = entry.map_err(io_error("listing a checkpoint"))?;
        let metadata = entry.metadata().map_err(io_error("listing a checkpoint"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !metadata.is_file() || !valid_file_name(&name) {
            return Err(ClusterError::Corrupt {
                what: "checkpoint",
                reason: format!("unexpected entry {name:?}"),
            });
        }
        let bytes = metadata.len();
        // Hashed already (SST files never change), or as the puller reads it.
        let sha256 = match cache.get(&name) {
            Some((size, hash)) if name.ends_with(".sst") && *size == bytes => Some(*hash),
            _ => None,
        };
        seen.insert(name.clone());
        files.push(CheckpointFile {
            name,
            bytes,
            sha256,
        });
    }
    cache.retain(|name, _| seen.contains(name));
    if files.len() > CHECKPOINT_FILES_MAX {
        return Err(ClusterError::Corrupt {
            what: "checkpoint",
            reason: format!("{} files, at most {CHECKPOINT_FILES_MAX}", files.len()),
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((applied_index, last_id, files))
}
