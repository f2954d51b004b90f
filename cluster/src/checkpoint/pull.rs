//! The pulling side: an ndb far behind, before its state machine starts.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fox_sequencer::config::wire_limits::{CHECKPOINT_CHUNK_BYTES_MAX, CHECKPOINT_FILES_MAX};
use fox_sequencer::{CheckpointFile, Message, NodeId, NodeReport};
use fox_storage::{NodeStore, SyncMode};
use tokio::sync::{mpsc, watch};

use super::staging::{
    complete_staging, finish_swap, part_name, prepare_staging, seal_file, write_at,
};
use super::{
    blocking, io_error, stopped, valid_file_name, Bucket, CatchUpOptions, ATTEMPTS_MAX,
    ATTEMPT_PAUSE, CHECKPOINT_PROTOCOL_VERSION, OPEN_TIMEOUT, READS_IN_FLIGHT, READ_RETRIES_MAX,
    READ_TIMEOUT, SOURCE, STAGING_DIR, STATUS_EVERY,
};
use crate::disk;

/// A pulled file is fsynced every this many bytes.
const SYNC_EVERY_BYTES: u64 = 8 << 20;
use crate::driver::NodeStatus;
use crate::error::ClusterError;
use crate::mesh::Mesh;

/// What happened at start.
#[derive(Debug)]
pub enum CatchUp {
    /// The store to run on: the old one, or the pulled one.
    Run(Arc<NodeStore>),
    /// Shutdown came first.
    Stopped,
}

/// What stopped one pull attempt.
#[derive(Debug)]
enum Failed {
    Stopped,
    Peer(String),
    Local(ClusterError),
}

impl From<ClusterError> for Failed {
    fn from(error: ClusterError) -> Self {
        Failed::Local(error)
    }
}

/// The pulling ndb before its state machine starts.
pub struct Puller<'a> {
    /// Its links.
    pub mesh: &'a Mesh,
    /// Its inbox (messages for the state machine are dropped meanwhile).
    pub inbox: &'a mut mpsc::Receiver<(NodeId, Message)>,
    /// Turns true to stop.
    pub shutdown: watch::Receiver<bool>,
    /// Where progress is shown.
    pub status: &'a watch::Sender<NodeStatus>,
    /// The other ndb nodes.
    pub peers: Vec<NodeId>,
    /// Its data directory (the store's).
    pub data: PathBuf,
    /// How the store is reopened after the swap.
    pub sync_mode: SyncMode,
    /// Thresholds and rate.
    pub options: CatchUpOptions,
    /// What it answers to STATUS_QUERY meanwhile.
    pub own: NodeReport,
    /// Messages dropped while it pulled.
    pub dropped: u64,
}

enum Input {
    Message(NodeId, Message),
    Deadline,
    Stopped,
}

