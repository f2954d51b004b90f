//! `resource-lock`: one worker of the resource-lock demo band.
//!
//! Each worker takes a mutex on a retained key with fox-wamp's options
//! (`retain, when: null, watch: true, will: null`), holds it, releases it by publishing no
//! arguments, pauses, and tries again. It prints one line per change, with a Unix timestamp in
//! milliseconds, its name and its PID:
//!
//! ```text
//! 1795315127123 worker-1 pid=4242 LOCKED
//! 1795315129125 worker-1 pid=4242 UNLOCKED
//! ```
//!
//! UNLOCKED is printed before the release is sent, so in a correct band every LOCKED comes at
//! or after the previous holder's UNLOCKED. A worker killed while holding the lock never
//! releases it: its will (null) clears the key when its connection drops, and the next
//! waiting worker gets it. A worker whose connection drops while it holds the lock (its
//! router, or a cluster entry, was killed) prints LOST at once and exits (supervisord starts
//! it again): the lock was its session's, and its will hands it on.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use fox_demos::wamp::{Transport, WampClient};
use fox_wamp_proto::{Dict, Serializer, Value};

/// A worker that locks, holds, unlocks and retries.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// The router's WebSocket address (WAMP at /ws).
    #[arg(long, default_value = "127.0.0.1:8080", env = "FOX_WS")]
    router: String,
    /// Realm.
    #[arg(long, default_value = "realm1")]
    realm: String,
    /// The retained key that is the lock.
    #[arg(long, default_value = "demo.resource.lock")]
    key: String,
    /// This worker's name in the output.
    #[arg(long, env = "FOX_WORKER")]
    name: Option<String>,
    /// How long the lock is held, in milliseconds.
    #[arg(long, default_value_t = 2000, env = "FOX_HOLD_MS")]
    hold_ms: u64,
    /// Pause after releasing, in milliseconds.
    #[arg(long, default_value_t = 500, env = "FOX_PAUSE_MS")]
    pause_ms: u64,
    /// Stop after this many rounds (0: run until killed).
    #[arg(long, default_value_t = 0)]
    rounds: u64,
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

async fn connect(args: &Args) -> anyhow::Result<WampClient> {
    // The router may still be starting (supervisord starts everything at once).
    let mut last_error = None;
    for _ in 0..100 {
        let transport = Transport::WebSocket(Serializer::Json);
        match WampClient::connect(&args.router, &args.realm, transport).await {
            Ok(mut client) => {
                client.join(None).await.context("join")?;
                return Ok(client);
            }
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(anyhow::anyhow!(
        "cannot reach the router at {}: {last_error:?}",
        args.router
    ))
}

fn options(lock: bool) -> Dict {
    let mut options = Dict::new();
    options.insert("acknowledge".into(), Value::Bool(true));
    options.insert("retain".into(), Value::Bool(true));
    if lock {
        options.insert("when".into(), Value::Null);
        options.insert("watch".into(), Value::Bool(true));
        options.insert("will".into(), Value::Null);
    }
    options
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pid = std::process::id();
    let name = args.name.clone().unwrap_or_else(|| format!("worker-{pid}"));
    let client = connect(&args).await?;
    let mut round = 0;
    while args.rounds == 0 || round < args.rounds {
        round += 1;
        let holder = vec![Value::from(name.as_str())];
        client
            .publish(&args.key, holder, Dict::new(), options(true))
            .await
            .context("lock")?;
        println!("{} {name} pid={pid} LOCKED", now_ms());
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(args.hold_ms)) => {}
            () = client.closed() => {
                // The lock was held by this session (its will frees it): it is gone now.
                println!("{} {name} pid={pid} LOST", now_ms());
                anyhow::bail!("connection to the router lost while holding the lock");
            }
        }
        println!("{} {name} pid={pid} UNLOCKED", now_ms());
        client
            .publish(&args.key, Vec::new(), Dict::new(), options(false))
            .await
            .context("unlock")?;
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }
    Ok(())
}
