//! fox-bench: load generator for foxrouter and its peers (Mosquitto, rumqttd, Crossbar,
//! NATS JetStream).
//!
//! ```text
//! fox-bench run --target mqtt://127.0.0.1:1883 --scenario pairs --qos 1 --connections 1
//! fox-bench run --target ws+msgpack://127.0.0.1:8080/ws --scenario rpc --inflight 16
//! fox-bench run --target jetstream://127.0.0.1:4222/FOXBENCH?replicas=3 --scenario acked
//! fox-bench stream --target jetstream://127.0.0.1:4222   # create the stream, wait for it
//! fox-bench report results.jsonl        # one table per scenario, RATIO lines
//! fox-bench combine --label foxrouter --key acked-K16 a.json b.json c.json
//! ```

use std::io::BufRead;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use fox_demos::bench::{self, report, Config, Scenario, Target};
use fox_mqtt_proto::{Protocol, QoS};

#[derive(Parser)]
#[command(
    name = "fox-bench",
    about = "WAMP / MQTT load generator; NATS JetStream (jetstream://) as a peer for `acked`"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario against one router and print its row.
    Run(RunArgs),
    /// Print tables and RATIO lines from JSON lines written by `run --json`.
    Report {
        /// JSON-lines files.
        files: Vec<std::path::PathBuf>,
        /// All scenario keys in one table (a key column first), then the RATIO lines.
        #[arg(long)]
        one_table: bool,
    },
    /// Make one JSON row of the `run --json` rows of load generators that ran at once
    /// against one system: msgs/s summed, p50 the median of their p50s, p99 the worst.
    Combine {
        /// Label of the combined row (`foxrouter` is what RATIO lines divide by).
        #[arg(long)]
        label: String,
        /// Scenario key of the combined row (rows with the same key are compared).
        #[arg(long)]
        key: String,
        /// CPU seconds of the system's processes during the run (the cpu_s column).
        #[arg(long)]
        cpu_seconds: Option<f64>,
        /// Free text for the row's note column (e.g. CPU seconds per role).
        #[arg(long)]
        note: Option<String>,
        /// Files holding one `run --json` row each (the last JSON line counts); an empty
        /// or missing file makes the combined row an error row.
        files: Vec<std::path::PathBuf>,
    },
    /// NATS JetStream: create the target's stream if missing and wait until it has a
    /// leader and current replicas; prints `STREAM <name> replicas <n> leader <server> ...`.
    Stream {
        /// jetstream://HOST:PORT[/STREAM][?replicas=N] (defaults: FOXBENCH, 3).
        #[arg(long)]
        target: String,
        /// Seconds to wait for the cluster and the stream.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// mqtt://HOST:PORT, ws+json://HOST:PORT/ws, ws+msgpack://…, rs+msgpack://HOST:PORT, or
    /// the NATS JetStream peer jetstream://HOST:PORT[/STREAM][?replicas=N] (acked only:
    /// publish and wait for the stream's PubAck; stream FOXBENCH with 3 replicas by default,
    /// created if missing, subjects `<stream in lower case>.>`).
    #[arg(long)]
    target: String,
    /// Scenario.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Router name in reports.
    #[arg(long, default_value = "router")]
    label: String,
    /// Seconds of measured load (after warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before counting starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// N: publishers (fanin), subscribers (fanout), pairs, callers (rpc), connections (acked, idle).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// K: requests in flight per connection (acked, rpc, MQTT QoS 1/2).
    #[arg(long, default_value_t = 16)]
    inflight: usize,
    /// Payload bytes (at least 8).
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Fixed total send rate, messages per second (latency under load); default: flat out.
    #[arg(long)]
    rate: Option<u64>,
    /// MQTT QoS (0, 1, 2).
    #[arg(long, default_value_t = 0)]
    qos: u8,
    /// MQTT version: 3.1.1 or 5.
    #[arg(long, default_value = "3.1.1")]
    mqtt_version: String,
    /// WAMP realm.
    #[arg(long, default_value = "realm1")]
    realm: String,
    /// Callees registering the rpc procedure (round robin when more than one).
    #[arg(long, default_value_t = 1)]
    callees: usize,
    /// WAMP acked: one more session subscribes to the topic and records each event's
    /// latency from its publish (`delivery_p50_us`, `delivery_p99_us` in the row).
    #[arg(long)]
    delivery: bool,
    /// Router process ID: adds its CPU seconds and peak RSS.
    #[arg(long)]
    router_pid: Option<u32>,
    /// Idle scenario: spread connections over 127.0.0.2 .. 127.0.0.(1+N).
    #[arg(long, default_value_t = 8)]
    source_ips: u8,
    /// Runtime worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// This process's part of a row run by several load generators at once, PART/PARTS
    /// (e.g. 0/2 and 1/2, started together with the same --topic-prefix): roles of one
    /// connection (fan-out's publisher, fan-in's subscriber) run in part 0, roles of several
    /// (subscribers, publishers, pairs) are dealt round robin; timestamps are then read
    /// from a wall-clock-based clock so parts can time each other's messages. Not for rpc.
    #[arg(long, default_value = "0/1")]
    part: String,
    /// Topic name component shared by the parts of a split row (letters and digits;
    /// default: a random one per run).
    #[arg(long)]
    topic_prefix: Option<String>,
    /// Print one JSON object instead of a table row.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::Report { files, one_table } => print_report(&files, one_table),
        Command::Combine {
            label,
            key,
            cpu_seconds,
            note,
            files,
        } => print_combined(&files, &label, &key, cpu_seconds, note),
        Command::Stream { target, timeout } => ensure_stream(&target, timeout),
    }
}

