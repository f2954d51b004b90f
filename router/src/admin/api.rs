//! The JSON endpoints under `/api/v1/`: status, sessions (and kicking one),
//! subscriptions, registrations, retained messages. Listings are paginated
//! (`?offset=&limit=`) in a stable order: sessions by ID, subscriptions and registrations
//! by realm then ID, retained messages by realm then topic.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Value};

use super::query::Params;
use super::{Admin, ApiError};
use crate::metrics::{ConnectionKind, Protocol, TrafficTotals};
use crate::realm::{Payload, Publication, Realm, SessionHandle};
use crate::router::Router;
use crate::util::iso8601;

/// The routes of this module (the token check is layered on by the caller).
pub(super) fn routes() -> axum::Router<Arc<Admin>> {
    axum::Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/sessions/{id}", delete(kick))
        .route("/api/v1/subscriptions", get(subscriptions))
        .route("/api/v1/registrations", get(registrations))
        .route("/api/v1/retained", get(retained))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/gossip", get(gossip))
        .route(
            "/api/v1/gossip/keys/{key}",
            axum::routing::put(set_gossip_key).delete(delete_gossip_key),
        )
}

/// This entry's gossip, or 404 where there is none (a single node, or `[gossip]` off).
fn gossip_of(admin: &Admin) -> Result<Arc<crate::gossip::Gossip>, ApiError> {
    admin.router()?.shared().engine.gossip().ok_or_else(|| {
        ApiError::not_found("no gossip here (a single node, or [gossip] enabled = false)")
    })
}

/// `GET /api/v1/gossip`: every node gossip knows (liveness, metadata, application keys)
/// and the datagrams this node refused.
async fn gossip(
    State(admin): State<Arc<Admin>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Params::parse(query.as_deref(), &[])?;
    let gossip = gossip_of(&admin)?;
    Ok(Json(json!(gossip.view().await)))
}

/// `PUT /api/v1/gossip/keys/{key}`: sets this node's application key to the body (UTF-8
/// text); 204.
async fn set_gossip_key(
    State(admin): State<Arc<Admin>>,
    axum::extract::Path(key): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let gossip = gossip_of(&admin)?;
    let value = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("a gossip value is UTF-8 text"))?;
    gossip
        .set_app(&key, value)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/gossip/keys/{key}`: removes this node's application key; 204, or 404
/// when it held none.
async fn delete_gossip_key(
    State(admin): State<Arc<Admin>>,
    axum::extract::Path(key): axum::extract::Path<String>,
) -> Result<StatusCode, ApiError> {
    let gossip = gossip_of(&admin)?;
    match gossip.delete_app(&key).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found(format!(
            "this node holds no key '{key}'"
        ))),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

/// Where acknowledged messages are kept: `cluster` (the ndb nodes' permanent log, on a
/// cluster entry), `rocksdb` (`--data`) or `memory`.
fn store_kind(router: &crate::router::Router) -> &'static str {
    let shared = router.shared();
    if shared.engine.cluster().is_some() {
        "cluster"
    } else if shared.durable().is_some() {
        "rocksdb"
    } else {
        "memory"
    }
}

/// `GET /api/v1/cluster`: `{"mode": "single"}` on a single node; on a cluster entry its
/// node ID, every member with its role, address and whether this entry is linked to it,
/// the last permanent ID applied here, acknowledgements (count, errors, latency
/// percentiles from the histogram's buckets) and the mesh's counters.
async fn cluster(
    State(admin): State<Arc<Admin>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Params::parse(query.as_deref(), &[])?;
    let serving = admin.serving()?;
    let Some(view) = serving.router.shared().engine.cluster() else {
        return Ok(Json(json!({ "mode": "single" })));
    };
    let latency = view.ack_latency;
    let mut body = json!(view);
    body["mode"] = json!("entry");
    body["protocol"] = json!({
        "min": fox_sequencer::wire::PROTOCOL_VERSION_MIN,
        "max": fox_sequencer::wire::PROTOCOL_VERSION,
    });
    body["ack_latency_ms"] = json!({
        "p50_at_most": percentile_ms(&latency, 0.50),
        "p99_at_most": percentile_ms(&latency, 0.99),
    });
    Ok(Json(body))
}

/// The upper bound (ms) of the histogram bucket holding the `q` quantile, or `None` when
/// nothing was observed or it falls in the last (unbounded) bucket.
fn percentile_ms(histogram: &fox_storage::LatencyHistogram, q: f64) -> Option<f64> {
    let total = histogram.count();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, count) in histogram.counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return fox_storage::WRITE_LATENCY_BUCKETS_US
                .get(i)
                .map(|bound_us| *bound_us as f64 / 1000.0);
        }
    }
    None
}

/// What the router holds now, counted over every realm (also read by `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    /// Realms.
    pub(super) realms: usize,
    /// Sessions a connection serves, by protocol ([`Protocol::ALL`] order).
    pub(super) sessions: [usize; 2],
    /// MQTT sessions kept while their client is away.
    pub(super) mqtt_parked: usize,
    /// Subscriptions (one per pattern and realm, shared by its subscribers).
    pub(super) subscriptions: usize,
    /// Registrations.
    pub(super) registrations: usize,
    /// Topics with a retained message.
    pub(super) retained: usize,
    /// Messages in the in-memory history.
    pub(super) history: usize,
}

