//! [`EntryHandle`]: the async face of `fox_sequencer::Entry`, for the router.
//!
//! ```text
//! router --publish(Publication)--> command queue --> entry task --KEEP/SEGMENT_OVER--> mesh
//!        <--Ok(PermanentId)------- oneshot  <------- Acked / Rejected events <--- ndb, sync
//! router --subscribe(after)------> entry task: Entry::subscribe --> Deliver events
//!        <--Subscription::next()-- bounded queue per subscriber (full: Lagged, resubscribe)
//! ```
//!
//! One task owns the `Entry`: it feeds commands, peer messages and timers, carries out
//! `ready()` (the entry writes nothing: send, then answer publishers and subscribers).
//! Publishes the entry cannot take yet (`Busy`: one segment in flight and one full) wait in
//! a bounded queue, in order. A publish is ordered even if its caller stopped waiting (a
//! QoS 0 or unacknowledged publish never waits; a timed-out one may still be ordered, as
//! `docs/cluster.md` says): skipping it would silently drop fire-and-forget messages.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fox_sequencer::{
    AdvanceId, Entry, EntryConfig, EntryEvent, LogRecord, Message, NodeId, NodeReport, PermanentId,
    Publication,
};
use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{ClusterFile, Role};
use crate::driver::{DEADLINE_MAX_MS, INBOX_DRAIN_MAX, SHUTDOWN_GRACE};
use crate::error::{ClusterError, EntryError, SubscriptionError};
use crate::mesh::{Mesh, MeshConfig, MeshLimits};
use crate::node::INBOX_MESSAGES_MAX;

/// Limits and timings of an [`EntryHandle`].
#[derive(Debug, Clone)]
pub struct EntryOptions {
    /// A publish with no permanent ID after this long fails with `Timeout`, in ms. Default 5000.
    pub publish_timeout_ms: u64,
    /// Publishes waiting for the entry (beyond its two segments) at most. Default 65536.
    pub queue_publishes_max: usize,
    /// The same in bytes (`Publication::encoded_bytes_max` summed), so that a flood of
    /// large publishes cannot fill the entry's memory; one publish is taken whatever its
    /// size while nothing waits. Default 256 MiB.
    pub queue_bytes_max: usize,
    /// Records queued per subscriber at most; beyond, it gets `Lagged`. Default 65536.
    pub subscriber_queue_records_max: usize,
    /// With publishes waiting and no ack or rejection for this long while a quorum of ndb
    /// and a sync node answer (so the cluster runs, and this entry's segments do not move),
    /// the entry starts afresh (an entry keeps no durable state): its waiting publishes
    /// fail with `Stalled` (outcome unknown). A safety net for an entry wedged by what it
    /// did not hear; a stalled tier (every ndb's disk, the whole sync tier) answers nothing
    /// and resets nobody: a fresh entry would wait for the same nodes. In ms; default 3000.
    pub stall_reset_ms: u64,
    /// Mesh limits and timings.
    pub mesh: MeshLimits,
    /// How often the entry asks every ndb and sync node for its status (STATUS_QUERY), for
    /// its operators' view of the cluster, in ms. Default 1000.
    pub status_query_ms: u64,
}

/// The last STATUS an ndb or sync node sent this entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerReport {
    /// The node.
    pub node: NodeId,
    /// What it said.
    pub report: NodeReport,
    /// How long ago, in ms.
    pub age_ms: u64,
}

type Reports = Arc<std::sync::Mutex<HashMap<NodeId, (NodeReport, tokio::time::Instant)>>>;

impl Default for EntryOptions {
    fn default() -> Self {
        EntryOptions {
            publish_timeout_ms: 5000,
            queue_publishes_max: 65_536,
            queue_bytes_max: 256 << 20,
            subscriber_queue_records_max: 65_536,
            stall_reset_ms: 3000,
            mesh: MeshLimits::default(),
            status_query_ms: 1000,
        }
    }
}

type Reply = oneshot::Sender<Result<PermanentId, EntryError>>;

