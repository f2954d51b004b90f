//! MQTT scenarios: fanin, fanout, pairs, acked (QoS 1/2 acknowledgement latency) and idle.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::mqtt::{ConnectOptions, MqttClient, Publish, QoS};

use super::stats::{payload, payload_timestamp, Clock, Recorder, Window};
use super::{merge, window, Config, Measured, Pace, Scenario};

/// Runs the configured MQTT scenario against `addr`.
pub async fn run(config: &Config, addr: SocketAddr) -> Result<Measured, String> {
    let prefix = format!("bench/{}", config.topic_word());
    let n = config.connections.max(1);
    match config.scenario {
        Scenario::Fanin => {
            pubsub(
                config,
                addr,
                vec![format!("{prefix}/fanin"); n],
                vec![format!("{prefix}/fanin")],
            )
            .await
        }
        Scenario::Fanout => {
            pubsub(
                config,
                addr,
                vec![format!("{prefix}/fanout")],
                vec![format!("{prefix}/fanout"); n],
            )
            .await
        }
        Scenario::Pairs => {
            let topics: Vec<String> = (0..n).map(|i| format!("{prefix}/pairs/{i}")).collect();
            pubsub(config, addr, topics.clone(), topics).await
        }
        Scenario::Acked => acked(config, addr, &format!("{prefix}/acked")).await,
        Scenario::Idle => idle(config, addr).await,
        Scenario::Rpc => Err("rpc is a WAMP scenario".into()),
    }
}

async fn connect(
    config: &Config,
    addr: SocketAddr,
    client_id: String,
    local_ip: Option<IpAddr>,
) -> Result<MqttClient, String> {
    let mut options = ConnectOptions::new(client_id, config.mqtt_protocol);
    options.inflight_max = u16::try_from(config.inflight.max(1)).unwrap_or(u16::MAX);
    options.local_ip = local_ip;
    MqttClient::connect(addr, options)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))
}

/// Publishers on `publish_topics` (one connection each), subscribers on `subscribe_filters`
/// (this part's share of each, see [`Config::share`]).
async fn pubsub(
    config: &Config,
    addr: SocketAddr,
    publish_topics: Vec<String>,
    subscribe_filters: Vec<String>,
) -> Result<Measured, String> {
    let publish_topics = config.share(publish_topics);
    let subscribe_filters = config.share(subscribe_filters);
    let mut subscribers = Vec::new();
    let mut streams = Vec::new();
    for (i, filter) in subscribe_filters.iter().enumerate() {
        let client = connect(
            config,
            addr,
            format!("fb-sub-{i}-{}", rand::random::<u32>()),
            None,
        )
        .await?;
        let granted = client
            .subscribe(filter, config.qos)
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        if granted.is_error() {
            return Err(format!("subscribe {filter} refused: {granted:?}"));
        }
        let messages = client.messages().ok_or("messages taken twice")?;
        subscribers.push(client);
        streams.push(messages);
    }
    let mut publishers = Vec::new();
    for (i, topic) in publish_topics.iter().enumerate() {
        let client = connect(
            config,
            addr,
            format!("fb-pub-{i}-{}", rand::random::<u32>()),
            None,
        )
        .await?;
        publishers.push((client, topic.clone()));
    }
    let clock = Clock::for_parts(config.part.1);
    let window = window(&clock, config);
    let mut receivers = JoinSet::new();
    for messages in streams {
        receivers.spawn(receive(messages, clock, window));
    }
    let senders = spawn_publishers(config, &publishers, clock, window, false);
    let recorders = collect(receivers, senders).await?;
    for client in subscribers {
        let _ = client.disconnect().await;
    }
    for (client, _) in publishers {
        let _ = client.disconnect().await;
    }
    Ok(Measured {
        recorder: Some(merge(window, &recorders)),
        seconds: window.seconds(),
        ..Measured::default()
    })
}