fn ensure_stream(target: &str, timeout_seconds: f64) -> anyhow::Result<()> {
    let target = match Target::parse(target).map_err(anyhow::Error::msg)? {
        Target::JetStream(target) => target,
        _ => anyhow::bail!("stream needs a jetstream:// target"),
    };
    anyhow::ensure!(
        timeout_seconds > 0.0 && timeout_seconds <= 600.0,
        "--timeout must be in (0, 600]"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let timeout = Duration::from_secs_f64(timeout_seconds);
    let placement = runtime
        .block_on(bench::jetstream_load::ensure_stream(&target, timeout))
        .map_err(anyhow::Error::msg)?;
    println!("{placement}");
    Ok(())
}

fn print_combined(
    files: &[std::path::PathBuf],
    label: &str,
    key: &str,
    cpu_seconds: Option<f64>,
    note: Option<String>,
) -> anyhow::Result<()> {
    let mut parts = Vec::new();
    for path in files {
        let last = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| {
                text.lines()
                    .rev()
                    .find(|line| line.trim_start().starts_with('{'))
                    .map(str::to_owned)
            })
            .and_then(|line| serde_json::from_str(&line).ok());
        parts.push(last.unwrap_or_else(
            || serde_json::json!({"error": format!("no JSON row in {}", path.display())}),
        ));
    }
    let mut row = report::combine(&parts, label, key, cpu_seconds);
    let note = [note, report::delivery_note(&row)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ");
    if let (false, Some(fields)) = (note.is_empty(), row.as_object_mut()) {
        fields.insert("note".into(), note.into());
    }
    println!("{row}");
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let outcome = runtime.block_on(bench::run(config));
    let json = outcome.to_json();
    if args.json {
        println!("{json}");
    } else {
        println!(
            "== {}\n{}\n{}",
            outcome.config.scenario_key(),
            report::HEADER,
            report::row(&json, 1)
        );
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn config(args: &RunArgs) -> anyhow::Result<Config> {
    let qos = match args.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        other => anyhow::bail!("--qos {other}: expected 0, 1 or 2"),
    };
    let mqtt_protocol = match args.mqtt_version.as_str() {
        "3.1.1" | "3" | "4" => Protocol::V3_1_1,
        "5" | "5.0" => Protocol::V5,
        other => anyhow::bail!("--mqtt-version {other}: expected 3.1.1 or 5"),
    };
    anyhow::ensure!(
        args.duration > 0.0 && args.duration <= 3600.0,
        "--duration must be in (0, 3600]"
    );
    anyhow::ensure!(
        args.warmup >= 0.0 && args.warmup <= 600.0,
        "--warmup must be in [0, 600]"
    );
    let part = parse_part(&args.part)?;
    if let Some(prefix) = &args.topic_prefix {
        anyhow::ensure!(
            !prefix.is_empty() && prefix.chars().all(|c| c.is_ascii_alphanumeric()),
            "--topic-prefix {prefix}: letters and digits only"
        );
    }
    Ok(Config {
        target: Target::parse(&args.target).map_err(anyhow::Error::msg)?,
        label: args.label.clone(),
        scenario: args.scenario,
        duration: Duration::from_secs_f64(args.duration),
        warmup: Duration::from_secs_f64(args.warmup),
        connections: args.connections,
        inflight: args.inflight,
        payload_bytes: args.payload,
        rate: args.rate,
        qos,
        mqtt_protocol,
        realm: args.realm.clone(),
        callees: args.callees,
        delivery: args.delivery,
        router_pid: args.router_pid,
        source_ips: args.source_ips,
        threads: args.threads.max(1),
        part,
        topic_prefix: args.topic_prefix.clone(),
    })
}

/// `PART/PARTS` with PART < PARTS <= 16.
fn parse_part(text: &str) -> anyhow::Result<(usize, usize)> {
    let parsed = text
        .split_once('/')
        .and_then(|(part, parts)| Some((part.parse().ok()?, parts.parse().ok()?)));
    match parsed {
        Some((part, parts)) if part < parts && parts <= 16 => Ok((part, parts)),
        _ => anyhow::bail!("--part {text}: expected PART/PARTS, e.g. 1/2"),
    }
}

fn print_report(files: &[std::path::PathBuf], one_table: bool) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for path in files {
        let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            if line.trim_start().starts_with('{') {
                lines.push(
                    serde_json::from_str(&line)
                        .with_context(|| format!("{}: {line}", path.display()))?,
                );
            }
        }
    }
    if one_table {
        print!("{}", report::render_one_table(&lines));
    } else {
        print!("{}", report::render(&lines));
    }
    Ok(())
}