enum Command {
    Publish(Publication, Reply),
    /// A publish that goes ahead of the queued ones (an entry's lease beat).
    PublishFirst(Publication, Reply),
    Subscribe(u64, PermanentId, Sink),
    Unsubscribe(u64),
    /// Another entry's lease expired: abort its segments cut until then (Unix ms).
    AbortOwner(NodeId, u64),
}

struct Sink {
    records: mpsc::Sender<LogRecord>,
    lagged: Arc<AtomicBool>,
    /// The last ID handed to this subscriber (to resubscribe a fresh entry).
    last: u64,
}

/// A running entry: publish with permanent IDs, tail the permanent log.
/// Cheap to clone; the entry stops with [`EntryHandle::stop`] or when every clone is gone.
#[derive(Clone, Debug)]
pub struct EntryHandle {
    commands: mpsc::Sender<Command>,
    /// Bytes of the publishes sent to the entry task and not yet taken by its core.
    queued_bytes: Arc<AtomicUsize>,
    queue_bytes_max: usize,
    /// The core's `segment_bytes_max`: a larger publication is refused at once.
    segment_bytes_max: usize,
    next_subscriber: Arc<AtomicU64>,
    publish_timeout_ms: u64,
    subscriber_queue_records_max: usize,
    mesh: Mesh,
    reports: Reports,
    stopper: Arc<Stopper>,
}

#[derive(Debug)]
struct Stopper {
    shutdown: watch::Sender<bool>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Stopper {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl EntryHandle {
    /// Starts entry `id` of `cluster`: dials every ndb and sync node and runs the entry task.
    pub async fn start(
        cluster: &ClusterFile,
        id: u32,
        options: EntryOptions,
    ) -> Result<EntryHandle, ClusterError> {
        let spec = cluster.node(id).ok_or(ClusterError::UnknownNode(id))?;
        if spec.role != Role::Entry {
            return Err(ClusterError::WrongRole {
                id,
                role: spec.role,
                hint: "run ndb and sync nodes with `foxrouter node`",
            });
        }
        let others = cluster.nodes.iter().filter(|node| node.role != Role::Entry);
        let mesh_config = MeshConfig {
            handshake: cluster.handshake_config(spec.node_id())?,
            listen: None,
            dial: others.map(|node| (node.node_id(), node.peer)).collect(),
            limits: options.mesh.clone(),
        };
        let (inbox_sender, inbox) = mpsc::channel(INBOX_MESSAGES_MAX);
        let (shutdown, shutdown_receiver) = watch::channel(false);
        let mesh = Mesh::start(mesh_config, inbox_sender, shutdown_receiver.clone()).await?;
        let clock = Clock::new();
        let seed: u64 = rand::thread_rng().gen();
        let config = EntryConfig::new(spec.node_id(), cluster.membership(), seed);
        let (commands_sender, commands) = mpsc::channel(options.queue_publishes_max.max(1));
        let reports = Reports::default();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let task = EntryTask {
            queued_bytes: Arc::clone(&queued_bytes),
            entry: Entry::new(config.clone(), clock.now_ms()),
            config,
            stall_reset: Duration::from_millis(options.stall_reset_ms),
            last_progress: tokio::time::Instant::now(),
            heard: HashMap::new(),
            clock,
            mesh: mesh.clone(),
            inbox,
            commands,
            shutdown: shutdown_receiver,
            queue: VecDeque::new(),
            first: VecDeque::new(),
            queue_max: options.queue_publishes_max,
            waiting: HashMap::new(),
            sinks: HashMap::new(),
            reports: Arc::clone(&reports),
            status_query: Duration::from_millis(options.status_query_ms.max(1)),
        };
        let segment_bytes_max = task.config.segment_bytes_max;
        let task = tokio::spawn(task.run());
        Ok(EntryHandle {
            commands: commands_sender,
            queued_bytes,
            queue_bytes_max: options.queue_bytes_max,
            segment_bytes_max,
            next_subscriber: Arc::new(AtomicU64::new(1)),
            publish_timeout_ms: options.publish_timeout_ms,
            subscriber_queue_records_max: options.subscriber_queue_records_max,
            mesh,
            reports,
            stopper: Arc::new(Stopper {
                shutdown,
                task: std::sync::Mutex::new(Some(task)),
            }),
        })
    }

    /// Publishes `publication` (topic and options go in its payload, encoded by the router;
    /// `sequence` increases per `publisher`). The publish is queued at the call, so the
    /// order of calls is the order of the log. The future resolves once the cluster
    /// decided: `Ok` with the permanent ID (durable on a quorum of ndb), `Rejected` (never
    /// in the log), `Overloaded` (queue full, nothing sent), or `Timeout` after
    /// `publish_timeout_ms` (outcome unknown).
    pub fn publish(
        &self,
        publication: Publication,
    ) -> impl Future<Output = Result<PermanentId, EntryError>> + Send + 'static {
        self.send_publish(publication, Command::Publish)
    }

    /// As [`EntryHandle::publish`], but ahead of every publish that waits for the entry
    /// (not of those it took already): for records whose time matters more than their
    /// order among the others, such as the lease beats, which a queue of client
    /// publishes would otherwise hold back until the entry's lease lapsed. Its order
    /// among other publishes of its `publisher` is kept only among these. At most
    /// [`FIRST_QUEUED_MAX`] wait; beyond, `Overloaded`.
    pub fn publish_first(
        &self,
        publication: Publication,
    ) -> impl Future<Output = Result<PermanentId, EntryError>> + Send + 'static {
        self.send_publish(publication, Command::PublishFirst)
    }

