//! The dealer: registrations, invocation policies and pending calls.
//!
//! A call finds its registration by the spec's precedence (exact, then the longest prefix,
//! then the wildcard with the most literal levels), picks a callee by the registration's
//! invocation policy, and is tracked until the callee's final YIELD or ERROR, a CANCEL,
//! the router-enforced timeout, or either side leaving. A callee that leaves or drops its
//! connection fails every pending call at once with `wamp.error.canceled`.

// Time and randomness come from the realm's edge (`super::edge`, router/clippy.toml).
#![deny(clippy::disallowed_methods)]

use std::collections::{HashMap, HashSet, VecDeque};

use fox_wamp_proto::ErrorUri;
use fox_wamp_proto::{code, Dict, Id, Message, Value};

use super::edge::Now;
use super::{SessionHandle, SessionId};
use crate::topic::{Pattern, Topic, Trie};
use crate::util::iso8601;

/// How a shared registration picks its callee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvokePolicy {
    /// One callee only (the default).
    Single,
    /// Each callee in turn.
    RoundRobin,
    /// A random callee.
    Random,
    /// The callee that registered first.
    First,
    /// The callee that registered last.
    Last,
    /// The healthy callee with the fewest invocations in flight (the first such one on a
    /// tie); a callee whose last invocation timed out counts as unhealthy until it answers
    /// again, and is taken only when no healthy one has room.
    LeastLoaded,
}

impl InvokePolicy {
    /// Parses the `invoke` option.
    pub fn parse(option: Option<&str>) -> Option<Self> {
        match option {
            None | Some("single") => Some(Self::Single),
            Some("roundrobin") => Some(Self::RoundRobin),
            Some("random") => Some(Self::Random),
            Some("first") => Some(Self::First),
            Some("last") => Some(Self::Last),
            Some("least_loaded") => Some(Self::LeastLoaded),
            Some(_) => None,
        }
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::RoundRobin => "roundrobin",
            Self::Random => "random",
            Self::First => "first",
            Self::Last => "last",
            Self::LeastLoaded => "least_loaded",
        }
    }
}

/// A registration: one procedure pattern, its callees in registration order.
#[derive(Debug)]
pub struct Registration {
    /// Registration ID.
    pub id: u64,
    /// Pattern.
    pub pattern: Pattern,
    /// Created (ISO 8601).
    pub created: String,
    /// Invocation policy.
    pub invoke: InvokePolicy,
    /// Callees, oldest first.
    pub callees: Vec<SessionHandle>,
    next: usize,
    /// fox-wamp `concurrency`: invocations a callee takes at once, when it set a limit.
    limits: HashMap<SessionId, u32>,
    /// Invocations in flight per callee.
    in_flight: HashMap<SessionId, u32>,
    /// Calls waiting for a callee with room, first in first out.
    queue: VecDeque<QueuedCall>,
    /// Per callee: since when it is registered, whether its last invocation timed out, its
    /// last ERROR (the service registry, `least_loaded`).
    health: HashMap<SessionId, CalleeHealth>,
    /// The service registry's own round-robin position (`pick` does not move `next`).
    pick_next: usize,
}

/// What the registry knows of one callee of a registration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CalleeHealth {
    /// When it registered (ISO 8601).
    pub since: String,
    /// When its invocation last timed out, Unix ms; cleared by its next answer.
    pub unhealthy_since_ms: Option<u64>,
    /// The error URI of its last ERROR to an invocation.
    pub last_error: Option<String>,
}

/// How long a callee whose invocation timed out is skipped by `least_loaded` and the
/// registry's `pick` (unless it answers meanwhile); then it is tried again, and a new
/// timeout marks it again (a circuit breaker's half-open state).
pub const UNHEALTHY_MS: u64 = 30_000;

impl CalleeHealth {
    /// Whether the callee counts as healthy at `now_ms`.
    pub fn is_healthy(&self, now_ms: u64) -> bool {
        self.unhealthy_since_ms
            .is_none_or(|since| now_ms.saturating_sub(since) >= UNHEALTHY_MS)
    }
}

/// How an invocation ended, for the callee's health.
#[derive(Debug)]
pub enum Outcome {
    /// A final YIELD.
    Answered,
    /// An ERROR, with its URI.
    Failed(String),
    /// The call's timeout passed first.
    TimedOut,
}

