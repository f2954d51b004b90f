//! fox-bench: drives one scenario against one router over real sockets and reports
//! delivered messages per second, end-to-end latency and the router's CPU and memory.
//!
//! Calling order: build a [`Config`], [`run`] it (bounded by `duration` plus a setup
//! deadline), print the [`Outcome`] as a table row or a JSON line; [`report`] turns the
//! JSON lines of several routers into one table per scenario with `RATIO` lines.
//!
//! Latency is end to end: every payload starts with the send time (nanoseconds of the
//! process-wide [`stats::Clock`]) and the receiving task subtracts it from its own clock
//! reading. In fixed-rate mode the send time is the *scheduled* one, so a stalled sender
//! does not hide the stall (no coordinated omission).

pub mod idle;
pub mod jetstream_load;
pub mod mqtt_load;
pub mod report;
pub mod stats;
pub mod wamp_load;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use stats::{Clock, Recorder, RouterProbe, RouterUsage, StealProbe, Window};

/// Time allowed for connecting, subscribing and registering before the load starts.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed after the end of the window for tasks to stop.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// N publishers, one subscriber.
    Fanin,
    /// One publisher, N subscribers.
    Fanout,
    /// N independent publisher/subscriber pairs.
    Pairs,
    /// N callers, K calls in flight each, `callees` callees (WAMP only).
    Rpc,
    /// N publishers with acknowledgement (WAMP acknowledge, MQTT QoS 1/2), K in flight each.
    Acked,
    /// N idle connections: router RSS per connection and logins per second.
    Idle,
}

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// MQTT over TCP.
    Mqtt(SocketAddr),
    /// WAMP (URL as given, transport and serializer).
    Wamp(String, crate::wamp::Transport),
    /// NATS JetStream (a peer, not foxrouter): a stream with replicas, acked only.
    JetStream(jetstream_load::JetStreamTarget),
}

impl Target {
    /// Parses `mqtt://HOST:PORT`, `ws+json://HOST:PORT/ws`, `ws+msgpack://…`, `ws+cbor://…`,
    /// `rs+msgpack://HOST:PORT`, `rs+json://…`, `rs+cbor://…`, and the NATS JetStream peer
    /// `jetstream://HOST:PORT[/STREAM][?replicas=N]`.
    pub fn parse(text: &str) -> Result<Target, String> {
        use crate::wamp::Transport;
        use fox_wamp_proto::Serializer;
        let (scheme, rest) = text.split_once("://").ok_or("target needs a scheme://")?;
        if scheme == "mqtt" {
            let addr = rest
                .trim_end_matches('/')
                .parse()
                .map_err(|e| format!("{rest}: {e}"))?;
            return Ok(Target::Mqtt(addr));
        }
        if scheme == "jetstream" {
            return jetstream_load::JetStreamTarget::parse(rest).map(Target::JetStream);
        }
        let (transport, serializer) = scheme
            .split_once('+')
            .ok_or("scheme is mqtt, ws+SER, rs+SER or jetstream")?;
        let serializer = match serializer {
            "json" => Serializer::Json,
            "msgpack" => Serializer::MsgPack,
            "cbor" => Serializer::Cbor,
            other => return Err(format!("unknown serializer {other}")),
        };
        match transport {
            "ws" => Ok(Target::Wamp(
                format!("ws://{rest}"),
                Transport::WebSocket(serializer),
            )),
            "rs" => Ok(Target::Wamp(
                rest.to_owned(),
                Transport::RawSocket(serializer),
            )),
            other => Err(format!("unknown transport {other}")),
        }
    }
}

