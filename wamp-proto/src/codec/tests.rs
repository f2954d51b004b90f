//! Codec unit tests: one wire sample per message kind plus the error paths.

use super::*;
use crate::message::{code, ID_MAX};
use crate::value::Dict;

const SIZE_MAX_BYTES: usize = 1 << 16;

fn dict(pairs: &[(&str, Value)]) -> Dict {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect()
}

fn text(value: &str) -> String {
    value.to_owned()
}

/// Checks the JSON wire form exactly, then round-trips through every serializer.
fn check(message: Message, json: &str) {
    assert_eq!(
        String::from_utf8(Serializer::Json.encode(&message)).unwrap(),
        json
    );
    assert_eq!(
        Serializer::Json.decode(json.as_bytes(), SIZE_MAX_BYTES),
        Ok(message.clone())
    );
    for serializer in Serializer::ALL {
        let bytes = serializer.encode(&message);
        assert_eq!(
            serializer.decode(&bytes, SIZE_MAX_BYTES),
            Ok(message.clone()),
            "{serializer:?}"
        );
    }
}

fn json_error(json: &str) -> DecodeError {
    Serializer::Json
        .decode(json.as_bytes(), SIZE_MAX_BYTES)
        .unwrap_err()
}

#[test]
fn session_messages() {
    let roles = dict(&[(
        "roles",
        Value::Dict(dict(&[("caller", Value::Dict(Dict::new()))])),
    )]);
    check(
        Message::Hello {
            realm: text("realm1"),
            details: roles.clone(),
        },
        r#"[1,"realm1",{"roles":{"caller":{}}}]"#,
    );
    check(
        Message::Welcome {
            session: 9129137332,
            details: roles,
        },
        r#"[2,9129137332,{"roles":{"caller":{}}}]"#,
    );
    check(
        Message::Abort {
            details: Dict::new(),
            reason: text("wamp.error.no_such_realm"),
        },
        r#"[3,{},"wamp.error.no_such_realm"]"#,
    );
    check(
        Message::Challenge {
            authmethod: text("wampcra"),
            extra: Dict::new(),
        },
        r#"[4,"wampcra",{}]"#,
    );
    check(
        Message::Authenticate {
            signature: text("sig"),
            extra: Dict::new(),
        },
        r#"[5,"sig",{}]"#,
    );
    check(
        Message::Goodbye {
            details: Dict::new(),
            reason: text("wamp.close.normal"),
        },
        r#"[6,{},"wamp.close.normal"]"#,
    );
}

#[test]
fn error_message() {
    check(
        Message::Error {
            request_type: code::CALL,
            request: 7,
            details: Dict::new(),
            error: text("com.myapp.error"),
            args: Some(vec![Value::Int(1)]),
            kwargs: Some(dict(&[("a", Value::Bool(true))])),
        },
        r#"[8,48,7,{},"com.myapp.error",[1],{"a":true}]"#,
    );
}

#[test]
fn pubsub_messages() {
    check(
        Message::Publish {
            request: 1,
            options: Dict::new(),
            topic: text("t"),
            args: None,
            kwargs: None,
        },
        r#"[16,1,{},"t"]"#,
    );
    check(
        Message::Published {
            request: 1,
            publication: 2,
        },
        "[17,1,2]",
    );
    check(
        Message::Subscribe {
            request: 1,
            options: Dict::new(),
            topic: text("t"),
        },
        r#"[32,1,{},"t"]"#,
    );
    check(
        Message::Subscribed {
            request: 1,
            subscription: 2,
        },
        "[33,1,2]",
    );
    check(
        Message::Unsubscribe {
            request: 1,
            subscription: 2,
        },
        "[34,1,2]",
    );
    check(
        Message::Unsubscribed {
            request: 1,
            details: None,
        },
        "[35,1]",
    );
    check(
        Message::Unsubscribed {
            request: 0,
            details: Some(dict(&[("reason", Value::from("x"))])),
        },
        r#"[35,0,{"reason":"x"}]"#,
    );
    check(
        Message::Event {
            subscription: 1,
            publication: 2,
            details: Dict::new(),
            args: Some(vec![Value::from("hi")]),
            kwargs: None,
        },
        r#"[36,1,2,{},["hi"]]"#,
    );
}

