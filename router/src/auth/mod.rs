//! Authentication (anonymous, ticket, WAMP-CRA, WAMP-Cryptosign; MQTT username/password;
//! JWT, an HTTP hook and a dynamic WAMP authenticator for tickets and passwords) and
//! authorization (roles with URI permissions). `docs/auth.md` tells the whole story.
//!
//! Calling order for WAMP: [`Authenticator::hello`] with the HELLO's realm and details gives
//! a [`HelloOutcome`]: welcome at once, challenge, or abort. After a challenge,
//! [`Authenticator::verify`] checks the signature against the [`Pending`] state: a
//! [`Verification`] decided at once (configured users, JWT), or a [`Login`] for the
//! external authenticators, whose verdict the connection task awaits
//! ([`external::verify`]). MQTT: [`Authenticator::mqtt_verify`], then the same.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use fox_wamp_proto::ErrorUri;
use fox_wamp_proto::{Dict, Value};

use crate::config::{Config, User};

mod authorize;
mod cache;
mod certificate;
pub(crate) mod dynamic;
pub mod external;
pub mod hooks;
mod http;
mod jwt;
mod login;
pub mod settings;

pub use authorize::{Action, Authorizer};
pub use external::{Denied, Login};
pub use login::Verification;

use login::external_ticket_challenge;

/// Who a session is once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `authid`.
    pub authid: String,
    /// `authrole`.
    pub authrole: String,
    /// `authmethod` that succeeded.
    pub authmethod: String,
    /// `authprovider`.
    pub authprovider: String,
}

/// What HELLO leads to.
#[derive(Debug)]
pub enum HelloOutcome {
    /// Authenticated without a challenge.
    Welcome(Identity),
    /// Send CHALLENGE(method, extra) and keep `Pending` for AUTHENTICATE.
    Challenge {
        /// The method.
        method: String,
        /// CHALLENGE.Extra.
        extra: Dict,
        /// State to check the answer against.
        pending: Pending,
    },
    /// Send ABORT(reason) with a message.
    Abort {
        /// The ABORT reason URI.
        reason: ErrorUri,
        /// Human-readable detail.
        message: String,
    },
}

/// A challenge waiting for its AUTHENTICATE.
#[derive(Debug)]
pub struct Pending {
    identity: Identity,
    expected: Expected,
    /// A ticket on a realm where a JWT or an external authenticator may decide: the realm
    /// and the offered authid.
    token: Option<TokenLogin>,
}

/// A ticket login that a JWT or the external authenticators may decide.
#[derive(Debug)]
struct TokenLogin {
    realm: String,
    authid: Option<String>,
}

#[derive(Debug)]
enum Expected {
    Ticket(String),
    Signature(String),
    /// WAMP-Cryptosign: a signature of `challenge` by one of `keys`.
    Cryptosign {
        keys: Vec<ed25519_dalek::VerifyingKey>,
        challenge: [u8; crate::cryptosign::CHALLENGE_BYTES],
    },
    /// No configured user: only a JWT or an external authenticator can accept the ticket
    /// (the pending identity is then a placeholder).
    External,
}

/// Authentication against the configured users, JWTs and the external authenticators.
#[derive(Clone, Debug)]
pub struct Authenticator {
    /// The configuration; its users are replaced by [`Authenticator::reload_users`].
    config: Arc<std::sync::RwLock<Arc<Config>>>,
    /// `[auth.jwt]`, when configured.
    jwt: Option<Arc<jwt::JwtVerifier>>,
    /// `[auth.http]` and `[auth.dynamic]`.
    hooks: Arc<external::Hooks>,
}

/// The user a cryptosign HELLO names: by its `authid`, else the one whose key is `offered`
/// (`authextra.pubkey`). `Ok(None)`: that user has no keys; `Err`: why it is refused.
fn cryptosign_user<'c>(
    config: &'c Config,
    authid: Option<&str>,
    offered: Option<&str>,
) -> Result<Option<&'c User>, &'static str> {
    let has_offered =
        |u: &User| offered.is_none_or(|k| u.pubkeys.iter().any(|p| p.eq_ignore_ascii_case(k)));
    let user = match authid {
        Some(a) => match config.user(a) {
            None => return Err("unknown authid"),
            Some(u) if u.pubkeys.is_empty() => return Ok(None),
            Some(u) => u,
        },
        None => match offered {
            Some(_) => config
                .users
                .iter()
                .find(|u| has_offered(u))
                .ok_or("unknown public key")?,
            None => return Err("cryptosign needs an authid or authextra.pubkey"),
        },
    };
    if !has_offered(user) {
        return Err("the public key is not one of this user's");
    }
    Ok(Some(user))
}

