//! Publishes through an in-process `EntryHandle` into a running cluster and prints
//! acks/s and ack latency.
//!
//! ```sh
//! foxrouter cluster init /tmp/fox --entries 1
//! for id in 2 3 4 5 6 7; do foxrouter node --cluster /tmp/fox/cluster.toml --id $id & done
//! cargo run --release -p fox-cluster --example publish_bench -- /tmp/fox/cluster.toml 1 20000 256 100 3
//! #                                 cluster file, entry id, count, in flight, payload bytes, rounds
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use fox_cluster::{ClusterFile, EntryHandle, EntryOptions};
use fox_sequencer::Publication;
use tokio::sync::{Mutex, Semaphore};

fn argument(index: usize, default: u64) -> u64 {
    std::env::args()
        .nth(index)
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = std::env::args()
        .nth(1)
        .ok_or("usage: publish_bench CLUSTER_FILE [ENTRY_ID COUNT IN_FLIGHT PAYLOAD_BYTES]")?;
    let entry_id = argument(2, 1) as u32;
    let count = argument(3, 20_000);
    let in_flight = argument(4, 256) as usize;
    let payload_bytes = argument(5, 100) as usize;
    let (cluster, _) = ClusterFile::load(std::path::Path::new(&file))?;
    let entry = EntryHandle::start(&cluster, entry_id, EntryOptions::default()).await?;
    // Warm up: links, a sync leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sequence = 0;
    while entry.publish(publication(0, sequence, 1)).await.is_err() {
        sequence += 1;
        if Instant::now() > deadline {
            return Err("no ack within 30 s: is the cluster up?".into());
        }
    }
    let rounds = argument(6, 1);
    for round in 0..rounds {
        run_round(&entry, round, count, in_flight, payload_bytes).await?;
    }
    println!("entry links: {:?}", entry.mesh().stats());
    entry.stop().await;
    Ok(())
}

async fn run_round(
    entry: &EntryHandle,
    round: u64,
    count: u64,
    in_flight: usize,
    payload_bytes: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let permits = Arc::new(Semaphore::new(in_flight));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(count as usize)));
    let failures = Arc::new(Mutex::new(std::collections::BTreeMap::<String, u64>::new()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for sequence in 0..count {
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let sent = Instant::now();
        let decided = entry.publish(publication(1 + round, sequence, payload_bytes));
        let (latencies, failures) = (Arc::clone(&latencies), Arc::clone(&failures));
        tasks.spawn(async move {
            match decided.await {
                Ok(_) => latencies.lock().await.push(sent.elapsed()),
                Err(error) => *failures.lock().await.entry(error.to_string()).or_default() += 1,
            }
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let mut latencies = latencies.lock().await.clone();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{count} publishes of {payload_bytes} B, {in_flight} in flight: {:.0} acks/s, p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, failed {:?}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(0.999).as_secs_f64() * 1e3,
        *failures.lock().await
    );
    Ok(())
}

fn publication(publisher: u64, sequence: u64, payload_bytes: usize) -> Publication {
    Publication {
        publisher,
        sequence,
        payload: vec![0x5a; payload_bytes],
    }
}
