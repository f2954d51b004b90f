//! New connections per second per source address (`limits.connection_rate_per_ip_max`):
//! a token bucket per IP, sans-IO (the caller passes the time).
//!
//! Each address may open `rate` connections at once, then `rate` per second. Buckets that
//! have filled up again are forgotten on the next sweep, so the table holds only the
//! addresses seen in the last second or so. Refusals are counted per address and reported
//! once per [`REPORT_INTERVAL`]: a flood gives one log line per address and interval, not
//! one per connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How often refusals of one address are reported.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// How often full buckets are dropped from the table.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A token bucket: `rate` tokens per second, holding at most `rate` (the burst).
/// Sans-IO: the caller passes the time.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` (at least 1) tokens per second at `now`.
    pub fn full(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate,
            updated: now,
        }
    }

    /// Adds what the time since the last refill earned; returns the tokens now (negative
    /// after a debt).
    pub fn refill(&mut self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.tokens
    }

    /// Takes `count` tokens, into debt if there are fewer.
    pub fn take(&mut self, count: f64) {
        self.tokens -= count;
    }

    /// When the bucket holds `level` tokens again (now if it does).
    pub fn when(&self, level: f64) -> Instant {
        let wait = ((level - self.tokens) / self.rate).max(0.0);
        self.updated + Duration::from_secs_f64(wait)
    }

    /// Whether it will have filled up by `now`.
    pub fn full_at(&self, now: Instant) -> bool {
        now >= self.when(self.rate)
    }
}

/// Events counted and reported at most once per [`REPORT_INTERVAL`], each report with the
/// count since the last one: a flood gives one log line per interval, not one per event.
#[derive(Debug, Default)]
pub struct Reports {
    reported: Option<Instant>,
    unreported: u64,
}

impl Reports {
    /// Counts one event at `now`; the count to report, when a report is due.
    pub fn count(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        let quiet = self
            .reported
            .is_some_and(|at| now.saturating_duration_since(at) < REPORT_INTERVAL);
        if quiet {
            return None;
        }
        self.reported = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }

    /// Events counted since the last report.
    pub fn unreported(&self) -> u64 {
        self.unreported
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: TokenBucket,
    refusals: Reports,
}

/// What to do with a new connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it.
    Accept,
    /// Close it; `report` carries the refusals of this address to log now (including
    /// this one), if it is time to report.
    Refuse {
        /// Refusals since the last report, when one is due.
        report: Option<u64>,
    },
}

/// Token buckets by source address.
#[derive(Debug)]
pub struct ConnectionRate {
    rate: u32,
    buckets: HashMap<IpAddr, Bucket>,
    swept: Option<Instant>,
}

impl ConnectionRate {
    /// `rate` connections per second per address (and a burst of as many).
    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
            swept: None,
        }
    }

    /// Decides on a connection from `ip` at `now`. Call [`sweep`](Self::sweep) first.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        let rate = self.rate;
        let bucket = self.buckets.entry(ip).or_insert_with(|| Bucket {
            tokens: TokenBucket::full(rate, now),
            refusals: Reports::default(),
        });
        if bucket.tokens.refill(now) >= 1.0 {
            bucket.tokens.take(1.0);
            return Verdict::Accept;
        }
        Verdict::Refuse {
            report: bucket.refusals.count(now),
        }
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Forgets addresses whose buckets are full again (at most once a second). Returns the
    /// refusals of forgotten addresses that were not reported yet, to log now.
    pub fn sweep(&mut self, now: Instant) -> Vec<(IpAddr, u64)> {
        let mut late = Vec::new();
        if self
            .swept
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_INTERVAL)
        {
            return late;
        }
        self.swept = Some(now);
        self.buckets.retain(|ip, bucket| {
            let full = bucket.tokens.full_at(now);
            if full && bucket.refusals.unreported() > 0 {
                late.push((*ip, bucket.refusals.unreported()));
            }
            !full
        });
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn a_burst_of_rate_then_rate_per_second_per_address() {
        let t0 = Instant::now();
        let mut limit = ConnectionRate::new(3);
        for _ in 0..3 {
            assert_eq!(limit.admit(A, t0), Verdict::Accept);
        }
        assert_eq!(
            limit.admit(A, t0),
            Verdict::Refuse { report: Some(1) },
            "the first refusal is reported"
        );
        assert_eq!(limit.admit(A, t0), Verdict::Refuse { report: None });
        // Another address has its own bucket.
        assert_eq!(limit.admit(B, t0), Verdict::Accept);
        // A third of a second later, one more token.
        let later = t0 + Duration::from_millis(340);
        assert_eq!(limit.admit(A, later), Verdict::Accept);
        assert_eq!(limit.admit(A, later), Verdict::Refuse { report: None });
        assert_eq!(limit.sweep(later), vec![], "A is not full again");
        // Refusals after the first report come with the next one, 10 s on...
        let much_later = t0 + REPORT_INTERVAL;
        for _ in 0..3 {
            assert_eq!(limit.admit(A, much_later), Verdict::Accept);
        }
        assert_eq!(
            limit.admit(A, much_later),
            Verdict::Refuse { report: Some(3) }
        );
        // ... or when the address is forgotten.
        assert_eq!(limit.admit(A, much_later), Verdict::Refuse { report: None });
        let quiet = much_later + Duration::from_secs(2);
        assert_eq!(limit.sweep(quiet), vec![(A, 1)]);
        assert_eq!(limit.tracked(), 0);
    }

    #[test]
    fn quiet_addresses_are_forgotten() {
        let t0 = Instant::now();
        let mut limit = ConnectionRate::new(10);
        for i in 0..100u8 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, i));
            assert_eq!(limit.admit(ip, t0), Verdict::Accept);
        }
        assert_eq!(limit.tracked(), 100);
        assert!(limit.sweep(t0 + Duration::from_secs(2)).is_empty());
        assert_eq!(limit.admit(A, t0 + Duration::from_secs(2)), Verdict::Accept);
        assert_eq!(limit.tracked(), 1, "only the address just seen");
    }
}
