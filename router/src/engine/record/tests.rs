//! Records written and read back; malformed and unknown records.

use super::*;
use crate::message::{MessageProperties, Payload};

fn publication(topic: &str, value: &str) -> Publication {
    Publication {
        id: 0,
        topic: Topic::from_wamp(topic),
        payload: Payload::Wamp {
            args: Some(vec![Value::from(value)]),
            kwargs: None,
        },
        publisher: 7,
        disclosed: None,
        qos: 0,
        retain: true,
        properties: MessageProperties::default(),
    }
}

fn owner() -> Owner {
    Owner {
        node: 4,
        incarnation: 1_800_000_000_000,
        session: 7,
    }
}

#[test]
fn a_conditional_publish_reads_back_with_its_condition_owner_and_token() {
    let options = PublishOptions {
        retain: true,
        ..PublishOptions::default()
    };
    let kv = Conditional {
        write: KvWrite {
            when: Some(Value::Null),
            watch: true,
            will: Some(Payload::Wamp {
                args: None,
                kwargs: None,
            }),
        },
        owner: owner(),
        token: 99,
    };
    let bytes = encode_publish("realm1", &publication("lock.a", "me"), &options, Some(&kv));
    let Some(Record::Publish {
        realm,
        publication,
        options,
        kv: Some(back),
    }) = decode(55, 7, &bytes)
    else {
        panic!("not a conditional publish");
    };
    assert_eq!(realm, "realm1");
    assert_eq!((publication.id, publication.publisher), (55, 7));
    assert!(options.retain && publication.retain);
    assert_eq!(back, kv);
}

#[test]
fn a_plain_publish_has_no_condition_and_is_not_retained_unless_asked() {
    let bytes = encode_publish(
        "realm1",
        &publication("a.b", "x"),
        &PublishOptions::default(),
        None,
    );
    let Some(Record::Publish { options, kv, .. }) = decode(1, 7, &bytes) else {
        panic!("not a publish");
    };
    assert!(!options.retain);
    assert!(kv.is_none());
}

#[test]
fn mqtt_session_and_claim_records_read_back() {
    let body = vec![0x81, 0xc1, 0, 255];
    let bytes = encode_mqtt_session("r", "dev-1", &owner(), Some(&body), true);
    let Some(Record::MqttSession {
        realm,
        client,
        owner: o,
        body: Some(back),
        handover: true,
    }) = decode(60, 7, &bytes)
    else {
        panic!("not a handed-over session record");
    };
    assert_eq!(
        (realm.as_str(), client.as_str(), o),
        ("r", "dev-1", owner())
    );
    assert_eq!(back, body);
    let ended = encode_mqtt_session("r", "dev-1", &owner(), None, false);
    assert!(matches!(
        decode(61, 7, &ended),
        Some(Record::MqttSession {
            body: None,
            handover: false,
            ..
        })
    ));
    let claim = encode_mqtt_claim("r", "dev-1", &owner());
    assert!(matches!(
        decode(62, 7, &claim),
        Some(Record::MqttClaim { ref client, owner: o, .. }) if client == "dev-1" && o == owner()
    ));
}

#[test]
fn wake_will_end_and_start_records_read_back() {
    let kv = Conditional {
        write: KvWrite {
            when: Some(Value::from("free")),
            watch: true,
            will: None,
        },
        owner: owner(),
        token: 3,
    };
    let options = PublishOptions {
        retain: true,
        ..PublishOptions::default()
    };
    let wake = encode_wake("r", &publication("k", "v"), &options, 41, &kv);
    assert!(matches!(
        decode(50, 7, &wake),
        Some(Record::Wake { parked: 41, kv: ref back, .. }) if *back == kv
    ));
    let will = encode_will("r", &publication("k", "gone"), &owner());
    let Some(Record::Will {
        publication,
        owner: o,
        ..
    }) = decode(51, 7, &will)
    else {
        panic!("not a will");
    };
    assert_eq!((o, publication.publisher), (owner(), 0));
    let end = encode_session_ended("r", &owner(), true);
    assert!(matches!(
        decode(52, 7, &end),
        Some(Record::SessionEnded { abnormal: true, owner: o, .. }) if o == owner()
    ));
    let start = encode_entry_started(4, 9);
    assert!(matches!(
        decode(53, 0, &start),
        Some(Record::EntryStarted {
            node: 4,
            incarnation: 9,
            rule: crate::follow::applier::LEASE_RULE,
        })
    ));
    assert!(matches!(
        decode(55, 0, &encode_entry_left(4, 9)),
        Some(Record::EntryLeft {
            node: 4,
            incarnation: 9
        })
    ));
    assert!(matches!(
        decode(54, 0, &encode_beat(4, 9)),
        Some(Record::Beat {
            node: 4,
            incarnation: 9,
            rule: crate::follow::applier::LEASE_RULE,
        })
    ));
    // A binary from before lease rules had numbers names none: rule 1.
    assert!(matches!(
        decode(56, 0, &encode_entry_record_of_rule("beat", 4, 9, 1)),
        Some(Record::Beat { rule: 1, .. })
    ));
}

#[test]
fn unknown_kinds_and_garbage_are_not_records() {
    let mut o = Dict::new();
    o.insert("op".into(), Value::from("teleport"));
    let bytes = encode(&Value::List(vec![
        Value::from("r"),
        Value::from("t"),
        Value::Null,
        Value::Dict(o),
    ]));
    assert!(decode(1, 1, &bytes).is_none());
    assert!(decode(1, 1, b"\xc1garbage").is_none());
    assert!(decode(1, 1, &[]).is_none());
}
