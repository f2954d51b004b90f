use bytes::Bytes;

use super::*;
use crate::config::Config;
use crate::durable::Durable;
use crate::mqtt::inflight::{Entry, Phase};
use crate::mqtt::registry::Previous;
use crate::realm::MessageProperties;
use crate::realm::{Outbound, Payload, Publication};

fn publication(id: u64, topic: &str, qos: u8, publisher: u64) -> Publication {
    Publication {
        id,
        topic: Topic::from_mqtt(topic),
        payload: Payload::Raw(Bytes::from(format!("m{id}"))),
        publisher,
        disclosed: None,
        qos,
        retain: false,
        properties: MessageProperties::default(),
    }
}

fn stored(filter: &str, qos: u8, no_local: bool, since: u64) -> StoredSubscription {
    StoredSubscription {
        filter: filter.into(),
        qos,
        no_local,
        retain_as_published: false,
        identifier: None,
        since,
        fox_id: false,
    }
}

/// The record of a session of `dev` parked at `now` with these subscriptions and
/// watermark, and nothing of the exact state.
fn stored_record(subscriptions: Vec<StoredSubscription>, through: u64, now: u64) -> SessionRecord {
    SessionRecord {
        sid: 5,
        authid: "dev".into(),
        authrole: "anonymous".into(),
        authmethod: "anonymous".into(),
        authprovider: "static".into(),
        expiry_secs: 600,
        subscriptions,
        will: None,
        through,
        parked_ms: Some(now),
        taken: None,
        waiting: Vec::new(),
        inflight: Vec::new(),
        inbound_qos2: Vec::new(),
    }
}

/// A restart brings back a stored session with exactly what it is owed (after its
/// watermark and each subscription's start, QoS > 0, not its own messages under no
/// local), and drops a malformed record with a warning instead of failing.
#[tokio::test(flavor = "multi_thread")]
async fn restore_queues_what_is_owed_and_skips_malformed_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        let durable = Durable::open(dir.path(), fox_storage::SyncMode::None).unwrap();
        let now = unix_ms();
        for p in [
            publication(10, "a/x", 1, 1),   // at the watermark: dealt with
            publication(11, "a/x", 1, 1),   // owed
            publication(12, "a/x", 0, 1),   // QoS 0: not kept
            publication(13, "b/y", 2, 1),   // before the b/# subscription started
            publication(14, "b/y", 2, 1),   // owed, QoS min(2, 1) = 1
            publication(15, "own/t", 1, 5), // its own, under no local
            publication(16, "c/z", 1, 1),   // not subscribed
        ] {
            // Durable once the store is dropped below (its writer drains).
            let _pending = durable.record("realm1", &p, false, now).unwrap();
        }
        // A record written before `taken`, `waiting`, `inflight` and `inbound_qos2`.
        let record = stored_record(
            vec![
                stored("a/+", 2, false, 0),
                stored("b/#", 1, false, 13),
                stored("own/t", 1, true, 0),
            ],
            10,
            now,
        );
        durable.record_session(
            "realm1",
            "good",
            Some(rmp_serde::to_vec_named(&record).unwrap()),
        );
        durable.record_session("realm1", "bad", Some(b"\xc1 not a record".to_vec()));
    } // dropping the store drains its writer
    let durable = Arc::new(Durable::open(dir.path(), fox_storage::SyncMode::None).unwrap());
    let router = Router::with_store(Config::default(), 16, Some(durable.clone()));
    assert_eq!(restore(&router).unwrap(), 1);
    let registry = router.mqtt("realm1").unwrap();
    let (kick, _kicks) = tokio::sync::oneshot::channel();
    let Previous::Parked(mut parked) = registry.claim("good", kick).1 else {
        panic!("the stored session is parked again");
    };
    let owed: Vec<(u64, u8)> = std::iter::from_fn(|| parked.rx.try_recv().ok())
        .filter_map(|o| match o {
            Outbound::Event(d) => Some((d.publication.id, d.qos)),
            _ => None,
        })
        .collect();
    assert_eq!(owed, vec![(11, 1), (14, 1)]);
    assert_eq!(parked.state.subscriptions.len(), 3);
    let (_, previous) = registry.claim("bad", tokio::sync::oneshot::channel().0);
    assert!(
        matches!(previous, Previous::None),
        "the malformed record is gone"
    );
    // Writes apply in order: once a later one is durable, the deletion is too.
    durable
        .record("realm1", &publication(17, "c/z", 0, 1), false, unix_ms())
        .unwrap()
        .wait()
        .await
        .unwrap();
    let left: Vec<String> = durable
        .sessions()
        .unwrap()
        .into_iter()
        .map(|(_, c, _)| c)
        .collect();
    assert!(!left.contains(&"bad".to_string()), "{left:?}");
}

