//! SUBSCRIBE and UNSUBSCRIBE: permission per filter, shared subscriptions
//! (`$share/GROUP/FILTER`: the broker picks one member per group), subscription
//! identifiers, no local, retain handling (0: send retained messages, 1: only for a new
//! subscription, 2: never; never for a shared subscription, spec 4.8.2), and the
//! `fox-id` opt-in: a SUBSCRIBE carrying the user property `fox-id: true` asks for the
//! permanent ID on the deliveries of the filters it subscribes.

// A sans-IO core: time, randomness and tasks come from its caller (router/clippy.toml).
#![deny(clippy::disallowed_methods)]

use fox_mqtt_proto::{
    parse_shared, Packet, Properties, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};

use super::session::{Flow, Session, SubscriptionRecord, Violation};
use crate::auth::Action;
use crate::realm::{Delivery, SubscribeOptions};
use crate::topic::Pattern;

impl Session {
    pub(super) fn handle_subscribe(
        &mut self,
        subscribe: Subscribe,
        now_ms: u64,
    ) -> Result<Flow, Violation> {
        let identifier = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let fox_id = super::outbound::asks_for_fox_id(&subscribe.properties.user_properties);
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut replays = Vec::new();
        for (filter, options) in &subscribe.filters {
            let (reason, replay) = self.subscribe_one(filter, options, identifier, fox_id)?;
            reasons.push(reason);
            replays.extend(replay);
        }
        self.out.push_back(Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            reasons,
            properties: Properties::default(),
        }));
        for delivery in replays {
            self.enqueue(delivery);
        }
        self.drain_pending(now_ms);
        self.persist(now_ms);
        Ok(Flow::Continue)
    }

    /// Why a subscription to `filter` is refused, if it is: not authorized, or past the
    /// session's limit (a new one).
    fn refusal(&self, filter: &str, pattern: &Pattern, is_new: bool) -> Option<ReasonCode> {
        let limits = &self.realm().shared().limits;
        if !self.may_subscribe(pattern) {
            tracing::debug!(client = %self.settings.client_id, %filter, "subscribe not authorized");
            return Some(if limits.mqtt_v5_subscribe_refused_unspecified {
                ReasonCode::UnspecifiedError
            } else {
                ReasonCode::NotAuthorized
            });
        }
        let max = limits.subscriptions_per_session_max;
        if is_new && self.state.subscriptions.len() >= max {
            tracing::debug!(client = %self.settings.client_id, %filter, max, "subscription refused: limit reached");
            return Some(ReasonCode::QuotaExceeded);
        }
        None
    }

    /// Subscribes one filter: its SUBACK reason code and the retained messages to replay.
    fn subscribe_one(
        &mut self,
        filter: &str,
        options: &SubscriptionOptions,
        identifier: Option<u32>,
        fox_id: bool,
    ) -> Result<(ReasonCode, Vec<Delivery>), Violation> {
        let (group, inner) = match parse_shared(filter) {
            Some((group, inner)) => (Some(group.to_owned()), inner),
            None => (None, filter),
        };
        if group.is_some() && options.no_local {
            return Err(Violation::new(
                ReasonCode::ProtocolError,
                "no local on a shared subscription",
            ));
        }
        let pattern = Pattern::from_mqtt_filter(inner);
        let is_new = !self.state.subscriptions.contains_key(filter);
        if let Some(reason) = self.refusal(filter, &pattern, is_new) {
            return Ok((reason, Vec::new()));
        }
        let qos = options.qos.value();
        let shared = group.is_some();
        let subscribe_options = SubscribeOptions {
            qos,
            no_local: options.no_local,
            share_group: group,
            ..SubscribeOptions::default()
        };
        let replay = match options.retain_handling {
            _ if shared => false,
            RetainHandling::SendAtSubscribe => true,
            RetainHandling::SendAtSubscribeIfNew => is_new,
            RetainHandling::DoNotSend => false,
        };
        // The retained messages are read at the subscription's start, like WAMP's: none is
        // missed or also delivered live.
        let (broker_id, started) = self.realm().subscribe_replay(
            &self.handle,
            pattern.clone(),
            subscribe_options,
            None,
            replay,
        );
        // A subscription that replaces one keeps its start: what the old one was sent is
        // still owed (durable sessions, see persist.rs).
        let since = self
            .state
            .subscriptions
            .get(filter)
            .map_or(started.cut, |old| old.since);
        let record = SubscriptionRecord {
            broker_id,
            qos,
            retain_as_published: options.retain_as_published,
            identifier,
            no_local: options.no_local,
            since,
            pattern: pattern.clone(),
            shared,
            fox_id,
        };
        self.state.subscriptions.insert(filter.to_owned(), record);
        self.state.by_broker_id.insert(broker_id, filter.to_owned());
        let pattern_based = !matches!(pattern, Pattern::Exact(_));
        let deliveries = started
            .retained
            .into_iter()
            .map(|publication| Delivery {
                subscription: broker_id,
                pattern_based,
                qos: qos.min(publication.qos),
                publication,
                retained: true,
            })
            .collect();
        let reason = ReasonCode::from_u8(qos).unwrap_or(ReasonCode::Success);
        Ok((reason, deliveries))
    }

    /// The role's subscribe permission on the WAMP spelling of the pattern (`a/+/c` is
    /// `a..c`, `a/#` is the prefix `a.`).
    fn may_subscribe(&self, pattern: &Pattern) -> bool {
        let (uri, policy) = pattern.to_wamp();
        if let Some(answer) = self.hook_answer(Action::Subscribe, policy, &uri) {
            return answer;
        }
        let role = &self.handle.info.identity.authrole;
        self.realm()
            .shared()
            .authorizer
            .permits(role, Action::Subscribe, &uri)
    }

    pub(super) fn handle_unsubscribe(
        &mut self,
        unsubscribe: Unsubscribe,
        now_ms: u64,
    ) -> Result<Flow, Violation> {
        let reasons = unsubscribe
            .filters
            .iter()
            .map(|filter| self.unsubscribe_one(filter))
            .collect();
        self.out.push_back(Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            reasons,
            properties: Properties::default(),
        }));
        self.persist(now_ms);
        Ok(Flow::Continue)
    }

    fn unsubscribe_one(&mut self, filter: &str) -> ReasonCode {
        let Some(record) = self.state.subscriptions.remove(filter) else {
            return ReasonCode::NoSubscriptionExisted;
        };
        let shares_broker_id = self
            .state
            .subscriptions
            .values()
            .any(|r| r.broker_id == record.broker_id);
        if !shares_broker_id {
            self.state.by_broker_id.remove(&record.broker_id);
            self.realm()
                .unsubscribe(self.handle.info.id, record.broker_id);
        }
        ReasonCode::Success
    }
}
