//! A seeded harness over the router core, like the sequencer's simulator: random sessions
//! join, subscribe (exact, prefix and wildcard patterns), unsubscribe, publish, register,
//! call (some calls with a timeout), answer their invocations (results and errors) and
//! leave, on the realm's virtual clock, whose timer wheel fires when time moves on. After
//! every step it checks, against a model of its own:
//!
//! - every EVENT a session got is for a publication it was subscribed to when it was
//!   published (by a pattern that matches the topic, not its own publication), one per
//!   matching subscription, none missing, in publication-ID order;
//! - every CALL gets exactly one answer (RESULT or ERROR): from its callee, at its timeout,
//!   when its callee leaves, or at once when nothing is registered; and a RESULT or ERROR
//!   never comes twice.
//!
//! At the end time moves on past every timeout and every session leaves: no call of a
//! session still there is left unanswered. One proptest case is one seed; CI runs 2,000.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;

use super::*;

const SESSIONS: usize = 5;
const TOPICS: [&str; 5] = ["a.b.c", "a.b.d", "a.x.c", "b.b.c", "a.bc"];
const PATTERNS: [(&str, MatchPolicy); 5] = [
    ("a.b.c", MatchPolicy::Exact),
    ("a.b", MatchPolicy::Prefix),
    ("a..c", MatchPolicy::Wildcard),
    ("b.b.c", MatchPolicy::Exact),
    ("a", MatchPolicy::Prefix),
];
const PROCEDURES: [&str; 2] = ["p1", "p2"];

#[derive(Clone, Debug)]
enum Op {
    Join(usize),
    Subscribe(usize, usize),
    Unsubscribe(usize, usize),
    Publish(usize, usize),
    Register(usize, usize),
    Call(usize, usize, Option<u64>),
    Answer(usize, bool),
    Leave(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let session = 0..SESSIONS;
    prop_oneof![
        2 => session.clone().prop_map(Op::Join),
        4 => (session.clone(), 0..PATTERNS.len()).prop_map(|(s, p)| Op::Subscribe(s, p)),
        1 => (session.clone(), 0..PATTERNS.len()).prop_map(|(s, p)| Op::Unsubscribe(s, p)),
        6 => (session.clone(), 0..TOPICS.len()).prop_map(|(s, t)| Op::Publish(s, t)),
        2 => (session.clone(), 0..PROCEDURES.len()).prop_map(|(s, p)| Op::Register(s, p)),
        4 => (session.clone(), 0..PROCEDURES.len(), prop::option::of(1u64..200))
            .prop_map(|(s, p, t)| Op::Call(s, p, t)),
        3 => (session.clone(), any::<bool>()).prop_map(|(s, ok)| Op::Answer(s, ok)),
        1 => session.clone().prop_map(Op::Leave),
        2 => (1u64..150).prop_map(Op::Advance),
    ]
}

/// Whether `pattern` matches `topic`, as WAMP says (written here, not taken from the
/// broker: the model must not share the code it checks).
fn matches(pattern: usize, topic: &str) -> bool {
    let (uri, policy) = PATTERNS[pattern];
    super::model_matches(uri, policy, topic)
}

/// One session as the harness drives it and as the model sees it.
struct Session {
    peer: Peer,
    /// Pattern -> subscription ID.
    subscriptions: BTreeMap<usize, u64>,
    /// Events owed: (publication, subscription), and those received.
    owed: Vec<(u64, u64)>,
    got: Vec<(u64, u64)>,
    /// Invocations waiting for this callee's answer, oldest first.
    invocations: Vec<u64>,
    /// This caller's calls without an answer yet (with the virtual time their timeout
    /// passes, if they have one), and every request answered.
    waiting: HashMap<u64, Option<u64>>,
    answered: HashSet<u64>,
}

struct World {
    edge: Arc<super::super::edge::SeededEdge>,
    realm: Arc<Realm>,
    sessions: Vec<Option<Session>>,
    /// Procedure -> its callee's slot.
    registered: HashMap<usize, usize>,
    next_id: u64,
    next_request: u64,
    /// Virtual time since the start, in ms.
    now_ms: u64,
}

impl World {
    fn new() -> Self {
        let edge = Arc::new(super::super::edge::SeededEdge::new(7, 1_800_000_000_000));
        Self {
            realm: realm_on(edge.clone()),
            edge,
            sessions: (0..SESSIONS).map(|_| None).collect(),
            registered: HashMap::new(),
            next_id: 100,
            next_request: 1,
            now_ms: 0,
        }
    }

