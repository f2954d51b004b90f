//! The RPC family of an established session: REGISTER, UNREGISTER, CALL and the
//! bookkeeping of this session's calls in flight; CANCEL, YIELD and the callee's ERROR go
//! straight to the realm's dealer.

use std::sync::Arc;

use fox_wamp_proto::{code, Dict, ErrorUri, Id, Message, Value};

use super::{error, removal, valid_uri, WampSession};
use crate::auth::Action;
use crate::realm::dealer::{CallRequest, InvokePolicy};
use crate::realm::{Realm, SessionHandle};
use crate::topic::{MatchPolicy, Pattern};

impl WampSession {
    /// REGISTER, UNREGISTER, CALL, CANCEL, YIELD and ERROR (of an INVOCATION); any other
    /// message is handed back.
    pub(super) fn handle_rpc(
        &mut self,
        realm: &Arc<Realm>,
        handle: &SessionHandle,
        message: Message,
        out: &mut Vec<Message>,
    ) -> Option<Message> {
        let id = handle.info.id;
        match message {
            Message::Register {
                request,
                options,
                procedure,
            } => self.register(realm, handle, request, &options, &procedure, out),
            Message::Unregister {
                request,
                registration,
            } => {
                let removed = realm.unregister(id, registration);
                out.push(removal(code::UNREGISTER, request, removed));
            }
            Message::Call {
                request,
                options,
                procedure,
                args,
                kwargs,
            } => {
                let call = CallRequest {
                    request,
                    options,
                    procedure,
                    args,
                    kwargs,
                };
                self.call(realm, handle, call, out);
            }
            Message::Cancel { request, options } => out.extend(realm.cancel(id, request, &options)),
            Message::Yield {
                request,
                options,
                args,
                kwargs,
            } => realm.yield_result(id, request, &options, args, kwargs),
            Message::Error {
                request_type: code::INVOCATION,
                request,
                error,
                args,
                kwargs,
                ..
            } => realm.invocation_error(id, request, error, args, kwargs),
            other => return Some(other),
        }
        None
    }

    /// Sees a message the realm sends this session's peer: a final RESULT or an ERROR of
    /// a CALL ends that call.
    pub fn sending(&mut self, message: &Message) {
        if self.calls_in_flight.is_empty() {
            return;
        }
        match message {
            Message::Result {
                request, details, ..
            } if details.get("progress").and_then(Value::as_bool) != Some(true) => {
                self.calls_in_flight.remove(request);
            }
            Message::Error {
                request_type: code::CALL,
                request,
                ..
            } => {
                self.calls_in_flight.remove(request);
            }
            _ => {}
        }
    }

    /// REGISTER: policies, URI and permission checked here, then the dealer decides.
    fn register(
        &self,
        realm: &Realm,
        handle: &SessionHandle,
        request: Id,
        options: &Dict,
        procedure: &str,
        out: &mut Vec<Message>,
    ) {
        let policy = MatchPolicy::parse(options.get("match").and_then(Value::as_str));
        let invoke = InvokePolicy::parse(options.get("invoke").and_then(Value::as_str));
        let (Some(policy), Some(invoke)) = (policy, invoke) else {
            return out.push(error(
                code::REGISTER,
                request,
                ErrorUri::InvalidArgument,
                "unknown match or invoke policy",
            ));
        };
        if !valid_uri(procedure, policy != MatchPolicy::Exact) {
            return out.push(error(
                code::REGISTER,
                request,
                ErrorUri::InvalidUri,
                "invalid procedure URI",
            ));
        }
        if procedure.starts_with("wamp.")
            || !self.permits(handle, Action::Register, policy, procedure)
        {
            return out.push(error(
                code::REGISTER,
                request,
                ErrorUri::NotAuthorized,
                "not authorized to register",
            ));
        }
        let concurrency = options
            .get("concurrency")
            .and_then(Value::as_u64)
            .map(|c| c.clamp(1, u64::from(u32::MAX)) as u32);
        match realm.register_with(
            handle,
            Pattern::from_wamp(procedure, policy),
            invoke,
            concurrency,
        ) {
            Ok(id) => out.push(Message::Registered {
                request,
                registration: id,
            }),
            Err(uri) => out.push(error(code::REGISTER, request, uri, "registration refused")),
        }
    }

    /// CALL: checked here (URI, permission, this session's calls in flight), then routed
    /// by the dealer; an answer the dealer gives at once (no callee, a meta procedure) goes
    /// to `out`, otherwise the call is in flight until its final RESULT or ERROR.
    fn call(
        &mut self,
        realm: &Arc<Realm>,
        handle: &SessionHandle,
        call: CallRequest,
        out: &mut Vec<Message>,
    ) {
        let request = call.request;
        if !valid_uri(&call.procedure, false) {
            return out.push(error(
                code::CALL,
                request,
                ErrorUri::InvalidUri,
                "invalid procedure URI",
            ));
        }
        if !self.permits(handle, Action::Call, MatchPolicy::Exact, &call.procedure) {
            return out.push(error(
                code::CALL,
                request,
                ErrorUri::NotAuthorized,
                "not authorized to call",
            ));
        }
        let max = self.router.config.limits.calls_in_flight_per_session_max;
        if self.calls_in_flight.len() >= max {
            return out.push(error(
                code::CALL,
                request,
                ErrorUri::LimitExceeded,
                &format!("a session may have {max} calls in flight (limits.calls_in_flight_per_session_max)"),
            ));
        }
        match realm.call(handle, call) {
            Some(reply) => out.push(reply),
            None => {
                self.calls_in_flight.insert(request);
            }
        }
    }
}
