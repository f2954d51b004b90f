//! The broker: subscriptions in a pattern trie, and fan-out of publications.
//!
//! Sessions subscribing to the same pattern share one subscription (and its ID), as the WAMP
//! spec asks. Fan-out applies publisher exclusion, black/white listing and MQTT no-local,
//! skips the subscribers of a pattern subscription whose role may not subscribe to the
//! topic (deny rules), and picks one member per MQTT shared-subscription group (round
//! robin) among the others.

// Time and randomness come from the realm's edge (`super::edge`, router/clippy.toml).
#![deny(clippy::disallowed_methods)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use fox_wamp_proto::{Dict, Value};

pub use crate::message::PublishOptions;

use super::session::Delivery;
use super::{Publication, SessionHandle, SessionId, SessionInfo};
use crate::auth::Authorizer;
use crate::topic::{MatchPolicy, Pattern, Topic, Trie};
use crate::util::iso8601;

impl PublishOptions {
    fn admits(&self, subscriber: &SessionInfo, publisher: Option<SessionId>) -> bool {
        let id = subscriber.id;
        let authid = &subscriber.identity.authid;
        let authrole = &subscriber.identity.authrole;
        if self.exclude_me && publisher == Some(id) {
            return false;
        }
        if self.exclude.contains(&id)
            || self.exclude_authid.contains(authid)
            || self.exclude_authrole.contains(authrole)
        {
            return false;
        }
        self.eligible.as_ref().is_none_or(|e| e.contains(&id))
            && self
                .eligible_authid
                .as_ref()
                .is_none_or(|e| e.contains(authid))
            && self
                .eligible_authrole
                .as_ref()
                .is_none_or(|e| e.contains(authrole))
    }
}

/// Options of one session's subscription.
#[derive(Clone, Debug, Default)]
pub struct SubscribeOptions {
    /// MQTT: maximum QoS granted.
    pub qos: u8,
    /// MQTT: do not deliver the session's own publications.
    pub no_local: bool,
    /// MQTT: shared subscription group.
    pub share_group: Option<String>,
    /// fox-wamp `filter`: deliver only events whose value (see `realm::sync::key_value`)
    /// is a superset of this.
    pub filter: Option<fox_wamp_proto::Value>,
    /// fox-wamp `retained`: live events only for retained publishes (state changes).
    pub retained_only: bool,
    /// `after`: no live event with an ID at or below this one (0: none skipped). On a
    /// single node every live event is past it already; a cluster entry whose log lags
    /// behind the `after` a client names applies older records live, and they were not
    /// asked for.
    pub live_after: u64,
}

/// Whether a publication passes a subscriber's `filter` (none passes everything).
pub fn admits_filter(filter: Option<&fox_wamp_proto::Value>, publication: &Publication) -> bool {
    filter.is_none_or(|f| super::sync::fits(f, &super::sync::key_value(Some(&publication.payload))))
}

/// One subscriber of a subscription.
#[derive(Clone, Debug)]
pub struct Subscriber {
    /// Its session.
    pub handle: SessionHandle,
    /// Its options.
    pub options: SubscribeOptions,
}

/// A subscription: one pattern, its subscribers.
#[derive(Debug)]
pub struct Subscription {
    /// Subscription ID.
    pub id: u64,
    /// Pattern.
    pub pattern: Pattern,
    /// When it was created (ISO 8601).
    pub created: String,
    /// Subscribers by session.
    pub subscribers: HashMap<SessionId, Subscriber>,
    next_in_group: AtomicUsize,
}

impl Subscription {
    /// Meta API details: id, created, uri, match.
    pub fn details(&self) -> Dict {
        super::meta_details(self.id, &self.created, &self.pattern)
    }
}

/// All subscriptions of a realm.
#[derive(Debug, Default)]
pub struct Broker {
    subscriptions: HashMap<u64, Subscription>,
    by_pattern: HashMap<Pattern, u64>,
    trie: Trie<u64>,
    by_session: HashMap<SessionId, HashSet<u64>>,
    next_id: u64,
}

