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
        if !self.url.starts_with("http://") {
            return Err(format!(
                "auth.http.url '{}': only http:// URLs are supported",
                self.url
            ));
        }
        if self.url.parse::<hyper::Uri>().is_err() {
            return Err(format!("auth.http.url '{}' is not a URL", self.url));
        }
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
