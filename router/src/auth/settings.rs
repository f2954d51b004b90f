//! `[auth.jwt]`, `[auth.http]` and `[auth.dynamic]` of the configuration file: the
//! pluggable authenticators beside the configured users (`docs/auth.md`).

use std::path::PathBuf;

use serde::Deserialize;

/// JWT tickets and MQTT passwords (`[auth.jwt]`).
///
/// ```toml
/// [auth.jwt]
/// algorithm = "HS256"            # HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA
/// secret = "..."                 # HS*: the shared secret
/// # public_key_file = "key.pem"  # the others: the public key, PEM
/// audience = "foxrouter"         # optional: `aud` must name it
/// issuer = "https://issuer"      # optional: `iss` must be it
/// authid_claim = "sub"           # default
/// role_claim = "role"            # default
/// # role_default = "device"      # for tokens without the role claim (default: refused)
/// leeway_secs = 60               # clock skew allowed on exp and nbf (default 60)
/// realms = []                    # realms where tokens are accepted; empty: all
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// The one accepted signature algorithm; a token signed otherwise is refused.
    pub algorithm: jsonwebtoken::Algorithm,
    /// The HMAC secret (HS256, HS384, HS512).
    #[serde(default)]
    pub secret: Option<String>,
    /// The PEM public key (RSA, EC or Ed25519) of the other algorithms.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// When set, the token's `aud` is required and must contain it.
    #[serde(default)]
    pub audience: Option<String>,
    /// When set, the token's `iss` is required and must be it.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The claim that gives the authid. Default `sub`.
    #[serde(default = "authid_claim_default")]
    pub authid_claim: String,
    /// The claim that gives the role (a string, or a list whose first string counts).
    /// Default `role`.
    #[serde(default = "role_claim_default")]
    pub role_claim: String,
    /// The role of a token without the role claim. Default none: such a token is refused.
    #[serde(default)]
    pub role_default: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds. Default 60.
    #[serde(default = "leeway_secs_default")]
    pub leeway_secs: u64,
    /// Realms where tokens are accepted; empty (the default) means every realm.
    #[serde(default)]
    pub realms: Vec<String>,
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("JwtSettings")
            .field("algorithm", &self.algorithm)
            .field("public_key_file", &self.public_key_file)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("realms", &self.realms)
            .finish_non_exhaustive()
    }
}

fn authid_claim_default() -> String {
    "sub".to_owned()
}

fn role_claim_default() -> String {
    "role".to_owned()
}

fn leeway_secs_default() -> u64 {
    60
}

/// The HTTP authentication hook (`[auth.http]`), as EMQX's HTTP authenticator.
///
/// ```toml
/// [auth.http]
/// url = "http://127.0.0.1:9000/auth"   # plain http:// only
/// timeout_ms = 5000                    # default 5 s, waiting for a slot included
/// concurrency_max = 64                 # requests in flight at once (default 64)
/// cache_ms = 0                         # keep answers this long; default 0: no cache
/// cache_entries_max = 10000            # default 10,000
/// realms = []                          # realms it decides for; empty: all
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpHookSettings {
    /// Where the JSON POST goes (`http://host:port/path`).
    pub url: String,
    /// Longest a login waits for the answer, in milliseconds, including the wait for a
    /// free request slot. Default 5,000.
    #[serde(default = "timeout_ms_default")]
    pub timeout_ms: u64,
    /// Requests in flight at once. Default 64.
    #[serde(default = "concurrency_max_default")]
    pub concurrency_max: usize,
    /// How long an answer (allow or deny) is reused for the same request, in
    /// milliseconds. Default 0: every login asks.
    #[serde(default)]
    pub cache_ms: u64,
    /// Most answers cached. Default 10,000.
    #[serde(default = "cache_entries_max_default")]
    pub cache_entries_max: usize,
    /// Realms it decides for; empty (the default) means every realm.
    #[serde(default)]
    pub realms: Vec<String>,
}

