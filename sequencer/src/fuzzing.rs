//! The checks the `cargo fuzz` targets run (`fuzz/fuzz_targets/cluster_*.rs` are one-line
//! wrappers), kept here so that `cargo test` replays the committed corpora and
//! regressions (`fuzz/corpus/<target>`, `fuzz/regressions/<target>`) through the very
//! same code. Not part of the API: hidden from the docs, and a check panics on purpose
//! when the property it states does not hold. See `docs/fuzzing.md`.

use crate::id::{NodeId, PermanentId, Publication, SegmentId};
use crate::message::{LogRecord, Message, Outcome, RaftMessage, Resolution};
use crate::wire::{
    decode_frame_or_heartbeat, encode_frame, Frame, Handshake, HandshakeConfig, Hello, Step,
    WireError, FRAME_HEADER_BYTES, NONCE_BYTES,
};

/// Frame size limit of the `cluster_frame` decoder.
const FRAME_SIZE_MAX_BYTES: usize = 1 << 16;

/// Most frames one input may yield (a loop bound).
const FRAMES_MAX: usize = 1 << 16;

/// Most `receive` calls per handshake side (each uses bytes or waits; a loop bound).
const STEPS_MAX: usize = 8;

/// The cluster every handshake of these checks runs in: nodes 1, 2 and 3.
fn config(node: u32) -> HandshakeConfig {
    HandshakeConfig::new(
        NodeId(node),
        "fox",
        b"sixteen byte key",
        [NodeId(1), NodeId(2), NodeId(3)],
    )
}

const INITIATOR_NONCE: [u8; NONCE_BYTES] = [0x11; NONCE_BYTES];
const RESPONDER_NONCE: [u8; NONCE_BYTES] = [0x22; NONCE_BYTES];

/// Target `cluster_frame`: `data` is a stream of frames. Arbitrary bytes never panic;
/// every frame decoded uses bytes within the stream, and its message encodes to a frame
/// that decodes to the same message (for a Raft message: that decodes).
pub fn frame(data: &[u8]) {
    let mut rest = data;
    for _ in 0..FRAMES_MAX {
        let (frame, used) = match decode_frame_or_heartbeat(rest, FRAME_SIZE_MAX_BYTES) {
            Ok(Some(decoded)) => decoded,
            Ok(None) | Err(_) => return,
        };
        assert!(
            (FRAME_HEADER_BYTES..=rest.len()).contains(&used),
            "frame used {used} bytes of {}",
            rest.len()
        );
        rest = &rest[used..];
        let Frame::Message(message) = frame else {
            continue;
        };
        let encoded = match encode_frame(&message, usize::MAX) {
            Ok(encoded) => encoded,
            Err(error) => panic!("decoded {message:?}, which does not encode: {error}"),
        };
        match decode_frame_or_heartbeat(&encoded, usize::MAX) {
            Ok(Some((Frame::Message(decoded), used))) => {
                assert_eq!(used, encoded.len());
                // A Raft message is protobuf 2, whose unknown fields sit in a HashMap
                // (their order on the wire varies) and whose `PartialEq` tells an emptied
                // unknown-field set from none (`fuzz/regressions/cluster_frame/`): for it,
                // decoding the re-encoded frame is the check.
                if !matches!(message, Message::Raft(_)) {
                    assert_eq!(decoded, message, "round trip changed the message");
                }
            }
            other => panic!("{message:?} encoded as {encoded:02x?}, which decodes as {other:?}"),
        }
    }
    panic!("more frames than bytes");
}

/// Target `cluster_handshake`. The first byte picks a mode and a read size (1 to 16):
/// - 0: `data` is what an initiator (a responder, for 1) receives from its peer, in
///   reads of that size: never panics, and an error or a wait uses no bytes;
/// - 2: an honest initiator and responder run the handshake through a wire that XORs
///   the bytes in transit with `data` (first half towards the responder, second half
///   towards the initiator): both sides reach `Established` (naming each other, on the
///   same version) exactly when no byte in transit was changed.
///
/// Also, any hello that decodes re-encodes to the bytes it was decoded from.
pub fn handshake(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    hello_round_trip(rest);
    let read_size_bytes = 1 + usize::from(selector >> 4);
    match selector % 4 {
        0 => {
            let (initiator, _) = Handshake::initiate(config(1), NodeId(2), INITIATOR_NONCE)
                .expect("the check's configuration is valid");
            receive_raw(initiator, rest, read_size_bytes);
        }
        1 => {
            let responder = Handshake::respond(config(2), RESPONDER_NONCE)
                .expect("the check's configuration is valid");
            receive_raw(responder, rest, read_size_bytes);
        }
        _ => relay(rest),
    }
}

fn hello_round_trip(data: &[u8]) {
    if let Ok(Some((hello, used))) = Hello::decode(data) {
        assert_eq!(hello.encode().as_deref(), Ok(&data[..used]), "{hello:?}");
    }
}

