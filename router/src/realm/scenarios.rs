//! Scenario tests of the realm without sockets: sessions are handles with queues, and the
//! tests read what each session would be sent.

use std::sync::Arc;

use fox_wamp_proto::{code, Dict, Message, Value};

use super::dealer::{CallRequest, InvokePolicy};
use super::*;
use crate::auth::{Authorizer, Identity};
use crate::config::Config;
use crate::topic::MatchPolicy;

struct Peer {
    handle: SessionHandle,
    rx: OutboundQueue,
}

impl Peer {
    fn drain(&mut self) -> Vec<Outbound> {
        std::iter::from_fn(|| self.rx.try_recv().ok()).collect()
    }

    fn events(&mut self) -> Vec<u64> {
        self.drain()
            .into_iter()
            .filter_map(|o| match o {
                Outbound::Event(d) => Some(d.publication.id),
                _ => None,
            })
            .collect()
    }

    fn wamp(&mut self) -> Vec<Message> {
        self.drain()
            .into_iter()
            .filter_map(|o| match o {
                Outbound::Wamp(m) => Some(*m),
                _ => None,
            })
            .collect()
    }
}

fn realm() -> Arc<Realm> {
    realm_on(Arc::new(super::edge::SeededEdge::new(1, 1_800_000_000_000)))
}

/// A realm on `edge`'s virtual time (its timers fire when the test says so).
fn realm_on(edge: Arc<super::edge::SeededEdge>) -> Arc<Realm> {
    let config = Arc::new(Config::default());
    let edge: Arc<dyn super::edge::Edge> = edge;
    let shared = Arc::new(Shared {
        engine: Arc::new(crate::engine::LocalEngine::new(0, None)),
        authorizer: Authorizer::new(config.clone()),
        limits: config.limits.clone(),
        metrics: Default::default(),
        // Virtual time and a fixed seed: the dealer's random policy repeats run to run.
        edge: edge.clone(),
        timers: crate::timers::Timers::new(edge),
    });
    Realm::new("realm1".into(), shared)
}

fn peer(realm: &Realm, id: u64, authrole: &str, canceling: bool) -> Peer {
    peer_with_queue(realm, id, authrole, canceling, 64)
}

fn peer_with_queue(realm: &Realm, id: u64, authrole: &str, canceling: bool, queue: usize) -> Peer {
    let mut roles = Dict::new();
    if canceling {
        let mut features = Dict::new();
        features.insert("call_canceling".into(), Value::Bool(true));
        let mut callee = Dict::new();
        callee.insert("features".into(), Value::Dict(features));
        roles.insert("callee".into(), Value::Dict(callee));
    }
    let info = SessionInfo {
        id,
        realm: realm.name.clone(),
        identity: Identity {
            authid: format!("user{id}"),
            authrole: authrole.into(),
            authmethod: "anonymous".into(),
            authprovider: "static".into(),
        },
        transport: "test",
        peer: "test".into(),
        roles,
    };
    let (handle, rx) = SessionHandle::new(info, queue);
    realm.join(handle.clone());
    Peer { handle, rx }
}

fn publish(realm: &Realm, from: &Peer, topic: &str, options: PublishOptions) -> u64 {
    let payload = Payload::Wamp {
        args: Some(vec![Value::from(topic)]),
        kwargs: None,
    };
    realm
        .publish(
            Some(&from.handle.info),
            &Topic::from_wamp(topic),
            payload,
            &options,
        )
        .expect("a single node knows the ID at once")
}

#[test]
fn events_arrive_in_id_order_and_skip_the_publisher() {
    let realm = realm();
    let mut a = peer(&realm, 1, "r", false);
    let mut b = peer(&realm, 2, "r", false);
    realm.subscribe(
        &a.handle,
        Pattern::from_wamp("t", MatchPolicy::Exact),
        SubscribeOptions::default(),
    );
    realm.subscribe(
        &b.handle,
        Pattern::from_wamp("t", MatchPolicy::Exact),
        SubscribeOptions::default(),
    );
    let ids: Vec<u64> = (0..5)
        .map(|_| publish(&realm, &a, "t", PublishOptions::default()))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(b.events(), ids);
    assert!(a.events().is_empty(), "exclude_me defaults to true");
    let own = publish(
        &realm,
        &a,
        "t",
        PublishOptions {
            exclude_me: false,
            ..Default::default()
        },
    );
    assert_eq!(a.events(), vec![own]);
}