    fn join(&mut self, s: usize) {
        if self.sessions[s].is_some() {
            return;
        }
        self.next_id += 1;
        // The unconfigured anonymous role may do anything (patterns included).
        let peer = peer_with_queue(&self.realm, self.next_id, "anonymous", s % 2 == 0, 100_000);
        self.sessions[s] = Some(Session {
            peer,
            subscriptions: BTreeMap::new(),
            owed: Vec::new(),
            got: Vec::new(),
            invocations: Vec::new(),
            waiting: HashMap::new(),
            answered: HashSet::new(),
        });
    }

    fn id(&self, s: usize) -> Option<SessionId> {
        self.sessions[s].as_ref().map(|x| x.peer.handle.info.id)
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Join(s) => self.join(s),
            Op::Subscribe(s, p) => {
                let Some(session) = self.sessions[s].as_mut() else {
                    return Ok(());
                };
                let (uri, policy) = PATTERNS[p];
                let id = self.realm.subscribe(
                    &session.peer.handle,
                    Pattern::from_wamp(uri, policy),
                    SubscribeOptions::default(),
                );
                if let Some(old) = session.subscriptions.insert(p, id) {
                    prop_assert_eq!(old, id, "subscribing twice gives the same subscription");
                }
            }
            Op::Unsubscribe(s, p) => {
                let Some(session) = self.sessions[s].as_mut() else {
                    return Ok(());
                };
                if let Some(id) = session.subscriptions.remove(&p) {
                    prop_assert!(self.realm.unsubscribe(session.peer.handle.info.id, id));
                }
            }
            Op::Publish(s, t) => {
                let Some(publisher) = self.sessions[s].as_ref() else {
                    return Ok(());
                };
                let id = publish(
                    &self.realm,
                    &publisher.peer,
                    TOPICS[t],
                    PublishOptions::default(),
                );
                for (other, session) in self.sessions.iter_mut().enumerate() {
                    let Some(session) = session else { continue };
                    if other == s {
                        continue; // exclude_me
                    }
                    for (&pattern, &subscription) in &session.subscriptions {
                        if matches(pattern, TOPICS[t]) {
                            session.owed.push((id, subscription));
                        }
                    }
                }
            }
            Op::Register(s, p) => {
                let Some(session) = self.sessions[s].as_ref() else {
                    return Ok(());
                };
                let registered = self.realm.register(
                    &session.peer.handle,
                    Pattern::from_wamp(PROCEDURES[p], MatchPolicy::Exact),
                    InvokePolicy::Single,
                );
                let free = !self.registered.contains_key(&p);
                prop_assert_eq!(
                    registered.is_ok(),
                    free,
                    "a single registration per procedure"
                );
                if free {
                    self.registered.insert(p, s);
                }
            }
            Op::Call(s, p, timeout) => {
                let Some(caller) = self.sessions[s].as_ref() else {
                    return Ok(());
                };
                let request = self.next_request;
                self.next_request += 1;
                let mut options = Dict::new();
                if let Some(ms) = timeout {
                    options.insert("timeout".into(), Value::from(ms));
                }
                let refused = call(&self.realm, &caller.peer, request, PROCEDURES[p], options);
                let caller = self.sessions[s].as_mut().expect("the caller");
                match refused {
                    Some(Message::Error { request: r, .. }) => {
                        prop_assert_eq!(r, request);
                        prop_assert!(caller.answered.insert(request));
                    }
                    Some(other) => prop_assert!(false, "a CALL answered at once with {:?}", other),
                    None => {
                        prop_assert!(
                            self.registered.contains_key(&p),
                            "invoked with nobody registered"
                        );
                        caller
                            .waiting
                            .insert(request, timeout.map(|t| self.now_ms + t));
                    }
                }
            }
            Op::Answer(s, ok) => {
                let Some(session) = self.sessions[s].as_mut() else {
                    return Ok(());
                };
                if session.invocations.is_empty() {
                    return Ok(());
                }
                let invocation = session.invocations.remove(0);
                let callee = session.peer.handle.info.id;
                if ok {
                    self.realm.yield_result(
                        callee,
                        invocation,
                        &Dict::new(),
                        Some(vec![Value::Int(1)]),
                        None,
                    );
                } else {
                    self.realm
                        .invocation_error(callee, invocation, "app.error".into(), None, None);
                }
            }
            Op::Leave(s) => {
                let Some(id) = self.id(s) else {
                    return Ok(());
                };
                self.realm.leave(id);
                self.sessions[s] = None;
                self.registered.retain(|_, callee| *callee != s);
            }
            Op::Advance(ms) => {
                self.edge.advance(ms);
                self.now_ms += ms;
                self.realm.shared().timers.fire_due();
            }
        }
        self.check()
    }

