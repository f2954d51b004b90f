//! The `[auth]` section, roles and their permissions, and users.

use serde::Deserialize;

use super::{DynamicSettings, HttpHookSettings, JwtSettings};

/// Authentication settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Allow anonymous sessions. Default true.
    pub anonymous: bool,
    /// Role of anonymous sessions. Default `anonymous`; a role of that name that is not
    /// configured permits everything.
    pub anonymous_role: String,
    /// JWT tickets and passwords (`[auth.jwt]`). Default none.
    pub jwt: Option<JwtSettings>,
    /// The HTTP authentication hook (`[auth.http]`). Default none.
    pub http: Option<HttpHookSettings>,
    /// The dynamic authenticator (`[auth.dynamic]`). Default none.
    pub dynamic: Option<DynamicSettings>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            anonymous: true,
            anonymous_role: "anonymous".to_owned(),
            jwt: None,
            http: None,
            dynamic: None,
        }
    }
}

/// A role: permissions on URI patterns, and deny rules.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// The role's name (`authrole`).
    pub name: String,
    /// Permissions; the most specific matching rule decides, none matching denies.
    #[serde(default)]
    pub permissions: Vec<Permission>,
    /// Deny rules: each denies the actions it sets to `true` on its URIs. For an action,
    /// the most specific rule among the permissions and the deny rules naming that action
    /// decides; at equal specificity a deny rule wins (see [`crate::auth::Authorizer`]).
    #[serde(default)]
    pub deny: Vec<Deny>,
}

/// One deny rule: the same shape as a [`Permission`], where `true` denies the action.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deny {
    /// The URI, or URI prefix with `match = "prefix"`. Empty prefix matches all.
    pub uri: String,
    /// `exact` (default) or `prefix`.
    #[serde(default, rename = "match")]
    pub match_policy: PermissionMatch,
    /// Deny publishing.
    #[serde(default)]
    pub publish: bool,
    /// Deny subscribing, and deliveries to pattern subscriptions from the denied URIs.
    #[serde(default)]
    pub subscribe: bool,
    /// Deny calling.
    #[serde(default)]
    pub call: bool,
    /// Deny registering, and invocations of pattern registrations for the denied URIs.
    #[serde(default)]
    pub register: bool,
}

/// One permission rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    /// The URI, or URI prefix with `match = "prefix"`. Empty prefix matches all.
    pub uri: String,
    /// `exact` (default) or `prefix`.
    #[serde(default, rename = "match")]
    pub match_policy: PermissionMatch,
    /// May publish.
    #[serde(default)]
    pub publish: bool,
    /// May subscribe.
    #[serde(default)]
    pub subscribe: bool,
    /// May call.
    #[serde(default)]
    pub call: bool,
    /// May register.
    #[serde(default)]
    pub register: bool,
}

/// How a permission's URI matches.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PermissionMatch {
    /// The URI exactly.
    #[default]
    Exact,
    /// Any URI starting with it.
    Prefix,
}

/// A user.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The user's authid (MQTT username without `@realm`).
    pub authid: String,
    /// The shared secret: the ticket, the WAMP-CRA key (before salting) and the MQTT
    /// password. Empty (or absent): those methods are refused for this user.
    #[serde(default)]
    pub secret: String,
    /// WAMP-Cryptosign: the user's Ed25519 public keys, hex.
    #[serde(default)]
    pub pubkeys: Vec<String>,
    /// The user's role.
    pub role: String,
    /// WAMP-CRA salt; with it the key is PBKDF2-HMAC-SHA256(secret, salt, iterations, keylen).
    #[serde(default)]
    pub salt: Option<String>,
    /// PBKDF2 iterations (default 1000).
    #[serde(default)]
    pub iterations: Option<u32>,
    /// PBKDF2 key length in bytes (default 32).
    #[serde(default)]
    pub keylen: Option<u32>,
    /// Realms this user may join; empty means any.
    #[serde(default)]
    pub realms: Vec<String>,
    /// Bearer tokens that act as this user on the HTTP bridge (`POST /api/v1/publish`,
    /// `/api/v1/call`; `docs/admin.md`). At least 16 characters each.
    #[serde(default)]
    pub http_tokens: Vec<String>,
}
