//! Decoding errors.

/// Why bytes could not be decoded into a [`Message`](crate::Message).
///
/// Every variant is a peer's protocol violation: a router answers with ABORT
/// `wamp.error.protocol_violation` (see [`DecodeError::URI`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is larger than the caller's limit.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the input in bytes.
        size: usize,
        /// The caller's limit in bytes.
        max: usize,
    },
    /// Not valid JSON / MsgPack / CBOR (including trailing bytes and bad JSON binary strings).
    #[error("malformed serialization: {0}")]
    Syntax(String),
    /// Values nested deeper than [`NESTING_DEPTH_MAX`](crate::NESTING_DEPTH_MAX).
    #[error("values nested deeper than {max_depth} levels")]
    TooDeep {
        /// The limit that was exceeded.
        max_depth: usize,
    },
    /// The top-level value is not a non-empty array.
    #[error("a WAMP message must be a non-empty array")]
    NotAnArray,
    /// The first element is not a known message type code.
    #[error("unknown message type {0}")]
    UnknownType(u64),
    /// Known type but wrong shape: arity, element type, ID out of range, bad option.
    #[error("invalid message (type {code}): {reason}")]
    Invalid {
        /// The message type code.
        code: u64,
        /// What was wrong, naming the offending element or option.
        reason: String,
    },
}

impl DecodeError {
    /// The WAMP error URI a router sends (in ABORT) for any decode error.
    pub const URI: &'static str = "wamp.error.protocol_violation";
}
