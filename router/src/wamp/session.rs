//! The WAMP session state machine: HELLO, authentication, then the established session's
//! requests, then GOODBYE.
//!
//! States are named for what they expect. Each call to [`WampSession::handle`] takes one
//! decoded message and pushes the replies for this peer into `out`; it returns whether the
//! connection should close after they are written. Messages for other sessions travel
//! through the realm. No I/O and no timers here: the connection task owns those.

use crate::engine::Feature;
use std::collections::HashSet;
use std::sync::Arc;

use fox_wamp_proto::CloseUri;
use fox_wamp_proto::ErrorUri;
use fox_wamp_proto::{code, Dict, Id, Message, Value};

use crate::auth::hooks::{Query, SessionAuthorization};
use crate::auth::{Action, Denied, HelloOutcome, Identity, Login, Pending, Verification};
use crate::engine::unix_ms;
use crate::metrics::Protocol;
use crate::realm::dealer::{CallRequest, InvokePolicy};
use crate::realm::sync::{acknowledge_later, kv_options, KvOutcome};
use crate::realm::{
    Delivery, OutboundQueue, Payload, PublishOptions, Realm, SessionHandle, SessionInfo,
    SubscribeOptions,
};
use crate::router::Router;
use crate::topic::{MatchPolicy, Pattern, Topic};
use crate::util::iso8601;

mod authorization;

/// Whether the connection goes on after the replies are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Close after writing the replies.
    Close,
}

enum State {
    ExpectHello,
    ExpectAuthenticate {
        realm: Arc<Realm>,
        session: u64,
        roles: Dict,
        pending: Pending,
    },
    /// AUTHENTICATE went to an external authenticator; the connection task awaits its
    /// verdict ([`WampSession::take_login`], [`WampSession::handle_verdict`]).
    ExpectVerdict {
        realm: Arc<Realm>,
        session: u64,
        roles: Dict,
    },
    Established {
        realm: Arc<Realm>,
        handle: SessionHandle,
    },
    /// We sent GOODBYE (the session already left its realm) and wait for the peer's.
    Closing,
    Closed,
}

/// One WAMP session on one connection.
pub struct WampSession {
    state: State,
    router: Arc<Router>,
    transport: &'static str,
    peer: String,
    outbound: Option<OutboundQueue>,
    /// Request IDs of this session's CALLs routed to a callee and not answered yet (final
    /// RESULT or ERROR): at most `limits.calls_in_flight_per_session_max`.
    calls_in_flight: HashSet<Id>,
    /// A login for the external authenticators, until the connection task takes it.
    login: Option<Login>,
    /// What the TLS connection tells (certificate name, channel binding), if TLS.
    tls: Option<Arc<crate::tls::TlsContext>>,
    /// The authorization hooks' answers, when they decide for this session (boxed: most
    /// sessions have none).
    authorization: Option<Box<SessionAuthorization>>,
    /// A message waiting for the hooks' answers, and the queries not yet taken by the
    /// connection task (`authorization.rs`).
    parked: Option<(Message, Vec<Query>)>,
}

fn abort(reason: ErrorUri, message: &str) -> Message {
    let mut details = Dict::new();
    details.insert("message".into(), Value::from(message));
    Message::Abort {
        details,
        reason: reason.into(),
    }
}

fn error(request_type: u64, request: Id, uri: ErrorUri, message: &str) -> Message {
    Message::Error {
        request_type,
        request,
        details: Dict::new(),
        error: uri.into(),
        args: Some(vec![Value::from(message)]),
        kwargs: None,
    }
}

/// The answer to UNSUBSCRIBE or UNREGISTER (`request_type`): UNSUBSCRIBED /
/// UNREGISTERED when the subscription or registration was the session's (`removed`), else
/// ERROR `no_such_subscription` / `no_such_registration`.
fn removal(request_type: u64, request: Id, removed: bool) -> Message {
    let unsubscribe = request_type == code::UNSUBSCRIBE;
    match (removed, unsubscribe) {
        (true, true) => Message::Unsubscribed {
            request,
            details: None,
        },
        (true, false) => Message::Unregistered {
            request,
            details: None,
        },
        (false, true) => error(
            request_type,
            request,
            ErrorUri::NoSuchSubscription,
            "not subscribed",
        ),
        (false, false) => error(
            request_type,
            request,
            ErrorUri::NoSuchRegistration,
            "not registered",
        ),
    }
}