impl Puller<'_> {
    /// Probes the other ndb nodes; if one is far ahead, pulls its checkpoint and swaps it
    /// in. The store to run on (reopened after a swap).
    pub async fn run(mut self, store: Arc<NodeStore>) -> Result<CatchUp, ClusterError> {
        if self.peers.is_empty() {
            return Ok(CatchUp::Run(store));
        }
        let (own_applied, own_last) = (self.own.applied_index, self.own.last_id);
        let threshold = self.options.checkpoint_after_resolutions;
        let Some(answers) = self.probe().await else {
            return Ok(CatchUp::Stopped);
        };
        let mut candidates: Vec<(NodeId, u64)> = answers
            .into_iter()
            .filter(|(_, applied)| *applied > own_applied.saturating_add(threshold))
            .filter(|(peer, _)| {
                self.mesh
                    .link_version(*peer)
                    .is_some_and(|version| version >= CHECKPOINT_PROTOCOL_VERSION)
            })
            .collect();
        candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.1));
        if candidates.is_empty() {
            return Ok(CatchUp::Run(store));
        }
        let source = std::fs::read_to_string(self.data.join(STAGING_DIR).join(SOURCE))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .map(NodeId);
        if let Some(at) = candidates
            .iter()
            .position(|(peer, _)| Some(*peer) == source)
        {
            let resumed = candidates.remove(at);
            candidates.insert(0, resumed);
        }
        tracing::info!(
            own_applied_index = own_applied,
            own_last_id = own_last,
            peer = %candidates[0].0,
            peer_applied_index = candidates[0].1,
            "ndb far behind: pulling a peer's checkpoint"
        );
        self.status.send_modify(|status| status.catching_up = true);
        let mut result = Err(Failed::Peer("no attempt".into()));
        for attempt in 0..ATTEMPTS_MAX {
            let (peer, _) = candidates[attempt % candidates.len()];
            self.status
                .send_modify(|status| status.catch_up_peer = Some(peer));
            result = self.pull(peer, &store).await;
            match &result {
                Ok(()) | Err(Failed::Stopped) | Err(Failed::Local(_)) => break,
                Err(Failed::Peer(reason)) => {
                    tracing::warn!(%peer, attempt, reason, "checkpoint pull failed; trying again");
                    if self.pause(ATTEMPT_PAUSE).await.is_none() {
                        result = Err(Failed::Stopped);
                        break;
                    }
                }
            }
        }
        self.status.send_modify(|status| {
            status.catching_up = false;
            status.catch_up_peer = None;
        });
        match result {
            Ok(()) => {}
            Err(Failed::Stopped) => return Ok(CatchUp::Stopped),
            Err(Failed::Local(error)) => return Err(error),
            Err(Failed::Peer(reason)) => {
                tracing::warn!(
                    reason,
                    "no checkpoint could be pulled: starting on this store, catching up record by record (what is staged is kept for the next start)"
                );
                return Ok(CatchUp::Run(store));
            }
        }
        // Swap: the old store closes (nothing else holds it yet), the staged one moves in.
        let Ok(old) = Arc::try_unwrap(store) else {
            return Err(ClusterError::Task(
                "the store is still in use at the swap".into(),
            ));
        };
        drop(old);
        let (data, sync_mode) = (self.data.clone(), self.sync_mode);
        let reopened = blocking(move || {
            finish_swap(&data)?;
            Ok(NodeStore::open(&data, disk::NDB_FAMILIES, sync_mode)?)
        })
        .await?;
        let (applied_index, last_id) = disk::ndb_position(&reopened)?;
        tracing::info!(
            applied_index,
            last_id,
            dropped_messages = self.dropped,
            "checkpoint swapped in; fetching what was decided since"
        );
        self.status.send_modify(|status| status.catch_ups += 1);
        Ok(CatchUp::Run(Arc::new(reopened)))
    }

    /// The next message for the puller, answering or dropping the others, or the deadline.
    async fn next(&mut self, deadline: Instant) -> Input {
        loop {
            let received = tokio::select! {
                () = stopped(&mut self.shutdown) => return Input::Stopped,
                received = self.inbox.recv() => received,
                _ = tokio::time::sleep_until(deadline.into()) => return Input::Deadline,
            };
            let Some((from, message)) = received else {
                return Input::Stopped;
            };
            match message {
                Message::StatusQuery => self.mesh.send(from, Message::Status(self.own)),
                Message::Status(_)
                | Message::CheckpointFiles { .. }
                | Message::CheckpointData { .. } => return Input::Message(from, message),
                _ => self.dropped += 1,
            }
        }
    }

    async fn pause(&mut self, pause: Duration) -> Option<()> {
        let until = Instant::now() + pause;
        loop {
            match self.next(until).await {
                Input::Deadline => return Some(()),
                Input::Stopped => return None,
                Input::Message(..) => {}
            }
        }
    }

    /// The applied index of each other ndb that answered within `probe_ms` (all answered:
    /// sooner).
    async fn probe(&mut self) -> Option<Vec<(NodeId, u64)>> {
        let end = Instant::now() + Duration::from_millis(self.options.probe_ms);
        let mut answers: HashMap<NodeId, u64> = HashMap::new();
        let mut ask_at = Instant::now();
        while answers.len() < self.peers.len() {
            let now = Instant::now();
            if now >= end {
                break;
            }
            if now >= ask_at {
                for peer in self.peers.iter().filter(|peer| !answers.contains_key(peer)) {
                    self.mesh.send(*peer, Message::StatusQuery);
                }
                ask_at = now + Duration::from_millis(100);
            }
            match self.next(ask_at.min(end)).await {
                Input::Stopped => return None,
                Input::Deadline => {}
                Input::Message(from, Message::Status(report)) if self.peers.contains(&from) => {
                    answers.insert(from, report.applied_index);
                }
                Input::Message(..) => {}
            }
        }
        Some(answers.into_iter().collect())
    }

    /// One attempt: open a checkpoint on `peer`, pull what is not staged yet, and mark
    /// the staging directory complete (with this store's temporary segments copied in).
    async fn pull(&mut self, peer: NodeId, store: &Arc<NodeStore>) -> Result<(), Failed> {
        self.mesh.send(peer, Message::CheckpointOpen);
        let opened_until = Instant::now() + OPEN_TIMEOUT;
        let (checkpoint, files) = loop {
            match self.next(opened_until).await {
                Input::Stopped => return Err(Failed::Stopped),
                Input::Deadline => {
                    return Err(Failed::Peer("no checkpoint listing in time".into()))
                }
                Input::Message(
                    from,
                    Message::CheckpointFiles {
                        checkpoint, files, ..
                    },
                ) if from == peer => break (checkpoint, files),
                Input::Message(..) => {}
            }
        };
        if files.len() > CHECKPOINT_FILES_MAX
            || files.iter().any(|file| !valid_file_name(&file.name))
        {
            return Err(Failed::Peer("a malformed checkpoint listing".into()));
        }
        let total: u64 = files.iter().map(|file| file.bytes).sum();
        let staging = self.data.join(STAGING_DIR);
        let (stage, listed) = (staging.clone(), files.clone());
        let todo = blocking(move || {
            let todo = prepare_staging(&stage, &listed, peer)?;
            std::fs::write(stage.join(SOURCE), format!("{}\n", peer.0))
                .map_err(io_error("writing the staging directory's source"))?;
            Ok(todo)
        })
        .await?;
        let staged: u64 = total
            - todo
                .iter()
                .map(|(file, resume)| file.bytes - resume)
                .sum::<u64>();
        tracing::info!(
            %peer,
            checkpoint,
            files = files.len(),
            bytes = total,
            staged_bytes = staged,
            "pulling a checkpoint"
        );
        self.status.send_modify(|status| {
            status.catch_up_bytes_total = total;
            status.catch_up_bytes_done = staged;
        });
        let started = Instant::now();
        let mut pulled = 0u64;
        let mut bucket = Bucket::new(self.options.bytes_per_s);
        for (file, resume) in todo {
            let done = staged + pulled;
            pulled += self
                .pull_file(
                    peer,
                    (checkpoint, &file),
                    &staging,
                    resume,
                    done,
                    &mut bucket,
                )
                .await?;
        }
        let seconds = started.elapsed().as_secs_f64().max(1e-3);
        tracing::info!(
            %peer,
            bytes = pulled,
            seconds,
            mb_per_s = pulled as f64 / seconds / 1e6,
            "checkpoint pulled"
        );
        let (old, stage) = (Arc::clone(store), staging);
        blocking(move || complete_staging(&old, &stage)).await?;
        Ok(())
    }

    /// Pulls one file from `resume` into its part file, checks it, renames it. Bytes
    /// pulled. `done`: bytes of the checkpoint staged before this file (for the status).
    async fn pull_file(
        &mut self,
        peer: NodeId,
        (checkpoint, file): (u64, &CheckpointFile),
        staging: &Path,
        resume: u64,
        done: u64,
        bucket: &mut Bucket,
    ) -> Result<u64, Failed> {
        let part = staging.join(part_name(file, peer));
        let mut pull = FilePull::new(checkpoint, file, resume);
        let mut shown = Instant::now();
        let mut unsynced = 0u64;
        while pull.written < file.bytes {
            let refill_at = pull.ask(self.mesh, peer, bucket);
            match self.next(pull.deadline(refill_at)).await {
                Input::Stopped => return Err(Failed::Stopped),
                Input::Deadline => pull.on_deadline(self.mesh, peer)?,
                Input::Message(
                    from,
                    Message::CheckpointData {
                        checkpoint: answered,
                        file: name,
                        offset,
                        data,
                        sha256,
                        gone,
                    },
                ) if from == peer && answered == checkpoint && name == file.name => {
                    pull.on_data(offset, data, sha256, gone)?;
                }
                Input::Message(..) => {}
            }
            if let Some((at, ready)) = pull.take_ready() {
                // Written back a few MiB at a time: a file's worth of dirty pages flushed at
                // once would hold up the fsyncs of the live nodes sharing the disk.
                unsynced += ready.iter().map(|piece| piece.len() as u64).sum::<u64>();
                let sync = unsynced >= SYNC_EVERY_BYTES;
                if sync {
                    unsynced = 0;
                }
                let path = part.clone();
                blocking(move || write_at(&path, at, &ready, sync)).await?;
                if shown.elapsed() >= STATUS_EVERY {
                    shown = Instant::now();
                    self.show_progress(done + pull.written - resume);
                }
            }
        }
        let sha256 = pull.sha256;
        if sha256.is_none() && file.bytes > 0 {
            let name = &file.name;
            return Err(Failed::Peer(format!("no SHA-256 came for {name}")));
        }
        let (target, sealed) = (staging.join(&file.name), file.clone());
        if !blocking(move || seal_file(&part, &target, &sealed, sha256)).await? {
            let name = &file.name;
            return Err(Failed::Peer(format!("{name} does not match its SHA-256")));
        }
        self.show_progress(done + file.bytes - resume);
        Ok(file.bytes - resume)
    }

    fn show_progress(&self, done: u64) {
        self.status
            .send_modify(|status| status.catch_up_bytes_done = done);
    }
}