/// One run's parameters.
#[derive(Debug, Clone)]
pub struct Config {
    /// Router to drive.
    pub target: Target,
    /// Name in reports (`foxrouter`, `mosquitto`, …).
    pub label: String,
    /// What to measure.
    pub scenario: Scenario,
    /// Load duration after warm-up.
    pub duration: Duration,
    /// Warm-up before counting starts.
    pub warmup: Duration,
    /// N: publishers, subscribers, pairs, callers or idle connections.
    pub connections: usize,
    /// K: requests in flight per connection (acked, rpc, MQTT QoS 1/2).
    pub inflight: usize,
    /// Payload size in bytes (at least 8: the timestamp).
    pub payload_bytes: usize,
    /// Fixed total send rate in messages per second; `None`: as fast as possible.
    pub rate: Option<u64>,
    /// MQTT QoS of publishes and subscriptions.
    pub qos: fox_mqtt_proto::QoS,
    /// MQTT protocol version.
    pub mqtt_protocol: fox_mqtt_proto::Protocol,
    /// WAMP realm.
    pub realm: String,
    /// Callees in the rpc scenario.
    pub callees: usize,
    /// WAMP acked: one more session on the same router subscribes to the topic and records
    /// each event's latency from its publish (delivery beside the acknowledgement).
    pub delivery: bool,
    /// Router PID for CPU and memory figures.
    pub router_pid: Option<u32>,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1 + source_ips) for idle connections.
    pub source_ips: u8,
    /// Runtime worker threads of the load generator (what its CPU use is measured against).
    pub threads: usize,
    /// This process's share of a row run by several load generators at once: `(part,
    /// parts)`, `(0, 1)` alone. See [`Config::share`].
    pub part: (usize, usize),
    /// Topic (procedure) name component shared by the parts of a split row; `None`: a
    /// random one.
    pub topic_prefix: Option<String>,
}

impl Config {
    /// This part's share of one role's connections (publishers, subscribers, callers,
    /// callees; index `i` of the row): a role of one connection belongs to part 0, a role of
    /// several is dealt round robin (index % parts == part). Pairs stay together, since
    /// both of their lists are dealt alike. Alone (`parts` 1) everything is kept.
    pub fn share<T>(&self, role: Vec<T>) -> Vec<T> {
        let (part, parts) = self.part;
        if parts <= 1 {
            return role;
        }
        if role.len() == 1 {
            return if part == 0 { role } else { Vec::new() };
        }
        role.into_iter()
            .enumerate()
            .filter(|(index, _)| index % parts == part)
            .map(|(_, item)| item)
            .collect()
    }

    /// The topic name component of this run: the shared one, else random.
    pub fn topic_word(&self) -> String {
        self.topic_prefix
            .clone()
            .unwrap_or_else(|| format!("b{:08x}", rand::random::<u32>()))
    }

    /// Transport label for reports, e.g. `mqtt5-qos1` or `ws-msgpack`.
    pub fn transport_label(&self) -> String {
        use crate::wamp::Transport;
        match &self.target {
            Target::Mqtt(_) => {
                let version = if self.mqtt_protocol.is_v5() {
                    "mqtt5"
                } else {
                    "mqtt3"
                };
                format!("{version}-qos{}", self.qos as u8)
            }
            Target::Wamp(_, Transport::WebSocket(s)) => format!("ws-{}", serializer_name(*s)),
            Target::Wamp(_, Transport::RawSocket(s)) => format!("rs-{}", serializer_name(*s)),
            Target::JetStream(js) => format!("jetstream-r{}", js.replicas),
        }
    }

    /// The row key shared by every router measured with the same load.
    pub fn scenario_key(&self) -> String {
        let rate = self.rate.map_or(String::new(), |r| format!("-rate{r}"));
        format!(
            "{}-{}-n{}-k{}-p{}{}",
            scenario_name(self.scenario),
            self.transport_label(),
            self.connections,
            self.inflight,
            self.payload_bytes,
            rate
        )
    }
}

fn serializer_name(serializer: fox_wamp_proto::Serializer) -> &'static str {
    match serializer {
        fox_wamp_proto::Serializer::Json => "json",
        fox_wamp_proto::Serializer::MsgPack => "msgpack",
        fox_wamp_proto::Serializer::Cbor => "cbor",
    }
}

