//! WAMP over RawSocket (TCP): the 4-byte handshake, then length-prefixed frames.
//!
//! The handshake picks the serializer (1 JSON, 2 MsgPack, 3 CBOR) and each side announces
//! the longest message it accepts (`2^(9 + exponent)` bytes). Ours comes from
//! `limits.message_size_max_bytes`. PING frames are answered with PONG; a frame longer than
//! our limit, reserved bits or an unknown frame type end the connection with ABORT.

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use fox_wamp_proto::rawsocket::{self, error_code, FrameDecoder, FrameKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::conn::{drive, FrameReader, FrameWriter, Incoming};
use crate::router::Router;
use crate::tls::TlsContext;

/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes of small frames gathered before they are written; a frame this large or larger
/// is written from its own buffer.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

thread_local! {
    /// Where each worker thread's RawSocket connections read into. The frame decoder
    /// copies what is read, so a read buffer is needed only during the read itself: a
    /// connection waiting for input holds none (each used to keep a 64 KiB chunk).
    static READ_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads once from `reader` into this thread's scratch buffer and hands the bytes to
/// `sink` within the same poll (a cancelled read loses nothing); the bytes read, 0 at
/// the end of the stream.
fn poll_read_scratch<R: AsyncRead + Unpin>(
    reader: &mut R,
    cx: &mut Context<'_>,
    sink: impl FnOnce(&[u8]),
) -> Poll<std::io::Result<usize>> {
    READ_SCRATCH.with_borrow_mut(|scratch| {
        if scratch.len() < READ_CHUNK_BYTES {
            scratch.resize(READ_CHUNK_BYTES, 0);
        }
        let mut buf = ReadBuf::new(scratch);
        std::task::ready!(Pin::new(reader).poll_read(cx, &mut buf))?;
        sink(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
    })
}

/// The largest exponent whose length `2^(9+e)` does not exceed `limit_bytes`.
pub fn length_exponent(limit_bytes: usize) -> u8 {
    (0..=rawsocket::MAX_LEN_EXP_MAX)
        .rev()
        .find(|e| rawsocket::max_len_bytes(*e) <= limit_bytes)
        .unwrap_or(0)
}

/// Writes frames, gathering small ones into one socket write per flush.
struct RawWriter<W> {
    inner: W,
    /// Frames not yet written; given back after each write, so a connection between
    /// batches (an idle one) holds no write buffer.
    out: Vec<u8>,
    peer_max_bytes: usize,
}

impl<W: AsyncWrite + Unpin + Send> RawWriter<W> {
    fn new(inner: W, peer_max_bytes: usize) -> Self {
        Self {
            inner,
            out: Vec::new(),
            peer_max_bytes,
        }
    }

    /// Writes what is gathered, then lets the buffer go.
    async fn write_out(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let written = self.inner.write_all(&self.out).await;
        self.out = Vec::new();
        written
    }
}

impl<W: AsyncWrite + Unpin + Send> FrameWriter for RawWriter<W> {
    fn limit(&self) -> usize {
        self.peer_max_bytes
    }

    async fn feed(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        if bytes.len() > self.peer_max_bytes {
            return Err(std::io::Error::other(
                "message exceeds the peer's RawSocket limit",
            ));
        }
        let header = rawsocket::encode_frame_header(FrameKind::Message, bytes.len());
        if bytes.len() >= WRITE_BUFFER_BYTES {
            // A large frame goes out from its own buffer, not copied.
            self.write_out().await?;
            self.inner.write_all(&header).await?;
            return self.inner.write_all(&bytes).await;
        }
        self.out.extend_from_slice(&header);
        self.out.extend_from_slice(&bytes);
        if self.out.len() >= WRITE_BUFFER_BYTES {
            self.write_out().await?;
        }
        Ok(())
    }

    async fn pong(&mut self, payload: Vec<u8>) -> std::io::Result<()> {
        self.out
            .extend_from_slice(&rawsocket::encode_frame(FrameKind::Pong, &payload));
        self.flush().await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.write_out().await?;
        self.inner.flush().await
    }

    async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = self.inner.shutdown().await;
    }
}

/// Frames from the socket, read by the connection task.
struct RawReader<R> {
    reader: R,
    decoder: FrameDecoder,
    /// The stream ended or broke a rule: no more frames.
    done: bool,
}

impl<R: AsyncRead + Unpin + Send> FrameReader for RawReader<R> {
    async fn next_frame(&mut self) -> Option<Incoming> {
        loop {
            if self.done {
                return None;
            }
            match self.decoder.next_frame() {
                Ok(Some(frame)) => match frame.kind {
                    FrameKind::Message => return Some(Incoming::Frame(frame.payload)),
                    FrameKind::Ping => return Some(Incoming::Ping(frame.payload)),
                    FrameKind::Pong => continue,
                },
                Err(e) => {
                    self.done = true;
                    return Some(Incoming::Violation(e.to_string()));
                }
                Ok(None) => {}
            }
            // Cancel safe: what a read returns is in the decoder before the poll ends.
            let (reader, decoder) = (&mut self.reader, &mut self.decoder);
            let read = std::future::poll_fn(|cx| {
                poll_read_scratch(reader, cx, |bytes| decoder.push(bytes))
            })
            .await;
            if matches!(read, Ok(0) | Err(_)) {
                self.done = true;
            }
        }
    }

    async fn discard(&mut self) -> usize {
        // Raw bytes, not frames: after a framing violation there may be no frames left.
        let reader = &mut self.reader;
        std::future::poll_fn(|cx| poll_read_scratch(reader, cx, |_| {}))
            .await
            .unwrap_or(0)
    }
}

/// Serves one RawSocket connection over TCP.
pub async fn serve(router: Arc<Router>, stream: TcpStream, peer: String) {
    serve_stream(router, stream, TcpStream::into_split, peer, None).await;
}

/// Serves one RawSocket connection over any byte stream (TLS), split in two halves by
/// tokio's generic `split`.
pub async fn serve_stream_split<S>(
    router: Arc<Router>,
    stream: S,
    peer: String,
    tls: Option<Arc<TlsContext>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    serve_stream(router, stream, tokio::io::split, peer, tls).await;
}

async fn serve_stream<S, R, W>(
    router: Arc<Router>,
    mut stream: S,
    split: impl FnOnce(S) -> (R, W),
    peer: String,
    tls: Option<Arc<TlsContext>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let mut hello = [0u8; 4];
    let timeout = Duration::from_millis(router.config.limits.handshake_timeout_ms);
    match tokio::time::timeout(timeout, stream.read_exact(&mut hello)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    let handshake = match rawsocket::parse_client_handshake(hello) {
        Ok(h) => h,
        Err(e) => {
            tracing::info!(%peer, error = %e, "RawSocket handshake refused");
            if let Some(code) = e.reply_code() {
                let _ = stream
                    .write_all(&rawsocket::server_handshake_error(code))
                    .await;
            }
            return;
        }
    };
    let Some(serializer) = handshake.serializer() else {
        tracing::info!(%peer, id = handshake.serializer_id, "RawSocket serializer unsupported");
        let reply = rawsocket::server_handshake_error(error_code::SERIALIZER_UNSUPPORTED);
        let _ = stream.write_all(&reply).await;
        return;
    };
    let exponent = length_exponent(router.config.limits.message_size_max_bytes);
    let reply = rawsocket::server_handshake_reply(exponent, handshake.serializer_id);
    if stream.write_all(&reply).await.is_err() {
        return;
    }
    let (reader, writer) = split(stream);
    let reader = RawReader {
        reader,
        decoder: FrameDecoder::new(rawsocket::max_len_bytes(exponent)),
        done: false,
    };
    let writer = RawWriter::new(writer, handshake.max_len_bytes());
    drive(router, serializer, writer, reader, "rawsocket", peer, tls).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that announced exponent 15 (2^24 bytes) is sent a message of exactly 2^24
    /// bytes: one more than a frame can carry. The write fails (the connection closes) and
    /// does not panic the connection task, as it did when the limit and the framing
    /// disagreed by one.
    #[tokio::test]
    async fn a_message_of_exactly_two_to_the_24_bytes_fails_the_write_without_panicking() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (mut client, (server, _)) = (client.unwrap(), accepted.unwrap());
        let peer = rawsocket::parse_client_handshake(rawsocket::client_handshake(15, 1)).unwrap();
        let (_, write_half) = server.into_split();
        let mut writer = RawWriter::new(write_half, peer.max_len_bytes());
        let too_long = vec![b'x'; 1 << 24];
        assert!(writer.feed(too_long).await.is_err());
        // The longest message that can be framed goes out whole.
        let received = tokio::spawn(async move {
            let mut bytes = Vec::new();
            client.read_to_end(&mut bytes).await.map(|_| bytes)
        });
        writer.feed(vec![b'x'; (1 << 24) - 1]).await.unwrap();
        writer.close().await;
        let bytes = received.await.unwrap().unwrap();
        assert_eq!(bytes.len(), 4 + (1 << 24) - 1);
        assert_eq!(bytes[..4], [0, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn exponent_fits_the_limit() {
        assert_eq!(super::length_exponent(512), 0);
        assert_eq!(super::length_exponent(1 << 20), 11);
        assert_eq!(super::length_exponent(usize::MAX), 15);
        assert_eq!(super::length_exponent(100), 0);
    }
}