impl Counts {
    /// Counts the router's realms (a read lock of each table in turn; nothing cloned).
    pub(super) fn of(router: &Router) -> Self {
        let mut counts = Counts::default();
        for realm in router.realms() {
            counts.realms += 1;
            realm.visit_sessions(|handle| {
                let protocol = protocol_of(handle);
                if handle.stats.live.load(std::sync::atomic::Ordering::Relaxed) {
                    counts.sessions[protocol as usize] += 1;
                } else if protocol == Protocol::Mqtt {
                    counts.mqtt_parked += 1;
                }
            });
            counts.subscriptions += realm.broker().len();
            counts.registrations += realm.dealer().len();
            counts.retained += realm.memory().retained_count();
            counts.history += realm.memory().history_len();
        }
        counts
    }
}

/// Messages, bytes and publications in and out since start, by protocol (also read by
/// `/metrics` and the event stream): the WAMP counters, and the MQTT ones of the handshake
/// and of every realm. Reads atomics only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Traffic {
    /// WAMP messages.
    pub(super) wamp: TrafficTotals,
    /// MQTT packets.
    pub(super) mqtt: TrafficTotals,
    /// MQTT messages not delivered (too large for the client, or its queue full).
    pub(super) mqtt_dropped: u64,
}

impl Traffic {
    /// Reads the router's counters.
    pub(super) fn of(router: &Router) -> Self {
        let wamp = router.metrics().wamp.totals();
        let mut mqtt = router.metrics().mqtt_handshake.totals();
        let mut mqtt_dropped = 0;
        for registry in router.mqtt_registries() {
            mqtt.add(&registry.stats.totals());
            mqtt_dropped += registry.stats.dropped();
        }
        Self {
            wamp,
            mqtt,
            mqtt_dropped,
        }
    }

    /// The totals of one protocol.
    pub(super) fn of_protocol(&self, protocol: Protocol) -> &TrafficTotals {
        match protocol {
            Protocol::Wamp => &self.wamp,
            Protocol::Mqtt => &self.mqtt,
        }
    }

    /// `{"received": {"wamp": n, "mqtt": n}, "sent": {...}}`: messages (WAMP messages,
    /// MQTT packets).
    pub(super) fn messages_json(&self) -> Value {
        let by_protocol = |count: fn(&TrafficTotals) -> u64| -> Value {
            json!({ "wamp": count(&self.wamp), "mqtt": count(&self.mqtt) })
        };
        json!({
            "received": by_protocol(|t| t.received.messages),
            "sent": by_protocol(|t| t.sent.messages),
        })
    }
}

/// Client connections open now, by protocol ([`Protocol::ALL`] order).
pub(super) fn connections_by_protocol(router: &Router) -> [u64; 2] {
    let metrics = router.metrics();
    let mut open = [0; 2];
    for kind in ConnectionKind::ALL {
        open[kind.protocol() as usize] += metrics.connections_open(kind);
    }
    open
}

fn protocol_of(handle: &SessionHandle) -> Protocol {
    ConnectionKind::of_session_transport(handle.info.transport)
        .map_or(Protocol::Wamp, ConnectionKind::protocol)
}

/// `GET /api/v1/status`.
async fn status(
    State(admin): State<Arc<Admin>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Params::parse(query.as_deref(), &[])?;
    let serving = admin.serving()?;
    let router = &serving.router;
    let counts = Counts::of(router);
    let open = connections_by_protocol(router);
    let listeners: serde_json::Map<String, Value> = serving
        .listeners
        .iter()
        .map(|(gate, address)| ((*gate).to_owned(), json!(address.to_string())))
        .collect();
    let now_ms = crate::engine::unix_ms();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started": iso8601(admin.started_ms),
        "uptime_seconds": now_ms.saturating_sub(admin.started_ms) / 1000,
        "shutting_down": router.is_shutting_down(),
        "store": store_kind(router),
        "listeners": listeners,
        "realms": router.realms().iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        "cluster": router.shared().engine.cluster().map(|view| json!({ "entry": view.node })),
        "counts": {
            "connections": open.iter().sum::<u64>(),
            "connections_by_protocol": {
                "wamp": open[Protocol::Wamp as usize],
                "mqtt": open[Protocol::Mqtt as usize],
            },
            "sessions": {
                "wamp": counts.sessions[Protocol::Wamp as usize],
                "mqtt": counts.sessions[Protocol::Mqtt as usize],
                "mqtt_parked": counts.mqtt_parked,
            },
            "subscriptions": counts.subscriptions,
            "registrations": counts.registrations,
            "retained": counts.retained,
            "history": counts.history,
        },
        "messages": Traffic::of(router).messages_json(),
    })))
}

