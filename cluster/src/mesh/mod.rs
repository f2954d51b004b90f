//! The mesh: authenticated TCP links between the nodes of one cluster.
//!
//! ```text
//! listener (peer addr) --accept--> handshake (responder) --+
//! dialer per peer ----connect---> handshake (initiator) ---+--> link: reader -> node inbox
//!   (exponential backoff, capped, jittered)                |          writer <- per-peer queue
//!                                                          +--> registry: peer -> newest link
//! ```
//!
//! Links are two-way: a node sends to a peer on the newest link with it, whoever dialed.
//! ndb and sync nodes listen and dial every other ndb and sync node; entries only dial
//! (ndb and sync answer them on the link the entry opened). Two nodes that both dial keep
//! two links; the protocol tolerates the reordering that brings.
//!
//! A link carries only the messages of the protocol version its handshake negotiated
//! (`wire::message_version`): a message too new for the peer is dropped and counted, as
//! the sender's protocol expects of a lost one (version-6 UNDECIDED / ABORT_OWNER to a
//! version-5 ndb, which then aborts by its own timer).
//!
//! Every queue is bounded: a per-peer outbound queue (`peer_queue_frames_max`, a full one
//! drops the frame and counts it: the protocol retries), the node inbox (a full one stops
//! reading the socket: TCP backpressure), and inbound connections in handshake or running
//! (`inbound_connections_max`). A link that hears nothing for `idle_timeout_ms` closes;
//! an idle writer sends a heartbeat every `heartbeat_ms`. A connection that fails the
//! handshake (garbage, wrong secret, unknown node, timeout) is closed and logged, at most
//! once per kind of failure every `refusal_log_interval_ms`.

mod link;
mod refusal;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fox_sequencer::config::wire_limits::FRAME_SIZE_MAX_BYTES;
use fox_sequencer::wire::{message_version, HandshakeConfig};
use fox_sequencer::{Message, NodeId};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::error::ClusterError;
use refusal::RefusalLog;

/// Mesh limits and timings, with units in their names.
#[derive(Debug, Clone)]
pub struct MeshLimits {
    /// Frames queued per peer link at most; beyond, frames are dropped. Default 8192.
    pub peer_queue_frames_max: usize,
    /// Largest frame accepted or sent, in bytes. Default 16 MiB.
    pub frame_size_max_bytes: usize,
    /// An idle writer sends a heartbeat this often, in ms. Default 500.
    pub heartbeat_ms: u64,
    /// A link that receives nothing this long closes, in ms. Default 3000.
    pub idle_timeout_ms: u64,
    /// Connect plus handshake must finish within this, in ms. Default 3000.
    pub handshake_timeout_ms: u64,
    /// First reconnect delay, in ms. Default 50.
    pub backoff_min_ms: u64,
    /// Longest reconnect delay, in ms (each delay is jittered down to half). Default 2000.
    pub backoff_max_ms: u64,
    /// Inbound connections (handshaking or linked) at most. Default 256.
    pub inbound_connections_max: usize,
    /// A refused connection of one kind is logged at most once per this, in ms. Default 10000.
    pub refusal_log_interval_ms: u64,
}

impl Default for MeshLimits {
    fn default() -> Self {
        MeshLimits {
            peer_queue_frames_max: 8192,
            frame_size_max_bytes: FRAME_SIZE_MAX_BYTES,
            heartbeat_ms: 500,
            idle_timeout_ms: 3000,
            handshake_timeout_ms: 3000,
            backoff_min_ms: 50,
            backoff_max_ms: 2000,
            inbound_connections_max: 256,
            refusal_log_interval_ms: 10_000,
        }
    }
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeshStats {
    /// Links established (both directions).
    pub links_established: u64,
    /// Connections refused (handshake failed, timed out, or too many).
    pub connections_refused: u64,
    /// Frames dropped because the peer's queue was full.
    pub frames_dropped_queue_full: u64,
    /// Frames dropped because there was no link to the peer.
    pub frames_dropped_no_link: u64,
    /// Messages that did not encode (larger than `frame_size_max_bytes`), not sent.
    pub frames_unencodable: u64,
    /// Messages not sent because the peer's protocol version does not have them.
    pub frames_dropped_old_peer: u64,
}

#[derive(Debug, Default)]
struct Counters {
    links_established: AtomicU64,
    connections_refused: AtomicU64,
    frames_dropped_queue_full: AtomicU64,
    frames_dropped_no_link: AtomicU64,
    frames_unencodable: AtomicU64,
    frames_dropped_old_peer: AtomicU64,
}

/// Where a message received from a peer goes: the node's bounded inbox.
pub type Inbox = mpsc::Sender<(NodeId, Message)>;

struct LinkSlot {
    link_id: u64,
    frames: mpsc::Sender<Message>,
    /// The protocol version the handshake negotiated.
    version: u16,
}

struct Shared {
    node: NodeId,
    handshake: HandshakeConfig,
    limits: MeshLimits,
    inbox: Inbox,
    links: Mutex<HashMap<NodeId, LinkSlot>>,
    next_link_id: AtomicU64,
    counters: Counters,
    refusals: RefusalLog,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn register(&self, peer: NodeId, frames: mpsc::Sender<Message>, version: u16) -> u64 {
        let link_id = self.next_link_id.fetch_add(1, Ordering::Relaxed);
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = LinkSlot {
            link_id,
            frames,
            version,
        };
        links.insert(peer, slot);
        self.counters
            .links_established
            .fetch_add(1, Ordering::Relaxed);
        link_id
    }

