//! The publish/subscribe family of an established session: PUBLISH (plain, retained, or
//! a key-value write of the sync service) and SUBSCRIBE with its replay of history and
//! retained values; UNSUBSCRIBE. EVENTs from the
//! realm are written by [`event_message`].

use std::borrow::Cow;

use fox_wamp_proto::{code, Dict, ErrorUri, Id, Message, Value};

use super::{error, id_list, option_bool, removal, str_list, valid_uri, WampSession};
use crate::auth::Action;
use crate::engine::Feature;
use crate::realm::sync::{acknowledge_later, kv_options, KvOutcome};
use crate::realm::{Delivery, Payload, PublishOptions, Realm, SessionHandle, SubscribeOptions};
use crate::topic::{MatchPolicy, Pattern, Topic};

impl WampSession {
    /// PUBLISH, SUBSCRIBE and UNSUBSCRIBE; any other message is handed back.
    pub(super) fn handle_pubsub(
        &self,
        realm: &Realm,
        handle: &SessionHandle,
        message: Message,
        out: &mut Vec<Message>,
    ) -> Option<Message> {
        match message {
            Message::Publish {
                request,
                options,
                topic,
                args,
                kwargs,
            } => {
                let payload = Payload::Wamp { args, kwargs };
                self.publish(realm, handle, request, &options, topic, payload, out);
            }
            Message::Subscribe {
                request,
                options,
                topic,
            } => self.subscribe(realm, handle, request, &options, &topic, out),
            Message::Unsubscribe {
                request,
                subscription,
            } => {
                let removed = realm.unsubscribe(handle.info.id, subscription);
                out.push(removal(code::UNSUBSCRIBE, request, removed));
            }
            other => return Some(other),
        }
        None
    }

    /// PUBLISH. A refusal is answered only when the publisher asked for an
    /// acknowledgement, and so is a success (PUBLISHED, through the session's queue once
    /// the write is durable).
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        realm: &Realm,
        handle: &SessionHandle,
        request: Id,
        options: &Dict,
        topic: String,
        payload: Payload,
        out: &mut Vec<Message>,
    ) {
        let acknowledge = option_bool(options, "acknowledge") == Some(true);
        let ack = acknowledge.then_some(request);
        let published = self.publish_or_refuse(realm, handle, ack, options, topic, payload);
        if let (Err((uri, message)), true) = (published, acknowledge) {
            out.push(error(code::PUBLISH, request, uri, message));
        }
    }

    /// Publishes, or says why not; `ack` is the request to acknowledge, if asked.
    fn publish_or_refuse(
        &self,
        realm: &Realm,
        handle: &SessionHandle,
        ack: Option<Id>,
        options: &Dict,
        topic: String,
        payload: Payload,
    ) -> Result<(), Refusal> {
        if !valid_uri(&topic, false) {
            return Err((ErrorUri::InvalidUri, "invalid topic URI"));
        }
        if topic.starts_with("wamp.")
            || !self.permits(handle, Action::Publish, MatchPolicy::Exact, &topic)
        {
            return Err((ErrorUri::NotAuthorized, "not authorized to publish"));
        }
        let publish_options = publish_options(options);
        let engine = &realm.shared().engine;
        let kv = kv_options(options).filter(|_| publish_options.retain);
        let refused = match (publish_options.retain, &kv) {
            (true, Some(_)) => engine.refuses(Feature::SyncService),
            (true, None) => engine.refuses(Feature::Retain),
            (false, _) => None,
        };
        if let Some(why) = refused {
            tracing::debug!(topic, why, "publish refused by the engine");
            return Err((ErrorUri::FeatureNotSupported, why));
        }
        let topic = Topic::from_wamp(&topic);
        let done = match kv {
            Some(write) => {
                match realm.publish_kv(handle, ack, &topic, payload, &publish_options, write) {
                    KvOutcome::Applied(done) => done,
                    KvOutcome::Refused => {
                        let why = "not accepted: the when condition does not hold";
                        return Err((ErrorUri::InvalidArgument, why));
                    }
                    KvOutcome::Parked => return Ok(()),
                }
            }
            None => {
                let properties = Default::default();
                let info = Some(&*handle.info);
                realm.publish_durable(info, &topic, payload, &publish_options, properties)
            }
        };
        if let Some(request) = ack {
            // With a store, the ack waits for the fsync of the group the write went into.
            acknowledge_later(handle.clone(), request, done);
        }
        Ok(())
    }

    /// SUBSCRIBE: SUBSCRIBED, then the replay asked for (history, retained values), then,
    /// for a snapshot, the revocation; or ERROR.
    fn subscribe(
        &self,
        realm: &Realm,
        handle: &SessionHandle,
        request: Id,
        options: &Dict,
        topic: &str,
        out: &mut Vec<Message>,
    ) {
        match self.accept_subscription(realm, handle, options, topic) {
            Ok(accepted) => subscribe_and_replay(realm, handle, request, options, accepted, out),
            Err((uri, message)) => out.push(error(code::SUBSCRIBE, request, uri, &message)),
        }
    }

    /// The checks of a SUBSCRIBE, in the order their errors take precedence: match policy,
    /// URI, permission, this session's subscriptions, `after`.
    fn accept_subscription(
        &self,
        realm: &Realm,
        handle: &SessionHandle,
        options: &Dict,
        topic: &str,
    ) -> Result<Accepted, (ErrorUri, Cow<'static, str>)> {
        let policy = MatchPolicy::parse(options.get("match").and_then(Value::as_str))
            .ok_or((ErrorUri::InvalidArgument, "unknown match policy".into()))?;
        let empty_ok = policy != MatchPolicy::Exact;
        let prefix_of_everything = policy == MatchPolicy::Prefix && topic.is_empty();
        if !(valid_uri(topic, empty_ok) || prefix_of_everything) {
            return Err((ErrorUri::InvalidUri, "invalid topic URI".into()));
        }
        if !self.permits(handle, Action::Subscribe, policy, topic) {
            return Err((
                ErrorUri::NotAuthorized,
                "not authorized to subscribe".into(),
            ));
        }
        let pattern = Pattern::from_wamp(topic, policy);
        let max = self.router.config.limits.subscriptions_per_session_max;
        if realm.broker().over_limit(handle.info.id, &pattern, max) {
            let why = format!(
                "a session may hold {max} subscriptions (limits.subscriptions_per_session_max)"
            );
            return Err((ErrorUri::LimitExceeded, why.into()));
        }
        // `after`: a publication ID, as an integer or (fox-wamp's event IDs are strings) a
        // decimal string.
        let after = match options.get("after") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Str(s)) => s.parse::<u64>().map(Some).map_err(|_| ()),
            Some(v) => v.as_u64().map(Some).ok_or(()),
        };
        let after = after.map_err(|()| {
            let why = "after must be a publication ID";
            (ErrorUri::InvalidArgument, why.into())
        })?;
        Ok(Accepted {
            pattern,
            pattern_based: policy != MatchPolicy::Exact,
            after,
        })
    }
}

