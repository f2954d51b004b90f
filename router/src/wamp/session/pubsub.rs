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
        if acknowledge && self.draining {
            let message = "the router is shutting down";
            out.push(error(
                code::PUBLISH,
                request,
                ErrorUri::Unavailable,
                message,
            ));
            return;
        }
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
        // `wamp.` meta events and `$` topics ($SYS, $fox/cluster) are the router's.
        if topic.starts_with("wamp.")
            || topic.starts_with('$')
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
                match realm.publish_kv(handle, &topic, payload, &publish_options, write) {
                    // A parked write is acknowledged once it applies.
                    KvOutcome::Applied(done) | KvOutcome::Parked(done) => done,
                    KvOutcome::Refused => {
                        let why = "not accepted: the when condition does not hold";
                        return Err((ErrorUri::InvalidArgument, why));
                    }
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

#[cfg(test)]
mod tests {
    use fox_wamp_proto::{Dict, ErrorUri, Message, Value};

    use super::super::testing::{dict, router, uri_of, Peer, START_MS};
    use super::super::Flow;

    fn subscribe(request: u64, topic: &str, options: Dict) -> Message {
        Message::Subscribe {
            request,
            options,
            topic: topic.to_owned(),
        }
    }

    fn publish(request: u64, topic: &str, options: Dict, argument: i64) -> Message {
        Message::Publish {
            request,
            options,
            topic: topic.to_owned(),
            args: Some(vec![Value::from(argument)]),
            kwargs: None,
        }
    }

    fn acknowledge() -> Dict {
        dict([("acknowledge", Value::Bool(true))])
    }

    /// SUBSCRIBED's subscription ID.
    fn subscribed(replies: &[Message]) -> u64 {
        match replies {
            [Message::Subscribed { subscription, .. }] => *subscription,
            other => panic!("SUBSCRIBED: {other:?}"),
        }
    }

    #[test]
    fn an_acknowledged_publish_reaches_the_subscriber_and_not_the_publisher() {
        let router = router();
        let mut subscriber = Peer::join(&router, "realm1", 1);
        let mut publisher = Peer::join(&router, "realm1", 2);
        let (replies, flow) = subscriber.send(subscribe(1, "com.a", Dict::new()), START_MS);
        assert_eq!(flow, Flow::Continue);
        let subscription = subscribed(&replies);
        // The publisher subscribes too: `exclude_me` is the default.
        let (replies, _) = publisher.send(subscribe(1, "com.a", Dict::new()), START_MS);
        subscribed(&replies);
        let (replies, flow) = publisher.send(publish(2, "com.a", acknowledge(), 5), START_MS + 1);
        assert_eq!((replies.len(), flow), (0, Flow::Continue), "{replies:?}");
        let acknowledged = publisher.queued(START_MS + 1);
        let [Message::Published {
            request: 2,
            publication,
        }] = acknowledged.as_slice()
        else {
            panic!("PUBLISHED only: {acknowledged:?}");
        };
        let events = subscriber.queued(START_MS + 1);
        let [Message::Event {
            subscription: to,
            publication: id,
            args,
            ..
        }] = events.as_slice()
        else {
            panic!("one EVENT: {events:?}");
        };
        assert_eq!((*to, *id), (subscription, *publication));
        assert_eq!(args.as_deref(), Some(&[Value::from(5)][..]));
    }

    #[test]
    fn a_publish_without_acknowledge_is_answered_by_nothing() {
        let router = router();
        let mut subscriber = Peer::join(&router, "realm1", 1);
        let mut publisher = Peer::join(&router, "realm1", 2);
        subscribed(
            &subscriber
                .send(subscribe(1, "com.a", Dict::new()), START_MS)
                .0,
        );
        let (replies, _) = publisher.send(publish(2, "com.a", Dict::new(), 1), START_MS);
        assert!(replies.is_empty());
        assert!(publisher.queued(START_MS).is_empty(), "no PUBLISHED");
        assert_eq!(subscriber.queued(START_MS).len(), 1, "the EVENT");
        // A refusal is silent too, unless acknowledged.
        let (replies, _) = publisher.send(publish(3, "com..a", Dict::new(), 1), START_MS);
        assert!(replies.is_empty());
        let (replies, _) = publisher.send(publish(4, "com..a", acknowledge(), 1), START_MS);
        assert_eq!(uri_of(&replies[0]), ErrorUri::InvalidUri.as_str());
        let (replies, _) = publisher.send(publish(5, "wamp.x", acknowledge(), 1), START_MS);
        assert_eq!(uri_of(&replies[0]), ErrorUri::NotAuthorized.as_str());
        // `$` topics are the router's ($SYS, $fox.cluster), as in MQTT.
        let (replies, _) = publisher.send(
            publish(6, "$fox.cluster.coordinator", acknowledge(), 1),
            START_MS,
        );
        assert_eq!(uri_of(&replies[0]), ErrorUri::NotAuthorized.as_str());
    }

    #[test]
    fn a_pattern_subscription_names_the_topic_of_its_events() {
        let router = router();
        let mut subscriber = Peer::join(&router, "realm1", 1);
        let mut publisher = Peer::join(&router, "realm1", 2);
        let prefix = dict([("match", Value::from("prefix"))]);
        subscribed(&subscriber.send(subscribe(1, "com.", prefix), START_MS).0);
        publisher.request(publish(2, "com.a.b", Dict::new(), 1), START_MS);
        let events = subscriber.queued(START_MS);
        let [Message::Event { details, .. }] = events.as_slice() else {
            panic!("one EVENT: {events:?}");
        };
        assert_eq!(details["topic"], Value::from("com.a.b"));
    }

    #[test]
    fn a_retained_value_is_replayed_after_subscribed() {
        let router = router();
        let mut publisher = Peer::join(&router, "realm1", 2);
        let retain = dict([("retain", Value::Bool(true))]);
        publisher.request(publish(1, "com.state", retain, 7), START_MS);
        let mut subscriber = Peer::join(&router, "realm1", 1);
        let options = dict([("get_retained", Value::Bool(true))]);
        let (replies, _) = subscriber.send(subscribe(1, "com.state", options), START_MS + 1);
        let [Message::Subscribed { .. }, Message::Event { details, args, .. }] = replies.as_slice()
        else {
            panic!("SUBSCRIBED then the retained EVENT: {replies:?}");
        };
        assert_eq!(details["retained"], Value::Bool(true));
        assert_eq!(args.as_deref(), Some(&[Value::from(7)][..]));
    }

    #[test]
    fn subscribe_refusals_name_their_cause() {
        let router = router();
        let mut peer = Peer::join(&router, "realm1", 1);
        let regex = dict([("match", Value::from("regex"))]);
        let (replies, _) = peer.send(subscribe(1, "com.a", regex), START_MS);
        assert_eq!(uri_of(&replies[0]), ErrorUri::InvalidArgument.as_str());
        let (replies, _) = peer.send(subscribe(2, "com..a", Dict::new()), START_MS);
        assert_eq!(uri_of(&replies[0]), ErrorUri::InvalidUri.as_str());
        let after = dict([("after", Value::from("not a number"))]);
        let (replies, _) = peer.send(subscribe(3, "com.a", after), START_MS);
        assert_eq!(uri_of(&replies[0]), ErrorUri::InvalidArgument.as_str());
        let [Message::Error { request: 3, .. }] = replies.as_slice() else {
            panic!("{replies:?}");
        };
    }

    #[test]
    fn unsubscribe_answers_once_then_names_the_missing_subscription() {
        let router = router();
        let mut subscriber = Peer::join(&router, "realm1", 1);
        let subscription = subscribed(
            &subscriber
                .send(subscribe(1, "com.a", Dict::new()), START_MS)
                .0,
        );
        let unsubscribe = |request| Message::Unsubscribe {
            request,
            subscription,
        };
        let (replies, _) = subscriber.send(unsubscribe(2), START_MS);
        assert!(
            matches!(
                replies.as_slice(),
                [Message::Unsubscribed { request: 2, .. }]
            ),
            "{replies:?}"
        );
        let (replies, _) = subscriber.send(unsubscribe(3), START_MS);
        assert_eq!(uri_of(&replies[0]), ErrorUri::NoSuchSubscription.as_str());
        let mut publisher = Peer::join(&router, "realm1", 2);
        publisher.request(publish(4, "com.a", Dict::new(), 1), START_MS);
        assert!(subscriber.queued(START_MS).is_empty(), "no EVENT any more");
    }
}
