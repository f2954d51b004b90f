//! Configuration: listeners, limits, realms, roles and users.
//!
//! Everything has a default, so `foxrouter serve` needs no file. A TOML file (`--config`)
//! carries the same settings; unknown keys are errors, and a bad file is refused with the
//! line and the reason. Command-line flags override the file.
//!
//! ```toml
//! [listen]
//! ws = "127.0.0.1:8080"          # WAMP at /ws, MQTT at /mqtt
//! rawsocket = "127.0.0.1:8081"
//! mqtt = "127.0.0.1:1883"
//!
//! [admin]                        # docs/admin.md
//! listen = "127.0.0.1:8090"      # "off" turns it off
//! # token = "..."                # required when listen is not a loopback address
//!
//! [limits]
//! message_size_max_bytes = 1048576
//! session_queue_max = 4096
//!
//! [router]
//! auto_create_realms = true
//! realms = ["realm1"]
//! mqtt_default_realm = "realm1"
//! workers = 0                    # runtime worker threads; 0: one per CPU core
//! snapshot_records = 10000       # cluster entry with `data`: snapshot its state this often
//!
//! [auth]
//! anonymous = true
//! anonymous_role = "anonymous"
//!
//! # Pluggable authentication of WAMP tickets and MQTT passwords (docs/auth.md); each
//! # section is optional. A JWT-shaped credential goes to [auth.jwt]; an authid of a
//! # [[user]] to its secret; anything else to [auth.http], then [auth.dynamic].
//! [auth.jwt]
//! algorithm = "HS256"            # or RS256, ES256, EdDSA, ... (one accepted algorithm)
//! secret = "..."                 # HS*; the others: public_key_file = "key.pem"
//! audience = "foxrouter"         # optional; required in tokens when set
//! issuer = "https://issuer"      # optional; required in tokens when set
//! authid_claim = "sub"           # default
//! role_claim = "role"            # default; role_default = "..." for tokens without it
//! leeway_secs = 60               # default
//! realms = []                    # where tokens count; empty: all realms
//!
//! [auth.http]                    # as EMQX's HTTP authenticator
//! url = "http://127.0.0.1:9000/auth"
//! timeout_ms = 5000              # default, waiting for a request slot included
//! concurrency_max = 64           # default
//! cache_ms = 0                   # default: no cache
//! cache_entries_max = 10000      # default
//!
//! [auth.dynamic]                 # as Crossbar.io's dynamic authenticator
//! realm = "auth"                 # where a session registered the procedure
//! procedure = "com.example.authenticate"
//! timeout_ms = 5000              # default, waiting for a call slot included
//! calls_in_flight_max = 64       # default
//!
//! # Authorization hooks (docs/auth.md): asked per publish / subscribe / call / register
//! # (answers cached per session); "ignore" leaves it to the roles' rules below.
//! [authorization]
//! realms = []                    # where the hooks are asked; empty: all
//! roles = []                     # whose sessions; empty: all
//! cache_ms = 60000               # default
//! cache_entries_max = 256        # per session, default
//! [authorization.http]           # as EMQX's HTTP authorizer
//! url = "http://127.0.0.1:9000/authorize"
//! [authorization.dynamic]        # as Crossbar.io's dynamic authorizer
//! realm = "auth"
//! procedure = "com.example.authorize"
//!
//! [[role]]
//! name = "backend"
//! permissions = [ { uri = "com.example.", match = "prefix", publish = true, subscribe = true, call = true, register = true } ]
//!
//! # Everything except one subtree (the usual ACL). Configuring the anonymous role turns off
//! # its allow-all default, so the first rule gives everything back.
//! [[role]]
//! name = "anonymous"
//! permissions = [ { uri = "", match = "prefix", publish = true, subscribe = true, call = true, register = true } ]
//! deny = [
//!   { uri = "test.nosubscribe", subscribe = true },                      # MQTT test/nosubscribe
//!   { uri = "com.example.admin.", match = "prefix", call = true, publish = true },
//! ]
//!
//! [tls]                          # docs/tls.md; relative paths from this file's directory
//! cert = "server.pem"            # PEM chain, leaf first
//! key = "server-key.pem"
//! mqtt = "127.0.0.1:8883"        # MQTT over TLS (the default; "" turns it off)
//! ws = "127.0.0.1:8443"          # wss://.../ws and wss://.../mqtt (default off)
//! rawsocket = "127.0.0.1:8444"   # RawSocket over TLS (default off)
//! admin = false                  # true: the admin listener speaks HTTPS
//! # client_ca = "ca.pem"         # ask for client certificates, verified against it
//! # client_cert = "optional"     # or "required"
//! # identity = "cn"              # or "san": the certificate names the user (MQTT user
//! #                              # name, WAMP authmethod "tls"); "none" by default
//!
//! [[user]]
//! authid = "joe"
//! secret = "s3cret"              # ticket, wampcra and MQTT password
//! role = "backend"
//!
//! [[user]]
//! authid = "worker"
//! pubkeys = ["<64 hex digits>"]  # WAMP-Cryptosign (Ed25519) public keys
//! role = "backend"
//! ```
//!
//! ## Environment overrides
//!
//! `FOXROUTER_<SECTION>__<KEY>=<value>` sets a key of a section (`__` between the levels,
//! any case): `FOXROUTER_LIMITS__SESSION_QUEUE_MAX=100` is `[limits] session_queue_max =
//! 100`, `FOXROUTER_AUTH__HTTP__URL=http://...` is `[auth.http] url`. The value is read as
//! TOML where it is one (numbers, booleans, arrays, quoted strings), else as a string
//! (`127.0.0.1:8080`, `off`); quote it to force a string. The environment beats the file,
//! the command-line flags beat both. Arrays of tables (`[[role]]`, `[[user]]`) come only
//! from the file. A variable naming an unknown key is an error that names the variable;
//! variables without `__` (`FOXROUTER_BIN`) are not settings. `foxrouter check --config
//! FILE` validates a file with the environment's overrides.
//!
//! ## Permissions
//!
//! A role's `permissions` allow, its `deny` rules deny. A rule matches a URI exactly
//! (`match = "exact"`, the default) or as a string prefix (`match = "prefix"`; `""` matches
//! every URI); MQTT topics are checked in their WAMP spelling (`a/b/c` is `a.b.c`). For one
//! action on one URI, the most specific matching rule decides: an exact rule before any
//! prefix, a longer prefix before a shorter one. The candidates are every matching
//! permission (it allows the actions it sets to `true` and denies the others) and every
//! matching deny rule that names the action; at equal specificity a deny rule wins. No
//! matching rule denies. A role that is not configured has no rights, except the anonymous
//! role, which then allows everything (the embedded default); configure it to restrict it.
//!
//! A subscription or registration is checked on its own URI (a WAMP pattern as written,
//! an MQTT filter in WAMP spelling: `a/+/c` is `a..c`, `a/#` is the prefix `a.`), so one
//! that lies inside a denied subtree is refused (WAMP ERROR `wamp.error.not_authorized`,
//! MQTT SUBACK 0x87 in 5.0, 0x80 in 3.1.1). A pattern subscription that is granted but
//! also covers denied topics (`#`, `test/+`, shared ones too) stays, and the events of the
//! topics its session's role may not subscribe to are not delivered to it (nor replayed as
//! history or retained), as Mosquitto and EMQX filter their deliveries. Likewise a pattern
//! registration is not invoked for a procedure its callee's role may not register.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