/// A URI as WAMP's loose rules allow: non-empty, no whitespace or `#`; empty components only
/// where a pattern allows them. U+0000 is refused too: a JSON peer reads a string that
/// starts with it as binary, so such a URI could not reach it (nor any MQTT client).
fn valid_uri(uri: &str, empty_components: bool) -> bool {
    !uri.is_empty()
        && !uri.contains(|c: char| c.is_whitespace() || c == '#' || c == '\0')
        && (empty_components || uri.split('.').all(|c| !c.is_empty()))
}

fn option_bool(options: &Dict, key: &str) -> Option<bool> {
    options.get(key).and_then(Value::as_bool)
}

fn id_list(options: &Dict, key: &str) -> Option<Vec<u64>> {
    options
        .get(key)
        .and_then(Value::as_list)
        .map(|l| l.iter().filter_map(Value::as_u64).collect())
}

fn str_list(options: &Dict, key: &str) -> Option<Vec<String>> {
    options.get(key).and_then(Value::as_list).map(|l| {
        l.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    })
}

fn welcome_details(identity: &Identity, realm: &str) -> Dict {
    let features = |names: &[&str]| {
        let mut f = Dict::new();
        for name in names {
            f.insert((*name).to_owned(), Value::Bool(true));
        }
        let mut role = Dict::new();
        role.insert("features".into(), Value::Dict(f));
        Value::Dict(role)
    };
    let mut roles = Dict::new();
    roles.insert(
        "broker".into(),
        features(&[
            "pattern_based_subscription",
            "event_retention",
            "event_history",
            "subscription_revocation",
            "publisher_identification",
            "publisher_exclusion",
            "subscriber_blackwhite_listing",
            "session_meta_api",
            "subscription_meta_api",
        ]),
    );
    roles.insert(
        "dealer".into(),
        features(&[
            "pattern_based_registration",
            "shared_registration",
            "fox_least_loaded_invocation",
            "progressive_call_results",
            "call_canceling",
            "call_timeout",
            "caller_identification",
            "session_meta_api",
            "registration_meta_api",
            "testament_meta_api",
        ]),
    );
    let mut d = Dict::new();
    d.insert("roles".into(), Value::Dict(roles));
    d.insert("realm".into(), Value::from(realm));
    d.insert("authid".into(), Value::from(identity.authid.as_str()));
    d.insert("authrole".into(), Value::from(identity.authrole.as_str()));
    d.insert(
        "authmethod".into(),
        Value::from(identity.authmethod.as_str()),
    );
    d.insert(
        "authprovider".into(),
        Value::from(identity.authprovider.as_str()),
    );
    d.insert(
        "agent".into(),
        Value::from(concat!("foxrouter-", env!("CARGO_PKG_VERSION"))),
    );
    d
}

impl WampSession {
    /// A session waiting for HELLO.
    pub fn new(router: Arc<Router>, transport: &'static str, peer: String) -> Self {
        Self {
            state: State::ExpectHello,
            router,
            transport,
            peer,
            outbound: None,
            calls_in_flight: HashSet::new(),
            login: None,
            tls: None,
            authorization: None,
            parked: None,
        }
    }

