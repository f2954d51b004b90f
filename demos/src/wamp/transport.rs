//! Moving WAMP frames over WebSocket or RawSocket.
//!
//! [`Conn`] is the whole connection, used for the HELLO / WELCOME exchange. After the
//! session is established it is split into a [`FrameReader`] (owned by the reader task)
//! and a writer task fed by a bounded channel of [`Outgoing`] frames; the writer batches
//! whatever is queued into one socket write (RawSocket) or one flush (WebSocket).

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use fox_wamp_proto::rawsocket::{self, FrameDecoder, FrameKind};
use fox_wamp_proto::Serializer;

use super::{Error, Transport};

/// Our announced RawSocket maximum: 2^(9+15) = 16 MiB.
const RAWSOCKET_MAX_LEN_EXP: u8 = 15;
/// Bytes read from a RawSocket per `read` call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Most frames the writer coalesces into one socket write.
const WRITE_BATCH_FRAMES_MAX: usize = 256;
/// Most bytes the writer coalesces into one socket write.
const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;

type WsStream = WebSocketStream<TcpStream>;

/// A frame for the writer task.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A serialized WAMP message.
    Message(Vec<u8>),
    /// A RawSocket pong answering a ping.
    Pong(Vec<u8>),
}

/// A connected transport, before the split.
pub(crate) enum Conn {
    Ws(Box<WsStream>),
    Raw(TcpStream, FrameDecoder),
}

/// The receiving half, after the split.
pub(crate) enum FrameReader {
    Ws(SplitStream<WsStream>),
    Raw(OwnedReadHalf, FrameDecoder, Vec<u8>),
}

impl Conn {
    /// Opens `url_or_addr` (`ws://host:port/path`, `host:port`, `rs://host:port`, `tcp://host:port`).
    pub(crate) async fn open(
        url_or_addr: &str,
        transport: Transport,
        local_ip: Option<IpAddr>,
    ) -> Result<Conn, Error> {
        match transport {
            Transport::WebSocket(serializer) => open_ws(url_or_addr, serializer, local_ip).await,
            Transport::RawSocket(serializer) => open_raw(url_or_addr, serializer, local_ip).await,
        }
    }

    /// Sends one serialized message.
    pub(crate) async fn send(
        &mut self,
        serializer: Serializer,
        bytes: Vec<u8>,
    ) -> Result<(), Error> {
        match self {
            Conn::Ws(ws) => Ok(ws
                .send(ws_message(serializer, bytes)?)
                .await
                .map_err(ws_error)?),
            Conn::Raw(stream, _) => {
                let frame = rawsocket::encode_frame(FrameKind::Message, &bytes);
                Ok(stream.write_all(&frame).await?)
            }
        }
    }

    /// Receives the next serialized message (pings answered, pongs skipped).
    pub(crate) async fn recv(&mut self) -> Result<Vec<u8>, Error> {
        match self {
            Conn::Ws(ws) => loop {
                match ws.next().await {
                    None => return Err(Error::Closed),
                    Some(message) => {
                        if let Some(bytes) = ws_payload(message.map_err(ws_error)?)? {
                            return Ok(bytes);
                        }
                    }
                }
            },
            Conn::Raw(stream, decoder) => loop {
                match decoder
                    .next_frame()
                    .map_err(|e| Error::Protocol(e.to_string()))?
                {
                    Some(frame) if frame.kind == FrameKind::Message => return Ok(frame.payload),
                    Some(frame) if frame.kind == FrameKind::Ping => {
                        let pong = rawsocket::encode_frame(FrameKind::Pong, &frame.payload);
                        stream.write_all(&pong).await?;
                    }
                    Some(_) => {}
                    None => {
                        let mut buf = vec![0u8; READ_CHUNK_BYTES];
                        let read = stream.read(&mut buf).await?;
                        if read == 0 {
                            return Err(Error::Closed);
                        }
                        decoder.push(&buf[..read]);
                    }
                }
            },
        }
    }

    /// Splits the connection and spawns the writer task draining `outgoing`.
    pub(crate) fn split(
        self,
        serializer: Serializer,
        outgoing: mpsc::Receiver<Outgoing>,
    ) -> FrameReader {
        match self {
            Conn::Ws(ws) => {
                let (sink, stream) = (*ws).split();
                tokio::spawn(write_ws(sink, serializer, outgoing));
                FrameReader::Ws(stream)
            }
            Conn::Raw(stream, decoder) => {
                let (read, write) = stream.into_split();
                tokio::spawn(write_raw(write, outgoing));
                FrameReader::Raw(read, decoder, vec![0u8; READ_CHUNK_BYTES])
            }
        }
    }
}

impl FrameReader {
    /// The next received frame: `Ok(Some(message))`, or a RawSocket ping payload to answer
    /// through `pong`. `Err(Closed)` at the end of the stream.
    pub(crate) async fn next(&mut self, pong: &mpsc::Sender<Outgoing>) -> Result<Vec<u8>, Error> {
        match self {
            FrameReader::Ws(stream) => loop {
                let Some(message) = stream.next().await else {
                    return Err(Error::Closed);
                };
                if let Some(bytes) = ws_payload(message.map_err(ws_error)?)? {
                    return Ok(bytes);
                }
            },
            FrameReader::Raw(read, decoder, buf) => loop {
                match decoder
                    .next_frame()
                    .map_err(|e| Error::Protocol(e.to_string()))?
                {
                    Some(frame) if frame.kind == FrameKind::Message => return Ok(frame.payload),
                    Some(frame) if frame.kind == FrameKind::Ping => {
                        // A full writer queue means the router reads nothing; drop the pong.
                        let _ = pong.try_send(Outgoing::Pong(frame.payload));
                    }
                    Some(_) => {}
                    None => {
                        let count = read.read(buf).await?;
                        if count == 0 {
                            return Err(Error::Closed);
                        }
                        decoder.push(&buf[..count]);
                    }
                }
            },
        }
    }
}

