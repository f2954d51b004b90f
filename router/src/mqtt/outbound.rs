//! Deliveries to the client: a realm delivery becomes a PUBLISH (QoS downgraded to the
//! subscription's, expired messages dropped, properties passed through unaltered, topic
//! aliases when the client allows them), QoS 1 and 2 go through the inflight window, and
//! the client's acknowledgements retire them. A message matching several of a session's
//! (non-shared) subscriptions is sent once, at the highest of their QoS, with all their
//! Subscription Identifiers.
//!
//! The permanent ID goes to MQTT 5 clients as the user property `fox-id` only when asked
//! for: the listener's switch (`listen.mqtt_fox_id`, `listen.ws_mqtt_fox_id`), or the user
//! property `fox-id: true` on CONNECT (every delivery) or SUBSCRIBE (that subscription's).
//! A message that would exceed the client's Maximum Packet Size only because of it is
//! sent without it.
//!
//! Flow control: the connection takes from the realm queue only while
//! [`Session::wants_deliveries`], so a client that does not acknowledge leaves messages in
//! its bounded realm queue (whose policy, when full, is to drop the newest and count them).

// A sans-IO core: time, randomness and tasks come from its caller (router/clippy.toml).
#![deny(clippy::disallowed_methods)]

use fox_mqtt_proto::{
    Packet, PayloadFormat, Properties, PropertyFields, PubRel, Publish, QoS, ReasonCode,
};

use super::inflight::{Entry, Phase};
use super::session::{Flow, Session, Violation};
use crate::realm::{Delivery, Outbound, Publication};

/// The user property carrying a message's permanent ID to MQTT 5 subscribers.
pub const FOX_ID_PROPERTY: &str = "fox-id";

impl Session {
    /// Whether the connection should take more messages from the realm queue: nothing
    /// pending and room in the inflight window.
    pub fn wants_deliveries(&self) -> bool {
        self.state.pending.is_empty() && self.window_open()
    }

    fn window_open(&self) -> bool {
        self.state.inflight.len() < usize::from(self.settings.inflight_max)
    }

    /// One message from the realm queue.
    pub fn handle_outbound(&mut self, outbound: Outbound, now_ms: u64) -> Result<(), Violation> {
        match outbound {
            Outbound::Event(delivery) => {
                // Live deliveries come in ID order (retained replays never come this way);
                // a cluster entry's own messages (not in the log) have no place in it.
                let id = delivery.publication.id;
                if crate::engine::is_logged(id) {
                    self.state.received_through = self.state.received_through.max(id);
                }
                self.state.pending.push_back(delivery);
                self.drain_pending(now_ms);
                Ok(())
            }
            Outbound::Wamp(_) => Ok(()),
            Outbound::Close(_) => Err(Violation::new(
                ReasonCode::AdministrativeAction,
                "session closed by the router",
            )),
        }
    }

    /// Queues a delivery that did not come through the realm queue (retained replay);
    /// past the pending bound it is dropped and counted.
    pub(super) fn enqueue(&mut self, delivery: Delivery) {
        if self.state.pending.len() >= self.settings.pending_max {
            self.registry.stats.count_dropped();
            return;
        }
        self.state.pending.push_back(delivery);
    }

    /// Sends pending deliveries while the inflight window has room.
    pub(super) fn drain_pending(&mut self, now_ms: u64) {
        while self.window_open() {
            let Some(delivery) = self.state.pending.pop_front() else {
                return;
            };
            self.send_delivery(&delivery, now_ms);
        }
    }

    fn send_delivery(&mut self, delivery: &Delivery, now_ms: u64) {
        let Some(publish) = self.publish_for(delivery, now_ms) else {
            return;
        };
        if publish.qos == QoS::AtMostOnce {
            self.send_publish(publish);
            return;
        }
        let packet_id = self.state.inflight.allocate();
        let publish = Publish {
            packet_id: Some(packet_id),
            ..publish
        };
        let phase = match publish.qos {
            QoS::ExactlyOnce => Phase::AwaitPubRec,
            _ => Phase::AwaitPubAck,
        };
        self.state.inflight.push(Entry {
            packet_id,
            publish: publish.clone(),
            phase,
            id: if delivery.retained {
                0
            } else {
                delivery.publication.id
            },
        });
        self.send_publish(publish);
    }

