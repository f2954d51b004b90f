//! Logins by TLS: a client named by its verified certificate (`[tls] identity`), and the
//! `tls-exporter` channel binding of WAMP-Cryptosign.
//!
//! A certificate name logs in as the `[[user]]` of that authid (its role, its realms), or
//! with `[tls] identity_role` when no user has that name; otherwise it is refused. WAMP
//! offers it as authmethod `tls` (as Crossbar does); MQTT takes it instead of the user
//! name and password (as Mosquitto's `use_identity_as_username`), the realm still coming
//! from a `user@realm` user name.

use fox_wamp_proto::ErrorUri;
use fox_wamp_proto::Value;

use super::external::Denied;
use super::login::Verification;
use super::{user_may_join, Authenticator, HelloOutcome, Identity, LoginRefused};
use crate::tls::TlsContext;

/// The channel binding a WAMP-Cryptosign HELLO asked for, checked against the transport.
pub(super) enum Binding {
    /// None asked for.
    None,
    /// `tls-exporter` on a TLS connection: sign the challenge XORed with this.
    Exporter([u8; 32]),
}

impl Authenticator {
    /// The identity a verified certificate name gives on `realm`.
    pub fn certificate(&self, name: &str, realm: &str) -> Result<Identity, Denied> {
        let config = self.config();
        let identity = |authrole: String| Identity {
            authid: name.to_owned(),
            authrole,
            authmethod: "tls".to_owned(),
            authprovider: "static".to_owned(),
        };
        if let Some(user) = config.user(name) {
            if !user_may_join(user, realm) {
                return Err(Denied {
                    refused: LoginRefused::NotAuthorized,
                    reason: format!("certificate name '{name}': not allowed on realm '{realm}'"),
                });
            }
            return Ok(identity(user.role.clone()));
        }
        let role = config.tls.as_ref().and_then(|t| t.identity_role.clone());
        role.map(identity).ok_or_else(|| Denied {
            refused: LoginRefused::NotAuthorized,
            reason: format!(
                "certificate name '{name}' is no user and [tls] identity_role is not set"
            ),
        })
    }

    /// MQTT over TLS with a certificate name: the realm from a `user@realm` user name (or
    /// the default), the identity from the certificate.
    pub fn mqtt_certificate(&self, name: &str, username: Option<&str>) -> (String, Verification) {
        let config = self.config();
        let realm = username
            .and_then(|u| u.rsplit_once('@'))
            .map(|(_, realm)| realm)
            .filter(|realm| !realm.is_empty())
            .unwrap_or(&config.router.mqtt_default_realm)
            .to_owned();
        let verdict = self.certificate(name, &realm);
        (realm, Verification::Done(verdict))
    }

    /// WAMP authmethod `tls`: `None` when the connection has no certificate name (the next
    /// offered method is tried).
    pub(super) fn tls_hello(&self, realm: &str, tls: Option<&TlsContext>) -> Option<HelloOutcome> {
        let name = tls?.identity.as_deref()?;
        Some(match self.certificate(name, realm) {
            Ok(identity) => HelloOutcome::Welcome(identity),
            Err(denied) => HelloOutcome::Abort {
                reason: ErrorUri::NotAuthorized,
                message: denied.reason,
            },
        })
    }
}

/// Checks a HELLO's `authextra.channel_binding` against the transport: `tls-exporter`
/// needs TLS; `tls-unique` cannot be offered (rustls exposes no Finished message, and RFC
/// 9266 retires it for TLS 1.3). The error is the ABORT message
/// (`wamp.error.invalid_argument`).
pub(super) fn binding(
    requested: Option<&Value>,
    tls: Option<&TlsContext>,
) -> Result<Binding, &'static str> {
    match requested {
        None | Some(Value::Null) => Ok(Binding::None),
        Some(Value::Str(kind)) if kind == "tls-exporter" => tls
            .and_then(|t| t.exporter)
            .map(Binding::Exporter)
            .ok_or("cryptosign channel binding tls-exporter needs a TLS connection"),
        Some(Value::Str(kind)) if kind == "tls-unique" => Err(
            "cryptosign channel binding tls-unique is not available (TLS 1.3 has none); use tls-exporter",
        ),
        Some(_) => Err("unknown cryptosign channel binding; tls-exporter is supported"),
    }
}

/// The message a bound signature signs: the challenge XOR the channel's exporter value.
pub(super) fn bound_challenge(challenge: [u8; 32], binding: &Binding) -> [u8; 32] {
    match binding {
        Binding::None => challenge,
        Binding::Exporter(exporter) => {
            let mut bound = challenge;
            for (byte, key) in bound.iter_mut().zip(exporter) {
                *byte ^= key;
            }
            bound
        }
    }
}