    /// The TLS connection's context (before HELLO).
    pub fn set_tls(&mut self, tls: Option<Arc<crate::tls::TlsContext>>) {
        self.tls = tls;
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

    /// The login the external authenticators must decide, once, after AUTHENTICATE; the
    /// connection task awaits [`crate::auth::external::verify`] on it and hands the
    /// verdict to [`WampSession::handle_verdict`], reading nothing meanwhile.
    pub fn take_login(&mut self) -> Option<Login> {
        self.login.take()
    }

    /// The external authenticators' verdict: WELCOME, or ABORT `wamp.error.not_authorized`.
    pub fn handle_verdict(
        &mut self,
        verdict: Result<Identity, Denied>,
        out: &mut Vec<Message>,
    ) -> Flow {
        let state = std::mem::replace(&mut self.state, State::Closed);
        let State::ExpectVerdict {
            realm,
            session,
            roles,
        } = state
        else {
            // No verdict was asked for: nothing changes.
            self.state = state;
            return Flow::Continue;
        };
        let (next, flow) = self.verdict(realm, session, roles, verdict, out);
        self.state = next;
        flow
    }

    /// The queue of messages other sessions and the realm send this one; available once,
    /// right after the session is established.
    pub fn take_outbound(&mut self) -> Option<OutboundQueue> {
        self.outbound.take()
    }

    /// The established session's handle (for the slow-consumer signal).
    pub fn handle(&self) -> Option<&SessionHandle> {
        match &self.state {
            State::Established { handle, .. } => Some(handle),
            _ => None,
        }
    }

    /// Whether HELLO (and authentication) are still to come.
    pub fn is_handshaking(&self) -> bool {
        matches!(
            self.state,
            State::ExpectHello | State::ExpectAuthenticate { .. } | State::ExpectVerdict { .. }
        )
    }

    /// Whether AUTHENTICATE waits for an external authenticator's verdict.
    pub fn awaits_verdict(&self) -> bool {
        matches!(self.state, State::ExpectVerdict { .. })
    }

    /// Whether we said GOODBYE and wait for the peer's.
    pub fn is_closing(&self) -> bool {
        matches!(self.state, State::Closing)
    }

    /// Handles one message from the peer.
    pub fn handle_message(&mut self, message: Message, out: &mut Vec<Message>) -> Flow {
        let state = std::mem::replace(&mut self.state, State::Closed);
        let (next, flow) = match state {
            State::ExpectHello => self.expect_hello(message, out),
            State::ExpectAuthenticate {
                realm,
                session,
                roles,
                pending,
            } => self.expect_authenticate(realm, session, roles, pending, message, out),
            State::ExpectVerdict { .. } => {
                out.push(abort(ErrorUri::ProtocolViolation, "message before WELCOME"));
                (State::Closed, Flow::Close)
            }
            State::Established { realm, handle } => {
                let Some(message) = self.park_for_authorization(&handle, message) else {
                    self.state = State::Established { realm, handle };
                    return Flow::Continue;
                };
                let flow = self.established(&realm, &handle, message, out);
                if flow == Flow::Close {
                    realm.leave(handle.info.id);
                    (State::Closed, flow)
                } else {
                    (State::Established { realm, handle }, flow)
                }
            }
            // We said GOODBYE: only the peer's GOODBYE counts now; what it sent before
            // reading ours is dropped (the connection still closes at the wait's end).
            State::Closing
                if matches!(message, Message::Goodbye { .. } | Message::Abort { .. }) =>
            {
                (State::Closed, Flow::Close)
            }
            State::Closing => (State::Closing, Flow::Continue),
            State::Closed => (State::Closed, Flow::Close),
        };
        self.state = next;
        flow
    }

    /// A protocol violation detected outside the state machine (undecodable input): ABORT.
    pub fn protocol_violation(&mut self, reason: &str, out: &mut Vec<Message>) {
        out.push(abort(ErrorUri::ProtocolViolation, reason));
        self.finish();
    }

    /// The router closes the session (shutdown, kill, slow consumer): GOODBYE, and the
    /// session leaves its realm at once; the connection then waits a while for the peer's
    /// GOODBYE.
    pub fn goodbye(&mut self, reason: &str, message: &str, out: &mut Vec<Message>) {
        let state = std::mem::replace(&mut self.state, State::Closed);
        self.state = match state {
            State::Established { realm, handle } => {
                let mut details = Dict::new();
                if !message.is_empty() {
                    details.insert("message".into(), Value::from(message));
                }
                out.push(Message::Goodbye {
                    details,
                    reason: reason.to_owned(),
                });
                // The session ends now: it may send nothing but the GOODBYE reply, which is
                // only awaited for a clean close. A peer that saw our GOODBYE (or its
                // transport close) must not still find the session in the realm's lists,
                // its registrations or its subscriptions.
                realm.leave(handle.info.id);
                State::Closing
            }
            other => other,
        };
    }

    /// The connection is gone: an established session leaves its realm abnormally (a
    /// closing one already left, when GOODBYE was sent or exchanged). Idempotent.
    pub fn finish(&mut self) {
        if let State::Established { realm, handle } =
            std::mem::replace(&mut self.state, State::Closed)
        {
            realm.leave_abnormally(handle.info.id);
        }
    }

    fn expect_hello(&mut self, message: Message, out: &mut Vec<Message>) -> (State, Flow) {
        let Message::Hello { realm, details } = message else {
            out.push(abort(ErrorUri::ProtocolViolation, "expected HELLO"));
            return (State::Closed, Flow::Close);
        };
        if !valid_uri(&realm, false) {
            out.push(abort(ErrorUri::InvalidUri, "invalid realm URI"));
            return (State::Closed, Flow::Close);
        }
        let Some(realm_ref) = self.router.realm(&realm) else {
            out.push(abort(ErrorUri::NoSuchRealm, "no such realm"));
            return (State::Closed, Flow::Close);
        };
        let roles = details
            .get("roles")
            .and_then(Value::as_dict)
            .map(SessionInfo::roles_read)
            .unwrap_or_default();
        let session = crate::realm::new_session_id();
        let nonce = format!("{:032x}", rand::random::<u128>());
        let outcome = self.router.authenticator.hello(
            &realm,
            &details,
            session,
            &nonce,
            &iso8601(unix_ms()),
            self.tls.as_deref(),
        );
        match outcome {
            HelloOutcome::Welcome(identity) => {
                self.establish(realm_ref, session, roles, identity, out)
            }
            HelloOutcome::Challenge {
                method,
                extra,
                pending,
            } => {
                out.push(Message::Challenge {
                    authmethod: method,
                    extra,
                });
                (
                    State::ExpectAuthenticate {
                        realm: realm_ref,
                        session,
                        roles,
                        pending,
                    },
                    Flow::Continue,
                )
            }
            HelloOutcome::Abort { reason, message } => {
                tracing::info!(peer = %self.peer, %realm, %reason, "HELLO refused");
                self.router.metrics().auth_failed(Protocol::Wamp);
                out.push(abort(reason, &message));
                (State::Closed, Flow::Close)
            }
        }
    }

    fn expect_authenticate(
        &mut self,
        realm: Arc<Realm>,
        session: u64,
        roles: Dict,
        pending: Pending,
        message: Message,
        out: &mut Vec<Message>,
    ) -> (State, Flow) {
        let Message::Authenticate { signature, .. } = message else {
            out.push(abort(ErrorUri::ProtocolViolation, "expected AUTHENTICATE"));
            return (State::Closed, Flow::Close);
        };
        let verification =
            self.router
                .authenticator
                .verify(pending, &signature, self.transport, &self.peer);
        match verification {
            Verification::Done(verdict) => self.verdict(realm, session, roles, verdict, out),
            Verification::External(login) => {
                self.login = Some(login);
                let state = State::ExpectVerdict {
                    realm,
                    session,
                    roles,
                };
                (state, Flow::Continue)
            }
        }
    }

    fn verdict(
        &mut self,
        realm: Arc<Realm>,
        session: u64,
        roles: Dict,
        verdict: Result<Identity, Denied>,
        out: &mut Vec<Message>,
    ) -> (State, Flow) {
        match verdict {
            Ok(identity) => self.establish(realm, session, roles, identity, out),
            Err(denied) => {
                tracing::info!(peer = %self.peer, realm = %realm.name, reason = %denied.reason, "authentication failed");
                self.router.metrics().auth_failed(Protocol::Wamp);
                out.push(abort(ErrorUri::NotAuthorized, "authentication failed"));
                (State::Closed, Flow::Close)
            }
        }
    }

    fn establish(
        &mut self,
        realm: Arc<Realm>,
        session: u64,
        roles: Dict,
        identity: Identity,
        out: &mut Vec<Message>,
    ) -> (State, Flow) {
        out.push(Message::Welcome {
            session,
            details: welcome_details(&identity, &realm.name),
        });
        let info = SessionInfo {
            id: session,
            realm: realm.name.clone(),
            identity,
            transport: self.transport,
            peer: self.peer.clone(),
            roles,
        };
        self.authorization = self
            .router
            .shared()
            .authorizer
            .hooks_for(&info.realm, &info.identity.authrole)
            .map(|hooks| Box::new(hooks.session()));
        let (handle, rx) = SessionHandle::new(info, self.router.config.limits.session_queue_max);
        self.outbound = Some(rx);
        realm.join(handle.clone());
        (State::Established { realm, handle }, Flow::Continue)
    }

    /// The authorization hooks' answer on this action, when they gave one, else the
    /// role's rules.
    fn permits(
        &self,
        handle: &SessionHandle,
        action: Action,
        policy: MatchPolicy,
        uri: &str,
    ) -> bool {
        if let Some(answer) = self.hook_answer(action, policy, uri) {
            return answer;
        }
        self.router
            .shared()
            .authorizer
            .permits(&handle.info.identity.authrole, action, uri)
    }

    fn established(
        &mut self,
        realm: &Arc<Realm>,
        handle: &SessionHandle,
        message: Message,
        out: &mut Vec<Message>,
    ) -> Flow {
        match message {
            Message::Publish {
                request,
                options,
                topic,
                args,
                kwargs,
            } => {
                self.publish(
                    realm,
                    handle,
                    request,
                    &options,
                    topic,
                    Payload::Wamp { args, kwargs },
                    out,
                );
            }
            Message::Subscribe {
                request,
                options,
                topic,
            } => self.subscribe(realm, handle, request, &options, &topic, out),
            Message::Unsubscribe {
                request,
                subscription,
            } => out.push(removal(
                code::UNSUBSCRIBE,
                request,
                realm.unsubscribe(handle.info.id, subscription),
            )),
            Message::Register {
                request,
                options,
                procedure,
            } => self.register(realm, handle, request, &options, &procedure, out),
            Message::Unregister {
                request,
                registration,
            } => out.push(removal(
                code::UNREGISTER,
                request,
                realm.unregister(handle.info.id, registration),
            )),
            Message::Call {
                request,
                options,
                procedure,
                args,
                kwargs,
            } => {
                if !valid_uri(&procedure, false) {
                    out.push(error(
                        code::CALL,
                        request,
                        ErrorUri::InvalidUri,
                        "invalid procedure URI",
                    ));
                } else if !self.permits(handle, Action::Call, MatchPolicy::Exact, &procedure) {
                    out.push(error(
                        code::CALL,
                        request,
                        ErrorUri::NotAuthorized,
                        "not authorized to call",
                    ));
                } else if self.calls_in_flight.len()
                    >= self.router.config.limits.calls_in_flight_per_session_max
                {
                    let max = self.router.config.limits.calls_in_flight_per_session_max;
                    out.push(error(
                        code::CALL,
                        request,
                        ErrorUri::LimitExceeded,
                        &format!("a session may have {max} calls in flight (limits.calls_in_flight_per_session_max)"),
                    ));
                } else if let Some(reply) = realm.call(
                    handle,
                    CallRequest {
                        request,
                        options,
                        procedure,
                        args,
                        kwargs,
                    },
                ) {
                    out.push(reply);
                } else {
                    self.calls_in_flight.insert(request);
                }
            }
            Message::Cancel { request, options } => {
                out.extend(realm.cancel(handle.info.id, request, &options))
            }
            Message::Yield {
                request,
                options,
                args,
                kwargs,
            } => realm.yield_result(handle.info.id, request, &options, args, kwargs),
            Message::Error {
                request_type: code::INVOCATION,
                request,
                error,
                args,
                kwargs,
                ..
            } => realm.invocation_error(handle.info.id, request, error, args, kwargs),
            Message::Goodbye { .. } => {
                out.push(Message::Goodbye {
                    details: Dict::new(),
                    reason: CloseUri::GoodbyeAndOut.into(),
                });
                return Flow::Close;
            }
            other => {
                tracing::info!(
                    session = handle.info.id,
                    code = other.code(),
                    "protocol violation: unexpected message"
                );
                out.push(abort(
                    ErrorUri::ProtocolViolation,
                    "message not allowed in an established session",
                ));
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        realm: &Realm,
        handle: &SessionHandle,
        request: Id,
        options: &Dict,
        topic: String,
        payload: Payload,
        out: &mut Vec<Message>,
    ) {
        let acknowledge = option_bool(options, "acknowledge") == Some(true);
        let refuse = |out: &mut Vec<Message>, uri: ErrorUri, message: &str| {
            if acknowledge {
                out.push(error(code::PUBLISH, request, uri, message));
            }
        };
        if !valid_uri(&topic, false) {
            return refuse(out, ErrorUri::InvalidUri, "invalid topic URI");
        }
        if topic.starts_with("wamp.")
            || !self.permits(handle, Action::Publish, MatchPolicy::Exact, &topic)
        {
            return refuse(out, ErrorUri::NotAuthorized, "not authorized to publish");
        }
        let publish_options = PublishOptions {
            exclude_me: option_bool(options, "exclude_me").unwrap_or(true),
            disclose_me: option_bool(options, "disclose_me").unwrap_or(false),
            exclude: id_list(options, "exclude").unwrap_or_default(),
            exclude_authid: str_list(options, "exclude_authid").unwrap_or_default(),
            exclude_authrole: str_list(options, "exclude_authrole").unwrap_or_default(),
            eligible: id_list(options, "eligible"),
            eligible_authid: str_list(options, "eligible_authid"),
            eligible_authrole: str_list(options, "eligible_authrole"),
            qos: 0,
            // fox-wamp clients may send a number (its engines test truthiness).
            retain: match options.get("retain") {
                Some(Value::Bool(flag)) => *flag,
                Some(other) => other.as_i64().is_some_and(|n| n != 0),
                None => false,
            },
        };
        let engine = &realm.shared().engine;
        let kv = kv_options(options).filter(|_| publish_options.retain);
        let refused = match (publish_options.retain, &kv) {
            (true, Some(_)) => engine.refuses(Feature::SyncService),
            (true, None) => engine.refuses(Feature::Retain),
            (false, _) => None,
        };
        if let Some(why) = refused {
            tracing::debug!(topic, why, "publish refused by the engine");
            return refuse(out, ErrorUri::FeatureNotSupported, why);
        }
        let topic = Topic::from_wamp(&topic);
        if let Some(write) = kv {
            let ack = acknowledge.then_some(request);
            return match realm.publish_kv(handle, ack, &topic, payload, &publish_options, write) {
                KvOutcome::Applied(ack) if acknowledge => {
                    acknowledge_later(handle.clone(), request, ack)
                }
                KvOutcome::Refused => refuse(
                    out,
                    ErrorUri::InvalidArgument,
                    "not accepted: the when condition does not hold",
                ),
                KvOutcome::Applied(..) | KvOutcome::Parked => {}
            };
        }
        let properties = Default::default();
        let ack = realm.publish_durable(
            Some(&handle.info),
            &topic,
            payload,
            &publish_options,
            properties,
        );
        if acknowledge {
            // With a store, the ack waits for the fsync of the group the write went into.
            acknowledge_later(handle.clone(), request, ack);
        }
    }

    fn subscribe(
        &self,
        realm: &Realm,
        handle: &SessionHandle,
        request: Id,
        options: &Dict,
        topic: &str,
        out: &mut Vec<Message>,
    ) {
        let Some(policy) = MatchPolicy::parse(options.get("match").and_then(Value::as_str)) else {
            return out.push(error(
                code::SUBSCRIBE,
                request,
                ErrorUri::InvalidArgument,
                "unknown match policy",
            ));
        };
        let empty_ok = policy != MatchPolicy::Exact;
        let prefix_of_everything = policy == MatchPolicy::Prefix && topic.is_empty();
        if !(valid_uri(topic, empty_ok) || prefix_of_everything) {
            return out.push(error(
                code::SUBSCRIBE,
                request,
                ErrorUri::InvalidUri,
                "invalid topic URI",
            ));
        }
        if !self.permits(handle, Action::Subscribe, policy, topic) {
            return out.push(error(
                code::SUBSCRIBE,
                request,
                ErrorUri::NotAuthorized,
                "not authorized to subscribe",
            ));
        }
        let pattern = Pattern::from_wamp(topic, policy);
        let max = self.router.config.limits.subscriptions_per_session_max;
        if realm.broker().over_limit(handle.info.id, &pattern, max) {
            return out.push(error(
                code::SUBSCRIBE,
                request,
                ErrorUri::LimitExceeded,
                &format!(
                    "a session may hold {max} subscriptions (limits.subscriptions_per_session_max)"
                ),
            ));
        }
        // Retained values first: the spec's `get_retained`, and fox-wamp's `retainedState`
        // (then every live event) and `retained` (then only live retained publishes, i.e.
        // state changes).
        let retained_only = option_bool(options, "retained") == Some(true);
        let replay_retained = retained_only
            || option_bool(options, "get_retained") == Some(true)
            || option_bool(options, "retainedState") == Some(true);
        let pattern_based = policy != MatchPolicy::Exact;
        let subscribe_options = SubscribeOptions {
            filter: options.get("filter").cloned(),
            retained_only,
            ..SubscribeOptions::default()
        };
        // `after`: a publication ID, as an integer or (fox-wamp's event IDs are strings) a
        // decimal string.
        let after = match options.get("after") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Str(s)) => s.parse::<u64>().map(Some).map_err(|_| ()),
            Some(v) => v.as_u64().map(Some).ok_or(()),
        };
        let Ok(after) = after else {
            return out.push(error(
                code::SUBSCRIBE,
                request,
                ErrorUri::InvalidArgument,
                "after must be a publication ID",
            ));
        };
        let (id, replay) =
            realm.subscribe_replay(handle, pattern, subscribe_options, after, replay_retained);
        out.push(Message::Subscribed {
            request,
            subscription: id,
        });
        // History after `after` up to the subscription's start, then the retained state as
        // of that same start, then live events.
        for (publication, retained) in replay
            .history
            .into_iter()
            .map(|p| (p, false))
            .chain(replay.retained.into_iter().map(|p| (p, true)))
        {
            let delivery = Delivery {
                subscription: id,
                pattern_based,
                publication,
                qos: 0,
                retained,
            };
            out.push(event_message(&delivery));
        }
        if option_bool(options, "snapshot") == Some(true) {
            // A snapshot ends after the replay: the router revokes the subscription.
            realm.unsubscribe(handle.info.id, id);
            let mut details = Dict::new();
            details.insert("subscription".into(), Value::from(id));
            details.insert(
                "reason".into(),
                Value::from("wamp.subscription.snapshot_done"),
            );
            out.push(Message::Unsubscribed {
                request: 0,
                details: Some(details),
            });
        }
    }

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
}

/// The EVENT for a delivery.
pub fn event_message(delivery: &Delivery) -> Message {
    let publication = &delivery.publication;
    let mut details = Dict::new();
    if delivery.pattern_based {
        details.insert("topic".into(), Value::from(publication.topic.to_wamp()));
    }
    if let Some((session, authid, authrole)) = &publication.disclosed {
        details.insert("publisher".into(), Value::from(*session));
        details.insert("publisher_authid".into(), Value::from(authid.as_str()));
        details.insert("publisher_authrole".into(), Value::from(authrole.as_str()));
    }
    if delivery.retained {
        details.insert("retained".into(), Value::Bool(true));
    }
    let (args, kwargs) = publication.payload.to_wamp();
    Message::Event {
        subscription: delivery.subscription,
        publication: publication.id,
        details,
        args,
        kwargs,
    }
}