/// The realms a listing covers: all, or the one `?realm=` names (404 when there is none;
/// a listing never creates a realm).
pub(super) fn realms_of(router: &Router, params: &Params) -> Result<Vec<Arc<Realm>>, ApiError> {
    let realms = router.realms();
    let Some(name) = params.get("realm") else {
        return Ok(realms);
    };
    let chosen: Vec<Arc<Realm>> = realms.into_iter().filter(|r| r.name == name).collect();
    if chosen.is_empty() {
        return Err(ApiError::not_found(format!("no realm named '{name}'")));
    }
    Ok(chosen)
}

/// `GET /api/v1/sessions?offset=&limit=&realm=&protocol=`.
async fn sessions(
    State(admin): State<Arc<Admin>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query.as_deref(), &["offset", "limit", "realm", "protocol"])?;
    let page = params.page()?;
    let protocol = match params.get("protocol") {
        None => None,
        Some("wamp") => Some(Protocol::Wamp),
        Some("mqtt") => Some(Protocol::Mqtt),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "protocol must be 'wamp' or 'mqtt', not '{other}'"
            )))
        }
    };
    let router = admin.router()?;
    let mut handles: Vec<SessionHandle> = realms_of(router, &params)?
        .iter()
        .flat_map(|realm| realm.sessions())
        .filter(|h| protocol.is_none_or(|p| protocol_of(h) == p))
        .collect();
    handles.sort_by_key(|h| h.info.id);
    let (total, handles) = page.take(handles);
    let items = handles.iter().map(session_json).collect();
    Ok(Json(page.body("sessions", total, items)))
}

fn session_json(handle: &SessionHandle) -> Value {
    let info = &handle.info;
    let stats = &handle.stats;
    let kind = ConnectionKind::of_session_transport(info.transport);
    let connection = stats.connection();
    let load =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    json!({
        "id": info.id,
        "protocol": protocol_of(handle).name(),
        "transport": kind.map_or(info.transport, ConnectionKind::transport),
        "realm": info.realm,
        "authid": info.identity.authid,
        "authrole": info.identity.authrole,
        "authmethod": info.identity.authmethod,
        "connected": connection.is_some(),
        "peer": connection.as_ref().map_or(info.peer.as_str(), |c| c.peer.as_str()),
        "connected_since": connection.as_ref().map(|c| iso8601(c.since_ms)),
        "messages_received": load(&stats.messages_received),
        "messages_sent": load(&stats.messages_sent),
        "events_dropped": load(&stats.events_dropped),
    })
}

/// `DELETE /api/v1/sessions/{id}`: a connected session is closed (202); a parked MQTT
/// session, which no connection serves, is ended (200).
async fn kick(State(admin): State<Arc<Admin>>, uri: Uri) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    // The last path segment, as sent (no extractor: its rejection would not be JSON).
    let id = uri.path().rsplit('/').next().unwrap_or("");
    let id: u64 = id
        .parse()
        .ok()
        .filter(|id| (1..=fox_wamp_proto::ID_MAX).contains(id))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "'{id}' is not a session ID (an integer from 1 to 2^53)"
            ))
        })?;
    let router = admin.router()?;
    let unknown = || ApiError::not_found(format!("no session with ID {id}"));
    let (realm, handle) = router
        .realms()
        .into_iter()
        .find_map(|realm| realm.session(id).map(|handle| (realm, handle)))
        .ok_or_else(unknown)?;
    let live = handle.stats.live.load(std::sync::atomic::Ordering::Relaxed);
    if !live
        && protocol_of(&handle) == Protocol::Mqtt
        && router
            .mqtt(&realm.name)
            .is_some_and(|registry| registry.end_parked(id))
    {
        let body = json!({ "session": id, "action": "ended" });
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    tracing::info!(session = id, realm = %realm.name, "session kicked by the administrator");
    handle.kill();
    let body = json!({ "session": id, "action": "disconnecting" });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// One subscription or registration as listed: copied out under the realm's lock, turned
/// into JSON only if it is on the page.
struct Row {
    realm: String,
    id: u64,
    pattern: crate::topic::Pattern,
    created: String,
    /// Subscribers, or callees in registration order.
    sessions: Vec<u64>,
    /// A registration's invocation policy.
    invoke: Option<&'static str>,
}

impl Row {
    fn json(&self) -> Value {
        let (uri, policy) = self.pattern.to_wamp();
        let mut item = json!({
            "realm": self.realm,
            "id": self.id,
            "uri": uri,
            "match": policy.name(),
            "created": self.created,
        });
        match self.invoke {
            Some(invoke) => {
                item["invoke"] = json!(invoke);
                item["callees"] = json!(self.sessions);
            }
            None => item["subscribers"] = json!(self.sessions),
        }
        item
    }
}

/// `GET /api/v1/subscriptions?offset=&limit=&realm=`.
async fn subscriptions(
    State(admin): State<Arc<Admin>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query.as_deref(), &["offset", "limit", "realm"])?;
    let page = params.page()?;
    let router = admin.router()?;
    let mut rows = Vec::new();
    for realm in realms_of(router, &params)? {
        let broker = realm.broker();
        rows.extend(broker.subscriptions().map(|subscription| {
            let mut subscribers: Vec<u64> = subscription.subscribers.keys().copied().collect();
            subscribers.sort_unstable();
            Row {
                realm: realm.name.clone(),
                id: subscription.id,
                pattern: subscription.pattern.clone(),
                created: subscription.created.clone(),
                sessions: subscribers,
                invoke: None,
            }
        }));
    }
    Ok(Json(listing(page, "subscriptions", rows)))
}

