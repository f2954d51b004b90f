//! The authenticating handshake (format in the parent module's docs).

use super::WireError;
use crate::config::wire_limits::CLUSTER_NAME_MAX_BYTES;
use crate::id::NodeId;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeSet;

/// Handshake magic bytes.
pub const MAGIC: [u8; 4] = *b"FOXS";
/// Current protocol version (the highest this build speaks). Version 6 added UNDECIDED
/// and ABORT_OWNER (entry -> ndb): an ndb aborts a segment when its owner stops naming
/// it or its lease expires, not a fixed time after it arrived. Version 7 added Raft
/// snapshots between sync nodes (a Raft MsgSnapshot whose data is a `SyncSnapshot`;
/// the follower then pulls the resolutions it lacks from a peer with PULL_RESOLUTIONS).
/// Version 8 added CHECKPOINT_OPEN / FILES / READ / DATA: an ndb that starts empty or far
/// behind pulls a checkpoint of a peer ndb's store instead of fetching the log record by
/// record.
pub const PROTOCOL_VERSION: u16 = 8;
/// Lowest protocol version this build speaks (version 1 sent the secret in clear;
/// version 2 had no `after` in SEGMENT_OVER, so its entries could not pipeline segments;
/// version 3 had no STATUS_QUERY / STATUS, which it would read as a bad frame;
/// version 4 had no digest in KEEP, so an ndb could hold a damaged copy of a segment).
/// A link to a version-5 peer works: it is not sent the version-6 messages
/// ([`super::message_version`]), and an ndb that hears no UNDECIDED from an entry aborts
/// its segments `abort_after_ms` after their last KEEP, as version 5 did.
pub const PROTOCOL_VERSION_MIN: u16 = 5;
/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes of a handshake proof (HMAC-SHA256).
pub const PROOF_BYTES: usize = 32;
/// Shortest shared secret accepted, in bytes.
pub const SECRET_MIN_BYTES: usize = 16;
/// Separates these MACs from any other use of the same secret.
pub const DOMAIN_TAG: &[u8] = b"foxrouter/cluster-handshake/v2\0";
/// Largest hello on the wire, in bytes.
pub const HELLO_MAX_BYTES: usize = HELLO_FIXED_BYTES + CLUSTER_NAME_MAX_BYTES + NONCE_BYTES;
/// Most bytes a peer may send before the handshake ends (its hello and its proof).
pub const HANDSHAKE_MAX_BYTES: usize = HELLO_MAX_BYTES + PROOF_BYTES;
const HELLO_FIXED_BYTES: usize = 4 + 2 + 2 + 4 + 1;
const ROLE_INITIATOR: &[u8] = b"initiator";
const ROLE_RESPONDER: &[u8] = b"responder";
const _: () = assert!(CLUSTER_NAME_MAX_BYTES <= u8::MAX as usize);
const _: () = assert!(PROTOCOL_VERSION_MIN <= PROTOCOL_VERSION);

type HmacSha256 = Hmac<Sha256>;

/// What one node needs to run handshakes: who it is, which cluster, the secret, who may
/// connect, and which versions it speaks.
#[derive(Clone)]
pub struct HandshakeConfig {
    /// This node.
    pub node: NodeId,
    /// The cluster name (both sides must agree).
    pub cluster: String,
    /// The shared secret, at least `SECRET_MIN_BYTES`.
    pub secret: Vec<u8>,
    /// Every member of the cluster; a peer outside is refused.
    pub members: BTreeSet<NodeId>,
    /// Lowest version spoken.
    pub version_min: u16,
    /// Highest version spoken.
    pub version_max: u16,
}

impl std::fmt::Debug for HandshakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("HandshakeConfig")
            .field("node", &self.node)
            .field("cluster", &self.cluster)
            .field("members", &self.members)
            .field("versions", &(self.version_min..=self.version_max))
            .finish_non_exhaustive()
    }
}

impl HandshakeConfig {
    /// A configuration speaking this build's versions.
    pub fn new(
        node: NodeId,
        cluster: &str,
        secret: &[u8],
        members: impl IntoIterator<Item = NodeId>,
    ) -> HandshakeConfig {
        HandshakeConfig {
            node,
            cluster: cluster.to_owned(),
            secret: secret.to_vec(),
            members: members.into_iter().collect(),
            version_min: PROTOCOL_VERSION_MIN,
            version_max: PROTOCOL_VERSION,
        }
    }

