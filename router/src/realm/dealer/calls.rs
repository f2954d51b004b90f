//! The realm's RPC entry points: REGISTER, CALL, YIELD, ERROR, CANCEL, and the call queue
//! behind fox-wamp's `concurrency` limit.
//!
//! Every place a pending call ends (final YIELD or ERROR, CANCEL, timeout, a side leaving)
//! goes through [`Realm::take_call`], which frees the callee's slot, and then
//! [`Realm::drain`], which invokes the calls queued for that registration in order.

use std::sync::{Arc, MutexGuard};

use fox_wamp_proto::ErrorUri;
use fox_wamp_proto::{code, Dict, Id, Message, Value};

use super::super::{lock, Outbound, Realm, SessionHandle, SessionId};
use super::{
    call_error, interrupt, CallRequest, CancelMode, Dealer, InvokePolicy, Outcome, PendingCall,
    QueuedCall, RegisterError, QUEUED_CALLS_MAX,
};
use crate::realm::edge::Now;
use crate::timers::Timer;
use crate::topic::Pattern;

impl Realm {
    /// Registers a callee without a concurrency limit.
    pub fn register(
        &self,
        handle: &SessionHandle,
        pattern: Pattern,
        invoke: InvokePolicy,
    ) -> Result<u64, RegisterError> {
        self.register_with(handle, pattern, invoke, None)
    }