    fn send_publish(
        &self,
        publication: Publication,
        command: fn(Publication, Reply) -> Command,
    ) -> impl Future<Output = Result<PermanentId, EntryError>> + Send + 'static {
        let timeout_ms = self.publish_timeout_ms;
        let (reply, answer) = oneshot::channel();
        let bytes = publication.encoded_bytes_max();
        let bytes_max = self.segment_bytes_max;
        let before = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        let queued = if bytes > bytes_max {
            Err(EntryError::TooLarge { bytes, bytes_max })
        } else if before > 0 && before.saturating_add(bytes) > self.queue_bytes_max {
            Err(EntryError::Overloaded {
                queued: self.commands.max_capacity() - self.commands.capacity(),
            })
        } else {
            match self.commands.try_send(command(publication, reply)) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => Err(EntryError::Overloaded {
                    queued: self.commands.max_capacity(),
                }),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(EntryError::Stopped),
            }
        };
        if queued.is_err() {
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
        async move {
            queued?;
            let limit = Duration::from_millis(timeout_ms);
            match tokio::time::timeout(limit, answer).await {
                Ok(Ok(decided)) => decided,
                Ok(Err(_)) => Err(EntryError::Stopped),
                Err(_) => Err(EntryError::Timeout { timeout_ms }),
            }
        }
    }

    /// Entry `owner`'s lease expired at log time `expired_at_ms` (Unix ms; the router
    /// applied its expiry): every ndb is told to have sync abort that entry's segments cut
    /// at or before then, at once rather than after `abort_after_ms` of its silence. What
    /// sync already decided stays decided, and a segment cut later is not touched, so this
    /// is idempotent and a late call (a replay of the log) aborts nothing live. A full
    /// command queue drops the request (logged): the silence still aborts them.
    pub fn abort_segments_of(&self, owner: u32, expired_at_ms: u64) {
        let command = Command::AbortOwner(NodeId(owner), expired_at_ms);
        if let Err(error) = self.commands.try_send(command) {
            tracing::warn!(owner, %error, "cannot ask to abort a lost entry's segments");
        }
    }

    /// Delivers the permanent log from the first record after `after` (`PermanentId(0)`:
    /// from the start), in ID order, then every new record as the entry learns it.
    pub async fn subscribe(&self, after: PermanentId) -> Result<Subscription, SubscriptionError> {
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let (records, receiver) = mpsc::channel(self.subscriber_queue_max());
        let lagged = Arc::new(AtomicBool::new(false));
        let sink = Sink {
            records,
            lagged: Arc::clone(&lagged),
            last: after.0,
        };
        let command = Command::Subscribe(id, after, sink);
        self.commands
            .send(command)
            .await
            .map_err(|_| SubscriptionError::Stopped)?;
        Ok(Subscription {
            id,
            receiver,
            lagged,
            last: after.0,
            commands: self.commands.clone(),
        })
    }

    fn subscriber_queue_max(&self) -> usize {
        self.subscriber_queue_records_max.max(1)
    }

    /// The entry's links (their counters).
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// The last status each ndb and sync node reported (nodes that never answered are
    /// absent), in node order.
    pub fn peer_reports(&self) -> Vec<PeerReport> {
        let reports = self
            .reports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<PeerReport> = reports
            .iter()
            .map(|(node, (report, at))| PeerReport {
                node: *node,
                report: *report,
                age_ms: u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX),
            })
            .collect();
        out.sort_by_key(|peer| peer.node);
        out
    }

    /// Stops the entry task and its links; waiting publishes fail with `Stopped`.
    pub async fn stop(&self) {
        let _ = self.stopper.shutdown.send(true);
        let task = self
            .stopper
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, task).await;
        }
    }
}

