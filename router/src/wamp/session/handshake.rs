//! The handshake: HELLO, then (when the authenticator challenges) AUTHENTICATE, then (when
//! an external authenticator decides) its verdict, then WELCOME and the join to the realm;
//! or ABORT.

use std::sync::Arc;

use fox_wamp_proto::{Dict, ErrorUri, Message, Value};

use super::{abort, valid_uri, Flow, State, WampSession};
use crate::auth::{Denied, HelloOutcome, Identity, Login, Pending, Verification};
use crate::metrics::Protocol;
use crate::realm::{Realm, SessionHandle, SessionInfo};
use crate::util::iso8601;

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

    /// Whether AUTHENTICATE waits for an external authenticator's verdict.
    pub fn awaits_verdict(&self) -> bool {
        matches!(self.state, State::ExpectVerdict { .. })
    }

    pub(super) fn expect_hello(
        &mut self,
        message: Message,
        now_ms: u64,
        out: &mut Vec<Message>,
    ) -> (State, Flow) {
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
        let session = self.entropy.session_id;
        let nonce = format!("{:032x}", self.entropy.nonce);
        let outcome = self.router.authenticator.hello(
            &realm,
            &details,
            session,
            &nonce,
            &iso8601(now_ms),
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

    pub(super) fn expect_authenticate(
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
}

#[cfg(test)]
mod tests {
    use fox_wamp_proto::{Dict, ErrorUri, Message, Value};

    use super::super::testing::{dict, hello, router, router_with, uri_of, Peer, START_MS};
    use super::super::Flow;
    use crate::util::iso8601;

    /// Anonymous access off; one user, `joe`, with the ticket (and WAMP-CRA secret) `pw`.
    const USERS: &str = r#"
[auth]
anonymous = false
[[role]]
name = "r"
permissions = [{ uri = "com.", match = "prefix", publish = true, subscribe = true }]
[[user]]
authid = "joe"
secret = "pw"
role = "r"
"#;

    fn methods(method: &str, authid: &str) -> Dict {
        dict([
            ("authmethods", Value::List(vec![Value::from(method)])),
            ("authid", Value::from(authid)),
        ])
    }

    fn authenticate(signature: &str) -> Message {
        Message::Authenticate {
            signature: signature.to_owned(),
            extra: Dict::new(),
        }
    }

    #[test]
    fn hello_is_welcomed_with_the_session_id_the_caller_drew() {
        let router = router();
        let mut peer = Peer::open(&router, 42, START_MS);
        assert!(peer.session.is_handshaking());
        let (replies, flow) = peer.send(hello("realm1", Dict::new()), START_MS + 3);
        assert_eq!(flow, Flow::Continue);
        let [Message::Welcome { session, details }] = replies.as_slice() else {
            panic!("WELCOME: {replies:?}");
        };
        assert_eq!(*session, 42);
        assert_eq!(details["authrole"], Value::from("anonymous"));
        assert_eq!(details["realm"], Value::from("realm1"));
        assert!(!peer.session.is_handshaking());
        assert_eq!(peer.session.poll_timeout(), None, "no deadline once joined");
        assert!(peer.outbound.is_some(), "the queue is there to take");
        let realm = router.realm("realm1").expect("realm1");
        let ids: Vec<u64> = realm.sessions().iter().map(|h| h.info.id).collect();
        assert_eq!(ids, vec![42], "joined");
    }

    #[test]
    fn hello_to_an_unknown_realm_is_aborted() {
        let mut config = crate::config::Config::default();
        config.router.auto_create_realms = false;
        let router = crate::router::Router::new(config);
        let mut peer = Peer::open(&router, 1, START_MS);
        let (replies, flow) = peer.send(hello("nowhere", Dict::new()), START_MS);
        assert_eq!(flow, Flow::Close);
        assert!(
            matches!(replies.as_slice(), [Message::Abort { .. }]),
            "{replies:?}"
        );
        assert_eq!(uri_of(&replies[0]), ErrorUri::NoSuchRealm.as_str());
        assert_eq!(peer.session.poll_timeout(), None, "closed");
    }

    #[test]
    fn an_invalid_realm_uri_is_aborted() {
        let mut peer = Peer::open(&router(), 1, START_MS);
        let (replies, flow) = peer.send(hello("realm one", Dict::new()), START_MS);
        assert_eq!(flow, Flow::Close);
        assert_eq!(uri_of(&replies[0]), ErrorUri::InvalidUri.as_str());
    }

    #[test]
    fn a_message_before_hello_is_a_protocol_violation() {
        let mut peer = Peer::open(&router(), 1, START_MS);
        let subscribe = Message::Subscribe {
            request: 1,
            options: Dict::new(),
            topic: "com.a".to_owned(),
        };
        let (replies, flow) = peer.send(subscribe, START_MS);
        assert_eq!(flow, Flow::Close);
        assert!(
            matches!(replies.as_slice(), [Message::Abort { .. }]),
            "{replies:?}"
        );
        assert_eq!(uri_of(&replies[0]), ErrorUri::ProtocolViolation.as_str());
    }

    #[test]
    fn anonymous_hello_is_refused_when_anonymous_access_is_off() {
        let mut peer = Peer::open(&router_with(USERS), 1, START_MS);
        let (replies, flow) = peer.send(hello("realm1", Dict::new()), START_MS);
        assert_eq!(flow, Flow::Close);
        assert_eq!(uri_of(&replies[0]), ErrorUri::NoAuthMethod.as_str());
    }

    #[test]
    fn the_right_ticket_is_welcomed() {
        let mut peer = Peer::open(&router_with(USERS), 7, START_MS);
        let (replies, flow) = peer.send(hello("realm1", methods("ticket", "joe")), START_MS);
        assert_eq!(flow, Flow::Continue);
        assert!(
            matches!(replies.as_slice(), [Message::Challenge { authmethod, .. }] if authmethod == "ticket"),
            "CHALLENGE: {replies:?}"
        );
        assert!(peer.session.is_handshaking());
        let (replies, flow) = peer.send(authenticate("pw"), START_MS + 1);
        assert_eq!(flow, Flow::Continue);
        let [Message::Welcome {
            session: 7,
            details,
        }] = replies.as_slice()
        else {
            panic!("WELCOME: {replies:?}");
        };
        assert_eq!(details["authid"], Value::from("joe"));
        assert_eq!(details["authrole"], Value::from("r"));
    }

    #[test]
    fn a_wrong_ticket_is_aborted() {
        let mut peer = Peer::open(&router_with(USERS), 7, START_MS);
        let (_, flow) = peer.send(hello("realm1", methods("ticket", "joe")), START_MS);
        assert_eq!(flow, Flow::Continue);
        let (replies, flow) = peer.send(authenticate("not the ticket"), START_MS + 1);
        assert_eq!(flow, Flow::Close);
        assert!(
            matches!(replies.as_slice(), [Message::Abort { .. }]),
            "{replies:?}"
        );
        assert_eq!(uri_of(&replies[0]), ErrorUri::NotAuthorized.as_str());
        assert!(peer.outbound.is_none(), "never joined");
    }

    #[test]
    fn a_message_other_than_authenticate_after_a_challenge_is_a_protocol_violation() {
        let mut peer = Peer::open(&router_with(USERS), 7, START_MS);
        let (_, flow) = peer.send(hello("realm1", methods("ticket", "joe")), START_MS);
        assert_eq!(flow, Flow::Continue);
        let (replies, flow) = peer.send(hello("realm1", Dict::new()), START_MS + 1);
        assert_eq!(flow, Flow::Close);
        assert_eq!(uri_of(&replies[0]), ErrorUri::ProtocolViolation.as_str());
    }

    /// The WAMP-CRA challenge is built from what the caller passed in: the session ID and
    /// nonce it drew, and the time of the HELLO. Nothing in it comes from the machine.
    #[test]
    fn a_wampcra_challenge_carries_the_callers_nonce_and_time() {
        let mut peer = Peer::open(&router_with(USERS), 9, START_MS);
        let now_ms = START_MS + 1_234;
        let (replies, _) = peer.send(hello("realm1", methods("wampcra", "joe")), now_ms);
        let [Message::Challenge { extra, .. }] = replies.as_slice() else {
            panic!("CHALLENGE: {replies:?}");
        };
        let challenge: serde_json::Value =
            serde_json::from_str(extra["challenge"].as_str().expect("a string")).expect("JSON");
        let nonce = format!("{:032x}", (9u128 << 64) | 0xfeed);
        assert_eq!(challenge["nonce"], nonce.as_str());
        assert_eq!(challenge["timestamp"], iso8601(now_ms).as_str());
        assert_eq!(challenge["session"], 9);
    }

    /// One deadline for the whole handshake, from the connection's opening: a CHALLENGE
    /// does not move it, and it fires at that instant, not a millisecond before.
    #[test]
    fn the_handshake_times_out_at_its_deadline_and_not_before() {
        let router = router_with(USERS);
        let timeout_ms = router.config.limits.handshake_timeout_ms;
        let deadline_ms = START_MS + timeout_ms;
        let mut peer = Peer::open(&router, 7, START_MS);
        assert_eq!(peer.session.poll_timeout(), Some(deadline_ms));
        let (_, flow) = peer.send(hello("realm1", methods("ticket", "joe")), START_MS + 500);
        assert_eq!(flow, Flow::Continue);
        assert_eq!(peer.session.poll_timeout(), Some(deadline_ms), "not moved");
        assert_eq!(peer.session.handle_timeout(deadline_ms - 1), Flow::Continue);
        assert!(
            peer.session.is_handshaking(),
            "still waiting for AUTHENTICATE"
        );
        assert_eq!(peer.session.handle_timeout(deadline_ms), Flow::Close);
        assert!(!peer.session.is_handshaking());
        assert_eq!(peer.session.poll_timeout(), None, "closed");
        let (replies, flow) = peer.send(authenticate("pw"), deadline_ms + 1);
        assert_eq!((replies.len(), flow), (0, Flow::Close), "too late");
    }

    #[test]
    fn a_session_waiting_for_hello_times_out_too() {
        let router = router();
        let deadline_ms = START_MS + router.config.limits.handshake_timeout_ms;
        let mut peer = Peer::open(&router, 1, START_MS);
        assert_eq!(peer.session.handle_timeout(START_MS), Flow::Continue);
        assert_eq!(peer.session.handle_timeout(deadline_ms + 5), Flow::Close);
    }
}
