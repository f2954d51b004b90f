//! NATS JetStream as a peer for the `acked` scenario: publish to a replicated stream and
//! wait for the stream's PubAck (the message is stored on a quorum of its replicas).
//!
//! Calling order: [`JetStreamTarget::parse`] the `jetstream://` target, [`ensure_stream`]
//! once the cluster is up (creates the stream if missing, waits for its leader and
//! replicas), then [`run`] the scenario, which ensures the stream again (a cheap lookup).
//!
//! Payload: the 8-byte send time then padding, `payload_bytes` in all, as for MQTT. The
//! latency is the publish-to-PubAck round trip, as WAMP's PUBLISHED and MQTT's PUBACK are.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use tokio::task::JoinSet;

use super::mqtt_load::collect;
use super::stats::{payload, Clock, Recorder, Window};
use super::{merge, window, Config, Measured, Pace, Scenario, SETUP_TIMEOUT};

/// Stream used when the target names none.
pub const STREAM_DEFAULT: &str = "FOXBENCH";
/// Replicas used when the target names none (the comparison's R3).
pub const REPLICAS_DEFAULT: usize = 3;
/// JetStream's own cap on a stream's replicas.
pub const REPLICAS_MAX: usize = 5;
/// Longest stream name accepted (JetStream allows more; the subject root is derived from it).
pub const STREAM_NAME_MAX_BYTES: usize = 32;
/// Disk the stream may hold per replica; old messages are dropped past it (a 10 s run at
/// 100k msgs/s of 100 bytes stores about 150 MB).
const STREAM_MAX_BYTES: i64 = 4 << 30;
/// Pause between attempts while the cluster elects its meta leader and the stream's leader.
const ENSURE_RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Time one JetStream API request or PubAck may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the stream lives: `jetstream://HOST:PORT[/STREAM][?replicas=N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamTarget {
    /// `HOST:PORT` of the NATS server the client connects to.
    pub server: String,
    /// Stream name (`[A-Za-z0-9_-]`, at most [`STREAM_NAME_MAX_BYTES`]).
    pub stream: String,
    /// Replicas the stream must have (created so; an existing stream must match).
    pub replicas: usize,
}

impl JetStreamTarget {
    /// Parses what follows `jetstream://`: `HOST:PORT[/STREAM][?replicas=N]`.
    pub fn parse(rest: &str) -> Result<JetStreamTarget, String> {
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (server, stream) = location.split_once('/').unwrap_or((location, ""));
        let stream = if stream.is_empty() {
            STREAM_DEFAULT
        } else {
            stream
        };
        if server
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(format!("jetstream://{rest}: expected HOST:PORT"));
        }
        if stream.len() > STREAM_NAME_MAX_BYTES
            || !stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "stream {stream}: expected at most {STREAM_NAME_MAX_BYTES} of A-Z a-z 0-9 _ -"
            ));
        }
        let mut replicas = REPLICAS_DEFAULT;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("replicas", value)) => {
                    replicas = value
                        .parse()
                        .ok()
                        .filter(|r| (1..=REPLICAS_MAX).contains(r))
                        .ok_or(format!("replicas={value}: expected 1 to {REPLICAS_MAX}"))?;
                }
                _ => return Err(format!("unknown jetstream option {pair}")),
            }
        }
        Ok(JetStreamTarget {
            server: server.to_owned(),
            stream: stream.to_owned(),
            replicas,
        })
    }

    /// The subjects the stream captures: `<stream in lower case>.>`.
    pub fn subject_root(&self) -> String {
        self.stream.to_ascii_lowercase()
    }
}

/// What [`ensure_stream`] found: the stream ready for publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlacement {
    /// Stream name.
    pub stream: String,
    /// Replicas of its configuration.
    pub replicas: usize,
    /// Server name of its leader.
    pub leader: String,
    /// Server names of its followers, all current.
    pub followers: Vec<String>,
}

impl std::fmt::Display for StreamPlacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "STREAM {} replicas {} leader {} followers {}",
            self.stream,
            self.replicas,
            self.leader,
            if self.followers.is_empty() {
                "-".to_owned()
            } else {
                self.followers.join(",")
            }
        )
    }
}

