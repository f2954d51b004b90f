//! Node-to-node wire format: a handshake, then length-prefixed frames.
//!
//! ```text
//! handshake (each side sends one, then checks the peer's):
//!   magic     4 bytes  "FOXS"
//!   version   u16 BE   PROTOCOL_VERSION
//!   node      u32 BE   sender's NodeId
//!   name_len  u8       then the cluster name, UTF-8, <= 64 bytes
//!   key_len   u8       then the shared secret, <= 128 bytes (compared in constant time)
//! frame:
//!   length    u32 BE   payload bytes, <= frame_size_max_bytes (default 16 MiB)
//!   payload   postcard encoding of `Message` (varint integers, enum tag first;
//!             a Raft message travels as its protobuf bytes)
//! ```
//!
//! A wrong magic, version, cluster name or secret, or an oversized frame, is an error;
//! the caller closes the connection. The secret travels in clear: run node links on a
//! private network or inside TLS.

use crate::config::wire_limits::{CLUSTER_NAME_MAX_BYTES, SECRET_MAX_BYTES};
use crate::id::NodeId;
use crate::message::Message;

/// Handshake magic bytes.
pub const MAGIC: [u8; 4] = *b"FOXS";
/// Current protocol version.
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes of the frame length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Errors of the wire layer; every one closes the connection.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The peer does not speak this protocol.
    #[error("bad magic bytes")]
    BadMagic,
    /// The peer speaks another version.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// The peer belongs to another cluster.
    #[error("wrong cluster name")]
    WrongCluster,
    /// The peer does not know the shared secret.
    #[error("wrong shared secret")]
    BadSecret,
    /// A handshake field is malformed (bad UTF-8, too long).
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
    /// Local misuse: a name or secret longer than the format allows.
    #[error("cluster name or secret too long for the handshake")]
    ConfigTooLong,
}

/// What one side announces in its handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version.
    pub version: u16,
    /// The sender.
    pub node: NodeId,
    /// The cluster name.
    pub cluster: String,
    /// The shared secret.
    pub secret: Vec<u8>,
}

impl Hello {
    /// Encode this hello.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        if self.cluster.len() > CLUSTER_NAME_MAX_BYTES || self.secret.len() > SECRET_MAX_BYTES {
            return Err(WireError::ConfigTooLong);
        }
        let mut bytes = Vec::with_capacity(12 + self.cluster.len() + self.secret.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&self.version.to_be_bytes());
        bytes.extend_from_slice(&self.node.0.to_be_bytes());
        bytes.push(self.cluster.len() as u8);
        bytes.extend_from_slice(self.cluster.as_bytes());
        bytes.push(self.secret.len() as u8);
        bytes.extend_from_slice(&self.secret);
        Ok(bytes)
    }

    /// Decode a hello from the front of `input`: `Ok(None)` if more bytes are needed,
    /// else the hello and the bytes it used. Checks only the format, not the values.
    pub fn decode(input: &[u8]) -> Result<Option<(Hello, usize)>, WireError> {
        let mut reader = Reader { input, position: 0 };
        let Some(magic) = reader.take(4) else {
            return Ok(None);
        };
        if magic != MAGIC {
            return Err(WireError::BadMagic);
        }
        let Some(version) = reader.take(2) else {
            return Ok(None);
        };
        let version = u16::from_be_bytes([version[0], version[1]]);
        if version != PROTOCOL_VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        let Some(node) = reader.take(4) else {
            return Ok(None);
        };
        let node = NodeId(u32::from_be_bytes([node[0], node[1], node[2], node[3]]));
        let Some(cluster) = reader.take_short(CLUSTER_NAME_MAX_BYTES)? else {
            return Ok(None);
        };
        let cluster = std::str::from_utf8(cluster)
            .map_err(|_| WireError::MalformedHandshake)?
            .to_owned();
        let Some(secret) = reader.take_short(SECRET_MAX_BYTES)? else {
            return Ok(None);
        };
        let secret = secret.to_vec();
        Ok(Some((
            Hello {
                version,
                node,
                cluster,
                secret,
            },
            reader.position,
        )))
    }
}

struct Reader<'a> {
    input: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let slice = self
            .input
            .get(self.position..self.position.checked_add(count)?)?;
        self.position += count;
        Some(slice)
    }

    /// A u8 length then that many bytes, at most `limit`.
    fn take_short(&mut self, limit: usize) -> Result<Option<&'a [u8]>, WireError> {
        let Some(length) = self.take(1) else {
            return Ok(None);
        };
        let length = usize::from(length[0]);
        if length > limit {
            return Err(WireError::MalformedHandshake);
        }
        Ok(self.take(length))
    }
}