/// One callee as the service registry shows it.
#[derive(Clone, Debug)]
pub struct CalleeView {
    /// Its session.
    pub session: SessionHandle,
    /// Invocations in flight.
    pub in_flight: u32,
    /// Health and history.
    pub health: CalleeHealth,
}

/// One registration as the service registry shows it.
#[derive(Clone, Debug)]
pub struct ServiceView {
    /// Registration ID.
    pub id: u64,
    /// The procedure (pattern) and its match policy.
    pub pattern: Pattern,
    /// The invocation policy.
    pub invoke: InvokePolicy,
    /// Its callees, oldest first.
    pub callees: Vec<CalleeView>,
    /// Calls queued for a callee with room.
    pub queued: usize,
}

/// A call waiting for a callee under its `concurrency` limit.
#[derive(Debug)]
struct QueuedCall {
    caller: SessionHandle,
    call: CallRequest,
    timeout_ms: Option<u64>,
    /// When it was queued (the edge's monotonic ms).
    queued_at_ms: u64,
}

/// Calls one registration queues at most; more are refused.
const QUEUED_CALLS_MAX: usize = 10_000;

impl Registration {
    /// Meta API details.
    pub fn details(&self) -> Dict {
        let mut d = super::meta_details(self.id, &self.created, &self.pattern);
        d.insert("invoke".into(), Value::from(self.invoke.name()));
        d
    }

    fn has_room(&self, callee: SessionId) -> bool {
        let busy = self.in_flight.get(&callee).copied().unwrap_or(0);
        self.limits.get(&callee).is_none_or(|limit| busy < *limit)
    }

    /// The callee for the next invocation by the invocation policy, among callees under
    /// their concurrency limit; `None` when all are busy (the call then queues).
    fn pick(&mut self, now: Now) -> Option<SessionHandle> {
        let ready: Vec<usize> = (0..self.callees.len())
            .filter(|i| self.has_room(self.callees[*i].info.id))
            .collect();
        let index = match self.invoke {
            _ if ready.is_empty() => return None,
            InvokePolicy::Single | InvokePolicy::First => ready[0],
            InvokePolicy::Last => ready[ready.len() - 1],
            InvokePolicy::Random => ready[now.draw as usize % ready.len()],
            InvokePolicy::LeastLoaded => self.least_loaded(&ready, now.ms)?,
            InvokePolicy::RoundRobin => {
                let n = self.callees.len();
                let start = self.next % n;
                let chosen = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|i| ready.contains(i))?;
                self.next = chosen + 1;
                chosen
            }
        };
        let callee = self.callees.get(index).cloned()?;
        *self.in_flight.entry(callee.info.id).or_default() += 1;
        Some(callee)
    }

    /// Notes how an invocation of `callee` ended. Cheap when nothing changes (the
    /// common case: a healthy callee answered).
    pub(super) fn note(&mut self, callee: SessionId, outcome: Outcome, now_ms: u64) {
        let Some(health) = self.health.get_mut(&callee) else {
            return;
        };
        match outcome {
            Outcome::Answered => {
                if health.unhealthy_since_ms.is_some() {
                    health.unhealthy_since_ms = None;
                }
            }
            Outcome::Failed(error) => {
                health.unhealthy_since_ms = None;
                health.last_error = Some(error);
            }
            Outcome::TimedOut => {
                health.unhealthy_since_ms = Some(now_ms);
            }
        }
    }

    fn healthy(&self, callee: SessionId, now_ms: u64) -> bool {
        match self.health.get(&callee) {
            // The clock is read only for a callee that was marked.
            Some(h) if h.unhealthy_since_ms.is_some() => h.is_healthy(now_ms),
            _ => true,
        }
    }

    /// The index of the least loaded callee among `ready`, healthy ones first.
    fn least_loaded(&self, ready: &[usize], now_ms: u64) -> Option<usize> {
        let load = |i: &usize| {
            let id = self.callees[*i].info.id;
            (
                !self.healthy(id, now_ms),
                self.in_flight.get(&id).copied().unwrap_or(0),
            )
        };
        ready.iter().min_by_key(|i| load(i)).copied()
    }

    /// The callee the dealer would invoke now by `policy` (default: the registration's
    /// own), skipping unhealthy callees, without invoking it (the service registry's
    /// `pick`); round robin moves its own position.
    pub fn pick_for_registry(
        &mut self,
        policy: Option<InvokePolicy>,
        now: Now,
    ) -> Option<CalleeView> {
        let ready: Vec<usize> = (0..self.callees.len())
            .filter(|i| {
                let id = self.callees[*i].info.id;
                self.has_room(id) && self.healthy(id, now.ms)
            })
            .collect();
        let index = match policy.unwrap_or(self.invoke) {
            _ if ready.is_empty() => return None,
            InvokePolicy::Single | InvokePolicy::First => ready[0],
            InvokePolicy::Last => ready[ready.len() - 1],
            InvokePolicy::Random => ready[now.draw as usize % ready.len()],
            InvokePolicy::LeastLoaded => self.least_loaded(&ready, now.ms)?,
            InvokePolicy::RoundRobin => {
                let chosen = ready[self.pick_next % ready.len()];
                self.pick_next = self.pick_next.wrapping_add(1);
                chosen
            }
        };
        Some(self.view_of(index))
    }

    fn view_of(&self, index: usize) -> CalleeView {
        let session = self.callees[index].clone();
        let id = session.info.id;
        CalleeView {
            in_flight: self.in_flight.get(&id).copied().unwrap_or(0),
            health: self.health.get(&id).cloned().unwrap_or_default(),
            session,
        }
    }

    /// The registration as the service registry shows it.
    pub fn view(&self) -> ServiceView {
        ServiceView {
            id: self.id,
            pattern: self.pattern.clone(),
            invoke: self.invoke,
            callees: (0..self.callees.len()).map(|i| self.view_of(i)).collect(),
            queued: self.queue.len(),
        }
    }

    fn release(&mut self, callee: SessionId) {
        if let Some(busy) = self.in_flight.get_mut(&callee) {
            *busy = busy.saturating_sub(1);
        }
    }
}

