//! Unit tests of the configured users' authentication (moved out of `mod.rs`).

use super::*;

fn config() -> Arc<Config> {
    Arc::new(
        Config::parse(
            r#"
[auth]
anonymous = false
[[role]]
name = "r"
permissions = [
  { uri = "com.", match = "prefix", publish = true, subscribe = true },
  { uri = "com.secret", call = false },
  { uri = "com.secret.", match = "prefix" },
]
[[user]]
authid = "joe"
secret = "pw"
role = "r"
[[user]]
authid = "salty"
secret = "pw"
salt = "salt123"
iterations = 100
keylen = 32
role = "r"
realms = ["only"]
[[user]]
authid = "keyonly"
pubkeys = ["3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"]
role = "r"
"#,
            "t",
        )
        .unwrap(),
    )
}

#[test]
fn ticket_round() {
    let auth = Authenticator::new(config());
    let mut details = Dict::new();
    details.insert("authmethods".into(), Value::List(vec!["ticket".into()]));
    details.insert("authid".into(), "joe".into());
    let HelloOutcome::Challenge { pending, .. } = auth.hello("realm1", &details, 1, "n", "t", None)
    else {
        panic!("expected a challenge")
    };
    assert_eq!(auth.authenticate(pending, "pw").unwrap().authrole, "r");
}

#[test]
fn salted_wampcra_matches_autobahn_derivation() {
    let user = config().user("salty").unwrap().clone();
    // autobahn.wamp.auth.derive_key("pw", "salt123", 100, 32)
    let key = cra_key(&user);
    let expected = {
        let mut d = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"pw", b"salt123", 100, &mut d);
        base64::engine::general_purpose::STANDARD.encode(d)
    };
    assert_eq!(key, expected.into_bytes());
}

#[test]
fn realm_restriction_and_anonymous_off() {
    let auth = Authenticator::new(config());
    let mut details = Dict::new();
    details.insert("authmethods".into(), Value::List(vec!["wampcra".into()]));
    details.insert("authid".into(), "salty".into());
    assert!(matches!(
        auth.hello("other", &details, 1, "n", "t", None),
        HelloOutcome::Abort { .. }
    ));
    assert!(matches!(
        auth.hello("only", &details, 1, "n", "t", None),
        HelloOutcome::Challenge { .. }
    ));
    assert!(matches!(
        auth.hello("only", &Dict::new(), 1, "n", "t", None),
        HelloOutcome::Abort {
            reason: fox_wamp_proto::ErrorUri::NoAuthMethod,
            ..
        }
    ));
    assert_eq!(
        auth.mqtt_login(None, None, "c").unwrap_err(),
        LoginRefused::NotAuthorized
    );
    assert_eq!(
        auth.mqtt_login(Some("joe@r2"), Some(b"pw"), "c").unwrap().1,
        "r2"
    );
    assert_eq!(
        auth.mqtt_login(Some("joe"), Some(b"bad"), "c").unwrap_err(),
        LoginRefused::BadCredentials
    );
    // Anonymous off: an unknown user is refused, with or without a password.
    for password in [None, Some(&b"x"[..])] {
        assert_eq!(
            auth.mqtt_login(Some("stranger"), password, "c")
                .unwrap_err(),
            LoginRefused::BadCredentials
        );
    }
    assert_eq!(
        auth.mqtt_login(Some("salty@other"), Some(b"pw"), "c")
            .unwrap_err(),
        LoginRefused::NotAuthorized
    );
}

/// As Mosquitto's `allow_anonymous`: on a router that allows anonymous sessions, a
/// username that names no configured user, sent without a password, logs in
/// anonymously as that authid in the realm its suffix names; a configured user still
/// needs its password, and an unknown user with a password is refused.
#[test]
fn unknown_mqtt_username_without_password_is_anonymous_when_allowed() {
    let config = Config::parse(
        "[[role]]\nname = \"r\"\n[[user]]\nauthid = \"joe\"\nsecret = \"pw\"\nrole = \"r\"\n",
        "t",
    )
    .unwrap();
    let auth = Authenticator::new(Arc::new(config));
    let (identity, realm) = auth.mqtt_login(Some("fox@realm2"), None, "c").unwrap();
    assert_eq!(identity.authid, "fox");
    assert_eq!(identity.authrole, "anonymous");
    assert_eq!(identity.authmethod, "anonymous");
    assert_eq!(realm, "realm2");
    let (identity, realm) = auth.mqtt_login(Some("device"), None, "c").unwrap();
    assert_eq!(
        (identity.authid.as_str(), realm.as_str()),
        ("device", "realm1")
    );
    let (identity, _) = auth.mqtt_login(None, None, "client-7").unwrap();
    assert_eq!(identity.authid, "client-7");
    for password in [None, Some(&b"bad"[..])] {
        assert_eq!(
            auth.mqtt_login(Some("joe"), password, "c").unwrap_err(),
            LoginRefused::BadCredentials,
            "a configured user needs its password"
        );
    }
    assert_eq!(
        auth.mqtt_login(Some("fox"), Some(b"pw"), "c").unwrap_err(),
        LoginRefused::BadCredentials,
        "an unknown user with a password"
    );
    assert_eq!(
        auth.mqtt_login(Some("joe"), Some(b"pw"), "c")
            .unwrap()
            .0
            .authrole,
        "r"
    );
}

/// A user with only public keys has no password: ticket, WAMP-CRA and MQTT logins are
/// refused for it (an empty password must not match an empty secret).
#[test]
fn key_only_users_have_no_password() {
    let auth = Authenticator::new(config());
    for password in [None, Some(&b""[..])] {
        assert!(auth.mqtt_login(Some("keyonly"), password, "c").is_err());
    }
    for method in ["ticket", "wampcra"] {
        let mut details = Dict::new();
        details.insert("authmethods".into(), Value::List(vec![method.into()]));
        details.insert("authid".into(), Value::from("keyonly"));
        let outcome = auth.hello("realm1", &details, 1, "n", "t", None);
        assert!(
            matches!(
                outcome,
                HelloOutcome::Abort {
                    reason: fox_wamp_proto::ErrorUri::NoAuthMethod,
                    ..
                }
            ),
            "{method}: {outcome:?}"
        );
    }
}
