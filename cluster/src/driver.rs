//! The tokio driver of an ndb or sync node: one task owns the sans-IO state machine.
//!
//! ```text
//! loop:
//!   wait for the inbox, the state machine's deadline, or shutdown
//!   feed every message waiting (at most INBOX_DRAIN_MAX), handle_timeout if due
//!   ready(): writes -> pending batch; if fsync: one NodeStore write with fsync (blocking
//!            thread) carrying every write gathered since the last one (group commit)
//!   then send the ready's messages (STORED and Raft votes leave only after their fsync)
//! ```
//!
//! Messages that arrive during an fsync wait in the bounded inbox and are handled
//! together afterwards, so their writes share the next fsync.

use std::sync::Arc;
use std::time::Duration;

use fox_sequencer::{
    Message, Ndb, NdbEvent, NdbWrite, NodeId, NodeReport, Sync, SyncEvent, SyncWrite,
};
use fox_storage::{NodeBatch, NodeStore};
use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::disk;
use crate::error::{blocking, ClusterError};
use crate::mesh::Mesh;

/// Inbox messages handled per turn at most, so timers and the disk get their turn.
pub const INBOX_DRAIN_MAX: usize = 4096;
/// Sleep at most this long without looking at the state machine's deadline again, in ms.
pub const DEADLINE_MAX_MS: u64 = 60_000;
/// Writes gathered without an fsync before they are written anyway (still unsynced).
const PENDING_WRITES_MAX: usize = 65_536;
/// Reads of the disk for peers (an ndb's records older than its memory holds) running at
/// once at most; beyond, a read is dropped (its reader asks again).
pub const STORE_READS_MAX: usize = 4;

/// The part of a state machine the driver needs: ndb and sync alike.
pub trait Core: Send + 'static {
    /// Its durable record.
    type Write: Send;

    /// One message from a peer.
    fn handle_message(&mut self, from: NodeId, message: Message, now_ms: u64);
    /// Timers.
    fn handle_timeout(&mut self, now_ms: u64);
    /// When to call `handle_timeout` next.
    fn poll_timeout(&self) -> u64;
    /// What to carry out, in the order of `fox_sequencer::Ready`.
    fn take_ready(&mut self) -> Carry<Self::Write>;
    /// The store batch for writes. `log_last_index` is the last Raft index on disk (sync;
    /// unused by ndb), kept up to date by the batch.
    fn batch(writes: &[Self::Write], log_last_index: &mut u64) -> Result<NodeBatch, ClusterError>;
    /// Whether this node leads (sync); logged when it changes.
    fn is_leader(&self) -> bool {
        false
    }
    /// What an operator sees of the state machine (its part of [`NodeStatus`]).
    fn status(&self, status: &mut NodeStatus);
}

/// What an ndb or sync node reports (its admin listener: `/metrics`, `/readyz`), updated
/// by the driver after every turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// Sync: whether it leads the vote.
    pub leader: bool,
    /// Sync: the Raft term.
    pub term: u64,
    /// Sync: the leader it knows of.
    pub leader_id: Option<NodeId>,
    /// Sync: the highest Raft index known committed.
    pub commit_index: u64,
    /// Sync: segments resolved (ordered or aborted) so far.
    pub resolutions: u64,
    /// Sync: of their resolutions, the newest, which memory holds.
    pub resolutions_cached: u64,
    /// Sync: the Raft index of its latest snapshot (0: none); its log starts after it.
    pub snapshot_index: u64,
    /// Sync: the snapshot index it started from (0: it replayed its log from index 1).
    pub started_from_snapshot: u64,
    /// Sync: after installing a leader's snapshot, the resolution count it still pulls
    /// from peers up to (0: none).
    pub filling_to: u64,
    /// Ndb: the last resolution applied to its permanent log.
    pub applied_index: u64,
    /// Ndb: records in its permanent log.
    pub log_records: u64,
    /// Ndb: of them, the newest, which memory holds (`--log-cache-mb`).
    pub log_cached_records: u64,
    /// Ndb: their encoded bytes.
    pub log_cached_bytes: u64,
    /// Ndb: the last permanent ID in its log (0: empty).
    pub last_id: u64,
    /// Ndb: temporary segments held, not yet resolved.
    pub temp_segments: u64,
    /// Ndb: pulling a peer's checkpoint at start (it serves nothing meanwhile).
    pub catching_up: bool,
    /// Ndb: the peer it pulls from.
    pub catch_up_peer: Option<NodeId>,
    /// Ndb: bytes of the checkpoint being pulled (of the last one, once done).
    pub catch_up_bytes_total: u64,
    /// Ndb: of them, staged so far.
    pub catch_up_bytes_done: u64,
    /// Ndb: checkpoints pulled and swapped in since start (0 or 1).
    pub catch_ups: u64,
    /// Store writes made (group commits).
    pub store_writes: u64,
    /// Of them, with an fsync.
    pub store_fsyncs: u64,
    /// Messages from peers handled.
    pub messages_handled: u64,
}

