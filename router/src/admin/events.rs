//! `GET /api/v1/events`: server-sent events (`text/event-stream`) for the status page. One
//! `snapshot` event a second: the counters `/api/v1/status` and `/metrics` read (atomics and
//! the realms' sizes, nothing on the message path) and the message rates since the stream's
//! previous snapshot.
//!
//! Bounded everywhere: at most [`EVENT_STREAMS_MAX`] streams at once (503 beyond); a stream
//! makes its next event only when hyper polls it, that is when the connection took the last
//! one, so a slow reader never piles events up; the streams share one snapshot taken at
//! most every [`SNAPSHOT_REUSE_MS`]. A stream ends when its client goes away (the next
//! write fails, within a second), when the router shuts down (after one last snapshot that
//! says `"shutting_down": true`), or when the admin listener stops.
//!
//! The token: `Authorization: Bearer`, or `?token=` (EventSource cannot send headers); see
//! docs/admin.md for why only this endpoint takes it in the query.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{json, Value};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::api::{connections_by_protocol, Counts, Traffic};
use super::query::Params;
use super::{header_token, unauthorized, Admin, ApiError};
use crate::metrics::Protocol;
use crate::router::Router;

/// Event streams open at once; one more is refused with 503.
pub(super) const EVENT_STREAMS_MAX: usize = 32;
/// One snapshot event per this interval.
const EVENT_INTERVAL_MS: u64 = 1_000;
/// A snapshot younger than this is reused by the other streams.
const SNAPSHOT_REUSE_MS: u64 = 250;
/// What EventSource waits before reconnecting (the `retry:` field).
const RECONNECT_MS: u64 = 2_000;
/// Rates over a shorter window than this are not given (two streams' reads coincided).
const RATE_WINDOW_MIN_MS: u128 = 100;

const _: () = assert!(SNAPSHOT_REUSE_MS < EVENT_INTERVAL_MS / 2);

/// The routes of this module (it checks the token itself).
pub(super) fn routes() -> axum::Router<Arc<Admin>> {
    axum::Router::new().route("/api/v1/events", get(events))
}

/// The router's counters at one moment.
#[derive(Clone, Copy, Debug)]
pub(super) struct Snapshot {
    taken: Instant,
    shutting_down: bool,
    counts: Counts,
    /// Connections open, by protocol ([`Protocol::ALL`] order).
    connections: [u64; 2],
    traffic: Traffic,
}

impl Snapshot {
    fn take(router: &Router, now: Instant) -> Self {
        Self {
            taken: now,
            shutting_down: router.is_shutting_down(),
            counts: Counts::of(router),
            connections: connections_by_protocol(router),
            traffic: Traffic::of(router),
        }
    }

    /// The event's data; `previous`: the stream's last snapshot, for the rates.
    fn json(&self, uptime_seconds: u64, previous: Option<&Snapshot>) -> Value {
        let by_protocol = |values: [u64; 2]| {
            json!({
                "wamp": values[Protocol::Wamp as usize],
                "mqtt": values[Protocol::Mqtt as usize],
            })
        };
        let sessions = self.counts.sessions.map(|n| n as u64);
        let rates = previous.and_then(|previous| rates(previous, self));
        json!({
            "uptime_seconds": uptime_seconds,
            "shutting_down": self.shutting_down,
            "connections": by_protocol(self.connections),
            "sessions": {
                "wamp": sessions[Protocol::Wamp as usize],
                "mqtt": sessions[Protocol::Mqtt as usize],
                "mqtt_parked": self.counts.mqtt_parked,
            },
            "realms": self.counts.realms,
            "subscriptions": self.counts.subscriptions,
            "registrations": self.counts.registrations,
            "retained": self.counts.retained,
            "messages": self.traffic.messages_json(),
            "rates": rates.map(|(received, sent)| json!({
                "received_per_second": received,
                "sent_per_second": sent,
            })),
        })
    }

    /// Messages received and sent, both protocols.
    fn messages(&self) -> (u64, u64) {
        let (wamp, mqtt) = (&self.traffic.wamp, &self.traffic.mqtt);
        (
            wamp.received.messages + mqtt.received.messages,
            wamp.sent.messages + mqtt.sent.messages,
        )
    }
}

/// Messages per second received and sent between two snapshots (rounded to 0.01), or
/// `None` over too short a window. Counters never go back; a difference that would is 0.
fn rates(previous: &Snapshot, current: &Snapshot) -> Option<(f64, f64)> {
    let window = current.taken.checked_duration_since(previous.taken)?;
    if window.as_millis() < RATE_WINDOW_MIN_MS {
        return None;
    }
    let ((received_before, sent_before), (received, sent)) =
        (previous.messages(), current.messages());
    let per_second = |now: u64, before: u64| {
        let rate = now.saturating_sub(before) as f64 / window.as_secs_f64();
        (rate * 100.0).round() / 100.0
    };
    Some((
        per_second(received, received_before),
        per_second(sent, sent_before),
    ))
}

/// The snapshot the streams share.
#[derive(Debug, Default)]
pub(super) struct SnapshotCache {
    last: Mutex<Option<Snapshot>>,
}