    fn unregister(&self, peer: NodeId, link_id: u64) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if links.get(&peer).is_some_and(|slot| slot.link_id == link_id) {
            links.remove(&peer);
        }
    }
}

/// What a mesh is made of.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// This node's handshake configuration (ID, cluster, secret, members).
    pub handshake: HandshakeConfig,
    /// Where to listen (ndb, sync), or `None` (entries).
    pub listen: Option<SocketAddr>,
    /// Peers to keep a dialed link with.
    pub dial: Vec<(NodeId, SocketAddr)>,
    /// Limits and timings.
    pub limits: MeshLimits,
}

/// A running mesh: send to peers; received messages go to the inbox given at start.
/// Its tasks end when the shutdown watch turns true.
#[derive(Clone)]
pub struct Mesh {
    shared: Arc<Shared>,
    local_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("node", &self.shared.node)
            .field("local_addr", &self.local_addr)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Mesh {
    /// Binds the listener (if any), then spawns the accept loop and one dialer per peer.
    pub async fn start(
        config: MeshConfig,
        inbox: Inbox,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Mesh, ClusterError> {
        let shared = Arc::new(Shared {
            node: config.handshake.node,
            refusals: RefusalLog::new(Duration::from_millis(config.limits.refusal_log_interval_ms)),
            handshake: config.handshake,
            limits: config.limits,
            inbox,
            links: Mutex::new(HashMap::new()),
            next_link_id: AtomicU64::new(1),
            counters: Counters::default(),
            shutdown,
        });
        let mut local_addr = None;
        if let Some(address) = config.listen {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| ClusterError::Io {
                    context: format!("cannot listen on {address}"),
                    source,
                })?;
            local_addr = listener.local_addr().ok();
            tokio::spawn(accept_loop(Arc::clone(&shared), listener));
        }
        for (peer, address) in config.dial {
            tokio::spawn(link::dial_loop(Arc::clone(&shared), peer, address));
        }
        Ok(Mesh { shared, local_addr })
    }

    /// The bound listen address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Queues `message` for `to`; drops it (counted) when there is no link, its queue is
    /// full, or the link's protocol version does not have it. The link's writer task encodes it, so a large message does not hold up the
    /// caller. A message to this node itself goes straight to the inbox.
    pub fn send(&self, to: NodeId, message: Message) {
        let counters = &self.shared.counters;
        if to == self.shared.node {
            if self.shared.inbox.try_send((to, message)).is_err() {
                counters
                    .frames_dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let links = self
            .shared
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let counter = match links.get(&to) {
            None => &counters.frames_dropped_no_link,
            Some(slot) if message_version(&message) > slot.version => {
                &counters.frames_dropped_old_peer
            }
            Some(slot) => match slot.frames.try_send(message) {
                Ok(()) => return,
                Err(_) => &counters.frames_dropped_queue_full,
            },
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a link with `peer` is up now.
    pub fn is_linked(&self, peer: NodeId) -> bool {
        self.link_version(peer).is_some()
    }

    /// The protocol version a link with `peer` speaks (what its handshake negotiated), or
    /// `None` while there is no link. During a rolling upgrade, a link between an upgraded
    /// node and one not yet upgraded shows the older node's version.
    pub fn link_version(&self, peer: NodeId) -> Option<u16> {
        let links = self
            .shared
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        links.get(&peer).map(|slot| slot.version)
    }

    /// Counters since start.
    pub fn stats(&self) -> MeshStats {
        let counters = &self.shared.counters;
        MeshStats {
            links_established: counters.links_established.load(Ordering::Relaxed),
            connections_refused: counters.connections_refused.load(Ordering::Relaxed),
            frames_dropped_queue_full: counters.frames_dropped_queue_full.load(Ordering::Relaxed),
            frames_dropped_no_link: counters.frames_dropped_no_link.load(Ordering::Relaxed),
            frames_unencodable: counters.frames_unencodable.load(Ordering::Relaxed),
            frames_dropped_old_peer: counters.frames_dropped_old_peer.load(Ordering::Relaxed),
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let permits = Arc::new(Semaphore::new(shared.limits.inbound_connections_max));
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let (socket, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            shared
                .counters
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            shared.refusals.log(remote, "too many connections", None);
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            link::accepted(shared, socket, remote).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests;
