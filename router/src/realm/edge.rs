//! Time and randomness as the realm's cores take them: from their caller. The broker and
//! the dealer read no clock and draw no random number themselves (`router/clippy.toml`);
//! the realm passes them what its [`Edge`] says, so a test or a scenario run can drive
//! them with virtual time and a seed ([`SeededEdge`]).

// The edge itself: the one place the realm reads the clock and draws random numbers.
#![allow(clippy::disallowed_methods)]

use std::sync::atomic::{AtomicU64, Ordering};

/// Where a realm gets the time and its random numbers.
pub trait Edge: Send + Sync + std::fmt::Debug {
    /// Unix milliseconds now (for timestamps).
    fn now_ms(&self) -> u64;
    /// Milliseconds on a clock that never goes back (for timeouts).
    fn monotonic_ms(&self) -> u64;
    /// A random number (the dealer's random invocation policy).
    fn draw(&self) -> u64;
}

/// The machine's clock and the thread's random numbers.
#[derive(Debug, Default)]
pub struct SystemEdge;

impl Edge for SystemEdge {
    fn now_ms(&self) -> u64 {
        crate::engine::unix_ms()
    }

    fn monotonic_ms(&self) -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64
    }

    fn draw(&self) -> u64 {
        rand::random()
    }
}

/// Virtual time and a seeded sequence of random numbers (splitmix64).
#[derive(Debug)]
pub struct SeededEdge {
    now_ms: AtomicU64,
    state: AtomicU64,
}

impl SeededEdge {
    /// Time starts at `start_ms`; the numbers follow from `seed`.
    pub fn new(seed: u64, start_ms: u64) -> Self {
        Self {
            now_ms: AtomicU64::new(start_ms),
            state: AtomicU64::new(seed),
        }
    }

    /// Moves time on by `ms`.
    pub fn advance(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Edge for SeededEdge {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    fn monotonic_ms(&self) -> u64 {
        self.now_ms()
    }

    fn draw(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// What a dealer decision takes from the edge: the time and one random number.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Unix milliseconds.
    pub ms: u64,
    /// A random number.
    pub draw: u64,
}

impl Now {
    /// The edge's time and a fresh draw.
    pub fn of(edge: &dyn Edge) -> Self {
        Self {
            ms: edge.now_ms(),
            draw: edge.draw(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_edge_repeats_its_numbers_and_moves_only_when_told() {
        let (a, b) = (SeededEdge::new(7, 1_000), SeededEdge::new(7, 1_000));
        let first: Vec<u64> = (0..4).map(|_| a.draw()).collect();
        assert_eq!(first, (0..4).map(|_| b.draw()).collect::<Vec<_>>());
        assert_ne!(first[0], first[1]);
        assert_eq!(a.now_ms(), 1_000);
        a.advance(250);
        assert_eq!(a.now_ms(), 1_250);
    }
}