    /// The PUBLISH for a delivery (without packet ID), or `None` when it is not to be sent:
    /// unknown subscription, already sent merged with another subscription's delivery,
    /// expired, larger than the client's maximum packet size, or on a topic that has no
    /// MQTT topic name (a WAMP URI with `+` or `#` in a component: MQTT-3.3.2-2).
    fn publish_for(&mut self, delivery: &Delivery, now_ms: u64) -> Option<Publish> {
        let wanted = self.wanted(delivery)?;
        let publication = &delivery.publication;
        if fox_mqtt_proto::validate_topic_name(publication.topic.mqtt_name()).is_err() {
            // Only a `#` or `+` subscription can match such a topic (a filter cannot
            // name it); the client would take the PUBLISH for a protocol error.
            self.registry.stats.count_dropped();
            return None;
        }
        let remaining_secs = match publication.properties.expires_at_ms {
            Some(at) if at <= now_ms => return None,
            Some(at) => Some(u32::try_from((at - now_ms).div_ceil(1000)).unwrap_or(u32::MAX)),
            None => None,
        };
        let qos = wanted.qos;
        let retain = delivery.retained || (wanted.retain_as_published && publication.retain);
        let v5 = self.settings.protocol.is_v5();
        let properties = if v5 {
            v5_properties(publication, wanted.identifiers, remaining_secs)
        } else {
            // 3.x has no properties: building them would be thrown away by the encoder.
            Properties::default()
        };
        let mut publish = Publish {
            dup: false,
            qos: QoS::from_u8(qos).unwrap_or(QoS::AtMostOnce),
            retain,
            // The topic's MQTT spelling is computed once per publication, not per delivery.
            topic: publication.topic.mqtt_name().to_owned(),
            packet_id: (qos > 0).then_some(1),
            payload: publication.payload.to_mqtt(),
            properties,
        };
        let fits = |p: &Publish| {
            p.encoded_len(self.settings.protocol)
                .is_ok_and(|bytes| bytes <= self.settings.client_packet_max_bytes)
        };
        if !fits(&publish) {
            // MQTT-3.1.2-25: a packet the client cannot take is discarded.
            self.registry.stats.count_dropped();
            return None;
        }
        if v5 && (wanted.fox_id || self.settings.fox_id) {
            let id = (FOX_ID_PROPERTY.to_owned(), publication.id.to_string());
            publish.properties.user_properties.push(id);
            if !fits(&publish) {
                // The ID is ours, not the publisher's: the message goes without it.
                publish.properties.user_properties.pop();
            }
        }
        Some(publish)
    }

    /// What the subscriptions behind a delivery ask of its PUBLISH. A live delivery through
    /// a non-shared subscription stands for every non-shared subscription of the session
    /// that matches (MQTT-3.3.4-2, -3.3.4-3, -3.3.4-5: one copy, at the highest QoS, with
    /// every Subscription Identifier); the other subscriptions' deliveries of the same
    /// message come right after it (one fan-out, under the realm's order lock) and are
    /// skipped. Retained replays and shared subscriptions are deliveries of their own.
    fn wanted(&mut self, delivery: &Delivery) -> Option<Wanted> {
        let filter = self.state.by_broker_id.get(&delivery.subscription)?;
        let record = self.state.subscriptions.get(filter)?;
        let single = Wanted {
            qos: delivery.qos.min(record.qos),
            retain_as_published: record.retain_as_published,
            identifiers: record.identifier.into_iter().collect(),
            fox_id: record.fox_id,
        };
        if delivery.retained || record.shared {
            return Some(single);
        }
        let id = delivery.publication.id;
        if id == self.state.merged_last {
            return None;
        }
        self.state.merged_last = id;
        if self.state.subscriptions.len() == 1 {
            return Some(single);
        }
        Some(self.merged(&delivery.publication, single))
    }

    /// `single` joined with every other non-shared subscription matching `publication`
    /// that was there when it was published (and, under no local, not its publisher).
    /// Retain as published: the flag is kept if any of them asks for it. No local: a
    /// subscription with it does not take part in its own session's messages, the others
    /// still deliver them.
    fn merged(&self, publication: &Publication, mut wanted: Wanted) -> Wanted {
        let own = self.handle.info.id;
        let dollar = publication.topic.is_system();
        for record in self.state.subscriptions.values() {
            if record.shared
                || record.since >= publication.id
                || (record.no_local && publication.publisher == own)
                || (dollar && !record.pattern.first_level_is_literal())
                || !record.pattern.matches(&publication.topic)
            {
                continue;
            }
            wanted.qos = wanted.qos.max(record.qos.min(publication.qos));
            wanted.retain_as_published |= record.retain_as_published;
            wanted.fox_id |= record.fox_id;
            wanted.identifiers.extend(record.identifier);
        }
        wanted.identifiers.sort_unstable();
        wanted.identifiers.dedup();
        wanted
    }