#[test]
fn black_and_white_lists() {
    let realm = realm();
    let p = peer(&realm, 1, "r", false);
    let mut x = peer(&realm, 2, "admin", false);
    let mut y = peer(&realm, 3, "user", false);
    for s in [&x, &y] {
        realm.subscribe(
            &s.handle,
            Pattern::from_wamp("t", MatchPolicy::Exact),
            SubscribeOptions::default(),
        );
    }
    publish(
        &realm,
        &p,
        "t",
        PublishOptions {
            exclude_authrole: vec!["admin".into()],
            ..Default::default()
        },
    );
    assert_eq!((x.events().len(), y.events().len()), (0, 1));
    publish(
        &realm,
        &p,
        "t",
        PublishOptions {
            eligible: Some(vec![2]),
            ..Default::default()
        },
    );
    assert_eq!((x.events().len(), y.events().len()), (1, 0));
    publish(
        &realm,
        &p,
        "t",
        PublishOptions {
            eligible_authid: Some(vec!["user3".into()]),
            exclude: vec![3],
            ..Default::default()
        },
    );
    assert_eq!((x.events().len(), y.events().len()), (0, 0));
}

#[test]
fn one_subscription_per_pattern_and_meta_counts() {
    let realm = realm();
    let a = peer(&realm, 1, "r", false);
    let b = peer(&realm, 2, "r", false);
    let s1 = realm.subscribe(
        &a.handle,
        Pattern::from_wamp("a.b", MatchPolicy::Prefix),
        SubscribeOptions::default(),
    );
    let s2 = realm.subscribe(
        &b.handle,
        Pattern::from_wamp("a.b", MatchPolicy::Prefix),
        SubscribeOptions::default(),
    );
    assert_eq!(s1, s2);
    assert!(realm.unsubscribe(1, s1));
    assert!(
        !realm.unsubscribe(1, s1),
        "a second unsubscribe is an error"
    );
    realm.leave(2);
    assert!(
        read(&realm.broker).details(s1).is_none(),
        "the last subscriber leaving deletes it"
    );
}

#[test]
fn shared_subscription_delivers_to_one_member_in_turn() {
    let realm = realm();
    // Pattern subscriptions get only the topics their role may subscribe to: the
    // unconfigured anonymous role may subscribe to anything.
    let p = peer(&realm, 9, "anonymous", false);
    let mut members: Vec<Peer> = (1..=3)
        .map(|i| peer(&realm, i, "anonymous", false))
        .collect();
    for m in &members {
        let options = SubscribeOptions {
            share_group: Some("g".into()),
            ..Default::default()
        };
        realm.subscribe(&m.handle, Pattern::from_mqtt_filter("s/#"), options);
    }
    for _ in 0..6 {
        publish(&realm, &p, "s.x", PublishOptions::default());
    }
    let counts: Vec<usize> = members.iter_mut().map(|m| m.events().len()).collect();
    assert_eq!(counts, vec![2, 2, 2]);
}

#[test]
fn retained_store_replaces_and_clears() {
    let realm = realm();
    let p = peer(&realm, 1, "r", false);
    let retain = PublishOptions {
        retain: true,
        ..Default::default()
    };
    publish(&realm, &p, "k.a", retain.clone());
    let second = publish(&realm, &p, "k.a", retain.clone());
    publish(&realm, &p, "k.b", retain.clone());
    let found = realm.retained_matching(&Pattern::from_mqtt_filter("k/+"));
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].id, second);
    let empty = Payload::Raw(bytes::Bytes::new());
    realm.publish(
        Some(&p.handle.info),
        &Topic::from_wamp("k.a"),
        empty,
        &retain,
    );
    assert_eq!(realm.memory().retained_count(), 1);
}