    /// Registers a callee; `concurrency` caps its invocations in flight (excess calls queue
    /// first in, first out). Returns the registration ID or the ERROR URI.
    pub fn register_with(
        &self,
        handle: &SessionHandle,
        pattern: Pattern,
        invoke: InvokePolicy,
        concurrency: Option<u32>,
    ) -> Result<u64, RegisterError> {
        let (id, created) = lock(&self.dealer).register(
            handle,
            pattern,
            invoke,
            concurrency,
            self.shared.edge.now_ms(),
        )?;
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
    /// when an INVOCATION went to a callee or the call is queued.
    pub fn call(self: &Arc<Self>, caller: &SessionHandle, call: CallRequest) -> Option<Message> {
        if let Some(reply) = super::super::meta::call(self, caller, &call) {
            return Some(reply);
        }
        let timeout_ms = call
            .options
            .get("timeout")
            .and_then(Value::as_u64)
            .filter(|t| *t > 0)
            .map(|t| t.min(self.shared.limits.call_timeout_max_ms));
        let dealer = lock(&self.dealer);
        // A pattern registration is not invoked for a procedure one of its callees' roles
        // may not register (deny rules inside what the pattern covers).
        let authorizer = &self.shared.authorizer;
        let may_register = |reg: &super::Registration| {
            reg.callees.iter().all(|callee| {
                let info = &callee.info;
                authorizer.may_be_invoked(&info.realm, &info.identity.authrole, &call.procedure)
            })
        };
        let Some(reg_id) = dealer.route_admitted(&call.procedure, may_register) else {
            return Some(call_error(
                call.request,
                ErrorUri::NoSuchProcedure,
                "no callee registered for this procedure",
            ));
        };
        let queued = QueuedCall {
            caller: caller.clone(),
            call,
            timeout_ms,
            queued_at_ms: self.shared.edge.monotonic_ms(),
        };
        self.dispatch(dealer, reg_id, queued)
    }

    /// Invokes a callee of `reg_id` with room for the call, or queues the call.
    fn dispatch(
        &self,
        mut dealer: MutexGuard<'_, Dealer>,
        reg_id: u64,
        queued: QueuedCall,
    ) -> Option<Message> {
        let Some(reg) = dealer.registrations.get_mut(&reg_id) else {
            return Some(call_error(
                queued.call.request,
                ErrorUri::NoSuchProcedure,
                "the registration is gone",
            ));
        };
        let pattern_based = !matches!(reg.pattern, Pattern::Exact(_));
        match reg.pick(Now::of(&*self.shared.edge)) {
            Some(callee) => self.invoke(dealer, (reg_id, pattern_based), callee, queued),
            None => self.queue_call(dealer, reg_id, queued),
        }
    }

    /// Queues a call until a callee of `reg_id` has room (and times it out if it asked).
    fn queue_call(
        &self,
        mut dealer: MutexGuard<'_, Dealer>,
        reg_id: u64,
        queued: QueuedCall,
    ) -> Option<Message> {
        let reg = dealer.registrations.get_mut(&reg_id)?;
        if reg.queue.len() >= QUEUED_CALLS_MAX {
            return Some(call_error(
                queued.call.request,
                ErrorUri::Canceled,
                "too many calls queued for this procedure",
            ));
        }
        let (caller, request, timeout_ms) = (
            queued.caller.info.id,
            queued.call.request,
            queued.timeout_ms,
        );
        reg.queue.push_back(queued);
        drop(dealer);
        if let Some(t) = timeout_ms {
            let timer = Timer::QueuedCall {
                realm: self.me.clone(),
                registration: reg_id,
                caller,
                request,
            };
            self.shared.timers.schedule_in(t, timer);
        }
        None
    }

    /// Sends the INVOCATION of a call to `callee`, tracked until its answer or timeout.
    fn invoke(
        &self,
        mut dealer: MutexGuard<'_, Dealer>,
        (reg_id, pattern_based): (u64, bool),
        callee: SessionHandle,
        queued: QueuedCall,
    ) -> Option<Message> {
        let QueuedCall {
            caller,
            call,
            timeout_ms,
            queued_at_ms,
        } = queued;
        let receive_progress = call
            .options
            .get("receive_progress")
            .and_then(Value::as_bool)
            == Some(true);
        let remaining_ms = timeout_ms.map(|t| {
            let waited_ms = self.shared.edge.monotonic_ms().saturating_sub(queued_at_ms);
            t.saturating_sub(waited_ms).max(1)
        });
        let details = invocation_details(
            &call,
            &caller,
            pattern_based,
            receive_progress,
            remaining_ms,
        );
        dealer.next_invocation += 1;
        let invocation = dealer.next_invocation;
        let key = (callee.info.id, invocation);
        dealer.by_caller.insert((caller.info.id, call.request), key);
        let pending = PendingCall {
            registration: reg_id,
            caller,
            caller_request: call.request,
            callee: callee.clone(),
            receive_progress,
            cancel: None,
        };
        dealer.pending.insert(key, pending);
        drop(dealer);
        let message = Message::Invocation {
            request: invocation,
            registration: reg_id,
            details,
            args: call.args,
            kwargs: call.kwargs,
        };
        if !callee.send(Outbound::wamp(message)) {
            self.forget_call(key);
            return Some(call_error(
                call.request,
                ErrorUri::Canceled,
                "the callee is unavailable",
            ));
        }
        if let Some(t) = remaining_ms {
            let timer = Timer::Invocation {
                realm: self.me.clone(),
                key,
            };
            self.shared.timers.schedule_in(t, timer);
        }
        None
    }

    /// Removes a pending call and frees its callee's slot (the caller drains the queue).
    fn take_call(dealer: &mut Dealer, key: (SessionId, Id)) -> Option<PendingCall> {
        let call = dealer.pending.remove(&key)?;
        dealer
            .by_caller
            .remove(&(call.caller.info.id, call.caller_request));
        if let Some(reg) = dealer.registrations.get_mut(&call.registration) {
            reg.release(key.0);
        }
        Some(call)
    }

    /// Invokes queued calls of a registration while its callees have room.
    pub(in crate::realm) fn drain(&self, reg_id: u64) {
        // Each round takes one call off the queue, so the queue's bound bounds the loop.
        for _ in 0..=QUEUED_CALLS_MAX {
            let mut dealer = lock(&self.dealer);
            let Some(reg) = dealer.registrations.get_mut(&reg_id) else {
                return;
            };
            let room = reg.callees.iter().any(|c| reg.has_room(c.info.id));
            if !room {
                return;
            }
            let Some(next) = reg.queue.pop_front() else {
                return;
            };
            let caller = next.caller.clone();
            if let Some(reply) = self.dispatch(dealer, reg_id, next) {
                caller.send(Outbound::wamp(reply));
            }
        }
    }

    /// Invokes what can be invoked in every registration (after a session left).
    pub(in crate::realm) fn drain_all(&self) {
        let ids: Vec<u64> = lock(&self.dealer)
            .registrations
            .iter()
            .filter(|(_, r)| !r.queue.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.drain(id);
        }
    }

    fn forget_call(&self, key: (SessionId, Id)) -> Option<PendingCall> {
        self.forget_call_noting(key, None)
    }

    /// [`Self::forget_call`], noting how the invocation ended for the callee's health.
    fn forget_call_noting(
        &self,
        key: (SessionId, Id),
        outcome: Option<Outcome>,
    ) -> Option<PendingCall> {
        let call = {
            let mut dealer = lock(&self.dealer);
            let call = Self::take_call(&mut dealer, key)?;
            if let (Some(outcome), Some(reg)) =
                (outcome, dealer.registrations.get_mut(&call.registration))
            {
                reg.note(key.0, outcome, self.shared.edge.now_ms());
            }
            call
        };
        self.drain(call.registration);
        Some(call)
    }

    pub(crate) fn queued_call_timed_out(&self, reg_id: u64, caller: SessionId, request: Id) {
        let mut dealer = lock(&self.dealer);
        let Some(reg) = dealer.registrations.get_mut(&reg_id) else {
            return;
        };
        let Some(position) = reg
            .queue
            .iter()
            .position(|q| q.caller.info.id == caller && q.call.request == request)
        else {
            return;
        };
        if let Some(queued) = reg.queue.remove(position) {
            drop(dealer);
            queued.caller.send(Outbound::wamp(call_error(
                request,
                ErrorUri::Timeout,
                "the call timed out while queued",
            )));
        }
    }

    pub(crate) fn call_timed_out(&self, key: (SessionId, Id)) {
        let Some(call) = self.forget_call_noting(key, Some(Outcome::TimedOut)) else {
            return;
        };
        if call.callee.info.has_feature("callee", "call_canceling") {
            call.callee.send(Outbound::wamp(interrupt(
                key.1,
                "killnowait",
                Some(ErrorUri::Timeout),
            )));
        }
        if call.cancel.is_none() {
            call.caller.send(Outbound::wamp(call_error(
                call.caller_request,
                ErrorUri::Timeout,
                "the call timed out",
            )));
        }
    }

    /// Every registration with its callees, their load and health (the service registry).
    pub fn services(&self) -> Vec<super::ServiceView> {
        lock(&self.dealer).services()
    }

    /// The callee a call to `procedure` would go to now by `policy` (default: the
    /// registration's own), healthy ones only; `None` when no registration matches or no
    /// healthy callee has room. Invokes nothing.
    pub fn pick_callee(
        &self,
        procedure: &str,
        policy: Option<InvokePolicy>,
    ) -> Option<(u64, super::CalleeView)> {
        let mut dealer = lock(&self.dealer);
        let reg = dealer.registration_for(procedure)?;
        let id = reg.id;
        reg.pick_for_registry(policy, Now::of(&*self.shared.edge))
            .map(|callee| (id, callee))
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
                caller.send(Outbound::wamp(Message::Result {
                    request,
                    details,
                    args,
                    kwargs,
                }));
            }
            return;
        }
        let Some(call) = Self::take_call(&mut dealer, key) else {
            return;
        };
        if let Some(reg) = dealer.registrations.get_mut(&call.registration) {
            reg.note(key.0, Outcome::Answered, self.shared.edge.now_ms());
        }
        drop(dealer);
        self.drain(call.registration);
        let reply = match call.cancel {
            None => Message::Result {
                request: call.caller_request,
                details: Dict::new(),
                args,
                kwargs,
            },
            Some(CancelMode::Kill) => call_error(
                call.caller_request,
                ErrorUri::Canceled,
                "the call was canceled",
            ),
            Some(_) => return,
        };
        call.caller.send(Outbound::wamp(reply));
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
        let outcome = Outcome::Failed(error.clone());
        let Some(call) = self.forget_call_noting((callee, request), Some(outcome)) else {
            return;
        };
        let reply = match call.cancel {
            Some(CancelMode::Skip | CancelMode::KillNoWait) => return,
            // The callee answered our INTERRUPT: the caller learns its call was canceled,
            // whatever error the callee's runtime chose to report.
            Some(CancelMode::Kill) => call_error(
                call.caller_request,
                ErrorUri::Canceled,
                "the call was canceled",
            ),
            None => Message::Error {
                request_type: code::CALL,
                request: call.caller_request,
                details: Dict::new(),
                error,
                args,
                kwargs,
            },
        };
        call.caller.send(Outbound::wamp(reply));
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
        let Some(key) = dealer.by_caller.get(&(caller, request)).copied() else {
            // Not invoked yet: a queued call is simply dropped.
            let found = dealer.registrations.values_mut().find_map(|reg| {
                let position = reg
                    .queue
                    .iter()
                    .position(|q| q.caller.info.id == caller && q.call.request == request)?;
                reg.queue.remove(position)
            });
            return found.map(|_| call_error(request, ErrorUri::Canceled, "the call was canceled"));
        };
        let call = dealer.pending.get_mut(&key)?;
        if call.cancel.is_some() {
            return None;
        }
        let can_interrupt = call.callee.info.has_feature("callee", "call_canceling");
        let mode = if can_interrupt {
            requested
        } else {
            CancelMode::Skip
        };
        call.cancel = Some(mode);
        let callee = call.callee.clone();
        let mut freed = None;
        if mode != CancelMode::Kill {
            // skip and killnowait answer the caller now and forget the call; a late YIELD
            // or ERROR from the callee finds nothing and is dropped.
            freed = Self::take_call(&mut dealer, key).map(|c| c.registration);
        }
        drop(dealer);
        if let Some(reg_id) = freed {
            self.drain(reg_id);
        }
        if mode != CancelMode::Skip {
            let name = if mode == CancelMode::Kill {
                "kill"
            } else {
                "killnowait"
            };
            callee.send(Outbound::wamp(interrupt(
                key.1,
                name,
                Some(ErrorUri::Canceled),
            )));
        }
        (mode != CancelMode::Kill)
            .then(|| call_error(request, ErrorUri::Canceled, "the call was canceled"))
    }

    /// Meta API access to the dealer.
    pub(in crate::realm) fn with_dealer<T>(&self, f: impl FnOnce(&Dealer) -> T) -> T {
        f(&lock(&self.dealer))
    }
}

fn invocation_details(
    call: &CallRequest,
    caller: &SessionHandle,
    pattern_based: bool,
    receive_progress: bool,
    timeout_ms: Option<u64>,
) -> Dict {
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
        details.insert(
            "caller_authid".into(),
            Value::from(who.identity.authid.as_str()),
        );
        details.insert(
            "caller_authrole".into(),
            Value::from(who.identity.authrole.as_str()),
        );
    }
    if let Some(t) = timeout_ms {
        details.insert("timeout".into(), Value::from(t));
    }
    details
}