/// Feeds `data` to `state` in reads of `read_size_bytes`, as a connection would.
fn receive_raw(mut state: Handshake, data: &[u8], read_size_bytes: usize) {
    let mut inbox: Vec<u8> = Vec::new();
    for read in data.chunks(read_size_bytes) {
        inbox.extend_from_slice(read);
        match drive(state, &mut inbox) {
            Ok((next, _)) => state = next,
            Err(_) => return,
        }
    }
}

/// Runs `receive` on `inbox` while it uses bytes; returns the state and what to send.
fn drive(mut state: Handshake, inbox: &mut Vec<u8>) -> Result<(Handshake, Vec<u8>), WireError> {
    let mut send = Vec::new();
    for _ in 0..STEPS_MAX {
        let length_before = inbox.len();
        let Step {
            state: next,
            used,
            send: bytes,
        } = state.receive(inbox)?;
        assert!(
            used <= length_before,
            "used {used} of {length_before} bytes"
        );
        send.extend_from_slice(&bytes);
        inbox.drain(..used);
        state = next;
        if used == 0 {
            return Ok((state, send));
        }
    }
    panic!("the handshake used bytes {STEPS_MAX} times");
}

/// XORs `bytes` (the `offset`-th byte onwards of a direction) with `mask`; returns
/// whether any byte changed.
fn tamper(bytes: &mut [u8], offset: usize, mask: &[u8]) -> bool {
    let mut changed = false;
    for (index, byte) in bytes.iter_mut().enumerate() {
        let flip = mask.get(offset + index).copied().unwrap_or(0);
        *byte ^= flip;
        changed |= flip != 0;
    }
    changed
}

fn relay(mask: &[u8]) {
    let (towards_responder_mask, towards_initiator_mask) = mask.split_at(mask.len() / 2);
    let (mut initiator, hello) = Handshake::initiate(config(1), NodeId(2), INITIATOR_NONCE)
        .expect("the check's configuration is valid");
    let mut responder =
        Handshake::respond(config(2), RESPONDER_NONCE).expect("the check's configuration is valid");
    let mut to_responder = hello;
    let (mut sent_to_responder, mut sent_to_initiator) = (0, 0);
    let (mut inbox_responder, mut inbox_initiator) = (Vec::new(), Vec::new());
    let mut tampered = false;
    for _ in 0..STEPS_MAX {
        tampered |= tamper(&mut to_responder, sent_to_responder, towards_responder_mask);
        sent_to_responder += to_responder.len();
        inbox_responder.append(&mut to_responder);
        let Ok((next, send)) = drive(responder, &mut inbox_responder) else {
            assert!(tampered, "an untouched handshake failed at the responder");
            return;
        };
        responder = next;
        let mut to_initiator = send;
        tampered |= tamper(&mut to_initiator, sent_to_initiator, towards_initiator_mask);
        sent_to_initiator += to_initiator.len();
        inbox_initiator.append(&mut to_initiator);
        let Ok((next, send)) = drive(initiator, &mut inbox_initiator) else {
            assert!(tampered, "an untouched handshake failed at the initiator");
            return;
        };
        initiator = next;
        to_responder = send;
        if to_responder.is_empty() {
            break;
        }
    }
    match (initiator.established(), responder.established()) {
        (Some(at_initiator), Some(at_responder)) => {
            assert!(!tampered, "a tampered handshake was established");
            assert_eq!(at_initiator.peer, NodeId(2));
            assert_eq!(at_responder.peer, NodeId(1));
            assert_eq!(at_initiator.version, at_responder.version);
        }
        _ => assert!(tampered, "an untouched handshake did not finish"),
    }
}

/// The seed corpus of `target` (empty for an unknown target).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "cluster_frame" => {
            let mut stream = Vec::new();
            let mut seeds = Vec::new();
            for message in sample_messages() {
                let frame = encode_frame(&message, FRAME_SIZE_MAX_BYTES)
                    .expect("sample messages are small");
                stream.extend_from_slice(&frame);
                stream.extend_from_slice(&crate::wire::HEARTBEAT_FRAME);
                seeds.push(frame);
            }
            seeds.push(stream);
            seeds
        }
        "cluster_handshake" => handshake_seeds(),
        _ => Vec::new(),
    }
}

fn handshake_seeds() -> Vec<Vec<u8>> {
    let hello = |node: u32, nonce| {
        Hello {
            version_min: crate::wire::PROTOCOL_VERSION_MIN,
            version_max: crate::wire::PROTOCOL_VERSION,
            node: NodeId(node),
            cluster: "fox".to_owned(),
            nonce,
        }
        .encode()
        .expect("a valid hello")
    };
    let responder_hello = hello(2, RESPONDER_NONCE);
    let initiator_hello = hello(1, INITIATOR_NONCE);
    vec![
        // Selector 0x30: an initiator, reads of 4 bytes; the responder's hello and a proof.
        [&[0x30][..], &responder_hello, &[0xAB; 32]].concat(),
        // Selector 0x01: a responder, reads of 1 byte; the initiator's hello.
        [&[0x01][..], &initiator_hello].concat(),
        // Selector 0x02: an honest relay, nothing tampered.
        vec![0x02, 0, 0, 0, 0],
        // Selector 0x02: a relay that flips one bit of the responder's hello.
        [&[0x02][..], &[0; 60], &[0; 20], &[1]].concat(),
    ]
}