/// The dynamic authenticator (`[auth.dynamic]`), as Crossbar.io's: a WAMP procedure.
///
/// ```toml
/// [auth.dynamic]
/// realm = "auth"                           # where the procedure is registered
/// procedure = "com.example.authenticate"
/// timeout_ms = 5000                        # default 5 s, waiting for a slot included
/// calls_in_flight_max = 64                 # default 64
/// realms = []                              # realms it decides for; empty: all
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicSettings {
    /// The realm the authenticating session registers the procedure on.
    pub realm: String,
    /// The procedure, called with `(realm, authid, details)`.
    pub procedure: String,
    /// Longest a login waits for the procedure's answer, in milliseconds, including the
    /// wait for a free call slot. Default 5,000.
    #[serde(default = "timeout_ms_default")]
    pub timeout_ms: u64,
    /// Calls in flight at once. Default 64.
    #[serde(default = "concurrency_max_default")]
    pub calls_in_flight_max: usize,
    /// Realms it decides for; empty (the default) means every realm.
    #[serde(default)]
    pub realms: Vec<String>,
}

/// Authorization hooks (`[authorization]`): the HTTP hook and the dynamic authorizer
/// decide publish, subscribe, call and register; the roles' rules stay the default
/// (`docs/auth.md`).
///
/// ```toml
/// [authorization]
/// realms = []                    # realms where the hooks are asked; empty: all
/// roles = []                     # roles whose sessions they decide for; empty: all
/// cache_ms = 60000               # each session keeps an answer this long (default 60 s)
/// cache_entries_max = 256        # answers kept per session (default 256)
///
/// [authorization.http]           # as EMQX's HTTP authorizer
/// url = "http://127.0.0.1:9000/authorize"
/// timeout_ms = 5000              # default, waiting for a request slot included
/// concurrency_max = 64           # default
///
/// [authorization.dynamic]        # as Crossbar.io's dynamic authorizer
/// realm = "auth"
/// procedure = "com.example.authorize"
/// timeout_ms = 5000              # default, waiting for a call slot included
/// calls_in_flight_max = 64       # default
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizationSettings {
    /// Realms where the hooks decide; empty (the default) means every realm.
    pub realms: Vec<String>,
    /// Roles whose sessions the hooks decide for; empty (the default) means every role
    /// (never the router's own `foxrouter.*` roles).
    pub roles: Vec<String>,
    /// How long a session reuses an answer for the same action on the same URI, in
    /// milliseconds. Default 60,000; 0 asks for every message.
    pub cache_ms: u64,
    /// Most answers one session keeps. Default 256.
    pub cache_entries_max: usize,
    /// The HTTP authorization hook. Default none.
    pub http: Option<AuthorizationHttpSettings>,
    /// The dynamic authorizer (a WAMP procedure). Default none.
    pub dynamic: Option<AuthorizationDynamicSettings>,
}

impl Default for AuthorizationSettings {
    fn default() -> Self {
        Self {
            realms: Vec::new(),
            roles: Vec::new(),
            cache_ms: 60_000,
            cache_entries_max: 256,
            http: None,
            dynamic: None,
        }
    }
}

/// `[authorization.http]`: where the JSON POST per decision goes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationHttpSettings {
    /// `http://host:port/path`.
    pub url: String,
    /// Longest a message waits for the answer, in milliseconds, including the wait for a
    /// free request slot. Default 5,000.
    #[serde(default = "timeout_ms_default")]
    pub timeout_ms: u64,
    /// Requests in flight at once. Default 64.
    #[serde(default = "concurrency_max_default")]
    pub concurrency_max: usize,
}

/// `[authorization.dynamic]`: the procedure asked, and where it is registered.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationDynamicSettings {
    /// The realm the authorizing session registers the procedure on.
    pub realm: String,
    /// The procedure, called with `(session, uri, action, options)`.
    pub procedure: String,
    /// Longest a message waits for the answer, in milliseconds, including the wait for a
    /// free call slot. Default 5,000.
    #[serde(default = "timeout_ms_default")]
    pub timeout_ms: u64,
    /// Calls in flight at once. Default 64.
    #[serde(default = "concurrency_max_default")]
    pub calls_in_flight_max: usize,
}