impl Broker {
    /// Adds a session to the subscription of `pattern`; returns (ID, created).
    pub fn subscribe(
        &mut self,
        handle: &SessionHandle,
        pattern: Pattern,
        options: SubscribeOptions,
        now_ms: u64,
    ) -> (u64, bool) {
        let (id, created) = match self.by_pattern.get(&pattern) {
            Some(id) => (*id, false),
            None => {
                self.next_id += 1;
                let id = self.next_id;
                self.trie.insert(&pattern, id);
                self.by_pattern.insert(pattern.clone(), id);
                let sub = Subscription {
                    id,
                    pattern,
                    created: iso8601(now_ms),
                    subscribers: HashMap::new(),
                    next_in_group: AtomicUsize::new(0),
                };
                self.subscriptions.insert(id, sub);
                (id, true)
            }
        };
        let session = handle.info.id;
        if let Some(sub) = self.subscriptions.get_mut(&id) {
            let subscriber = Subscriber {
                handle: handle.clone(),
                options,
            };
            sub.subscribers.insert(session, subscriber);
        }
        self.by_session.entry(session).or_default().insert(id);
        (id, created)
    }

    /// Whether subscribing `session` to `pattern` would give it one more subscription than
    /// the `max` it may hold (subscribing again to a pattern it has is not one more).
    pub fn over_limit(&self, session: SessionId, pattern: &Pattern, max: usize) -> bool {
        let Some(ids) = self.by_session.get(&session) else {
            return max == 0;
        };
        let again = self
            .by_pattern
            .get(pattern)
            .is_some_and(|id| ids.contains(id));
        !again && ids.len() >= max
    }

