//! The router's configuration file with environment overrides (router/src/config/mod.rs and
//! the settings it re-exports, compiled in by path: the fox-router crate itself would
//! build RocksDB). The input is `FOXROUTER_<SECTION>__<KEY>=<value>` lines, then the TOML
//! text. Never panics; a configuration that is accepted holds what the router relies on
//! when it starts (every user's role exists, limits at least 1, keys that parse), and an
//! override that restates one of its values changes nothing.
#![no_main]

#[allow(dead_code, missing_docs, unused_imports)]
#[path = "../../router/src/config/mod.rs"]
mod config;

#[allow(dead_code, missing_docs)]
#[path = "../../router/src/cryptosign.rs"]
mod cryptosign;

// The modules live at the crate root (a `#[path]` inside an inline module is resolved
// from a directory that does not exist) and are re-exported where config.rs looks.
#[allow(dead_code, missing_docs)]
#[path = "../../router/src/admin/settings.rs"]
mod admin_settings;
#[allow(dead_code, missing_docs)]
#[path = "../../router/src/auth/settings.rs"]
mod auth_settings;
#[allow(dead_code, missing_docs)]
#[path = "../../router/src/tls/settings.rs"]
mod tls_settings;

mod admin {
    pub(crate) use super::admin_settings as settings;
}

mod tls {
    pub(crate) use super::tls_settings::TlsSettings;
}

mod auth {
    pub(crate) use super::auth_settings as settings;
}

/// Stands in for router/src/auth/jwt.rs (auth/settings.rs reaches it as `super::jwt`),
/// whose `JwtVerifier::new` reads `public_key_file`: a fuzzer must not open the files its
/// inputs name (`/dev/stdin` would hang it). The real key checks have their own unit tests.
mod jwt {
    pub struct JwtVerifier;
    impl JwtVerifier {
        pub fn new(_: &crate::auth_settings::JwtSettings) -> Result<Self, String> {
            Ok(Self)
        }
    }
}

use config::Config;

/// Splits the input into its leading override lines and the TOML text after them.
fn split(text: &str) -> (Vec<(String, String)>, &str) {
    let mut overrides = Vec::new();
    let mut rest = text;
    loop {
        let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
        let Some((name, value)) = line.split_once('=') else {
            break;
        };
        if !name.starts_with(config::ENV_PREFIX) || name.contains(char::is_whitespace) {
            break;
        }
        overrides.push((name.to_owned(), value.to_owned()));
        rest = after;
    }
    (config::env_overrides(overrides.into_iter()), rest)
}

fn check(text: &str) {
    let (overrides, toml_text) = split(text);
    let Ok(config) = Config::parse_with(toml_text, "fuzz.toml", &overrides) else {
        return;
    };
    let role_defined = |role: &str| {
        role == config.auth.anonymous_role || config.roles.iter().any(|r| r.name == role)
    };
    for (i, user) in config.users.iter().enumerate() {
        assert!(
            role_defined(&user.role),
            "user {} has an undefined role",
            user.authid
        );
        assert!(
            config.users[..i].iter().all(|u| u.authid != user.authid),
            "user {} twice",
            user.authid
        );
        for key in &user.pubkeys {
            assert!(
                cryptosign::public_key(key).is_some(),
                "pubkey {key:?} accepted"
            );
        }
        assert!(user.http_tokens.iter().all(|t| t.chars().count() >= 16));
    }
    assert!(config.limits.message_size_max_bytes >= 512);
    assert!(config.limits.session_queue_max >= 1);
    assert!(config.limits.connections_max >= 1);
    assert!(config.limits.handshake_timeout_ms >= 1);

    // Restating a value through the environment changes nothing.
    let mut restated = overrides.clone();
    restated.push((
        "FOXROUTER_LIMITS__MESSAGE_SIZE_MAX_BYTES".to_owned(),
        config.limits.message_size_max_bytes.to_string(),
    ));
    match Config::parse_with(toml_text, "fuzz.toml", &restated) {
        Ok(again) => assert_eq!(format!("{again:?}"), format!("{config:?}")),
        Err(error) => panic!("restating message_size_max_bytes refused: {error}"),
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
});
