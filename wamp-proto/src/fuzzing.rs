//! The checks the `cargo fuzz` targets run (`fuzz/fuzz_targets/wamp_*.rs` are one-line
//! wrappers), kept here so that `cargo test` replays the committed corpora and
//! regressions (`fuzz/corpus/<target>`, `fuzz/regressions/<target>`) through the very
//! same code. Not part of the API: hidden from the docs, and a check panics on purpose
//! when the property it states does not hold. See `docs/fuzzing.md`.

use crate::codec::Serializer;
use crate::message::Message;
use crate::rawsocket::{self, FrameDecoder, FrameKind};

/// Input size limit for a decode: larger than anything libFuzzer generates by default.
const MESSAGE_SIZE_MAX_BYTES: usize = 1 << 20;

/// Most frames one input may yield (the loop bound of [`rawsocket`]).
const FRAMES_MAX: usize = 4096;

/// Target `wamp_json`: see [`decode_round_trip`].
pub fn json(data: &[u8]) {
    decode_round_trip(Serializer::Json, data);
}

/// Target `wamp_msgpack`: see [`decode_round_trip`].
pub fn msgpack(data: &[u8]) {
    decode_round_trip(Serializer::MsgPack, data);
}

/// Target `wamp_cbor`: see [`decode_round_trip`].
pub fn cbor(data: &[u8]) {
    decode_round_trip(Serializer::Cbor, data);
}

/// Arbitrary bytes never panic the decoder, and whatever it accepts re-encodes to bytes
/// that decode to the same message (compared structurally unless a float is NaN, which
/// is never equal to itself) and re-encode to the same bytes (a fixed point). Every
/// other serializer can carry it too (the router delivers one peer's message to peers of
/// every serializer): its encoding there decodes.
pub fn decode_round_trip(serializer: Serializer, data: &[u8]) {
    let Ok(message) = serializer.decode(data, MESSAGE_SIZE_MAX_BYTES) else {
        return;
    };
    if !data.is_empty() {
        assert!(
            serializer.decode(data, data.len() - 1).is_err(),
            "{serializer:?}: the size limit was not applied"
        );
    }
    let encoded = serializer.encode(&message);
    let decoded = match serializer.decode(&encoded, usize::MAX) {
        Ok(decoded) => decoded,
        Err(error) => panic!("{serializer:?}: {message:?} re-encoded to bytes it rejects: {error}"),
    };
    if equal_to_itself(&message) {
        assert_eq!(
            decoded, message,
            "{serializer:?}: round trip changed the message"
        );
    }
    assert_eq!(
        serializer.encode(&decoded),
        encoded,
        "{serializer:?}: encoding is not a fixed point"
    );
    for other in [Serializer::Json, Serializer::MsgPack, Serializer::Cbor] {
        if let Err(error) = other.decode(&other.encode(&message), usize::MAX) {
            panic!("{serializer:?} -> {other:?}: {message:?} cannot be delivered: {error}");
        }
    }
}

/// `false` when the message holds a NaN (`PartialEq` on floats).
#[allow(clippy::eq_op)] // Comparing with itself is the point: it fails only for NaN.
fn equal_to_itself(message: &Message) -> bool {
    message == message
}

/// Target `wamp_rawsocket`: the handshake parsers and the frame decoder.
///
/// The first 4 bytes are parsed as a client and as a server handshake; an accepted
/// handshake with an encodable exponent re-encodes to the same 4 bytes. All bytes are
/// then fed to a [`FrameDecoder`] (limit and read size taken from the first byte) and
/// the frames it returns, re-encoded, are exactly the bytes it consumed.
pub fn rawsocket(data: &[u8]) {
    if let Some(handshake) = data.first_chunk::<4>() {
        check_handshakes(*handshake);
    }
    let first = usize::from(data.first().copied().unwrap_or(0));
    let max_len = first * 4;
    let read_size_bytes = 1 + first % 13;
    let mut decoder = FrameDecoder::new(max_len);
    let mut reencoded = Vec::with_capacity(data.len());
    let mut frames = 0;
    for chunk in data.chunks(read_size_bytes) {
        decoder.push(chunk);
        loop {
            assert!(frames <= FRAMES_MAX, "more frames than bytes");
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.payload.len() <= max_len, "frame over the limit");
                    reencoded
                        .extend_from_slice(&rawsocket::encode_frame(frame.kind, &frame.payload));
                    frames += 1;
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert_eq!(
        reencoded[..],
        data[..reencoded.len()],
        "frames do not re-encode to the bytes consumed"
    );
    assert_eq!(
        decoder.buffered_len(),
        data.len() - reencoded.len(),
        "bytes lost or duplicated"
    );
}

fn check_handshakes(bytes: [u8; 4]) {
    if let Ok(client) = rawsocket::parse_client_handshake(bytes) {
        assert_eq!(
            rawsocket::client_handshake(client.max_len_exp, client.serializer_id),
            bytes
        );
        assert!(client.max_len_bytes() <= rawsocket::FRAME_PAYLOAD_MAX_BYTES);
    }
    match rawsocket::parse_server_handshake(bytes) {
        Ok(server) => assert_eq!(
            rawsocket::server_handshake_reply(server.max_len_exp, server.serializer_id),
            bytes
        ),
        Err(rawsocket::HandshakeError::Refused { code }) => {
            assert_eq!(rawsocket::server_handshake_error(code), bytes);
        }
        Err(_) => {}
    }
}

/// The seed corpus of `target`: a handful of valid inputs (written to
/// `fuzz/corpus/<target>/` by this module's tests when `FOX_FUZZ_WRITE_SEEDS=1`).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let serializer = match target {
        "wamp_json" => Serializer::Json,
        "wamp_msgpack" => Serializer::MsgPack,
        "wamp_cbor" => Serializer::Cbor,
        "wamp_rawsocket" => return rawsocket_seeds(),
        _ => return Vec::new(),
    };
    SEED_MESSAGES_JSON
        .iter()
        .map(
            |json| match Serializer::Json.decode(json.as_bytes(), usize::MAX) {
                Ok(message) => serializer.encode(&message),
                Err(error) => unreachable!("seed {json} does not decode: {error}"),
            },
        )
        .collect()
}