    fn validate(&self) -> Result<(), WireError> {
        if self.cluster.is_empty() || self.cluster.len() > CLUSTER_NAME_MAX_BYTES {
            return Err(WireError::BadConfig("cluster name must be 1..=64 bytes"));
        }
        if self.secret.len() < SECRET_MIN_BYTES {
            return Err(WireError::BadConfig("secret shorter than 16 bytes"));
        }
        if self.version_min > self.version_max {
            return Err(WireError::BadConfig("empty version range"));
        }
        if !self.members.contains(&self.node) {
            return Err(WireError::BadConfig("this node is not among the members"));
        }
        Ok(())
    }

    fn hello(&self, nonce: [u8; NONCE_BYTES]) -> Hello {
        Hello {
            version_min: self.version_min,
            version_max: self.version_max,
            node: self.node,
            cluster: self.cluster.clone(),
            nonce,
        }
    }

    /// Checks a decoded peer hello: cluster, membership, versions. Returns the version.
    fn check(&self, hello: &Hello) -> Result<u16, WireError> {
        if hello.cluster != self.cluster {
            return Err(WireError::WrongCluster);
        }
        if !self.members.contains(&hello.node) || hello.node == self.node {
            return Err(WireError::UnknownNode(hello.node));
        }
        negotiate(
            (self.version_min, self.version_max),
            (hello.version_min, hello.version_max),
        )
    }

    fn proof(&self, initiator_hello: &[u8], responder_hello: &[u8], role: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length; `validate` made sure ours is long enough.
        let mut mac = match HmacSha256::new_from_slice(&self.secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(DOMAIN_TAG);
        mac.update(initiator_hello);
        mac.update(responder_hello);
        mac.update(role);
        mac
    }
}

/// The highest version in both ranges, else an error naming both.
pub fn negotiate(ours: (u16, u16), theirs: (u16, u16)) -> Result<u16, WireError> {
    let low = ours.0.max(theirs.0);
    let high = ours.1.min(theirs.1);
    if theirs.0 > theirs.1 || low > high {
        return Err(WireError::UnsupportedVersion {
            ours_min: ours.0,
            ours_max: ours.1,
            theirs_min: theirs.0,
            theirs_max: theirs.1,
        });
    }
    Ok(high)
}

/// What one side announces first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Lowest version spoken.
    pub version_min: u16,
    /// Highest version spoken.
    pub version_max: u16,
    /// The sender.
    pub node: NodeId,
    /// The cluster name.
    pub cluster: String,
    /// Fresh randomness.
    pub nonce: [u8; NONCE_BYTES],
}

impl Hello {
    /// Encode this hello (the cluster name must be 1..=64 bytes, as `HandshakeConfig` checks).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        if self.cluster.is_empty() || self.cluster.len() > CLUSTER_NAME_MAX_BYTES {
            return Err(WireError::BadConfig("cluster name must be 1..=64 bytes"));
        }
        let mut bytes = Vec::with_capacity(HELLO_MAX_BYTES);
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&self.version_min.to_be_bytes());
        bytes.extend_from_slice(&self.version_max.to_be_bytes());
        bytes.extend_from_slice(&self.node.0.to_be_bytes());
        bytes.push(self.cluster.len() as u8);
        bytes.extend_from_slice(self.cluster.as_bytes());
        bytes.extend_from_slice(&self.nonce);
        debug_assert!(bytes.len() <= HELLO_MAX_BYTES);
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
        let Some(fixed) = reader.take(2 + 2 + 4 + 1) else {
            return Ok(None);
        };
        let version_min = u16::from_be_bytes([fixed[0], fixed[1]]);
        let version_max = u16::from_be_bytes([fixed[2], fixed[3]]);
        let node = NodeId(u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]));
        let name_length = usize::from(fixed[8]);
        if name_length == 0 || name_length > CLUSTER_NAME_MAX_BYTES {
            return Err(WireError::MalformedHandshake);
        }
        let Some(name) = reader.take(name_length) else {
            return Ok(None);
        };
        let cluster = std::str::from_utf8(name)
            .map_err(|_| WireError::MalformedHandshake)?
            .to_owned();
        let Some(nonce) = reader.take(NONCE_BYTES) else {
            return Ok(None);
        };
        let mut nonce_bytes = [0u8; NONCE_BYTES];
        nonce_bytes.copy_from_slice(nonce);
        let hello = Hello {
            version_min,
            version_max,
            node,
            cluster,
            nonce: nonce_bytes,
        };
        Ok(Some((hello, reader.position)))
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
}