async fn open_ws(
    url_or_addr: &str,
    serializer: Serializer,
    local_ip: Option<IpAddr>,
) -> Result<Conn, Error> {
    let url = if url_or_addr.contains("://") {
        url_or_addr.to_owned()
    } else {
        format!("ws://{url_or_addr}/ws")
    };
    let mut request = url.as_str().into_client_request().map_err(ws_error)?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(serializer.subprotocol()),
    );
    let authority = request
        .uri()
        .authority()
        .ok_or_else(|| Error::Protocol(format!("no host in {url}")))?
        .to_string();
    let stream = tcp_connect(&authority, local_ip).await?;
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    let (ws, response) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(ws_error)?;
    let agreed = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|value| value.to_str().ok());
    if agreed != Some(serializer.subprotocol()) {
        return Err(Error::Handshake(format!(
            "router agreed to subprotocol {agreed:?}, asked for {}",
            serializer.subprotocol()
        )));
    }
    Ok(Conn::Ws(Box::new(ws)))
}

async fn open_raw(
    url_or_addr: &str,
    serializer: Serializer,
    local_ip: Option<IpAddr>,
) -> Result<Conn, Error> {
    let addr = url_or_addr
        .split_once("://")
        .map_or(url_or_addr, |(_, rest)| rest)
        .trim_end_matches('/');
    let mut stream = tcp_connect(addr, local_ip).await?;
    let hello = rawsocket::client_handshake(RAWSOCKET_MAX_LEN_EXP, serializer.rawsocket_id());
    stream.write_all(&hello).await?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await?;
    let server =
        rawsocket::parse_server_handshake(reply).map_err(|e| Error::Handshake(e.to_string()))?;
    let _ = server;
    let decoder = FrameDecoder::new(rawsocket::max_len_bytes(RAWSOCKET_MAX_LEN_EXP));
    Ok(Conn::Raw(stream, decoder))
}

/// Connects to `addr` (`host:port`), from `local_ip` when given (many connections spread
/// over 127.0.0.x source addresses do not run out of one address's ephemeral ports).
async fn tcp_connect(addr: &str, local_ip: Option<IpAddr>) -> Result<TcpStream, Error> {
    let stream = match local_ip {
        None => TcpStream::connect(addr).await?,
        Some(ip) => {
            let remote = tokio::net::lookup_host(addr)
                .await?
                .find(|a| a.is_ipv4() == ip.is_ipv4())
                .ok_or_else(|| Error::Protocol(format!("no address of {addr} matches {ip}")))?;
            let socket = if ip.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(remote).await?
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn ws_message(serializer: Serializer, bytes: Vec<u8>) -> Result<WsMessage, Error> {
    if serializer.is_binary() {
        return Ok(WsMessage::binary(bytes));
    }
    let text = String::from_utf8(bytes).map_err(|e| Error::Protocol(e.to_string()))?;
    Ok(WsMessage::text(text))
}

/// The payload of a data frame; `None` for control frames; `Closed` for a close frame.
fn ws_payload(message: WsMessage) -> Result<Option<Vec<u8>>, Error> {
    match message {
        WsMessage::Binary(bytes) => Ok(Some(Vec::from(bytes))),
        WsMessage::Text(text) => Ok(Some(Bytes::from(text).into())),
        WsMessage::Close(_) => Err(Error::Closed),
        _ => Ok(None),
    }
}

fn ws_error(error: tokio_tungstenite::tungstenite::Error) -> Error {
    Error::WebSocket(Box::new(error))
}

async fn write_ws(
    mut sink: SplitSink<WsStream, WsMessage>,
    serializer: Serializer,
    mut outgoing: mpsc::Receiver<Outgoing>,
) {
    while let Some(first) = outgoing.recv().await {
        crate::let_others_queue().await;
        let mut next = Some(first);
        let mut frames = 0;
        while let Some(item) = next.take() {
            let Outgoing::Message(bytes) = item else {
                continue; // Pongs are RawSocket-only; tungstenite answers WebSocket pings.
            };
            let Ok(message) = ws_message(serializer, bytes) else {
                return;
            };
            if sink.feed(message).await.is_err() {
                return;
            }
            frames += 1;
            if frames < WRITE_BATCH_FRAMES_MAX {
                next = outgoing.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

async fn write_raw(mut write: OwnedWriteHalf, mut outgoing: mpsc::Receiver<Outgoing>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH_BYTES_MAX);
    while let Some(first) = outgoing.recv().await {
        crate::let_others_queue().await;
        let mut next = Some(first);
        let mut frames = 0;
        while let Some(item) = next.take() {
            let (kind, payload) = match item {
                Outgoing::Message(bytes) => (FrameKind::Message, bytes),
                Outgoing::Pong(bytes) => (FrameKind::Pong, bytes),
            };
            batch.extend_from_slice(&rawsocket::encode_frame_header(kind, payload.len()));
            batch.extend_from_slice(&payload);
            frames += 1;
            if frames < WRITE_BATCH_FRAMES_MAX && batch.len() < WRITE_BATCH_BYTES_MAX {
                next = outgoing.try_recv().ok();
            }
        }
        if write.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
    let _ = write.shutdown().await;
}
