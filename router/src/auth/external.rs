//! Logins decided outside the router: the HTTP hook (`[auth.http]`) and the dynamic
//! authenticator (`[auth.dynamic]`), asked in that order (`docs/auth.md`).
//!
//! The synchronous part of authentication ([`super::Authenticator`]) hands the connection
//! task a [`Login`] when neither a configured user nor a JWT decides it; the task awaits
//! [`verify`] (bounded by each authenticator's timeout) without holding up anything else.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::dynamic::DynamicAuthenticator;
use super::http::HttpHook;
use super::{Identity, LoginRefused};
use crate::config::Config;
use crate::router::Router;

/// A login for the external authenticators: everything they are told.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Login {
    /// The realm joined.
    pub realm: String,
    /// The authid the client offered (WAMP HELLO `authid`, MQTT username without
    /// `@realm`), if any.
    pub authid: Option<String>,
    /// `ticket` (WAMP) or `password` (MQTT).
    pub authmethod: &'static str,
    /// The ticket or password.
    pub credentials: String,
    /// `wamp` or `mqtt`.
    pub protocol: &'static str,
    /// The transport (`websocket`, `rawsocket`, `mqtt`, `mqtt-websocket`).
    pub transport: &'static str,
    /// The client's IP address (without the port, so that answers can be cached).
    pub peer: String,
    /// MQTT: the client identifier.
    pub client_id: Option<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credentials never go into a log.
        f.debug_struct("Login")
            .field("realm", &self.realm)
            .field("authid", &self.authid)
            .field("authmethod", &self.authmethod)
            .field("protocol", &self.protocol)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// The client's IP address from a `host:port` peer (the peer as it is otherwise).
pub fn peer_host(peer: &str) -> String {
    peer.parse::<std::net::SocketAddr>()
        .map_or_else(|_| peer.to_owned(), |addr| addr.ip().to_string())
}

/// A refused login: how the protocol answers it, and the reason for the log (never a
/// credential).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// The refusal (WAMP: always ABORT `wamp.error.not_authorized`).
    pub refused: LoginRefused,
    /// Why, for the log.
    pub reason: String,
}

impl Denied {
    /// Refused credentials (a deny answer, a bad token).
    pub fn credentials(reason: impl Into<String>) -> Self {
        Self {
            refused: LoginRefused::BadCredentials,
            reason: reason.into(),
        }
    }

    /// The authenticator failed (timeout, error, too busy).
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            refused: LoginRefused::NotAuthorized,
            reason: reason.into(),
        }
    }
}

/// One authenticator's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Accepted, with this authid (when the authenticator names one) and role.
    Allow {
        /// The authid; `None`: the one the client offered.
        authid: Option<String>,
        /// The role.
        role: String,
    },
    /// Refused.
    Deny(Denied),
    /// Not this authenticator's business: ask the next.
    Pass,
}

/// The configured external authenticators.
#[derive(Debug, Default)]
pub struct Hooks {
    http: Option<HttpHook>,
    dynamic: Option<DynamicAuthenticator>,
}

impl Hooks {
    /// The authenticators `config` configures.
    pub fn new(config: &Config) -> Self {
        Self {
            http: config.auth.http.clone().map(HttpHook::new),
            dynamic: config.auth.dynamic.clone().map(DynamicAuthenticator::new),
        }
    }

    /// Whether one of them decides logins on this realm.
    pub fn cover(&self, realm: &str) -> bool {
        self.http.as_ref().is_some_and(|h| h.covers(realm))
            || self.dynamic.as_ref().is_some_and(|d| d.covers(realm))
    }
}

/// The verdict on a login, as a future the connection task can hold.
pub type Verdict = Pin<Box<dyn Future<Output = Result<Identity, Denied>> + Send>>;

/// Asks the HTTP hook, then (if it passes) the dynamic authenticator.
pub fn verify(router: Arc<Router>, login: Login) -> Verdict {
    Box::pin(async move {
        let hooks = router.authenticator.hooks().clone();
        if let Some(http) = hooks.http.as_ref().filter(|h| h.covers(&login.realm)) {
            if let Some(verdict) = identity(http.ask(&login).await, &login, "http") {
                return verdict;
            }
        }
        if let Some(dynamic) = hooks.dynamic.as_ref().filter(|d| d.covers(&login.realm)) {
            let decision = dynamic.ask(&router, &login).await;
            if let Some(verdict) = identity(decision, &login, "dynamic") {
                return verdict;
            }
        }
        Err(Denied::credentials("no authenticator accepted the login"))
    })
}

/// The identity an answer gives; `None` to ask the next authenticator.
fn identity(decision: Decision, login: &Login, provider: &str) -> Option<Result<Identity, Denied>> {
    match decision {
        Decision::Pass => None,
        Decision::Deny(denied) => Some(Err(denied)),
        Decision::Allow { authid, role } => {
            let authid = authid
                .or_else(|| login.authid.clone())
                .or_else(|| login.client_id.clone())
                .filter(|a| !a.is_empty());
            Some(match authid {
                Some(authid) => Ok(Identity {
                    authid,
                    authrole: role,
                    authmethod: login.authmethod.to_owned(),
                    authprovider: provider.to_owned(),
                }),
                None => Err(Denied::failed(format!(
                    "{provider} authenticator allowed a login without an authid"
                ))),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login() -> Login {
        Login {
            realm: "realm1".to_owned(),
            authid: None,
            authmethod: "password",
            credentials: "pw".to_owned(),
            protocol: "mqtt",
            transport: "mqtt",
            peer: "127.0.0.1".to_owned(),
            client_id: Some("c1".to_owned()),
        }
    }

    #[test]
    fn the_authid_is_the_answers_then_the_offered_then_the_client_id() {
        let allow = |authid: Option<&str>| Decision::Allow {
            authid: authid.map(str::to_owned),
            role: "r".to_owned(),
        };
        let mut l = login();
        let got = identity(allow(Some("a")), &l, "http").unwrap().unwrap();
        assert_eq!(
            (got.authid.as_str(), got.authprovider.as_str()),
            ("a", "http")
        );
        assert_eq!(
            identity(allow(None), &l, "http").unwrap().unwrap().authid,
            "c1"
        );
        l.authid = Some("offered".to_owned());
        assert_eq!(
            identity(allow(None), &l, "http").unwrap().unwrap().authid,
            "offered"
        );
        l.authid = None;
        l.client_id = None;
        assert!(identity(allow(None), &l, "http").unwrap().is_err());
        assert_eq!(identity(Decision::Pass, &l, "http"), None);
    }

    #[test]
    fn credentials_stay_out_of_debug_output() {
        let text = format!("{:?}", login());
        assert!(!text.contains("pw"), "{text}");
    }

    #[test]
    fn peer_host_drops_the_port() {
        assert_eq!(peer_host("127.0.0.1:5000"), "127.0.0.1");
        assert_eq!(peer_host("[::1]:5000"), "::1");
        assert_eq!(peer_host("unix"), "unix");
    }
}