/// A subscriber that asks for the retained state while another thread keeps rewriting the
/// key sees the state at one cut and then every later write: no write after the cut is
/// missing or repeated, so the value it ends with is the last one written.
#[test]
fn retained_replay_and_live_events_meet_without_gap_or_duplicate() {
    let realm = realm();
    let writer = peer(&realm, 1, "r", false);
    let Peer { handle, mut rx } = peer_with_queue(&realm, 2, "r", false, 100_000);
    let retain = PublishOptions {
        retain: true,
        ..Default::default()
    };
    let (ids, replay) = std::thread::scope(|scope| {
        let publisher = scope.spawn(|| {
            (0..20_000)
                .map(|_| {
                    realm
                        .publish(
                            Some(&writer.handle.info),
                            &Topic::from_wamp("k.x"),
                            Payload::Raw(bytes::Bytes::from_static(b"v")),
                            &retain,
                        )
                        .expect("a single node knows the ID at once")
                })
                .collect::<Vec<u64>>()
        });
        // Subscribe while the writer runs.
        while realm.memory().retained_count() == 0 {
            std::hint::spin_loop();
        }
        let (_, replay) = realm.subscribe_replay(
            &handle,
            Pattern::from_wamp("k.x", MatchPolicy::Exact),
            SubscribeOptions::default(),
            None,
            true,
        );
        (publisher.join().unwrap(), replay)
    });
    assert_eq!(replay.retained.len(), 1);
    let cut = replay.retained[0].id;
    assert!(
        cut < *ids.last().unwrap(),
        "the subscription started mid-way"
    );
    let live: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
        .filter_map(|o| match o {
            Outbound::Event(d) => Some(d.publication.id),
            _ => None,
        })
        .collect();
    let after_cut: Vec<u64> = ids.iter().copied().filter(|id| *id > cut).collect();
    assert_eq!(
        live, after_cut,
        "live events are exactly the writes after the cut"
    );
}

fn call(
    realm: &Arc<Realm>,
    caller: &Peer,
    request: u64,
    procedure: &str,
    options: Dict,
) -> Option<Message> {
    realm.call(
        &caller.handle,
        CallRequest {
            request,
            options,
            procedure: procedure.into(),
            args: None,
            kwargs: None,
        },
    )
}

/// Session 1 (caller) and session 2 (callee of procedure `p`, single), in role `r`.
fn caller_and_callee(realm: &Arc<Realm>, canceling: bool) -> (Peer, Peer) {
    let caller = peer(realm, 1, "r", false);
    let callee = peer(realm, 2, "r", canceling);
    realm
        .register(
            &callee.handle,
            Pattern::from_wamp("p", MatchPolicy::Exact),
            InvokePolicy::Single,
        )
        .unwrap();
    (caller, callee)
}

fn invocation_id(messages: &[Message]) -> u64 {
    match messages {
        [Message::Invocation { request, .. }] => *request,
        other => panic!("expected one INVOCATION, got {other:?}"),
    }
}

#[test]
fn exact_beats_prefix_beats_wildcard() {
    let realm = realm();
    // Pattern registrations are invoked only for procedures their callees' role may
    // register: the unconfigured anonymous role may do anything.
    let caller = peer(&realm, 1, "anonymous", false);
    let mut exact = peer(&realm, 2, "anonymous", false);
    let mut prefix = peer(&realm, 3, "anonymous", false);
    let mut wild = peer(&realm, 4, "anonymous", false);
    realm
        .register(
            &wild.handle,
            Pattern::from_wamp("a..c", MatchPolicy::Wildcard),
            InvokePolicy::Single,
        )
        .unwrap();
    realm
        .register(
            &prefix.handle,
            Pattern::from_wamp("a.b", MatchPolicy::Prefix),
            InvokePolicy::Single,
        )
        .unwrap();
    realm
        .register(
            &exact.handle,
            Pattern::from_wamp("a.b.c", MatchPolicy::Exact),
            InvokePolicy::Single,
        )
        .unwrap();
    assert!(call(&realm, &caller, 1, "a.b.c", Dict::new()).is_none());
    assert_eq!(exact.wamp().len(), 1);
    assert!(call(&realm, &caller, 2, "a.bx.c", Dict::new()).is_none());
    assert_eq!(prefix.wamp().len(), 1);
    assert!(call(&realm, &caller, 3, "a.z.c", Dict::new()).is_none());
    assert_eq!(wild.wamp().len(), 1);
}

