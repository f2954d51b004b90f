//! The MQTT gate (issue 3 builds it here). Until then the MQTT port accepts a connection
//! and closes it, so a device sees a refused session rather than a hang.

use std::sync::Arc;

use tokio::net::TcpStream;

use crate::router::Router;

/// Serves one MQTT connection.
pub async fn serve_tcp(_router: Arc<Router>, stream: TcpStream, peer: String) {
    tracing::info!(%peer, "MQTT is not served by this build yet; closing");
    drop(stream);
}
