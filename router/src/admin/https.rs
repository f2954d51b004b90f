//! The admin listener over TLS (`[tls] admin = true`): TLS handshakes run in their own
//! tasks, each within a deadline, and finished streams are handed to axum through a
//! channel, so that one slow or silent client cannot hold up the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use crate::tls::Tls;

/// How long a client has for its TLS handshake.
const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// Handshakes in progress at most; past it, new connections wait in the accept queue.
const HANDSHAKES_MAX: usize = 64;

/// TLS connections, ready for HTTP.
pub(super) struct HttpsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    address: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl HttpsListener {
    pub(super) fn new(listener: TcpListener, address: SocketAddr, tls: Arc<Tls>) -> Self {
        let (done, ready) = mpsc::channel(HANDSHAKES_MAX);
        let accepting = tokio::spawn(accept(listener, tls, done));
        Self {
            ready,
            address,
            accepting,
        }
    }
}

impl Drop for HttpsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept(
    listener: TcpListener,
    tls: Arc<Tls>,
    done: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = tls.acceptor();
        let done = done.clone();
        tokio::spawn(async move {
            let wait = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
            match tokio::time::timeout(wait, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    drop(permit);
                    let _ = done.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "admin TLS handshake failed"),
                Err(_) => tracing::info!(%peer, "admin TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accepting task ended (it only does when the runtime shuts down).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.address)
    }
}
