//! Meta procedures: `wamp.session.*`, `wamp.subscription.*`, `wamp.registration.*`.
//!
//! The router answers these itself; a CALL to any other URI goes to the dealer. Meta events
//! (`on_join`, `on_create`, ...) are published by the realm as the changes happen.

use std::sync::Arc;

use fox_wamp_proto::CloseUri;
use fox_wamp_proto::ErrorUri;
use fox_wamp_proto::{code, Dict, Message, Value};

use super::broker::PublishOptions;
use super::dealer::CallRequest;
use super::{read, Outbound, Payload, Realm, SessionHandle, SessionId, Testament};
use crate::topic::{MatchPolicy, Pattern, Topic};

type Reply = Result<Vec<Value>, (ErrorUri, String)>;

/// Answers a meta procedure; `None` when `call` is not one.
pub(super) fn call(
    realm: &Arc<Realm>,
    caller: &SessionHandle,
    call: &CallRequest,
) -> Option<Message> {
    let args = call.args.as_deref().unwrap_or(&[]);
    let empty = Dict::new();
    let kwargs = call.kwargs.as_ref().unwrap_or(&empty);
    let procedure = call.procedure.as_str();
    let at = (args, kwargs);
    let reply = if procedure.starts_with("wamp.session.") {
        session_procedure(realm, caller, procedure, at)
    } else if procedure.starts_with("wamp.subscription.") {
        subscription_procedure(realm, caller, procedure, args)
    } else if procedure.starts_with("wamp.registration.") {
        registration_procedure(realm, procedure, args)
    } else {
        None
    }?;
    Some(match reply {
        Ok(args) => Message::Result {
            request: call.request,
            details: Dict::new(),
            args: Some(args),
            kwargs: None,
        },
        Err((error, message)) => Message::Error {
            request_type: code::CALL,
            request: call.request,
            details: Dict::new(),
            error: error.into(),
            args: Some(vec![Value::from(message)]),
            kwargs: None,
        },
    })
}

/// `wamp.session.*`.
fn session_procedure(
    realm: &Arc<Realm>,
    caller: &SessionHandle,
    procedure: &str,
    (args, kwargs): (&[Value], &Dict),
) -> Option<Reply> {
    let reply = match procedure {
        "wamp.session.count" => Ok(vec![Value::from(
            filtered_sessions(realm, args).len() as u64
        )]),
        "wamp.session.list" => Ok(vec![Value::List(
            filtered_sessions(realm, args)
                .into_iter()
                .map(Value::from)
                .collect(),
        )]),
        "wamp.session.get" => session_get(realm, args),
        "wamp.session.kill" => kill_one(realm, caller, args, kwargs),
        "wamp.session.kill_by_authid" => kill_where(realm, caller, args, kwargs, |h, a| {
            h.info.identity.authid == a
        }),
        "wamp.session.kill_by_authrole" => kill_where(realm, caller, args, kwargs, |h, a| {
            h.info.identity.authrole == a
        }),
        "wamp.session.add_testament" => add_testament(realm, caller, args, kwargs),
        "wamp.session.flush_testaments" => Ok(vec![Value::from(
            realm.flush_testaments(caller.info.id) as u64,
        )]),
        _ => return None,
    };
    Some(reply)
}

/// `wamp.subscription.*`.
fn subscription_procedure(
    realm: &Arc<Realm>,
    caller: &SessionHandle,
    procedure: &str,
    args: &[Value],
) -> Option<Reply> {
    let reply = match procedure {
        "wamp.subscription.list" => Ok(vec![Value::Dict(read(&realm.broker).list())]),
        "wamp.subscription.lookup" => lookup(args, |p| read(&realm.broker).lookup(p)),
        "wamp.subscription.match" => uri_arg(args).map(|topic| {
            let ids = read(&realm.broker).matching(&Topic::from_wamp(topic));
            vec![if ids.is_empty() {
                Value::Null
            } else {
                Value::List(ids.into_iter().map(Value::from).collect())
            }]
        }),
        "wamp.subscription.get" => id_arg(args).and_then(|id| {
            read(&realm.broker)
                .details(id)
                .map(|d| vec![Value::Dict(d)])
                .ok_or(no_such_subscription())
        }),
        "wamp.subscription.list_subscribers" => id_arg(args).and_then(|id| {
            let ids = read(&realm.broker)
                .subscribers(id)
                .ok_or(no_such_subscription())?;
            Ok(vec![Value::List(
                ids.into_iter().map(Value::from).collect(),
            )])
        }),
        "wamp.subscription.count_subscribers" => id_arg(args).and_then(|id| {
            let ids = read(&realm.broker)
                .subscribers(id)
                .ok_or(no_such_subscription())?;
            Ok(vec![Value::from(ids.len() as u64)])
        }),
        "wamp.subscription.get_events" => id_arg(args).and_then(|id| {
            let pattern = read(&realm.broker)
                .pattern(id)
                .ok_or(no_such_subscription())?;
            let limit = args.get(1).and_then(Value::as_u64).unwrap_or(10).min(1_000) as usize;
            let events = realm
                .recent_events(&pattern, limit, &caller.info.identity.authrole)
                .iter()
                .map(|p| Value::Dict(event_dict(p)))
                .collect();
            Ok(vec![Value::List(events)])
        }),
        _ => return None,
    };
    Some(reply)
}