/// How a pending call is being canceled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CancelMode {
    Skip,
    Kill,
    KillNoWait,
}

#[derive(Debug)]
struct PendingCall {
    registration: u64,
    caller: SessionHandle,
    caller_request: Id,
    callee: SessionHandle,
    receive_progress: bool,
    cancel: Option<CancelMode>,
}

/// A registration removed when its session left: for meta events.
#[derive(Debug)]
pub struct RegistrationLeft {
    /// Registration ID.
    pub registration: u64,
    /// Whether the registration is gone (no callee left).
    pub deleted: bool,
}

/// Dealer state of a realm.
#[derive(Debug, Default)]
pub struct Dealer {
    registrations: HashMap<u64, Registration>,
    by_pattern: HashMap<Pattern, u64>,
    /// Exact registrations by their URI: a CALL to one is routed without parsing its URI
    /// into levels or walking the trie (an exact match outranks every pattern).
    exact_uris: HashMap<String, u64>,
    trie: Trie<u64>,
    by_session: HashMap<SessionId, HashSet<u64>>,
    /// Keyed by (callee, invocation request ID).
    pending: HashMap<(SessionId, Id), PendingCall>,
    /// (caller, call request ID) -> (callee, invocation request ID).
    by_caller: HashMap<(SessionId, Id), (SessionId, Id)>,
    next_registration: u64,
    next_invocation: Id,
}

/// Why a REGISTER was refused: the ERROR URI.
pub type RegisterError = ErrorUri;

