//! Listeners: accept loops for each gate, a connection limit, and graceful shutdown.
//!
//! Each bound address is printed to stdout as `LISTEN <gate> <addr>` ([`announce`]), so
//! tests and scripts can start the router on port 0 and read the real port.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::connection_rate::{ConnectionRate, Reports, Verdict};
use crate::router::Router;
use crate::tls::Tls;

/// Which protocol a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// WebSocket (WAMP at /ws, MQTT at /mqtt).
    WebSocket,
    /// WAMP RawSocket.
    RawSocket,
    /// MQTT over TCP.
    Mqtt,
}

impl Gate {
    /// The gate's name in `LISTEN <gate> <addr>` lines and the admin API.
    pub fn name(self) -> &'static str {
        match self {
            Self::WebSocket => "ws",
            Self::RawSocket => "rawsocket",
            Self::Mqtt => "mqtt",
        }
    }
}

/// A bound listener.
pub struct Listener {
    gate: Gate,
    listener: TcpListener,
    /// Set: connections speak TLS first.
    tls: Option<Arc<Tls>>,
}

impl Listener {
    /// Binds `addr` for `gate`.
    pub async fn bind(gate: Gate, addr: SocketAddr) -> std::io::Result<Self> {
        Self::bind_with(gate, addr, None).await
    }

    /// Binds `addr` for `gate` over TLS.
    pub async fn bind_tls(gate: Gate, addr: SocketAddr, tls: Arc<Tls>) -> std::io::Result<Self> {
        Self::bind_with(gate, addr, Some(tls)).await
    }

    async fn bind_with(
        gate: Gate,
        addr: SocketAddr,
        tls: Option<Arc<Tls>>,
    ) -> std::io::Result<Self> {
        let name = listener_name(gate, tls.is_some());
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({name}): {e}"))
        })?;
        Ok(Self {
            gate,
            listener,
            tls,
        })
    }

    /// The listener's name in `LISTEN <name> <addr>` lines and the admin API: the gate's,
    /// or for TLS `wss`, `rawsockets`, `mqtts`.
    pub fn name(&self) -> &'static str {
        listener_name(self.gate, self.tls.is_some())
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Which gate it is.
    pub fn gate(&self) -> Gate {
        self.gate
    }
}

fn listener_name(gate: Gate, tls: bool) -> &'static str {
    match (gate, tls) {
        (gate, false) => gate.name(),
        (Gate::WebSocket, true) => "wss",
        (Gate::RawSocket, true) => "rawsockets",
        (Gate::Mqtt, true) => "mqtts",
    }
}

/// Prints `LISTEN <gate> <addr>` for each listener (so tests and scripts can start the
/// router on port 0 and read the real ports).
pub fn announce(listeners: &[Listener]) {
    for listener in listeners {
        if let Ok(addr) = listener.local_addr() {
            println!("LISTEN {} {addr}", listener.name());
        }
    }
}

/// The future that serves one accepted connection. Built here and boxed, rather than an
/// `async fn` awaiting it: the task then holds only this box's pointer (and the
/// connection permit), not a second copy of the stream, the router and the peer address
/// next to it (an async fn keeps its arguments for its whole life), and tokio's task
/// allocation, padded to 128-byte multiples, stays at its smallest. Each gate's future
/// is its own box: an idle MQTT connection does not pay for a WebSocket's.
fn serve_connection(
    router: Arc<Router>,
    gate: Gate,
    tls: Option<Arc<Tls>>,
    stream: TcpStream,
    peer: SocketAddr,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let _ = stream.set_nodelay(true);
    let peer = peer.to_string();
    if let Some(tls) = tls {
        return Box::pin(async move { serve_tls(router, gate, &tls, stream, peer).await });
    }
    match gate {
        Gate::WebSocket => Box::pin(crate::wamp::ws::serve(router, stream, peer, None)),
        Gate::RawSocket => Box::pin(crate::wamp::rawsocket::serve(router, stream, peer)),
        Gate::Mqtt => Box::pin(crate::mqtt::serve_tcp(router, stream, peer)),
    }
}

