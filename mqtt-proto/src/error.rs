//! The codec's one error type.
//!
//! Decode errors are the peer's misbehaviour and each maps to the MQTT 5.0 reason code
//! the server answers with ([`Error::reason_code`]); encode errors are API misuse by the
//! caller ([`Error::Unencodable`]) and are kept apart.

use crate::packet::PacketType;
use crate::protocol::Protocol;
use crate::reason::ReasonCode;

/// Errors from [`decode`](crate::decode) and [`encode`](crate::encode).
///
/// Running out of input while decoding is not an error: `decode` returns `Ok(None)`.
/// After a decode error the buffer's contents are unspecified; the connection is
/// expected to be closed (after a CONNACK or DISCONNECT carrying
/// [`Error::reason_code`], where the protocol allows one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes do not form a packet of the protocol (reason 0x81).
    #[error("malformed packet: {0}")]
    MalformedPacket(&'static str),
    /// The packet is well formed but breaks a protocol rule (reason 0x82).
    #[error("protocol error: {0}")]
    ProtocolError(&'static str),
    /// The packet is larger than the receiver's maximum (reason 0x95).
    #[error("packet of {size_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    PacketTooLarge {
        /// Declared size of the whole packet: fixed header plus remaining length.
        size_bytes: usize,
        /// The maximum the decoder was given.
        max_bytes: usize,
    },
    /// A topic name is not valid (reason 0x90).
    #[error("topic name invalid: {0}")]
    TopicNameInvalid(&'static str),
    /// A topic filter is not valid (reason 0x8F).
    #[error("topic filter invalid: {0}")]
    TopicFilterInvalid(&'static str),
    /// CONNECT names a protocol or level this codec does not speak (reason 0x84;
    /// MQTT 3.x CONNACK return code 1).
    #[error("unsupported protocol {name:?} level {level}")]
    UnsupportedProtocolVersion {
        /// The protocol name as sent (lossily decoded).
        name: String,
        /// The protocol level byte as sent.
        level: u8,
    },
    /// CONNECT carries a client identifier the protocol forbids (reason 0x85;
    /// MQTT 3.x CONNACK return code 2).
    #[error("client identifier not valid: {0}")]
    ClientIdentifierNotValid(&'static str),
    /// Encode only: the packet cannot be represented in the requested protocol, or its
    /// fields are inconsistent. This is a bug in the caller, not in the peer.
    #[error("cannot encode {packet:?} for {protocol:?}: {reason}")]
    Unencodable {
        /// The packet that was to be encoded.
        packet: PacketType,
        /// The protocol it was to be encoded for.
        protocol: Protocol,
        /// What is wrong.
        reason: &'static str,
    },
}

impl Error {
    /// The MQTT 5.0 reason code a server answers this error with (in CONNACK before
    /// the session is established, in DISCONNECT after).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Error::MalformedPacket(_) => ReasonCode::MalformedPacket,
            Error::ProtocolError(_) => ReasonCode::ProtocolError,
            Error::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            Error::TopicNameInvalid(_) => ReasonCode::TopicNameInvalid,
            Error::TopicFilterInvalid(_) => ReasonCode::TopicFilterInvalid,
            Error::UnsupportedProtocolVersion { .. } => ReasonCode::UnsupportedProtocolVersion,
            Error::ClientIdentifierNotValid(_) => ReasonCode::ClientIdentifierNotValid,
            Error::Unencodable { .. } => ReasonCode::ImplementationSpecificError,
        }
    }

    /// True if the error is the peer's misbehaviour (every decode error), false if it
    /// is the caller's (encode errors).
    pub fn is_peer_error(&self) -> bool {
        !matches!(self, Error::Unencodable { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_map_to_their_reason_codes() {
        assert_eq!(Error::MalformedPacket("x").reason_code().value(), 0x81);
        assert_eq!(Error::ProtocolError("x").reason_code().value(), 0x82);
        let too_large = Error::PacketTooLarge {
            size_bytes: 2,
            max_bytes: 1,
        };
        assert_eq!(too_large.reason_code().value(), 0x95);
        assert_eq!(Error::TopicNameInvalid("x").reason_code().value(), 0x90);
        assert_eq!(Error::TopicFilterInvalid("x").reason_code().value(), 0x8F);
        let unsupported = Error::UnsupportedProtocolVersion {
            name: "MQTT".into(),
            level: 9,
        };
        assert_eq!(unsupported.reason_code().value(), 0x84);
        assert_eq!(
            Error::ClientIdentifierNotValid("x").reason_code().value(),
            0x85
        );
        assert!(Error::MalformedPacket("x").is_peer_error());
    }
}
