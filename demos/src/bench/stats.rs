//! Measuring: the bench clock, timestamped payloads, latency recorders and the router's
//! CPU time and peak RSS read from `/proc`.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Highest latency the histograms hold, in nanoseconds (60 s); larger values saturate.
const LATENCY_MAX_NS: u64 = 60_000_000_000;
/// Significant figures kept by the histograms.
const LATENCY_SIGNIFICANT_FIGURES: u8 = 3;
/// Bytes of the send timestamp at the front of every payload.
pub const TIMESTAMP_BYTES: usize = 8;

/// Monotonic nanoseconds since the bench started ([`Clock::new`]), or since the Unix
/// epoch ([`Clock::shared`]); every task of the process shares one.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    /// The reading at `start`: 0, or the wall clock's nanoseconds since the Unix epoch.
    start_ns: u64,
}

impl Clock {
    /// A clock starting at 0 now.
    pub fn new() -> Self {
        Clock {
            start: Instant::now(),
            start_ns: 0,
        }
    }

    /// A clock whose readings are nanoseconds since the Unix epoch: the wall clock read
    /// once, then advanced by the monotonic clock. Load generators in several processes on
    /// one machine (the parts of a split row) can then subtract each other's timestamps;
    /// they differ by the difference of two wall-clock reads, microseconds.
    pub fn shared() -> Self {
        let start = Instant::now();
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            start,
            start_ns: u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// The clock a run uses: [`shared`](Self::shared) when it is one part of a split row.
    pub fn for_parts(parts: usize) -> Self {
        if parts > 1 {
            Clock::shared()
        } else {
            Clock::new()
        }
    }

    /// The current reading in nanoseconds.
    pub fn now_ns(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.start_ns.saturating_add(elapsed)
    }

    /// The instant at which the clock reads `ns` (its start for earlier readings).
    pub fn instant_at(&self, ns: u64) -> Instant {
        self.start + Duration::from_nanos(ns.saturating_sub(self.start_ns))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// A payload of `size_bytes` (at least [`TIMESTAMP_BYTES`]) carrying `sent_ns`.
pub fn payload(sent_ns: u64, size_bytes: usize) -> Vec<u8> {
    let mut bytes = vec![b'x'; size_bytes.max(TIMESTAMP_BYTES)];
    bytes[..TIMESTAMP_BYTES].copy_from_slice(&sent_ns.to_le_bytes());
    bytes
}

/// The send timestamp at the front of a payload.
pub fn payload_timestamp(payload: &[u8]) -> Option<u64> {
    let head = payload.first_chunk::<TIMESTAMP_BYTES>()?;
    Some(u64::from_le_bytes(*head))
}

/// The measurement window: warm-up excluded, nothing after the end counted.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Start of counting, clock nanoseconds.
    pub from_ns: u64,
    /// End of the run, clock nanoseconds.
    pub until_ns: u64,
}

impl Window {
    /// Window length in seconds.
    pub fn seconds(&self) -> f64 {
        (self.until_ns.saturating_sub(self.from_ns)) as f64 / 1e9
    }
}

/// Counts deliveries and records their latency; one per receiving task, merged at the end.
pub struct Recorder {
    window: Window,
    /// Deliveries inside the window.
    pub count: u64,
    /// Latency of deliveries inside the window, in nanoseconds.
    pub latency_ns: Histogram<u64>,
}

impl Recorder {
    /// An empty recorder for `window`.
    pub fn new(window: Window) -> Self {
        // Bounds are constants known to be valid (1 <= low, high >= 2 * low, sigfig <= 5).
        let latency_ns = Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGNIFICANT_FIGURES)
            .expect("constant histogram bounds are valid");
        Recorder {
            window,
            count: 0,
            latency_ns,
        }
    }

    /// Records a delivery at `now_ns` of a message sent at `sent_ns`.
    pub fn record(&mut self, now_ns: u64, sent_ns: u64) {
        if now_ns < self.window.from_ns || now_ns > self.window.until_ns {
            return;
        }
        self.count += 1;
        let latency = now_ns.saturating_sub(sent_ns).clamp(1, LATENCY_MAX_NS);
        self.latency_ns.saturating_record(latency);
    }

    /// Adds another recorder's counts.
    pub fn merge(&mut self, other: &Recorder) {
        self.count += other.count;
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.latency_ns.add(&other.latency_ns);
    }
}

/// CPU time and peak memory of the router process, from `/proc/PID`.
#[derive(Debug, Clone, Copy)]
pub struct RouterProbe {
    pid: u32,
    cpu_ticks_start: u64,
    ticks_per_second: u64,
}

/// What a [`RouterProbe`] measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouterUsage {
    /// User + system CPU seconds used during the run.
    pub cpu_seconds: f64,
    /// Peak resident set (VmHWM) in KiB.
    pub peak_rss_kib: u64,
    /// Current resident set (VmRSS) in KiB.
    pub rss_kib: u64,
}

