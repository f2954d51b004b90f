//! One connection: the handshake, then a reader and a writer until either ends.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fox_sequencer::wire::{self, Established, Frame, Handshake, WireError, HANDSHAKE_MAX_BYTES};
use fox_sequencer::{Message, NodeId};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use super::refusal::kind_of;
use super::Shared;

/// Bytes read from a socket at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Frames written before one flush at most.
const WRITE_BATCH_FRAMES_MAX: usize = 256;
/// Reads one handshake may take at most (each brings at least one byte).
const HANDSHAKE_READS_MAX: usize = HANDSHAKE_MAX_BYTES + 1;
/// A link that lasted this long resets the reconnect backoff.
const STABLE_LINK: Duration = Duration::from_secs(2);

/// Why a link ended or never began.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed")]
    Closed,
    #[error("timed out")]
    Timeout,
    #[error("node inbox closed")]
    InboxClosed,
}

fn nonce() -> [u8; wire::NONCE_BYTES] {
    let mut nonce = [0u8; wire::NONCE_BYTES];
    rand::thread_rng().fill(&mut nonce[..]);
    nonce
}

/// Runs the handshake on `socket`: the peer, the version spoken and the bytes read past
/// its end.
async fn handshake(
    socket: &mut TcpStream,
    mut state: Handshake,
    first: Vec<u8>,
) -> Result<(Established, Vec<u8>), LinkError> {
    socket.write_all(&first).await?;
    let mut buffer = Vec::with_capacity(HANDSHAKE_MAX_BYTES);
    let mut chunk = [0u8; HANDSHAKE_MAX_BYTES];
    for _ in 0..HANDSHAKE_READS_MAX {
        let step = state.receive(&buffer)?;
        buffer.drain(..step.used);
        if !step.send.is_empty() {
            socket.write_all(&step.send).await?;
        }
        state = step.state;
        if let Some(established) = state.established() {
            return Ok((established, buffer));
        }
        if step.used > 0 {
            continue;
        }
        let read = socket.read(&mut chunk).await?;
        if read == 0 {
            return Err(LinkError::Closed);
        }
        buffer.extend_from_slice(&chunk[..read]);
        if buffer.len() > HANDSHAKE_MAX_BYTES * 2 {
            return Err(WireError::MalformedHandshake.into());
        }
    }
    Err(WireError::MalformedHandshake.into())
}

/// An inbound connection: handshake as responder (bounded in time), then the link.
pub(super) async fn accepted(shared: Arc<Shared>, mut socket: TcpStream, remote: SocketAddr) {
    let limit = Duration::from_millis(shared.limits.handshake_timeout_ms);
    let result = match Handshake::respond(shared.handshake.clone(), nonce()) {
        Ok(state) => timeout(limit, handshake(&mut socket, state, Vec::new()))
            .await
            .unwrap_or(Err(LinkError::Timeout)),
        Err(error) => Err(error.into()),
    };
    match result {
        Ok((established, leftover)) => {
            let (peer, version) = (established.peer, established.version);
            tracing::debug!(%peer, %remote, version, "inbound link up");
            let ended = run(&shared, socket, established, leftover).await;
            tracing::debug!(%peer, %remote, reason = %ended, "inbound link down");
        }
        Err(error) => refuse(&shared, remote, &error),
    }
}

fn refuse(shared: &Shared, remote: SocketAddr, error: &LinkError) {
    shared
        .counters
        .connections_refused
        .fetch_add(1, Ordering::Relaxed);
    let kind = match error {
        LinkError::Wire(wire) => kind_of(wire),
        LinkError::Timeout => "handshake timeout",
        _ => "closed during handshake",
    };
    shared.refusals.log(remote, kind, Some(&error.to_string()));
}

/// Keeps a link with `peer` up until shutdown: dial, handshake, run, back off, again.
pub(super) async fn dial_loop(shared: Arc<Shared>, peer: NodeId, address: SocketAddr) {
    let mut shutdown = shared.shutdown.clone();
    let mut backoff_ms = shared.limits.backoff_min_ms;
    let mut logged_down = false;
    // Runs until shutdown; each turn waits at least the jittered backoff.
    loop {
        let started = Instant::now();
        let attempt = dial_once(&shared, peer, address);
        let outcome = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            outcome = attempt => outcome,
        };
        match outcome {
            Ok(ended) => {
                tracing::debug!(%peer, %address, reason = %ended, "link down");
                logged_down = false;
            }
            Err(error) if !logged_down => {
                tracing::info!(%peer, %address, %error, "cannot link (retrying quietly)");
                logged_down = true;
            }
            Err(_) => {}
        }
        if started.elapsed() >= STABLE_LINK {
            backoff_ms = shared.limits.backoff_min_ms;
        }
        let delay_ms = rand::thread_rng().gen_range(backoff_ms / 2..=backoff_ms.max(1));
        backoff_ms = (backoff_ms * 2).min(shared.limits.backoff_max_ms);
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
        }
    }
}

