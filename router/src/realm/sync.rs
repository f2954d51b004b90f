//! The retained-key sync service: conditional writes (`when`), parked writes (`watch`) and
//! wills on retained keys, with fox-wamp's option names, so a mutex is
//! `publish(key, holder, retain, when: null, watch: true, will: null)` and is released by
//! publishing no arguments.
//!
//! - The *value* of a key is its retained payload seen as one value: the kwargs when there
//!   are any, else the single positional argument, else the argument list; no payload (or an
//!   empty one) means the key is absent.
//! - `when: null` holds when the key is absent; `when: {..}` holds when the value is a dict
//!   containing every given key with an equal value (a subset match, recursive for dicts);
//!   any other `when` holds on equality.
//! - A write whose `when` does not hold is refused with `wamp.error.invalid_argument`
//!   ("not accepted"), never delivered; with `watch: true` it is parked instead, first come
//!   first served per key, and applied (then acknowledged and delivered) as soon as its
//!   condition holds after a later write.
//! - `will`: the value written to the key when the writer's session ends abnormally (the
//!   connection dropped without GOODBYE); `will: null` clears the key. Any later write to
//!   the key cancels the will (replacing it with the new writer's, if any).

//!
//! The decisions are the applier's ([`crate::follow::applier`]), reached through the engine
//! ([`crate::engine::Engine::publish_conditional`]): a single node applies each write at
//! once, a cluster entry as its log follower applies the permanent log; one implementation.

use std::sync::atomic::Ordering;

use fox_wamp_proto::ErrorUri;
use fox_wamp_proto::{code, Dict, Id, Message, Value};

use super::{MessageProperties, Outbound, Payload, PublishOptions, Realm, SessionHandle};
use crate::topic::Topic;

pub use crate::engine::KvOutcome;
pub use crate::message::KvWrite;

/// The value a condition is checked against.
pub fn key_value(payload: Option<&Payload>) -> Value {
    let Some(payload) = payload.filter(|p| !p.is_empty()) else {
        return Value::Null;
    };
    let (args, kwargs) = payload.to_wamp();
    match (args, kwargs) {
        (_, Some(kwargs)) if !kwargs.is_empty() => Value::Dict(kwargs),
        (Some(mut args), _) if args.len() == 1 => args.pop().unwrap_or(Value::Null),
        (Some(args), _) => Value::List(args),
        (None, _) => Value::Null,
    }
}

/// Whether `value` satisfies `when`.
pub fn fits(when: &Value, value: &Value) -> bool {
    match (when, value) {
        (Value::Null, value) => value.is_null(),
        (Value::Dict(want), Value::Dict(have)) => want
            .iter()
            .all(|(k, w)| have.get(k).is_some_and(|h| fits_inner(w, h))),
        (when, value) => when == value,
    }
}

fn fits_inner(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Dict(_), Value::Dict(_)) => fits(want, have),
        _ => want == have,
    }
}

impl Realm {
    /// The value of retained key `topic`, as conditions see it ([`key_value`]).
    pub fn current_value(&self, topic: &Topic) -> Value {
        self.memory.value(topic)
    }

    /// A conditional write to a retained key (the publish carries `retain`), decided by
    /// the engine where it is applied. A parked write's answer resolves once it applies.
    pub fn publish_kv(
        &self,
        writer: &SessionHandle,
        topic: &Topic,
        payload: Payload,
        options: &PublishOptions,
        write: KvWrite,
    ) -> KvOutcome {
        let mut retained = options.clone();
        retained.retain = true;
        let draft = crate::engine::Draft {
            publisher: Some(crate::engine::Publisher {
                id: writer.info.id,
                authid: &writer.info.identity.authid,
                authrole: &writer.info.identity.authrole,
            }),
            topic,
            payload,
            options: &retained,
            properties: MessageProperties::default(),
        };
        self.shared.engine.publish_conditional(self, draft, &write)
    }

