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

#[cfg(test)]
mod tests {
    use fox_wamp_proto::{code, Dict, ErrorUri, Message, Value};

    use super::super::testing::{router, uri_of, Peer, START_MS};
    use super::super::Flow;

    fn register(request: u64, procedure: &str) -> Message {
        Message::Register {
            request,
            options: Dict::new(),
            procedure: procedure.to_owned(),
        }
    }

    fn call(request: u64, procedure: &str, argument: i64) -> Message {
        Message::Call {
            request,
            options: Dict::new(),
            procedure: procedure.to_owned(),
            args: Some(vec![Value::from(argument)]),
            kwargs: None,
        }
    }

    /// REGISTERED's registration ID.
    fn registered(replies: &[Message]) -> u64 {
        match replies {
            [Message::Registered { registration, .. }] => *registration,
            other => panic!("REGISTERED: {other:?}"),
        }
    }

    /// The INVOCATION's request ID and arguments.
    fn invocation(messages: &[Message], registration_expected: u64) -> (u64, Vec<Value>) {
        match messages {
            [Message::Invocation {
                request,
                registration,
                args,
                ..
            }] => {
                assert_eq!(*registration, registration_expected);
                (*request, args.clone().unwrap_or_default())
            }
            other => panic!("one INVOCATION: {other:?}"),
        }
    }

    #[test]
    fn a_call_is_invoked_and_its_yield_is_the_result() {
        let router = router();
        let mut callee = Peer::join(&router, "realm1", 1);
        let mut caller = Peer::join(&router, "realm1", 2);
        let registration = registered(&callee.send(register(1, "com.add"), START_MS).0);
        let (replies, flow) = caller.send(call(7, "com.add", 20), START_MS + 1);
        assert_eq!((replies.len(), flow), (0, Flow::Continue), "{replies:?}");
        assert_eq!(caller.session.calls_in_flight.len(), 1);
        let (invocation_id, args) = invocation(&callee.queued(START_MS + 1), registration);
        assert_eq!(args, vec![Value::from(20)]);
        let answer = Message::Yield {
            request: invocation_id,
            options: Dict::new(),
            args: Some(vec![Value::from(22)]),
            kwargs: None,
        };
        let (replies, flow) = callee.send(answer, START_MS + 2);
        assert_eq!((replies.len(), flow), (0, Flow::Continue), "{replies:?}");
        let results = caller.queued(START_MS + 2);
        let [Message::Result {
            request: 7, args, ..
        }] = results.as_slice()
        else {
            panic!("RESULT: {results:?}");
        };
        assert_eq!(args.as_deref(), Some(&[Value::from(22)][..]));
        assert!(caller.session.calls_in_flight.is_empty(), "answered");
    }

    #[test]
    fn a_callee_error_reaches_the_caller() {
        let router = router();
        let mut callee = Peer::join(&router, "realm1", 1);
        let mut caller = Peer::join(&router, "realm1", 2);
        let registration = registered(&callee.send(register(1, "com.fail"), START_MS).0);
        caller.request(call(3, "com.fail", 0), START_MS);
        let (invocation_id, _) = invocation(&callee.queued(START_MS), registration);
        let failure = Message::Error {
            request_type: code::INVOCATION,
            request: invocation_id,
            details: Dict::new(),
            error: "com.error.nope".to_owned(),
            args: None,
            kwargs: None,
        };
        callee.request(failure, START_MS);
        let answers = caller.queued(START_MS);
        assert!(
            matches!(
                answers.as_slice(),
                [Message::Error {
                    request_type: code::CALL,
                    request: 3,
                    ..
                }]
            ),
            "{answers:?}"
        );
        assert_eq!(uri_of(&answers[0]), "com.error.nope");
        assert!(caller.session.calls_in_flight.is_empty());
    }

    #[test]
    fn a_call_without_a_callee_is_answered_at_once() {
        let router = router();
        let mut caller = Peer::join(&router, "realm1", 2);
        let (replies, flow) = caller.send(call(1, "com.nobody", 0), START_MS);
        assert_eq!(flow, Flow::Continue);
        assert!(
            matches!(
                replies.as_slice(),
                [Message::Error {
                    request_type: code::CALL,
                    request: 1,
                    ..
                }]
            ),
            "{replies:?}"
        );
        assert_eq!(uri_of(&replies[0]), ErrorUri::NoSuchProcedure.as_str());
        assert!(caller.session.calls_in_flight.is_empty(), "not in flight");
    }

    #[test]
    fn call_and_register_refusals_name_their_cause() {
        let router = router();
        let mut peer = Peer::join(&router, "realm1", 1);
        let (replies, _) = peer.send(call(1, "com..add", 0), START_MS);
        assert_eq!(uri_of(&replies[0]), ErrorUri::InvalidUri.as_str());
        let (replies, _) = peer.send(register(2, "wamp.mine"), START_MS);
        assert_eq!(uri_of(&replies[0]), ErrorUri::NotAuthorized.as_str());
        registered(&peer.send(register(3, "com.add"), START_MS).0);
        let mut other = Peer::join(&router, "realm1", 2);
        let (replies, _) = other.send(register(1, "com.add"), START_MS);
        assert_eq!(
            uri_of(&replies[0]),
            ErrorUri::ProcedureAlreadyExists.as_str()
        );
    }

    #[test]
    fn unregister_answers_once_then_names_the_missing_registration() {
        let router = router();
        let mut callee = Peer::join(&router, "realm1", 1);
        let registration = registered(&callee.send(register(1, "com.add"), START_MS).0);
        let unregister = |request| Message::Unregister {
            request,
            registration,
        };
        let (replies, _) = callee.send(unregister(2), START_MS);
        assert!(
            matches!(
                replies.as_slice(),
                [Message::Unregistered { request: 2, .. }]
            ),
            "{replies:?}"
        );
        let (replies, _) = callee.send(unregister(3), START_MS);
        assert_eq!(uri_of(&replies[0]), ErrorUri::NoSuchRegistration.as_str());
        let mut caller = Peer::join(&router, "realm1", 2);
        let (replies, _) = caller.send(call(4, "com.add", 0), START_MS);
        assert_eq!(uri_of(&replies[0]), ErrorUri::NoSuchProcedure.as_str());
    }

    /// `limits.calls_in_flight_per_session_max`: one call more is refused at once, and the
    /// final RESULT makes room again.
    #[test]
    fn calls_past_the_in_flight_limit_are_refused_until_one_is_answered() {
        let mut config = crate::config::Config::default();
        config.limits.calls_in_flight_per_session_max = 1;
        let router = crate::router::Router::new(config);
        let mut callee = Peer::join(&router, "realm1", 1);
        let mut caller = Peer::join(&router, "realm1", 2);
        let registration = registered(&callee.send(register(1, "com.slow"), START_MS).0);
        caller.request(call(1, "com.slow", 1), START_MS);
        let (replies, _) = caller.send(call(2, "com.slow", 2), START_MS);
        assert_eq!(uri_of(&replies[0]), ErrorUri::LimitExceeded.as_str());
        let (invocation_id, _) = invocation(&callee.queued(START_MS), registration);
        let answer = Message::Yield {
            request: invocation_id,
            options: Dict::new(),
            args: None,
            kwargs: None,
        };
        callee.request(answer, START_MS);
        assert_eq!(caller.queued(START_MS).len(), 1, "the RESULT");
        let (replies, _) = caller.send(call(3, "com.slow", 3), START_MS);
        assert!(replies.is_empty(), "room again: {replies:?}");
    }
}