/// Runs the configured scenario (only `acked`) against the target's stream.
pub async fn run(config: &Config, target: &JetStreamTarget) -> Result<Measured, String> {
    if config.scenario != Scenario::Acked {
        return Err("jetstream:// runs only the acked scenario".into());
    }
    let mut contexts = Vec::new();
    for _ in 0..config.connections.max(1) {
        contexts.push(connect(target).await?);
    }
    let first = contexts.first().ok_or("no connection")?;
    ensure(first, target, tokio::time::Instant::now() + SETUP_TIMEOUT).await?;
    let subject = format!(
        "{}.b{:08x}.acked",
        target.subject_root(),
        rand::random::<u32>()
    );
    let clock = Clock::new();
    let window = window(&clock, config);
    let senders = spawn_publishers(config, &contexts, &subject, clock, window);
    let recorders = collect(JoinSet::new(), senders).await?;
    for context in contexts {
        // Bounded: a server that stopped answering must not hold up the report.
        let _ = tokio::time::timeout(Duration::from_secs(2), context.client().flush()).await;
    }
    Ok(Measured {
        recorder: Some(merge(window, &recorders)),
        seconds: window.seconds(),
        ..Measured::default()
    })
}

/// Connects to the target and creates the stream if missing; retries until the stream
/// has a leader and all its replicas are current, or until `timeout`.
pub async fn ensure_stream(
    target: &JetStreamTarget,
    timeout: Duration,
) -> Result<StreamPlacement, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let context = tokio::time::timeout_at(deadline, connect(target))
        .await
        .map_err(|_| format!("connect {}: timed out", target.server))??;
    ensure(&context, target, deadline).await
}

