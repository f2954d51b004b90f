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

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// Refusals not reported yet, and when the last report went out.
    refused: u64,
    reported: Option<Instant>,
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
    rate: f64,
    buckets: HashMap<IpAddr, Bucket>,
    swept: Option<Instant>,
}

impl ConnectionRate {
    /// `rate` connections per second per address (and a burst of as many).
    pub fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate.max(1)),
            buckets: HashMap::new(),
            swept: None,
        }
    }

    /// Decides on a connection from `ip` at `now`. Call [`sweep`](Self::sweep) first.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        let rate = self.rate;
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: rate,
            updated: now,
            refused: 0,
            reported: None,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Verdict::Accept;
        }
        bucket.refused += 1;
        let due = bucket
            .reported
            .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_INTERVAL);
        if !due {
            return Verdict::Refuse { report: None };
        }
        bucket.reported = Some(now);
        let report = std::mem::take(&mut bucket.refused);
        Verdict::Refuse {
            report: Some(report),
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
        let rate = self.rate;
        self.buckets.retain(|ip, bucket| {
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            let full = bucket.tokens + elapsed * rate >= rate;
            if full && bucket.refused > 0 {
                late.push((*ip, bucket.refused));
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