/// The permanent log as one subscriber sees it.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    receiver: mpsc::Receiver<LogRecord>,
    lagged: Arc<AtomicBool>,
    last: u64,
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl Subscription {
    /// The next record, in permanent-ID order with no gap and no duplicate.
    pub async fn next(&mut self) -> Result<LogRecord, SubscriptionError> {
        match self.receiver.recv().await {
            Some(record) => {
                self.last = record.id.0;
                Ok(record)
            }
            None if self.lagged.load(Ordering::Acquire) => {
                Err(SubscriptionError::Lagged { last: self.last })
            }
            None => Err(SubscriptionError::Stopped),
        }
    }

    /// The last ID received (or the `after` it started from).
    pub fn last(&self) -> PermanentId {
        PermanentId(self.last)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.commands.try_send(Command::Unsubscribe(self.id));
    }
}

enum Wake {
    Command(Command),
    Message(NodeId, Message),
    Timer,
    StatusQuery,
}

struct EntryTask {
    entry: Entry,
    /// Shared with the handles: what a publish no longer waits here releases.
    queued_bytes: Arc<AtomicUsize>,
    config: EntryConfig,
    stall_reset: Duration,
    last_progress: tokio::time::Instant,
    /// When each node was last heard from (any message; STATUS answers at least every
    /// `status_query` while it runs).
    heard: HashMap<NodeId, tokio::time::Instant>,
    clock: Clock,
    mesh: Mesh,
    inbox: mpsc::Receiver<(NodeId, Message)>,
    commands: mpsc::Receiver<Command>,
    shutdown: watch::Receiver<bool>,
    queue: VecDeque<(Publication, Reply)>,
    /// Publishes that go ahead of `queue` (at most [`FIRST_QUEUED_MAX`]).
    first: VecDeque<(Publication, Reply)>,
    queue_max: usize,
    waiting: HashMap<AdvanceId, Reply>,
    sinks: HashMap<u64, Sink>,
    reports: Reports,
    status_query: Duration,
}

/// `publication` no longer waits for the entry: its bytes leave `queued_bytes`.
fn release(queued_bytes: &AtomicUsize, publication: &Publication) {
    queued_bytes.fetch_sub(publication.encoded_bytes_max(), Ordering::AcqRel);
}

/// Publishes waiting to go ahead of the queue at most (`EntryHandle::publish_first`).
pub const FIRST_QUEUED_MAX: usize = 64;

/// Rounds of timers, sends and queued publishes per wake-up at most (each round seals what
/// the previous one queued), so that input gets its turn.
const ROUNDS_MAX: usize = 4;

