use super::*;

#[test]
fn environment_overrides_set_keys_of_sections_and_subsections() {
    let vars = [
        ("FOXROUTER_LIMITS__SESSION_QUEUE_MAX", "100"),
        ("FOXROUTER_LISTEN__WS", "127.0.0.1:9999"),
        ("FOXROUTER_AUTH__ANONYMOUS", "false"),
        ("FOXROUTER_ROUTER__REALMS", "[\"a\", \"b\"]"),
        ("FOXROUTER_AUTH__HTTP__URL", "http://127.0.0.1:9/auth"),
        ("FOXROUTER_BIN", "/not/a/setting"),
        ("HOME", "/root"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let overrides = env_overrides(vars.into_iter());
    assert_eq!(overrides.len(), 5, "FOXROUTER_BIN has no section");
    let config = Config::from_sources(None, &overrides).unwrap();
    assert_eq!(config.limits.session_queue_max, 100);
    assert_eq!(config.listen.ws.unwrap().port(), 9999);
    assert!(!config.auth.anonymous);
    assert_eq!(config.router.realms, ["a", "b"]);
    assert_eq!(config.auth.http.unwrap().url, "http://127.0.0.1:9/auth");
}

#[test]
fn environment_overrides_beat_the_file_and_bad_ones_name_the_variable() {
    let dir = std::env::temp_dir().join(format!("foxrouter-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::write(
        &file,
        "[limits]\nsession_queue_max = 7\nmessage_size_max_bytes = 5000\n",
    )
    .unwrap();
    let one = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
    let config = Config::from_sources(
        Some(&file),
        &one("FOXROUTER_LIMITS__SESSION_QUEUE_MAX", "9"),
    )
    .unwrap();
    assert_eq!(
        (
            config.limits.session_queue_max,
            config.limits.message_size_max_bytes
        ),
        (9, 5000)
    );
    let unknown = Config::from_sources(Some(&file), &one("FOXROUTER_LIMITS__BOGUS", "1"))
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("bogus") && unknown.contains("FOXROUTER_LIMITS__BOGUS"),
        "{unknown}"
    );
    let zero = Config::from_sources(None, &one("FOXROUTER_LIMITS__SESSION_QUEUE_MAX", "0"))
        .unwrap_err()
        .to_string();
    assert!(zero.contains("at least 1"), "{zero}");
    let scalar = Config::from_sources(
        Some(&file),
        &one("FOXROUTER_LIMITS__SESSION_QUEUE_MAX__X", "1"),
    )
    .unwrap_err()
    .to_string();
    assert!(scalar.contains("not a section"), "{scalar}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_file_is_the_default() {
    let c = Config::parse("", "t").unwrap();
    assert_eq!(c.listen.ws, Some("127.0.0.1:8080".parse().unwrap()));
    assert!(c.router.auto_create_realms);
    assert_eq!(c.router.workers, 0, "one worker per core");
    let c = Config::parse("[router]\nworkers = 1\n", "t").unwrap();
    assert_eq!(c.router.workers, 1);
}

#[test]
fn unknown_key_names_its_line() {
    let err = Config::parse("[limits]\nsession_queue_max = 3\nbogus = 1\n", "f.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn http_tokens_are_long_and_belong_to_one_user() {
    let user = |name: &str, token: &str| {
        format!(
            "[[user]]\nauthid = \"{name}\"\nrole = \"anonymous\"\nhttp_tokens = [\"{token}\"]\n"
        )
    };
    Config::parse(&user("bot", "0123456789abcdef"), "f").expect("a token alone is enough");
    let short = Config::parse(&user("bot", "short"), "f")
        .unwrap_err()
        .to_string();
    assert!(short.contains("shorter than 16"), "{short}");
    let twice = format!(
        "{}{}",
        user("a", "0123456789abcdef"),
        user("b", "0123456789abcdef")
    );
    let twice = Config::parse(&twice, "f").unwrap_err().to_string();
    assert!(twice.contains("another user's"), "{twice}");
}

#[test]
fn users_need_a_secret_or_valid_pubkeys() {
    let anonymous_role = "[[user]]\nauthid = \"a\"\nrole = \"anonymous\"\n";
    let err = Config::parse(anonymous_role, "f").unwrap_err().to_string();
    assert!(
        err.contains("neither a secret, pubkeys nor http_tokens"),
        "{err}"
    );
    let bad_key = format!("{anonymous_role}pubkeys = [\"{}\"]\n", "ab".repeat(31));
    let err = Config::parse(&bad_key, "f").unwrap_err().to_string();
    assert!(err.contains("not an Ed25519 public key"), "{err}");
    let key = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
    let good = format!("{anonymous_role}pubkeys = [\"{key}\"]\n");
    let config = Config::parse(&good, "f").unwrap();
    assert_eq!(config.user("a").map(|u| u.secret.as_str()), Some(""));
}

#[test]
fn undefined_role_is_refused() {
    let err = Config::parse(
        "[[user]]\nauthid = \"a\"\nsecret = \"s\"\nrole = \"nope\"\n",
        "f.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("role 'nope'"), "{err}");
}

#[test]
fn duplicates_and_limits_that_refuse_everything_are_refused() {
    let refused = [
        ("[[role]]\nname = \"r\"\n[[role]]\nname = \"r\"\n", "defined twice"),
        ("[[user]]\nauthid = \"a\"\nsecret = \"s\"\nrole = \"anonymous\"\n[[user]]\nauthid = \"a\"\nsecret = \"t\"\nrole = \"anonymous\"\n", "defined twice"),
        ("[limits]\nmessage_size_max_bytes = 100\n", "at least 512"),
        ("[limits]\nsession_queue_max = 0\n", "session_queue_max"),
        ("[limits]\nconnections_max = 0\n", "connections_max"),
        ("[limits]\nhandshake_timeout_ms = 0\n", "handshake_timeout_ms"),
        ("[limits]\nsubscriptions_per_session_max = 0\n", "subscriptions_per_session_max"),
        ("[limits]\ncalls_in_flight_per_session_max = 0\n", "calls_in_flight_per_session_max"),
        ("[limits]\nwrite_timeout_ms = 0\n", "write_timeout_ms"),
        ("[limits]\nlistener_connections_max = { amqp = 5 }\n", "no listener is called 'amqp'"),
        ("[limits]\nlistener_connections_max = { mqtt = 0 }\n", "listener_connections_max.mqtt must be at least 1"),
    ];
    let ok = "[limits]\nlistener_connections_max = { mqtts = 5, ws = 7 }\n";
    let limits = Config::parse(ok, "f.toml")
        .unwrap()
        .limits
        .listener_connections_max;
    assert_eq!(limits.get("ws"), Some(&7));
    for (text, says) in refused {
        let err = Config::parse(text, "f.toml").unwrap_err().to_string();
        assert!(err.contains(says), "{text}: {err}");
    }
    let err = Config::load(Path::new("/nonexistent/foxrouter.toml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/foxrouter.toml"),
        "{err}"
    );
}

/// The module docs' example of deny rules parses, and an unknown key in a deny rule
/// is refused like one in a permission.
#[test]
fn deny_rules_parse() {
    let text = r#"
[[role]]
name = "anonymous"
permissions = [ { uri = "", match = "prefix", publish = true, subscribe = true, call = true, register = true } ]
deny = [
  { uri = "test.nosubscribe", subscribe = true },                      # MQTT test/nosubscribe
  { uri = "com.example.admin.", match = "prefix", call = true, publish = true },
]
"#;
    let config = Config::parse(text, "t").unwrap();
    let role = config.role("anonymous").unwrap();
    assert_eq!(role.deny.len(), 2);
    assert!(role.deny[0].subscribe && !role.deny[0].publish);
    assert_eq!(role.deny[1].match_policy, PermissionMatch::Prefix);
    let err = Config::parse(
        "[[role]]\nname = \"r\"\ndeny = [ { uri = \"a\", allow = true } ]\n",
        "f",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("allow"), "{err}");
}

#[test]
fn listener_can_be_turned_off() {
    let c = Config::parse("[listen]\nmqtt = \"\"\n", "t").unwrap();
    assert_eq!(c.listen.mqtt, None);
}
