//! WAMP scenarios: fanin, fanout, pairs (events without acknowledgement), acked
//! (publish with acknowledge), rpc (call / invocation / yield / result) and idle.
//!
//! Payload: `args = [send time in ns, padding string]`, padding sized so that the two
//! together carry `payload_bytes`.

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use fox_wamp_proto::{Dict, Value};

use crate::wamp::{acknowledge, Event, Transport, WampClient};

use super::mqtt_load::collect;
use super::stats::{Clock, Recorder, Window, TIMESTAMP_BYTES};
use super::{merge, window, Config, Measured, Pace, Scenario};

/// Runs the configured WAMP scenario against `url`.
pub async fn run(config: &Config, url: &str, transport: Transport) -> Result<Measured, String> {
    let prefix = format!("bench.{}", config.topic_word());
    let n = config.connections.max(1);
    let target = (url, transport);
    match config.scenario {
        Scenario::Fanin => {
            pubsub(
                config,
                target,
                vec![format!("{prefix}.fanin"); n],
                vec![format!("{prefix}.fanin")],
            )
            .await
        }
        Scenario::Fanout => {
            pubsub(
                config,
                target,
                vec![format!("{prefix}.fanout")],
                vec![format!("{prefix}.fanout"); n],
            )
            .await
        }
        Scenario::Pairs => {
            let topics: Vec<String> = (0..n).map(|i| format!("{prefix}.pairs.p{i}")).collect();
            pubsub(config, target, topics.clone(), topics).await
        }
        Scenario::Acked => acked(config, target, &format!("{prefix}.acked")).await,
        Scenario::Rpc => rpc(config, target, &format!("{prefix}.echo")).await,
        Scenario::Idle => idle(config, target).await,
    }
}

type Target<'a> = (&'a str, Transport);

async fn join(config: &Config, (url, transport): Target<'_>) -> Result<WampClient, String> {
    let mut client = WampClient::connect(url, &config.realm, transport)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    client
        .join(None)
        .await
        .map_err(|e| format!("join {}: {e}", config.realm))?;
    Ok(client)
}

/// Opens `connections` sessions (HELLO / WELCOME, nothing after) and reports the router's
/// RSS growth per connection and the login rate.
async fn idle(config: &Config, (url, transport): Target<'_>) -> Result<Measured, String> {
    let (clients, measured) = super::idle::hold(config, |_, source| {
        let (url, realm) = (url.to_owned(), config.realm.clone());
        async move {
            let mut client = WampClient::connect_from(&url, &realm, transport, Some(source))
                .await
                .map_err(|e| format!("connect {url}: {e}"))?;
            client
                .join(None)
                .await
                .map_err(|e| format!("join {realm}: {e}"))?;
            Ok(client)
        }
    })
    .await?;
    for client in &clients {
        let _ = client.leave().await;
    }
    Ok(measured)
}

fn args(sent_ns: u64, payload_bytes: usize) -> Vec<Value> {
    let padding = "x".repeat(payload_bytes.saturating_sub(TIMESTAMP_BYTES));
    vec![Value::Int(sent_ns as i64), Value::Str(padding)]
}

fn timestamp(args: &[Value]) -> Option<u64> {
    args.first()?.as_u64()
}

async fn pubsub(
    config: &Config,
    target: Target<'_>,
    publish_topics: Vec<String>,
    subscribe_topics: Vec<String>,
) -> Result<Measured, String> {
    let publish_topics = config.share(publish_topics);
    let subscribe_topics = config.share(subscribe_topics);
    let mut subscribers = Vec::new();
    let mut streams = Vec::new();
    for topic in &subscribe_topics {
        let client = join(config, target).await?;
        let (_, events) = client
            .subscribe(topic, Dict::new())
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        subscribers.push(client);
        streams.push(events);
    }
    let mut publishers = Vec::new();
    for topic in &publish_topics {
        publishers.push((join(config, target).await?, topic.clone()));
    }
    let clock = Clock::for_parts(config.part.1);
    let window = window(&clock, config);
    let mut receivers = JoinSet::new();
    for events in streams {
        receivers.spawn(receive(events, clock, window));
    }
    let senders = spawn_senders(config, &publishers, clock, window, Send::Publish);
    let recorders = collect(receivers, senders).await?;
    leave_all(
        subscribers
            .into_iter()
            .chain(publishers.into_iter().map(|(c, _)| c)),
    )
    .await;
    Ok(Measured {
        recorder: Some(merge(window, &recorders)),
        seconds: window.seconds(),
        ..Measured::default()
    })
}