impl EntryTask {
    async fn run(mut self) {
        let mut status_query = tokio::time::interval(self.status_query);
        status_query.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Runs until shutdown; each turn waits for input or the entry's deadline.
        loop {
            let now_ms = self.clock.now_ms();
            let deadline_ms = self
                .entry
                .poll_timeout()
                .clamp(now_ms + 1, now_ms + DEADLINE_MAX_MS);
            let sleep = tokio::time::sleep_until(self.clock.instant_at(deadline_ms));
            let wake = tokio::select! {
                _ = self.shutdown.wait_for(|stop| *stop) => break,
                command = self.commands.recv() => match command {
                    Some(command) => Wake::Command(command),
                    None => break,
                },
                received = self.inbox.recv() => match received {
                    Some((from, message)) => Wake::Message(from, message),
                    None => break,
                },
                _ = sleep => Wake::Timer,
                _ = status_query.tick() => Wake::StatusQuery,
            };
            match wake {
                Wake::Command(command) => self.on_command(command),
                Wake::Message(from, message) => self.on_message(from, message),
                Wake::Timer => {}
                Wake::StatusQuery => self.query_status(),
            }
            self.drain();
            // The input has drained: what is due now (sealing the open segment, with the
            // default window of 0) happens now, not after a sleep; acks free slots for
            // queued publishes, which the next round seals.
            for _ in 0..ROUNDS_MAX {
                let now_ms = self.clock.now_ms();
                if now_ms >= self.entry.poll_timeout() {
                    self.entry.handle_timeout(now_ms);
                }
                self.carry_out();
                let fed = self.feed_queue();
                if !fed && self.clock.now_ms() < self.entry.poll_timeout() {
                    break;
                }
            }
            self.reset_if_stalled();
        }
        for (_, reply) in self.first.drain(..).chain(self.queue.drain(..)) {
            let _ = reply.send(Err(EntryError::Stopped));
        }
    }

    /// Starts a fresh `Entry` when publishes wait and nothing was decided for too long
    /// while the cluster answered.
    fn reset_if_stalled(&mut self) {
        if self.waiting.is_empty() {
            self.progressed();
            return;
        }
        if !self.cluster_answers() {
            // A stalled tier: the clock of the reset runs only while the cluster answers.
            self.progressed();
            return;
        }
        if self.last_progress.elapsed() < self.stall_reset {
            return;
        }
        tracing::warn!(
            waiting = self.waiting.len(),
            "entry made no progress; starting a fresh entry (waiting publishes time out)"
        );
        let stalled_ms = u64::try_from(self.stall_reset.as_millis()).unwrap_or(u64::MAX);
        for (_, reply) in self.waiting.drain() {
            let _ = reply.send(Err(EntryError::Stalled { stalled_ms }));
        }
        self.config.seed = rand::thread_rng().gen();
        self.entry = Entry::new(self.config.clone(), self.clock.now_ms());
        for (id, sink) in &self.sinks {
            self.entry.subscribe(*id, PermanentId(sink.last));
        }
        self.progressed();
        self.carry_out();
        self.feed_queue();
    }

    fn drain(&mut self) {
        for _ in 0..INBOX_DRAIN_MAX {
            let Ok((from, message)) = self.inbox.try_recv() else {
                break;
            };
            self.on_message(from, message);
        }
        for _ in 0..INBOX_DRAIN_MAX {
            let Ok(command) = self.commands.try_recv() else {
                break;
            };
            self.on_command(command);
        }
    }

    /// Something of this entry's was decided (or nothing waits).
    fn progressed(&mut self) {
        self.last_progress = tokio::time::Instant::now();
    }

    /// Whether a quorum of ndb and a sync node answer: each was heard from within two
    /// status queries.
    fn cluster_answers(&self) -> bool {
        let membership = &self.config.membership;
        let recent = self.status_query * 2;
        let heard = |nodes: &[NodeId]| {
            let answers = |n: &&NodeId| self.heard.get(*n).is_some_and(|at| at.elapsed() < recent);
            nodes.iter().filter(answers).count()
        };
        heard(&membership.ndbs) >= membership.ndb_quorum() && heard(&membership.syncs) >= 1
    }

    fn on_message(&mut self, from: NodeId, message: Message) {
        self.heard.insert(from, tokio::time::Instant::now());
        match message {
            Message::Status(report) => {
                let now = tokio::time::Instant::now();
                self.reports
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(from, (report, now));
            }
            message => self
                .entry
                .handle_message(from, message, self.clock.now_ms()),
        }
    }