impl NodeStatus {
    /// What an entry's STATUS_QUERY is answered with.
    pub fn report(&self) -> NodeReport {
        NodeReport {
            term: self.term,
            leader: self.leader_id,
            commit_index: self.commit_index,
            resolutions: self.resolutions,
            applied_index: self.applied_index,
            last_id: self.last_id,
            temp_segments: self.temp_segments,
        }
    }
}

impl Core for Ndb {
    type Write = NdbWrite;

    fn handle_message(&mut self, from: NodeId, message: Message, now_ms: u64) {
        Ndb::handle_message(self, from, message, now_ms);
    }

    fn handle_timeout(&mut self, now_ms: u64) {
        Ndb::handle_timeout(self, now_ms);
    }

    fn poll_timeout(&self) -> u64 {
        Ndb::poll_timeout(self)
    }

    fn take_ready(&mut self) -> Carry<NdbWrite> {
        let ready = self.ready();
        Carry {
            early: ready.early,
            writes: ready.writes,
            fsync: ready.fsync,
            messages: ready.messages,
            reads: ready.events.into_iter().map(StoreRead::Ndb).collect(),
        }
    }

    fn batch(writes: &[NdbWrite], _log_last_index: &mut u64) -> Result<NodeBatch, ClusterError> {
        disk::ndb_batch(writes)
    }

    fn status(&self, status: &mut NodeStatus) {
        status.applied_index = self.applied_index();
        status.log_records = self.log_records();
        (status.log_cached_records, status.log_cached_bytes) = self.log_cached();
        status.last_id = self.last_id();
        status.temp_segments = self.temp_segment_count() as u64;
    }
}

impl Core for Sync {
    type Write = SyncWrite;

    fn handle_message(&mut self, from: NodeId, message: Message, now_ms: u64) {
        Sync::handle_message(self, from, message, now_ms);
    }

    fn handle_timeout(&mut self, now_ms: u64) {
        Sync::handle_timeout(self, now_ms);
    }

    fn poll_timeout(&self) -> u64 {
        Sync::poll_timeout(self)
    }

    fn take_ready(&mut self) -> Carry<SyncWrite> {
        let ready = self.ready();
        let mut reads = Vec::new();
        for event in ready.events {
            match event {
                SyncEvent::VoteApplied { decided } => tracing::trace!(decided, "vote applied"),
                SyncEvent::ReadResolutions {
                    to,
                    from_index,
                    count,
                } => reads.push(StoreRead::Resolutions {
                    to,
                    from_index,
                    count,
                }),
                SyncEvent::Applied(_) => {}
            }
        }
        Carry {
            early: ready.early,
            writes: ready.writes,
            fsync: ready.fsync,
            messages: ready.messages,
            reads,
        }
    }

    fn batch(writes: &[SyncWrite], log_last_index: &mut u64) -> Result<NodeBatch, ClusterError> {
        disk::sync_batch(writes, log_last_index)
    }

    fn is_leader(&self) -> bool {
        Sync::is_leader(self)
    }