/// `GET /api/v1/registrations?offset=&limit=&realm=`.
async fn registrations(
    State(admin): State<Arc<Admin>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query.as_deref(), &["offset", "limit", "realm"])?;
    let page = params.page()?;
    let router = admin.router()?;
    let mut rows = Vec::new();
    for realm in realms_of(router, &params)? {
        let dealer = realm.dealer();
        rows.extend(dealer.registrations().map(|registration| Row {
            realm: realm.name.clone(),
            id: registration.id,
            pattern: registration.pattern.clone(),
            created: registration.created.clone(),
            sessions: registration.callees.iter().map(|c| c.info.id).collect(),
            invoke: Some(registration.invoke.name()),
        }));
    }
    Ok(Json(listing(page, "registrations", rows)))
}

/// Sorts rows by realm then ID and answers one page of them.
fn listing(page: super::query::Page, key: &str, mut rows: Vec<Row>) -> Value {
    rows.sort_by(|a, b| (&a.realm, a.id).cmp(&(&b.realm, b.id)));
    let (total, rows) = page.take(rows);
    page.body(key, total, rows.iter().map(Row::json).collect())
}

/// `GET /api/v1/retained?prefix=&realm=&offset=&limit=`: `prefix` matches the start of
/// a topic in its WAMP spelling (`sensors.`) or its MQTT spelling (`sensors/`).
async fn retained(
    State(admin): State<Arc<Admin>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query.as_deref(), &["offset", "limit", "realm", "prefix"])?;
    let page = params.page()?;
    let prefix = params.get("prefix").unwrap_or("");
    let router = admin.router()?;
    let mut found: Vec<(String, Arc<Publication>)> = Vec::new();
    for realm in realms_of(router, &params)? {
        let matching = realm.memory().retained_all().into_iter().filter(|p| {
            p.topic.wamp_uri().starts_with(prefix) || p.topic.mqtt_name().starts_with(prefix)
        });
        found.extend(matching.map(|p| (realm.name.clone(), p)));
    }
    let (total, found) = page.take(found);
    let items = found
        .iter()
        .map(|(realm, p)| retained_json(realm, p))
        .collect();
    Ok(Json(page.body("retained", total, items)))
}

pub(super) fn retained_json(realm: &str, publication: &Publication) -> Value {
    let mut item = json!({
        "realm": realm,
        "topic": publication.topic.wamp_uri(),
        "mqtt_topic": publication.topic.mqtt_name(),
        "id": publication.id,
        "qos": publication.qos,
    });
    match &publication.payload {
        Payload::Raw(bytes) => {
            item["payload_bytes"] = json!(bytes.len());
            match std::str::from_utf8(bytes) {
                Ok(text) => item["payload"] = json!(text),
                Err(_) => {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
                    item["payload_base64"] = json!(encoded);
                }
            }
        }
        Payload::Wamp { args, kwargs } => {
            if let Some(args) = args {
                item["args"] = Value::Array(args.iter().map(|v| v.to_json()).collect());
            }
            if let Some(kwargs) = kwargs {
                let object = kwargs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect();
                item["kwargs"] = Value::Object(object);
            }
        }
    }
    item
}