#[test]
fn roundrobin_and_policy_conflicts() {
    let realm = realm();
    let caller = peer(&realm, 1, "r", false);
    let mut callees: Vec<Peer> = (2..=3).map(|i| peer(&realm, i, "r", false)).collect();
    let pattern = Pattern::from_wamp("p", MatchPolicy::Exact);
    for c in &callees {
        realm
            .register(&c.handle, pattern.clone(), InvokePolicy::RoundRobin)
            .unwrap();
    }
    let other = peer(&realm, 4, "r", false);
    assert_eq!(
        realm.register(&other.handle, pattern.clone(), InvokePolicy::First),
        Err(fox_wamp_proto::ErrorUri::ProcedureExistsWithDifferentInvocationPolicy)
    );
    for request in 1..=4 {
        assert!(call(&realm, &caller, request, "p", Dict::new()).is_none());
    }
    assert_eq!(callees[0].wamp().len(), 2);
    assert_eq!(callees[1].wamp().len(), 2);
}

#[test]
fn callee_leaving_fails_pending_calls() {
    let realm = realm();
    let (mut caller, _callee) = caller_and_callee(&realm, false);
    assert!(call(&realm, &caller, 7, "p", Dict::new()).is_none());
    realm.leave(2);
    match caller.wamp().as_slice() {
        [Message::Error {
            request_type: code::CALL,
            request: 7,
            error,
            ..
        }] => assert_eq!(error, "wamp.error.canceled"),
        other => panic!("expected ERROR, got {other:?}"),
    }
    assert!(matches!(
        call(&realm, &caller, 8, "p", Dict::new()),
        Some(Message::Error { .. })
    ));
}

#[test]
fn progressive_results_then_final() {
    let realm = realm();
    let (mut caller, mut callee) = caller_and_callee(&realm, false);
    let mut options = Dict::new();
    options.insert("receive_progress".into(), Value::Bool(true));
    call(&realm, &caller, 1, "p", options);
    let inv = invocation_id(&callee.wamp());
    let mut progress = Dict::new();
    progress.insert("progress".into(), Value::Bool(true));
    realm.yield_result(2, inv, &progress, Some(vec![Value::Int(1)]), None);
    realm.yield_result(2, inv, &Dict::new(), Some(vec![Value::Int(2)]), None);
    realm.yield_result(2, inv, &Dict::new(), Some(vec![Value::Int(3)]), None);
    let results = caller.wamp();
    assert_eq!(
        results.len(),
        2,
        "one progressive, one final; the late YIELD is dropped"
    );
    assert!(
        matches!(&results[0], Message::Result { details, .. } if details.contains_key("progress"))
    );
    assert!(matches!(&results[1], Message::Result { details, .. } if details.is_empty()));
}

#[test]
fn timeouts_fire_on_the_realms_clock_from_one_wheel() {
    let edge = Arc::new(super::edge::SeededEdge::new(1, 1_800_000_000_000));
    let realm = realm_on(edge.clone());
    let (mut caller, mut callee) = caller_and_callee(&realm, true);
    let timeout = |ms: u64| {
        let mut d = Dict::new();
        d.insert("timeout".into(), Value::from(ms));
        d
    };
    call(&realm, &caller, 1, "p", timeout(100));
    call(&realm, &caller, 2, "p", timeout(50));
    let invoked = callee.wamp();
    assert!(
        invoked
            .iter()
            .all(|m| matches!(m, Message::Invocation { .. }))
            && invoked.len() == 2
    );
    let timers = &realm.shared().timers;
    assert_eq!(timers.len(), 2, "one timer each, no task");
    edge.advance(49);
    assert_eq!(timers.fire_due(), 0);
    assert!(caller.wamp().is_empty());
    edge.advance(1);
    assert_eq!(timers.fire_due(), 1, "the 50 ms call first");
    assert!(matches!(
        caller.wamp().as_slice(),
        [Message::Error { request: 2, error, .. }] if error == "wamp.error.timeout"
    ));
    assert!(matches!(
        callee.wamp().as_slice(),
        [Message::Interrupt { .. }]
    ));
    // The 100 ms call's, 50 ms later.
    edge.advance(49);
    assert_eq!(timers.fire_due(), 0);
    edge.advance(1);
    assert_eq!(timers.fire_due(), 1);
    assert!(matches!(
        caller.wamp().as_slice(),
        [Message::Error { request: 1, .. }]
    ));
    assert!(timers.is_empty());
}