/// The reads of one file: those in flight (by offset, with when they were sent), the
/// answers that came out of order, and how far the part file is written.
struct FilePull<'f> {
    checkpoint: u64,
    file: &'f CheckpointFile,
    asked: u64,
    written: u64,
    in_flight: BTreeMap<u64, Instant>,
    arrived: BTreeMap<u64, Vec<u8>>,
    retries: u32,
    /// The file's SHA-256: the listing's, or the one its last piece came with.
    sha256: Option<[u8; 32]>,
}

impl<'f> FilePull<'f> {
    fn new(checkpoint: u64, file: &'f CheckpointFile, resume: u64) -> FilePull<'f> {
        FilePull {
            checkpoint,
            file,
            asked: resume,
            written: resume,
            in_flight: BTreeMap::new(),
            arrived: BTreeMap::new(),
            retries: 0,
            sha256: file.sha256,
        }
    }

    /// Bytes of the piece at `offset`.
    fn piece_at(&self, offset: u64) -> u64 {
        (self.file.bytes - offset).min(CHECKPOINT_CHUNK_BYTES_MAX as u64)
    }

    fn read(&self, offset: u64) -> Message {
        Message::CheckpointRead {
            checkpoint: self.checkpoint,
            file: self.file.name.clone(),
            offset,
            bytes: self.piece_at(offset) as u32,
        }
    }

    /// Asks for more while fewer than [`READS_IN_FLIGHT`] wait and the bucket has the
    /// bytes; when it will have them, if it stopped for that.
    fn ask(&mut self, mesh: &Mesh, peer: NodeId, bucket: &mut Bucket) -> Option<Instant> {
        while self.in_flight.len() < READS_IN_FLIGHT && self.asked < self.file.bytes {
            if let Some(at) = bucket.take(self.piece_at(self.asked)) {
                return Some(at);
            }
            mesh.send(peer, self.read(self.asked));
            self.in_flight.insert(self.asked, Instant::now());
            self.asked += self.piece_at(self.asked);
        }
        None
    }

    /// When to look again: the oldest read's timeout, or the bucket's refill.
    fn deadline(&self, refill_at: Option<Instant>) -> Instant {
        let oldest = self
            .in_flight
            .values()
            .min()
            .map(|sent| *sent + READ_TIMEOUT);
        match (oldest, refill_at) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => Instant::now() + READ_TIMEOUT,
        }
    }

