//! A registration: its callees, its invocation policy, its queue and its callees' health.

use std::collections::{HashMap, VecDeque};

use fox_wamp_proto::{Dict, Value};

use super::{CallRequest, SessionHandle, SessionId};
use crate::realm::edge::Now;
use crate::topic::Pattern;

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
    pub(super) next: usize,
    /// fox-wamp `concurrency`: invocations a callee takes at once, when it set a limit.
    pub(super) limits: HashMap<SessionId, u32>,
    /// Invocations in flight per callee.
    pub(super) in_flight: HashMap<SessionId, u32>,
    /// Calls waiting for a callee with room, first in first out.
    pub(super) queue: VecDeque<QueuedCall>,
    /// Per callee: since when it is registered, whether its last invocation timed out, its
    /// last ERROR (the service registry, `least_loaded`).
    pub(super) health: HashMap<SessionId, CalleeHealth>,
    /// The service registry's own round-robin position (`pick` does not move `next`).
    pub(super) pick_next: usize,
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
pub(super) struct QueuedCall {
    pub(super) caller: SessionHandle,
    pub(super) call: CallRequest,
    pub(super) timeout_ms: Option<u64>,
    /// When it was queued (the edge's monotonic ms).
    pub(super) queued_at_ms: u64,
}

/// Calls one registration queues at most; more are refused.
pub(super) const QUEUED_CALLS_MAX: usize = 10_000;

impl Registration {
    /// Meta API details.
    pub fn details(&self) -> Dict {
        let mut d = crate::realm::meta_details(self.id, &self.created, &self.pattern);
        d.insert("invoke".into(), Value::from(self.invoke.name()));
        d
    }

    pub(super) fn has_room(&self, callee: SessionId) -> bool {
        let busy = self.in_flight.get(&callee).copied().unwrap_or(0);
        self.limits.get(&callee).is_none_or(|limit| busy < *limit)
    }

    /// The callee for the next invocation by the invocation policy, among callees under
    /// their concurrency limit; `None` when all are busy (the call then queues).
    pub(super) fn pick(&mut self, now: Now) -> Option<SessionHandle> {
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

    pub(super) fn release(&mut self, callee: SessionId) {
        if let Some(busy) = self.in_flight.get_mut(&callee) {
            *busy = busy.saturating_sub(1);
        }
    }
}