#[test]
fn cancel_modes() {
    let realm = realm();
    let (mut caller, mut callee) = caller_and_callee(&realm, true);
    let mode = |m: &str| {
        let mut d = Dict::new();
        d.insert("mode".into(), Value::from(m));
        d
    };
    // kill: INTERRUPT now, the callee's ERROR goes to the caller.
    call(&realm, &caller, 1, "p", Dict::new());
    let inv = invocation_id(&callee.wamp());
    assert!(realm.cancel(1, 1, &mode("kill")).is_none());
    assert!(matches!(
        callee.wamp().as_slice(),
        [Message::Interrupt { .. }]
    ));
    realm.invocation_error(2, inv, "wamp.error.canceled".into(), None, None);
    assert!(matches!(
        caller.wamp().as_slice(),
        [Message::Error { request: 1, .. }]
    ));
    // killnowait: INTERRUPT and an immediate ERROR; the callee's late answer is dropped.
    call(&realm, &caller, 2, "p", Dict::new());
    let inv = invocation_id(&callee.wamp());
    assert!(matches!(
        realm.cancel(1, 2, &mode("killnowait")),
        Some(Message::Error { request: 2, .. })
    ));
    assert!(matches!(
        callee.wamp().as_slice(),
        [Message::Interrupt { .. }]
    ));
    realm.yield_result(2, inv, &Dict::new(), None, None);
    assert!(caller.wamp().is_empty());
    // skip: no INTERRUPT.
    call(&realm, &caller, 3, "p", Dict::new());
    callee.wamp();
    assert!(realm.cancel(1, 3, &mode("skip")).is_some());
    assert!(callee.wamp().is_empty());
}

/// The sync service against a reference model: random writes with when / watch / will and
/// random session ends, on one key; after every step the key's value, the acknowledgements
/// and the delivered events agree with the model.
mod sync_model {
    use super::*;
    use crate::realm::sync::{key_value, KvOutcome, KvWrite};
    use futures_util::FutureExt;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[derive(Clone, Debug)]
    enum Op {
        Write {
            session: usize,
            value: Option<i64>,
            when: Option<Option<i64>>,
            watch: bool,
            will: Option<Option<i64>>,
        },
        End {
            session: usize,
            abnormal: bool,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        let value = prop::option::of(0i64..3);
        prop_oneof![
            4 => (0usize..3, value.clone(), prop::option::of(value.clone()), any::<bool>(), prop::option::of(value))
                .prop_map(|(session, value, when, watch, will)| Op::Write { session, value, when, watch, will }),
            1 => (0usize..3, any::<bool>()).prop_map(|(session, abnormal)| Op::End { session, abnormal }),
        ]
    }

    fn payload(value: Option<i64>) -> Payload {
        Payload::Wamp {
            args: value.map(|v| vec![Value::Int(v)]),
            kwargs: None,
        }
    }

    /// A parked write in the model: (session, value, the value `when` waits for, will, request).
    type ParkedWrite = (usize, Option<i64>, Option<i64>, Option<Option<i64>>, u64);

    #[derive(Default)]
    struct Model {
        value: Option<i64>,
        parked: VecDeque<ParkedWrite>,
        will: Option<(usize, Option<i64>)>,
        /// Requests of parked writes that were applied later.
        acked: Vec<u64>,
    }

    impl Model {
        fn fits(&self, when: Option<i64>) -> bool {
            self.value == when
        }

        fn apply(&mut self, session: Option<usize>, value: Option<i64>, will: Option<Option<i64>>) {
            self.value = value;
            self.will = match (session, will) {
                (Some(s), Some(w)) => Some((s, w)),
                _ => None,
            };
        }

