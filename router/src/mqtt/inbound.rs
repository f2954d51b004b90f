//! PUBLISH from the client: topic aliases, permission, QoS 0 / 1 / 2 flows (QoS 2 exactly
//! once: the message is published on the first PUBLISH of a packet ID and its ID kept
//! until PUBREL, so a DUP resend is acknowledged, not published again).

// A sans-IO core: time, randomness and tasks come from its caller (router/clippy.toml).
#![deny(clippy::disallowed_methods)]

use fox_mqtt_proto::{
    Packet, PayloadFormat, Properties, PubAck, PubComp, PubRec, Publish, QoS, ReasonCode,
};

use super::session::{Flow, Session, Violation};
use crate::auth::Action;
use crate::engine::Feature;
use crate::realm::{MessageProperties, Payload, PublishOptions};
use crate::topic::{MatchPolicy, Topic};

/// The message properties of an MQTT 5 PUBLISH (or will), with the expiry made absolute.
pub fn message_properties(properties: &Properties, now_ms: u64) -> MessageProperties {
    MessageProperties {
        expires_at_ms: properties
            .message_expiry_interval_secs
            .map(|secs| now_ms + u64::from(secs) * 1000),
        payload_utf8: properties
            .payload_format_indicator
            .map(|f| f == PayloadFormat::Utf8),
        content_type: properties.content_type.clone(),
        response_topic: properties.response_topic.clone(),
        correlation_data: properties.correlation_data.clone(),
        user_properties: properties.user_properties.clone(),
    }
}

impl Session {
    pub(super) fn handle_publish(
        &mut self,
        mut publish: Publish,
        now_ms: u64,
    ) -> Result<(), Violation> {
        if publish.payload.len() > self.settings.payload_max_bytes {
            // MQTT 5 has no acknowledgement code for this (PUBACK and PUBREC do not list
            // 0x95): as for a packet over our Maximum Packet Size, DISCONNECT 0x95.
            return Err(Violation::new(
                ReasonCode::PacketTooLarge,
                "payload larger than limits.message_size_max_bytes",
            ));
        }
        let name = self.resolve_alias(&mut publish)?;
        if publish.retain {
            if let Some(why) = self.realm().shared().engine.refuses(Feature::Retain) {
                return Err(Violation::new(ReasonCode::RetainNotSupported, why));
            }
        }
        let qos2_duplicate = match (publish.qos, publish.packet_id) {
            (QoS::ExactlyOnce, Some(id)) => self.check_qos2_window(id)?,
            _ => false,
        };
        let stats = &self.registry.stats;
        stats.count_publish_received();
        let reason = if qos2_duplicate {
            ReasonCode::Success
        } else {
            // Parsed once: the topic keeps `name` as its MQTT spelling for every delivery.
            let topic = Topic::from_mqtt_owned(name);
            if self.may_publish(&topic) {
                self.publish_to_realm(&topic, &publish, now_ms);
                ReasonCode::Success
            } else {
                tracing::debug!(client = %self.settings.client_id, topic = topic.mqtt_name(), "publish not authorized");
                ReasonCode::NotAuthorized
            }
        };
        let packet_id = publish.packet_id.unwrap_or_default();
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.out.push_back(Packet::PubAck(PubAck {
                packet_id,
                reason: self.reason_for_client(reason),
                properties: Properties::default(),
            })),
            QoS::ExactlyOnce => {
                if !reason.is_error() || !self.settings.protocol.is_v5() {
                    self.state.inbound_qos2.insert(packet_id);
                }
                self.out.push_back(Packet::PubRec(PubRec {
                    packet_id,
                    reason: self.reason_for_client(reason),
                    properties: Properties::default(),
                }));
            }
        }
        Ok(())
    }

    /// 3.x has no failure acknowledgements: a refused publish is acknowledged and
    /// dropped, as Mosquitto does.
    fn reason_for_client(&self, reason: ReasonCode) -> ReasonCode {
        if self.settings.protocol.is_v5() {
            reason
        } else {
            ReasonCode::Success
        }
    }

    /// Whether this packet ID is a QoS 2 resend; errors when a new one exceeds our
    /// Receive Maximum.
    fn check_qos2_window(&self, packet_id: u16) -> Result<bool, Violation> {
        if self.state.inbound_qos2.contains(&packet_id) {
            return Ok(true);
        }
        if self.state.inbound_qos2.len() >= usize::from(self.settings.receive_max) {
            return Err(Violation::new(
                ReasonCode::ReceiveMaximumExceeded,
                "more QoS 2 messages in flight than Receive Maximum",
            ));
        }
        Ok(false)
    }

    /// The topic of a PUBLISH, after topic alias resolution (MQTT 5, spec 3.3.2.3.4).
    fn resolve_alias(&mut self, publish: &mut Publish) -> Result<String, Violation> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            return Ok(std::mem::take(&mut publish.topic));
        };
        if alias == 0 || alias > self.settings.topic_alias_max {
            return Err(Violation::new(
                ReasonCode::TopicAliasInvalid,
                "topic alias out of range",
            ));
        }
        if publish.topic.is_empty() {
            return self
                .aliases
                .as_ref()
                .and_then(|aliases| aliases.inbound.get(&alias))
                .cloned()
                .ok_or(Violation::new(
                    ReasonCode::ProtocolError,
                    "unknown topic alias",
                ));
        }
        let topic = std::mem::take(&mut publish.topic);
        self.aliases
            .get_or_insert_default()
            .inbound
            .insert(alias, topic.clone());
        Ok(topic)
    }

    /// Clients may not publish to `$` topics (`$SYS` is the router's); otherwise the
    /// role's publish permission on the WAMP spelling of the topic decides.
    fn may_publish(&self, topic: &Topic) -> bool {
        if topic.levels().first().is_some_and(|l| l.starts_with('$')) {
            return false;
        }
        if let Some(answer) =
            self.hook_answer(Action::Publish, MatchPolicy::Exact, topic.wamp_uri())
        {
            return answer;
        }
        let role = &self.handle.info.identity.authrole;
        let authorizer = &self.realm().shared().authorizer;
        authorizer.permits_everything(role)
            || authorizer.permits(role, Action::Publish, topic.wamp_uri())
    }

    fn publish_to_realm(&mut self, topic: &Topic, publish: &Publish, now_ms: u64) {
        let options = PublishOptions {
            exclude_me: false,
            qos: publish.qos.value(),
            retain: publish.retain,
            ..PublishOptions::default()
        };
        let properties = message_properties(&publish.properties, now_ms);
        let payload = Payload::Raw(publish.payload.clone());
        let ack = self.realm().publish_durable(
            Some(&self.handle.info),
            topic,
            payload,
            &options,
            properties,
        );
        // QoS 0 is never acknowledged, so nothing waits for its write.
        if publish.qos != QoS::AtMostOnce && !ack.is_ready() {
            self.durability
                .push((ack, publish.packet_id.unwrap_or_default()));
        }
    }

    pub(super) fn handle_pubrel(&mut self, packet_id: u16) -> Result<Flow, Violation> {
        let known = self.state.inbound_qos2.remove(&packet_id);
        let reason = if known {
            ReasonCode::Success
        } else {
            self.reason_for_client(ReasonCode::PacketIdentifierNotFound)
        };
        self.out.push_back(Packet::PubComp(PubComp {
            packet_id,
            reason,
            properties: Properties::default(),
        }));
        Ok(Flow::Continue)
    }
}