/// One message of each kind, in the order of `Message`'s variants (their wire tags): the
/// seeds of the frame targets, and the samples of the wire format's own tests.
pub(crate) fn sample_messages() -> Vec<Message> {
    let segment = SegmentId::new_v7(1_700_000_000_000, [7; 10]);
    let publication = Publication {
        publisher: 9,
        sequence: 3,
        payload: b"hello".to_vec(),
    };
    vec![
        Message::Keep {
            segment,
            owner: NodeId(1),
            digest: crate::id::segment_digest(std::slice::from_ref(&publication)),
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
            after: Some(segment),
        },
        Message::Abort {
            segment,
            owner: NodeId(1),
        },
        Message::PullResolutions { from_index: 12 },
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
        Message::Fetch { segment },
        Message::SegmentData {
            segment,
            owner: NodeId(1),
            messages: vec![publication.clone()],
        },
        Message::Read { after: 4095 },
        Message::Log {
            after: 0,
            records: vec![LogRecord {
                id: PermanentId(4096),
                publication,
            }],
        },
        Message::Raft(RaftMessage(raft::eraftpb::Message {
            from: 1,
            to: 2,
            term: 5,
            ..Default::default()
        })),
        Message::StatusQuery,
        Message::Status(crate::message::NodeReport {
            term: 5,
            leader: Some(NodeId(7)),
            commit_index: 40,
            resolutions: 12,
            applied_index: 0,
            last_id: 0,
            temp_segments: 0,
        }),
        Message::Undecided {
            owner: NodeId(1),
            segments: vec![segment, SegmentId::new_v7(1_700_000_000_020, [8; 10])],
        },
        Message::AbortOwner {
            owner: NodeId(1),
            cut_until_ms: 1_700_000_001_500,
        },
        Message::CheckpointOpen,
        Message::CheckpointFiles {
            checkpoint: 3,
            applied_index: 12,
            last_id: 4096,
            files: vec![crate::message::CheckpointFile {
                name: "000012.sst".into(),
                bytes: 1 << 20,
                sha256: Some([9; 32]),
            }],
        },
        Message::CheckpointRead {
            checkpoint: 3,
            file: "000012.sst".into(),
            offset: 1 << 20,
            bytes: 1 << 20,
        },
        Message::CheckpointData {
            checkpoint: 3,
            file: "000012.sst".into(),
            offset: 0,
            data: vec![1, 2, 3],
            sha256: None,
            gone: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// A fuzz target's check.
    type Check = fn(&[u8]);

    const TARGETS: [(&str, Check); 2] =
        [("cluster_frame", frame), ("cluster_handshake", handshake)];

    fn fuzz_dir(kind: &str, target: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz")
            .join(kind)
            .join(target)
    }

    /// The files of `dir`, sorted; none when it does not exist (an empty regressions
    /// folder is not in git).
    fn inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        paths
            .into_iter()
            .filter(|path| path.is_file())
            .map(|path| {
                let bytes = std::fs::read(&path).expect("reads a committed fuzz input");
                (path, bytes)
            })
            .collect()
    }

    #[test]
    fn committed_corpora_and_regressions_replay() {
        for (target, check) in TARGETS {
            let corpus = inputs(&fuzz_dir("corpus", target));
            assert!(!corpus.is_empty(), "no seed corpus for {target}");
            for (path, bytes) in corpus
                .iter()
                .chain(&inputs(&fuzz_dir("regressions", target)))
            {
                println!("{}", path.display());
                check(bytes);
            }
        }
    }

    #[test]
    fn seeds_pass_their_checks() {
        let write = std::env::var_os("FOX_FUZZ_WRITE_SEEDS").is_some();
        for (target, check) in TARGETS {
            let seeds = seeds(target);
            assert!(!seeds.is_empty(), "{target}");
            for (index, seed) in seeds.iter().enumerate() {
                check(seed);
                if write {
                    let dir = fuzz_dir("corpus", target);
                    std::fs::create_dir_all(&dir).expect("creates the corpus folder");
                    std::fs::write(dir.join(format!("seed-{index:02}")), seed)
                        .expect("writes a seed");
                }
            }
        }
    }

    #[test]
    fn an_untouched_relay_establishes_and_a_flipped_bit_does_not() {
        relay(&[]);
        let mut mask = vec![0; 100];
        mask[10] = 1;
        relay(&mask);
    }
}