/// Why a request is refused: the error URI and its message.
type Refusal = (ErrorUri, &'static str);

/// A SUBSCRIBE that passed its checks.
struct Accepted {
    pattern: Pattern,
    /// Not an exact match: EVENTs name their topic.
    pattern_based: bool,
    /// Replay the history after this publication ID.
    after: Option<u64>,
}

/// The PUBLISH options as the realm takes them.
fn publish_options(options: &Dict) -> PublishOptions {
    PublishOptions {
        exclude_me: option_bool(options, "exclude_me").unwrap_or(true),
        disclose_me: option_bool(options, "disclose_me").unwrap_or(false),
        exclude: id_list(options, "exclude").unwrap_or_default(),
        exclude_authid: str_list(options, "exclude_authid").unwrap_or_default(),
        exclude_authrole: str_list(options, "exclude_authrole").unwrap_or_default(),
        eligible: id_list(options, "eligible"),
        eligible_authid: str_list(options, "eligible_authid"),
        eligible_authrole: str_list(options, "eligible_authrole"),
        qos: 0,
        // fox-wamp clients may send a number (its engines test truthiness).
        retain: match options.get("retain") {
            Some(Value::Bool(flag)) => *flag,
            Some(other) => other.as_i64().is_some_and(|n| n != 0),
            None => false,
        },
    }
}

/// Subscribes, then answers SUBSCRIBED and replays: history after `after` up to the
/// subscription's start, then the retained state as of that same start (live events
/// follow through the session's queue); a snapshot then ends.
fn subscribe_and_replay(
    realm: &Realm,
    handle: &SessionHandle,
    request: Id,
    options: &Dict,
    accepted: Accepted,
    out: &mut Vec<Message>,
) {
    // Retained values first: the spec's `get_retained`, and fox-wamp's `retainedState`
    // (then every live event) and `retained` (then only live retained publishes, i.e.
    // state changes).
    let retained_only = option_bool(options, "retained") == Some(true);
    let replay_retained = retained_only
        || option_bool(options, "get_retained") == Some(true)
        || option_bool(options, "retainedState") == Some(true);
    let subscribe_options = SubscribeOptions {
        filter: options.get("filter").cloned(),
        retained_only,
        ..SubscribeOptions::default()
    };
    let Accepted {
        pattern,
        pattern_based,
        after,
    } = accepted;
    let (id, replay) =
        realm.subscribe_replay(handle, pattern, subscribe_options, after, replay_retained);
    out.push(Message::Subscribed {
        request,
        subscription: id,
    });
    for (publication, retained) in replay
        .history
        .into_iter()
        .map(|p| (p, false))
        .chain(replay.retained.into_iter().map(|p| (p, true)))
    {
        let delivery = Delivery {
            subscription: id,
            pattern_based,
            publication,
            qos: 0,
            retained,
        };
        out.push(event_message(&delivery));
    }
    if option_bool(options, "snapshot") == Some(true) {
        // A snapshot ends after the replay: the router revokes the subscription.
        realm.unsubscribe(handle.info.id, id);
        let mut details = Dict::new();
        details.insert("subscription".into(), Value::from(id));
        details.insert(
            "reason".into(),
            Value::from("wamp.subscription.snapshot_done"),
        );
        out.push(Message::Unsubscribed {
            request: 0,
            details: Some(details),
        });
    }
}

/// The EVENT for a delivery.
pub fn event_message(delivery: &Delivery) -> Message {
    let publication = &delivery.publication;
    let mut details = Dict::new();
    if delivery.pattern_based {
        details.insert("topic".into(), Value::from(publication.topic.to_wamp()));
    }
    if let Some((session, authid, authrole)) = &publication.disclosed {
        details.insert("publisher".into(), Value::from(*session));
        details.insert("publisher_authid".into(), Value::from(authid.as_str()));
        details.insert("publisher_authrole".into(), Value::from(authrole.as_str()));
    }
    if delivery.retained {
        details.insert("retained".into(), Value::Bool(true));
    }
    let (args, kwargs) = publication.payload.to_wamp();
    Message::Event {
        subscription: delivery.subscription,
        publication: publication.id,
        details,
        args,
        kwargs,
    }
}