impl RouterProbe {
    /// Starts measuring `pid`: resets its peak RSS (where permitted) and reads its CPU time.
    pub fn start(pid: u32) -> std::io::Result<Self> {
        // Writing 5 to clear_refs resets VmHWM; not permitted for foreign processes (ignored).
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        Ok(RouterProbe {
            pid,
            cpu_ticks_start: cpu_ticks(pid)?,
            ticks_per_second: ticks_per_second(),
        })
    }

    /// CPU seconds since [`start`](Self::start) and the memory figures now.
    pub fn usage(&self) -> std::io::Result<RouterUsage> {
        let ticks = cpu_ticks(self.pid)?.saturating_sub(self.cpu_ticks_start);
        let (peak_rss_kib, rss_kib) = memory_kib(self.pid)?;
        Ok(RouterUsage {
            cpu_seconds: ticks as f64 / self.ticks_per_second as f64,
            peak_rss_kib,
            rss_kib,
        })
    }
}

/// The machine's CPU time stolen by the hypervisor (other guests) during a run, from the
/// `cpu` line of `/proc/stat`. On a shared VM this is what makes one run disagree with the
/// next: a run with much steal measured the neighbours as well as the router.
#[derive(Debug, Clone, Copy)]
pub struct StealProbe {
    steal_start: u64,
    total_start: u64,
}

impl StealProbe {
    /// Starts counting; `None` where `/proc/stat` has no steal field.
    pub fn start() -> Option<Self> {
        let (steal_start, total_start) = steal_and_total()?;
        Some(Self {
            steal_start,
            total_start,
        })
    }

    /// Stolen time since [`start`](Self::start), in percent of all CPU time.
    pub fn percent(&self) -> Option<f64> {
        let (steal, total) = steal_and_total()?;
        let total = total.checked_sub(self.total_start).filter(|t| *t > 0)?;
        Some(steal.saturating_sub(self.steal_start) as f64 * 100.0 / total as f64)
    }
}

/// (steal, user + nice + system + idle + iowait + irq + softirq + steal) from /proc/stat.
fn steal_and_total() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields.take(8).map_while(|f| f.parse().ok()).collect();
    if ticks.len() < 8 {
        return None;
    }
    Some((ticks[7], ticks.iter().sum()))
}

/// utime + stime of `pid`, in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: u32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields after its ')' are plain.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // after_name starts at field 3 (state), so field N is at index N - 3.
    Ok(field(14 - 3) + field(15 - 3))
}

/// (VmHWM, VmRSS) of `pid` in KiB.
fn memory_kib(pid: u32) -> std::io::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let read = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((read("VmHWM:"), read("VmRSS:")))
}

/// `getconf CLK_TCK`, or Linux's usual 100.
fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let bytes = payload(123_456_789, 100);
        assert_eq!(bytes.len(), 100);
        assert_eq!(payload_timestamp(&bytes), Some(123_456_789));
        assert_eq!(payload(1, 2).len(), TIMESTAMP_BYTES);
        assert_eq!(payload_timestamp(b"short"), None);
    }

    #[test]
    fn recorder_counts_only_inside_window() {
        let mut recorder = Recorder::new(Window {
            from_ns: 100,
            until_ns: 200,
        });
        recorder.record(50, 0);
        recorder.record(150, 100);
        recorder.record(250, 100);
        assert_eq!(recorder.count, 1);
        assert_eq!(recorder.latency_ns.len(), 1);
    }

    #[test]
    fn steal_is_the_eighth_field_of_the_cpu_line() {
        let line = "cpu  100 5 50 800 10 1 2 32 0 0";
        assert_eq!(parse_cpu_line(line), Some((32, 1000)));
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(parse_cpu_line("cpu 1 2 3"), None);
        let probe = StealProbe::start().expect("Linux /proc/stat has a steal field");
        let percent = probe.percent().unwrap_or(0.0);
        assert!((0.0..=100.0).contains(&percent), "{percent}");
    }

    #[test]
    fn probe_reads_own_process() {
        let probe = RouterProbe::start(std::process::id()).unwrap();
        let usage = probe.usage().unwrap();
        assert!(usage.peak_rss_kib > 0);
        assert!(usage.rss_kib > 0);
    }
}
