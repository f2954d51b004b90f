//! The HTTP bridge's JSON bodies (router/src/admin/bridge/body.rs and router/src/topic.rs,
//! compiled in by path: the fox-router crate itself would build RocksDB). Bytes are read
//! as a `POST /api/v1/publish` body and as a `POST /api/v1/call` body. Never panics; a
//! publish that is accepted has a topic that maps to an MQTT topic name and back
//! unchanged, and WAMP arguments that every serializer carries to a subscriber unchanged
//! (the EVENT is encoded and decoded in JSON, MsgPack and CBOR); converting arguments
//! from JSON is stable (converting back and again gives the same values), as the call's
//! answer does.
#![no_main]

#[allow(dead_code, missing_docs)]
#[path = "../../router/src/admin/bridge/body.rs"]
mod body;

#[allow(dead_code, missing_docs)]
#[path = "../../router/src/topic.rs"]
mod topic;

use body::{payload_json, wamp_args, BodyPayload, CallBody, PublishBody};
use fox_wamp_proto::{Dict, Message, Serializer, Value};
use topic::Topic;

/// The arguments as the JSON answer carries them, read back as the bridge reads a body.
fn through_json(
    args: &Option<Vec<Value>>,
    kwargs: &Option<Dict>,
) -> (Option<Vec<Value>>, Option<Dict>) {
    let json = payload_json(args.clone(), kwargs.clone());
    let text = serde_json::to_string(&json).expect("serde_json writes what it built");
    let reread: serde_json::Value =
        serde_json::from_str(&text).expect("serde_json reads what it wrote");
    let args = reread["args"].as_array().cloned();
    let kwargs = reread["kwargs"].as_object().cloned();
    match wamp_args(args, kwargs) {
        Ok(arguments) => arguments,
        Err(error) => panic!("the bridge refuses its own answer {text}: {error}"),
    }
}

/// An EVENT's arguments, absent ones as empty (a WAMP message cannot tell them apart:
/// kwargs after absent args are sent with `[]`).
fn arguments(event: &Message) -> (Vec<Value>, Dict) {
    match event {
        Message::Event { args, kwargs, .. } => (
            args.clone().unwrap_or_default(),
            kwargs.clone().unwrap_or_default(),
        ),
        other => panic!("not an EVENT: {other:?}"),
    }
}

fn check_arguments(args: Option<Vec<Value>>, kwargs: Option<Dict>) {
    let (args_again, kwargs_again) = through_json(&args, &kwargs);
    assert_eq!(
        args_again.unwrap_or_default(),
        args.clone().unwrap_or_default()
    );
    assert_eq!(
        kwargs_again.unwrap_or_default(),
        kwargs.clone().unwrap_or_default()
    );
    let event = Message::Event {
        subscription: 1,
        publication: 2,
        details: Dict::new(),
        args,
        kwargs,
    };
    for serializer in [Serializer::Json, Serializer::MsgPack, Serializer::Cbor] {
        let encoded = serializer.encode(&event);
        match serializer.decode(&encoded, usize::MAX) {
            Ok(decoded) => assert_eq!(
                arguments(&decoded),
                arguments(&event),
                "{serializer:?} changed the event's arguments"
            ),
            Err(error) => panic!("{serializer:?} cannot decode its own {event:?}: {error}"),
        }
    }
}

fn check(data: &[u8]) {
    if let Ok(mut publish) = serde_json::from_slice::<PublishBody>(data) {
        let payload = publish.payload();
        if body::valid_uri(&publish.topic) {
            let topic = Topic::from_wamp(&publish.topic);
            let back = Topic::from_mqtt(topic.mqtt_name());
            assert_eq!(
                back.wamp_uri(),
                publish.topic,
                "via MQTT {:?}",
                topic.mqtt_name()
            );
            assert!(back == topic);
            if let Ok(BodyPayload::Wamp { args, kwargs }) = payload {
                check_arguments(args, kwargs);
            }
        }
    }
    if let Ok(call) = serde_json::from_slice::<CallBody>(data) {
        if let Ok((args, kwargs)) = wamp_args(call.args, call.kwargs) {
            check_arguments(args, kwargs);
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