    /// Reads every session's queue and checks it against the model.
    fn check(&mut self) -> Result<(), TestCaseError> {
        for session in self.sessions.iter_mut().flatten() {
            for out in session.peer.drain() {
                match out {
                    Outbound::Event(d) => {
                        let last = session.got.last().map_or(0, |e| e.0);
                        prop_assert!(d.publication.id >= last, "events in ID order");
                        session.got.push((d.publication.id, d.subscription));
                    }
                    Outbound::Wamp(message) => match *message {
                        Message::Invocation { request, .. } => session.invocations.push(request),
                        Message::Interrupt { request, .. } => {
                            session.invocations.retain(|i| *i != request);
                        }
                        Message::Result {
                            request,
                            ref details,
                            ..
                        } if !details.contains_key("progress") => {
                            prop_assert!(
                                session.waiting.remove(&request).is_some(),
                                "a RESULT for a call that waits: {}",
                                request
                            );
                            prop_assert!(session.answered.insert(request), "one answer per call");
                        }
                        Message::Error {
                            request_type: code::CALL,
                            request,
                            ..
                        } => {
                            prop_assert!(
                                session.waiting.remove(&request).is_some(),
                                "an ERROR for a call that waits: {}",
                                request
                            );
                            prop_assert!(session.answered.insert(request), "one answer per call");
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
            let now = self.now_ms;
            let late: Vec<_> = session
                .waiting
                .iter()
                .filter(|(_, d)| d.is_some_and(|d| d <= now))
                .collect();
            prop_assert!(
                late.is_empty(),
                "calls past their timeout without an answer: {:?}",
                late
            );
            let mut owed = session.owed.clone();
            let mut got = session.got.clone();
            owed.sort_unstable();
            got.sort_unstable();
            prop_assert_eq!(got, owed, "the events a session got are those it was owed");
        }
        Ok(())
    }

    /// Time moves on past every timeout, then every session leaves: a call of a session
    /// still there must have its answer by then.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        self.step(&Op::Advance(1_000))?;
        self.check()?;
        for s in 0..SESSIONS {
            let callee_of_something = self.registered.values().any(|c| *c == s);
            if callee_of_something {
                self.step(&Op::Leave(s))?;
            }
        }
        for session in self.sessions.iter().flatten() {
            prop_assert!(
                session.waiting.is_empty(),
                "calls left unanswered: {:?}",
                session.waiting
            );
        }
        prop_assert!(self.realm.shared().timers.fire_due() == 0);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]
    #[test]
    fn every_event_reaches_exactly_its_subscribers_and_every_call_gets_one_answer(
        ops in prop::collection::vec(op(), 1..80)
    ) {
        let mut world = World::new();
        for op in &ops {
            world.step(op)?;
        }
        world.finish()?;
    }
}
