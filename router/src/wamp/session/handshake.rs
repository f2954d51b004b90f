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