/// Lower-case scenario name.
pub fn scenario_name(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Fanin => "fanin",
        Scenario::Fanout => "fanout",
        Scenario::Pairs => "pairs",
        Scenario::Rpc => "rpc",
        Scenario::Acked => "acked",
        Scenario::Idle => "idle",
    }
}

/// What a scenario measured, before the router figures are added.
#[derive(Default)]
pub struct Measured {
    /// Deliveries (or acks, or call results) and their latency.
    pub recorder: Option<Recorder>,
    /// WAMP acked with `delivery`: the subscriber's events and their latency.
    pub delivery: Option<Recorder>,
    /// Window length in seconds.
    pub seconds: f64,
    /// Idle scenario: router RSS growth per connection, in bytes.
    pub idle_bytes_per_connection: Option<f64>,
    /// Idle scenario: connections established.
    pub connected: usize,
    /// Idle scenario: logins completed per second while the connections arrived (CONNACK
    /// or WELCOME received; from the first attempt to the last answer).
    pub connects_per_second: Option<f64>,
}

/// The result row of one run.
pub struct Outcome {
    /// The configuration that ran.
    pub config: Config,
    /// The measurement, or why the scenario failed.
    pub measured: Result<Measured, String>,
    /// The router's usage, when its PID was given.
    pub router: Option<RouterUsage>,
    /// CPU time stolen from this (virtual) machine during the run, percent.
    pub steal_percent: Option<f64>,
    /// The load generator's own CPU use during the run.
    pub load_generator: Option<LoadGeneratorUsage>,
}

/// How busy the load generator itself was. A run whose load generator used all the CPU it
/// had measured the load generator, not the router: its figure is a lower bound.
#[derive(Debug, Clone, Copy)]
pub struct LoadGeneratorUsage {
    /// User + system CPU seconds of this process during the run.
    pub cpu_seconds: f64,
    /// Cores it could use: its runtime threads, at most the CPUs it may run on.
    pub cores: usize,
    /// CPU seconds over (wall seconds x cores), percent.
    pub busy_percent: f64,
    /// CPUs the process may run on (its affinity mask): what several load generators on
    /// the same CPUs share (see [`report::combine`]).
    pub cpus: usize,
    /// Wall seconds the run took, setup included.
    pub wall_seconds: f64,
}

/// Runs `config` and never takes longer than setup + warm-up + duration + grace.
pub async fn run(config: Config) -> Outcome {
    let probe = config
        .router_pid
        .and_then(|pid| RouterProbe::start(pid).ok());
    let steal = StealProbe::start();
    let own = RouterProbe::start(std::process::id()).ok();
    let began = std::time::Instant::now();
    let limit = SETUP_TIMEOUT + config.warmup + config.duration + STOP_GRACE * 2;
    let limit = match config.scenario {
        Scenario::Idle => limit + idle::extra_time(&config),
        _ => limit,
    };
    let measured = match tokio::time::timeout(limit, run_scenario(&config)).await {
        Ok(result) => result,
        Err(_) => Err(format!("scenario did not finish within {limit:?}")),
    };
    let router = probe.and_then(|p| p.usage().ok());
    let wall_seconds = began.elapsed().as_secs_f64();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cores = cpus.min(config.threads.max(1));
    let load_generator = own
        .and_then(|p| p.usage().ok())
        .map(|u| LoadGeneratorUsage {
            cpu_seconds: u.cpu_seconds,
            cores,
            busy_percent: u.cpu_seconds * 100.0 / (wall_seconds * cores as f64).max(f64::EPSILON),
            cpus,
            wall_seconds,
        });
    Outcome {
        config,
        measured,
        router,
        steal_percent: steal.and_then(|s| s.percent()),
        load_generator,
    }
}

