//! ndb catch-up from a peer's checkpoint (protocol version 8), and the side that serves it.
//!
//! ```text
//! catching-up ndb (before its state machine starts)          serving ndb (its checkpoint task)
//!   STATUS_QUERY to every other ndb  ─────────────────────>   its driver answers STATUS
//!   a peer more than `checkpoint_after_resolutions` ahead?  no: start as usual
//!   CHECKPOINT_OPEN                  ─────────────────────>   RocksDB checkpoint in
//!                                                              data/.checkpoints/N (hard links)
//!                                    <─────────────────────   CHECKPOINT_FILES (name, size, and
//!                                                              SHA-256 of SSTs served before)
//!   data/.catchup: keep the staged files whose SHA-256 matches, drop the rest,
//!   resume a partial file (NAME.n<peer>-<size>.part) from its last whole MiB
//!   CHECKPOINT_READ (1 MiB each, 4 in flight, rate-bounded) ─> read one at a time, hashing
//!                                    <─────────────────────   CHECKPOINT_DATA (the last piece
//!                                                              of a file: with its SHA-256)
//!   per file: fsync, check SHA-256, rename the part file to NAME
//!   copy its own temporary segments into the staged store, write .catchup/COMPLETE
//!   swap: the old store's files go, the staged ones move in; reopen
//! then the state machine recovers from the new store and fetches what was decided since
//! (FETCH / SEGMENT_DATA), as any restarted ndb does.
//! ```
//!
//! A catching-up ndb answers STATUS_QUERY with its old position and stores nothing else
//! until the swap: it counts in no quorum (its KEEPs are dropped, entries have the others).
//! The serving side holds no state per puller: each read is answered on its own (a
//! file's running hash is the checkpoint's, not the puller's), a checkpoint nobody read
//! for a minute is deleted, and a puller that stops asking costs nothing. Every byte is
//! read once: the listing reads no file. A crash during the swap is finished at the next start (`finish_swap`), before
//! the store opens; a crash during the pull resumes from what is staged.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use fox_sequencer::config::wire_limits::{
    CHECKPOINT_CHUNK_BYTES_MAX, CHECKPOINT_FILE_NAME_MAX_BYTES,
};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::error::{blocking, ClusterError};

mod pull;
mod serve;
mod staging;

pub use pull::{CatchUp, Puller};
pub use serve::spawn_server;
pub use staging::finish_swap;

/// Where a serving ndb keeps its checkpoints, inside its data directory.
pub const CHECKPOINTS_DIR: &str = ".checkpoints";
/// Where a catching-up ndb stages the files it pulls, inside its data directory.
pub const STAGING_DIR: &str = ".catchup";
/// In the staging directory once every file is there: the list of their names.
const COMPLETE: &str = "COMPLETE";
/// In the staging directory: the peer the staged files came from (a resumed pull asks it
/// first, as its next checkpoint shares most files with the last one).
const SOURCE: &str = ".source";
const PART_SUFFIX: &str = ".part";
/// The first protocol version with the checkpoint messages.
pub const CHECKPOINT_PROTOCOL_VERSION: u16 = 8;
/// Reads a puller keeps in flight.
const READS_IN_FLIGHT: usize = 4;
/// A read unanswered this long is asked again.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Times in a row that reads are asked again without an answer in between before the
/// puller gives this peer up.
const READ_RETRIES_MAX: u32 = 3;
/// How long a checkpoint may take to be made and hashed (a big store takes seconds).
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts (each from the next candidate peer) before the puller gives up and the ndb
/// starts on its own store, to catch up record by record.
const ATTEMPTS_MAX: usize = 6;
/// Pause between attempts.
const ATTEMPT_PAUSE: Duration = Duration::from_millis(500);
/// A served checkpoint younger than this is handed out again to the ndb it was made for
/// (a resumed pull finds its files unchanged). Another ndb gets a new one: a checkpoint
/// made for an ndb that started with the cluster would hand a later, wiped one an empty
/// log to fetch segment by segment.
const SERVED_REUSE: Duration = Duration::from_secs(30);
/// A served checkpoint nobody read for this long is deleted.
const SERVED_IDLE: Duration = Duration::from_secs(60);
/// Checkpoints served at once at most (the oldest goes first).
const SERVED_MAX: usize = 2;
/// Requests waiting for the serving task at most; beyond, they are dropped (pullers ask
/// again).
pub const SERVER_QUEUE_MAX: usize = 64;
/// How often the status is published while pulling.
const STATUS_EVERY: Duration = Duration::from_millis(200);

/// How an ndb catches up from a peer's checkpoint.
#[derive(Debug, Clone)]
pub struct CatchUpOptions {
    /// Pull a checkpoint when a peer ndb has applied more than this many resolutions
    /// (segments decided) beyond this one at start: an empty or wiped ndb, or one long
    /// down. Fewer are fetched segment by segment once the node runs. Default 5,000.
    pub checkpoint_after_resolutions: u64,
    /// Bytes per second pulled at most, so that live traffic keeps its latency; 0: no
    /// bound. Default 100 MB/s.
    pub bytes_per_s: u64,
    /// How long to wait at start for the other ndb nodes' positions, in ms. Default 1000.
    pub probe_ms: u64,
}

impl Default for CatchUpOptions {
    fn default() -> Self {
        CatchUpOptions {
            checkpoint_after_resolutions: 5_000,
            bytes_per_s: 100_000_000,
            probe_ms: 1000,
        }
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}

/// Whether `name` may be a checkpoint file: a plain name of RocksDB's kind, never a
/// path, a hidden file or one of the puller's own names.
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= CHECKPOINT_FILE_NAME_MAX_BYTES
        && !name.starts_with('.')
        && !name.ends_with(PART_SUFFIX)
        && name != COMPLETE
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// SHA-256 of a file's content. Blocking.
fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().into())
}

/// Until `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A token bucket of bytes.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(bytes_per_s: u64) -> Bucket {
        let rate = bytes_per_s as f64;
        // No more at once than the reads in flight: a burst would be a spike on the peer.
        let burst = (READS_IN_FLIGHT * CHECKPOINT_CHUNK_BYTES_MAX) as f64;
        Bucket {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Takes `bytes` now (`None`), or says when they will be there.
    fn take(&mut self, bytes: u64) -> Option<Instant> {
        if self.rate <= 0.0 {
            return None;
        }
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        let bytes = bytes as f64;
        if self.tokens >= bytes {
            self.tokens -= bytes;
            return None;
        }
        Some(now + Duration::from_secs_f64((bytes - self.tokens) / self.rate))
    }
}

#[cfg(test)]
mod tests;