    fn status(&self, status: &mut NodeStatus) {
        let raft = self.raft_status();
        status.leader = self.is_leader();
        status.term = raft.term;
        status.leader_id = raft.leader;
        status.commit_index = raft.commit_index;
        status.resolutions = self.resolution_count();
        status.resolutions_cached = self.resolutions_cached();
        status.snapshot_index = raft.snapshot_index;
        status.started_from_snapshot = raft.started_from_snapshot;
        status.filling_to = raft.filling_to.unwrap_or(0);
    }
}

/// Logs a sync node's snapshots: one installed from the leader (then a fill of the
/// resolutions it lacks), the fill done; its own are routine (debug).
fn note_snapshots(before: &NodeStatus, now: &NodeStatus) {
    if now.filling_to == u64::MAX && before.filling_to != u64::MAX {
        tracing::error!(
            snapshot_index = now.snapshot_index,
            "sync got a Raft snapshot that is not a sync snapshot (a foreign or damaged peer): \
             it applies nothing more; restart it with an empty data directory"
        );
    } else if now.filling_to != 0 && now.filling_to != before.filling_to {
        tracing::info!(
            snapshot_index = now.snapshot_index,
            resolutions = now.resolutions,
            filling_to = now.filling_to,
            "sync installed the leader's snapshot; pulling the resolutions it lacks from peers"
        );
    } else if now.filling_to == 0 && before.filling_to != 0 {
        tracing::info!(resolutions = now.resolutions, "sync resolutions filled");
    } else if now.snapshot_index > before.snapshot_index {
        tracing::debug!(snapshot_index = now.snapshot_index, "sync snapshot taken");
    }
}

/// A ready batch without its events: send `early`, persist `writes` (fsync if `fsync`),
/// then send `messages`.
pub struct Carry<W> {
    /// Messages that may leave before the writes are durable.
    pub early: Vec<(NodeId, Message)>,
    /// Records to append.
    pub writes: Vec<W>,
    /// Whether to fsync after them.
    pub fsync: bool,
    /// Messages that leave after.
    pub messages: Vec<(NodeId, Message)>,
    /// Reads of its disk, each answered with a message once the writes are written.
    pub reads: Vec<StoreRead>,
}

/// A read of a node's disk for a peer, answered with one message.
#[derive(Debug, Clone)]
pub enum StoreRead {
    /// An ndb's: records of its permanent log.
    Ndb(NdbEvent),
    /// A sync node's: `count` resolutions from `from_index` (one RESOLVED).
    Resolutions {
        /// Who asked.
        to: NodeId,
        /// The first index.
        from_index: u64,
        /// How many, at most.
        count: u64,
    },
}

impl StoreRead {
    /// Who asked, and from where: a reader that asks again while its read runs is not
    /// read for twice.
    fn key(&self) -> (NodeId, u64) {
        match self {
            StoreRead::Ndb(NdbEvent::ReadLog { to, after, .. }) => (*to, *after),
            StoreRead::Ndb(NdbEvent::ReadSegment { to, first, .. }) => (*to, *first),
            StoreRead::Resolutions { to, from_index, .. } => (*to, *from_index),
        }
    }
}

/// Where a driver's batches go: a [`NodeStore`] in production, a fake in tests.
pub trait Disk: Send + std::marker::Sync + 'static {
    /// Writes `batch` atomically (an empty one: nothing), then fsyncs if `fsync`. Blocking.
    fn persist(&self, batch: &NodeBatch, fsync: bool) -> Result<(), ClusterError>;
    /// Carries out a read of its disk for a peer: the message to send, and to whom.
    /// Blocking.
    fn read(&self, read: &StoreRead) -> Result<(NodeId, Message), ClusterError>;
}

impl Disk for NodeStore {
    fn persist(&self, batch: &NodeBatch, fsync: bool) -> Result<(), ClusterError> {
        if batch.is_empty() {
            if fsync {
                self.sync_wal()?;
            }
            return Ok(());
        }
        Ok(self.write(batch, fsync)?)
    }