async fn run_scenario(config: &Config) -> Result<Measured, String> {
    match &config.target {
        Target::Mqtt(addr) => mqtt_load::run(config, *addr).await,
        Target::Wamp(url, transport) => wamp_load::run(config, url, *transport).await,
        Target::JetStream(target) => jetstream_load::run(config, target).await,
    }
}

/// The window of a run whose load starts now on `clock`.
pub fn window(clock: &Clock, config: &Config) -> Window {
    let from_ns = clock.now_ns() + config.warmup.as_nanos() as u64;
    Window {
        from_ns,
        until_ns: from_ns + config.duration.as_nanos() as u64,
    }
}

/// Paces one sender: `None` for as fast as possible, else the schedule of its sends.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    interval_ns: u64,
    next_ns: u64,
}

impl Pace {
    /// A sender's share of `rate` split over `senders` senders, or `None` without a rate.
    pub fn new(rate: Option<u64>, senders: usize, start_ns: u64) -> Option<Pace> {
        let rate = rate?.max(1);
        let interval_ns = (1_000_000_000u64 * senders.max(1) as u64) / rate;
        Some(Pace {
            interval_ns: interval_ns.max(1),
            next_ns: start_ns,
        })
    }

    /// Waits for the next scheduled send and returns its scheduled time.
    pub async fn wait(&mut self, clock: &Clock) -> u64 {
        let scheduled = self.next_ns;
        self.next_ns += self.interval_ns;
        if clock.now_ns() < scheduled {
            tokio::time::sleep_until(clock.instant_at(scheduled).into()).await;
        }
        scheduled
    }

    /// When the next send goes: paced (its scheduled time, after waiting for it), or now.
    pub async fn next_send_ns(pace: &mut Option<Pace>, clock: &Clock) -> u64 {
        match pace.as_mut() {
            Some(pace) => pace.wait(clock).await,
            None => clock.now_ns(),
        }
    }
}

/// Merges recorders; an empty list gives an empty recorder.
pub fn merge(window: Window, recorders: &[Recorder]) -> Recorder {
    let mut total = Recorder::new(window);
    for recorder in recorders {
        total.merge(recorder);
    }
    total
}

impl Outcome {
    /// Messages per second (0 for failures and idle runs).
    pub fn messages_per_second(&self) -> f64 {
        match &self.measured {
            Ok(m) => m
                .recorder
                .as_ref()
                .map_or(0.0, |r| r.count as f64 / m.seconds.max(1e-9)),
            Err(_) => 0.0,
        }
    }

