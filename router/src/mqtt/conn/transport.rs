//! The byte streams under an MQTT connection: TCP (read without a buffer held while idle),
//! TLS, and WebSocket bridged through an in-memory pipe.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use super::{
    serve, BRIDGE_BUFFER_BYTES, READ_CHUNK_BYTES, SMALL_READ_MAX_BYTES, TRANSPORT_TCP,
    TRANSPORT_WEBSOCKET,
};
use crate::router::Router;
use crate::tls::TlsContext;

/// Serves one MQTT connection over any byte stream.
pub async fn run<S>(
    router: Arc<Router>,
    stream: S,
    transport: &'static str,
    peer: String,
    tls: Option<Arc<TlsContext>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (reader, writer) = tokio::io::split(stream);
    serve(router, reader, writer, transport, peer, tls).await;
}

/// The reading half of a connection.
pub(super) trait Source: AsyncRead + Unpin + Send {
    /// Reads at least one byte into `input`, reserving room only once data is there (so an
    /// idle connection holds no read buffer); `Ok(0)` at the end of the stream. Cancel safe.
    fn read_some(
        &mut self,
        input: &mut BytesMut,
    ) -> impl std::future::Future<Output = std::io::Result<usize>> + Send;

    /// Whether the connection may wait idle ([`super::idle`]): the stream can say that it
    /// has input without a read (and so without a buffer or a future held meanwhile).
    const IDLES: bool;

    /// Ready once the stream has input (or an error or its end) to read; registers `cx`
    /// otherwise. Only called when [`Source::IDLES`].
    fn poll_readable(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()>;
}

impl Source for OwnedReadHalf {
    const IDLES: bool = true;

    fn poll_readable(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        AsRef::<TcpStream>::as_ref(self)
            .poll_read_ready(cx)
            .map(|_| ())
    }

    /// A hand-written poll: `readable().await` would keep a ~200-byte readiness future in
    /// every connection's select loop (issue 6: memory per idle connection).
    fn read_some(
        &mut self,
        input: &mut BytesMut,
    ) -> impl std::future::Future<Output = std::io::Result<usize>> + Send {
        std::future::poll_fn(move |cx| loop {
            std::task::ready!(AsRef::<TcpStream>::as_ref(self).poll_read_ready(cx))?;
            // `try_read_buf` spends no task budget (`read_buf` does): without this a
            // publisher that always has input never yields, and the subscriber tasks it
            // wakes wait behind it on the same worker.
            let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
            let was_empty = input.is_empty();
            input.reserve(READ_CHUNK_BYTES);
            match read_draining(self, input) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Stale readiness (now cleared): wait again without holding the chunk.
                    if was_empty {
                        *input = BytesMut::new();
                    }
                }
                Ok(read) => {
                    coop.made_progress();
                    compact_small_read(input, was_empty, read);
                    return std::task::Poll::Ready(Ok(read));
                }
                Err(e) => return std::task::Poll::Ready(Err(e)),
            }
        })
    }
}

/// TLS and WebSocket streams stay in the select loop: their readiness is their inner
/// stream's, which a read may leave with decrypted (or unframed) bytes buffered.
impl<T: AsyncRead + Send> Source for ReadHalf<T> {
    const IDLES: bool = false;

    fn poll_readable(&self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::task::Poll::Ready(())
    }

    async fn read_some(&mut self, input: &mut BytesMut) -> std::io::Result<usize> {
        let was_empty = input.is_empty();
        input.reserve(READ_CHUNK_BYTES);
        let read = self.read_buf(input).await?;
        compact_small_read(input, was_empty, read);
        Ok(read)
    }
}

/// Reads into `input`'s spare room. A read that did not fill it emptied the socket's
/// receive buffer, so the socket's read readiness is cleared as well: the next wait then
/// sleeps until new data, where it would otherwise find the old readiness, read, and get
/// `WouldBlock` (one wasted `recvfrom` per wake-up, a quarter of a busy connection's
/// system calls). tokio's own `poll_read` does the same; `try_read_buf` does not.
///
/// The readiness is cleared by the outer `try_io`, which took its snapshot of the
/// readiness before the read: data that arrives after the read marks the socket ready
/// again with a newer tick, which that clear leaves alone.
fn read_draining(half: &OwnedReadHalf, input: &mut BytesMut) -> std::io::Result<usize> {
    let room = input.capacity() - input.len();
    let mut read = None;
    let cleared = AsRef::<TcpStream>::as_ref(half).try_io(tokio::io::Interest::READABLE, || {
        let n = half.try_read_buf(input)?;
        read = Some(n);
        if n > 0 && n < room {
            // Drained: report WouldBlock so that try_io clears the readiness it saw.
            Err(std::io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match (cleared, read) {
        (_, Some(n)) => Ok(n),
        (result, None) => result,
    }
}

/// After a small read into an empty buffer, moves the bytes into an allocation of their
/// size: decoded payloads share the buffer and may live on (retained, history), and a
/// trickle of small messages should not each keep a whole read chunk alive.
fn compact_small_read(input: &mut BytesMut, was_empty: bool, read: usize) {
    if was_empty && read > 0 && read <= SMALL_READ_MAX_BYTES {
        *input = BytesMut::from(&input[..]);
    }
}

/// Serves MQTT over a TCP connection.
pub async fn serve_tcp(router: Arc<Router>, stream: TcpStream, peer: String) {
    let (reader, writer) = stream.into_split();
    serve(router, reader, writer, TRANSPORT_TCP, peer, None).await;
}

/// Serves MQTT over TLS (or any other byte stream that stands for a TCP connection: it
/// counts as one, `listen.mqtt_fox_id` included).
pub async fn serve_tls<S>(
    router: Arc<Router>,
    stream: S,
    peer: String,
    tls: Option<Arc<TlsContext>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    run(router, stream, TRANSPORT_TCP, peer, tls).await;
}

/// Serves MQTT over an upgraded WebSocket (subprotocol `mqtt`): binary frames carry the
/// byte stream; a text frame closes the connection (MQTT over WebSocket, spec 6.0).
pub async fn serve_websocket<S>(
    router: Arc<Router>,
    ws: WebSocketStream<S>,
    peer: String,
    tls: Option<Arc<TlsContext>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (near, far) = tokio::io::duplex(BRIDGE_BUFFER_BYTES);
    let (mut far_read, mut far_write) = tokio::io::split(far);
    let (mut sink, mut stream) = ws.split();
    let inbound = tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let done = match message {
                WsMessage::Binary(bytes) => far_write.write_all(&bytes).await.is_err(),
                WsMessage::Text(_) | WsMessage::Close(_) => true,
                _ => false,
            };
            if done {
                break;
            }
        }
        let _ = far_write.shutdown().await;
    });
    let outbound = tokio::spawn(async move {
        let mut buf = vec![0u8; BRIDGE_BUFFER_BYTES];
        loop {
            match far_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(WsMessage::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    });
    run(router, near, TRANSPORT_WEBSOCKET, peer, tls).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), outbound).await;
    inbound.abort();
}
