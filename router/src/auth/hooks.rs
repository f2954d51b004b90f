//! Authorization hooks (`[authorization]`, `docs/auth.md`): the HTTP hook (as EMQX's HTTP
//! authorizer) and the dynamic authorizer (as Crossbar.io's) decide publish, subscribe,
//! call and register on a URI; `ignore` (or a `null` RESULT) leaves the decision to the
//! roles' rules, which stay the default.
//!
//! The checks in the WAMP and MQTT sessions are synchronous. A session the hooks cover
//! keeps a [`SessionAuthorization`]: its answers, cached `cache_ms` per (action, match
//! policy, URI). A message whose answer is not cached is parked by its session
//! ([`SessionAuthorization::queries`]); the connection task awaits [`ask`] without
//! reading, hands the answers back, and the session handles the message, which now finds
//! them. Order is kept: nothing after the parked message is read meanwhile.
//!
//! A hook that fails (timeout, HTTP error, bad answer, procedure not registered) denies,
//! and the failure is logged at most once per 10 seconds with the count since the last.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fox_wamp_proto::{Dict, Message, Value};
use serde::Deserialize;

use super::authorize::Action;
use super::cache::Cache;
use super::dynamic::ProcedureCall;
use super::http::JsonPost;
use super::settings::{covers, AuthorizationSettings};
use crate::connection_rate::Reports;
use crate::realm::SessionInfo;
use crate::router::Router;
use crate::topic::MatchPolicy;

/// A hook's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Permitted.
    Allow,
    /// Refused (also when a hook failed).
    Deny,
    /// Not the hook's business: the next hook, then the role's rules decide.
    Ignore,
}

/// What a decision is about: the action, the URI's match policy, the URI.
pub type Key = (Action, MatchPolicy, String);

/// One decision asked of the hooks: the session and what it wants to do.
#[derive(Clone, Debug)]
pub struct Query {
    /// The action, match policy and URI (WAMP spelling; MQTT topics as `a/b` -> `a.b`).
    pub key: Key,
    /// The session's realm.
    pub realm: String,
    /// The session's ID.
    pub session: u64,
    /// Its authid.
    pub authid: String,
    /// Its role.
    pub authrole: String,
    /// How it authenticated.
    pub authmethod: String,
    /// Who authenticated it.
    pub authprovider: String,
    /// `wamp` or `mqtt`.
    pub protocol: &'static str,
    /// `websocket`, `rawsocket`, `mqtt`, `mqtt-websocket`, ...
    pub transport: &'static str,
    /// The client's IP address.
    pub peer: String,
    /// MQTT: the client identifier.
    pub client_id: Option<String>,
    /// MQTT: the topic or filter as the client sent it.
    pub topic: Option<String>,
}

impl Query {
    /// A query about `key` by the session `info`.
    pub fn new(info: &SessionInfo, protocol: &'static str, key: Key) -> Self {
        Self {
            key,
            realm: info.realm.clone(),
            session: info.id,
            authid: info.identity.authid.clone(),
            authrole: info.identity.authrole.clone(),
            authmethod: info.identity.authmethod.clone(),
            authprovider: info.identity.authprovider.clone(),
            protocol,
            transport: info.transport,
            peer: super::external::peer_host(&info.peer),
            client_id: None,
            topic: None,
        }
    }

    fn action(&self) -> &'static str {
        match self.key.0 {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
            Action::Call => "call",
            Action::Register => "register",
        }
    }

    fn match_policy(&self) -> &'static str {
        match self.key.1 {
            MatchPolicy::Exact => "exact",
            MatchPolicy::Prefix => "prefix",
            MatchPolicy::Wildcard => "wildcard",
        }
    }
}

/// A hook's answer and whether it may be cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decided {
    /// The answer.
    pub answer: Answer,
    /// Whether the session may reuse it for `cache_ms` (a failure, or an answer that
    /// said `"cache": false`, is not reused).
    pub cache: bool,
}