pub use crate::admin::settings::{AdminListen, AdminSettings, ADMIN_LISTEN_DEFAULT};
pub use crate::auth::settings::{
    AuthorizationSettings, DynamicSettings, HttpHookSettings, JwtSettings,
};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The reason.
        source: std::io::Error,
    },
    /// The TOML is invalid or has an unknown or mistyped key (the message names the line).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// toml's message, with line and column.
        message: String,
    },
    /// The settings contradict each other.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen addresses.
    pub listen: Listen,
    /// The admin HTTP listener (`docs/admin.md`).
    pub admin: AdminSettings,
    /// Size and queue limits.
    pub limits: Limits,
    /// Realm handling.
    pub router: RouterSettings,
    /// Authentication.
    pub auth: AuthSettings,
    /// Authorization hooks (`[authorization]`, `docs/auth.md`); the roles' rules decide
    /// without them.
    pub authorization: AuthorizationSettings,
    /// Roles and their permissions.
    #[serde(rename = "role")]
    pub roles: Vec<Role>,
    /// Users.
    #[serde(rename = "user")]
    pub users: Vec<User>,
    /// TLS: certificate, key, client certificates, TLS listeners (`docs/tls.md`).
    pub tls: Option<crate::tls::TlsSettings>,
}

/// Listen addresses; `None` turns a listener off (only from a file: `ws = ""`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// WebSocket: WAMP at `/ws`, MQTT at `/mqtt`.
    #[serde(deserialize_with = "optional_addr")]
    pub ws: Option<SocketAddr>,
    /// WAMP RawSocket.
    #[serde(deserialize_with = "optional_addr")]
    pub rawsocket: Option<SocketAddr>,
    /// MQTT over TCP.
    #[serde(deserialize_with = "optional_addr")]
    pub mqtt: Option<SocketAddr>,
    /// MQTT over TCP: send every MQTT 5 delivery's permanent ID as the user property
    /// `fox-id` without the client asking for it (`docs/mqtt.md`). Default false.
    pub mqtt_fox_id: bool,
    /// MQTT over WebSocket (`/mqtt` on `ws`): the same as `mqtt_fox_id`. Default false.
    pub ws_mqtt_fox_id: bool,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            ws: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            rawsocket: Some(SocketAddr::from(([127, 0, 0, 1], 8081))),
            mqtt: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
            mqtt_fox_id: false,
            ws_mqtt_fox_id: false,
        }
    }
}