#[test]
fn rpc_messages() {
    check(
        Message::Call {
            request: 1,
            options: Dict::new(),
            procedure: text("p"),
            args: Some(vec![]),
            kwargs: None,
        },
        r#"[48,1,{},"p",[]]"#,
    );
    check(
        Message::Cancel {
            request: 1,
            options: dict(&[("mode", Value::from("kill"))]),
        },
        r#"[49,1,{"mode":"kill"}]"#,
    );
    check(
        Message::Result {
            request: 1,
            details: Dict::new(),
            args: Some(vec![Value::Float(1.5)]),
            kwargs: None,
        },
        "[50,1,{},[1.5]]",
    );
    check(
        Message::Register {
            request: 1,
            options: Dict::new(),
            procedure: text("p"),
        },
        r#"[64,1,{},"p"]"#,
    );
    check(
        Message::Registered {
            request: 1,
            registration: 2,
        },
        "[65,1,2]",
    );
    check(
        Message::Unregister {
            request: 1,
            registration: 2,
        },
        "[66,1,2]",
    );
    check(
        Message::Unregistered {
            request: 1,
            details: None,
        },
        "[67,1]",
    );
    check(
        Message::Invocation {
            request: 1,
            registration: 2,
            details: Dict::new(),
            args: None,
            kwargs: None,
        },
        "[68,1,2,{}]",
    );
    check(
        Message::Interrupt {
            request: 1,
            options: Dict::new(),
        },
        "[69,1,{}]",
    );
    check(
        Message::Yield {
            request: 1,
            options: Dict::new(),
            args: Some(vec![Value::Null]),
            kwargs: Some(Dict::new()),
        },
        "[70,1,{},[null],{}]",
    );
}

