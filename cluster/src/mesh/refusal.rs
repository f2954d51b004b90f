//! Refused connections are logged once per kind per interval, with a count of the
//! suppressed ones: a port scanner or a misconfigured node cannot flood the log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use fox_sequencer::wire::WireError;

/// Kinds are a closed set of `&'static str`, so the map stays small.
pub(super) struct RefusalLog {
    interval: Duration,
    last: Mutex<HashMap<&'static str, (Option<Instant>, u64)>>,
}

impl RefusalLog {
    pub(super) fn new(interval: Duration) -> RefusalLog {
        RefusalLog {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Logs a refused connection from `remote`, unless one of this kind was logged recently.
    pub(super) fn log(&self, remote: SocketAddr, kind: &'static str, error: Option<&str>) {
        let now = Instant::now();
        let suppressed = {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = last.entry(kind).or_insert((None, 0));
            if entry
                .0
                .is_some_and(|at| now.duration_since(at) < self.interval)
            {
                entry.1 += 1;
                return;
            }
            let suppressed = entry.1;
            *entry = (Some(now), 0);
            suppressed
        };
        tracing::warn!(
            %remote,
            kind,
            error = error.unwrap_or(""),
            suppressed_since_last = suppressed,
            "refused a node connection"
        );
    }
}

/// A short, stable name for a handshake failure.
pub(super) fn kind_of(error: &WireError) -> &'static str {
    match error {
        WireError::BadMagic | WireError::MalformedHandshake => "not a foxrouter node",
        WireError::BadProof => "wrong secret",
        WireError::UnknownNode(_) | WireError::WrongNode { .. } => "unknown node",
        WireError::WrongCluster => "wrong cluster",
        WireError::UnsupportedVersion { .. } => "no common version",
        _ => "handshake failed",
    }
}