    /// Asks every linked ndb and sync node for its status (answers come as STATUS
    /// messages); a node without a link is not asked (that would count a dropped frame).
    fn query_status(&self) {
        let membership = &self.config.membership;
        for node in membership.ndbs.iter().chain(&membership.syncs) {
            if self.mesh.is_linked(*node) {
                self.mesh.send(*node, Message::StatusQuery);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish(publication, reply) => self.enqueue(false, publication, reply),
            Command::PublishFirst(publication, reply) => self.enqueue(true, publication, reply),
            Command::Subscribe(id, after, sink) => {
                self.sinks.insert(id, sink);
                self.entry.subscribe(id, after);
            }
            Command::Unsubscribe(id) => {
                self.sinks.remove(&id);
                self.entry.unsubscribe(id);
            }
            Command::AbortOwner(owner, cut_until_ms) => {
                self.entry.abort_owner(owner, cut_until_ms);
            }
        }
    }

    /// Queues a publish (`first`: ahead of the others) and feeds the entry; a full queue
    /// refuses it.
    fn enqueue(&mut self, first: bool, publication: Publication, reply: Reply) {
        let (queue, max) = if first {
            (&mut self.first, FIRST_QUEUED_MAX)
        } else {
            (&mut self.queue, self.queue_max)
        };
        if queue.len() >= max {
            let queued = queue.len();
            release(&self.queued_bytes, &publication);
            let _ = reply.send(Err(EntryError::Overloaded { queued }));
            return;
        }
        queue.push_back((publication, reply));
        self.feed_queue();
    }

    /// Hands queued publishes to the entry, in order, until it is busy. Whether it
    /// handed any.
    fn feed_queue(&mut self) -> bool {
        let mut fed = false;
        // Each turn takes one publish off a bounded queue, `first` before `queue`.
        loop {
            let queue = if self.first.is_empty() {
                &mut self.queue
            } else {
                &mut self.first
            };
            let Some((publication, reply)) = queue.pop_front() else {
                break;
            };
            match self.entry.publish(publication.clone(), self.clock.now_ms()) {
                Ok(advance) => {
                    release(&self.queued_bytes, &publication);
                    self.waiting.insert(advance, reply);
                    fed = true;
                }
                Err(fox_sequencer::PublishError::TooLarge { bytes, bytes_max }) => {
                    // Refused at `publish` already; never wedge the queue on one.
                    release(&self.queued_bytes, &publication);
                    let _ = reply.send(Err(EntryError::TooLarge { bytes, bytes_max }));
                }
                Err(_) => {
                    // Busy: the next round feeds it.
                    queue.push_front((publication, reply));
                    break;
                }
            }
        }
        fed
    }

    fn carry_out(&mut self) {
        let ready = self.entry.ready();
        for (to, message) in ready.messages {
            self.mesh.send(to, message);
        }
        for event in ready.events {
            self.on_event(event);
        }
    }

    fn on_event(&mut self, event: EntryEvent) {
        match event {
            EntryEvent::Acked { advance, id, .. } => {
                self.progressed();
                if let Some(reply) = self.waiting.remove(&advance) {
                    let _ = reply.send(Ok(id));
                }
            }
            EntryEvent::Rejected { advance, .. } => {
                self.progressed();
                if let Some(reply) = self.waiting.remove(&advance) {
                    let _ = reply.send(Err(EntryError::Rejected));
                }
            }
            EntryEvent::Deliver { subscriber, record } => self.deliver(subscriber, record),
        }
    }

    fn deliver(&mut self, subscriber: u64, record: LogRecord) {
        let Some(sink) = self.sinks.get_mut(&subscriber) else {
            return;
        };
        let id = record.id.0;
        match sink.records.try_send(record) {
            Ok(()) => sink.last = id,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(subscriber, "log subscriber lagged; it must resubscribe");
                sink.lagged.store(true, Ordering::Release);
                self.sinks.remove(&subscriber);
                self.entry.unsubscribe(subscriber);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.sinks.remove(&subscriber);
                self.entry.unsubscribe(subscriber);
            }
        }
    }
}
