//! # fox-wamp-proto
//!
//! The WAMP v2 message model and its wire codecs for the foxrouter router and its
//! Rust client: basic and advanced profile messages, the JSON / MsgPack / CBOR
//! serializers and RawSocket framing. It is sans-IO: no sockets, no clock, no
//! async runtime; bytes in, messages out.
//!
//! ```text
//!  transport bytes ──► rawsocket::FrameDecoder ──► Serializer::decode ──► Message
//!  Message ──► Serializer::encode ──► rawsocket::encode_frame ──► transport bytes
//! ```
//!
//! ## Layout
//! - [`value`]: [`Value`] / [`Dict`], the dynamic payload type, and its JSON tree
//!   conversions (WAMP binary convention `"\0" + base64`).
//! - `value_serde`: serde glue that decodes straight into [`Value`] with a nesting limit.
//! - [`message`]: [`Message`], [`Id`], [`ID_MAX`] and the [`code`] constants.
//! - [`codec`]: [`Serializer`] — negotiation names/ids, `encode`, `decode`.
//! - [`validate`]: type checks for well-known Options/Details keys (run by `decode`).
//! - [`error`]: [`DecodeError`]; every variant maps to ABORT `wamp.error.protocol_violation`.
//! - [`rawsocket`]: RawSocket handshake and framing.
//!
//! ## Calling order
//! 1. Pick a [`Serializer`] from the WebSocket subprotocol
//!    ([`Serializer::from_subprotocol`]) or the RawSocket handshake
//!    ([`rawsocket::parse_client_handshake`]).
//! 2. For every received message: [`Serializer::decode`] with the transport's size
//!    limit; on error, send ABORT with [`DecodeError::URI`] and close.
//! 3. For every outgoing message: [`Serializer::encode`] (or `encode_into`).
//!
//! ## Example
//! ```
//! use fox_wamp_proto::{Dict, Message, Serializer, Value};
//!
//! let call = Message::Call {
//!     request: 1,
//!     options: Dict::new(),
//!     procedure: "com.example.add".to_owned(),
//!     args: Some(vec![Value::Int(2), Value::Int(3)]),
//!     kwargs: None,
//! };
//! let bytes = Serializer::Json.encode(&call);
//! assert_eq!(bytes, br#"[48,1,{},"com.example.add",[2,3]]"#);
//! let decoded = Serializer::Json.decode(&bytes, 64 * 1024).unwrap();
//! assert_eq!(decoded, call);
//! ```
#![forbid(unsafe_code)]

pub mod codec;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod message;
pub mod rawsocket;
pub mod uri;
pub mod validate;
pub mod value;
mod value_serde;

pub use codec::Serializer;
pub use error::DecodeError;
pub use message::{code, Id, Message, ID_MAX};
pub use uri::{CloseUri, ErrorUri};
pub use value::{Dict, Value};

/// Deepest nesting of lists/dicts accepted when decoding, counting the message
/// array itself as level 1. Bounds decoder recursion so hostile input cannot
/// overflow the stack.
pub const NESTING_DEPTH_MAX: usize = 64;

/// Deepest nesting of lists/dicts inside one argument (an element of Arguments or a
/// value of ArgumentsKw) that a message can carry: the message array and the Arguments
/// list or ArgumentsKw dict take two of [`NESTING_DEPTH_MAX`] levels. See
/// [`Value::nesting_depth`].
pub const ARGUMENT_NESTING_MAX: usize = NESTING_DEPTH_MAX - 2;