impl Dealer {
    /// Adds a callee; returns (ID, details if the registration was created).
    pub fn register(
        &mut self,
        handle: &SessionHandle,
        pattern: Pattern,
        invoke: InvokePolicy,
        concurrency: Option<u32>,
        now_ms: u64,
    ) -> Result<(u64, Option<Dict>), RegisterError> {
        let session = handle.info.id;
        if let Some(id) = self.by_pattern.get(&pattern).copied() {
            let reg = self
                .registrations
                .get_mut(&id)
                .ok_or(ErrorUri::ProcedureAlreadyExists)?;
            if reg.invoke == InvokePolicy::Single
                || reg.callees.iter().any(|c| c.info.id == session)
            {
                return Err(ErrorUri::ProcedureAlreadyExists);
            }
            if reg.invoke != invoke {
                return Err(ErrorUri::ProcedureExistsWithDifferentInvocationPolicy);
            }
            reg.callees.push(handle.clone());
            reg.health.insert(
                session,
                CalleeHealth {
                    since: iso8601(now_ms),
                    ..CalleeHealth::default()
                },
            );
            if let Some(limit) = concurrency {
                reg.limits.insert(session, limit);
            }
            self.by_session.entry(session).or_default().insert(id);
            return Ok((id, None));
        }
        self.next_registration += 1;
        let id = self.next_registration;
        let reg = Registration {
            id,
            pattern: pattern.clone(),
            created: iso8601(now_ms),
            invoke,
            callees: vec![handle.clone()],
            next: 0,
            limits: concurrency.map(|l| (session, l)).into_iter().collect(),
            in_flight: HashMap::new(),
            queue: VecDeque::new(),
            health: HashMap::from([(
                session,
                CalleeHealth {
                    since: iso8601(now_ms),
                    ..CalleeHealth::default()
                },
            )]),
            pick_next: 0,
        };
        let details = reg.details();
        self.trie.insert(&pattern, id);
        if let Pattern::Exact(topic) = &pattern {
            self.exact_uris.insert(topic.to_wamp(), id);
        }
        self.by_pattern.insert(pattern, id);
        self.registrations.insert(id, reg);
        self.by_session.entry(session).or_default().insert(id);
        Ok((id, Some(details)))
    }

    /// Removes a callee: `None` if it had no such registration, else whether the
    /// registration was deleted.
    pub fn unregister(&mut self, session: SessionId, id: u64) -> Option<bool> {
        let reg = self.registrations.get_mut(&id)?;
        let before = reg.callees.len();
        reg.callees.retain(|c| c.info.id != session);
        if reg.callees.len() == before {
            return None;
        }
        reg.limits.remove(&session);
        reg.in_flight.remove(&session);
        reg.health.remove(&session);
        if let Some(ids) = self.by_session.get_mut(&session) {
            ids.remove(&id);
        }
        if !reg.callees.is_empty() {
            return Some(false);
        }
        if let Some(reg) = self.registrations.remove(&id) {
            self.trie.remove(&reg.pattern, &id);
            if let Pattern::Exact(topic) = &reg.pattern {
                self.exact_uris.remove(topic.wamp_uri());
            }
            self.by_pattern.remove(&reg.pattern);
            for queued in reg.queue {
                queued.caller.send(super::Outbound::wamp(call_error(
                    queued.call.request,
                    ErrorUri::Canceled,
                    "the last callee left before the call could be invoked",
                )));
            }
        }
        Some(true)
    }

    /// Every registration as the service registry shows it, by ID.
    pub fn services(&self) -> Vec<ServiceView> {
        let mut views: Vec<ServiceView> = self
            .registrations
            .values()
            .map(Registration::view)
            .collect();
        views.sort_by_key(|v| v.id);
        views
    }

    /// The registration a call to `procedure` goes to, to pick a callee from.
    pub fn registration_for(&mut self, procedure: &str) -> Option<&mut Registration> {
        let id = self.route(procedure)?;
        self.registrations.get_mut(&id)
    }

    /// The registration a call to `procedure` goes to.
    pub fn route(&self, procedure: &str) -> Option<u64> {
        self.route_admitted(procedure, |_| true)
    }

    /// [`Dealer::route`] among the pattern registrations `admits` accepts (those whose
    /// callees may register this procedure; an exact one was checked when registered).
    pub fn route_admitted(
        &self,
        procedure: &str,
        admits: impl Fn(&Registration) -> bool,
    ) -> Option<u64> {
        // A topic's levels hold no '.', so the URI names the same levels as the pattern.
        if let Some(id) = self.exact_uris.get(procedure) {
            return Some(*id);
        }
        let topic = Topic::from_wamp(procedure);
        let mut best: Option<((u8, usize), u64)> = None;
        self.trie.matches(&topic, |id| {
            let Some(reg) = self.registrations.get(id).filter(|reg| admits(reg)) else {
                return;
            };
            let rank = match &reg.pattern {
                Pattern::Exact(_) => (3, 0),
                Pattern::Prefix { .. } => (2, reg.pattern.to_wamp().0.len()),
                Pattern::Wildcard(levels) | Pattern::Tail(levels) => {
                    (1, levels.iter().filter(|l| l.is_some()).count())
                }
            };
            if best.is_none_or(|(r, other)| rank > r || (rank == r && *id < other)) {
                best = Some((rank, *id));
            }
        });
        best.map(|(_, id)| id)
    }