/// A handshake that reached its end: who the peer is and the version spoken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Established {
    /// The authenticated peer.
    pub peer: NodeId,
    /// The negotiated protocol version.
    pub version: u16,
}

/// What one `receive` call did.
#[derive(Debug)]
#[must_use = "the step's bytes must be sent and its state kept"]
pub struct Step {
    /// The next state.
    pub state: Handshake,
    /// Input bytes consumed (0 while more are needed).
    pub used: usize,
    /// Bytes to send to the peer now (may be empty).
    pub send: Vec<u8>,
}

/// The handshake as a state machine, named for what each state waits for. Each
/// `receive` consumes the old state and returns the next one, or an error that closes
/// the connection.
#[derive(Debug)]
pub enum Handshake {
    /// Initiator: our hello is sent; waiting for the responder's.
    ExpectResponderHello {
        /// Our configuration.
        config: Box<HandshakeConfig>,
        /// Whom we dialed.
        expected_peer: NodeId,
        /// Our hello, as sent.
        initiator_hello: Vec<u8>,
    },
    /// Initiator: our proof is sent; waiting for the responder's.
    ExpectResponderProof {
        /// Our configuration.
        config: Box<HandshakeConfig>,
        /// The peer and version, if its proof checks.
        pending: Established,
        /// Both hellos, as sent.
        transcript: Box<(Vec<u8>, Vec<u8>)>,
    },
    /// Responder: waiting for the initiator's hello.
    ExpectInitiatorHello {
        /// Our configuration.
        config: Box<HandshakeConfig>,
        /// Our nonce, for our hello.
        nonce: [u8; NONCE_BYTES],
    },
    /// Responder: our hello is sent; waiting for the initiator's proof.
    ExpectInitiatorProof {
        /// Our configuration.
        config: Box<HandshakeConfig>,
        /// The peer and version, if its proof checks.
        pending: Established,
        /// Both hellos, as sent.
        transcript: Box<(Vec<u8>, Vec<u8>)>,
    },
    /// Both proofs checked; frames follow.
    Established(Established),
}

impl Handshake {
    /// Dial side: the state and our hello, to send first. `nonce` must be fresh randomness.
    pub fn initiate(
        config: HandshakeConfig,
        expected_peer: NodeId,
        nonce: [u8; NONCE_BYTES],
    ) -> Result<(Handshake, Vec<u8>), WireError> {
        config.validate()?;
        let initiator_hello = config.hello(nonce).encode()?;
        let state = Handshake::ExpectResponderHello {
            config: Box::new(config),
            expected_peer,
            initiator_hello: initiator_hello.clone(),
        };
        Ok((state, initiator_hello))
    }

    /// Accept side: waits for the initiator's hello. `nonce` must be fresh randomness.
    pub fn respond(
        config: HandshakeConfig,
        nonce: [u8; NONCE_BYTES],
    ) -> Result<Handshake, WireError> {
        config.validate()?;
        Ok(Handshake::ExpectInitiatorHello {
            config: Box::new(config),
            nonce,
        })
    }

    /// The peer and version once both proofs checked.
    pub fn established(&self) -> Option<Established> {
        match self {
            Handshake::Established(established) => Some(*established),
            _ => None,
        }
    }