/// `wamp.registration.*`.
fn registration_procedure(realm: &Arc<Realm>, procedure: &str, args: &[Value]) -> Option<Reply> {
    let reply = match procedure {
        "wamp.registration.list" => Ok(vec![Value::Dict(realm.with_dealer(|d| d.list()))]),
        "wamp.registration.lookup" => lookup(args, |p| realm.with_dealer(|d| d.lookup(p))),
        "wamp.registration.match" => uri_arg(args).map(|procedure| {
            vec![realm
                .with_dealer(|d| d.route(procedure))
                .map_or(Value::Null, Value::from)]
        }),
        "wamp.registration.get" => id_arg(args).and_then(|id| {
            realm
                .with_dealer(|d| d.details(id))
                .map(|d| vec![Value::Dict(d)])
                .ok_or(no_such_registration())
        }),
        "wamp.registration.list_callees" => id_arg(args).and_then(|id| {
            let ids = realm
                .with_dealer(|d| d.callees(id))
                .ok_or(no_such_registration())?;
            Ok(vec![Value::List(
                ids.into_iter().map(Value::from).collect(),
            )])
        }),
        "wamp.registration.count_callees" => id_arg(args).and_then(|id| {
            let ids = realm
                .with_dealer(|d| d.callees(id))
                .ok_or(no_such_registration())?;
            Ok(vec![Value::from(ids.len() as u64)])
        }),
        _ => return None,
    };
    Some(reply)
}

/// Meta events (`on_join`, `on_create`, ...), published by the realm as the changes happen.
impl Realm {
    /// Publishes a router-originated meta event with positional arguments.
    pub fn publish_meta(&self, topic: &str, args: Vec<Value>) {
        let payload = Payload::Wamp {
            args: Some(args),
            kwargs: None,
        };
        self.publish(
            None,
            &Topic::from_wamp(topic),
            payload,
            &PublishOptions::default(),
        );
    }

    pub(super) fn subscription_meta(
        &self,
        session: SessionId,
        sub_id: u64,
        created: Option<bool>,
        deleted: bool,
        joined: bool,
    ) {
        if created == Some(true) {
            let details = read(&self.broker).details(sub_id).unwrap_or_default();
            self.publish_meta(
                "wamp.subscription.on_create",
                vec![Value::from(session), Value::Dict(details)],
            );
        }
        let args = || vec![Value::from(session), Value::from(sub_id)];
        if joined {
            self.publish_meta("wamp.subscription.on_subscribe", args());
            return;
        }
        self.publish_meta("wamp.subscription.on_unsubscribe", args());
        if deleted {
            self.publish_meta("wamp.subscription.on_delete", args());
        }
    }

    pub(super) fn registration_meta(
        &self,
        session: SessionId,
        reg_id: u64,
        created: Option<Dict>,
        deleted: bool,
        joined: bool,
    ) {
        if let Some(details) = created {
            self.publish_meta(
                "wamp.registration.on_create",
                vec![Value::from(session), Value::Dict(details)],
            );
        }
        let args = || vec![Value::from(session), Value::from(reg_id)];
        if joined {
            self.publish_meta("wamp.registration.on_register", args());
            return;
        }
        self.publish_meta("wamp.registration.on_unregister", args());
        if deleted {
            self.publish_meta("wamp.registration.on_delete", args());
        }
    }
}

/// The meta API's details of a subscription or registration: id, created, uri, match.
pub(crate) fn meta_details(id: u64, created: &str, pattern: &Pattern) -> Dict {
    let (uri, policy) = pattern.to_wamp();
    let mut d = Dict::new();
    d.insert("id".into(), Value::from(id));
    d.insert("created".into(), Value::from(created));
    d.insert("uri".into(), Value::from(uri));
    d.insert("match".into(), Value::from(policy.name()));
    d
}

/// One event of `wamp.subscription.get_events`: publication, topic, timestamp-free.
fn event_dict(p: &super::Publication) -> Dict {
    let (args, kwargs) = p.payload.to_wamp();
    let mut d = Dict::new();
    d.insert("publication".into(), Value::from(p.id));
    d.insert("topic".into(), Value::from(p.topic.to_wamp()));
    d.insert("args".into(), Value::List(args.unwrap_or_default()));
    d.insert("kwargs".into(), Value::Dict(kwargs.unwrap_or_default()));
    d
}