    /// Every registration, in no particular order.
    pub fn registrations(&self) -> impl Iterator<Item = &Registration> {
        self.registrations.values()
    }

    /// How many registrations there are.
    pub fn len(&self) -> usize {
        self.registrations.len()
    }

    /// Whether there is no registration.
    pub fn is_empty(&self) -> bool {
        self.registrations.is_empty()
    }

    /// Meta API: registration details.
    pub fn details(&self, id: u64) -> Option<Dict> {
        self.registrations.get(&id).map(Registration::details)
    }

    /// Meta API: IDs by match policy.
    pub fn list(&self) -> Dict {
        let mut d = Dict::new();
        for name in ["exact", "prefix", "wildcard"] {
            d.insert(name.into(), Value::List(Vec::new()));
        }
        for reg in self.registrations.values() {
            let name = reg.pattern.to_wamp().1.name();
            if let Some(Value::List(ids)) = d.get_mut(name) {
                ids.push(Value::from(reg.id));
            }
        }
        d
    }

    /// Meta API: the registration of a pattern.
    pub fn lookup(&self, pattern: &Pattern) -> Option<u64> {
        self.by_pattern.get(pattern).copied()
    }

    /// Meta API: the callees of a registration.
    pub fn callees(&self, id: u64) -> Option<Vec<SessionId>> {
        let reg = self.registrations.get(&id)?;
        Some(reg.callees.iter().map(|c| c.info.id).collect())
    }

    /// Forgets a session: its registrations, and its pending calls as caller (the callees
    /// get INTERRUPT) and as callee (the callers get ERROR).
    pub fn remove_session(&mut self, session: SessionId) -> Vec<RegistrationLeft> {
        let ids: Vec<u64> = self
            .by_session
            .remove(&session)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        let left = ids
            .into_iter()
            .filter_map(|id| {
                self.unregister(session, id)
                    .map(|deleted| RegistrationLeft {
                        registration: id,
                        deleted,
                    })
            })
            .collect();
        let keys: Vec<(SessionId, Id)> = self
            .pending
            .iter()
            .filter(|(k, p)| k.0 == session || p.caller.info.id == session)
            .map(|(k, _)| *k)
            .collect();
        for reg in self.registrations.values_mut() {
            reg.queue.retain(|q| q.caller.info.id != session);
        }
        for key in keys {
            let Some(call) = self.pending.remove(&key) else {
                continue;
            };
            if let Some(reg) = self.registrations.get_mut(&call.registration) {
                reg.release(key.0);
            }
            self.by_caller
                .remove(&(call.caller.info.id, call.caller_request));
            if key.0 == session {
                if call.cancel != Some(CancelMode::Skip)
                    && call.cancel != Some(CancelMode::KillNoWait)
                {
                    call.caller.send(super::Outbound::wamp(call_error(
                        call.caller_request,
                        ErrorUri::Canceled,
                        "the callee left before answering",
                    )));
                }
            } else if call.callee.info.has_feature("callee", "call_canceling") {
                call.callee
                    .send(super::Outbound::wamp(interrupt(key.1, "killnowait", None)));
            }
        }
        left
    }
}

fn call_error(request: Id, error: ErrorUri, message: &str) -> Message {
    Message::Error {
        request_type: code::CALL,
        request,
        details: Dict::new(),
        error: error.into(),
        args: Some(vec![Value::from(message)]),
        kwargs: None,
    }
}

fn interrupt(request: Id, mode: &str, reason: Option<ErrorUri>) -> Message {
    let mut options = Dict::new();
    options.insert("mode".into(), Value::from(mode));
    if let Some(reason) = reason {
        options.insert("reason".into(), Value::from(reason.as_str()));
    }
    Message::Interrupt { request, options }
}