    fn read(&self, read: &StoreRead) -> Result<(NodeId, Message), ClusterError> {
        match read {
            StoreRead::Ndb(read) => disk::ndb_read(self, read),
            StoreRead::Resolutions {
                to,
                from_index,
                count,
            } => {
                let resolutions = disk::sync_read(self, *from_index, *count)?;
                Ok((*to, Message::Resolved { resolutions }))
            }
        }
    }
}

/// Where a driver's messages go: the [`Mesh`] in production, a fake in tests.
pub trait Outbox: Clone + Send + 'static {
    /// Queues `message` for `to` (dropping it is allowed: the protocol retries).
    fn send(&self, to: NodeId, message: Message);
}

impl Outbox for Mesh {
    fn send(&self, to: NodeId, message: Message) {
        Mesh::send(self, to, message);
    }
}

/// Everything a driver task owns besides its state machine.
pub struct Driver<D: Disk = NodeStore, O: Outbox = Mesh> {
    /// The node's durable state.
    pub store: Arc<D>,
    /// Where messages go.
    pub mesh: O,
    /// Where messages come from.
    pub inbox: mpsc::Receiver<(NodeId, Message)>,
    /// Turns true to stop.
    pub shutdown: watch::Receiver<bool>,
    /// The node's clock.
    pub clock: Clock,
    /// Sync: the last Raft log index on disk (from recovery); 0 for ndb.
    pub log_last_index: u64,
    /// Where the driver reports its [`NodeStatus`] after every turn (it starts from what
    /// is there: an ndb's catch-up counts).
    pub status: watch::Sender<NodeStatus>,
    /// Ndb: where CHECKPOINT_OPEN and CHECKPOINT_READ go (the checkpoint server); without
    /// one they are dropped.
    pub checkpoints: Option<mpsc::Sender<(NodeId, Message)>>,
    /// Ndb: the reads of its disk running now, by reader and position.
    pub reading: Reading,
}

/// The reads of an ndb's disk running now (reader, position): a reader that asks again
/// while its read runs is not read for twice.
pub type Reading = Arc<std::sync::Mutex<std::collections::HashSet<(NodeId, u64)>>>;

impl<D: Disk, O: Outbox> Driver<D, O> {
    /// Runs `core` until shutdown (`Ok`) or a store failure (`Err`: the node must stop,
    /// as its disk no longer matches its memory).
    pub async fn run<C: Core>(mut self, mut core: C) -> Result<(), ClusterError> {
        let mut pending = NodeBatch::new();
        let mut leading = false;
        let mut status = *self.status.borrow();
        // Runs until shutdown; each turn waits for input or a deadline.
        loop {
            let now_ms = self.clock.now_ms();
            let deadline_ms = core
                .poll_timeout()
                .clamp(now_ms + 1, now_ms + DEADLINE_MAX_MS);
            let sleep = tokio::time::sleep_until(self.clock.instant_at(deadline_ms));
            let received = tokio::select! {
                _ = self.shutdown.wait_for(|stop| *stop) => break,
                received = self.inbox.recv() => match received {
                    Some(received) => Some(received),
                    None => break,
                },
                _ = sleep => None,
            };
            if let Some((from, message)) = received {
                self.feed(&mut core, from, message, &status);
                status.messages_handled += 1 + self.drain(&mut core, &status);
            }
            let now_ms = self.clock.now_ms();
            if now_ms >= core.poll_timeout() {
                core.handle_timeout(now_ms);
            }
            if let Some(fsync) = self.carry_out(&mut core, &mut pending).await? {
                status.store_writes += 1;
                status.store_fsyncs += u64::from(fsync);
            }
            if core.is_leader() != leading {
                leading = !leading;
                tracing::info!(leader = leading, "sync leadership changed");
            }
            let before = status;
            core.status(&mut status);
            note_snapshots(&before, &status);
            // A few integers; only an admin scrape reads them.
            self.status.send_if_modified(|shown| {
                let changed = *shown != status;
                *shown = status;
                changed
            });
        }
        if !pending.is_empty() {
            self.persist(std::mem::take(&mut pending), true).await?;
        }
        Ok(())
    }

