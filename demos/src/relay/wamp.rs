//! The relay's WAMP side over RawSocket and WebSocket: HELLO / WELCOME, SUBSCRIBE /
//! SUBSCRIBED, PUBLISH -> EVENT (+ PUBLISHED when asked), GOODBYE (see the module above).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};

use fox_wamp_proto::rawsocket::{self, FrameDecoder, FrameKind};
use fox_wamp_proto::{Dict, Message, Serializer, Value};

use super::topics::Topics;
use super::{FRAME_SIZE_MAX_BYTES, OUTGOING_QUEUE_MAX, READ_RESERVE_BYTES, WRITE_BATCH_BYTES_MAX};

/// The RawSocket length exponent the relay announces: 2^(9 + 11) = [`FRAME_SIZE_MAX_BYTES`].
const RAWSOCKET_MAX_LEN_EXP: u8 = 11;
const _: () = assert!(rawsocket_limit_matches());
const fn rawsocket_limit_matches() -> bool {
    1usize << (9 + RAWSOCKET_MAX_LEN_EXP as usize) == FRAME_SIZE_MAX_BYTES
}
/// Most messages a WebSocket writer feeds before it flushes.
const WS_BATCH_MESSAGES_MAX: usize = 256;

/// What goes to one connection's writer task.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// A serialized WAMP message.
    Message(Bytes),
    /// A RawSocket pong carrying the ping's payload.
    Pong(Bytes),
}

/// A subscriber: its serializer (the EVENT is encoded once per serializer) and queue.
type Subscriber = (Serializer, mpsc::Sender<Outgoing>);
/// Subscribers by topic.
pub(crate) type Subscribers = Topics<Subscriber>;

/// Serves one RawSocket connection: handshake, then length-prefixed messages.
pub(crate) async fn serve_rawsocket(mut stream: TcpStream, topics: Arc<Subscribers>) {
    let mut hello = [0u8; 4];
    if stream.read_exact(&mut hello).await.is_err() {
        return;
    }
    let serializer = rawsocket::parse_client_handshake(hello)
        .ok()
        .and_then(|handshake| handshake.serializer());
    let Some(serializer) = serializer else {
        let refusal =
            rawsocket::server_handshake_error(rawsocket::error_code::SERIALIZER_UNSUPPORTED);
        let _ = stream.write_all(&refusal).await;
        return;
    };
    let reply = rawsocket::server_handshake_reply(RAWSOCKET_MAX_LEN_EXP, serializer.rawsocket_id());
    if stream.write_all(&reply).await.is_err() {
        return;
    }
    let (mut read, write) = stream.into_split();
    let (queue, outgoing) = mpsc::channel(OUTGOING_QUEUE_MAX);
    let writer = tokio::spawn(write_rawsocket(write, outgoing));
    let mut session = Session::new(serializer, queue, topics.clone());
    let mut decoder = FrameDecoder::new(rawsocket::max_len_bytes(RAWSOCKET_MAX_LEN_EXP));
    let mut chunk = vec![0u8; READ_RESERVE_BYTES];
    'read: loop {
        let count = match read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(count) => count,
        };
        decoder.push(&chunk[..count]);
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => break 'read,
            };
            let open = match frame.kind {
                FrameKind::Message => session.handle(&frame.payload).await,
                FrameKind::Ping => session.send(Outgoing::Pong(frame.payload.into())).await,
                FrameKind::Pong => true,
            };
            if !open {
                break 'read;
            }
        }
    }
    topics.remove(session.connection);
    drop(session);
    let _ = writer.await;
}

