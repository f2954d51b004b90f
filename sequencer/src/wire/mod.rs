//! Node-to-node wire format: an authenticating handshake, then length-prefixed frames.
//!
//! ```text
//! handshake (initiator = the side that dialed):
//!   initiator -> responder   HELLO_I
//!   responder -> initiator   HELLO_R     (after checking HELLO_I)
//!   initiator -> responder   PROOF_I     (after checking HELLO_R)
//!   responder -> initiator   PROOF_R     (after checking PROOF_I)
//! HELLO:
//!   magic        4 bytes  "FOXS"
//!   version_min  u16 BE   lowest protocol version the sender speaks
//!   version_max  u16 BE   highest protocol version the sender speaks
//!   node         u32 BE   sender's NodeId
//!   name_len     u8       then the cluster name, UTF-8, 1..=64 bytes
//!   nonce        32 bytes fresh randomness (the caller draws it, from the OS)
//! PROOF:
//!   mac          32 bytes HMAC-SHA256(secret, DOMAIN_TAG || HELLO_I || HELLO_R || role)
//!                         role = "initiator" for PROOF_I, "responder" for PROOF_R
//! frame (after both proofs checked):
//!   length       u32 BE   payload bytes, <= frame_size_max_bytes (default 16 MiB);
//!                         0 = heartbeat (no payload)
//!   payload      postcard encoding of `Message` (varint integers, enum tag first;
//!                a Raft message travels as its protobuf bytes)
//! ```
//!
//! The secret never crosses the wire: each side proves it knows it by a MAC over both
//! hellos, so over both nonces. A recorded proof is worthless on a new connection, where
//! the peer's nonce differs. Each side checks the peer's magic, cluster name, node ID
//! (one of the cluster's members, and the one it dialed, for the initiator) and version
//! range; the connection speaks the highest version both ranges contain, and carries only
//! the messages that version has ([`message_version`]). Proofs are
//! compared in constant time. Every node shares one secret, so any member can claim any
//! member's ID: the handshake keeps strangers out, it does not tell members apart. Frames
//! are neither encrypted nor MACed: run node links on a private network (or inside TLS).
//!
//! Any error closes the connection; the caller logs it and never answers with details.
//!
//! Calling order: `Handshake::initiate` (send its bytes) or `Handshake::respond`; then
//! feed everything received to `receive`, send what each step returns, until
//! `established()` answers; the bytes left over are the first frames.
//!
//! Layout: [`handshake`] (hello, proofs, the state machine), [`frame`] (length-prefixed
//! frames and heartbeats); both re-exported here.

use crate::id::NodeId;

mod frame;
mod handshake;

pub use frame::{
    decode_frame, decode_frame_or_heartbeat, encode_frame, message_version, Frame,
    FRAME_HEADER_BYTES, HEARTBEAT_FRAME,
};
pub use handshake::{
    negotiate, Established, Handshake, HandshakeConfig, Hello, Step, DOMAIN_TAG,
    HANDSHAKE_MAX_BYTES, HELLO_MAX_BYTES, MAGIC, NONCE_BYTES, PROOF_BYTES, PROTOCOL_VERSION,
    PROTOCOL_VERSION_MIN, SECRET_MIN_BYTES,
};

/// Errors of the wire layer; every one closes the connection.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The peer does not speak this protocol.
    #[error("bad magic bytes")]
    BadMagic,
    /// No version in both ranges.
    #[error("no common protocol version: ours {ours_min}..={ours_max}, theirs {theirs_min}..={theirs_max}")]
    UnsupportedVersion {
        /// Our lowest version.
        ours_min: u16,
        /// Our highest version.
        ours_max: u16,
        /// The peer's lowest version.
        theirs_min: u16,
        /// The peer's highest version.
        theirs_max: u16,
    },
    /// The peer belongs to another cluster.
    #[error("wrong cluster name")]
    WrongCluster,
    /// The peer's node ID is not a member of the cluster.
    #[error("node {0} is not a member of the cluster")]
    UnknownNode(NodeId),
    /// The dialed peer answered with another node ID.
    #[error("expected node {expected}, the peer says it is {actual}")]
    WrongNode {
        /// Whom we dialed.
        expected: NodeId,
        /// Whom the peer claims to be.
        actual: NodeId,
    },
    /// The peer's proof does not check: it does not know the shared secret.
    #[error("bad proof: the peer does not know the cluster secret")]
    BadProof,
    /// A handshake field is malformed (bad UTF-8, bad length).
    #[error("malformed handshake")]
    MalformedHandshake,
    /// A frame announces more than the limit.
    #[error("frame of {length} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// Announced length.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// The payload is not a valid message.
    #[error("undecodable frame payload")]
    BadPayload,
    /// Local misuse: a cluster name too long or empty, a secret too short, an empty
    /// version range, or our own node missing from the members.
    #[error("invalid local handshake configuration: {0}")]
    BadConfig(&'static str),
}

impl WireError {
    /// Whether the peer is to blame (as opposed to our own configuration).
    pub fn is_peer_error(&self) -> bool {
        !matches!(self, WireError::BadConfig(_))
    }
}