pub(crate) fn optional_addr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// Limits, with units in their names. Defaults are documented on each field.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest WAMP message, or MQTT PUBLISH payload, accepted, in bytes. Default 1 MiB.
    /// MQTT packets may be 64 KiB larger (topic, properties; `docs/mqtt.md`).
    pub message_size_max_bytes: usize,
    /// Messages queued toward one session before the slow-consumer policy applies.
    /// Default 4096. Events past it are dropped and counted; a session whose queue is
    /// still full for a non-event message (RESULT, INVOCATION, ERROR) is closed.
    pub session_queue_max: usize,
    /// Longest call timeout a caller may ask for, in milliseconds. Default 10 minutes.
    pub call_timeout_max_ms: u64,
    /// Time a client has to finish HELLO / authentication, in milliseconds. Default 10 s.
    pub handshake_timeout_ms: u64,
    /// Longest one write to a client may block, in milliseconds: a client that stopped
    /// reading (its TCP window and our socket buffer full) is disconnected after it, WAMP
    /// and MQTT alike (an MQTT will is published). Default 30 s.
    pub write_timeout_ms: u64,
    /// Most concurrent client connections. Default 100,000.
    pub connections_max: usize,
    /// Most concurrent connections on one client listener, by listener name (`ws`,
    /// `rawsocket`, `mqtt`, `wss`, `rawsockets`, `mqtts`), within `connections_max`:
    /// `listener_connections_max = { mqtt = 50000, ws = 10000 }`. A listener not named
    /// has only the shared limit (the default: none named). At the limit a connection is
    /// refused as at `connections_max`.
    pub listener_connections_max: std::collections::BTreeMap<String, usize>,
    /// Most new connections per second from one source address (IP), over all client
    /// listeners; a burst of this many is allowed. 0: no limit (the default). A connection
    /// past it is closed at once, before any handshake; refusals are logged once per
    /// address and 10 s with their count.
    pub connection_rate_per_ip_max: u32,
    /// Most subscriptions one session holds (WAMP subscriptions, MQTT topic filters).
    /// Default 10,000. One more is refused: WAMP ERROR `fox.error.limit_exceeded`, MQTT 5
    /// SUBACK 0x97 Quota exceeded, 3.1.1 0x80; re-subscribing the same topic or filter is
    /// not one more.
    pub subscriptions_per_session_max: usize,
    /// Most WAMP calls one session has in flight (routed to a callee, final RESULT or
    /// ERROR not yet sent back). Default 10,000. One more is answered at once with ERROR
    /// `fox.error.limit_exceeded`.
    pub calls_in_flight_per_session_max: usize,
    /// Most messages per second one session sends (WAMP messages, MQTT packets), with a
    /// burst of as many. 0: no limit (the default). Over it the connection stops reading
    /// until the session is back under the rate (TCP slows the client; it is not
    /// disconnected), logged once per session.
    pub session_message_rate_max: u32,
    /// Recent messages each realm keeps in memory for `after` replay and event history.
    /// Default 10,000. Older ones come from the store with `--data`.
    pub history_max_messages: usize,
    /// With `--data`: keep at most this many messages of history (default: no limit).
    pub history_retention_count: Option<u64>,
    /// With `--data`: drop history older than this many milliseconds (default: no limit).
    pub history_retention_age_ms: Option<u64>,
    /// With `--data`: keep at most this many bytes of history (default: no limit).
    pub history_retention_bytes: Option<u64>,
    /// With `--data`: how often retention runs, in milliseconds. Default 10 s.
    pub history_compaction_interval_ms: u64,
    /// MQTT: outbound QoS 1/2 messages in flight per client (further capped by the
    /// client's Receive Maximum). Default 100, as rumqttd's shipped config: one
    /// subscriber receives at most this many messages per round trip to it.
    pub mqtt_inflight_max: u16,
    /// MQTT: inbound QoS 2 messages in flight per client (our Receive Maximum). Default 64.
    pub mqtt_receive_max: u16,
    /// MQTT 5: topic aliases a client may define (our Topic Alias Maximum). Default 64.
    pub mqtt_topic_alias_max: u16,
    /// MQTT: longest keep alive granted, in seconds; a client asking for more (or for 0)
    /// gets this as Server Keep Alive (5.0). Default 65,535 (no cap; 0 stays allowed).
    pub mqtt_keep_alive_max_secs: u16,
    /// MQTT 5: a refused subscription (deny rule, no permission) is answered in SUBACK with
    /// 0x80 Unspecified error instead of 0x87 Not authorized. For clients that accept only
    /// 0x80 there (the Eclipse paho.mqtt.testing client library asserts it); MQTT 3.1.1
    /// always gets 0x80, its only failure code. Default false.
    pub mqtt_v5_subscribe_refused_unspecified: bool,
    /// MQTT: longest a persistent session is kept while its client is away, in seconds.
    /// Caps MQTT 5 Session Expiry Interval and is the expiry of MQTT 3.x clean-session-0
    /// sessions. Default 7 days.
    pub mqtt_session_expiry_max_secs: u32,
    /// MQTT: how often `$SYS/broker/...` statistics are published, in milliseconds
    /// (Mosquitto's `sys_interval`). 0 disables them. Default 10 s.
    pub mqtt_sys_interval_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            message_size_max_bytes: 1 << 20,
            session_queue_max: 4096,
            call_timeout_max_ms: 600_000,
            handshake_timeout_ms: 10_000,
            write_timeout_ms: 30_000,
            connections_max: 100_000,
            listener_connections_max: std::collections::BTreeMap::new(),
            connection_rate_per_ip_max: 0,
            subscriptions_per_session_max: 10_000,
            calls_in_flight_per_session_max: 10_000,
            session_message_rate_max: 0,
            history_max_messages: 10_000,
            history_retention_count: None,
            history_retention_age_ms: None,
            history_retention_bytes: None,
            history_compaction_interval_ms: 10_000,
            mqtt_inflight_max: 100,
            mqtt_receive_max: 64,
            mqtt_topic_alias_max: 64,
            mqtt_keep_alive_max_secs: u16::MAX,
            mqtt_v5_subscribe_refused_unspecified: false,
            mqtt_session_expiry_max_secs: 7 * 24 * 3600,
            mqtt_sys_interval_ms: 10_000,
        }
    }
}

