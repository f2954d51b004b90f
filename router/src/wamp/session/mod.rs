//! The WAMP session state machine: HELLO, authentication, then the established session's
//! requests, then GOODBYE.
//!
//! States are named for what they expect. Each call to [`WampSession::handle_message`]
//! takes one decoded message and pushes the replies for this peer into `out`; it returns
//! whether the connection should close after they are written. Messages for other sessions
//! travel through the realm. No I/O, no clock and no random draws here: the connection task
//! passes the time (Unix milliseconds) and the random values in, and runs the timer for the
//! session's one deadline, the handshake's or the end of the wait for the peer's GOODBYE.
//!
//! # Calling order
//!
//! 1. [`WampSession::new`] when the connection opens (the handshake deadline starts).
//! 2. [`WampSession::handle_message`] for each decoded message; when it asks for it, the
//!    external authenticators' verdict ([`WampSession::take_login`],
//!    [`WampSession::handle_verdict`]) or the authorization hooks' answers
//!    ([`WampSession::take_authorization`], [`WampSession::handle_authorization`]), reading
//!    nothing meanwhile; [`WampSession::goodbye`] when the router ends the session.
//! 3. [`WampSession::handle_timeout`] once [`WampSession::poll_timeout`] passes.
//! 4. After each, write `out`; close when the answer is [`Flow::Close`].
//! 5. [`WampSession::finish`] once the connection is gone.
//!
//! # Layout
//!
//! ```text
//! mod.rs            states, dispatch, the session's deadline, shared helpers
//! handshake.rs      HELLO, AUTHENTICATE, an external authenticator's verdict, WELCOME
//! closing.rs        the router's GOODBYE and the wait for the peer's; the end
//! pubsub.rs         PUBLISH, SUBSCRIBE (with replay), UNSUBSCRIBE, EVENT
//! rpc.rs            REGISTER, UNREGISTER, CALL, CANCEL, YIELD, a callee's ERROR; the
//!                   calls in flight
//! authorization.rs  messages parked for the authorization hooks' answers
//! testing.rs        the unit tests' harness: sessions over an in-process router,
//!                   virtual time
//! ```

// A sans-IO core: time, randomness and tasks come from its caller (router/clippy.toml).
#![deny(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::sync::Arc;

use fox_wamp_proto::{code, CloseUri, Dict, ErrorUri, Id, Message, Value};

use crate::auth::hooks::{Query, SessionAuthorization};
use crate::auth::{Action, Login, Pending};
use crate::realm::{OutboundQueue, Realm, SessionHandle};
use crate::router::Router;
use crate::topic::MatchPolicy;

mod authorization;
mod closing;
mod handshake;
mod pubsub;
mod rpc;
#[cfg(test)]
mod testing;

pub use closing::GOODBYE_WAIT_MS;
pub use pubsub::event_message;

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
    /// We sent GOODBYE (the session already left its realm) and wait for the peer's, until
    /// `deadline_ms`.
    Closing {
        deadline_ms: u64,
    },
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
    /// When the handshake (HELLO to WELCOME) must be done, Unix milliseconds.
    handshake_deadline_ms: u64,
    /// The random values the handshake uses.
    entropy: Entropy,
    /// The router shuts down and this session waits for the answers to its acknowledged
    /// publishes before its GOODBYE: a new acknowledged publish is refused at once, so
    /// that the wait ends and the publisher hears of it.
    draining: bool,
}

/// The random values a session uses, drawn by its caller: the session itself draws none,
/// so a test can fix them.
#[derive(Clone, Copy, Debug)]
pub struct Entropy {
    /// The session's ID if it is established (random in [1, 2^53], as WAMP requires; see
    /// [`crate::realm::new_session_id`]).
    pub session_id: u64,
    /// The nonce of a WAMP-CRA CHALLENGE.
    pub nonce: u128,
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

impl WampSession {
    /// A session waiting for HELLO, opened at `now_ms`: the handshake must be done within
    /// `limits.handshake_timeout_ms`.
    pub fn new(
        router: Arc<Router>,
        transport: &'static str,
        peer: String,
        now_ms: u64,
        entropy: Entropy,
    ) -> Self {
        let handshake_deadline_ms =
            now_ms.saturating_add(router.config.limits.handshake_timeout_ms);
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
            handshake_deadline_ms,
            entropy,
            draining: false,
        }
    }

