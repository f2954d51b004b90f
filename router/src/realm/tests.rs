use fox_wamp_proto::Dict;

use super::*;
use bytes::Bytes;

fn raw(s: &str) -> Payload {
    Payload::Raw(Bytes::from(s.to_owned()))
}

#[test]
fn mqtt_json_payload_becomes_one_argument() {
    let (args, kwargs) = raw(r#"{"a":1}"#).to_wamp();
    let mut d = Dict::new();
    d.insert("a".into(), Value::Int(1));
    assert_eq!(args, Some(vec![Value::Dict(d)]));
    assert_eq!(kwargs, None);
    let (args, _) = raw("not json").to_wamp();
    assert_eq!(args, Some(vec![Value::Bytes(b"not json".to_vec())]));
}

#[test]
fn wamp_arguments_become_mqtt_payload() {
    let one = Payload::Wamp {
        args: Some(vec![Value::from("hi")]),
        kwargs: None,
    };
    assert_eq!(one.to_mqtt(), Bytes::from_static(b"\"hi\""));
    let bin = Payload::Wamp {
        args: Some(vec![Value::Bytes(vec![0, 1])]),
        kwargs: None,
    };
    assert_eq!(bin.to_mqtt(), Bytes::from_static(&[0, 1]));
    let mut kw = Dict::new();
    kw.insert("k".into(), Value::Bool(true));
    let both = Payload::Wamp {
        args: Some(vec![Value::Int(1), Value::Int(2)]),
        kwargs: Some(kw),
    };
    assert_eq!(
        both.to_mqtt(),
        Bytes::from_static(br#"{"args":[1,2],"kwargs":{"k":true}}"#)
    );
    let mqtt = raw("[1,2]");
    let (args, _) = mqtt.to_wamp();
    let back = Payload::Wamp { args, kwargs: None }.to_mqtt();
    assert_eq!(back, Bytes::from_static(b"[1,2]"));
}