    /// At start: applies a will left by a session that died with the previous process.
    pub fn apply_orphan_will(&self, topic: &Topic, will: Payload) {
        let options = PublishOptions {
            retain: true,
            ..Default::default()
        };
        let pending =
            self.publish_durable(None, topic, will, &options, MessageProperties::default());
        drop(pending);
        if let Some(d) = self.shared.durable() {
            d.record_will(&self.name, topic, None);
        }
    }
}

/// Sends PUBLISHED once the engine's answer resolves (at once when there is nothing to wait
/// for), or ERROR when the message could not be ordered or stored.
// An edge: the answer to a parked write waits in a task of its own, so that the writer's
// connection goes on meanwhile.
#[allow(clippy::disallowed_methods)]
pub fn acknowledge_later(writer: SessionHandle, request: Id, ack: crate::engine::Ack) {
    if let crate::engine::Ack::Ready(publication) = ack {
        writer.send(Outbound::wamp(Message::Published {
            request,
            publication,
        }));
        return;
    }
    writer.stats.acks_pending.fetch_add(1, Ordering::AcqRel);
    tokio::spawn(async move {
        let reply = match ack.wait().await {
            Ok(publication) => Message::Published {
                request,
                publication,
            },
            Err(crate::engine::EngineError::NotAccepted) => Message::Error {
                request_type: code::PUBLISH,
                request,
                details: Dict::new(),
                error: ErrorUri::InvalidArgument.into(),
                args: Some(vec![Value::from(
                    "not accepted: the when condition does not hold",
                )]),
                kwargs: None,
            },
            Err(e) => {
                tracing::error!(error = %e, "publish not acknowledged");
                Message::Error {
                    request_type: code::PUBLISH,
                    request,
                    details: Dict::new(),
                    error: match e {
                        crate::engine::EngineError::Cluster(_) => ErrorUri::Unavailable.into(),
                        _ => ErrorUri::StorageFailed.into(),
                    },
                    args: Some(vec![Value::from(e.to_string())]),
                    kwargs: None,
                }
            }
        };
        writer.send(Outbound::wamp(reply));
        writer.stats.acks_pending.fetch_sub(1, Ordering::AcqRel);
    });
}

/// Parses fox-wamp's options from a PUBLISH; `None` when none of them is present.
pub fn kv_options(options: &Dict) -> Option<KvWrite> {
    let when = options.get("when").cloned();
    let will = options.get("will").map(|w| match w {
        Value::Null => Payload::Wamp {
            args: None,
            kwargs: None,
        },
        other => Payload::Wamp {
            args: Some(vec![other.clone()]),
            kwargs: None,
        },
    });
    let watch = options
        .get("watch")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    (when.is_some() || will.is_some() || watch).then_some(KvWrite { when, watch, will })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(pairs: &[(&str, Value)]) -> Value {
        Value::Dict(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn null_means_absent_and_dicts_match_subsets() {
        assert!(fits(&Value::Null, &Value::Null));
        assert!(!fits(&Value::Null, &Value::from("x")));
        let have = dict(&[("owner", Value::from("a")), ("n", Value::Int(1))]);
        assert!(fits(&dict(&[("owner", Value::from("a"))]), &have));
        assert!(!fits(&dict(&[("owner", Value::from("b"))]), &have));
        assert!(!fits(&dict(&[("missing", Value::Null)]), &have));
        assert!(fits(&Value::from("a"), &Value::from("a")));
    }

    #[test]
    fn key_value_prefers_kwargs_then_single_argument() {
        let mut kw = Dict::new();
        kw.insert("k".into(), Value::Int(1));
        let p = Payload::Wamp {
            args: Some(vec![Value::Int(5)]),
            kwargs: Some(kw.clone()),
        };
        assert_eq!(key_value(Some(&p)), Value::Dict(kw));
        let p = Payload::Wamp {
            args: Some(vec![Value::Int(5)]),
            kwargs: None,
        };
        assert_eq!(key_value(Some(&p)), Value::Int(5));
        assert_eq!(
            key_value(Some(&Payload::Wamp {
                args: None,
                kwargs: None
            })),
            Value::Null
        );
        assert_eq!(key_value(None), Value::Null);
    }
}