/// A record with the exact state (what was taken from the queue, what waits, what is in
/// flight with its packet IDs): only what is still owed is queued, the messages in flight
/// come back in the window with their packet IDs and phases, and the inbound QoS 2 IDs
/// stay known.
#[tokio::test(flavor = "multi_thread")]
async fn an_exact_record_restores_the_window_and_owes_only_what_was_not_done() {
    let dir = tempfile::tempdir().unwrap();
    let inflight = |id: u64, packet_id: u16, phase: Phase| {
        let publish = fox_mqtt_proto::Publish {
            qos: fox_mqtt_proto::QoS::ExactlyOnce,
            topic: "a/x".into(),
            packet_id: Some(packet_id),
            payload: Bytes::from(format!("m{id}")),
            ..fox_mqtt_proto::Publish::default()
        };
        StoredInflight::of(&Entry {
            packet_id,
            publish,
            phase,
            id,
        })
        .expect("encodable")
    };
    {
        let durable = Durable::open(dir.path(), fox_storage::SyncMode::None).unwrap();
        let now = unix_ms();
        for id in 10..=16 {
            let _pending = durable
                .record("realm1", &publication(id, "a/x", 2, 1), false, now)
                .unwrap();
        }
        let record = SessionRecord {
            taken: Some(14),
            waiting: vec![12],
            inflight: vec![
                inflight(11, 7, Phase::AwaitPubComp),
                inflight(13, 8, Phase::AwaitPubRec),
            ],
            inbound_qos2: vec![5],
            ..stored_record(vec![stored("a/+", 2, false, 0)], 10, now)
        };
        durable.record_session(
            "realm1",
            "exact",
            Some(rmp_serde::to_vec_named(&record).unwrap()),
        );
    }
    let durable = Arc::new(Durable::open(dir.path(), fox_storage::SyncMode::None).unwrap());
    let router = Router::with_store(Config::default(), 16, Some(durable));
    assert_eq!(restore(&router).unwrap(), 1);
    let registry = router.mqtt("realm1").unwrap();
    let (kick, _kicks) = tokio::sync::oneshot::channel();
    let Previous::Parked(mut parked) = registry.claim("exact", kick).1 else {
        panic!("the stored session is parked again");
    };
    let owed: Vec<u64> = std::iter::from_fn(|| parked.rx.try_recv().ok())
        .filter_map(|o| match o {
            Outbound::Event(d) => Some(d.publication.id),
            _ => None,
        })
        .collect();
    assert_eq!(
        owed,
        vec![12, 15, 16],
        "14 was done; 11 and 13 are in flight"
    );
    let window: Vec<(u16, Phase, u64)> = parked
        .state
        .inflight
        .iter()
        .map(|e| (e.packet_id, e.phase, e.id))
        .collect();
    assert_eq!(
        window,
        vec![(7, Phase::AwaitPubComp, 11), (8, Phase::AwaitPubRec, 13)]
    );
    let resent = &parked.state.inflight.iter().next().unwrap().publish;
    assert_eq!(
        (resent.topic.as_str(), &resent.payload[..]),
        ("a/x", &b"m11"[..])
    );
    assert!(parked.state.inbound_qos2.contains(&5));
    assert_eq!(parked.state.received_through, 14);
}