fn invalid(message: &str) -> (ErrorUri, String) {
    (ErrorUri::InvalidArgument, message.to_owned())
}

fn no_such_subscription() -> (ErrorUri, String) {
    (
        ErrorUri::NoSuchSubscription,
        "no subscription with this ID".to_owned(),
    )
}

fn no_such_registration() -> (ErrorUri, String) {
    (
        ErrorUri::NoSuchRegistration,
        "no registration with this ID".to_owned(),
    )
}

fn id_arg(args: &[Value]) -> Result<u64, (ErrorUri, String)> {
    args.first()
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid("expected an ID as first argument"))
}

fn uri_arg(args: &[Value]) -> Result<&str, (ErrorUri, String)> {
    args.first()
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("expected a URI as first argument"))
}

fn lookup(args: &[Value], find: impl FnOnce(&Pattern) -> Option<u64>) -> Reply {
    let uri = uri_arg(args)?;
    let policy = args
        .get(1)
        .and_then(|o| o.get("match"))
        .and_then(Value::as_str);
    let policy = MatchPolicy::parse(policy).ok_or_else(|| invalid("unknown match policy"))?;
    Ok(vec![
        find(&Pattern::from_wamp(uri, policy)).map_or(Value::Null, Value::from)
    ])
}

fn filtered_sessions(realm: &Realm, args: &[Value]) -> Vec<u64> {
    let roles: Option<Vec<&str>> = args
        .first()
        .and_then(Value::as_list)
        .map(|l| l.iter().filter_map(Value::as_str).collect());
    let mut ids: Vec<u64> = realm
        .sessions()
        .iter()
        .filter(|h| {
            roles
                .as_ref()
                .is_none_or(|r| r.contains(&h.info.identity.authrole.as_str()))
        })
        .map(|h| h.info.id)
        .collect();
    ids.sort_unstable();
    ids
}

fn session_get(realm: &Realm, args: &[Value]) -> Reply {
    let id = id_arg(args)?;
    let handle = realm.session(id).ok_or((
        ErrorUri::NoSuchSession,
        "no session with this ID".to_owned(),
    ))?;
    Ok(vec![Value::Dict(handle.info.details())])
}

fn close_message(kwargs: &Dict) -> Outbound {
    Outbound::Close(Box::new(super::session::Close {
        reason: kwargs
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or(CloseUri::Killed.as_str())
            .to_owned(),
        message: kwargs
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    }))
}

fn kill_one(realm: &Realm, caller: &SessionHandle, args: &[Value], kwargs: &Dict) -> Reply {
    let id = id_arg(args)?;
    if id == caller.info.id {
        return Err(invalid("a session cannot kill itself"));
    }
    let handle = realm.session(id).ok_or((
        ErrorUri::NoSuchSession,
        "no session with this ID".to_owned(),
    ))?;
    handle.send(close_message(kwargs));
    Ok(Vec::new())
}

fn kill_where(
    realm: &Realm,
    caller: &SessionHandle,
    args: &[Value],
    kwargs: &Dict,
    pick: impl Fn(&SessionHandle, &str) -> bool,
) -> Reply {
    let key = uri_arg(args)?;
    let mut killed: Vec<u64> = Vec::new();
    for handle in realm.sessions() {
        if handle.info.id != caller.info.id && pick(&handle, key) {
            handle.send(close_message(kwargs));
            killed.push(handle.info.id);
        }
    }
    killed.sort_unstable();
    Ok(vec![Value::List(
        killed.into_iter().map(Value::from).collect(),
    )])
}

fn add_testament(realm: &Realm, caller: &SessionHandle, args: &[Value], kwargs: &Dict) -> Reply {
    let topic = uri_arg(args)?.to_owned();
    let t_args = args.get(1).and_then(Value::as_list).map(<[Value]>::to_vec);
    let t_kwargs = args.get(2).and_then(Value::as_dict).cloned();
    let publish = kwargs.get("publish_options").and_then(Value::as_dict);
    let mut options = PublishOptions::default();
    if let Some(p) = publish {
        options.exclude_me = p.get("exclude_me").and_then(Value::as_bool).unwrap_or(true);
        options.disclose_me = p
            .get("disclose_me")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    }
    let scope = kwargs
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("destroyed");
    if scope != "destroyed" && scope != "detached" {
        return Err(invalid("scope must be 'destroyed' or 'detached'"));
    }
    let payload = Payload::Wamp {
        args: t_args,
        kwargs: t_kwargs,
    };
    realm.add_testament(
        caller.info.id,
        Testament {
            topic,
            payload,
            options,
        },
    );
    Ok(Vec::new())
}