/// Realm handling.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterSettings {
    /// Create a realm when a client first joins it. Default true.
    pub auto_create_realms: bool,
    /// Realms that exist from the start.
    pub realms: Vec<String>,
    /// Realm of MQTT clients whose username does not name one (`user@realm`).
    pub mqtt_default_realm: String,
    /// Runtime worker threads; 0 (the default) is one per CPU core.
    pub workers: usize,
    /// A cluster entry whose `cluster.toml` node has `data` writes a snapshot of the state
    /// it derives from the log there after this many records (and every 30 s while fewer
    /// come), and restarts from it instead of replaying the log from its start. Default
    /// 10,000.
    pub snapshot_records: u64,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            auto_create_realms: true,
            realms: vec!["realm1".to_owned()],
            mqtt_default_realm: "realm1".to_owned(),
            workers: 0,
            snapshot_records: 10_000,
        }
    }
}

/// The client listeners' names (`LISTEN <name> <addr>`), as
/// `limits.listener_connections_max` names them.
pub const LISTENER_NAMES: &[&str] = &["ws", "rawsocket", "mqtt", "wss", "rawsockets", "mqtts"];

impl Config {
    /// Reads and validates a file, with the environment's overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_sources(Some(path), &env_overrides(std::env::vars()))
    }

    /// The configuration of a file (or none: the defaults) with `overrides` applied on
    /// top (`FOXROUTER_<SECTION>__<KEY>=<value>`, from [`env_overrides`]), validated. The
    /// value is read as TOML where it is one (numbers, booleans, arrays, quoted strings),
    /// else as a string. Command-line flags come on top of both.
    pub fn from_sources(
        path: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let name = path.map_or_else(|| "(no file)".to_owned(), |p| p.display().to_string());
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: name.clone(),
                source,
            })?,
            None => String::new(),
        };
        let mut config = Self::parse_with(&text, &name, overrides)?;
        if let (Some(tls), Some(dir)) = (config.tls.as_mut(), path.and_then(Path::parent)) {
            tls.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Parses TOML text with `overrides` applied on top (as [`Config::from_sources`]),
    /// and validates it; `name` is used in messages. Relative paths stay as written.
    pub fn parse_with(
        text: &str,
        name: &str,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        if overrides.is_empty() {
            return Self::parse(text, name);
        }
        let parse_error = |message: String| ConfigError::Parse {
            path: name.to_owned(),
            message,
        };
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| parse_error(e.to_string().trim_end().to_owned()))?;
        apply_env(&mut table, overrides).map_err(parse_error)?;
        let names: Vec<&str> = overrides.iter().map(|(n, _)| n.as_str()).collect();
        let config: Config = toml::Value::Table(table).try_into().map_err(|e| {
            parse_error(format!(
                "{} (with the environment's {})",
                e.to_string().trim_end(),
                names.join(", ")
            ))
        })?;
        config.validated(name)
    }

    /// Parses and validates TOML text; `name` is used in messages.
    pub fn parse(text: &str, name: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: name.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validated(name)
    }

    /// The configuration if it is valid; `name` is used in the message if not.
    fn validated(self, name: &str) -> Result<Self, ConfigError> {
        self.validate().map_err(|message| ConfigError::Invalid {
            path: name.to_owned(),
            message,
        })?;
        Ok(self)
    }

    // Long, as a checklist is: one check after another, each with its own message.
    fn validate(&self) -> Result<(), String> {
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        let mut roles = HashMap::new();
        for role in &self.roles {
            if roles.insert(role.name.as_str(), role).is_some() {
                return Err(format!("role '{}' is defined twice", role.name));
            }
        }
        let mut users = HashMap::new();
        let mut tokens = std::collections::HashSet::new();
        for user in &self.users {
            if users.insert(user.authid.as_str(), user).is_some() {
                return Err(format!("user '{}' is defined twice", user.authid));
            }
            if user.secret.is_empty() && user.pubkeys.is_empty() && user.http_tokens.is_empty() {
                return Err(format!(
                    "user '{}' has neither a secret, pubkeys nor http_tokens",
                    user.authid
                ));
            }
            for token in &user.http_tokens {
                if token.chars().count() < 16 {
                    return Err(format!(
                        "user '{}': an http_tokens entry is shorter than 16 characters",
                        user.authid
                    ));
                }
                if !tokens.insert(token.as_str()) {
                    return Err(format!(
                        "user '{}': an http_tokens entry is also another user's",
                        user.authid
                    ));
                }
            }
            if let Some(bad) = user
                .pubkeys
                .iter()
                .find(|k| crate::cryptosign::public_key(k).is_none())
            {
                return Err(format!(
                    "user '{}': pubkey '{bad}' is not an Ed25519 public key (64 hex digits)",
                    user.authid
                ));
            }
            if !roles.contains_key(user.role.as_str()) && user.role != self.auth.anonymous_role {
                return Err(format!(
                    "user '{}' has role '{}', which no [[role]] defines",
                    user.authid, user.role
                ));
            }
        }
        if self.limits.message_size_max_bytes < 512 {
            return Err("limits.message_size_max_bytes must be at least 512".to_owned());
        }
        if self.limits.session_queue_max == 0 {
            return Err("limits.session_queue_max must be at least 1".to_owned());
        }
        // A zero would refuse every connection, handshake, subscription or call.
        let at_least_one = [
            ("connections_max", self.limits.connections_max as u64),
            ("handshake_timeout_ms", self.limits.handshake_timeout_ms),
            ("write_timeout_ms", self.limits.write_timeout_ms),
            (
                "subscriptions_per_session_max",
                self.limits.subscriptions_per_session_max as u64,
            ),
            (
                "calls_in_flight_per_session_max",
                self.limits.calls_in_flight_per_session_max as u64,
            ),
        ];
        if let Some((name, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return Err(format!("limits.{name} must be at least 1"));
        }
        for (listener, max) in &self.limits.listener_connections_max {
            if !LISTENER_NAMES.contains(&listener.as_str()) {
                return Err(format!(
                    "limits.listener_connections_max: no listener is called '{listener}' (one of {})",
                    LISTENER_NAMES.join(", ")
                ));
            }
            if *max == 0 {
                return Err(format!(
                    "limits.listener_connections_max.{listener} must be at least 1"
                ));
            }
        }
        self.validate_auth()?;
        self.admin.validate()
    }

    fn validate_auth(&self) -> Result<(), String> {
        if let Some(jwt) = &self.auth.jwt {
            jwt.validate()?;
        }
        if let Some(http) = &self.auth.http {
            http.validate()?;
        }
        if let Some(dynamic) = &self.auth.dynamic {
            dynamic.validate()?;
        }
        self.authorization.validate()?;
        // A WAMP login's wait for its verdict counts against the handshake deadline.
        let handshake_ms = self.limits.handshake_timeout_ms;
        let waits = [
            (
                "auth.http.timeout_ms",
                self.auth.http.as_ref().map(|h| h.timeout_ms),
            ),
            (
                "auth.dynamic.timeout_ms",
                self.auth.dynamic.as_ref().map(|d| d.timeout_ms),
            ),
        ];
        for (name, timeout_ms) in waits {
            if timeout_ms.is_some_and(|t| t >= handshake_ms) {
                return Err(format!(
                    "{name} must be below limits.handshake_timeout_ms ({handshake_ms})"
                ));
            }
        }
        Ok(())
    }

    /// The user with this authid.
    pub fn user(&self, authid: &str) -> Option<&User> {
        self.users.iter().find(|u| u.authid == authid)
    }

    /// The role with this name.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }
}

mod auth;
mod env;

pub use auth::{AuthSettings, Deny, Permission, PermissionMatch, Role, User};
use env::apply_env;
pub use env::{env_overrides, ENV_PREFIX};

#[cfg(test)]
mod tests;
