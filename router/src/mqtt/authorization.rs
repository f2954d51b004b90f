//! The authorization hooks in the MQTT session (`crate::auth::hooks`): a PUBLISH or
//! SUBSCRIBE that needs an answer the session has not cached is parked while the
//! connection task asks the hooks (reading nothing meanwhile), then handled.

use std::sync::Arc;

use fox_mqtt_proto::{parse_shared, Packet, QoS};

use super::session::{Flow, Session, Violation};
use crate::auth::hooks::{ask, Answer, Decided, Key, Pending, Query, SessionAuthorization};
use crate::auth::Action;
use crate::router::Router;
use crate::topic::{MatchPolicy, Pattern, Topic};

/// A session's answers from the hooks and the packet waiting for more.
#[derive(Debug)]
pub struct Authorization {
    answers: SessionAuthorization,
    /// The parked packet and the queries the connection task has not taken yet.
    parked: Option<(Packet, Vec<Query>)>,
}

impl Authorization {
    /// With the hooks' cache for one session.
    pub fn new(answers: SessionAuthorization) -> Self {
        Self {
            answers,
            parked: None,
        }
    }
}

impl Session {
    /// `packet`, if it can be handled now; `None` when it is parked for the hooks.
    pub fn park_for_authorization(&mut self, packet: Packet) -> Option<Packet> {
        if self.authorization.is_none() {
            return Some(packet);
        }
        let asked = self.hook_keys(&packet);
        let authorization = self.authorization.as_mut()?;
        let mut queries: Vec<Query> = Vec::new();
        for (key, topic) in asked {
            if authorization.answers.missing(&key) && !queries.iter().any(|q| q.key == key) {
                let mut query = Query::new(&self.handle.info, "mqtt", key);
                query.client_id = Some(self.settings.client_id.clone());
                query.topic = Some(topic);
                queries.push(query);
            }
        }
        if queries.is_empty() {
            return Some(packet);
        }
        authorization.parked = Some((packet, queries));
        None
    }

    /// Whether a packet waits for the hooks' answers (read nothing more until then).
    pub fn awaits_authorization(&self) -> bool {
        self.authorization
            .as_ref()
            .is_some_and(|a| a.parked.is_some())
    }

    /// The hooks' answers for the parked packet, to await (once); then
    /// [`Session::handle_authorization`].
    pub fn take_authorization(&mut self, router: &Arc<Router>) -> Option<Pending> {
        let (_, queries) = self.authorization.as_mut()?.parked.as_mut()?;
        if queries.is_empty() {
            return None;
        }
        let info = &self.handle.info;
        // The field, not `realm()`: `queries` borrows `self.authorization` meanwhile.
        let hooks = self
            .registry
            .realm()
            .shared()
            .authorizer
            .hooks_for(&info.realm, &info.identity.authrole)?
            .clone();
        Some(ask(router.clone(), hooks, std::mem::take(queries)))
    }

    /// The hooks answered: the parked packet is handled.
    pub fn handle_authorization(
        &mut self,
        answers: Vec<(Key, Decided)>,
        now_ms: u64,
    ) -> Result<Flow, Violation> {
        let Some(authorization) = self.authorization.as_mut() else {
            return Ok(Flow::Continue);
        };
        let Some((packet, _)) = authorization.parked.take() else {
            return Ok(Flow::Continue);
        };
        authorization.answers.record(answers);
        let flow = self.handle_packet(packet, now_ms);
        if let Some(authorization) = self.authorization.as_mut() {
            authorization.answers.handled();
        }
        flow
    }

    /// The hooks' answer on an action: `Some(permitted)`, or `None` for the role's rules.
    pub(super) fn hook_answer(
        &self,
        action: Action,
        policy: MatchPolicy,
        uri: &str,
    ) -> Option<bool> {
        let key = (action, policy, uri.to_owned());
        match self.authorization.as_ref()?.answers.answer(&key)? {
            Answer::Allow => Some(true),
            Answer::Deny => Some(false),
            Answer::Ignore => None,
        }
    }

    /// What the hooks would be asked about a packet, with the topic or filter as sent:
    /// a PUBLISH's topic (after its alias), each filter of a SUBSCRIBE. Nothing for what
    /// is refused or answered whatever they say (`$` topics, unknown aliases, QoS 2
    /// resends).
    fn hook_keys(&self, packet: &Packet) -> Vec<(Key, String)> {
        match packet {
            Packet::Publish(publish) => {
                let resend = publish.qos == QoS::ExactlyOnce
                    && publish
                        .packet_id
                        .is_some_and(|id| self.state.inbound_qos2.contains(&id));
                let name = if !publish.topic.is_empty() {
                    Some(publish.topic.as_str())
                } else {
                    publish
                        .properties
                        .topic_alias
                        .and_then(|alias| self.aliases.as_ref()?.inbound.get(&alias))
                        .map(String::as_str)
                };
                match name {
                    Some(name) if !resend && !name.starts_with('$') => {
                        let uri = Topic::from_mqtt(name).to_wamp();
                        vec![((Action::Publish, MatchPolicy::Exact, uri), name.to_owned())]
                    }
                    _ => Vec::new(),
                }
            }
            Packet::Subscribe(subscribe) => subscribe
                .filters
                .iter()
                .map(|(filter, _)| {
                    let inner = parse_shared(filter).map_or(filter.as_str(), |(_, inner)| inner);
                    let (uri, policy) = Pattern::from_mqtt_filter(inner).to_wamp();
                    ((Action::Subscribe, policy, uri), filter.clone())
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}