impl Authenticator {
    /// An authenticator over this configuration.
    pub fn new(config: Arc<Config>) -> Self {
        // Config::validate built this verifier already; a key file that went bad since is
        // logged, and then every token is refused.
        let jwt =
            config
                .auth
                .jwt
                .as_ref()
                .and_then(|settings| match jwt::JwtVerifier::new(settings) {
                    Ok(verifier) => Some(Arc::new(verifier)),
                    Err(why) => {
                        tracing::error!(%why, "JWT authentication is off");
                        None
                    }
                });
        let hooks = Arc::new(external::Hooks::new(&config));
        Self {
            config: Arc::new(std::sync::RwLock::new(config)),
            jwt,
            hooks,
        }
    }

    /// The configuration as it is now.
    fn config(&self) -> Arc<Config> {
        crate::locks::read(&self.config).clone()
    }

    /// Replaces the users (authids, secrets, keys, roles, realms) with those of `fresh`, a
    /// configuration read again on SIGHUP; sessions already established keep their login.
    /// Roles and every other setting stay as at start (they need a restart): a user whose
    /// role is not one the router runs with is refused, and nothing changes.
    pub fn reload_users(&self, fresh: &Config) -> Result<usize, String> {
        let current = self.config();
        for user in &fresh.users {
            let known = current.roles.iter().any(|r| r.name == user.role)
                || user.role == current.auth.anonymous_role;
            if !known {
                return Err(format!(
                    "user '{}' has role '{}', which the running router does not have (roles need a restart)",
                    user.authid, user.role
                ));
            }
        }
        let mut next = (*current).clone();
        next.users = fresh.users.clone();
        let count = next.users.len();
        *crate::locks::write(&self.config) = Arc::new(next);
        Ok(count)
    }

    /// The user a bearer token of the HTTP bridge names (`[[user]] http_tokens`), as an
    /// identity (authmethod `token`, authprovider `static`) with the realms it may use
    /// (empty: any). Tokens are compared by their SHA-256 digests in constant time.
    pub fn bridge_user(&self, token: &str) -> Option<(Identity, Vec<String>)> {
        use subtle::ConstantTimeEq;
        let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let config = self.config();
        let mut found = None;
        for user in &config.users {
            for candidate in &user.http_tokens {
                let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
                if bool::from(digest.ct_eq(&given)) {
                    found = Some(user);
                }
            }
        }
        let user = found?;
        let identity = Identity {
            authid: user.authid.clone(),
            authrole: user.role.clone(),
            authmethod: "token".to_owned(),
            authprovider: "static".to_owned(),
        };
        Some((identity, user.realms.clone()))
    }

    /// The external authenticators.
    pub fn hooks(&self) -> &Arc<external::Hooks> {
        &self.hooks
    }

    /// Decides on a HELLO. `session` is the session ID the router will assign, `nonce` a
    /// random string and `timestamp` an ISO-8601 time (both used in WAMP-CRA challenges).
    pub fn hello(
        &self,
        realm: &str,
        details: &Dict,
        session: u64,
        nonce: &str,
        timestamp: &str,
        tls: Option<&crate::tls::TlsContext>,
    ) -> HelloOutcome {
        let config = self.config();
        let methods: Vec<&str> = match details.get("authmethods").and_then(Value::as_list) {
            Some(list) => list.iter().filter_map(Value::as_str).collect(),
            None => vec!["anonymous"],
        };
        let authid = details.get("authid").and_then(Value::as_str);
        for method in methods {
            match method {
                "anonymous" if config.auth.anonymous => {
                    return HelloOutcome::Welcome(Identity {
                        authid: authid
                            .map(str::to_owned)
                            .unwrap_or_else(|| format!("anonymous-{session}")),
                        authrole: config.auth.anonymous_role.clone(),
                        authmethod: "anonymous".to_owned(),
                        authprovider: "static".to_owned(),
                    });
                }
                "ticket" | "wampcra" => {
                    // A user with no secret (cryptosign only) cannot use these: try the next.
                    let secretless = authid
                        .and_then(|a| config.user(a))
                        .is_some_and(|u| u.secret.is_empty());
                    if !secretless {
                        return self.challenge(method, realm, authid, session, nonce, timestamp);
                    }
                }
                "cryptosign" => {
                    if let Some(outcome) = self.cryptosign(realm, authid, details, tls) {
                        return outcome;
                    }
                }
                "tls" => {
                    if let Some(outcome) = self.tls_hello(realm, tls) {
                        return outcome;
                    }
                }
                _ => {}
            }
        }
        HelloOutcome::Abort {
            reason: ErrorUri::NoAuthMethod,
            message: "none of the offered authentication methods is available".to_owned(),
        }
    }