    /// Feed the bytes received so far (not yet used). Call again with the rest while a
    /// step uses bytes; send each step's `send`.
    pub fn receive(self, input: &[u8]) -> Result<Step, WireError> {
        match self {
            Handshake::ExpectResponderHello {
                config,
                expected_peer,
                initiator_hello,
            } => on_responder_hello(config, expected_peer, initiator_hello, input),
            Handshake::ExpectInitiatorHello { config, nonce } => {
                on_initiator_hello(config, nonce, input)
            }
            Handshake::ExpectInitiatorProof {
                config,
                pending,
                transcript,
            } => on_initiator_proof(config, pending, transcript, input),
            Handshake::ExpectResponderProof {
                config,
                pending,
                transcript,
            } => on_responder_proof(config, pending, transcript, input),
            established @ Handshake::Established(_) => Ok(Step {
                state: established,
                used: 0,
                send: Vec::new(),
            }),
        }
    }
}

fn on_responder_hello(
    config: Box<HandshakeConfig>,
    expected_peer: NodeId,
    initiator_hello: Vec<u8>,
    input: &[u8],
) -> Result<Step, WireError> {
    let Some((hello, used)) = Hello::decode(input)? else {
        let state = Handshake::ExpectResponderHello {
            config,
            expected_peer,
            initiator_hello,
        };
        return Ok(wait(state));
    };
    let version = config.check(&hello)?;
    if hello.node != expected_peer {
        return Err(WireError::WrongNode {
            expected: expected_peer,
            actual: hello.node,
        });
    }
    let responder_hello = input[..used].to_vec();
    let send = config
        .proof(&initiator_hello, &responder_hello, ROLE_INITIATOR)
        .finalize()
        .into_bytes()
        .to_vec();
    let pending = Established {
        peer: hello.node,
        version,
    };
    let transcript = Box::new((initiator_hello, responder_hello));
    let state = Handshake::ExpectResponderProof {
        config,
        pending,
        transcript,
    };
    Ok(Step { state, used, send })
}

fn on_initiator_hello(
    config: Box<HandshakeConfig>,
    nonce: [u8; NONCE_BYTES],
    input: &[u8],
) -> Result<Step, WireError> {
    let Some((hello, used)) = Hello::decode(input)? else {
        return Ok(wait(Handshake::ExpectInitiatorHello { config, nonce }));
    };
    let version = config.check(&hello)?;
    let responder_hello = config.hello(nonce).encode()?;
    let pending = Established {
        peer: hello.node,
        version,
    };
    let send = responder_hello.clone();
    let transcript = Box::new((input[..used].to_vec(), responder_hello));
    let state = Handshake::ExpectInitiatorProof {
        config,
        pending,
        transcript,
    };
    Ok(Step { state, used, send })
}

fn on_initiator_proof(
    config: Box<HandshakeConfig>,
    pending: Established,
    transcript: Box<(Vec<u8>, Vec<u8>)>,
    input: &[u8],
) -> Result<Step, WireError> {
    let Some(proof) = input.get(..PROOF_BYTES) else {
        let state = Handshake::ExpectInitiatorProof {
            config,
            pending,
            transcript,
        };
        return Ok(wait(state));
    };
    let (initiator_hello, responder_hello) = &*transcript;
    config
        .proof(initiator_hello, responder_hello, ROLE_INITIATOR)
        .verify_slice(proof)
        .map_err(|_| WireError::BadProof)?;
    let send = config
        .proof(initiator_hello, responder_hello, ROLE_RESPONDER)
        .finalize()
        .into_bytes()
        .to_vec();
    let state = Handshake::Established(pending);
    Ok(Step {
        state,
        used: PROOF_BYTES,
        send,
    })
}

fn on_responder_proof(
    config: Box<HandshakeConfig>,
    pending: Established,
    transcript: Box<(Vec<u8>, Vec<u8>)>,
    input: &[u8],
) -> Result<Step, WireError> {
    let Some(proof) = input.get(..PROOF_BYTES) else {
        let state = Handshake::ExpectResponderProof {
            config,
            pending,
            transcript,
        };
        return Ok(wait(state));
    };
    let (initiator_hello, responder_hello) = &*transcript;
    // `verify_slice` compares in constant time.
    config
        .proof(initiator_hello, responder_hello, ROLE_RESPONDER)
        .verify_slice(proof)
        .map_err(|_| WireError::BadProof)?;
    Ok(Step {
        state: Handshake::Established(pending),
        used: PROOF_BYTES,
        send: Vec::new(),
    })
}

fn wait(state: Handshake) -> Step {
    Step {
        state,
        used: 0,
        send: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