    /// Writes a PUBLISH, replacing its topic by an alias when the client allows them.
    fn send_publish(&mut self, mut publish: Publish) {
        if self.settings.client_topic_alias_max > 0 {
            let aliases = &mut self.aliases.get_or_insert_default().outbound;
            match aliases.get(&publish.topic) {
                Some(alias) => {
                    publish.properties.topic_alias = Some(*alias);
                    publish.topic.clear();
                }
                None if aliases.len() < usize::from(self.settings.client_topic_alias_max) => {
                    let alias = aliases.len() as u16 + 1;
                    aliases.insert(publish.topic.clone(), alias);
                    publish.properties.topic_alias = Some(alias);
                }
                None => {}
            }
        }
        self.registry.stats.count_publish_sent();
        self.out.push_back(Packet::Publish(publish));
    }

    /// Retransmits everything in flight, in order, after a session resumed: PUBLISH with
    /// DUP set, or PUBREL for exchanges past PUBREC (MQTT-4.4.0-1).
    pub(super) fn retransmit(&mut self) {
        let entries: Vec<Entry> = self.state.inflight.iter().cloned().collect();
        for entry in entries {
            match entry.phase {
                Phase::AwaitPubAck | Phase::AwaitPubRec => {
                    let publish = Publish {
                        dup: true,
                        ..entry.publish
                    };
                    self.send_publish(publish);
                }
                Phase::AwaitPubComp => self
                    .out
                    .push_back(pubrel(entry.packet_id, ReasonCode::Success)),
            }
        }
    }

    pub(super) fn handle_puback(&mut self, packet_id: u16) -> Result<Flow, Violation> {
        // An unknown packet ID is ignored: it may be a late ack of a retransmission.
        self.state.inflight.complete(packet_id, Phase::AwaitPubAck);
        Ok(Flow::Continue)
    }

    pub(super) fn handle_pubrec(
        &mut self,
        packet_id: u16,
        reason: ReasonCode,
    ) -> Result<Flow, Violation> {
        if reason.is_error() {
            // MQTT 5: a failure PUBREC ends the exchange.
            self.state.inflight.complete(packet_id, Phase::AwaitPubRec);
            return Ok(Flow::Continue);
        }
        let known = match self.state.inflight.get_mut(packet_id, Phase::AwaitPubRec) {
            Some(entry) => {
                entry.phase = Phase::AwaitPubComp;
                true
            }
            None => self
                .state
                .inflight
                .get_mut(packet_id, Phase::AwaitPubComp)
                .is_some(),
        };
        let reason = if known || !self.settings.protocol.is_v5() {
            ReasonCode::Success
        } else {
            ReasonCode::PacketIdentifierNotFound
        };
        self.out.push_back(pubrel(packet_id, reason));
        Ok(Flow::Continue)
    }

    pub(super) fn handle_pubcomp(&mut self, packet_id: u16) -> Result<Flow, Violation> {
        self.state.inflight.complete(packet_id, Phase::AwaitPubComp);
        Ok(Flow::Continue)
    }
}

/// What the subscriptions a delivery stands for ask of its PUBLISH.
struct Wanted {
    /// The highest granted QoS (each at most the message's).
    qos: u8,
    /// Some subscription asked for retain as published.
    retain_as_published: bool,
    /// Their Subscription Identifiers, ascending, each once.
    identifiers: Vec<u32>,
    /// Some subscription asked for the permanent ID.
    fox_id: bool,
}

/// Whether MQTT 5 user properties (of a CONNECT or a SUBSCRIBE) ask for the permanent ID:
/// `fox-id` with the value `true`.
pub(super) fn asks_for_fox_id(user_properties: &[(String, String)]) -> bool {
    user_properties
        .iter()
        .any(|(key, value)| key == FOX_ID_PROPERTY && value.eq_ignore_ascii_case("true"))
}

/// The MQTT 5 properties of a delivery: the message's own, unaltered (MQTT-3.3.2-18), the
/// remaining expiry and the subscription identifiers.
fn v5_properties(
    publication: &Publication,
    identifiers: Vec<u32>,
    remaining_secs: Option<u32>,
) -> Properties {
    let message = &publication.properties;
    Properties::from(PropertyFields {
        message_expiry_interval_secs: remaining_secs,
        payload_format_indicator: message.payload_utf8.map(|utf8| {
            if utf8 {
                PayloadFormat::Utf8
            } else {
                PayloadFormat::Unspecified
            }
        }),
        content_type: message.content_type.clone(),
        response_topic: message.response_topic.clone(),
        correlation_data: message.correlation_data.clone(),
        subscription_identifiers: identifiers,
        user_properties: message.user_properties.clone(),
        ..PropertyFields::default()
    })
}

fn pubrel(packet_id: u16, reason: ReasonCode) -> Packet {
    Packet::PubRel(PubRel {
        packet_id,
        reason,
        properties: Properties::default(),
    })
}
