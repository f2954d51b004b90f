//! WAMP RawSocket transport, sans-IO: the 4-byte handshake and length-prefixed frames.
//!
//! Calling order for a server: read 4 bytes → [`parse_client_handshake`] → write
//! [`server_handshake_reply`] (or [`server_handshake_error`] and close) → then feed
//! every read into [`FrameDecoder::push`] and drain [`FrameDecoder::next_frame`]
//! until it returns `Ok(None)`; write with [`encode_frame`]. A client does the mirror:
//! [`client_handshake`], then [`parse_server_handshake`].

use crate::codec::Serializer;

/// First byte of every handshake.
pub const MAGIC: u8 = 0x7F;

/// Largest length exponent: the announced maximum is `2^(9 + exp)` bytes, so 16 MiB, one
/// more than a frame header can describe (see [`max_len_bytes`]).
pub const MAX_LEN_EXP_MAX: u8 = 15;

/// Largest payload a frame header can describe (24-bit length).
pub const FRAME_PAYLOAD_MAX_BYTES: usize = (1 << 24) - 1;

/// Frame header size in bytes.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Handshake error codes a server sends in [`server_handshake_error`].
pub mod error_code {
    /// Illegal (must not be used).
    pub const ILLEGAL: u8 = 0;
    /// Serializer unsupported.
    pub const SERIALIZER_UNSUPPORTED: u8 = 1;
    /// Maximum message length unacceptable.
    pub const MAX_LEN_UNACCEPTABLE: u8 = 2;
    /// Use of reserved bits (unsupported feature).
    pub const RESERVED_BITS: u8 = 3;
    /// Maximum connection count reached.
    pub const MAX_CONNECTION_COUNT: u8 = 4;
}

/// The longest message in bytes that a length exponent allows: `2^(9 + exp)`, except that
/// exponent 15 (`2^24`) is one byte more than the 24-bit frame length can carry, so it
/// allows [`FRAME_PAYLOAD_MAX_BYTES`]. A message of exactly `2^24` bytes cannot be framed:
/// a sender must treat it as over the peer's limit, not try to encode it.
pub fn max_len_bytes(max_len_exp: u8) -> usize {
    (1usize << (9 + usize::from(max_len_exp.min(MAX_LEN_EXP_MAX)))).min(FRAME_PAYLOAD_MAX_BYTES)
}

/// What a client asked for in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHandshake {
    /// The client accepts messages up to `2^(9 + max_len_exp)` bytes.
    pub max_len_exp: u8,
    /// Requested serializer (1 JSON, 2 MsgPack, 3 CBOR; others are unknown).
    pub serializer_id: u8,
}

impl ClientHandshake {
    /// The requested serializer, if this crate supports it.
    pub fn serializer(&self) -> Option<Serializer> {
        Serializer::from_rawsocket_id(self.serializer_id)
    }

    /// The maximum message length the client accepts, in bytes.
    pub fn max_len_bytes(&self) -> usize {
        max_len_bytes(self.max_len_exp)
    }
}

/// What a server accepted in its handshake reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHandshake {
    /// The server accepts messages up to `2^(9 + max_len_exp)` bytes.
    pub max_len_exp: u8,
    /// The serializer the server echoed.
    pub serializer_id: u8,
}

/// A malformed or refused handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// First byte is not [`MAGIC`]: not a RawSocket peer; close without reply.
    #[error("not a RawSocket handshake (first byte {0:#04x})")]
    BadMagic(u8),
    /// Bytes 2 and 3 must be zero.
    #[error("reserved handshake bits set")]
    ReservedBits,
    /// Serializer id 0 is illegal.
    #[error("illegal serializer id 0")]
    IllegalSerializer,
    /// The server refused with an error code (see [`error_code`]).
    #[error("server refused the handshake with error code {code}")]
    Refused {
        /// The server's error code.
        code: u8,
    },
}

impl HandshakeError {
    /// The error code a server replies with, or `None` when it should just close.
    pub fn reply_code(&self) -> Option<u8> {
        match self {
            HandshakeError::BadMagic(_) | HandshakeError::Refused { .. } => None,
            HandshakeError::ReservedBits => Some(error_code::RESERVED_BITS),
            HandshakeError::IllegalSerializer => Some(error_code::SERIALIZER_UNSUPPORTED),
        }
    }
}

fn check_common(bytes: [u8; 4]) -> Result<(), HandshakeError> {
    if bytes[0] != MAGIC {
        return Err(HandshakeError::BadMagic(bytes[0]));
    }
    if bytes[2] != 0 || bytes[3] != 0 {
        return Err(HandshakeError::ReservedBits);
    }
    Ok(())
}