impl Decided {
    fn failed() -> Self {
        Self {
            answer: Answer::Deny,
            cache: false,
        }
    }
}

/// The configured hooks.
#[derive(Debug)]
pub struct AuthorizationHooks {
    settings: AuthorizationSettings,
    http: Option<(JsonPost, Duration)>,
    dynamic: Option<(ProcedureCall, String)>,
    failures: Mutex<Reports>,
}

impl AuthorizationHooks {
    /// The hooks `settings` configure; `None` without any.
    pub fn new(settings: &AuthorizationSettings) -> Option<Self> {
        if !settings.has_hooks() {
            return None;
        }
        let http = settings.http.as_ref().map(|h| {
            (
                JsonPost::new(h.url.clone(), h.concurrency_max),
                Duration::from_millis(h.timeout_ms),
            )
        });
        let dynamic = settings.dynamic.as_ref().map(|d| {
            (
                ProcedureCall::new(&d.realm, &d.procedure, d.timeout_ms, d.calls_in_flight_max),
                d.procedure.clone(),
            )
        });
        Some(Self {
            settings: settings.clone(),
            http,
            dynamic,
            failures: Mutex::new(Reports::default()),
        })
    }

    /// Whether the hooks decide for sessions of `role` on `realm` (never for the router's
    /// own roles).
    pub fn covers(&self, realm: &str, role: &str) -> bool {
        role != "foxrouter"
            && !role.starts_with("foxrouter.")
            && covers(&self.settings.realms, realm)
            && (self.settings.roles.is_empty() || self.settings.roles.iter().any(|r| r == role))
    }

    /// Asks the HTTP hook, then (when it ignores) the dynamic authorizer.
    pub async fn decide(&self, router: &Router, query: &Query) -> Decided {
        if let Some((post, timeout)) = &self.http {
            let decided =
                match tokio::time::timeout(*timeout, post.post::<HttpAnswer>(&http_body(query)))
                    .await
                {
                    Ok(Ok(answer)) => http_decision(answer),
                    Ok(Err(why)) => Err(format!("HTTP hook: {why}")),
                    Err(_) => Err("HTTP hook: timed out".to_owned()),
                };
            match decided {
                Ok(d) if d.answer == Answer::Ignore => {}
                Ok(d) => return d,
                Err(why) => return self.failed(query, &why),
            }
        }
        if let Some((call, procedure)) = &self.dynamic {
            match call.call(router, dynamic_arguments(query)).await {
                Ok(reply) => match dynamic_decision(procedure, reply) {
                    Ok(d) => return d,
                    Err(why) => return self.failed(query, &why),
                },
                Err(why) => return self.failed(query, &why),
            }
        }
        Decided {
            answer: Answer::Ignore,
            cache: true,
        }
    }

    /// A failed hook denies; logged at most once per interval.
    fn failed(&self, query: &Query, why: &str) -> Decided {
        let count = crate::locks::lock(&self.failures).count(Instant::now());
        if let Some(count) = count {
            tracing::warn!(
                realm = %query.realm,
                session = query.session,
                action = query.action(),
                uri = %query.key.2,
                reason = why,
                failures = count,
                "authorization hook failed: denied"
            );
        }
        Decided::failed()
    }

    /// A session's own cache of answers.
    pub fn session(&self) -> SessionAuthorization {
        SessionAuthorization {
            cache: Cache::new(self.settings.cache_ms, self.settings.cache_entries_max),
            fresh: Vec::new(),
        }
    }
}

/// The answers the connection task awaits for a parked message.
pub type Pending = Pin<Box<dyn Future<Output = Vec<(Key, Decided)>> + Send>>;

/// Asks the hooks every query (at once) and collects the answers.
pub fn ask(router: Arc<Router>, hooks: Arc<AuthorizationHooks>, queries: Vec<Query>) -> Pending {
    Box::pin(async move {
        let answers = futures_util::future::join_all(
            queries.iter().map(|query| hooks.decide(&router, query)),
        )
        .await;
        queries.into_iter().map(|q| q.key).zip(answers).collect()
    })
}