/// Serves one WebSocket connection (any path; the first WAMP subprotocol offered).
pub(crate) async fn serve_websocket(stream: TcpStream, topics: Arc<Subscribers>) {
    let mut chosen = None;
    #[allow(clippy::result_large_err)] // tungstenite's handshake callback contract
    let negotiate = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let (serializer, response) = choose_subprotocol(request, response)?;
        chosen = Some(serializer);
        Ok(response)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, negotiate).await else {
        return;
    };
    let Some(serializer) = chosen else {
        return;
    };
    let (sink, mut source) = ws.split();
    let (queue, outgoing) = mpsc::channel(OUTGOING_QUEUE_MAX);
    let writer = tokio::spawn(write_websocket(sink, outgoing, !serializer.is_binary()));
    let mut session = Session::new(serializer, queue, topics.clone());
    while let Some(Ok(message)) = source.next().await {
        let open = match message {
            WsMessage::Text(text) => session.handle(text.as_bytes()).await,
            WsMessage::Binary(bytes) => session.handle(&bytes).await,
            WsMessage::Close(_) => false,
            _ => true, // Pings are answered by tungstenite.
        };
        if !open {
            break;
        }
    }
    topics.remove(session.connection);
    drop(session);
    let _ = writer.await;
}

/// The first WAMP subprotocol the client offers (JSON when it offers none).
#[allow(clippy::result_large_err)] // tungstenite's handshake callback contract
fn choose_subprotocol(
    request: &Request,
    mut response: Response,
) -> Result<(Serializer, Response), ErrorResponse> {
    let offered: Vec<&str> = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    if offered.is_empty() {
        return Ok((Serializer::Json, response));
    }
    let Some(serializer) = offered
        .iter()
        .find_map(|name| Serializer::from_subprotocol(name))
    else {
        return Err(ErrorResponse::new(Some(
            "no WAMP subprotocol offered".into(),
        )));
    };
    response.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(serializer.subprotocol()),
    );
    Ok((serializer, response))
}

/// One connection's view: its serializer and queue, the shared table.
struct Session {
    connection: u64,
    serializer: Serializer,
    queue: mpsc::Sender<Outgoing>,
    topics: Arc<Subscribers>,
}

impl Session {
    fn new(
        serializer: Serializer,
        queue: mpsc::Sender<Outgoing>,
        topics: Arc<Subscribers>,
    ) -> Self {
        Session {
            connection: topics.next_id(),
            serializer,
            queue,
            topics,
        }
    }

    /// Queues `item` toward this connection; `false` once its writer is gone.
    async fn send(&self, item: Outgoing) -> bool {
        self.queue.send(item).await.is_ok()
    }

    async fn reply(&self, message: &Message) -> bool {
        let bytes = Bytes::from(self.serializer.encode(message));
        self.send(Outgoing::Message(bytes)).await
    }

    /// Handles one received message; `false` closes the connection.
    async fn handle(&mut self, payload: &[u8]) -> bool {
        let Ok(message) = self.serializer.decode(payload, FRAME_SIZE_MAX_BYTES) else {
            return false;
        };
        match message {
            Message::Publish {
                request,
                options,
                topic,
                args,
                kwargs,
            } => self.publish(request, &options, &topic, args, kwargs).await,
            Message::Hello { .. } => {
                let session = self.topics.next_id();
                let details = welcome_details();
                self.reply(&Message::Welcome { session, details }).await
            }
            Message::Subscribe { request, topic, .. } => {
                let subscriber = (self.serializer, self.queue.clone());
                let subscription =
                    self.topics
                        .subscribe(topic.as_bytes(), self.connection, subscriber);
                let subscribed = Message::Subscribed {
                    request,
                    subscription,
                };
                self.reply(&subscribed).await
            }
            Message::Goodbye { .. } => {
                let goodbye = Message::Goodbye {
                    details: Dict::new(),
                    reason: "wamp.close.goodbye_and_out".into(),
                };
                let _ = self.reply(&goodbye).await;
                false
            }
            _ => false,
        }
    }