    /// Handles what else waits in the inbox (at most [`INBOX_DRAIN_MAX`]); how many.
    fn drain<C: Core>(&mut self, core: &mut C, status: &NodeStatus) -> u64 {
        for handled in 0..INBOX_DRAIN_MAX {
            let Ok((from, message)) = self.inbox.try_recv() else {
                return handled as u64;
            };
            self.feed(core, from, message, status);
        }
        INBOX_DRAIN_MAX as u64
    }

    /// One message to the state machine; a STATUS_QUERY is answered here, with the status
    /// as of the last turn (the state machines know nothing of it). A lease expiry passed
    /// on (ABORT_OWNER, rare) is logged.
    fn feed<C: Core>(&mut self, core: &mut C, from: NodeId, message: Message, status: &NodeStatus) {
        match message {
            Message::StatusQuery => self.mesh.send(from, Message::Status(status.report())),
            Message::CheckpointOpen | Message::CheckpointRead { .. } => {
                if let Some(server) = &self.checkpoints {
                    // Full: the puller asks again.
                    let _ = server.try_send((from, message));
                }
            }
            Message::AbortOwner {
                owner,
                cut_until_ms,
            } => {
                tracing::info!(%from, %owner, cut_until_ms, "an entry's lease expired: aborting its segments cut until then");
                let message = Message::AbortOwner {
                    owner,
                    cut_until_ms,
                };
                core.handle_message(from, message, self.clock.now_ms());
            }
            message => core.handle_message(from, message, self.clock.now_ms()),
        }
    }

    /// Persist, fsync, then send: the Ready order of `fox_sequencer`. Whether a store
    /// write was made (`Some(fsync)`).
    async fn carry_out<C: Core>(
        &mut self,
        core: &mut C,
        pending: &mut NodeBatch,
    ) -> Result<Option<bool>, ClusterError> {
        let Carry {
            early,
            writes,
            fsync,
            messages,
            reads,
        } = core.take_ready();
        for (to, message) in early {
            self.mesh.send(to, message);
        }
        if !writes.is_empty() {
            pending.append(C::batch(&writes, &mut self.log_last_index)?);
        }
        let mut written = None;
        if fsync || pending.len() > PENDING_WRITES_MAX {
            self.persist(std::mem::take(pending), fsync).await?;
            written = Some(fsync);
        }
        for (to, message) in messages {
            self.mesh.send(to, message);
        }
        if !reads.is_empty() {
            if !pending.is_empty() {
                // The records to read may be among them.
                self.persist(std::mem::take(pending), false).await?;
                written = written.or(Some(false));
            }
            for read in reads {
                self.spawn_read(read);
            }
        }
        Ok(written)
    }

    /// Reads the disk for a peer on a blocking thread and sends the answer from there, so
    /// that the state machine goes on meanwhile. A read that fails is logged and not
    /// answered (the reader asks again, or another ndb).
    fn spawn_read(&self, read: StoreRead) {
        let key = read.key();
        {
            let mut reading = self.reading.lock().unwrap_or_else(|e| e.into_inner());
            if reading.len() >= STORE_READS_MAX || !reading.insert(key) {
                return;
            }
        }
        let (store, mesh, reading) = (self.store.clone(), self.mesh.clone(), self.reading.clone());
        tokio::task::spawn_blocking(move || {
            match store.read(&read) {
                Ok((to, message)) => mesh.send(to, message),
                Err(error) => tracing::error!(%error, ?key, "cannot read the log from disk"),
            }
            reading
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        });
    }

    async fn persist(&self, batch: NodeBatch, fsync: bool) -> Result<(), ClusterError> {
        let store = Arc::clone(&self.store);
        blocking(move || store.persist(&batch, fsync)).await
    }
}

/// How long a node waits for its tasks at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests;