impl AuthorizationSettings {
    /// Whether any hook is configured.
    pub fn has_hooks(&self) -> bool {
        self.http.is_some() || self.dynamic.is_some()
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.has_hooks() && self.cache_entries_max == 0 {
            return Err("authorization.cache_entries_max must be at least 1".to_owned());
        }
        if !self.has_hooks() && (!self.realms.is_empty() || !self.roles.is_empty()) {
            return Err(
                "authorization: realms or roles set without [authorization.http] or [authorization.dynamic]"
                    .to_owned(),
            );
        }
        if let Some(http) = &self.http {
            validate_url("authorization.http.url", &http.url)?;
            if http.timeout_ms == 0 || http.concurrency_max == 0 {
                return Err(
                    "authorization.http: timeout_ms and concurrency_max must be at least 1"
                        .to_owned(),
                );
            }
        }
        if let Some(dynamic) = &self.dynamic {
            if dynamic.realm.is_empty() || dynamic.procedure.is_empty() {
                return Err(
                    "authorization.dynamic: realm and procedure must not be empty".to_owned(),
                );
            }
            if dynamic.timeout_ms == 0 || dynamic.calls_in_flight_max == 0 {
                return Err(
                    "authorization.dynamic: timeout_ms and calls_in_flight_max must be at least 1"
                        .to_owned(),
                );
            }
            // The authorizing session would wait for its own answers (its REGISTER first).
            if self.roles.is_empty() && covers(&self.realms, &dynamic.realm) {
                return Err(format!(
                    "authorization.dynamic.realm '{}' is one the hooks decide for: list the \
                     realms (authorization.realms) or the roles (authorization.roles) they \
                     decide for, so that the authorizing session is not held for its own answers",
                    dynamic.realm
                ));
            }
        }
        Ok(())
    }
}

/// A hook URL: `http://` (no TLS client yet) and parseable.
fn validate_url(key: &str, url: &str) -> Result<(), String> {
    if !url.starts_with("http://") {
        return Err(format!("{key} '{url}': only http:// URLs are supported"));
    }
    if url.parse::<hyper::Uri>().is_err() {
        return Err(format!("{key} '{url}' is not a URL"));
    }
    Ok(())
}

fn timeout_ms_default() -> u64 {
    5_000
}

fn concurrency_max_default() -> usize {
    64
}

fn cache_entries_max_default() -> usize {
    10_000
}

/// Whether a `realms` list (empty: all) covers `realm`.
pub(crate) fn covers(realms: &[String], realm: &str) -> bool {
    realms.is_empty() || realms.iter().any(|r| r == realm)
}

impl JwtSettings {
    /// Checks the key settings against the algorithm and loads the key (so that a bad
    /// key file is refused at start).
    pub(crate) fn validate(&self) -> Result<(), String> {
        super::jwt::JwtVerifier::new(self).map(|_| ())
    }
}