    /// One EVENT to every other subscriber of `topic`, then PUBLISHED if asked for.
    async fn publish(
        &self,
        request: u64,
        options: &Dict,
        topic: &str,
        args: Option<Vec<Value>>,
        kwargs: Option<Dict>,
    ) -> bool {
        let publication = self.topics.next_id();
        if let Some((subscription, subscribers)) = self.topics.lookup(topic.as_bytes()) {
            let event = Message::Event {
                subscription,
                publication,
                details: Dict::new(),
                args,
                kwargs,
            };
            let mut encoded: [Option<Bytes>; 3] = Default::default();
            for (connection, (serializer, queue)) in subscribers.iter() {
                if *connection == self.connection {
                    continue; // WAMP excludes the publisher by default.
                }
                let slot = &mut encoded[serializer_index(*serializer)];
                let bytes = slot
                    .get_or_insert_with(|| Bytes::from(serializer.encode(&event)))
                    .clone();
                let _ = queue.send(Outgoing::Message(bytes)).await;
            }
        }
        let acknowledge = options.get("acknowledge").and_then(Value::as_bool);
        if acknowledge != Some(true) {
            return true;
        }
        let published = Message::Published {
            request,
            publication,
        };
        self.reply(&published).await
    }
}

fn serializer_index(serializer: Serializer) -> usize {
    match serializer {
        Serializer::Json => 0,
        Serializer::MsgPack => 1,
        Serializer::Cbor => 2,
    }
}

/// WELCOME.Details: the broker role, no features.
fn welcome_details() -> Dict {
    let mut roles = Dict::new();
    roles.insert("broker".into(), Value::Dict(Dict::new()));
    let mut details = Dict::new();
    details.insert("roles".into(), Value::Dict(roles));
    details.insert("authrole".into(), Value::Str("anonymous".into()));
    details
}

/// Frames and writes what is queued, gathered into writes of up to
/// [`WRITE_BATCH_BYTES_MAX`].
async fn write_rawsocket(mut write: OwnedWriteHalf, mut outgoing: mpsc::Receiver<Outgoing>) {
    let mut batch = Vec::with_capacity(16 * 1024);
    while let Some(first) = outgoing.recv().await {
        push_frame(&mut batch, first);
        while batch.len() < WRITE_BATCH_BYTES_MAX {
            let Ok(next) = outgoing.try_recv() else { break };
            push_frame(&mut batch, next);
        }
        if write.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
    let _ = write.shutdown().await;
}

fn push_frame(batch: &mut Vec<u8>, item: Outgoing) {
    let (kind, payload) = match item {
        Outgoing::Message(payload) => (FrameKind::Message, payload),
        Outgoing::Pong(payload) => (FrameKind::Pong, payload),
    };
    // Messages here are at most FRAME_SIZE_MAX_BYTES plus an EVENT's few bytes of header,
    // far below the 24-bit frame limit; a larger one would be a relay bug, dropped.
    if payload.len() > rawsocket::FRAME_PAYLOAD_MAX_BYTES {
        return;
    }
    batch.extend_from_slice(&rawsocket::encode_frame_header(kind, payload.len()));
    batch.extend_from_slice(&payload);
}

/// Sends what is queued as WebSocket messages, one flush per batch.
async fn write_websocket<S>(mut sink: S, mut outgoing: mpsc::Receiver<Outgoing>, text: bool)
where
    S: futures_util::Sink<WsMessage> + Unpin,
{
    while let Some(first) = outgoing.recv().await {
        let mut next = Some(first);
        let mut fed = 0;
        while let Some(item) = next.take() {
            if let Some(message) = ws_message(item, text) {
                if sink.feed(message).await.is_err() {
                    return;
                }
            }
            fed += 1;
            if fed < WS_BATCH_MESSAGES_MAX {
                next = outgoing.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

fn ws_message(item: Outgoing, text: bool) -> Option<WsMessage> {
    let Outgoing::Message(bytes) = item else {
        return None; // RawSocket pongs only.
    };
    if text {
        Utf8Bytes::try_from(bytes).ok().map(WsMessage::Text)
    } else {
        Some(WsMessage::Binary(bytes))
    }
}
