//! Handshake tests: both directions, every refusal, replay, arbitrary bytes.
use super::*;
use proptest::prelude::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn config(node: u32) -> HandshakeConfig {
    HandshakeConfig::new(NodeId(node), "fox", SECRET, (1..=3).map(NodeId))
}

/// Drives both sides to the end, delivering `chunk` bytes at a time; the first error wins.
fn run_pair(
    initiator: HandshakeConfig,
    responder: HandshakeConfig,
    expected: NodeId,
    chunk: usize,
) -> Result<(Established, Established), WireError> {
    let (mut left, hello) = Handshake::initiate(initiator, expected, [1; NONCE_BYTES])?;
    let mut right = Handshake::respond(responder, [2; NONCE_BYTES])?;
    let (mut to_right, mut to_left) = (hello, Vec::new());
    let (mut right_inbox, mut left_inbox) = (Vec::new(), Vec::new());
    for _ in 0..10_000 {
        if let (Some(a), Some(b)) = (left.established(), right.established()) {
            return Ok((a, b));
        }
        let take = chunk.min(to_right.len());
        right_inbox.extend(to_right.drain(..take));
        let take = chunk.min(to_left.len());
        left_inbox.extend(to_left.drain(..take));
        let step = right.receive(&right_inbox)?;
        right_inbox.drain(..step.used);
        to_left.extend(step.send);
        right = step.state;
        let step = left.receive(&left_inbox)?;
        left_inbox.drain(..step.used);
        to_right.extend(step.send);
        left = step.state;
    }
    panic!("handshake did not finish");
}

#[test]
fn a_correct_pair_establishes_both_ways() {
    for chunk in [1, 7, 1000] {
        let (a, b) = run_pair(config(1), config(2), NodeId(2), chunk).unwrap();
        assert_eq!(a.peer, NodeId(2));
        assert_eq!(b.peer, NodeId(1));
        assert_eq!((a.version, b.version), (PROTOCOL_VERSION, PROTOCOL_VERSION));
        let (a, b) = run_pair(config(2), config(1), NodeId(1), chunk).unwrap();
        assert_eq!((a.peer, b.peer), (NodeId(1), NodeId(2)));
    }
}

#[test]
fn a_wrong_secret_is_refused_on_either_side() {
    let mut stranger = config(1);
    stranger.secret = b"0123456789abcdef0123456789abcdeF".to_vec();
    let refused = run_pair(stranger.clone(), config(2), NodeId(2), 1000);
    assert_eq!(refused.unwrap_err(), WireError::BadProof);
    // A responder without the secret cannot complete either: its proof fails.
    stranger.node = NodeId(2);
    let refused = run_pair(config(1), stranger, NodeId(2), 1000);
    assert_eq!(refused.unwrap_err(), WireError::BadProof);
}

#[test]
fn wrong_unknown_or_self_nodes_are_refused() {
    let refused = run_pair(config(1), config(2), NodeId(3), 1000);
    assert_eq!(
        refused.unwrap_err(),
        WireError::WrongNode {
            expected: NodeId(3),
            actual: NodeId(2)
        }
    );
    let mut outsider = config(1);
    outsider.node = NodeId(9);
    outsider.members.insert(NodeId(9));
    let refused = run_pair(outsider, config(2), NodeId(2), 1000);
    assert_eq!(refused.unwrap_err(), WireError::UnknownNode(NodeId(9)));
    let refused = run_pair(config(2), config(2), NodeId(2), 1000);
    assert_eq!(refused.unwrap_err(), WireError::UnknownNode(NodeId(2)));
}

#[test]
fn a_wrong_cluster_is_refused() {
    let mut other = config(1);
    other.cluster = "wolf".into();
    let refused = run_pair(other, config(2), NodeId(2), 1000);
    assert_eq!(refused.unwrap_err(), WireError::WrongCluster);
}