async fn connect(target: &JetStreamTarget) -> Result<jetstream::Context, String> {
    let client = async_nats::ConnectOptions::new()
        .name("fox-bench")
        .connection_timeout(REQUEST_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .connect(target.server.as_str())
        .await
        .map_err(|e| format!("connect {}: {e}", target.server))?;
    Ok(jetstream::new(client))
}

async fn ensure(
    context: &jetstream::Context,
    target: &JetStreamTarget,
    deadline: tokio::time::Instant,
) -> Result<StreamPlacement, String> {
    let wanted = stream::Config {
        name: target.stream.clone(),
        subjects: vec![format!("{}.>", target.subject_root())],
        num_replicas: target.replicas,
        storage: stream::StorageType::File,
        max_bytes: STREAM_MAX_BYTES,
        ..stream::Config::default()
    };
    let mut last_error = String::from("no attempt");
    // Bounded by the deadline: one attempt per ENSURE_RETRY_PAUSE at most.
    while tokio::time::Instant::now() < deadline {
        match context.get_or_create_stream(wanted.clone()).await {
            Ok(mut stream) => match stream.info().await {
                Ok(info) => match placement(info, target.replicas) {
                    Ok(Some(found)) => return Ok(found),
                    Ok(None) => last_error = "stream replicas not yet current".into(),
                    Err(mismatch) => return Err(mismatch),
                },
                Err(e) => last_error = format!("stream info: {e}"),
            },
            Err(e) => last_error = format!("create stream {}: {e}", target.stream),
        }
        tokio::time::sleep(ENSURE_RETRY_PAUSE).await;
    }
    Err(format!("stream {} not ready: {last_error}", target.stream))
}

/// The stream's placement once it has a leader and `replicas - 1` current followers;
/// `Ok(None)` while it has not; an error if it exists with other replicas.
fn placement(info: &stream::Info, replicas: usize) -> Result<Option<StreamPlacement>, String> {
    if info.config.num_replicas != replicas {
        return Err(format!(
            "stream {} exists with {} replicas, not {replicas} (delete it or name another)",
            info.config.name, info.config.num_replicas
        ));
    }
    let cluster = info.cluster.as_ref();
    let leader = match cluster.and_then(|c| c.leader.clone()) {
        Some(leader) => leader,
        // A single server outside a cluster reports no cluster block: it is the leader.
        None if replicas == 1 && cluster.is_none() => "-".to_owned(),
        None => return Ok(None),
    };
    let followers: Vec<String> = cluster
        .map(|c| {
            c.replicas
                .iter()
                .filter(|p| p.current && !p.offline)
                .map(|p| p.name.clone())
                .collect()
        })
        .unwrap_or_default();
    if followers.len() + 1 < replicas {
        return Ok(None);
    }
    Ok(Some(StreamPlacement {
        stream: info.config.name.clone(),
        replicas,
        leader,
        followers,
    }))
}

/// K publish-and-wait workers per connection (`config.inflight`), as WAMP's acked senders.
fn spawn_publishers(
    config: &Config,
    contexts: &[jetstream::Context],
    subject: &str,
    clock: Clock,
    window: Window,
) -> JoinSet<Result<Recorder, String>> {
    let per_connection = config.inflight.max(1);
    let workers = contexts.len() * per_connection;
    let mut set = JoinSet::new();
    for context in contexts {
        for _ in 0..per_connection {
            let context = context.clone();
            let subject = subject.to_owned();
            let mut pace = Pace::new(config.rate, workers, clock.now_ns());
            let size = config.payload_bytes;
            set.spawn(async move {
                let mut recorder = Recorder::new(window);
                while clock.now_ns() < window.until_ns {
                    let sent_ns = Pace::next_send_ns(&mut pace, &clock).await;
                    let body = Bytes::from(payload(sent_ns, size));
                    let ack = context
                        .publish(subject.clone(), body)
                        .await
                        .map_err(|e| format!("publish: {e}"))?
                        .await
                        .map_err(|e| format!("PubAck: {e}"))?;
                    if ack.duplicate {
                        return Err(format!("PubAck: sequence {} a duplicate", ack.sequence));
                    }
                    recorder.record(clock.now_ns(), sent_ns);
                }
                Ok(recorder)
            });
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_defaults_and_options() {
        let plain = JetStreamTarget::parse("127.0.0.1:4222").unwrap();
        assert_eq!(plain.server, "127.0.0.1:4222");
        assert_eq!(plain.stream, STREAM_DEFAULT);
        assert_eq!(plain.replicas, 3);
        assert_eq!(plain.subject_root(), "foxbench");
        let named = JetStreamTarget::parse("localhost:14222/Bench_1?replicas=1").unwrap();
        assert_eq!(named.server, "localhost:14222");
        assert_eq!(named.stream, "Bench_1");
        assert_eq!(named.replicas, 1);
        let slash = JetStreamTarget::parse("127.0.0.1:4222/").unwrap();
        assert_eq!(slash.stream, STREAM_DEFAULT);
    }

    #[test]
    fn target_rejects_what_jetstream_would_refuse() {
        for bad in [
            "127.0.0.1",
            ":4222",
            "127.0.0.1:99999",
            "127.0.0.1:4222/a.b",
            "127.0.0.1:4222/a*",
            "127.0.0.1:4222/S?replicas=0",
            "127.0.0.1:4222/S?replicas=6",
            "127.0.0.1:4222/S?replicas=x",
            "127.0.0.1:4222/S?sync=always",
        ] {
            assert!(JetStreamTarget::parse(bad).is_err(), "{bad} accepted");
        }
        let long = format!("127.0.0.1:4222/{}", "S".repeat(STREAM_NAME_MAX_BYTES + 1));
        assert!(JetStreamTarget::parse(&long).is_err());
    }

    fn info(replicas: usize, cluster: serde_json::Value) -> stream::Info {
        serde_json::from_value(serde_json::json!({
            "config": {"name": "FOXBENCH", "subjects": ["foxbench.>"], "num_replicas": replicas,
                       "retention": "limits", "max_consumers": -1, "max_msgs": -1,
                       "max_bytes": -1, "max_age": 0, "max_msgs_per_subject": -1,
                       "max_msg_size": -1, "discard": "old", "storage": "file",
                       "duplicate_window": 120000000000u64},
            "created": "2026-12-05T10:00:00Z",
            "state": {"messages": 0, "bytes": 0, "first_seq": 0, "first_ts": "0001-01-01T00:00:00Z",
                      "last_seq": 0, "last_ts": "0001-01-01T00:00:00Z", "consumer_count": 0},
            "cluster": cluster,
        }))
        .unwrap()
    }

    #[test]
    fn placement_waits_for_a_leader_and_current_followers() {
        let peer = |name: &str, current: bool| serde_json::json!({"name": name, "current": current, "active": 1000});
        let electing = info(3, serde_json::json!({"name": "c"}));
        assert_eq!(placement(&electing, 3), Ok(None));
        let lagging = info(
            3,
            serde_json::json!({"name": "c", "leader": "n2",
                "replicas": [peer("n1", true), peer("n3", false)]}),
        );
        assert_eq!(placement(&lagging, 3), Ok(None));
        let ready = info(
            3,
            serde_json::json!({"name": "c", "leader": "n2",
                "replicas": [peer("n1", true), peer("n3", true)]}),
        );
        let found = placement(&ready, 3).unwrap().unwrap();
        assert_eq!(found.leader, "n2");
        assert_eq!(found.followers, ["n1", "n3"]);
        assert_eq!(
            found.to_string(),
            "STREAM FOXBENCH replicas 3 leader n2 followers n1,n3"
        );
        let alone = info(1, serde_json::Value::Null);
        assert_eq!(
            placement(&alone, 1).unwrap().unwrap().to_string(),
            "STREAM FOXBENCH replicas 1 leader - followers -"
        );
    }

    #[test]
    fn placement_refuses_a_stream_with_other_replicas() {
        let single = info(1, serde_json::Value::Null);
        let error = placement(&single, 3).unwrap_err();
        assert!(error.contains("exists with 1 replicas, not 3"), "{error}");
    }
}
