//! The dynamic authenticator, as Crossbar.io's: the router calls a WAMP procedure that a
//! session registered on `[auth.dynamic] realm` with `(realm, authid, details)`; its
//! RESULT (a role, or `{role, authid?, extra?}`) accepts the login, its ERROR refuses it.
//!
//! The call comes from an internal caller that is not a member of the realm: its RESULT or
//! ERROR arrives on the caller's own queue. The dealer enforces `timeout_ms` (the callee
//! gets INTERRUPT if it supports call canceling); at most `calls_in_flight_max` calls are
//! in flight, and a login waits for a free slot within the same timeout.

use std::time::Duration;

use fox_wamp_proto::ErrorUri;
use fox_wamp_proto::{Dict, Message, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::external::{Decision, Denied, Login};
use super::settings::{covers, DynamicSettings};
use super::Identity;
use crate::realm::dealer::CallRequest;
use crate::realm::{Outbound, SessionHandle, SessionInfo};
use crate::router::Router;

/// The call's request ID in its internal caller (one call per caller).
const REQUEST: u64 = 1;

/// The procedure and its call slots.
#[derive(Debug)]
pub struct DynamicAuthenticator {
    settings: DynamicSettings,
    procedure: ProcedureCall,
}

impl DynamicAuthenticator {
    /// The authenticator of these settings.
    pub fn new(settings: DynamicSettings) -> Self {
        Self {
            procedure: ProcedureCall::new(
                &settings.realm,
                &settings.procedure,
                settings.timeout_ms,
                settings.calls_in_flight_max,
            ),
            settings,
        }
    }

    /// Whether it decides logins on this realm.
    pub fn covers(&self, realm: &str) -> bool {
        covers(&self.settings.realms, realm)
    }

    /// Calls the procedure about a login.
    pub async fn ask(&self, router: &Router, login: &Login) -> Decision {
        match self.procedure.call(router, arguments(login)).await {
            Ok(reply) => decision(&self.settings.procedure, reply),
            Err(why) => Decision::Deny(Denied::failed(why)),
        }
    }
}

/// Calls of one procedure on one realm by the router itself (the dynamic authenticator
/// and authorizer): at most a number in flight, each within a timeout (the wait for a
/// free slot included).
#[derive(Debug)]
pub(crate) struct ProcedureCall {
    realm: String,
    procedure: String,
    timeout_ms: u64,
    slots: Semaphore,
}

impl ProcedureCall {
    pub(crate) fn new(realm: &str, procedure: &str, timeout_ms: u64, in_flight_max: usize) -> Self {
        Self {
            realm: realm.to_owned(),
            procedure: procedure.to_owned(),
            timeout_ms,
            slots: Semaphore::new(in_flight_max),
        }
    }

    /// The procedure's RESULT or ERROR (the dealer's own ERRORs included: no such
    /// procedure, timeout); `Err` with the reason when there was none (too many calls in
    /// flight, no such realm, no answer).
    pub(crate) async fn call(&self, router: &Router, args: Vec<Value>) -> Result<Message, String> {
        let procedure = &self.procedure;
        let timeout = Duration::from_millis(self.timeout_ms);
        let deadline = Instant::now() + timeout;
        let Ok(Ok(_slot)) = tokio::time::timeout_at(deadline, self.slots.acquire()).await else {
            return Err(format!("{procedure}: too many calls in flight"));
        };
        let Some(realm) = router.realm(&self.realm) else {
            return Err(format!("{procedure}: no realm '{}'", self.realm));
        };
        let (caller, mut replies) = internal_caller(&realm.name);
        let remaining_ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .max(1) as u64;
        let mut options = Dict::new();
        options.insert("timeout".into(), Value::from(remaining_ms));
        let call = CallRequest {
            request: REQUEST,
            options,
            procedure: procedure.clone(),
            args: Some(args),
            kwargs: None,
        };
        let reply = match realm.call(&caller, call) {
            Some(reply) => Some(reply),
            // The dealer's timeout answers first; this one is a backstop.
            None => match tokio::time::timeout(timeout, replies.recv()).await {
                Ok(Some(Outbound::Wamp(message))) => Some(*message),
                _ => None,
            },
        };
        reply.ok_or_else(|| {
            let mut cancel = Dict::new();
            cancel.insert("mode".into(), Value::from("killnowait"));
            let _ = realm.cancel(caller.info.id, REQUEST, &cancel);
            format!("{procedure}: no answer")
        })
    }
}

/// The router's own caller for one call: its handle and queue.
fn internal_caller(realm: &str) -> (SessionHandle, crate::realm::OutboundQueue) {
    let identity = Identity {
        authid: "foxrouter".to_owned(),
        authrole: "foxrouter".to_owned(),
        authmethod: "internal".to_owned(),
        authprovider: "foxrouter".to_owned(),
    };
    caller_for(realm, identity, "internal", String::new())
}

/// A caller outside any connection (the router itself, the HTTP bridge) for one call:
/// its handle and queue. It does not join the realm; the RESULT or ERROR arrives on the
/// queue.
pub(crate) fn caller_for(
    realm: &str,
    identity: Identity,
    transport: &'static str,
    peer: String,
) -> (SessionHandle, crate::realm::OutboundQueue) {
    let mut features = Dict::new();
    features.insert("call_canceling".into(), Value::Bool(true));
    let mut caller = Dict::new();
    caller.insert("features".into(), Value::Dict(features));
    let mut roles = Dict::new();
    roles.insert("caller".into(), Value::Dict(caller));
    let info = SessionInfo {
        id: crate::realm::new_session_id(),
        realm: realm.to_owned(),
        identity,
        transport,
        peer,
        roles,
    };
    // RESULT or ERROR, and possibly a late one after a cancel: a small queue suffices.
    SessionHandle::new(info, 4)
}

/// `(realm, authid, details)` as Crossbar.io passes them.
fn arguments(login: &Login) -> Vec<Value> {
    let mut transport = Dict::new();
    transport.insert("type".into(), Value::from(login.transport));
    transport.insert("peer".into(), Value::from(login.peer.as_str()));
    transport.insert("protocol".into(), Value::from(login.protocol));
    let mut details = Dict::new();
    details.insert("authmethod".into(), Value::from(login.authmethod));
    details.insert(
        login.authmethod.into(),
        Value::from(login.credentials.as_str()),
    );
    details.insert("transport".into(), Value::Dict(transport));
    if let Some(client_id) = &login.client_id {
        details.insert("client_id".into(), Value::from(client_id.as_str()));
    }
    let authid = login.authid.as_deref().map_or(Value::Null, Value::from);
    vec![
        Value::from(login.realm.as_str()),
        authid,
        Value::Dict(details),
    ]
}

/// The login's fate from the procedure's RESULT or ERROR.
fn decision(procedure: &str, reply: Message) -> Decision {
    match reply {
        Message::Result { args, kwargs, .. } => {
            let first = args.and_then(|a| a.into_iter().next());
            let answer = match first {
                Some(Value::Dict(d)) => Some(d),
                Some(Value::Str(role)) => {
                    let mut d = Dict::new();
                    d.insert("role".into(), Value::Str(role));
                    Some(d)
                }
                _ => kwargs,
            };
            let field = |d: &Dict, key: &str| {
                d.get(key)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            match answer.as_ref().and_then(|d| field(d, "role")) {
                Some(role) => Decision::Allow {
                    authid: answer.as_ref().and_then(|d| field(d, "authid")),
                    role,
                },
                None => Decision::Deny(Denied::failed(format!(
                    "{procedure}: the result names no role"
                ))),
            }
        }
        Message::Error { error, .. } if ErrorUri::NoSuchProcedure == *error => {
            Decision::Deny(Denied::failed(format!("{procedure}: not registered")))
        }
        Message::Error { error, .. } if ErrorUri::Timeout == *error => {
            Decision::Deny(Denied::failed(format!("{procedure}: timed out")))
        }
        Message::Error { error, .. } => Decision::Deny(Denied::credentials(format!(
            "{procedure}: refused ({error})"
        ))),
        _ => Decision::Deny(Denied::failed(format!("{procedure}: unexpected answer"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(args: Option<Vec<Value>>, kwargs: Option<Dict>) -> Message {
        Message::Result {
            request: REQUEST,
            details: Dict::new(),
            args,
            kwargs,
        }
    }

    #[test]
    fn results_and_errors_map_to_decisions() {
        let allow = |authid: Option<&str>, role: &str| Decision::Allow {
            authid: authid.map(str::to_owned),
            role: role.to_owned(),
        };
        let role_only = result(Some(vec![Value::from("r")]), None);
        assert_eq!(decision("p", role_only), allow(None, "r"));
        let mut d = Dict::new();
        d.insert("role".into(), Value::from("r"));
        d.insert("authid".into(), Value::from("x"));
        d.insert("extra".into(), Value::Dict(Dict::new()));
        let dict = result(Some(vec![Value::Dict(d.clone())]), None);
        assert_eq!(decision("p", dict), allow(Some("x"), "r"));
        assert_eq!(decision("p", result(None, Some(d))), allow(Some("x"), "r"));
        assert!(matches!(
            decision("p", result(None, None)),
            Decision::Deny(_)
        ));
        let error = |uri: &str| Message::Error {
            request_type: fox_wamp_proto::code::CALL,
            request: REQUEST,
            details: Dict::new(),
            error: uri.to_owned(),
            args: None,
            kwargs: None,
        };
        let Decision::Deny(denied) = decision("p", error("com.example.denied")) else {
            panic!("an ERROR refuses");
        };
        assert_eq!(denied.refused, super::super::LoginRefused::BadCredentials);
        assert!(denied.reason.contains("com.example.denied"));
        let Decision::Deny(denied) = decision("p", error("wamp.error.no_such_procedure")) else {
            panic!("no registration refuses");
        };
        assert_eq!(denied.refused, super::super::LoginRefused::NotAuthorized);
    }
}
