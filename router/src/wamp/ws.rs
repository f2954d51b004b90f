//! WAMP over WebSocket at path `/ws`, with subprotocol negotiation (`wamp.2.json`,
//! `wamp.2.msgpack`, `wamp.2.cbor`, in the client's order of preference). The same port
//! serves MQTT over WebSocket at `/mqtt` (subprotocol `mqtt`), handed to [`crate::mqtt`].
//!
//! JSON travels in text frames, MsgPack and CBOR in binary frames. The WebSocket layer
//! refuses messages past MQTT's largest packet (`limits.message_size_max_bytes` of payload
//! plus headers); a WAMP message past `limits.message_size_max_bytes` is refused by the
//! WAMP decoder and ends the session with ABORT.

use std::sync::Arc;

use fox_wamp_proto::Serializer;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;

use super::conn::{drive, FrameReader, FrameWriter, Incoming};
use crate::router::Router;
use crate::tls::TlsContext;

/// What an upgraded WebSocket connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Wamp(Serializer),
    /// MQTT, with the subprotocol chosen (`mqtt`, or `mqttv3.1` for old MQTT 3.1 clients).
    Mqtt(&'static str),
}

fn refuse(status: StatusCode, text: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(text.to_owned()));
    *response.status_mut() = status;
    response
}

/// Picks the route from the request path and the offered subprotocols. (The large error
/// type is tungstenite's handshake callback contract.)
#[allow(clippy::result_large_err)]
fn choose(request: &Request, mut response: Response) -> Result<(Route, Response), ErrorResponse> {
    let offered: Vec<String> = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .collect();
    let route = match request.uri().path() {
        "/ws" => {
            let chosen = offered.iter().find_map(|p| Serializer::from_subprotocol(p));
            match chosen {
                Some(s) => Route::Wamp(s),
                None if offered.is_empty() => Route::Wamp(Serializer::Json),
                None => {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        "no supported WAMP subprotocol offered",
                    ))
                }
            }
        }
        "/mqtt" => match offered
            .iter()
            .find(|p| p.as_str() == "mqtt" || p.as_str() == "mqttv3.1")
        {
            Some(p) if p == "mqtt" => Route::Mqtt("mqtt"),
            Some(_) => Route::Mqtt("mqttv3.1"),
            None => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "subprotocol mqtt not offered",
                ))
            }
        },
        _ => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "unknown path; WAMP is at /ws",
            ))
        }
    };
    let protocol = match route {
        Route::Wamp(s) if !offered.is_empty() => Some(s.subprotocol()),
        Route::Mqtt(p) => Some(p),
        Route::Wamp(_) => None,
    };
    if let Some(p) = protocol {
        response
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static(p));
    }
    Ok((route, response))
}

/// A byte stream a WebSocket runs on: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

struct WsWriter<S> {
    sink: futures_util::stream::SplitSink<WebSocketStream<S>, WsMessage>,
    text: bool,
}

impl<S: Stream> FrameWriter for WsWriter<S> {
    async fn feed(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        let message = match (self.text, String::from_utf8(bytes)) {
            (true, Ok(text)) => WsMessage::Text(text.into()),
            (_, Ok(text)) => WsMessage::Binary(text.into_bytes().into()),
            (_, Err(e)) => WsMessage::Binary(e.into_bytes().into()),
        };
        self.sink.feed(message).await.map_err(std::io::Error::other)
    }

    async fn pong(&mut self, _payload: Vec<u8>) -> std::io::Result<()> {
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.sink.flush().await.map_err(std::io::Error::other)
    }

    async fn close(&mut self) {
        let _ = self.sink.close().await;
    }
}

/// Messages from the WebSocket, read by the connection task.
struct WsReader<S> {
    stream: futures_util::stream::SplitStream<WebSocketStream<S>>,
    /// The stream ended or broke a rule: no more frames.
    done: bool,
}

impl<S: Stream> FrameReader for WsReader<S> {
    async fn next_frame(&mut self) -> Option<Incoming> {
        while !self.done {
            // Cancel safe: the stream keeps its state between polls.
            let Some(item) = self.stream.next().await else {
                break;
            };
            let incoming = match item {
                Ok(WsMessage::Text(text)) => Incoming::Frame(text.as_bytes().to_vec()),
                Ok(WsMessage::Binary(bytes)) => Incoming::Frame(bytes.to_vec()),
                Ok(WsMessage::Close(_)) => break,
                Ok(_) => continue,
                Err(WsError::Capacity(e)) => Incoming::Violation(format!("message too large: {e}")),
                Err(WsError::Utf8(e)) => {
                    Incoming::Violation(format!("text frame is not valid UTF-8: {e}"))
                }
                Err(WsError::Protocol(e)) => {
                    Incoming::Violation(format!("WebSocket protocol violation: {e}"))
                }
                Err(_) => break,
            };
            // A violation is the last frame.
            self.done = matches!(incoming, Incoming::Violation(_));
            return Some(incoming);
        }
        self.done = true;
        None
    }

    async fn discard(&mut self) -> usize {
        // After our close frame, tungstenite still reads the peer's frames until its close
        // frame (then the stream ends); an error ends the lingering.
        match self.stream.next().await {
            Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => 0,
            Some(Ok(message)) => message.len().max(1),
        }
    }
}

/// Bytes tungstenite reads from the socket at a time (its buffer's initial capacity).
const WS_READ_BUFFER_BYTES: usize = 8 * 1024;

/// Serves one WebSocket connection.
#[allow(clippy::result_large_err)]
pub async fn serve<S: Stream>(
    router: Arc<Router>,
    stream: S,
    peer: String,
    tls: Option<Arc<TlsContext>>,
) {
    // The route is chosen during the handshake, after this limit is set: it is MQTT's
    // (a PUBLISH may carry `message_size_max_bytes` of payload plus its headers); a WAMP
    // message over `message_size_max_bytes` is refused by the WAMP decoder.
    let limit = crate::mqtt::packet_max_bytes(&router.config.limits);
    // tungstenite's default read buffer is 128 KiB: allocated per connection, and zero-filled
    // on every read (up to that size). 8 KiB reads keep both small; larger frames take more
    // reads.
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let mut route = None;
    let callback = |request: &Request, response: Response| {
        let (chosen, response) = choose(request, response)?;
        route = Some(chosen);
        Ok(response)
    };
    let timeout = std::time::Duration::from_millis(router.config.limits.handshake_timeout_ms);
    let accepted = tokio::time::timeout(
        timeout,
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)),
    )
    .await;
    let ws = match accepted {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "WebSocket handshake failed");
            return;
        }
        Err(_) => return,
    };
    match route {
        Some(Route::Wamp(serializer)) => {
            let (sink, stream) = ws.split();
            let reader = WsReader {
                stream,
                done: false,
            };
            let writer = WsWriter {
                sink,
                text: !serializer.is_binary(),
            };
            drive(router, serializer, writer, reader, "websocket", peer, tls).await;
        }
        Some(Route::Mqtt(_)) => crate::mqtt::serve_websocket(router, ws, peer, tls).await,
        None => {}
    }
}