async fn acked(config: &Config, target: Target<'_>, topic: &str) -> Result<Measured, String> {
    let mut publishers = Vec::new();
    for _ in config.share((0..config.connections.max(1)).collect()) {
        publishers.push((join(config, target).await?, topic.to_owned()));
    }
    // Subscribed before the window opens, so that every publish counted has its event.
    let mut subscriber = None;
    let mut events = None;
    if config.delivery {
        let client = join(config, target).await?;
        let (_, stream) = client
            .subscribe(topic, Dict::new())
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        subscriber = Some(client);
        events = Some(stream);
    }
    let clock = Clock::for_parts(config.part.1);
    let window = window(&clock, config);
    let delivered = events.map(|events| tokio::spawn(receive(events, clock, window)));
    let senders = spawn_senders(config, &publishers, clock, window, Send::AckedPublish);
    let recorders = collect(JoinSet::new(), senders).await?;
    let delivery = match delivered {
        Some(task) => Some(task.await.map_err(|e| format!("subscriber: {e}"))??),
        None => None,
    };
    leave_all(publishers.into_iter().map(|(c, _)| c).chain(subscriber)).await;
    Ok(Measured {
        recorder: Some(merge(window, &recorders)),
        delivery,
        seconds: window.seconds(),
        ..Measured::default()
    })
}

async fn rpc(config: &Config, target: Target<'_>, procedure: &str) -> Result<Measured, String> {
    if config.part.1 > 1 {
        // Callers in another process could call before the callee registered.
        return Err("rpc is not split between load generators".into());
    }
    let mut callees = Vec::new();
    let mut options = Dict::new();
    if config.callees > 1 {
        options.insert("invoke".into(), Value::Str("roundrobin".into()));
    }
    for _ in 0..config.callees.max(1) {
        let client = join(config, target).await?;
        client
            .register(procedure, options.clone(), |invocation| async move {
                Ok((invocation.args, Dict::new()))
            })
            .await
            .map_err(|e| format!("register: {e}"))?;
        callees.push(client);
    }
    let mut callers = Vec::new();
    for _ in 0..config.connections.max(1) {
        callers.push((join(config, target).await?, procedure.to_owned()));
    }
    let clock = Clock::for_parts(config.part.1);
    let window = window(&clock, config);
    let senders = spawn_senders(config, &callers, clock, window, Send::Call);
    let recorders = collect(JoinSet::new(), senders).await?;
    leave_all(callers.into_iter().map(|(c, _)| c).chain(callees)).await;
    Ok(Measured {
        recorder: Some(merge(window, &recorders)),
        seconds: window.seconds(),
        ..Measured::default()
    })
}

/// What each sender worker does per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Send {
    /// PUBLISH without acknowledge (one worker per connection; latency at subscribers).
    Publish,
    /// PUBLISH with acknowledge; latency = PUBLISHED round trip.
    AckedPublish,
    /// CALL; latency = RESULT round trip.
    Call,
}

fn spawn_senders(
    config: &Config,
    clients: &[(WampClient, String)],
    clock: Clock,
    window: Window,
    send: Send,
) -> JoinSet<Result<Recorder, String>> {
    let workers_per_client = if send == Send::Publish {
        1
    } else {
        config.inflight.max(1)
    };
    let workers = clients.len() * workers_per_client;
    let mut set = JoinSet::new();
    for (client, uri) in clients {
        for _ in 0..workers_per_client {
            let (client, uri) = (client.clone(), uri.clone());
            let mut pace = Pace::new(config.rate, workers, clock.now_ns());
            let size = config.payload_bytes;
            set.spawn(async move {
                let mut recorder = Recorder::new(window);
                while clock.now_ns() < window.until_ns {
                    let sent_ns = Pace::next_send_ns(&mut pace, &clock).await;
                    let args = args(sent_ns, size);
                    match send {
                        Send::Publish => client
                            .publish(&uri, args, Dict::new(), Dict::new())
                            .await
                            .map(drop),
                        Send::AckedPublish => client
                            .publish(&uri, args, Dict::new(), acknowledge())
                            .await
                            .map(drop),
                        Send::Call => client
                            .call(&uri, args, Dict::new(), Dict::new())
                            .await
                            .map(drop),
                    }
                    .map_err(|e| format!("{send:?}: {e}"))?;
                    if send != Send::Publish {
                        recorder.record(clock.now_ns(), sent_ns);
                    }
                }
                Ok(recorder)
            });
        }
    }
    set
}

async fn receive(
    mut events: mpsc::Receiver<Event>,
    clock: Clock,
    window: Window,
) -> Result<Recorder, String> {
    let mut recorder = Recorder::new(window);
    let deadline = tokio::time::Instant::from_std(clock.instant_at(window.until_ns));
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let Some(sent_ns) = timestamp(&event.args) {
            recorder.record(clock.now_ns(), sent_ns);
        }
    }
    Ok(recorder)
}

async fn leave_all(clients: impl Iterator<Item = WampClient>) {
    for client in clients {
        // Bounded: a router that never answers GOODBYE must not hold up the report.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.leave()).await;
    }
}
