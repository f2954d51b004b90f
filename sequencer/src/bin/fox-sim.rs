//! `fox-sim`: run the deterministic cluster simulation over many seeds.

use clap::Parser;
use fox_sequencer::config::Mutation;
use fox_sequencer::sim::{run, SimConfig};
use std::time::Instant;

/// Run the cluster simulation; print failing seeds, a trace hash per seed, and a summary
/// with one digest of all the seeds' trace hashes (equal digests: equal trajectories, so
/// two builds are compared by one line).
#[derive(Parser, Debug)]
#[command(name = "fox-sim")]
struct Args {
    /// How many seeds to run (from --seed on).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Cluster sizes: entries,ndbs,syncs.
    #[arg(long, default_value = "3,3,3")]
    nodes: String,
    /// No network or crash faults.
    #[arg(long)]
    no_faults: bool,
    /// Messages per publisher in the safety phase (default: the seed's, 10 or on one
    /// seed in 100 a big workload of 1,000).
    #[arg(long)]
    messages: Option<u64>,
    /// Publishers per entry (default: the seed's, 2 or 4).
    #[arg(long)]
    publishers: Option<usize>,
    /// Safety phase length, simulated ms (default: the seed's, 300 or 1,000).
    #[arg(long)]
    safety_ms: Option<u64>,
    /// Liveness phase length, simulated ms (default: the seed's).
    #[arg(long)]
    liveness_ms: Option<u64>,
    /// Deliberate bug to check the checker: none, ack-before-vote, base-ignores-end,
    /// stored-quorum-of-one, sync-ignores-after, ndb-skips-digest-check,
    /// ndb-applies-out-of-order, deliver-before-vote, sync-aborts-every-segment.
    #[arg(long, default_value = "none")]
    mutation: String,
    /// Also print every violation of a failing seed (not only the first).
    #[arg(long)]
    verbose: bool,
    /// Print only failing seeds and the summary, not one line per passing seed.
    #[arg(long)]
    quiet: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sizes: Vec<usize> = args
        .nodes
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [entries, ndbs, syncs] = sizes[..] else {
        anyhow::bail!("--nodes wants E,N,S")
    };
    let mutation = match args.mutation.as_str() {
        "none" => Mutation::None,
        "ack-before-vote" => Mutation::AckBeforeVote,
        "base-ignores-end" => Mutation::BaseIgnoresPreviousEnd,
        "stored-quorum-of-one" => Mutation::StoredQuorumOfOne,
        "sync-ignores-after" => Mutation::SyncIgnoresAfter,
        "ndb-skips-digest-check" => Mutation::NdbSkipsDigestCheck,
        "ndb-applies-out-of-order" => Mutation::NdbAppliesOutOfOrder,
        "deliver-before-vote" => Mutation::DeliverBeforeVote,
        "sync-aborts-every-segment" => Mutation::SyncAbortsEverySegment,
        other => anyhow::bail!("unknown mutation {other}"),
    };
    // The binary is an edge: it measures its own wall-clock speed (seeds per second).
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let (mut passed, mut failed) = (0u64, 0u64);
    let (mut acked, mut votes, mut simulated_ms) = (0u64, 0u64, 0u64);
    let mut aborted = 0u64;
    // FNV-1a 64 over the seeds' trace hashes, in seed order.
    let mut trace_digest = 0xcbf2_9ce4_8422_2325u64;
    let (mut fsync_errors, mut clock_steps, mut corrupted) = (0u64, 0u64, 0u64);
    let mut ndb_wipes = 0u64;
    let (mut entries_killed, mut lease_expiries) = (0u64, 0u64);
    // Sync restarts from a snapshot, snapshots installed by followers, snapshots taken,
    // fills of the resolution log done; then the seeds that saw each.
    let mut snapshots = [0u64; 5];
    let mut seeds_with = [0u64; 5];
    let (mut published, mut rejected, mut crashes, mut partitions, mut sent, mut dropped) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for seed in args.seed..args.seed + args.seeds {
        let mut config = SimConfig::new(seed);
        config.entries = entries;
        config.ndbs = ndbs;
        config.syncs = syncs;
        config.faults = !args.no_faults;
        config.messages_per_publisher = args.messages.unwrap_or(config.messages_per_publisher);
        config.publishers_per_entry = args.publishers.unwrap_or(config.publishers_per_entry);
        config.safety_ms = args.safety_ms.unwrap_or(config.safety_ms);
        config.liveness_ms = args.liveness_ms.unwrap_or(config.liveness_ms);
        config.mutation = mutation;
        let report = run(&config);
        for byte in report.trace_hash.to_le_bytes() {
            trace_digest = (trace_digest ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        acked += report.acked;
        published += report.published;
        rejected += report.rejected;
        aborted += report.aborted_segments;
        crashes += report.crashes;
        partitions += report.partitions;
        sent += report.messages_sent;
        dropped += report.messages_dropped;
        fsync_errors += report.fsync_errors;
        clock_steps += report.clock_steps;
        ndb_wipes += report.ndb_wipes;
        corrupted += report.messages_corrupted;
        entries_killed += report.entries_killed;
        lease_expiries += report.lease_expiries;
        let counts = [
            report.sync_restarts_from_snapshot,
            report.sync_snapshots_installed,
            report.sync_snapshots_taken,
            report.sync_fills,
            report.sync_disk_reads,
        ];
        for ((total, seeds), count) in snapshots.iter_mut().zip(&mut seeds_with).zip(counts) {
            *total += count;
            *seeds += u64::from(count > 0);
        }
        votes += report.votes;
        simulated_ms += report.simulated_ms;
        if report.passed() {
            passed += 1;
            if !args.quiet {
                println!(
                    "seed {seed} ok hash {:016x} acked {} votes {}",
                    report.trace_hash, report.acked, report.votes
                );
            }
        } else {
            failed += 1;
            let first = report.violations.first().cloned().unwrap_or_default();
            println!(
                "seed {seed} FAILED hash {:016x}: {first} | reproduce: fox-sim --seeds 1 --seed {seed} --nodes {}{}{}{}{}{}{}",
                report.trace_hash,
                args.nodes,
                args.messages.map(|m| format!(" --messages {m}")).unwrap_or_default(),
                args.publishers.map(|p| format!(" --publishers {p}")).unwrap_or_default(),
                args.safety_ms.map(|s| format!(" --safety-ms {s}")).unwrap_or_default(),
                args.liveness_ms.map(|l| format!(" --liveness-ms {l}")).unwrap_or_default(),
                if args.no_faults { " --no-faults" } else { "" },
                if args.mutation == "none" { String::new() } else { format!(" --mutation {}", args.mutation) }
            );
            if args.verbose {
                for violation in &report.violations {
                    println!("  {violation}");
                }
            }
        }
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let seeds_per_s = (passed + failed) as f64 / elapsed_s.max(1e-9);
    let per_vote = acked as f64 / votes.max(1) as f64;
    let per_simulated_s = acked as f64 * 1000.0 / simulated_ms.max(1) as f64;
    println!("stats: {seeds_per_s:.1} seeds/s, {acked} acked, {per_vote:.2} acked per vote, {per_simulated_s:.0} acked per simulated s");
    println!(
        "faults: {crashes} crashes ({fsync_errors} after a failed fsync, {clock_steps} restarts with a stepped clock, {ndb_wipes} ndb disks lost, {entries_killed} entries killed for good with segments in flight), {lease_expiries} lease expiries passed on, {partitions} partitions, {dropped} of {sent} messages lost, {corrupted} damaged; {published} published, {rejected} rejected, {aborted} segments aborted"
    );
    println!(
        "snapshots: {} taken (seeds: {}), {} installed by lagging sync followers (seeds: {}), {} resolution fills from a peer (seeds: {}), {} sync restarts from a snapshot (seeds: {}), {} sync reads of resolutions from disk (seeds: {})",
        snapshots[2], seeds_with[2], snapshots[1], seeds_with[1], snapshots[3], seeds_with[3],
        snapshots[0], seeds_with[0], snapshots[4], seeds_with[4]
    );
    let last = args.seed + args.seeds;
    println!(
        "trace digest of seeds {}..{last}: {trace_digest:016x}",
        args.seed
    );
    println!("sim: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
