//! The admin HTTP listener: Prometheus metrics, health and readiness, JSON status, and
//! kicking sessions. Every endpoint is documented in `docs/admin.md`.
//!
//! # Layout
//!
//! ```text
//! mod.rs       binding (default address, `off`), the axum routes, the bearer-token
//!              check, JSON errors and the 404 / 405 fallbacks
//! health.rs    GET /healthz, GET /readyz
//! prometheus.rs GET /metrics: crate::metrics and the router's state in the Prometheus
//!              (OpenMetrics) text format
//! api.rs       GET /api/v1/status | sessions | subscriptions | registrations | retained,
//!              DELETE /api/v1/sessions/{id}
//! page.rs      GET /: the status page (status.html, embedded; inline CSS and JS)
//! events.rs    GET /api/v1/events: server-sent events, one snapshot of the counters and
//!              rates a second (what the page shows live)
//! bridge.rs    POST /api/v1/publish, POST /api/v1/call: the HTTP bridge (its own bearer
//!              tokens, `[[user]] http_tokens`)
//! kv.rs        GET / PUT / DELETE /api/v1/kv/{key}: retained keys over HTTP (the bridge's
//!              tokens; If-None-Match and Fox-When map onto the sync service's `when`)
//! services.rs  GET /api/v1/services, GET /api/v1/services/{procedure}/pick: the service
//!              registry (callees, load, health)
//! query.rs     query-string parsing: pagination, filters, strict errors
//! settings.rs  `[admin]` / `--admin`: address (default, off, explicit) and token
//! ```
//!
//! # Calling order
//!
//! [`bind`] early (before the store opens, so `/healthz` answers during a long restore;
//! `/readyz` says 503 until the router runs), then [`AdminListener::spawn`] with an
//! [`Admin`]; once the router is built and its listeners bound, [`Admin::serve_router`];
//! [`AdminServer::announce`] prints `LISTEN admin <addr>`; [`AdminServer::stop`] after
//! the router's sessions closed (it ends the event streams first).
//!
//! Nothing here is on the message path: handlers read the router's state (short read
//! locks, the same ones the meta API takes) and its counters.

mod api;
mod bridge;
mod events;
mod health;
mod https;
mod kv;
pub mod node;
mod page;
mod prometheus;
mod query;
mod services;
pub mod settings;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};

use crate::config::{AdminListen, AdminSettings, ADMIN_LISTEN_DEFAULT};
use crate::engine::unix_ms;
use crate::router::Router;

/// The state every handler shares.
#[derive(Debug)]
pub struct Admin {
    /// SHA-256 of the bearer token, when one is configured (compared in constant time).
    token_digest: Option<[u8; 32]>,
    /// When the process started serving (Unix ms).
    started_ms: u64,
    /// The router, once it runs.
    serving: OnceLock<Serving>,
    /// Turns true when the listener stops: the event streams end.
    closing: watch::Sender<bool>,
    /// Room for event streams ([`events::EVENT_STREAMS_MAX`]).
    event_streams: Arc<Semaphore>,
    /// The last snapshot the event streams read (shared by them, taken at most a few
    /// times a second whatever their number).
    snapshots: events::SnapshotCache,
}

/// What the admin listener knows once the router runs.
#[derive(Debug)]
struct Serving {
    router: Arc<Router>,
    /// The client listeners: (gate, bound address).
    listeners: Vec<(&'static str, SocketAddr)>,
}

impl Admin {
    /// The shared state; `token` from `[admin] token`.
    pub fn new(token: Option<&str>) -> Arc<Self> {
        Arc::new(Self {
            token_digest: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            started_ms: unix_ms(),
            serving: OnceLock::new(),
            closing: watch::channel(false).0,
            event_streams: Arc::new(Semaphore::new(events::EVENT_STREAMS_MAX)),
            snapshots: events::SnapshotCache::default(),
        })
    }

    /// The router runs with these client listeners: the endpoints answer from now on.
    pub fn serve_router(&self, router: Arc<Router>, listeners: Vec<(&'static str, SocketAddr)>) {
        let serving = Serving { router, listeners };
        if self.serving.set(serving).is_err() {
            tracing::warn!("the admin listener was given a router twice; keeping the first");
        }
    }

    fn serving(&self) -> Result<&Serving, ApiError> {
        self.serving.get().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the router is starting (opening the store, binding its listeners)",
            )
        })
    }

    fn router(&self) -> Result<&Arc<Router>, ApiError> {
        self.serving().map(|s| &s.router)
    }

    /// Whether the request carries the configured bearer token (always, without one).
    fn admits(&self, headers: &HeaderMap) -> bool {
        self.admits_token(header_token(headers))
    }

    /// Whether `token` is the configured one (any, or none, when none is configured),
    /// compared in constant time (SHA-256 of both sides).
    fn admits_token(&self, token: Option<&str>) -> bool {
        let Some(expected) = &self.token_digest else {
            return true;
        };
        let Some(token) = token else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        bool::from(given.ct_eq(expected))
    }
}