    /// One JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let c = &self.config;
        let mut value = json!({
            "label": c.label,
            "scenario": scenario_name(c.scenario),
            "key": c.scenario_key(),
            "transport": c.transport_label(),
            "connections": c.connections,
            "inflight": c.inflight,
            "payload_bytes": c.payload_bytes,
            "rate": c.rate,
            "duration_s": c.duration.as_secs_f64(),
        });
        let fields = value.as_object_mut().expect("json! object literal");
        match &self.measured {
            Ok(m) => {
                if let Some(r) = &m.recorder {
                    fields.insert("messages_per_s".into(), json!(self.messages_per_second()));
                    fields.insert("messages".into(), json!(r.count));
                    let us = |q: f64| r.latency_ns.value_at_quantile(q) as f64 / 1000.0;
                    fields.insert("p50_us".into(), json!(us(0.5)));
                    fields.insert("p99_us".into(), json!(us(0.99)));
                    fields.insert("p999_us".into(), json!(us(0.999)));
                    fields.insert("max_us".into(), json!(r.latency_ns.max() as f64 / 1000.0));
                }
                if let Some(r) = &m.delivery {
                    fields.insert("delivery_messages".into(), json!(r.count));
                    let us = |q: f64| r.latency_ns.value_at_quantile(q) as f64 / 1000.0;
                    fields.insert("delivery_p50_us".into(), json!(us(0.5)));
                    fields.insert("delivery_p99_us".into(), json!(us(0.99)));
                    fields.insert(
                        "delivery_max_us".into(),
                        json!(r.latency_ns.max() as f64 / 1000.0),
                    );
                }
                if let Some(b) = m.idle_bytes_per_connection {
                    fields.insert("idle_bytes_per_connection".into(), json!(b));
                    fields.insert("connected".into(), json!(m.connected));
                }
                if let Some(rate) = m.connects_per_second {
                    fields.insert("connects_per_s".into(), json!(rate));
                }
            }
            Err(error) => {
                fields.insert("error".into(), json!(error));
            }
        }
        if let Some(u) = &self.router {
            fields.insert("router_cpu_s".into(), json!(u.cpu_seconds));
            fields.insert("router_peak_rss_kib".into(), json!(u.peak_rss_kib));
        }
        if let Some(steal) = self.steal_percent {
            fields.insert("steal_pct".into(), json!(steal));
        }
        if let Some(g) = &self.load_generator {
            fields.insert("bench_cpu_s".into(), json!(g.cpu_seconds));
            fields.insert("bench_cores".into(), json!(g.cores));
            fields.insert("bench_busy_pct".into(), json!(g.busy_percent));
            fields.insert("bench_cpus".into(), json!(g.cpus));
            fields.insert("bench_wall_s".into(), json!(g.wall_seconds));
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jetstream_is_a_target_scheme_with_its_own_row_key() {
        let target = Target::parse("jetstream://127.0.0.1:4222/S1?replicas=3").unwrap();
        let Target::JetStream(js) = &target else {
            panic!("{target:?}");
        };
        assert_eq!(
            (js.server.as_str(), js.stream.as_str()),
            ("127.0.0.1:4222", "S1")
        );
        let config = Config {
            target,
            label: "jetstream".into(),
            scenario: Scenario::Acked,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            connections: 1,
            inflight: 16,
            payload_bytes: 100,
            rate: None,
            qos: fox_mqtt_proto::QoS::AtMostOnce,
            mqtt_protocol: fox_mqtt_proto::Protocol::V3_1_1,
            realm: "realm1".into(),
            callees: 1,
            delivery: false,
            router_pid: None,
            source_ips: 1,
            threads: 1,
            part: (0, 1),
            topic_prefix: None,
        };
        assert_eq!(config.scenario_key(), "acked-jetstream-r3-n1-k16-p100");
        assert!(Target::parse("jetstream://127.0.0.1").is_err());
        assert!(Target::parse("nats://127.0.0.1:4222").is_err());
    }
    #[test]
    fn parts_share_roles_round_robin_and_single_connections_stay_in_part_0() {
        let target = Target::parse("mqtt://127.0.0.1:1883").unwrap();
        let mut config = Config {
            target,
            label: "foxrouter".into(),
            scenario: Scenario::Fanout,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            connections: 5,
            inflight: 16,
            payload_bytes: 100,
            rate: None,
            qos: fox_mqtt_proto::QoS::AtLeastOnce,
            mqtt_protocol: fox_mqtt_proto::Protocol::V3_1_1,
            realm: "realm1".into(),
            callees: 1,
            delivery: false,
            router_pid: None,
            source_ips: 1,
            threads: 1,
            part: (0, 1),
            topic_prefix: Some("split7".into()),
        };
        assert_eq!(config.share(vec![0, 1, 2, 3, 4]), vec![0, 1, 2, 3, 4]);
        config.part = (0, 2);
        assert_eq!(config.share(vec![0, 1, 2, 3, 4]), vec![0, 2, 4]);
        assert_eq!(config.share(vec!["publisher"]), vec!["publisher"]);
        config.part = (1, 2);
        assert_eq!(config.share(vec![0, 1, 2, 3, 4]), vec![1, 3]);
        assert!(config.share(vec!["publisher"]).is_empty());
        assert_eq!(config.topic_word(), "split7");
        assert_eq!(config.scenario_key(), "fanout-mqtt3-qos1-n5-k16-p100");
    }
}