    fn challenge(
        &self,
        method: &str,
        realm: &str,
        authid: Option<&str>,
        session: u64,
        nonce: &str,
        timestamp: &str,
    ) -> HelloOutcome {
        let config = self.config();
        let token = (method == "ticket" && self.pluggable(realm)).then(|| TokenLogin {
            realm: realm.to_owned(),
            authid: authid.map(str::to_owned),
        });
        let user = match authid.and_then(|a| config.user(a)) {
            Some(user) if user_may_join(user, realm) => user,
            None if token.is_some() => return external_ticket_challenge(token),
            _ => {
                return HelloOutcome::Abort {
                    reason: ErrorUri::NotAuthorized,
                    message: "unknown authid, or not allowed on this realm".to_owned(),
                }
            }
        };
        let identity = Identity {
            authid: user.authid.clone(),
            authrole: user.role.clone(),
            authmethod: method.to_owned(),
            authprovider: "static".to_owned(),
        };
        if method == "ticket" {
            return HelloOutcome::Challenge {
                method: method.to_owned(),
                extra: Dict::new(),
                pending: Pending {
                    identity,
                    expected: Expected::Ticket(user.secret.clone()),
                    token,
                },
            };
        }
        let challenge = serde_json::json!({
            "authid": user.authid, "authrole": user.role, "authmethod": "wampcra",
            "authprovider": "static", "nonce": nonce, "timestamp": timestamp, "session": session,
        })
        .to_string();
        let mut extra = Dict::new();
        extra.insert("challenge".into(), Value::Str(challenge.clone()));
        if let Some(salt) = &user.salt {
            extra.insert("salt".into(), Value::Str(salt.clone()));
            extra.insert(
                "iterations".into(),
                Value::from(u64::from(iterations(user))),
            );
            extra.insert("keylen".into(), Value::from(u64::from(keylen(user))));
        }
        HelloOutcome::Challenge {
            method: method.to_owned(),
            extra,
            pending: Pending {
                identity,
                expected: Expected::Signature(wampcra_signature(&cra_key(user), &challenge)),
                token: None,
            },
        }
    }

    /// WAMP-Cryptosign: the user is the HELLO's authid, or without one the user whose
    /// key the HELLO's `authextra.pubkey` names. `None` when this user cannot use the method
    /// (no keys, or not the offered one), so the next offered method is tried.
    fn cryptosign(
        &self,
        realm: &str,
        authid: Option<&str>,
        details: &Dict,
        tls: Option<&crate::tls::TlsContext>,
    ) -> Option<HelloOutcome> {
        let config = self.config();
        let extra = details.get("authextra").and_then(Value::as_dict);
        let offered = extra
            .and_then(|e| e.get("pubkey"))
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let binding = match certificate::binding(extra.and_then(|e| e.get("channel_binding")), tls)
        {
            Ok(binding) => binding,
            Err(message) => {
                return Some(HelloOutcome::Abort {
                    reason: ErrorUri::InvalidArgument,
                    message: message.to_owned(),
                })
            }
        };
        let refused = |message: &str| {
            Some(HelloOutcome::Abort {
                reason: ErrorUri::NotAuthorized,
                message: message.to_owned(),
            })
        };
        let user = match cryptosign_user(&config, authid, offered.as_deref()) {
            Ok(Some(user)) => user,
            // No keys: this user authenticates otherwise; try the next offered method.
            Ok(None) => return None,
            Err(message) => return refused(message),
        };
        if !user_may_join(user, realm) {
            return refused("not allowed on this realm");
        }
        let keys = user
            .pubkeys
            .iter()
            .filter(|p| offered.as_deref().is_none_or(|k| p.eq_ignore_ascii_case(k)))
            .filter_map(|p| crate::cryptosign::public_key(p))
            .collect();
        let challenge: [u8; crate::cryptosign::CHALLENGE_BYTES] = rand::random();
        let mut extra = Dict::new();
        extra.insert(
            "challenge".into(),
            Value::Str(crate::cryptosign::hex_encode(&challenge)),
        );
        let binding_name = match binding {
            certificate::Binding::None => Value::Null,
            certificate::Binding::Exporter(_) => Value::Str("tls-exporter".to_owned()),
        };
        extra.insert("channel_binding".into(), binding_name);
        let challenge = certificate::bound_challenge(challenge, &binding);
        Some(HelloOutcome::Challenge {
            method: "cryptosign".to_owned(),
            extra,
            pending: Pending {
                identity: Identity {
                    authid: user.authid.clone(),
                    authrole: user.role.clone(),
                    authmethod: "cryptosign".to_owned(),
                    authprovider: "static".to_owned(),
                },
                expected: Expected::Cryptosign { keys, challenge },
                token: None,
            },
        })
    }