/// One worker per publisher for QoS 0, `inflight` workers per publisher for QoS 1/2.
/// With `record_acks`, workers return the latency of their acknowledgements.
fn spawn_publishers(
    config: &Config,
    publishers: &[(MqttClient, String)],
    clock: Clock,
    window: Window,
    record_acks: bool,
) -> JoinSet<Result<Recorder, String>> {
    let workers_per_publisher = if config.qos == QoS::AtMostOnce {
        1
    } else {
        config.inflight.max(1)
    };
    let workers = publishers.len() * workers_per_publisher;
    let mut set = JoinSet::new();
    for (client, topic) in publishers {
        for _ in 0..workers_per_publisher {
            let client = client.clone();
            let topic = topic.clone();
            let pace = Pace::new(config.rate, workers, clock.now_ns());
            let (qos, size) = (config.qos, config.payload_bytes);
            set.spawn(async move {
                let mut recorder = Recorder::new(window);
                let mut pace = pace;
                while clock.now_ns() < window.until_ns {
                    let sent_ns = Pace::next_send_ns(&mut pace, &clock).await;
                    let body = Bytes::from(payload(sent_ns, size));
                    client
                        .publish(&topic, body, qos, false)
                        .await
                        .map_err(|e| format!("publish: {e}"))?;
                    if record_acks {
                        recorder.record(clock.now_ns(), sent_ns);
                    }
                }
                Ok(recorder)
            });
        }
    }
    set
}

/// Counts and times deliveries until the window ends.
async fn receive(
    mut messages: mpsc::Receiver<Publish>,
    clock: Clock,
    window: Window,
) -> Result<Recorder, String> {
    let mut recorder = Recorder::new(window);
    let deadline = tokio::time::Instant::from_std(clock.instant_at(window.until_ns));
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, messages.recv()).await {
        if let Some(sent_ns) = payload_timestamp(&message.payload) {
            recorder.record(clock.now_ns(), sent_ns);
        }
    }
    Ok(recorder)
}

/// Waits for every receiver and sender; the first failure fails the run.
pub(crate) async fn collect(
    mut receivers: JoinSet<Result<Recorder, String>>,
    mut senders: JoinSet<Result<Recorder, String>>,
) -> Result<Vec<Recorder>, String> {
    let mut recorders = Vec::new();
    while let Some(joined) = senders.join_next().await {
        let recorder = joined.map_err(|e| format!("sender task: {e}"))??;
        recorders.push(recorder);
    }
    while let Some(joined) = receivers.join_next().await {
        let recorder = joined.map_err(|e| format!("receiver task: {e}"))??;
        recorders.push(recorder);
    }
    Ok(recorders)
}

async fn acked(config: &Config, addr: SocketAddr, topic: &str) -> Result<Measured, String> {
    if config.qos == QoS::AtMostOnce {
        return Err("acked needs --qos 1 or 2".into());
    }
    let mut publishers = Vec::new();
    for i in config.share((0..config.connections.max(1)).collect()) {
        let client = connect(
            config,
            addr,
            format!("fb-ack-{i}-{}", rand::random::<u32>()),
            None,
        )
        .await?;
        publishers.push((client, topic.to_owned()));
    }
    let clock = Clock::for_parts(config.part.1);
    let window = window(&clock, config);
    let senders = spawn_publishers(config, &publishers, clock, window, true);
    let recorders = collect(JoinSet::new(), senders).await?;
    for (client, _) in publishers {
        let _ = client.disconnect().await;
    }
    Ok(Measured {
        recorder: Some(merge(window, &recorders)),
        seconds: window.seconds(),
        ..Measured::default()
    })
}

/// Opens `connections` idle connections (clean session, keep alive 60 s, no subscription)
/// and reports the router's RSS growth per connection and the CONNECT rate.
async fn idle(config: &Config, addr: SocketAddr) -> Result<Measured, String> {
    let (clients, measured) = super::idle::hold(config, |i, source| {
        let config = config.clone();
        async move { connect(&config, addr, format!("fb-idle-{i}"), Some(source)).await }
    })
    .await?;
    for client in clients {
        let _ = client.disconnect().await;
    }
    Ok(measured)
}
