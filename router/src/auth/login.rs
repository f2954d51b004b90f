//! Which authenticator decides a WAMP ticket or an MQTT password (`docs/auth.md`):
//!
//! 1. A credential with a JWT's shape, on a realm `[auth.jwt]` covers: the JWT verifier.
//! 2. An authid that names a configured user: that user's secret (as without plugins).
//! 3. On a realm an `[auth.http]` or `[auth.dynamic]` covers: the HTTP hook, then the
//!    dynamic authenticator (the connection task awaits [`super::external::verify`]).
//! 4. Otherwise what the configured users and `[auth] anonymous` say.

use fox_wamp_proto::Dict;

use super::external::{peer_host, Denied, Login};
use super::jwt::{looks_like_jwt, JwtVerifier};
use super::{Authenticator, Expected, HelloOutcome, Identity, LoginRefused, Pending, TokenLogin};

/// What a ticket or password leads to.
#[derive(Debug)]
#[must_use]
pub enum Verification {
    /// Decided now.
    Done(Result<Identity, Denied>),
    /// For the external authenticators: await [`super::external::verify`].
    External(Login),
}

impl Authenticator {
    /// Whether a JWT or an external authenticator may decide tickets on this realm.
    pub(super) fn pluggable(&self, realm: &str) -> bool {
        self.jwt.as_ref().is_some_and(|j| j.covers(realm)) || self.hooks.cover(realm)
    }

    fn jwt_for(&self, realm: &str, credential: &str) -> Option<&JwtVerifier> {
        self.jwt
            .as_deref()
            .filter(|j| j.covers(realm) && looks_like_jwt(credential))
    }

    /// WAMP: checks AUTHENTICATE's signature against the pending challenge. `transport`
    /// and `peer` (`host:port`) are for the external authenticators.
    pub fn verify(
        &self,
        pending: Pending,
        signature: &str,
        transport: &'static str,
        peer: &str,
    ) -> Verification {
        if let Some(token) = &pending.token {
            if let Some(jwt) = self.jwt_for(&token.realm, signature) {
                return Verification::Done(jwt_identity(jwt, signature, "ticket"));
            }
            if matches!(pending.expected, Expected::External) {
                if !self.hooks.cover(&token.realm) {
                    return Verification::Done(Err(Denied::credentials(
                        "unknown authid, and the ticket is no JWT",
                    )));
                }
                return Verification::External(Login {
                    realm: token.realm.clone(),
                    authid: token.authid.clone(),
                    authmethod: "ticket",
                    credentials: signature.to_owned(),
                    protocol: "wamp",
                    transport,
                    peer: peer_host(peer),
                    client_id: None,
                });
            }
        }
        let verdict = self
            .authenticate(pending, signature)
            .ok_or_else(|| Denied::credentials("wrong secret or signature"));
        Verification::Done(verdict)
    }

    /// MQTT: who logs in with this username (`user` or `user@realm`) and password, into
    /// which realm (see the module docs for the order). `client_id` is the assigned one
    /// when the client sent none.
    pub fn mqtt_verify(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
        client_id: &str,
        transport: &'static str,
        peer: &str,
    ) -> (String, Verification) {
        let config = self.config();
        let default_realm = &config.router.mqtt_default_realm;
        let (authid, realm) = match username.map(|u| (u, u.rsplit_once('@'))) {
            Some((_, Some((authid, realm)))) if !realm.is_empty() => (Some(authid), realm),
            Some((username, _)) => (Some(username), default_realm.as_str()),
            None => (None, default_realm.as_str()),
        };
        let text = password.map(std::str::from_utf8);
        if let Some(Ok(password)) = text {
            if let Some(jwt) = self.jwt_for(realm, password) {
                let verdict = jwt_identity(jwt, password, "password");
                return (realm.to_owned(), Verification::Done(verdict));
            }
        }
        let configured = authid.is_some_and(|a| config.user(a).is_some());
        let external = !configured && password.is_some() && self.hooks.cover(realm);
        if !external {
            let verdict = self
                .mqtt_login(username, password, client_id)
                .map(|(identity, _)| identity)
                .map_err(|refused| Denied {
                    refused,
                    reason: refused.to_string(),
                });
            return (realm.to_owned(), Verification::Done(verdict));
        }
        let Some(Ok(password)) = text else {
            let denied = Denied::credentials("the password is not UTF-8");
            return (realm.to_owned(), Verification::Done(Err(denied)));
        };
        let login = Login {
            realm: realm.to_owned(),
            authid: authid.map(str::to_owned),
            authmethod: "password",
            credentials: password.to_owned(),
            protocol: "mqtt",
            transport,
            peer: peer_host(peer),
            client_id: Some(client_id.to_owned()),
        };
        (realm.to_owned(), Verification::External(login))
    }
}