/// One session's answers from the hooks.
#[derive(Debug)]
pub struct SessionAuthorization {
    cache: Cache<Key, Answer>,
    /// The answers to the queries of the message being handled, consulted before the
    /// cache (which keeps nothing when `cache_ms` is 0, or when an answer said not to).
    fresh: Vec<(Key, Answer)>,
}

impl SessionAuthorization {
    /// The answer on `key`, if the hooks gave one (`Ignore`: the rules decide). Expiry is
    /// not checked here: [`Self::missing`] checked it when the message arrived.
    pub fn answer(&self, key: &Key) -> Option<Answer> {
        self.fresh
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, a)| *a)
            .or_else(|| self.cache.peek(key))
    }

    /// Whether the hooks must be asked about `key` (no answer, or an expired one).
    pub fn missing(&mut self, key: &Key) -> bool {
        !self.fresh.iter().any(|(k, _)| k == key) && self.cache.get(key, Instant::now()).is_none()
    }

    /// Keeps the answers to a parked message's queries, for its handling (and in the
    /// cache for later).
    pub fn record(&mut self, answers: Vec<(Key, Decided)>) {
        let now = Instant::now();
        for (key, decided) in answers {
            if decided.cache {
                self.cache.insert(key.clone(), decided.answer, now);
            }
            self.fresh.push((key, decided.answer));
        }
    }

    /// The parked message has been handled: its fresh answers go.
    pub fn handled(&mut self) {
        self.fresh.clear();
    }
}

/// The HTTP hook's answer body.
#[derive(Debug, Deserialize)]
struct HttpAnswer {
    result: String,
    #[serde(default)]
    cache: Option<bool>,
}

/// The JSON the HTTP hook receives (`docs/auth.md`).
fn http_body(query: &Query) -> serde_json::Value {
    serde_json::json!({
        "realm": query.realm,
        "session": query.session,
        "authid": query.authid,
        "authrole": query.authrole,
        "authmethod": query.authmethod,
        "authprovider": query.authprovider,
        "action": query.action(),
        "uri": query.key.2,
        "match": query.match_policy(),
        "topic": query.topic,
        "protocol": query.protocol,
        "transport": query.transport,
        "peer": query.peer,
        "client_id": query.client_id,
    })
}

fn http_decision(answer: HttpAnswer) -> Result<Decided, String> {
    let decided = match answer.result.as_str() {
        "allow" => Answer::Allow,
        "deny" => Answer::Deny,
        "ignore" => Answer::Ignore,
        other => return Err(format!("HTTP hook: unknown result '{other}'")),
    };
    Ok(Decided {
        answer: decided,
        cache: answer.cache.unwrap_or(true),
    })
}

/// `(session, uri, action, options)` as Crossbar.io passes them to a dynamic authorizer.
fn dynamic_arguments(query: &Query) -> Vec<Value> {
    let mut session = Dict::new();
    session.insert("session".into(), Value::from(query.session));
    session.insert("realm".into(), Value::from(query.realm.as_str()));
    session.insert("authid".into(), Value::from(query.authid.as_str()));
    session.insert("authrole".into(), Value::from(query.authrole.as_str()));
    session.insert("authmethod".into(), Value::from(query.authmethod.as_str()));
    session.insert(
        "authprovider".into(),
        Value::from(query.authprovider.as_str()),
    );
    let mut transport = Dict::new();
    transport.insert("type".into(), Value::from(query.transport));
    transport.insert("peer".into(), Value::from(query.peer.as_str()));
    transport.insert("protocol".into(), Value::from(query.protocol));
    session.insert("transport".into(), Value::Dict(transport));
    if let Some(client_id) = &query.client_id {
        session.insert("client_id".into(), Value::from(client_id.as_str()));
    }
    let mut options = Dict::new();
    options.insert("match".into(), Value::from(query.match_policy()));
    if let Some(topic) = &query.topic {
        options.insert("topic".into(), Value::from(topic.as_str()));
    }
    vec![
        Value::Dict(session),
        Value::from(query.key.2.as_str()),
        Value::from(query.action()),
        Value::Dict(options),
    ]
}