    /// The router shuts down: acknowledged publishes from now on are answered with
    /// `wamp.error.unavailable` instead of being published (the connection's drain).
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// The TLS connection's context (before HELLO).
    pub fn set_tls(&mut self, tls: Option<Arc<crate::tls::TlsContext>>) {
        self.tls = tls;
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

    /// Whether we said GOODBYE and wait for the peer's.
    pub fn is_closing(&self) -> bool {
        matches!(self.state, State::Closing { .. })
    }

    /// The session's next deadline, Unix milliseconds: the handshake's while handshaking,
    /// the end of the wait for the peer's GOODBYE while closing; then
    /// [`WampSession::handle_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            State::ExpectHello | State::ExpectAuthenticate { .. } | State::ExpectVerdict { .. } => {
                Some(self.handshake_deadline_ms)
            }
            State::Closing { deadline_ms } => Some(deadline_ms),
            State::Established { .. } | State::Closed => None,
        }
    }

    /// The time is `now_ms`: past [`WampSession::poll_timeout`], the handshake or the wait
    /// for the peer's GOODBYE is over and the connection closes, without a word (the peer
    /// either stopped talking or already has our GOODBYE).
    pub fn handle_timeout(&mut self, now_ms: u64) -> Flow {
        match self.poll_timeout() {
            Some(deadline_ms) if now_ms >= deadline_ms => {}
            _ => return Flow::Continue,
        }
        if self.is_handshaking() {
            tracing::info!(peer = %self.peer, "handshake timed out");
        }
        // Neither state is in the realm: nothing to leave.
        debug_assert!(!matches!(self.state, State::Established { .. }));
        self.state = State::Closed;
        Flow::Close
    }

    /// Handles one message from the peer, received at `now_ms`.
    pub fn handle_message(
        &mut self,
        message: Message,
        now_ms: u64,
        out: &mut Vec<Message>,
    ) -> Flow {
        let state = std::mem::replace(&mut self.state, State::Closed);
        let (next, flow) = match state {
            State::ExpectHello => self.expect_hello(message, now_ms, out),
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
            State::Closing { .. }
                if matches!(message, Message::Goodbye { .. } | Message::Abort { .. }) =>
            {
                (State::Closed, Flow::Close)
            }
            closing @ State::Closing { .. } => (closing, Flow::Continue),
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

    /// A request of the established session: each family takes its own messages
    /// (`pubsub.rs`, `rpc.rs`) and hands back the others; GOODBYE ends the session and
    /// anything else is a protocol violation.
    fn established(
        &mut self,
        realm: &Arc<Realm>,
        handle: &SessionHandle,
        message: Message,
        out: &mut Vec<Message>,
    ) -> Flow {
        let Some(message) = self.handle_pubsub(realm, handle, message, out) else {
            return Flow::Continue;
        };
        let Some(message) = self.handle_rpc(realm, handle, message, out) else {
            return Flow::Continue;
        };
        if let Message::Goodbye { .. } = message {
            out.push(Message::Goodbye {
                details: Dict::new(),
                reason: CloseUri::GoodbyeAndOut.into(),
            });
            return Flow::Close;
        }
        tracing::info!(
            session = handle.info.id,
            code = message.code(),
            "protocol violation: unexpected message"
        );
        out.push(abort(
            ErrorUri::ProtocolViolation,
            "message not allowed in an established session",
        ));
        Flow::Close
    }
}

#[cfg(test)]
mod tests {
    /// The session's code (its tests apart) reads no clock and draws no random number:
    /// time and random values come from the caller. A guard until the crate's clippy
    /// `disallowed_methods` covers these files.
    #[test]
    fn the_session_reads_no_clock_and_draws_no_random_number() {
        let files = [
            ("mod.rs", include_str!("mod.rs")),
            ("handshake.rs", include_str!("handshake.rs")),
            ("closing.rs", include_str!("closing.rs")),
            ("pubsub.rs", include_str!("pubsub.rs")),
            ("rpc.rs", include_str!("rpc.rs")),
            ("authorization.rs", include_str!("authorization.rs")),
        ];
        // Spelled in pieces, so that this test does not find itself.
        let forbidden = [
            ["Instant", "::now"].concat(),
            ["SystemTime", "::now"].concat(),
            ["unix", "_ms()"].concat(),
            ["rand", "::"].concat(),
            ["new_session", "_id()"].concat(),
        ];
        for (name, text) in files {
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
            for word in &forbidden {
                assert!(!code.contains(word.as_str()), "{name} uses {word}");
            }
        }
    }
}