/// A challenge for a ticket that only a JWT or an external authenticator can accept.
pub(super) fn external_ticket_challenge(token: Option<TokenLogin>) -> HelloOutcome {
    HelloOutcome::Challenge {
        method: "ticket".to_owned(),
        extra: Dict::new(),
        pending: Pending {
            // Never handed out: Expected::External matches no ticket by itself.
            identity: Identity {
                authid: String::new(),
                authrole: String::new(),
                authmethod: "ticket".to_owned(),
                authprovider: String::new(),
            },
            expected: Expected::External,
            token,
        },
    }
}

fn jwt_identity(jwt: &JwtVerifier, token: &str, authmethod: &str) -> Result<Identity, Denied> {
    let (authid, authrole) = jwt.verify(token).map_err(|why| Denied {
        refused: LoginRefused::BadCredentials,
        reason: why.to_string(),
    })?;
    Ok(Identity {
        authid,
        authrole,
        authmethod: authmethod.to_owned(),
        authprovider: "jwt".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fox_wamp_proto::Value;

    use super::*;
    use crate::config::Config;

    const HOOK: &str = "[auth.http]\nurl = \"http://127.0.0.1:1/auth\"\nrealms = [\"realm1\"]\n";

    fn authenticator(extra: &str) -> Authenticator {
        let text = format!(
            "[[role]]\nname = \"r\"\n[[user]]\nauthid = \"joe\"\nsecret = \"pw\"\nrole = \"r\"\n{extra}"
        );
        Authenticator::new(Arc::new(Config::parse(&text, "t").unwrap()))
    }

    /// Configured users first, then the hook, on the realms it covers and only with a
    /// password; the rest as without plugins.
    #[test]
    fn mqtt_order() {
        let auth = authenticator(HOOK);
        let verify = |username: &str, password: Option<&[u8]>| {
            auth.mqtt_verify(Some(username), password, "c", "mqtt", "127.0.0.1:5000")
        };
        let (_, joe) = verify("joe", Some(b"pw"));
        assert!(matches!(joe, Verification::Done(Ok(ref i)) if i.authprovider == "static"));
        assert!(matches!(
            verify("joe", Some(b"no")).1,
            Verification::Done(Err(_))
        ));
        let (realm, ann) = verify("ann", Some(b"pw"));
        let Verification::External(login) = ann else {
            panic!("an unknown user with a password goes to the hook");
        };
        assert_eq!(realm, "realm1");
        assert_eq!(login.authid.as_deref(), Some("ann"));
        assert_eq!(
            (login.peer.as_str(), login.authmethod),
            ("127.0.0.1", "password")
        );
        assert!(matches!(
            verify("ann@other", Some(b"pw")).1,
            Verification::Done(Err(_))
        ));
        let (_, anonymous) = verify("ann", None);
        assert!(matches!(anonymous, Verification::Done(Ok(ref i)) if i.authmethod == "anonymous"));
    }

    /// An unknown authid's ticket is challenged (not aborted at HELLO) only on a realm a
    /// plugin covers, and AUTHENTICATE then hands the ticket to the hook.
    #[test]
    fn unknown_authid_ticket_goes_to_the_hook() {
        let mut details = Dict::new();
        details.insert("authmethods".into(), Value::List(vec!["ticket".into()]));
        details.insert("authid".into(), "ann".into());
        let hello =
            |auth: &Authenticator, realm: &str| auth.hello(realm, &details, 1, "n", "t", None);
        let plain = authenticator("");
        assert!(matches!(
            hello(&plain, "realm1"),
            HelloOutcome::Abort { .. }
        ));
        let hooked = authenticator(HOOK);
        assert!(matches!(
            hello(&hooked, "other"),
            HelloOutcome::Abort { .. }
        ));
        let HelloOutcome::Challenge { pending, .. } = hello(&hooked, "realm1") else {
            panic!("expected a ticket challenge");
        };
        let Verification::External(login) = hooked.verify(pending, "t1", "websocket", "p") else {
            panic!("expected the hook to decide");
        };
        assert_eq!((login.authmethod, login.protocol), ("ticket", "wamp"));
        assert_eq!(login.credentials, "t1");
    }
}