    /// Asks the reads unanswered for [`READ_TIMEOUT`] again; gives the peer up after
    /// [`READ_RETRIES_MAX`] rounds without an answer.
    fn on_deadline(&mut self, mesh: &Mesh, peer: NodeId) -> Result<(), Failed> {
        let now = Instant::now();
        let late: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, sent)| now >= **sent + READ_TIMEOUT)
            .map(|(offset, _)| *offset)
            .collect();
        if late.is_empty() {
            return Ok(());
        }
        self.retries += 1;
        if self.retries > READ_RETRIES_MAX {
            return Err(Failed::Peer("checkpoint reads unanswered".into()));
        }
        let (file, reads, retries) = (&self.file.name, late.len(), self.retries);
        tracing::debug!(%peer, file, reads, retries, "checkpoint reads asked again");
        for offset in late {
            mesh.send(peer, self.read(offset));
            self.in_flight.insert(offset, now);
        }
        Ok(())
    }

    /// An answer from the peer; one to a read asked twice is ignored.
    fn on_data(
        &mut self,
        offset: u64,
        data: Vec<u8>,
        sha256: Option<[u8; 32]>,
        gone: bool,
    ) -> Result<(), Failed> {
        if gone {
            return Err(Failed::Peer("the checkpoint is gone".into()));
        }
        if let Some(hash) = sha256 {
            if self.sha256.is_some_and(|listed| listed != hash) {
                let name = &self.file.name;
                return Err(Failed::Peer(format!("two SHA-256 for {name}")));
            }
            self.sha256 = Some(hash);
        }
        if self.in_flight.remove(&offset).is_none() {
            return Ok(());
        }
        let expected = self.piece_at(offset);
        if data.len() as u64 != expected {
            let (got, name) = (data.len(), &self.file.name);
            return Err(Failed::Peer(format!(
                "{got} bytes at {offset} of {name}, {expected} expected"
            )));
        }
        self.retries = 0;
        self.arrived.insert(offset, data);
        Ok(())
    }

    /// The pieces that now follow what is written, and where they go.
    fn take_ready(&mut self) -> Option<(u64, Vec<Vec<u8>>)> {
        let at = self.written;
        let mut ready = Vec::new();
        while let Some(data) = self.arrived.remove(&self.written) {
            self.written += data.len() as u64;
            ready.push(data);
        }
        (!ready.is_empty()).then_some((at, ready))
    }
}