impl SnapshotCache {
    /// The cached snapshot if younger than [`SNAPSHOT_REUSE_MS`], else a new one.
    fn take(&self, router: &Router, now: Instant) -> Snapshot {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let reuse = Duration::from_millis(SNAPSHOT_REUSE_MS);
        match *last {
            Some(snapshot) if now.saturating_duration_since(snapshot.taken) < reuse => snapshot,
            _ => {
                let snapshot = Snapshot::take(router, now);
                *last = Some(snapshot);
                snapshot
            }
        }
    }
}

/// `GET /api/v1/events[?token=]`.
async fn events(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    // The token first: an unauthorized request learns nothing, not even its query's faults.
    let params = Params::parse(query.as_deref(), &["token"]);
    let query_token = params.as_ref().ok().and_then(|p| p.get("token"));
    if !admin.admits_token(header_token(&headers).or(query_token)) {
        return Ok(unauthorized());
    }
    params?;
    let router = admin.router()?.clone();
    let unavailable = |message: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message);
    if router.is_shutting_down() || *admin.closing.borrow() {
        return Err(unavailable("the router is shutting down".into()));
    }
    let permit = admin
        .event_streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            unavailable(format!(
                "too many event streams (at most {EVENT_STREAMS_MAX}); poll /api/v1/status instead"
            ))
        })?;
    let feed = Feed::new(admin, router, permit);
    let stream = futures_util::stream::unfold(feed, Feed::next);
    let mut response = Sse::new(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies that buffer answers (nginx) pass this one through as it comes.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// One client's stream: its timer, its last snapshot, and its room among the streams.
struct Feed {
    admin: Arc<Admin>,
    router: Arc<Router>,
    ticks: Interval,
    shutdown: watch::Receiver<bool>,
    closing: watch::Receiver<bool>,
    previous: Option<Snapshot>,
    /// The last event went out: the stream ends.
    ended: bool,
    /// Released when the stream is dropped (its client gone, or it ended).
    _permit: OwnedSemaphorePermit,
}

impl Feed {
    fn new(admin: Arc<Admin>, router: Arc<Router>, permit: OwnedSemaphorePermit) -> Self {
        let mut ticks = tokio::time::interval(Duration::from_millis(EVENT_INTERVAL_MS));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            shutdown: router.shutdown_signal(),
            closing: admin.closing.subscribe(),
            admin,
            router,
            ticks,
            previous: None,
            ended: false,
            _permit: permit,
        }
    }

    /// The next event (the first at once), or the end.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if self.ended {
            return None;
        }
        let stopping = tokio::select! {
            _ = self.ticks.tick() => false,
            _ = self.shutdown.wait_for(|down| *down) => true,
            _ = self.closing.wait_for(|closing| *closing) => true,
        };
        self.ended = stopping || self.router.is_shutting_down();
        // The last snapshot is a fresh one: the shared one may predate the shutdown.
        let snapshot = if self.ended {
            Snapshot::take(&self.router, Instant::now())
        } else {
            self.admin.snapshots.take(&self.router, Instant::now())
        };
        let uptime_seconds = crate::engine::unix_ms().saturating_sub(self.admin.started_ms) / 1000;
        let data = snapshot.json(uptime_seconds, self.previous.as_ref());
        let mut event = Event::default().event("snapshot").data(data.to_string());
        if self.previous.is_none() {
            event = event.retry(Duration::from_millis(RECONNECT_MS));
        }
        self.previous = Some(snapshot);
        Some((Ok(event), self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::metrics::Count;

    fn snapshot_at(router: &Router, taken: Instant) -> Snapshot {
        Snapshot::take(router, taken)
    }

    #[test]
    fn rates_are_the_counters_growth_per_second() {
        let router = Router::new(Config::default());
        let start = Instant::now();
        let before = snapshot_at(&router, start);
        let mut count = Count::default();
        for _ in 0..30 {
            count.message(10);
        }
        router.metrics().wamp.received(count);
        router.metrics().wamp.sent(Count {
            messages: 5,
            ..Count::default()
        });
        let after = snapshot_at(&router, start + Duration::from_secs(2));
        assert_eq!(rates(&before, &after), Some((15.0, 2.5)));
        let json = after.json(7, Some(&before));
        assert_eq!(json["rates"]["received_per_second"], 15.0);
        assert_eq!(json["messages"]["received"]["wamp"], 30);
        assert_eq!(json["messages"]["sent"]["mqtt"], 0);
        assert_eq!(json["uptime_seconds"], 7);
        assert_eq!(json["realms"], 1, "realm1: {json}");
    }

    #[test]
    fn no_rates_without_a_previous_snapshot_or_over_a_tiny_window() {
        let router = Router::new(Config::default());
        let start = Instant::now();
        let first = snapshot_at(&router, start);
        assert!(first.json(0, None)["rates"].is_null());
        let soon = snapshot_at(&router, start + Duration::from_millis(10));
        assert_eq!(rates(&first, &soon), None);
        assert_eq!(rates(&soon, &first), None, "time never goes back");
    }

    #[test]
    fn the_cache_reuses_a_young_snapshot_only() {
        let router = Router::new(Config::default());
        let cache = SnapshotCache::default();
        let start = Instant::now();
        let first = cache.take(&router, start);
        let reused = cache.take(
            &router,
            start + Duration::from_millis(SNAPSHOT_REUSE_MS - 1),
        );
        assert_eq!(reused.taken, first.taken);
        let fresh = cache.take(&router, start + Duration::from_millis(SNAPSHOT_REUSE_MS));
        assert!(fresh.taken > first.taken);
    }
}
