//! The dealer: registrations, invocation policies and pending calls.
//!
//! A call finds its registration by the spec's precedence (exact, then the longest prefix,
//! then the wildcard with the most literal levels), picks a callee by the registration's
//! invocation policy, and is tracked until the callee's final YIELD or ERROR, a CANCEL,
//! the router-enforced timeout, or either side leaving. A callee that leaves or drops its
//! connection fails every pending call at once with `wamp.error.canceled`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fox_wamp_proto::{code, Dict, Id, Message, Value};

use super::{lock, SessionHandle, SessionId};
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
}

impl Registration {
    /// Meta API details.
    pub fn details(&self) -> Dict {
        let (uri, policy) = self.pattern.to_wamp();
        let mut d = Dict::new();
        d.insert("id".into(), Value::from(self.id));
        d.insert("created".into(), Value::from(self.created.as_str()));
        d.insert("uri".into(), Value::from(uri));
        d.insert("match".into(), Value::from(policy.name()));
        d.insert("invoke".into(), Value::from(self.invoke.name()));
        d
    }

    fn pick(&mut self) -> Option<SessionHandle> {
        let n = self.callees.len();
        let index = match self.invoke {
            _ if n == 0 => return None,
            InvokePolicy::Single | InvokePolicy::First => 0,
            InvokePolicy::Last => n - 1,
            InvokePolicy::Random => rand::random::<u64>() as usize % n,
            InvokePolicy::RoundRobin => {
                self.next = self.next.wrapping_add(1);
                (self.next - 1) % n
            }
        };
        self.callees.get(index).cloned()
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
pub type RegisterError = &'static str;

impl Dealer {
    /// Adds a callee; returns (ID, details if the registration was created).
    pub fn register(
        &mut self,
        handle: &SessionHandle,
        pattern: Pattern,
        invoke: InvokePolicy,
    ) -> Result<(u64, Option<Dict>), RegisterError> {
        let session = handle.info.id;
        if let Some(id) = self.by_pattern.get(&pattern).copied() {
            let reg = self
                .registrations
                .get_mut(&id)
                .ok_or("wamp.error.procedure_already_exists")?;
            if reg.invoke == InvokePolicy::Single
                || reg.callees.iter().any(|c| c.info.id == session)
            {
                return Err("wamp.error.procedure_already_exists");
            }
            if reg.invoke != invoke {
                return Err("wamp.error.procedure_exists_with_different_invocation_policy");
            }
            reg.callees.push(handle.clone());
            self.by_session.entry(session).or_default().insert(id);
            return Ok((id, None));
        }
        self.next_registration += 1;
        let id = self.next_registration;
        let reg = Registration {
            id,
            pattern: pattern.clone(),
            created: iso8601(crate::engine::unix_ms()),
            invoke,
            callees: vec![handle.clone()],
            next: 0,
        };
        let details = reg.details();
        self.trie.insert(&pattern, id);
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
        if let Some(ids) = self.by_session.get_mut(&session) {
            ids.remove(&id);
        }
        if !reg.callees.is_empty() {
            return Some(false);
        }
        if let Some(reg) = self.registrations.remove(&id) {
            self.trie.remove(&reg.pattern, &id);
            self.by_pattern.remove(&reg.pattern);
        }
        Some(true)
    }

    /// The registration a call to `procedure` goes to.
    pub fn route(&self, procedure: &str) -> Option<u64> {
        let topic = Topic::from_wamp(procedure);
        let mut best: Option<((u8, usize), u64)> = None;
        self.trie.matches(&topic, |id| {
            let Some(reg) = self.registrations.get(id) else {
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
                    .map(|deleted| RegistrationLeft { registration: id, deleted })
            })
            .collect();
        let keys: Vec<(SessionId, Id)> = self
            .pending
            .iter()
            .filter(|(k, p)| k.0 == session || p.caller.info.id == session)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let Some(call) = self.pending.remove(&key) else {
                continue;
            };
            self.by_caller
                .remove(&(call.caller.info.id, call.caller_request));
            if key.0 == session {
                if call.cancel != Some(CancelMode::Skip) && call.cancel != Some(CancelMode::KillNoWait) {
                    call.caller.send(super::Outbound::Wamp(call_error(
                        call.caller_request,
                        "wamp.error.canceled",
                        "the callee left before answering",
                    )));
                }
            } else if call.callee.info.has_feature("callee", "call_canceling") {
                call.callee.send(super::Outbound::Wamp(interrupt(key.1, "killnowait", None)));
            }
        }
        left
    }
}

fn call_error(request: Id, error: &str, message: &str) -> Message {
    Message::Error {
        request_type: code::CALL,
        request,
        details: Dict::new(),
        error: error.to_owned(),
        args: Some(vec![Value::from(message)]),
        kwargs: None,
    }
}

fn interrupt(request: Id, mode: &str, reason: Option<&str>) -> Message {
    let mut options = Dict::new();
    options.insert("mode".into(), Value::from(mode));
    if let Some(reason) = reason {
        options.insert("reason".into(), Value::from(reason));
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

impl super::Realm {
    /// Registers a callee. Returns the registration ID or the ERROR URI.
    pub fn register(
        &self,
        handle: &SessionHandle,
        pattern: Pattern,
        invoke: InvokePolicy,
    ) -> Result<u64, RegisterError> {
        let (id, created) = lock(&self.dealer).register(handle, pattern, invoke)?;
        self.registration_meta(handle.info.id, id, created, false, true);
        Ok(id)
    }

    /// Unregisters a callee; `false` if it had no such registration.
    pub fn unregister(&self, session: SessionId, id: u64) -> bool {
        let result = lock(&self.dealer).unregister(session, id);
        if let Some(deleted) = result {
            self.registration_meta(session, id, None, deleted, false);
        }
        result.is_some()
    }

    /// Routes a CALL. Returns the reply to send the caller now (RESULT or ERROR), or `None`
    /// when an INVOCATION went to a callee.
    pub fn call(self: &Arc<Self>, caller: &SessionHandle, call: CallRequest) -> Option<Message> {
        if let Some(reply) = super::meta::call(self, caller, &call) {
            return Some(reply);
        }
        let timeout_ms = call
            .options
            .get("timeout")
            .and_then(Value::as_u64)
            .filter(|t| *t > 0)
            .map(|t| t.min(self.shared.limits.call_timeout_max_ms));
        let mut dealer = lock(&self.dealer);
        let Some(reg_id) = dealer.route(&call.procedure) else {
            return Some(call_error(
                call.request,
                "wamp.error.no_such_procedure",
                "no callee registered for this procedure",
            ));
        };
        let reg = dealer.registrations.get_mut(&reg_id)?;
        let callee = reg.pick()?;
        let pattern_based = !matches!(reg.pattern, Pattern::Exact(_));
        let receive_progress = call.options.get("receive_progress").and_then(Value::as_bool) == Some(true);
        let mut details = Dict::new();
        if pattern_based {
            details.insert("procedure".into(), Value::from(call.procedure.as_str()));
        }
        if receive_progress {
            details.insert("receive_progress".into(), Value::Bool(true));
        }
        if call.options.get("disclose_me").and_then(Value::as_bool) == Some(true) {
            let who = &caller.info;
            details.insert("caller".into(), Value::from(who.id));
            details.insert("caller_authid".into(), Value::from(who.identity.authid.as_str()));
            details.insert("caller_authrole".into(), Value::from(who.identity.authrole.as_str()));
        }
        if let Some(t) = timeout_ms {
            details.insert("timeout".into(), Value::from(t));
        }
        dealer.next_invocation += 1;
        let invocation = dealer.next_invocation;
        let key = (callee.info.id, invocation);
        dealer.pending.insert(
            key,
            PendingCall {
                caller: caller.clone(),
                caller_request: call.request,
                callee: callee.clone(),
                receive_progress,
                cancel: None,
            },
        );
        dealer.by_caller.insert((caller.info.id, call.request), key);
        drop(dealer);
        let sent = callee.send(super::Outbound::Wamp(Message::Invocation {
            request: invocation,
            registration: reg_id,
            details,
            args: call.args,
            kwargs: call.kwargs,
        }));
        if !sent {
            self.forget_call(key);
            return Some(call_error(call.request, "wamp.error.canceled", "the callee is unavailable"));
        }
        if let Some(t) = timeout_ms {
            let realm = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(t)).await;
                realm.call_timed_out(key);
            });
        }
        None
    }

    fn forget_call(&self, key: (SessionId, Id)) -> Option<PendingCall> {
        let mut dealer = lock(&self.dealer);
        let call = dealer.pending.remove(&key)?;
        dealer
            .by_caller
            .remove(&(call.caller.info.id, call.caller_request));
        Some(call)
    }

    fn call_timed_out(&self, key: (SessionId, Id)) {
        let Some(call) = self.forget_call(key) else {
            return;
        };
        if call.callee.info.has_feature("callee", "call_canceling") {
            call.callee.send(super::Outbound::Wamp(interrupt(key.1, "killnowait", Some("wamp.error.timeout"))));
        }
        if call.cancel.is_none() {
            call.caller.send(super::Outbound::Wamp(call_error(
                call.caller_request,
                "wamp.error.timeout",
                "the call timed out",
            )));
        }
    }

    /// A callee's YIELD: forwards RESULT to the caller.
    pub fn yield_result(
        &self,
        callee: SessionId,
        request: Id,
        options: &Dict,
        args: Option<Vec<Value>>,
        kwargs: Option<Dict>,
    ) {
        let key = (callee, request);
        let progress = options.get("progress").and_then(Value::as_bool) == Some(true);
        let mut dealer = lock(&self.dealer);
        let Some(call) = dealer.pending.get(&key) else {
            return;
        };
        if progress {
            if call.receive_progress && call.cancel.is_none() {
                let mut details = Dict::new();
                details.insert("progress".into(), Value::Bool(true));
                let (caller, request) = (call.caller.clone(), call.caller_request);
                drop(dealer);
                caller.send(super::Outbound::Wamp(Message::Result { request, details, args, kwargs }));
            }
            return;
        }
        let Some(call) = dealer.pending.remove(&key) else {
            return;
        };
        dealer.by_caller.remove(&(call.caller.info.id, call.caller_request));
        drop(dealer);
        let reply = match call.cancel {
            None => Message::Result { request: call.caller_request, details: Dict::new(), args, kwargs },
            Some(CancelMode::Kill) => call_error(call.caller_request, "wamp.error.canceled", "the call was canceled"),
            Some(_) => return,
        };
        call.caller.send(super::Outbound::Wamp(reply));
    }

    /// A callee's ERROR for an INVOCATION: forwarded to the caller unchanged.
    pub fn invocation_error(
        &self,
        callee: SessionId,
        request: Id,
        error: String,
        args: Option<Vec<Value>>,
        kwargs: Option<Dict>,
    ) {
        let Some(call) = self.forget_call((callee, request)) else {
            return;
        };
        let reply = match call.cancel {
            Some(CancelMode::Skip | CancelMode::KillNoWait) => return,
            // The callee answered our INTERRUPT: the caller learns its call was canceled,
            // whatever error the callee's runtime chose to report.
            Some(CancelMode::Kill) => call_error(call.caller_request, "wamp.error.canceled", "the call was canceled"),
            None => Message::Error {
                request_type: code::CALL,
                request: call.caller_request,
                details: Dict::new(),
                error,
                args,
                kwargs,
            },
        };
        call.caller.send(super::Outbound::Wamp(reply));
    }

    /// A caller's CANCEL. Returns an ERROR to send the caller now, if any.
    pub fn cancel(&self, caller: SessionId, request: Id, options: &Dict) -> Option<Message> {
        let requested = match options.get("mode").and_then(Value::as_str) {
            None | Some("kill") => CancelMode::Kill,
            Some("skip") => CancelMode::Skip,
            Some("killnowait") => CancelMode::KillNoWait,
            Some(_) => return None,
        };
        let mut dealer = lock(&self.dealer);
        let key = *dealer.by_caller.get(&(caller, request))?;
        let call = dealer.pending.get_mut(&key)?;
        if call.cancel.is_some() {
            return None;
        }
        let can_interrupt = call.callee.info.has_feature("callee", "call_canceling");
        let mode = if can_interrupt { requested } else { CancelMode::Skip };
        call.cancel = Some(mode);
        let callee = call.callee.clone();
        if mode != CancelMode::Kill {
            // skip and killnowait answer the caller now and forget the call; a late YIELD
            // or ERROR from the callee finds nothing and is dropped.
            dealer.pending.remove(&key);
            dealer.by_caller.remove(&(caller, request));
        }
        drop(dealer);
        if mode != CancelMode::Skip {
            let name = if mode == CancelMode::Kill { "kill" } else { "killnowait" };
            callee.send(super::Outbound::Wamp(interrupt(key.1, name, Some("wamp.error.canceled"))));
        }
        (mode != CancelMode::Kill).then(|| call_error(request, "wamp.error.canceled", "the call was canceled"))
    }

    /// Meta API access to the dealer.
    pub(super) fn with_dealer<T>(&self, f: impl FnOnce(&Dealer) -> T) -> T {
        f(&lock(&self.dealer))
    }
}