#[test]
fn versions_negotiate_to_the_highest_common_or_fail() {
    assert_eq!(negotiate((1, 5), (2, 3)), Ok(3));
    assert_eq!(negotiate((2, 3), (3, 9)), Ok(3));
    let mut future = config(1);
    future.version_min = PROTOCOL_VERSION + 1;
    future.version_max = PROTOCOL_VERSION + 3;
    let refused = run_pair(future, config(2), NodeId(2), 1000);
    assert!(matches!(
        refused,
        Err(WireError::UnsupportedVersion { theirs_min, .. }) if theirs_min == PROTOCOL_VERSION + 1
    ));
    let mut wide = config(1);
    wide.version_min = 1;
    wide.version_max = 9;
    let (a, b) = run_pair(wide, config(2), NodeId(2), 1000).unwrap();
    assert_eq!((a.version, b.version), (PROTOCOL_VERSION, PROTOCOL_VERSION));
    let mut inverted = config(1);
    inverted.version_min = 3;
    inverted.version_max = 2;
    assert!(matches!(
        Handshake::initiate(inverted, NodeId(2), [0; NONCE_BYTES]),
        Err(WireError::BadConfig(_))
    ));
}

#[test]
fn the_secret_never_crosses_the_wire() {
    let (_, hello) = Handshake::initiate(config(1), NodeId(2), [1; NONCE_BYTES]).unwrap();
    assert!(!hello.windows(SECRET.len()).any(|w| w == SECRET));
}

/// A recorded initiator hello and proof, replayed (as is, or with a fresh nonce) to a
/// responder that draws a fresh nonce, fail: the proof covers the responder's nonce.
#[test]
fn a_replayed_proof_fails() {
    let (initiator, hello) = Handshake::initiate(config(1), NodeId(2), [1; 32]).unwrap();
    let responder = Handshake::respond(config(2), [2; 32]).unwrap();
    let step = responder.receive(&hello).unwrap();
    let step_i = initiator.receive(&step.send).unwrap();
    let recorded_proof = step_i.send.clone();
    assert!(step.state.receive(&recorded_proof).is_ok());

    let mut fresh_hello = hello.clone();
    let nonce_at = fresh_hello.len() - NONCE_BYTES;
    fresh_hello[nonce_at] ^= 0xff;
    for replayed_hello in [hello, fresh_hello] {
        let responder = Handshake::respond(config(2), [3; 32]).unwrap();
        let step = responder.receive(&replayed_hello).unwrap();
        let refused = step.state.receive(&recorded_proof);
        assert_eq!(refused.unwrap_err(), WireError::BadProof);
    }
}

#[test]
fn a_bad_local_config_is_refused() {
    let mut short = config(1);
    short.secret = b"short".to_vec();
    assert!(Handshake::respond(short, [0; 32]).is_err());
    let mut absent = config(1);
    absent.members.remove(&NodeId(1));
    assert!(Handshake::respond(absent, [0; 32]).is_err());
}

proptest! {
    #[test]
    fn garbage_to_a_responder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let state = Handshake::respond(config(2), [2; 32]).unwrap();
        let _ = state.receive(&bytes);
        let mut prefixed = MAGIC.to_vec();
        prefixed.extend_from_slice(&bytes);
        let state = Handshake::respond(config(2), [2; 32]).unwrap();
        let _ = state.receive(&prefixed);
    }

    #[test]
    fn garbage_proofs_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let (_, hello) = Handshake::initiate(config(1), NodeId(2), [1; 32]).unwrap();
        let responder = Handshake::respond(config(2), [2; 32]).unwrap();
        let step = responder.receive(&hello).unwrap();
        match step.state.receive(&bytes) {
            Ok(step) => prop_assert!(bytes.len() < PROOF_BYTES && step.state.established().is_none()),
            Err(error) => prop_assert_eq!(error, WireError::BadProof),
        }
    }

    #[test]
    fn garbage_to_an_initiator_never_establishes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let (initiator, _) = Handshake::initiate(config(1), NodeId(2), [1; 32]).unwrap();
        if let Ok(step) = initiator.receive(&bytes) {
            prop_assert!(step.state.established().is_none());
            if let Ok(next) = step.state.receive(&bytes[step.used..]) {
                prop_assert!(next.state.established().is_none());
            }
        }
    }

}
