//! The three WAMP serializers and the message codec.

mod decode;
mod encode;
mod msgpack;

use std::fmt::Display;

use serde::de::DeserializeSeed;

use crate::error::DecodeError;
use crate::message::Message;
use crate::value::Value;
use crate::value_serde::{TextMode, ValueSeed, NESTING_ERROR_MARKER};
use crate::NESTING_DEPTH_MAX;

use encode::Elements;

/// A WAMP serializer, as negotiated by WebSocket subprotocol or RawSocket handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Serializer {
    /// `wamp.2.json`, RawSocket id 1.
    Json,
    /// `wamp.2.msgpack`, RawSocket id 2.
    MsgPack,
    /// `wamp.2.cbor`, RawSocket id 3.
    Cbor,
}

impl Serializer {
    /// All serializers, in order of preference for negotiation (binary first).
    pub const ALL: [Serializer; 3] = [Serializer::MsgPack, Serializer::Cbor, Serializer::Json];

    /// The serializer for a WebSocket subprotocol name.
    pub fn from_subprotocol(name: &str) -> Option<Self> {
        match name {
            "wamp.2.json" => Some(Serializer::Json),
            "wamp.2.msgpack" => Some(Serializer::MsgPack),
            "wamp.2.cbor" => Some(Serializer::Cbor),
            _ => None,
        }
    }

    /// The WebSocket subprotocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Serializer::Json => "wamp.2.json",
            Serializer::MsgPack => "wamp.2.msgpack",
            Serializer::Cbor => "wamp.2.cbor",
        }
    }

    /// The RawSocket serializer id.
    pub fn rawsocket_id(self) -> u8 {
        match self {
            Serializer::Json => 1,
            Serializer::MsgPack => 2,
            Serializer::Cbor => 3,
        }
    }

    /// The serializer for a RawSocket serializer id.
    pub fn from_rawsocket_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Serializer::Json),
            2 => Some(Serializer::MsgPack),
            3 => Some(Serializer::Cbor),
            _ => None,
        }
    }

    /// `true` if messages go in binary WebSocket frames (MsgPack, CBOR); JSON uses text frames.
    pub fn is_binary(self) -> bool {
        !matches!(self, Serializer::Json)
    }

    fn text_mode(self) -> TextMode {
        match self {
            Serializer::Json => TextMode::Json,
            Serializer::MsgPack | Serializer::Cbor => TextMode::Binary,
        }
    }

    /// Encodes `message` into a new buffer.
    pub fn encode(self, message: &Message) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.encode_into(message, &mut out);
        out
    }

    /// Appends the encoding of `message` to `out` (lets a caller reuse buffers).
    pub fn encode_into(self, message: &Message, out: &mut Vec<u8>) {
        let elements = Elements::of(message, self.text_mode());
        // Invariant: writing to a Vec cannot fail, every map key is a String and every
        // sequence length is known up front, so none of the three serializers can error.
        let result = match self {
            Serializer::Json => {
                serde_json::to_writer(&mut *out, &elements).map_err(|e| e.to_string())
            }
            Serializer::MsgPack => {
                let mut serializer = rmp_serde::Serializer::new(&mut *out);
                serde::Serialize::serialize(&elements, &mut serializer).map_err(|e| e.to_string())
            }
            Serializer::Cbor => {
                ciborium::into_writer(&elements, &mut *out).map_err(|e| e.to_string())
            }
        };
        if let Err(error) = result {
            unreachable!("encoding into a Vec failed: {error}");
        }
    }

    /// Decodes one message, rejecting inputs over `max_size_bytes`.
    ///
    /// Never panics; nesting is bounded by [`NESTING_DEPTH_MAX`]. Besides the layout,
    /// well-known options and details are type-checked (see [`crate::validate`]).
    pub fn decode(self, bytes: &[u8], max_size_bytes: usize) -> Result<Message, DecodeError> {
        if bytes.len() > max_size_bytes {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                max: max_size_bytes,
            });
        }
        let value = match self {
            Serializer::Json => decode_json(bytes),
            Serializer::MsgPack => decode_msgpack(bytes),
            Serializer::Cbor => decode_cbor(bytes),
        }?;
        let Value::List(elements) = value else {
            return Err(DecodeError::NotAnArray);
        };
        decode::message_from_elements(elements)
    }
}

fn syntax_error(error: impl Display) -> DecodeError {
    let text = error.to_string();
    if text.contains(NESTING_ERROR_MARKER) {
        DecodeError::TooDeep {
            max_depth: NESTING_DEPTH_MAX,
        }
    } else {
        DecodeError::Syntax(text)
    }
}

fn trailing_bytes_error(count: usize) -> DecodeError {
    DecodeError::Syntax(format!("{count} trailing bytes after the message"))
}

fn decode_json(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = ValueSeed::new(TextMode::Json)
        .deserialize(&mut deserializer)
        .map_err(syntax_error)?;
    deserializer.end().map_err(syntax_error)?;
    Ok(value)
}

fn decode_msgpack(bytes: &[u8]) -> Result<Value, DecodeError> {
    msgpack::decode(bytes)
}

/// The serde path for MessagePack, which [`msgpack::decode`] replaced; its tests compare
/// the two.
#[cfg(test)]
fn decode_msgpack_serde(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut deserializer = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    let value = ValueSeed::new(TextMode::Binary)
        .deserialize(&mut deserializer)
        .map_err(syntax_error)?;
    let consumed = usize::try_from(deserializer.position()).unwrap_or(usize::MAX);
    match bytes.len().checked_sub(consumed) {
        Some(0) => Ok(value),
        Some(count) => Err(trailing_bytes_error(count)),
        None => Err(DecodeError::Syntax(
            "read past the end of the input".to_owned(),
        )),
    }
}

fn decode_cbor(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut remaining = bytes;
    let value: Value = ciborium::from_reader(&mut remaining).map_err(syntax_error)?;
    match remaining.len() {
        0 => Ok(value),
        count => Err(trailing_bytes_error(count)),
    }
}

#[cfg(test)]
mod tests;