/// Seed messages, as JSON (the binary serializers' seeds are the same messages).
const SEED_MESSAGES_JSON: &[&str] = &[
    r#"[1,"realm1",{"roles":{"caller":{"features":{"progressive_call_results":true}},"subscriber":{}},"authmethods":["ticket","cryptosign"],"authid":"joe"}]"#,
    r#"[2,9007199254740991,{"roles":{"broker":{}},"authrole":"user"}]"#,
    r#"[3,{"message":"no such realm"},"wamp.error.no_such_realm"]"#,
    r#"[4,"ticket",{}]"#,
    r#"[5,"secret",{}]"#,
    r#"[6,{},"wamp.close.normal"]"#,
    r#"[8,48,7,{},"com.example.error",["x"],{"k":1.5}]"#,
    r#"[16,1,{"acknowledge":true,"exclude_me":false,"eligible":[1,2]},"com.example.topic",[1,-2,3.25,null,true,"\u0000AQID"],{"nested":{"list":[[],{}]}}]"#,
    r#"[17,1,2]"#,
    r#"[32,2,{"match":"prefix"},"com.example."]"#,
    r#"[33,2,3]"#,
    r#"[34,3,3]"#,
    r#"[35,3]"#,
    r#"[36,3,4,{"publisher":5,"topic":"com.example.topic"},["héllo ☃"],{"big":18446744073709551615}]"#,
    r#"[48,5,{"timeout":1000,"receive_progress":true},"com.example.add",[2,3]]"#,
    r#"[49,5,{"mode":"kill"}]"#,
    r#"[50,5,{"progress":false},[5]]"#,
    r#"[64,6,{"invoke":"roundrobin"},"com.example.add"]"#,
    r#"[65,6,7]"#,
    r#"[66,8,7]"#,
    r#"[67,8]"#,
    r#"[68,9,7,{"caller":5},[2,3],{}]"#,
    r#"[69,9,{"mode":"killnowait"}]"#,
    r#"[70,9,{},[5],{"a":[1e300,-0.0]}]"#,
];

fn rawsocket_seeds() -> Vec<Vec<u8>> {
    let message = br#"[48,5,{},"com.example.add",[2,3]]"#;
    let handshake = |exp, id| rawsocket::client_handshake(exp, id).to_vec();
    let frames = |kinds: &[FrameKind]| {
        let mut out = Vec::new();
        for kind in kinds {
            out.extend_from_slice(&rawsocket::encode_frame(*kind, message));
        }
        out
    };
    vec![
        [handshake(15, 1), frames(&[FrameKind::Message])].concat(),
        [handshake(0, 2), frames(&[FrameKind::Ping, FrameKind::Pong])].concat(),
        rawsocket::server_handshake_reply(9, 3).to_vec(),
        rawsocket::server_handshake_error(rawsocket::error_code::MAX_LEN_UNACCEPTABLE).to_vec(),
        [
            handshake(4, 1),
            rawsocket::encode_frame(FrameKind::Message, b""),
            frames(&[FrameKind::Message, FrameKind::Message]),
        ]
        .concat(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// A fuzz target's check.
    type Check = fn(&[u8]);

    const TARGETS: [(&str, Check); 4] = [
        ("wamp_json", json),
        ("wamp_msgpack", msgpack),
        ("wamp_cbor", cbor),
        ("wamp_rawsocket", rawsocket),
    ];

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
    fn binary_seeds_decode_like_their_json() {
        let json = seeds("wamp_json");
        for serializer in [Serializer::MsgPack, Serializer::Cbor] {
            let target = format!(
                "wamp_{}",
                serializer.subprotocol().trim_start_matches("wamp.2.")
            );
            for (binary, text) in seeds(&target).iter().zip(&json) {
                assert_eq!(
                    serializer.decode(binary, usize::MAX),
                    Serializer::Json.decode(text, usize::MAX)
                );
            }
        }
    }
}