/// The token of the request's `Authorization: Bearer` header, if any.
fn header_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
}

/// The token of an `Authorization: Bearer <token>` value (the scheme in any case).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A bound admin listener, not serving yet.
#[derive(Debug)]
pub struct AdminListener {
    listener: TcpListener,
    address: SocketAddr,
    /// Set: HTTPS (`[tls] admin = true`).
    tls: Option<Arc<crate::tls::Tls>>,
}

/// Binds the configured admin listener. `Ok(None)`: turned off, or the default address
/// is taken (warned about once: another router on this machine may have it). An address
/// given explicitly that cannot be bound is an error.
pub async fn bind(settings: &AdminSettings) -> std::io::Result<Option<AdminListener>> {
    let (address, explicit) = match settings.listen {
        AdminListen::Off => return Ok(None),
        AdminListen::Default => (ADMIN_LISTEN_DEFAULT, false),
        AdminListen::At(address) => (address, true),
    };
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) if explicit => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("cannot listen on {address} (admin): {e}"),
            ))
        }
        Err(e) => {
            tracing::warn!(%address, error = %e, "no admin listener: its default address is not free (set --admin ADDR, or --admin off)");
            return Ok(None);
        }
    };
    let address = listener.local_addr()?;
    Ok(Some(AdminListener {
        listener,
        address,
        tls: None,
    }))
}

impl AdminListener {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Serves HTTPS with the certificate of `tls` (reloaded with it on SIGHUP).
    pub fn with_tls(mut self, tls: Arc<crate::tls::Tls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Starts serving on the current runtime.
    pub fn spawn(self, admin: Arc<Admin>) -> AdminServer {
        let app = routes(admin.clone());
        self.serve(app, Some(admin))
    }

    /// Serves `app` (plain or HTTPS as configured) until [`AdminServer::stop`]; `admin`,
    /// when given, has its event streams ended at the stop.
    fn serve(self, app: axum::Router, admin: Option<Arc<Admin>>) -> AdminServer {
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let task = match self.tls {
            None => tokio::spawn(async move {
                let serve = axum::serve(self.listener, app).with_graceful_shutdown(stopped);
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "the admin listener failed");
                }
            }),
            Some(tls) => {
                let listener = https::HttpsListener::new(self.listener, self.address, tls);
                tokio::spawn(async move {
                    let serve = axum::serve(listener, app).with_graceful_shutdown(stopped);
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, "the admin listener failed");
                    }
                })
            }
        };
        AdminServer {
            address: self.address,
            admin,
            stop,
            task,
        }
    }
}

/// A running admin listener.
#[derive(Debug)]
pub struct AdminServer {
    address: SocketAddr,
    admin: Option<Arc<Admin>>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// How long [`AdminServer::stop`] waits for requests in progress.
const STOP_WAIT_MS: u64 = 1_000;

impl AdminServer {
    /// Prints `LISTEN admin <addr>` (after the client gates' lines, so scripts that wait
    /// for those see them first).
    pub fn announce(&self) {
        println!("LISTEN admin {}", self.address);
    }

    /// Ends the event streams, stops accepting, and waits a moment for requests in
    /// progress.
    pub async fn stop(self) {
        if let Some(admin) = &self.admin {
            admin.closing.send_replace(true);
        }
        let _ = self.stop.send(());
        let wait = std::time::Duration::from_millis(STOP_WAIT_MS);
        if tokio::time::timeout(wait, self.task).await.is_err() {
            tracing::debug!("admin requests still in progress at exit");
        }
    }
}

fn routes(admin: Arc<Admin>) -> axum::Router {
    let protected = axum::Router::new()
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(prometheus::metrics))
        .merge(api::routes())
        .merge(services::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            require_token,
        ));
    // The page holds no data (it asks the JSON endpoints, with the token), so it is served
    // without one; the event stream checks the token itself (header or `?token=`).
    axum::Router::new()
        .route("/healthz", get(health::healthz))
        .merge(page::routes())
        .merge(events::routes())
        .merge(bridge::routes())
        .merge(kv::routes())
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(admin)
}

/// Refuses a request without the configured bearer token: 401 and a JSON error.
async fn require_token(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    if admin.admits(request.headers()) {
        return next.run(request).await;
    }
    unauthorized()
}

/// The answer to a request without the configured token: 401, `WWW-Authenticate: Bearer`.
fn unauthorized() -> Response {
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token (Authorization: Bearer <admin.token>)",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"foxrouter admin\""),
    );
    response
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {} (see docs/admin.md)",
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// An error answer: the status and `{"error": "..."}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "status": self.status.as_u16() });
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests;