        fn wake(&mut self) {
            while let Some(i) = self.parked.iter().position(|p| self.value == p.2) {
                let Some((s, value, _, will, request)) = self.parked.remove(i) else {
                    break;
                };
                self.apply(Some(s), value, will);
                self.acked.push(request);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn sync_service_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
            let realm = realm();
            let mut peers: Vec<Option<Peer>> = (1..=3).map(|i| Some(peer(&realm, i, "r", false))).collect();
            let topic = Topic::from_wamp("kv.key");
            let mut model = Model::default();
            let mut acked: Vec<u64> = Vec::new();
            type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, crate::engine::EngineError>>>>;
            let mut waiting: Vec<(u64, Answer)> = Vec::new();
            for (step, op) in ops.into_iter().enumerate() {
                let request = step as u64 + 1;
                match op {
                    Op::Write { session, value, when, watch, will } => {
                        let Some(p) = peers[session].as_ref() else { continue };
                        let write = KvWrite {
                            when: when.map(|w| w.map_or(Value::Null, Value::Int)),
                            watch,
                            will: will.map(payload),
                        };
                        let options = PublishOptions { retain: true, ..Default::default() };
                        let outcome = realm.publish_kv(&p.handle, &topic, payload(value), &options, write);
                        let fits = when.is_none_or(|w| model.fits(w));
                        match outcome {
                            KvOutcome::Applied(ack) => {
                                prop_assert!(fits, "applied although when does not hold");
                                prop_assert!(ack.is_ready(), "one node answers an applied write at once");
                                model.apply(Some(session), value, will);
                                model.wake();
                            }
                            KvOutcome::Refused => prop_assert!(!fits && !watch),
                            KvOutcome::Parked(ack) => {
                                prop_assert!(!fits && watch);
                                model.parked.push_back((session, value, when.flatten(), will, request));
                                waiting.push((request, Box::pin(ack.wait())));
                            }
                        }
                    }
                    Op::End { session, abnormal } => {
                        if peers[session].take().is_none() { continue };
                        if abnormal { realm.leave_abnormally(session as u64 + 1) } else { realm.leave(session as u64 + 1) }
                        model.parked.retain(|p| p.0 != session);
                        if let Some((holder, will)) = model.will {
                            if holder == session {
                                model.will = None;
                                if abnormal {
                                    model.value = will;
                                    model.wake();
                                }
                            }
                        }
                    }
                }
                // A parked write's answer resolves when it applies (the gate then sends
                // PUBLISHED), or fails when its session ends first.
                let mut still = Vec::new();
                for (request, mut answer) in waiting.drain(..) {
                    match answer.as_mut().now_or_never() {
                        Some(Ok(_)) => acked.push(request),
                        Some(Err(_)) => {}
                        None => still.push((request, answer)),
                    }
                }
                waiting = still;
                let value = key_value(realm.retained_matching(&Pattern::Exact(topic.clone())).first().map(|p| &p.payload));
                prop_assert_eq!(value, model.value.map_or(Value::Null, Value::Int), "step {}", step);
            }
            // A write applied at once is acknowledged by the gate from the returned outcome;
            // a parked write once its answer resolves.
            let mut want: Vec<u64> = model.acked.clone();
            want.sort_unstable();
            acked.sort_unstable();
            prop_assert_eq!(acked, want);
        }
    }
}

mod harness;
mod mqtt;

/// Whether WAMP pattern `uri` with `policy` matches the WAMP URI `topic`, for the
/// harnesses' models (written here, not taken from the broker: a model must not share the
/// code it checks).
fn model_matches(uri: &str, policy: MatchPolicy, topic: &str) -> bool {
    match policy {
        MatchPolicy::Exact => uri == topic,
        MatchPolicy::Prefix => topic.starts_with(uri),
        MatchPolicy::Wildcard => {
            let want: Vec<&str> = uri.split('.').collect();
            let have: Vec<&str> = topic.split('.').collect();
            want.len() == have.len() && want.iter().zip(&have).all(|(w, h)| w.is_empty() || w == h)
        }
    }
}