/// The procedure's RESULT: `true` / `false`, `{"allow": bool, "cache": bool}`, or `null`
/// (ignore: the rules decide). Its ERROR denies (a failure: not cached).
fn dynamic_decision(procedure: &str, reply: Message) -> Result<Decided, String> {
    let (args, kwargs) = match reply {
        Message::Result { args, kwargs, .. } => (args, kwargs),
        Message::Error { error, .. } => return Err(format!("{procedure}: {error}")),
        _ => return Err(format!("{procedure}: unexpected answer")),
    };
    let first = args.and_then(|a| a.into_iter().next());
    let answer = match (first, kwargs) {
        (Some(Value::Dict(d)), _) | (None, Some(d)) => Some(d),
        (Some(Value::Bool(allow)), _) => {
            return Ok(Decided {
                answer: if allow { Answer::Allow } else { Answer::Deny },
                cache: true,
            })
        }
        (Some(Value::Null), _) | (None, None) => None,
        (Some(other), _) => {
            return Err(format!(
                "{procedure}: the result is neither a boolean nor a dictionary ({other:?})"
            ))
        }
    };
    let Some(d) = answer else {
        return Ok(Decided {
            answer: Answer::Ignore,
            cache: true,
        });
    };
    let cache = d.get("cache").and_then(Value::as_bool).unwrap_or(true);
    let answer = match d.get("allow") {
        Some(Value::Bool(true)) => Answer::Allow,
        Some(Value::Bool(false)) => Answer::Deny,
        Some(Value::Null) | None => Answer::Ignore,
        Some(_) => return Err(format!("{procedure}: 'allow' is not a boolean")),
    };
    Ok(Decided { answer, cache })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uri: &str) -> Key {
        (Action::Publish, MatchPolicy::Exact, uri.to_owned())
    }

    fn result(args: Option<Vec<Value>>, kwargs: Option<Dict>) -> Message {
        Message::Result {
            request: 1,
            details: Dict::new(),
            args,
            kwargs,
        }
    }

    #[test]
    fn procedure_results_map_to_answers() {
        let decide = |m| dynamic_decision("p", m);
        let allow = Decided {
            answer: Answer::Allow,
            cache: true,
        };
        assert_eq!(
            decide(result(Some(vec![Value::Bool(true)]), None)),
            Ok(allow)
        );
        assert_eq!(
            decide(result(Some(vec![Value::Bool(false)]), None))
                .unwrap()
                .answer,
            Answer::Deny
        );
        assert_eq!(
            decide(result(Some(vec![Value::Null]), None))
                .unwrap()
                .answer,
            Answer::Ignore
        );
        assert_eq!(decide(result(None, None)).unwrap().answer, Answer::Ignore);
        let mut d = Dict::new();
        d.insert("allow".into(), Value::Bool(true));
        d.insert("cache".into(), Value::Bool(false));
        let uncached = Decided {
            answer: Answer::Allow,
            cache: false,
        };
        assert_eq!(
            decide(result(Some(vec![Value::Dict(d.clone())]), None)),
            Ok(uncached)
        );
        assert_eq!(decide(result(None, Some(d))), Ok(uncached));
        assert!(decide(result(Some(vec![Value::from("yes")]), None)).is_err());
        let error = Message::Error {
            request_type: fox_wamp_proto::code::CALL,
            request: 1,
            details: Dict::new(),
            error: "wamp.error.no_such_procedure".to_owned(),
            args: None,
            kwargs: None,
        };
        let why = decide(error).unwrap_err();
        assert!(why.contains("no_such_procedure"), "{why}");
    }

    #[test]
    fn http_answers_map_to_answers() {
        let decide = |json: &str| http_decision(serde_json::from_str(json).unwrap());
        assert_eq!(
            decide(r#"{"result":"allow"}"#),
            Ok(Decided {
                answer: Answer::Allow,
                cache: true
            })
        );
        assert_eq!(
            decide(r#"{"result":"deny","cache":false}"#),
            Ok(Decided {
                answer: Answer::Deny,
                cache: false
            })
        );
        assert_eq!(
            decide(r#"{"result":"ignore"}"#).unwrap().answer,
            Answer::Ignore
        );
        assert!(decide(r#"{"result":"maybe"}"#).is_err());
    }

    /// With `cache_ms` 0 nothing is kept, yet the message that asked is served by its
    /// fresh answers, which go once it is handled.
    #[test]
    fn fresh_answers_serve_the_parked_message_even_without_a_cache() {
        let settings = AuthorizationSettings {
            cache_ms: 0,
            http: Some(crate::auth::settings::AuthorizationHttpSettings {
                url: "http://127.0.0.1:1/".to_owned(),
                timeout_ms: 100,
                concurrency_max: 1,
            }),
            ..AuthorizationSettings::default()
        };
        let hooks = AuthorizationHooks::new(&settings).unwrap();
        let mut session = hooks.session();
        assert!(session.missing(&key("a")));
        session.record(vec![(
            key("a"),
            Decided {
                answer: Answer::Deny,
                cache: true,
            },
        )]);
        assert!(!session.missing(&key("a")));
        assert_eq!(session.answer(&key("a")), Some(Answer::Deny));
        session.handled();
        assert!(session.missing(&key("a")), "nothing was cached");
        assert_eq!(session.answer(&key("a")), None);
    }

    #[test]
    fn cached_answers_are_reused_unless_an_answer_said_not_to() {
        let settings = AuthorizationSettings {
            http: Some(crate::auth::settings::AuthorizationHttpSettings {
                url: "http://127.0.0.1:1/".to_owned(),
                timeout_ms: 100,
                concurrency_max: 1,
            }),
            ..AuthorizationSettings::default()
        };
        let hooks = AuthorizationHooks::new(&settings).unwrap();
        let mut session = hooks.session();
        session.record(vec![
            (
                key("kept"),
                Decided {
                    answer: Answer::Allow,
                    cache: true,
                },
            ),
            (key("not"), Decided::failed()),
        ]);
        session.handled();
        assert_eq!(session.answer(&key("kept")), Some(Answer::Allow));
        assert!(!session.missing(&key("kept")));
        assert!(session.missing(&key("not")), "a failure is asked again");
    }

    #[test]
    fn the_router_roles_and_other_realms_and_roles_are_not_covered() {
        let settings = AuthorizationSettings {
            realms: vec!["realm1".to_owned()],
            roles: vec!["device".to_owned()],
            dynamic: Some(crate::auth::settings::AuthorizationDynamicSettings {
                realm: "auth".to_owned(),
                procedure: "p".to_owned(),
                timeout_ms: 100,
                calls_in_flight_max: 1,
            }),
            ..AuthorizationSettings::default()
        };
        let hooks = AuthorizationHooks::new(&settings).unwrap();
        assert!(hooks.covers("realm1", "device"));
        assert!(!hooks.covers("realm2", "device"));
        assert!(!hooks.covers("realm1", "backend"));
        let everyone = AuthorizationSettings {
            roles: Vec::new(),
            ..settings
        };
        let hooks = AuthorizationHooks::new(&everyone).unwrap();
        assert!(hooks.covers("realm1", "backend"));
        assert!(!hooks.covers("realm1", "foxrouter"));
        assert!(!hooks.covers("realm1", "foxrouter.sys"));
        assert!(AuthorizationHooks::new(&AuthorizationSettings::default()).is_none());
    }
}
