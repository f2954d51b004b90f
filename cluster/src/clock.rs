//! The drivers' clock: Unix milliseconds that never go back.
//!
//! The state machines need a non-decreasing `now_ms`, and the sync leader's time floor
//! (`PermanentId::floor_at`) wants Unix milliseconds. So: the wall clock read once at
//! start, advanced by the monotonic clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A monotonic Unix-milliseconds clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    start_unix_ms: u64,
}

impl Clock {
    /// A clock reading the wall time now.
    pub fn new() -> Clock {
        // A wall clock before 1970 reads as 0: IDs stay monotonic, only their time reading suffers.
        let start_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        Clock {
            start: Instant::now(),
            start_unix_ms,
        }
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> u64 {
        self.start_unix_ms + self.start.elapsed().as_millis() as u64
    }

    /// The instant at which `now_ms()` reads `unix_ms`.
    pub fn instant_at(&self, unix_ms: u64) -> Instant {
        let offset_ms = unix_ms.saturating_sub(self.start_unix_ms);
        self.start + Duration::from_millis(offset_ms)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