/// The handshake as a state machine: `ExpectHello` until the peer's hello checks out.
#[derive(Debug)]
pub enum Handshake {
    /// Waiting for the peer's hello.
    ExpectHello {
        /// Our cluster name.
        cluster: String,
        /// Our shared secret.
        secret: Vec<u8>,
    },
    /// The peer is one of ours; frames follow.
    Established {
        /// The peer.
        peer: NodeId,
    },
}

impl Handshake {
    /// Start a handshake: returns the state and our hello bytes to send first.
    pub fn start(
        node: NodeId,
        cluster: &str,
        secret: &[u8],
    ) -> Result<(Handshake, Vec<u8>), WireError> {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            node,
            cluster: cluster.to_owned(),
            secret: secret.to_vec(),
        };
        let bytes = hello.encode()?;
        Ok((
            Handshake::ExpectHello {
                cluster: cluster.to_owned(),
                secret: secret.to_vec(),
            },
            bytes,
        ))
    }

    /// Feed received bytes: the next state and the bytes used (0 while incomplete).
    pub fn receive(self, input: &[u8]) -> Result<(Handshake, usize), WireError> {
        let Handshake::ExpectHello { cluster, secret } = self else {
            return Ok((self, 0));
        };
        let Some((hello, used)) = Hello::decode(input)? else {
            return Ok((Handshake::ExpectHello { cluster, secret }, 0));
        };
        if hello.cluster != cluster {
            return Err(WireError::WrongCluster);
        }
        if !constant_time_equal(&hello.secret, &secret) {
            return Err(WireError::BadSecret);
        }
        Ok((Handshake::Established { peer: hello.node }, used))
    }
}

/// Compare without an early exit, so timing does not reveal the matching prefix.
pub fn constant_time_equal(left: &[u8], right: &[u8]) -> bool {
    let mut difference = u8::from(left.len() != right.len());
    let length = left.len().max(right.len());
    for index in 0..length {
        difference |=
            left.get(index).copied().unwrap_or(0) ^ right.get(index).copied().unwrap_or(0xff);
    }
    difference == 0
}

/// Encode one message as a frame.
pub fn encode_frame(message: &Message, frame_size_max_bytes: usize) -> Result<Vec<u8>, WireError> {
    let mut frame = vec![0u8; FRAME_HEADER_BYTES];
    let frame = postcard::to_extend(message, std::mem::take(&mut frame))
        .map_err(|_| WireError::BadPayload)?;
    let length = frame.len() - FRAME_HEADER_BYTES;
    if length > frame_size_max_bytes {
        return Err(WireError::FrameTooLarge {
            length,
            limit: frame_size_max_bytes,
        });
    }
    let mut frame = frame;
    frame[..FRAME_HEADER_BYTES].copy_from_slice(&(length as u32).to_be_bytes());
    Ok(frame)
}