impl HttpHookSettings {
    pub(crate) fn validate(&self) -> Result<(), String> {
        validate_url("auth.http.url", &self.url)?;
        if self.timeout_ms == 0 || self.concurrency_max == 0 || self.cache_entries_max == 0 {
            return Err(
                "auth.http: timeout_ms, concurrency_max and cache_entries_max must be at least 1"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

impl DynamicSettings {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.realm.is_empty() || self.procedure.is_empty() {
            return Err("auth.dynamic: realm and procedure must not be empty".to_owned());
        }
        if self.timeout_ms == 0 || self.calls_in_flight_max == 0 {
            return Err(
                "auth.dynamic: timeout_ms and calls_in_flight_max must be at least 1".to_owned(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn sections_parse_with_their_defaults() {
        let text = r#"
[auth.http]
url = "http://127.0.0.1:9000/auth"
[auth.dynamic]
realm = "auth"
procedure = "com.example.authenticate"
"#;
        let config = Config::parse(text, "t").unwrap();
        let http = config.auth.http.unwrap();
        assert_eq!(
            (http.timeout_ms, http.concurrency_max, http.cache_ms),
            (5_000, 64, 0)
        );
        let dynamic = config.auth.dynamic.unwrap();
        assert_eq!(
            (dynamic.timeout_ms, dynamic.calls_in_flight_max),
            (5_000, 64)
        );
        assert!(config.auth.jwt.is_none());
    }

    #[test]
    fn authorization_sections_parse_and_bad_ones_are_refused() {
        let config = Config::parse(
            "[authorization]\nrealms = [\"realm1\"]\n[authorization.http]\nurl = \"http://127.0.0.1:9/a\"\n\
             [authorization.dynamic]\nrealm = \"auth\"\nprocedure = \"p\"\n",
            "t",
        )
        .unwrap();
        let authorization = &config.authorization;
        assert_eq!(
            (authorization.cache_ms, authorization.cache_entries_max),
            (60_000, 256)
        );
        assert_eq!(authorization.http.as_ref().unwrap().timeout_ms, 5_000);
        assert_eq!(
            authorization.dynamic.as_ref().unwrap().calls_in_flight_max,
            64
        );
        let refused = |text: &str| Config::parse(text, "t").unwrap_err().to_string();
        let own = refused("[authorization.dynamic]\nrealm = \"auth\"\nprocedure = \"p\"\n");
        assert!(own.contains("its own answers"), "{own}");
        // Listing the roles the hooks decide for is the other way out.
        Config::parse(
            "[authorization]\nroles = [\"device\"]\n[authorization.dynamic]\nrealm = \"auth\"\nprocedure = \"p\"\n",
            "t",
        )
        .unwrap();
        let https = refused("[authorization.http]\nurl = \"https://h/a\"\n");
        assert!(https.contains("only http://"), "{https}");
        let lonely = refused("[authorization]\nroles = [\"x\"]\n");
        assert!(lonely.contains("without"), "{lonely}");
        let zero = refused(
            "[authorization]\ncache_entries_max = 0\n[authorization.http]\nurl = \"http://h/a\"\n",
        );
        assert!(zero.contains("at least 1"), "{zero}");
        let unknown = refused("[authorization.http]\nurl = \"http://h/a\"\nbogus = 1\n");
        assert!(unknown.contains("bogus"), "{unknown}");
    }

    #[test]
    fn bad_sections_are_refused_with_the_reason() {
        let refused = |text: &str| Config::parse(text, "t").unwrap_err().to_string();
        let https = refused("[auth.http]\nurl = \"https://example.com/auth\"\n");
        assert!(https.contains("only http://"), "{https}");
        let zero = refused("[auth.http]\nurl = \"http://h/a\"\nconcurrency_max = 0\n");
        assert!(zero.contains("at least 1"), "{zero}");
        let unknown = refused("[auth.jwt]\nalgorithm = \"HS256\"\nsecret = \"k\"\nbogus = 1\n");
        assert!(unknown.contains("bogus"), "{unknown}");
        let no_secret = refused("[auth.jwt]\nalgorithm = \"HS256\"\n");
        assert!(no_secret.contains("secret"), "{no_secret}");
        let algorithm = refused("[auth.jwt]\nalgorithm = \"XX1\"\nsecret = \"k\"\n");
        assert!(
            algorithm.contains("XX1") || algorithm.contains("variant"),
            "{algorithm}"
        );
        let no_procedure = refused("[auth.dynamic]\nrealm = \"a\"\nprocedure = \"\"\n");
        assert!(no_procedure.contains("procedure"), "{no_procedure}");
        let long = refused("[auth.http]\nurl = \"http://h/a\"\ntimeout_ms = 10000\n");
        assert!(long.contains("handshake_timeout_ms"), "{long}");
    }
}