/// One connection attempt: `Err` if it never linked, else why the link ended.
async fn dial_once(
    shared: &Arc<Shared>,
    peer: NodeId,
    address: SocketAddr,
) -> Result<LinkError, LinkError> {
    let limit = Duration::from_millis(shared.limits.handshake_timeout_ms);
    let (state, hello) = Handshake::initiate(shared.handshake.clone(), peer, nonce())?;
    let connect = async {
        let mut socket = TcpStream::connect(address).await?;
        socket.set_nodelay(true)?;
        let (established, leftover) = handshake(&mut socket, state, hello).await?;
        Ok::<_, LinkError>((socket, established, leftover))
    };
    let (socket, established, leftover) = timeout(limit, connect)
        .await
        .unwrap_or(Err(LinkError::Timeout))?;
    let version = established.version;
    tracing::debug!(%peer, %address, version, "outbound link up");
    Ok(run(shared, socket, established, leftover).await)
}

/// Runs an established link until it fails, idles out, or the node stops.
async fn run(
    shared: &Arc<Shared>,
    socket: TcpStream,
    established: Established,
    leftover: Vec<u8>,
) -> LinkError {
    let _ = socket.set_nodelay(true);
    let peer = established.peer;
    let (frames_sender, frames) = mpsc::channel(shared.limits.peer_queue_frames_max);
    let link_id = shared.register(peer, frames_sender, established.version);
    // Unregisters also when this future is dropped (the dialer stops at shutdown).
    let _registered = Registered {
        shared,
        peer,
        link_id,
    };
    let (reader, writer) = socket.into_split();
    let mut shutdown = shared.shutdown.clone();
    tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => LinkError::Closed,
        ended = read_loop(shared, reader, peer, leftover) => ended,
        ended = write_loop(shared, writer, frames) => ended,
    }
}

struct Registered<'a> {
    shared: &'a Shared,
    peer: NodeId,
    link_id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shared.unregister(self.peer, self.link_id);
    }
}

async fn read_loop(
    shared: &Shared,
    mut reader: OwnedReadHalf,
    peer: NodeId,
    mut buffer: Vec<u8>,
) -> LinkError {
    let limit = shared.limits.frame_size_max_bytes;
    let idle = Duration::from_millis(shared.limits.idle_timeout_ms);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    // Runs for the life of the link; every turn reads or ends it.
    loop {
        let mut used_total = 0;
        // Each turn consumes at least one frame header, so the bytes bound the loop.
        while let Some(rest) = buffer.get(used_total..) {
            match wire::decode_frame_or_heartbeat(rest, limit) {
                Ok(None) => break,
                Ok(Some((frame, used))) => {
                    used_total += used;
                    if let Frame::Message(message) = frame {
                        if shared.inbox.send((peer, message)).await.is_err() {
                            return LinkError::InboxClosed;
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%peer, %error, "bad frame from a cluster node; closing");
                    return error.into();
                }
            }
        }
        buffer.drain(..used_total);
        let read = match timeout(idle, reader.read(&mut chunk)).await {
            Err(_) => return LinkError::Timeout,
            Ok(Err(error)) => return error.into(),
            Ok(Ok(0)) => return LinkError::Closed,
            Ok(Ok(read)) => read,
        };
        buffer.extend_from_slice(&chunk[..read]);
    }
}

async fn write_loop(
    shared: &Shared,
    writer: OwnedWriteHalf,
    mut messages: mpsc::Receiver<Message>,
) -> LinkError {
    let heartbeat = Duration::from_millis(shared.limits.heartbeat_ms);
    let mut writer = BufWriter::new(writer);
    // Runs for the life of the link; every turn writes frames or a heartbeat.
    loop {
        let first = match timeout(heartbeat, messages.recv()).await {
            Err(_) => wire::HEARTBEAT_FRAME.to_vec(),
            Ok(None) => return LinkError::Closed,
            Ok(Some(message)) => encode(shared, &message),
        };
        if let Err(error) = writer.write_all(&first).await {
            return error.into();
        }
        for _ in 0..WRITE_BATCH_FRAMES_MAX {
            let Ok(message) = messages.try_recv() else {
                break;
            };
            if let Err(error) = writer.write_all(&encode(shared, &message)).await {
                return error.into();
            }
        }
        if let Err(error) = writer.flush().await {
            return error.into();
        }
    }
}

/// The frame of `message`; empty (nothing to write) if it does not encode, counted.
fn encode(shared: &Shared, message: &Message) -> Vec<u8> {
    match wire::encode_frame(message, shared.limits.frame_size_max_bytes) {
        Ok(frame) => frame,
        Err(error) => {
            tracing::warn!(kind = message.kind(), %error, "message not sent");
            let counter = &shared.counters.frames_unencodable;
            counter.fetch_add(1, Ordering::Relaxed);
            Vec::new()
        }
    }
}