    /// Removes a session from a subscription: `None` if it was not subscribed, else whether
    /// the subscription was deleted (no subscriber left).
    pub fn unsubscribe(&mut self, session: SessionId, id: u64) -> Option<bool> {
        let sub = self.subscriptions.get_mut(&id)?;
        sub.subscribers.remove(&session)?;
        if let Some(ids) = self.by_session.get_mut(&session) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_session.remove(&session);
            }
        }
        if !sub.subscribers.is_empty() {
            return Some(false);
        }
        if let Some(sub) = self.subscriptions.remove(&id) {
            self.trie.remove(&sub.pattern, &id);
            self.by_pattern.remove(&sub.pattern);
        }
        Some(true)
    }

    /// Removes a session from all its subscriptions: (ID, deleted) for each.
    pub fn remove_session(&mut self, session: SessionId) -> Vec<(u64, bool)> {
        let ids: Vec<u64> = self
            .by_session
            .get(&session)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| self.unsubscribe(session, id).map(|deleted| (id, deleted)))
            .collect()
    }

    /// Delivers a publication to every admitted subscriber of every matching subscription.
    /// A pattern subscription's subscribers whose role may not subscribe to the topic
    /// (a deny rule inside what the pattern covers) are skipped. Returns how many
    /// deliveries were dropped at full session queues.
    pub fn fan_out(
        &self,
        publication: &Arc<Publication>,
        publisher_id: Option<SessionId>,
        options: &PublishOptions,
        authorizer: &Authorizer,
    ) -> u64 {
        let dollar = publication.topic.is_system();
        let mut dropped = 0;
        self.trie.matches(&publication.topic, |id| {
            let Some(sub) = self.subscriptions.get(id) else {
                return;
            };
            // MQTT 4.7.2: wildcards at the first level do not match `$` topics; the router's
            // own `wamp.*` meta events are kept out of them the same way.
            if dollar && !sub.pattern.first_level_is_literal() {
                return;
            }
            dropped += self.deliver(sub, publication, publisher_id, options, authorizer);
        });
        dropped
    }

    /// Delivers to the admitted subscribers of one subscription; returns how many
    /// deliveries were dropped at full queues.
    fn deliver(
        &self,
        sub: &Subscription,
        publication: &Arc<Publication>,
        publisher: Option<SessionId>,
        options: &PublishOptions,
        authorizer: &Authorizer,
    ) -> u64 {
        let mut dropped = 0;
        let pattern_based = !matches!(sub.pattern, Pattern::Exact(_));
        let mut groups: HashMap<&str, Vec<&Subscriber>> = HashMap::new();
        for subscriber in sub.subscribers.values() {
            let info = &subscriber.handle.info;
            // An exact subscription was checked on this very topic when it was made.
            let denied = pattern_based
                && !authorizer.may_receive(
                    &info.realm,
                    &info.identity.authrole,
                    &publication.topic,
                );
            if denied
                || !options.admits(info, publisher)
                || (subscriber.options.no_local && publisher == Some(info.id))
                || !admits_filter(subscriber.options.filter.as_ref(), publication)
                || (subscriber.options.retained_only && !publication.retain)
                || publication.id <= subscriber.options.live_after
            {
                continue;
            }
            if let Some(group) = &subscriber.options.share_group {
                groups.entry(group.as_str()).or_default().push(subscriber);
                continue;
            }
            dropped += u64::from(subscriber.handle.deliver(Delivery {
                subscription: sub.id,
                pattern_based,
                publication: publication.clone(),
                qos: subscriber.options.qos.min(publication.qos),
                retained: false,
            }));
        }
        for (_, mut members) in groups {
            members.sort_by_key(|m| m.handle.info.id);
            let turn = sub.next_in_group.fetch_add(1, Ordering::Relaxed);
            let chosen = members[turn % members.len()];
            dropped += u64::from(chosen.handle.deliver(Delivery {
                subscription: sub.id,
                pattern_based,
                publication: publication.clone(),
                qos: chosen.options.qos.min(publication.qos),
                retained: false,
            }));
        }
        dropped
    }

    /// Every subscription, in no particular order.
    pub fn subscriptions(&self) -> impl Iterator<Item = &Subscription> {
        self.subscriptions.values()
    }

    /// How many subscriptions there are.
    pub fn len(&self) -> usize {
        self.subscriptions.len()
    }

    /// Whether there is no subscription.
    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
    }

    /// Meta API: the subscription's details.
    pub fn details(&self, id: u64) -> Option<Dict> {
        self.subscriptions.get(&id).map(Subscription::details)
    }

    /// Meta API: IDs by match policy (`exact`, `prefix`, `wildcard`).
    pub fn list(&self) -> Dict {
        let mut lists: [Vec<Value>; 3] = Default::default();
        for sub in self.subscriptions.values() {
            let index = match sub.pattern.to_wamp().1 {
                MatchPolicy::Exact => 0,
                MatchPolicy::Prefix => 1,
                MatchPolicy::Wildcard => 2,
            };
            lists[index].push(Value::from(sub.id));
        }
        let [exact, prefix, wildcard] = lists;
        let mut d = Dict::new();
        d.insert("exact".into(), Value::List(exact));
        d.insert("prefix".into(), Value::List(prefix));
        d.insert("wildcard".into(), Value::List(wildcard));
        d
    }

    /// The pattern of a subscription.
    pub fn pattern(&self, id: u64) -> Option<Pattern> {
        self.subscriptions.get(&id).map(|s| s.pattern.clone())
    }

    /// Meta API: the subscription ID of a pattern.
    pub fn lookup(&self, pattern: &Pattern) -> Option<u64> {
        self.by_pattern.get(pattern).copied()
    }

    /// Meta API: IDs of subscriptions matching a topic.
    pub fn matching(&self, topic: &Topic) -> Vec<u64> {
        let mut ids = Vec::new();
        self.trie.matches(topic, |id| ids.push(*id));
        ids.sort_unstable();
        ids
    }

    /// Meta API: the sessions subscribed.
    pub fn subscribers(&self, id: u64) -> Option<Vec<SessionId>> {
        let sub = self.subscriptions.get(&id)?;
        let mut ids: Vec<SessionId> = sub.subscribers.keys().copied().collect();
        ids.sort_unstable();
        Some(ids)
    }
}