#[test]
fn kwargs_without_args_emits_empty_args() {
    let message = Message::Yield {
        request: 1,
        options: Dict::new(),
        args: None,
        kwargs: Some(dict(&[("k", Value::Int(1))])),
    };
    let bytes = Serializer::Json.encode(&message);
    assert_eq!(bytes, br#"[70,1,{},[],{"k":1}]"#);
    let Ok(Message::Yield { args, kwargs, .. }) = Serializer::Json.decode(&bytes, SIZE_MAX_BYTES)
    else {
        panic!("YIELD expected");
    };
    assert_eq!(args, Some(vec![]));
    assert_eq!(kwargs, Some(dict(&[("k", Value::Int(1))])));
}

#[test]
fn bytes_use_native_binary_or_json_convention() {
    let message = Message::Event {
        subscription: 1,
        publication: 2,
        details: Dict::new(),
        args: Some(vec![Value::Bytes(vec![0xDE, 0xAD])]),
        kwargs: None,
    };
    check(message.clone(), r#"[36,1,2,{},["\u00003q0="]]"#);
    let msgpack = Serializer::MsgPack.encode(&message);
    assert!(
        msgpack
            .windows(4)
            .any(|window| window == [0xC4, 2, 0xDE, 0xAD]),
        "MsgPack bin 8"
    );
    let cbor = Serializer::Cbor.encode(&message);
    assert!(
        cbor.windows(3).any(|window| window == [0x42, 0xDE, 0xAD]),
        "CBOR byte string"
    );
}

#[test]
fn serializer_negotiation_names() {
    for serializer in Serializer::ALL {
        assert_eq!(
            Serializer::from_subprotocol(serializer.subprotocol()),
            Some(serializer)
        );
        assert_eq!(
            Serializer::from_rawsocket_id(serializer.rawsocket_id()),
            Some(serializer)
        );
    }
    assert_eq!(Serializer::from_subprotocol("wamp.2.ubjson"), None);
    assert_eq!(Serializer::from_rawsocket_id(0), None);
    assert!(!Serializer::Json.is_binary());
    assert!(Serializer::Cbor.is_binary() && Serializer::MsgPack.is_binary());
}

#[test]
fn ids_above_2_pow_53_are_rejected() {
    assert!(Serializer::Json
        .decode(format!("[17,1,{ID_MAX}]").as_bytes(), SIZE_MAX_BYTES)
        .is_ok());
    let error = json_error(&format!("[17,1,{}]", ID_MAX + 1));
    assert!(
        matches!(
            error,
            DecodeError::Invalid {
                code: code::PUBLISHED,
                ..
            }
        ),
        "{error}"
    );
    assert!(matches!(
        json_error("[17,-1,1]"),
        DecodeError::Invalid { .. }
    ));
    assert!(matches!(
        json_error("[17,1.0,1]"),
        DecodeError::Invalid { .. }
    ));
    assert!(matches!(
        json_error("[17,18446744073709551615,1]"),
        DecodeError::Invalid { .. }
    ));
    let msgpack = [0x93, 17, 1, 0xCF, 0, 0x20, 0, 0, 0, 0, 0, 1]; // [17, 1, 2^53 + 1]
    assert!(matches!(
        Serializer::MsgPack.decode(&msgpack, 64),
        Err(DecodeError::Invalid { .. })
    ));
}

#[test]
fn a_string_field_starting_with_nul_is_refused_in_every_serializer() {
    // Found by the wamp_cbor fuzz target's cross-serializer check: such a URI decoded from
    // MsgPack or CBOR could not be written to a JSON peer.
    let subscribe = Message::Subscribe {
        request: 1,
        options: Dict::new(),
        topic: "\0it".to_owned(),
    };
    for serializer in Serializer::ALL {
        let bytes = serializer.encode(&subscribe);
        assert!(
            serializer.decode(&bytes, 1 << 20).is_err(),
            "{serializer:?}"
        );
    }
    let inside = Message::Subscribe {
        request: 1,
        options: Dict::new(),
        topic: "a\0b".to_owned(),
    };
    assert!(Serializer::MsgPack
        .decode(&Serializer::MsgPack.encode(&inside), 1 << 20)
        .is_ok());
}

#[test]
fn malformed_inputs_map_to_their_error() {
    assert_eq!(
        Serializer::Json.decode(b"[17,1,2]", 4),
        Err(DecodeError::TooLarge { size: 8, max: 4 })
    );
    assert!(matches!(json_error("[17,1,"), DecodeError::Syntax(_)));
    assert!(matches!(json_error("[17,1,2] x"), DecodeError::Syntax(_)));
    assert_eq!(json_error(r#"{"a":1}"#), DecodeError::NotAnArray);
    assert_eq!(json_error("[]"), DecodeError::NotAnArray);
    assert_eq!(json_error("[999,1]"), DecodeError::UnknownType(999));
    assert!(matches!(
        json_error(r#"["x",1]"#),
        DecodeError::Invalid { .. }
    ));
    assert!(
        matches!(json_error("[17,1]"), DecodeError::Invalid { .. }),
        "too few"
    );
    assert!(
        matches!(json_error("[17,1,2,3]"), DecodeError::Invalid { .. }),
        "too many"
    );
    assert!(
        matches!(json_error("[32,1,{},7]"), DecodeError::Invalid { .. }),
        "non-string URI"
    );
    assert!(
        matches!(json_error(r#"[32,1,[],"t"]"#), DecodeError::Invalid { .. }),
        "options not a dict"
    );
    assert!(
        matches!(
            json_error(r#"[16,1,{},"t",{}]"#),
            DecodeError::Invalid { .. }
        ),
        "args not a list"
    );
    assert!(
        matches!(
            json_error(r#"[16,1,{},"t",[],[]]"#),
            DecodeError::Invalid { .. }
        ),
        "kwargs not a dict"
    );
    assert!(
        matches!(
            json_error(r#"[16,1,{},"t",["\u0000!!"]]"#),
            DecodeError::Syntax(_)
        ),
        "bad base64"
    );
    let msgpack = Serializer::MsgPack.encode(&Message::Published {
        request: 1,
        publication: 2,
    });
    let mut trailing = msgpack.clone();
    trailing.push(0xC0);
    assert!(matches!(
        Serializer::MsgPack.decode(&trailing, 64),
        Err(DecodeError::Syntax(_))
    ));
    let mut trailing = Serializer::Cbor.encode(&Message::Published {
        request: 1,
        publication: 2,
    });
    trailing.push(0xF6);
    assert!(matches!(
        Serializer::Cbor.decode(&trailing, 64),
        Err(DecodeError::Syntax(_))
    ));
    assert!(Serializer::Cbor
        .decode(&[0x5B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], 64)
        .is_err());
    assert!(Serializer::MsgPack
        .decode(&[0xC6, 0xFF, 0xFF, 0xFF, 0xFF], 64)
        .is_err());
    assert!(Serializer::Cbor
        .decode(&[0x9B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], 64)
        .is_err());
    assert!(Serializer::MsgPack
        .decode(&[0xDD, 0xFF, 0xFF, 0xFF, 0xFF], 64)
        .is_err());
}

/// `[1,"r",{"k": [[...[]...]]}]` with `lists` nested lists: nesting depth `lists + 2`.
fn nested_hello_json(lists: usize) -> String {
    format!(
        r#"[1,"r",{{"k":{}{}}}]"#,
        "[".repeat(lists),
        "]".repeat(lists)
    )
}

#[test]
fn nesting_limit_is_exact() {
    let at_limit = nested_hello_json(NESTING_DEPTH_MAX - 2);
    let message = Serializer::Json
        .decode(at_limit.as_bytes(), 1 << 20)
        .expect("at the limit");
    for serializer in Serializer::ALL {
        assert_eq!(
            serializer.decode(&serializer.encode(&message), 1 << 20),
            Ok(message.clone())
        );
    }
    assert_eq!(
        json_error(&nested_hello_json(NESTING_DEPTH_MAX - 1)),
        DecodeError::TooDeep {
            max_depth: NESTING_DEPTH_MAX
        }
    );
}

#[test]
fn hostile_nesting_does_not_overflow_the_stack() {
    let depth = 200_000;
    let json = "[".repeat(depth);
    let msgpack = vec![0x91; depth];
    let cbor = vec![0x81; depth];
    let map_nesting: Vec<u8> = std::iter::repeat_n([0xA1, 0x61, b'k'], depth)
        .flatten()
        .collect();
    let too_deep = DecodeError::TooDeep {
        max_depth: NESTING_DEPTH_MAX,
    };
    assert_eq!(
        Serializer::Json.decode(json.as_bytes(), usize::MAX),
        Err(too_deep.clone())
    );
    assert_eq!(
        Serializer::MsgPack.decode(&msgpack, usize::MAX),
        Err(too_deep.clone())
    );
    assert_eq!(
        Serializer::Cbor.decode(&cbor, usize::MAX),
        Err(too_deep.clone())
    );
    assert_eq!(
        Serializer::Cbor.decode(&map_nesting, usize::MAX),
        Err(too_deep)
    );
}

#[test]
fn validation_runs_on_decode() {
    let error = json_error(r#"[16,1,{"acknowledge":"yes"},"t"]"#);
    assert!(
        matches!(&error, DecodeError::Invalid { reason, .. } if reason.contains("acknowledge")),
        "{error}"
    );
    assert!(matches!(
        json_error(r#"[32,1,{"match":"regex"},"t"]"#),
        DecodeError::Invalid { .. }
    ));
}

/// What JavaScript clients send: CBOR tag 64 (a `Uint8Array`) around a byte string is WAMP
/// binary; an explicit null / CBOR undefined / msgpackr's `undefined` extension for an
/// option is an unset option; any other MessagePack extension is refused.
#[test]
fn javascript_encodings_of_binary_and_unset_options() {
    // [16, 1, {"acknowledge": true}, "x.y", [tag64(h'09080700ff')]]
    let mut cbor = vec![0x85, 0x10, 0x01, 0xA1, 0x6B];
    cbor.extend_from_slice(b"acknowledge");
    cbor.extend_from_slice(&[0xF5, 0x63, b'x', b'.', b'y', 0x81, 0xD8, 0x40, 0x45]);
    cbor.extend_from_slice(&[0x09, 0x08, 0x07, 0x00, 0xFF]);
    match Serializer::Cbor.decode(&cbor, usize::MAX) {
        Ok(Message::Publish { args, .. }) => {
            assert_eq!(args, Some(vec![Value::Bytes(vec![9, 8, 7, 0, 0xFF])]))
        }
        other => panic!("{other:?}"),
    }
    // [32, 1, {"get_retained": undefined}, "t"] in CBOR (0xF7 = undefined)
    let mut cbor = vec![0x84, 0x18, 0x20, 0x01, 0xA1, 0x6C];
    cbor.extend_from_slice(b"get_retained");
    cbor.extend_from_slice(&[0xF7, 0x61, b't']);
    assert!(matches!(
        Serializer::Cbor.decode(&cbor, usize::MAX),
        Ok(Message::Subscribe { .. })
    ));
    // the same in MessagePack with msgpackr's undefined (fixext 1, type 0, data 0)
    let mut msgpack = vec![0x94, 0x20, 0x01, 0x81, 0xAC];
    msgpack.extend_from_slice(b"get_retained");
    msgpack.extend_from_slice(&[0xD4, 0x00, 0x00, 0xA1, b't']);
    match Serializer::MsgPack.decode(&msgpack, usize::MAX) {
        Ok(Message::Subscribe { options, .. }) => {
            assert_eq!(options.get("get_retained"), Some(&Value::Null))
        }
        other => panic!("{other:?}"),
    }
    // another extension type is refused
    let last = msgpack.len() - 4;
    msgpack[last] = 0x05;
    assert!(Serializer::MsgPack.decode(&msgpack, usize::MAX).is_err());
    // JSON null for an option is an unset option too
    assert!(matches!(
        Serializer::Json.decode(br#"[16,1,{"acknowledge":null},"t"]"#, usize::MAX),
        Ok(Message::Publish { .. })
    ));
}

/// Each message kind that carries Arguments / ArgumentsKw, with both given as `null`
/// after `head` (the elements before them), and what it decodes to with both absent.
fn null_payload_cases() -> Vec<(Vec<Value>, Message)> {
    let list = |items: Vec<Value>| items;
    vec![
        (
            list(vec![
                16.into(),
                1.into(),
                Value::Dict(Dict::new()),
                "t".into(),
            ]),
            Message::Publish {
                request: 1,
                options: Dict::new(),
                topic: text("t"),
                args: None,
                kwargs: None,
            },
        ),
        (
            list(vec![
                36.into(),
                1.into(),
                2.into(),
                Value::Dict(Dict::new()),
            ]),
            Message::Event {
                subscription: 1,
                publication: 2,
                details: Dict::new(),
                args: None,
                kwargs: None,
            },
        ),
        (
            list(vec![
                48.into(),
                1.into(),
                Value::Dict(Dict::new()),
                "p".into(),
            ]),
            Message::Call {
                request: 1,
                options: Dict::new(),
                procedure: text("p"),
                args: None,
                kwargs: None,
            },
        ),
        (
            list(vec![50.into(), 1.into(), Value::Dict(Dict::new())]),
            Message::Result {
                request: 1,
                details: Dict::new(),
                args: None,
                kwargs: None,
            },
        ),
        (
            list(vec![
                68.into(),
                1.into(),
                2.into(),
                Value::Dict(Dict::new()),
            ]),
            Message::Invocation {
                request: 1,
                registration: 2,
                details: Dict::new(),
                args: None,
                kwargs: None,
            },
        ),
        (
            list(vec![70.into(), 1.into(), Value::Dict(Dict::new())]),
            Message::Yield {
                request: 1,
                options: Dict::new(),
                args: None,
                kwargs: None,
            },
        ),
        (
            list(vec![
                8.into(),
                68.into(),
                1.into(),
                Value::Dict(Dict::new()),
                "e".into(),
            ]),
            Message::Error {
                request_type: 68,
                request: 1,
                details: Dict::new(),
                error: text("e"),
                args: None,
                kwargs: None,
            },
        ),
    ]
}

/// Encodes a plain list of values with each serializer's own library (not our encoder),
/// as a third-party peer would.
fn encode_list(serializer: Serializer, elements: &[Value]) -> Vec<u8> {
    let json = serde_json::Value::Array(elements.iter().map(Value::to_json).collect());
    match serializer {
        Serializer::Json => serde_json::to_vec(&json).unwrap(),
        Serializer::MsgPack => rmp_serde::to_vec(&json).unwrap(),
        Serializer::Cbor => {
            let mut out = Vec::new();
            ciborium::into_writer(&json, &mut out).unwrap();
            out
        }
    }
}

/// Issue 12: `null` Arguments or ArgumentsKw are absent (autobahn, and so Crossbar, read
/// them so), in every message that carries them and with every serializer; `null`
/// Arguments before a real ArgumentsKw keep the dict, and read as the empty list (what the
/// encoder must write in their place: found by fuzzing, see
/// `null_arguments_before_arguments_kw_survive_a_round_trip`). Any other non-list /
/// non-dict stays a protocol violation.
#[test]
fn null_arguments_and_kwargs_are_absent() {
    let kwargs = dict(&[("k", Value::Int(1))]);
    for (head, expected) in null_payload_cases() {
        for serializer in Serializer::ALL {
            for tail in [
                vec![Value::Null],
                vec![Value::Null, Value::Null],
                vec![Value::List(vec![]), Value::Null],
            ] {
                let mut elements = head.clone();
                elements.extend(tail.clone());
                let bytes = encode_list(serializer, &elements);
                let decoded = serializer.decode(&bytes, SIZE_MAX_BYTES);
                let expected = match (&expected, tail.first()) {
                    (_, Some(Value::List(_))) => with_payload(&expected, Some(vec![]), None),
                    _ => expected.clone(),
                };
                assert_eq!(decoded, Ok(expected), "{serializer:?} {elements:?}");
            }
            let mut elements = head.clone();
            elements.extend([Value::Null, Value::Dict(kwargs.clone())]);
            let decoded = serializer.decode(&encode_list(serializer, &elements), SIZE_MAX_BYTES);
            let with_kwargs = with_payload(&expected, Some(vec![]), Some(kwargs.clone()));
            assert_eq!(decoded, Ok(with_kwargs), "{serializer:?} {elements:?}");
            for bad in [Value::Int(0), Value::Bool(false), Value::Dict(Dict::new())] {
                let mut elements = head.clone();
                elements.push(bad);
                let decoded =
                    serializer.decode(&encode_list(serializer, &elements), SIZE_MAX_BYTES);
                assert!(
                    matches!(decoded, Err(DecodeError::Invalid { .. })),
                    "{serializer:?} {elements:?}: {decoded:?}"
                );
            }
            for bad in [Value::Int(0), Value::List(vec![]), Value::from("x")] {
                let mut elements = head.clone();
                elements.extend([Value::List(vec![]), bad]);
                let decoded =
                    serializer.decode(&encode_list(serializer, &elements), SIZE_MAX_BYTES);
                assert!(
                    matches!(decoded, Err(DecodeError::Invalid { .. })),
                    "{serializer:?} {elements:?}: {decoded:?}"
                );
            }
        }
    }
    // The issue's own sample.
    assert!(matches!(
        Serializer::Json.decode(br#"[16, 7, {}, "topic", null]"#, SIZE_MAX_BYTES),
        Ok(Message::Publish {
            args: None,
            kwargs: None,
            ..
        })
    ));
}

/// `message` with its Arguments / ArgumentsKw replaced.
fn with_payload(
    message: &Message,
    new_args: Option<Vec<Value>>,
    new_kwargs: Option<Dict>,
) -> Message {
    let mut message = message.clone();
    match &mut message {
        Message::Publish { args, kwargs, .. }
        | Message::Event { args, kwargs, .. }
        | Message::Call { args, kwargs, .. }
        | Message::Result { args, kwargs, .. }
        | Message::Invocation { args, kwargs, .. }
        | Message::Yield { args, kwargs, .. }
        | Message::Error { args, kwargs, .. } => {
            *args = new_args;
            *kwargs = new_kwargs;
        }
        other => panic!("no payload in {other:?}"),
    }
    message
}

/// Found by fuzzing (`fuzz/regressions/wamp_msgpack/null-arguments-before-kwargs`): YIELD
/// `[70, 9, {"a": nil}, nil, {}]` decoded to Arguments absent and ArgumentsKw `{}`, which
/// no serializer can write (Arguments|list precedes ArgumentsKw|dict in every WAMP
/// message that carries them), so the encoder wrote `[]` and the relayed message read
/// differently from the received one. The null now reads as that empty list.
#[test]
fn null_arguments_before_arguments_kw_survive_a_round_trip() {
    for serializer in Serializer::ALL {
        for (head, expected) in null_payload_cases() {
            let mut elements = head.clone();
            elements.extend([Value::Null, Value::Dict(Dict::new())]);
            let decoded = serializer
                .decode(&encode_list(serializer, &elements), SIZE_MAX_BYTES)
                .unwrap();
            assert_eq!(
                decoded,
                with_payload(&expected, Some(vec![]), Some(Dict::new()))
            );
            let again = serializer
                .decode(&serializer.encode(&decoded), SIZE_MAX_BYTES)
                .unwrap();
            assert_eq!(again, decoded, "{serializer:?} {elements:?}");
        }
    }
}