    /// Checks AUTHENTICATE's signature; the identity on success.
    pub fn authenticate(&self, pending: Pending, signature: &str) -> Option<Identity> {
        let ok = match &pending.expected {
            Expected::Ticket(t) => constant_time_eq(t.as_bytes(), signature.as_bytes()),
            Expected::Signature(s) => constant_time_eq(s.as_bytes(), signature.as_bytes()),
            Expected::Cryptosign { keys, challenge } => keys
                .iter()
                .any(|k| crate::cryptosign::verify(k, challenge, signature)),
            Expected::External => false,
        };
        ok.then_some(pending.identity)
    }

    /// MQTT: checks a username (`user` or `user@realm`) and password; the identity and
    /// realm, or why the login is refused.
    ///
    /// As Mosquitto's `allow_anonymous`: with anonymous sessions allowed, no username, or a
    /// username that names no configured user and comes without a password, logs in
    /// anonymously (as that authid, in the realm its `@realm` suffix names). A configured
    /// user needs its password; an unknown user with a password is refused.
    pub fn mqtt_login(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
        client_id: &str,
    ) -> Result<(Identity, String), LoginRefused> {
        let config = self.config();
        let default_realm = &config.router.mqtt_default_realm;
        let Some(username) = username else {
            return self
                .mqtt_anonymous(client_id, default_realm.clone())
                .ok_or(LoginRefused::NotAuthorized);
        };
        let (authid, realm) = match username.rsplit_once('@') {
            Some((authid, realm)) if !realm.is_empty() => (authid, realm.to_owned()),
            _ => (username, default_realm.clone()),
        };
        let Some(user) = config.user(authid) else {
            return match password {
                None => self
                    .mqtt_anonymous(authid, realm)
                    .ok_or(LoginRefused::BadCredentials),
                Some(_) => Err(LoginRefused::BadCredentials),
            };
        };
        // A user without a secret (keys only) has no password: an empty one must not match.
        let password = password.filter(|_| !user.secret.is_empty());
        if !password.is_some_and(|p| constant_time_eq(user.secret.as_bytes(), p)) {
            return Err(LoginRefused::BadCredentials);
        }
        if !user_may_join(user, &realm) {
            return Err(LoginRefused::NotAuthorized);
        }
        let identity = Identity {
            authid: user.authid.clone(),
            authrole: user.role.clone(),
            authmethod: "password".to_owned(),
            authprovider: "static".to_owned(),
        };
        Ok((identity, realm))
    }

    /// An anonymous MQTT identity with this authid, if anonymous sessions are allowed.
    fn mqtt_anonymous(&self, authid: &str, realm: String) -> Option<(Identity, String)> {
        let config = self.config();
        config.auth.anonymous.then(|| {
            let identity = Identity {
                authid: authid.to_owned(),
                authrole: config.auth.anonymous_role.clone(),
                authmethod: "anonymous".to_owned(),
                authprovider: "static".to_owned(),
            };
            (identity, realm)
        })
    }
}

/// Why an MQTT login is refused; each maps to its CONNACK reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginRefused {
    /// A configured user with a wrong or missing password, an unknown user with a password,
    /// or (anonymous off) an unknown user: CONNACK 0x04 (3.1.1) / 0x86 (5).
    #[error("bad user name or password")]
    BadCredentials,
    /// No credentials and anonymous sessions off, or a user not allowed on the realm:
    /// CONNACK 0x05 (3.1.1) / 0x87 (5).
    #[error("not authorized")]
    NotAuthorized,
}

fn user_may_join(user: &User, realm: &str) -> bool {
    user.realms.is_empty() || user.realms.iter().any(|r| r == realm)
}

fn iterations(user: &User) -> u32 {
    user.iterations.unwrap_or(1000)
}

fn keylen(user: &User) -> u32 {
    user.keylen.unwrap_or(32)
}

/// The WAMP-CRA key: the secret, or with a salt the base64 of its PBKDF2-HMAC-SHA256
/// derivation (as autobahn's `derive_key` computes it).
fn cra_key(user: &User) -> Vec<u8> {
    let Some(salt) = &user.salt else {
        return user.secret.as_bytes().to_vec();
    };
    let mut derived = vec![0u8; keylen(user) as usize];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        user.secret.as_bytes(),
        salt.as_bytes(),
        iterations(user),
        &mut derived,
    );
    base64::engine::general_purpose::STANDARD
        .encode(derived)
        .into_bytes()
}

/// base64(HMAC-SHA256(key, challenge)).
pub fn wampcra_signature(key: &[u8], challenge: &str) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(challenge.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
