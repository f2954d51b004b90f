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

use super::{SessionHandle, SessionId};
use crate::topic::{Pattern, Topic, Trie};
use crate::util::iso8601;

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
mod registration;

pub use registration::{
    CalleeHealth, CalleeView, InvokePolicy, Outcome, Registration, ServiceView, UNHEALTHY_MS,
};
use registration::{QueuedCall, QUEUED_CALLS_MAX};

#[cfg(test)]
mod tests;
