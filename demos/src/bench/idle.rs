//! The idle scenario, for MQTT and WAMP alike: N connections that log in (CONNECT /
//! CONNACK, HELLO / WELCOME) and then send nothing. Reports the router's RSS growth per
//! connection and how fast the logins completed while they arrived.
//!
//! The connections come from 127.0.0.2 .. 127.0.0.(1 + `source_ips`), so that N is not
//! capped by the ephemeral ports of one source address (about 28k on Linux). Every
//! connection is a file descriptor in this process and in the router: N is capped by
//! `ulimit -n` of both (bench/compare.sh raises the soft limit to the hard one).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::stats::RouterProbe;
use super::{Config, Measured};

/// Connection attempts running at once (stays under the listen backlog).
const CONNECTS_CONCURRENT_MAX: usize = 128;
/// Source addresses available (127.0.0.2 ..= 127.0.0.254).
const SOURCE_IPS_MAX: u8 = 253;
/// Time the router gets to settle before and after the connections are opened.
const SETTLE: Duration = Duration::from_secs(2);

/// The source address of the `i`-th connection.
pub fn source_ip(config: &Config, i: usize) -> IpAddr {
    let spread = usize::from(config.source_ips.clamp(1, SOURCE_IPS_MAX));
    // 2 + (i % spread) <= 2 + 252 = 254 fits a u8.
    let last_octet = u8::try_from(2 + i % spread).unwrap_or(2);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet))
}

/// Opens `config.connections` connections with `open(i, source_ip)` (which returns once
/// the login is answered), holds them, measures, and returns them with the figures (the
/// caller closes them).
pub async fn hold<C, F, Fut>(config: &Config, open: F) -> Result<(Vec<C>, Measured), String>
where
    C: Send + 'static,
    F: Fn(usize, IpAddr) -> Fut,
    Fut: Future<Output = Result<C, String>> + Send + 'static,
{
    let pid = config.router_pid.ok_or("idle needs --router-pid")?;
    tokio::time::sleep(SETTLE).await;
    let before = RouterProbe::start(pid)
        .and_then(|p| p.usage())
        .map_err(|e| e.to_string())?;
    let gate = Arc::new(Semaphore::new(CONNECTS_CONCURRENT_MAX));
    let mut set = JoinSet::new();
    let began = Instant::now();
    for i in 0..config.connections {
        let login = open(i, source_ip(config, i));
        let gate = gate.clone();
        set.spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            login.await
        });
    }
    let mut clients = Vec::with_capacity(config.connections);
    while let Some(joined) = set.join_next().await {
        clients.push(joined.map_err(|e| e.to_string())??);
    }
    let connect_seconds = began.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE.max(config.duration.min(Duration::from_secs(10)))).await;
    let after = RouterProbe::start(pid)
        .and_then(|p| p.usage())
        .map_err(|e| e.to_string())?;
    let connected = clients.len();
    let growth_bytes = after.rss_kib.saturating_sub(before.rss_kib) as f64 * 1024.0;
    let measured = Measured {
        idle_bytes_per_connection: Some(growth_bytes / connected.max(1) as f64),
        connects_per_second: Some(connected as f64 / connect_seconds.max(1e-9)),
        connected,
        ..Measured::default()
    };
    Ok((clients, measured))
}

/// How long an idle run may take beyond the usual setup deadline: logins at a slow
/// 1,000 per second.
pub fn extra_time(config: &Config) -> Duration {
    Duration::from_millis(config.connections as u64)
}