/// Parses the 4 bytes a client sends first.
pub fn parse_client_handshake(bytes: [u8; 4]) -> Result<ClientHandshake, HandshakeError> {
    check_common(bytes)?;
    let serializer_id = bytes[1] & 0x0F;
    if serializer_id == 0 {
        return Err(HandshakeError::IllegalSerializer);
    }
    Ok(ClientHandshake {
        max_len_exp: bytes[1] >> 4,
        serializer_id,
    })
}

/// The 4 bytes a client sends. Panics if an argument exceeds 4 bits (caller bug).
pub fn client_handshake(max_len_exp: u8, serializer_id: u8) -> [u8; 4] {
    assert!(max_len_exp <= MAX_LEN_EXP_MAX, "max_len_exp above 15");
    assert!(serializer_id <= 0x0F, "serializer_id above 15");
    [MAGIC, (max_len_exp << 4) | serializer_id, 0, 0]
}

/// The server's acceptance. Panics if an argument exceeds 4 bits (caller bug).
pub fn server_handshake_reply(max_len_exp: u8, serializer_id: u8) -> [u8; 4] {
    client_handshake(max_len_exp, serializer_id)
}

/// The server's refusal with an [`error_code`]. Panics if `code` exceeds 4 bits.
pub fn server_handshake_error(code: u8) -> [u8; 4] {
    assert!(code <= 0x0F, "handshake error code above 15");
    [MAGIC, code << 4, 0, 0]
}

/// Parses the server's 4-byte reply.
pub fn parse_server_handshake(bytes: [u8; 4]) -> Result<ServerHandshake, HandshakeError> {
    check_common(bytes)?;
    let serializer_id = bytes[1] & 0x0F;
    if serializer_id == 0 {
        return Err(HandshakeError::Refused {
            code: bytes[1] >> 4,
        });
    }
    Ok(ServerHandshake {
        max_len_exp: bytes[1] >> 4,
        serializer_id,
    })
}

/// The type of a frame (low 3 bits of the header's first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A WAMP message.
    Message,
    /// Ping; the peer must answer with a pong carrying the same payload.
    Ping,
    /// Pong.
    Pong,
}

impl FrameKind {
    fn bits(self) -> u8 {
        match self {
            FrameKind::Message => 0,
            FrameKind::Ping => 1,
            FrameKind::Pong => 2,
        }
    }
}

/// One received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame type.
    pub kind: FrameKind,
    /// The payload (a serialized message for [`FrameKind::Message`]).
    pub payload: Vec<u8>,
}

/// Malformed frame; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The upper 5 bits of the first header byte must be zero.
    #[error("reserved frame header bits set ({0:#04x})")]
    ReservedBits(u8),
    /// Frame type 3..=7.
    #[error("unknown frame type {0}")]
    UnknownKind(u8),
    /// The announced length exceeds the negotiated maximum.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced payload length in bytes.
        len: usize,
        /// The decoder's limit in bytes.
        max: usize,
    },
}

/// The 4-byte header of a frame. Panics if `payload_len` exceeds
/// [`FRAME_PAYLOAD_MAX_BYTES`] (caller bug: the limit is negotiated).
pub fn encode_frame_header(kind: FrameKind, payload_len: usize) -> [u8; 4] {
    assert!(
        payload_len <= FRAME_PAYLOAD_MAX_BYTES,
        "frame payload over 2^24-1 bytes"
    );
    let len = (payload_len as u32).to_be_bytes();
    [kind.bits(), len[1], len[2], len[3]]
}

/// Header plus payload. Panics like [`encode_frame_header`].
pub fn encode_frame(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&encode_frame_header(kind, payload.len()));
    out.extend_from_slice(payload);
    out
}

/// Splits a byte stream into frames. Errors are fatal: after one, close the connection.
#[derive(Debug)]
pub struct FrameDecoder {
    max_len: usize,
    buffer: Vec<u8>,
    /// Bytes at the front of `buffer` already returned as frames.
    consumed: usize,
}

impl FrameDecoder {
    /// A decoder accepting payloads up to `max_len` bytes (capped at
    /// [`FRAME_PAYLOAD_MAX_BYTES`]); use [`max_len_bytes`] of our own announced exponent.
    pub fn new(max_len: usize) -> Self {
        FrameDecoder {
            max_len: max_len.min(FRAME_PAYLOAD_MAX_BYTES),
            buffer: Vec::new(),
            consumed: 0,
        }
    }

