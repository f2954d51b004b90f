//! The errors of this crate: one for running nodes, one for publishing through an entry.

use std::path::PathBuf;

use crate::config::{ConfigError, Role};

/// Why a node could not start or had to stop.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `cluster.toml` is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The node's store failed (disk, RocksDB lock held by another process, ...).
    #[error("store: {0}")]
    Store(#[from] fox_storage::StoreError),
    /// What is on disk does not decode: damage or a bug, never a panic.
    #[error("corrupt {what} in the store: {reason}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The stored Raft voters differ from `cluster.toml` (membership changes are not supported).
    #[error("the store was written for sync voters {stored:?}, cluster.toml has {configured:?}")]
    MembershipChanged {
        /// Voters on disk.
        stored: Vec<u64>,
        /// Voters in the file.
        configured: Vec<u64>,
    },
    /// No node with this ID in `cluster.toml`.
    #[error("node {0} is not in the cluster file")]
    UnknownNode(u32),
    /// The node has another role than the caller can run.
    #[error("node {id} has role {role:?}: {hint}")]
    WrongRole {
        /// The node.
        id: u32,
        /// Its role.
        role: Role,
        /// What to do instead.
        hint: &'static str,
    },
    /// A socket could not be bound or another OS call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A path in `cluster.toml` is missing.
    #[error("node {id} has no data directory")]
    NoDataDirectory {
        /// The node.
        id: u32,
    },
    /// A task of the node ended unexpectedly.
    #[error("node task failed: {0}")]
    Task(String),
    /// The data directory cannot be created.
    #[error("cannot create {path}: {source}")]
    DataDirectory {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Runs `work` on tokio's blocking pool (disk reads, fsyncs, hashing); a task that
/// panicked or was cancelled is a [`ClusterError::Task`].
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ClusterError> + Send + 'static,
) -> Result<T, ClusterError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) => Err(ClusterError::Task(error.to_string())),
    }
}

/// Why a publish through an [`EntryHandle`](crate::EntryHandle) got no permanent ID.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// No decision within the publish timeout (a quorum of ndb or sync is unreachable).
    /// The outcome is unknown: the message may still be ordered later and show up in the
    /// log; a publisher that retries may then see it twice.
    #[error("no permanent ID within {timeout_ms} ms (outcome unknown)")]
    Timeout {
        /// The timeout.
        timeout_ms: u64,
    },
    /// The cluster decided nothing for this long while publishes waited: the entry gave
    /// them all up at once and started afresh (`EntryOptions::stall_reset_ms`). The outcome
    /// is unknown, as after a timeout.
    #[error("the cluster decided nothing for {stalled_ms} ms (outcome unknown)")]
    Stalled {
        /// How long nothing was decided.
        stalled_ms: u64,
    },
    /// The segment was aborted: the message is not and will never be in the log.
    #[error("the cluster aborted the message's segment; it is not in the log")]
    Rejected,
    /// The publication is larger than a segment may be; nothing was sent.
    #[error("message of {bytes} bytes exceeds the cluster's segment limit of {bytes_max} bytes")]
    TooLarge {
        /// Its encoded size (upper bound).
        bytes: usize,
        /// The entry's `segment_bytes_max`.
        bytes_max: usize,
    },
    /// Too many publishes (or bytes of them) wait already; nothing was sent.
    #[error("entry overloaded: {queued} publishes wait already")]
    Overloaded {
        /// Publishes waiting.
        queued: usize,
    },
    /// The entry is shutting down.
    #[error("entry stopped")]
    Stopped,
}

/// Why a [`Subscription`](crate::Subscription) ended.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The subscriber fell more than its queue behind; resubscribe with `after = last`.
    #[error("subscriber lagged; resubscribe after {last}")]
    Lagged {
        /// The last ID received.
        last: u64,
    },
    /// The entry is shutting down.
    #[error("entry stopped")]
    Stopped,
}