/// The TLS handshake (within the handshake timeout), then the gate over TLS.
async fn serve_tls(router: Arc<Router>, gate: Gate, tls: &Tls, stream: TcpStream, peer: String) {
    let timeout = Duration::from_millis(router.config.limits.handshake_timeout_ms);
    let stream = match tokio::time::timeout(timeout, tls.acceptor().accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let context = Some(Arc::new(tls.context(stream.get_ref().1)));
    match gate {
        Gate::WebSocket => crate::wamp::ws::serve(router, stream, peer, context).await,
        Gate::RawSocket => {
            crate::wamp::rawsocket::serve_stream_split(router, stream, peer, context).await
        }
        Gate::Mqtt => crate::mqtt::serve_tls(router, stream, peer, context).await,
    }
}

/// A plain connection past `limits.connections_max` is told so where its protocol has a
/// word for it before any handshake, written without waiting (the socket's buffer is
/// empty): RawSocket handshake error 4 (maximum connection count reached), HTTP 503 on
/// the WebSocket port. MQTT has none before CONNECT (and the TLS ports none before the
/// handshake): those are closed.
fn refuse_over_limit(listener: &Listener, stream: &TcpStream) {
    if listener.tls.is_some() {
        return;
    }
    let answer: &[u8] = match listener.gate {
        Gate::RawSocket => &fox_wamp_proto::rawsocket::server_handshake_error(
            fox_wamp_proto::rawsocket::error_code::MAX_CONNECTION_COUNT,
        ),
        Gate::WebSocket => {
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        }
        Gate::Mqtt => return,
    };
    let _ = stream.try_write(answer);
}

/// Refusals at `limits.connections_max` (or the listener's
/// `limits.listener_connections_max`), logged once per 10 s with their count (a flood
/// would otherwise write a line per connection).
fn refused_at_limit(
    reports: &mut Reports,
    peer: SocketAddr,
    listener: &'static str,
    own_limit: bool,
) {
    if let Some(refused) = reports.count(std::time::Instant::now()) {
        if own_limit {
            tracing::warn!(%peer, listener, refused, "listener connection limit (limits.listener_connections_max) reached; refusing (reported once every 10 s)");
        } else {
            tracing::warn!(%peer, listener, refused, "connection limit (limits.connections_max) reached; refusing (reported once every 10 s)");
        }
    }
}

/// The per-address connection rate limit shared by every listener, if one is set.
type RateLimit = Option<Arc<std::sync::Mutex<ConnectionRate>>>;

/// Whether a connection from `peer` is within its address's rate; logs refusals as the
/// limiter says (once per address and interval).
fn within_rate(rate: &RateLimit, peer: SocketAddr, listener: &'static str) -> bool {
    let Some(rate) = rate else {
        return true;
    };
    let now = std::time::Instant::now();
    let (late, verdict) = {
        let mut rate = crate::locks::lock(rate);
        (rate.sweep(now), rate.admit(peer.ip(), now))
    };
    for (ip, refused) in late {
        tracing::warn!(%ip, refused, "connections refused: over limits.connection_rate_per_ip_max (the rest of the last 10 s)");
    }
    match verdict {
        Verdict::Accept => true,
        Verdict::Refuse { report } => {
            if let Some(refused) = report {
                tracing::warn!(ip = %peer.ip(), listener, refused, "connections refused: over limits.connection_rate_per_ip_max (reported once per address every 10 s)");
            }
            false
        }
    }
}

async fn accept_loop(
    router: Arc<Router>,
    listener: Listener,
    permits: Arc<Semaphore>,
    rate: RateLimit,
) {
    let mut shutdown = router.shutdown_signal();
    let mut connections = JoinSet::new();
    let mut full = Reports::default();
    let own_permits = router
        .config
        .limits
        .listener_connections_max
        .get(listener.name())
        .map(|max| Arc::new(Semaphore::new(*max)));
    loop {
        tokio::select! {
            _ = crate::router::stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if !within_rate(&rate, peer, listener.name()) {
                    continue;
                }
                // The listener's own limit first, then the shared one.
                let own = match &own_permits {
                    None => None,
                    Some(own) => match own.clone().try_acquire_owned() {
                        Ok(permit) => Some(permit),
                        Err(_) => {
                            refuse_over_limit(&listener, &stream);
                            refused_at_limit(&mut full, peer, listener.name(), true);
                            continue;
                        }
                    },
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    refuse_over_limit(&listener, &stream);
                    refused_at_limit(&mut full, peer, listener.name(), false);
                    continue;
                };
                let connection = serve_connection(router.clone(), listener.gate, listener.tls.clone(), stream, peer);
                connections.spawn(async move {
                    connection.await;
                    drop((permit, own));
                });
            }
        }
    }
    // Sessions see the same shutdown signal and say GOODBYE; give them a moment.
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// Serves on the given listeners until [`Router::shut_down`]; returns once sessions closed.
pub async fn run(router: Arc<Router>, listeners: Vec<Listener>) {
    let permits = Arc::new(Semaphore::new(router.config.limits.connections_max));
    let rate = match router.config.limits.connection_rate_per_ip_max {
        0 => None,
        max => Some(Arc::new(std::sync::Mutex::new(ConnectionRate::new(max)))),
    };
    let mut tasks = JoinSet::new();
    for listener in listeners {
        tasks.spawn(accept_loop(
            router.clone(),
            listener,
            permits.clone(),
            rate.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}