    /// The payload limit in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len() - self.consumed
    }

    /// Appends received bytes. Drain [`next_frame`](Self::next_frame) after each push:
    /// the buffer then never holds more than one partial frame plus one read.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.consumed > 0 && self.consumed * 2 >= self.buffer.len() {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    #[must_use = "a frame or error must be handled"]
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let pending = &self.buffer[self.consumed..];
        let Some(header) = pending.first_chunk::<FRAME_HEADER_BYTES>() else {
            return Ok(None);
        };
        let kind = match header[0] {
            0 => FrameKind::Message,
            1 => FrameKind::Ping,
            2 => FrameKind::Pong,
            kind @ 3..=7 => return Err(FrameError::UnknownKind(kind)),
            reserved => return Err(FrameError::ReservedBits(reserved)),
        };
        let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
        if len > self.max_len {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_len,
            });
        }
        let Some(payload) = pending.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else {
            return Ok(None);
        };
        let frame = Frame {
            kind,
            payload: payload.to_vec(),
        };
        self.consumed += FRAME_HEADER_BYTES + len;
        if self.consumed == self.buffer.len() {
            // Everything read is handled: free the buffer rather than keep it for a
            // connection that may now stay idle for hours (the next read allocates anew).
            self.buffer = Vec::new();
            self.consumed = 0;
        }
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_round_trip() {
        let bytes = client_handshake(15, 2);
        assert_eq!(bytes, [0x7F, 0xF2, 0, 0]);
        let parsed = parse_client_handshake(bytes).unwrap();
        assert_eq!(
            parsed,
            ClientHandshake {
                max_len_exp: 15,
                serializer_id: 2
            }
        );
        assert_eq!(parsed.serializer(), Some(Serializer::MsgPack));
        // 2^24 announced, but a 24-bit frame length ends one byte below it.
        assert_eq!(parsed.max_len_bytes(), 16 * 1024 * 1024 - 1);
        assert_eq!(max_len_bytes(14), 8 * 1024 * 1024);
        assert_eq!(max_len_bytes(0), 512);
        let reply = server_handshake_reply(10, 2);
        assert_eq!(
            parse_server_handshake(reply),
            Ok(ServerHandshake {
                max_len_exp: 10,
                serializer_id: 2
            })
        );
    }

    #[test]
    fn handshake_errors() {
        assert_eq!(
            parse_client_handshake([0x7E, 0xF2, 0, 0]),
            Err(HandshakeError::BadMagic(0x7E))
        );
        assert_eq!(
            parse_client_handshake([0x7F, 0xF2, 0, 1]),
            Err(HandshakeError::ReservedBits)
        );
        assert_eq!(
            parse_client_handshake([0x7F, 0xF0, 0, 0]),
            Err(HandshakeError::IllegalSerializer)
        );
        assert_eq!(
            server_handshake_error(error_code::SERIALIZER_UNSUPPORTED),
            [0x7F, 0x10, 0, 0]
        );
        assert_eq!(
            parse_server_handshake(server_handshake_error(error_code::MAX_CONNECTION_COUNT)),
            Err(HandshakeError::Refused { code: 4 })
        );
        assert_eq!(
            HandshakeError::ReservedBits.reply_code(),
            Some(error_code::RESERVED_BITS)
        );
    }

    #[test]
    fn frames_split_across_pushes() {
        let mut stream = encode_frame(FrameKind::Message, b"hello");
        stream.extend(encode_frame(FrameKind::Ping, b""));
        stream.extend(encode_frame(FrameKind::Pong, b"xy"));
        let mut decoder = FrameDecoder::new(1024);
        let mut frames = Vec::new();
        for byte in &stream {
            decoder.push(std::slice::from_ref(byte));
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(
            frames[0],
            Frame {
                kind: FrameKind::Message,
                payload: b"hello".to_vec()
            }
        );
        assert_eq!(frames[1].kind, FrameKind::Ping);
        assert_eq!(frames[2].payload, b"xy");
        assert_eq!(decoder.buffered_len(), 0);
    }

    #[test]
    fn frame_errors() {
        let mut decoder = FrameDecoder::new(4);
        decoder.push(&encode_frame(FrameKind::Message, b"12345"));
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::TooLarge { len: 5, max: 4 })
        );
        let mut decoder = FrameDecoder::new(4);
        decoder.push(&[0x08, 0, 0, 0]);
        assert_eq!(decoder.next_frame(), Err(FrameError::ReservedBits(0x08)));
        let mut decoder = FrameDecoder::new(4);
        decoder.push(&[0x03, 0, 0, 0]);
        assert_eq!(decoder.next_frame(), Err(FrameError::UnknownKind(3)));
    }
}