/// A CALL as the realm receives it.
#[derive(Debug)]
pub struct CallRequest {
    /// CALL.Request.
    pub request: Id,
    /// CALL.Options.
    pub options: Dict,
    /// CALL.Procedure.
    pub procedure: String,
    /// Positional arguments.
    pub args: Option<Vec<Value>>,
    /// Keyword arguments.
    pub kwargs: Option<Dict>,
}

mod calls;

#[cfg(test)]
mod tests {
    /// The time and draw the dealer is given in these tests.
    const T: Now = Now { ms: 1_000, draw: 0 };
    use super::*;
    use crate::auth::Identity;
    use crate::realm::SessionInfo;
    use crate::topic::Topic;

    fn callee(id: SessionId) -> SessionHandle {
        let info = SessionInfo {
            id,
            realm: "realm1".to_owned(),
            identity: Identity {
                authid: format!("c{id}"),
                authrole: "r".to_owned(),
                authmethod: "anonymous".to_owned(),
                authprovider: "static".to_owned(),
            },
            transport: "websocket",
            peer: String::new(),
            roles: Dict::new(),
        };
        SessionHandle::new(info, 8).0
    }

    fn registration(callees: &[SessionId], invoke: InvokePolicy) -> (Dealer, u64) {
        let mut dealer = Dealer::default();
        let pattern = Pattern::Exact(Topic::from_wamp("com.svc"));
        let mut id = 0;
        for c in callees {
            id = dealer
                .register(&callee(*c), pattern.clone(), invoke, None, T.ms)
                .unwrap()
                .0;
        }
        (dealer, id)
    }

    #[test]
    fn least_loaded_takes_the_idlest_healthy_callee() {
        let (mut dealer, id) = registration(&[1, 2, 3], InvokePolicy::LeastLoaded);
        let reg = dealer.registrations.get_mut(&id).unwrap();
        let picked: Vec<SessionId> = (0..3).map(|_| reg.pick(T).unwrap().info.id).collect();
        assert_eq!(picked, [1, 2, 3], "each idle callee once, first on a tie");
        reg.release(2);
        assert_eq!(
            reg.pick(T).unwrap().info.id,
            2,
            "the one with the fewest in flight"
        );
        // Callee 1's invocation timed out: the others are preferred, even busier.
        reg.release(1);
        reg.note(1, Outcome::TimedOut, T.ms);
        assert_eq!(reg.pick(T).unwrap().info.id, 2);
        assert_eq!(
            reg.pick_for_registry(Some(InvokePolicy::First), T)
                .unwrap()
                .session
                .info
                .id,
            2,
            "the registry skips an unhealthy callee whatever the policy"
        );
        // An answer makes it healthy again; an ERROR is kept as its last error.
        reg.note(1, Outcome::Failed("com.oops".to_owned()), T.ms);
        let view = reg.view();
        let first = &view.callees[0];
        assert_eq!(first.health.last_error.as_deref(), Some("com.oops"));
        assert!(first.health.unhealthy_since_ms.is_none());
        assert_eq!(reg.pick(T).unwrap().info.id, 1);
    }

    #[test]
    fn an_unhealthy_callee_is_tried_again_after_a_while() {
        let health = CalleeHealth {
            unhealthy_since_ms: Some(1_000),
            ..CalleeHealth::default()
        };
        assert!(!health.is_healthy(1_000 + UNHEALTHY_MS - 1));
        assert!(health.is_healthy(1_000 + UNHEALTHY_MS));
        assert!(CalleeHealth::default().is_healthy(0));
    }

    #[test]
    fn the_registry_round_robin_rotates_without_invoking() {
        let (mut dealer, id) = registration(&[1, 2], InvokePolicy::RoundRobin);
        let reg = dealer.registrations.get_mut(&id).unwrap();
        let picks: Vec<SessionId> = (0..4)
            .map(|_| reg.pick_for_registry(None, T).unwrap().session.info.id)
            .collect();
        assert_eq!(picks, [1, 2, 1, 2]);
        assert!(
            reg.in_flight.values().all(|n| *n == 0),
            "nothing was invoked"
        );
        assert_eq!(dealer.services()[0].callees.len(), 2);
        assert!(dealer.registration_for("com.svc").is_some());
        assert!(dealer.registration_for("com.other").is_none());
    }
}