/// Decode one frame from the front of `input`: `Ok(None)` if more bytes are needed,
/// else the message and the bytes used. Never panics on any input.
pub fn decode_frame(
    input: &[u8],
    frame_size_max_bytes: usize,
) -> Result<Option<(Message, usize)>, WireError> {
    let Some(header) = input.get(..FRAME_HEADER_BYTES) else {
        return Ok(None);
    };
    let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if length > frame_size_max_bytes {
        return Err(WireError::FrameTooLarge {
            length,
            limit: frame_size_max_bytes,
        });
    }
    let Some(payload) = input.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + length) else {
        return Ok(None);
    };
    let (message, rest) =
        postcard::take_from_bytes::<Message>(payload).map_err(|_| WireError::BadPayload)?;
    if !rest.is_empty() {
        return Err(WireError::BadPayload);
    }
    Ok(Some((message, FRAME_HEADER_BYTES + length)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{PermanentId, Publication, SegmentId};
    use crate::message::{LogRecord, Outcome, RaftMessage, Resolution};
    use proptest::prelude::*;

    const LIMIT: usize = 1 << 20;

    fn samples() -> Vec<Message> {
        let segment = SegmentId::new_v7(1_700_000_000_000, [7; 10]);
        let publication = Publication {
            publisher: 9,
            sequence: 3,
            payload: b"hello".to_vec(),
        };
        let raft_message = raft::eraftpb::Message {
            from: 1,
            to: 2,
            term: 5,
            ..Default::default()
        };
        vec![
            Message::Keep {
                segment,
                owner: NodeId(1),
                messages: vec![publication.clone()],
            },
            Message::Stored {
                segment,
                count: 1,
                digest: 77,
            },
            Message::SegmentOver {
                segment,
                owner: NodeId(1),
                count: 1,
                digest: 77,
            },
            Message::Resolved {
                resolutions: vec![Resolution {
                    index: 1,
                    segment,
                    owner: NodeId(1),
                    outcome: Outcome::Permanent {
                        base: PermanentId(4096),
                        count: 1,
                        digest: 77,
                    },
                    raft_index: 3,
                    raft_term: 2,
                }],
            },
            Message::Log {
                after: 0,
                records: vec![LogRecord {
                    id: PermanentId(4096),
                    publication,
                }],
            },
            Message::Raft(RaftMessage(raft_message)),
        ]
    }

    #[test]
    fn frames_round_trip() {
        for message in samples() {
            let frame = encode_frame(&message, LIMIT).unwrap();
            let (decoded, used) = decode_frame(&frame, LIMIT).unwrap().unwrap();
            assert_eq!(decoded, message);
            assert_eq!(used, frame.len());
            for cut in 0..frame.len() {
                assert_eq!(
                    decode_frame(&frame[..cut], LIMIT),
                    Ok(None),
                    "truncated at {cut}"
                );
            }
        }
    }

    #[test]
    fn oversized_frames_are_refused() {
        let frame = encode_frame(&samples()[0], LIMIT).unwrap();
        assert!(matches!(
            decode_frame(&frame, 4),
            Err(WireError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            encode_frame(&samples()[0], 4),
            Err(WireError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn handshake_accepts_peer_and_rejects_strangers() {
        let (ours, _) = Handshake::start(NodeId(1), "fox", b"s3cret").unwrap();
        let (_, theirs) = Handshake::start(NodeId(2), "fox", b"s3cret").unwrap();
        let (state, used) = ours.receive(&theirs).unwrap();
        assert!(matches!(state, Handshake::Established { peer: NodeId(2) }));
        assert_eq!(used, theirs.len());

        let start = || Handshake::start(NodeId(1), "fox", b"s3cret").unwrap().0;
        let (_, wrong_secret) = Handshake::start(NodeId(2), "fox", b"s3creT").unwrap();
        assert_eq!(
            start().receive(&wrong_secret).unwrap_err(),
            WireError::BadSecret
        );
        let (_, wrong_cluster) = Handshake::start(NodeId(2), "wolf", b"s3cret").unwrap();
        assert_eq!(
            start().receive(&wrong_cluster).unwrap_err(),
            WireError::WrongCluster
        );
        let mut wrong_magic = theirs.clone();
        wrong_magic[0] = b'X';
        assert_eq!(
            start().receive(&wrong_magic).unwrap_err(),
            WireError::BadMagic
        );
        let mut wrong_version = theirs.clone();
        wrong_version[5] = 9;
        assert!(matches!(
            start().receive(&wrong_version),
            Err(WireError::UnsupportedVersion(_))
        ));
        let (state, used) = start().receive(&theirs[..theirs.len() - 1]).unwrap();
        assert!(matches!(state, Handshake::ExpectHello { .. }));
        assert_eq!(used, 0);
    }

    #[test]
    fn constant_time_equal_is_equality() {
        assert!(constant_time_equal(b"abc", b"abc"));
        assert!(!constant_time_equal(b"abc", b"abd"));
        assert!(!constant_time_equal(b"abc", b"ab"));
        assert!(!constant_time_equal(b"", b"\xff"));
        assert!(constant_time_equal(b"", b""));
    }

    proptest! {
        #[test]
        fn garbage_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(&bytes, LIMIT);
        }

        #[test]
        fn garbage_after_a_valid_header_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            let _ = decode_frame(&frame, LIMIT);
        }

        #[test]
        fn garbage_handshakes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let (state, _) = Handshake::start(NodeId(1), "fox", b"k").unwrap();
            let _ = state.receive(&bytes);
            let mut prefixed = MAGIC.to_vec();
            prefixed.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
            prefixed.extend_from_slice(&bytes);
            let (state, _) = Handshake::start(NodeId(1), "fox", b"k").unwrap();
            let _ = state.receive(&prefixed);
        }

        #[test]
        fn flipped_bytes_never_panic(index in 0usize..64, value in any::<u8>()) {
            for message in samples() {
                let mut frame = encode_frame(&message, LIMIT).unwrap();
                let position = index % frame.len();
                frame[position] = value;
                let _ = decode_frame(&frame, LIMIT);
            }
        }
    }
}
