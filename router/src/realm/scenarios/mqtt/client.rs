//! The harness's MQTT client: one client identifier, its current connection (`link.rs`:
//! the router's session core driven as the connection task drives it), and the state a
//! client keeps across the connections of one session.
//!
//! The client checks the protocol's side: every acknowledgement it waits for comes once
//! (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK), no new QoS 1 / 2 PUBLISH comes while its
//! inflight window is full, and a resumed session first retransmits what was in flight
//! (PUBLISH with DUP, PUBREL), in order. What each new PUBLISH carries is for the world to
//! check against its model ([`Received`]).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use fox_mqtt_proto::{
    Connect, Disconnect, Packet, Properties, Protocol, PubAck, PubComp, PubRec, PubRel, Publish,
    QoS, ReasonCode, Subscribe, SubscriptionOptions, Unsubscribe,
};
use proptest::prelude::*;

use super::link::Link;
use crate::mqtt::{End, Flow};
use crate::router::Router;

/// How the client left.
#[derive(Clone, Copy, Debug)]
pub(super) enum Leaving {
    /// DISCONNECT; MQTT 5 may ask for the will (0x04) and end the session (expiry 0).
    Clean { with_will: bool, expiry_zero: bool },
    /// The connection dropped.
    Abrupt,
}

/// Where a message from the router stands at the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// PUBACK (QoS 1) or PUBREC (QoS 2) owed.
    Received,
    /// PUBREL received: PUBCOMP owed.
    Released,
}

/// A QoS 1 / 2 message from the router not completely acknowledged yet.
#[derive(Clone, Debug)]
struct Inbound {
    packet_id: u16,
    tag: String,
    qos: QoS,
    phase: Phase,
}

/// An answer the client waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Awaited {
    PubAck,
    PubRec(Publish),
    PubComp,
    SubAck(Vec<ReasonCode>),
    /// The reason codes (MQTT 5; 3.x has none).
    UnsubAck(Vec<ReasonCode>),
}

/// What a resumed session must send first.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Retransmission {
    Publish { packet_id: u16, tag: String },
    Release(u16),
}

/// A new PUBLISH from the router, for the world to check.
#[derive(Clone, Debug)]
pub(super) struct Received {
    /// The tag the payload carries.
    pub tag: String,
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub identifiers: Vec<u32>,
    pub payload: Bytes,
}

/// One MQTT client (one client identifier) and its current connection, if any.
pub(super) struct Client {
    pub protocol: Protocol,
    client_id: String,
    link: Option<Link>,
    next_packet_id: u16,
    /// Messages from the router not yet completely acknowledged, in arrival order.
    inbound: Vec<Inbound>,
    /// Our QoS 2 publishes answered with PUBREC, PUBREL not sent yet.
    unreleased: VecDeque<Publish>,
    /// Answers owed to us (by packet ID); all come in the step that asked.
    awaited: Vec<(u16, Awaited)>,
    retransmissions: VecDeque<Retransmission>,
}

impl Client {
    pub fn new(client_id: String, protocol: Protocol) -> Self {
        Self {
            protocol,
            client_id,
            link: None,
            next_packet_id: 0,
            inbound: Vec::new(),
            unreleased: VecDeque::new(),
            awaited: Vec::new(),
            retransmissions: VecDeque::new(),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.link.is_some()
    }

    /// Connected, with room in the window: the router must have sent all it owes.
    pub fn window_open(&self) -> bool {
        self.link
            .as_ref()
            .is_some_and(|link| self.inbound.len() < link.inflight_max)
    }

    /// Messages waiting for our acknowledgement (the window in use).
    pub fn unacknowledged(&self) -> usize {
        self.inbound.len()
    }

    pub fn has_unreleased(&self) -> bool {
        !self.unreleased.is_empty()
    }

    fn packet_id(&mut self) -> u16 {
        self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
        self.next_packet_id
    }

    /// CONNECT (taking over this client's live connection, if any), and the CONNACK,
    /// which must say `present` (session present).
    pub fn connect(
        &mut self,
        router: &Arc<Router>,
        runtime: &tokio::runtime::Runtime,
        mut connect: Connect,
        inflight_max: usize,
        present: bool,
        now_ms: u64,
    ) -> Result<(), TestCaseError> {
        connect.protocol = self.protocol;
        connect.client_id = self.client_id.clone();
        let old = self.link.take();
        let was_live = old.is_some();
        let (link, last) = Link::connect(router, runtime, connect, old, inflight_max, now_ms)?;
        self.check_taken_over(was_live, &last)?;
        self.link = Some(link);
        let first = self.poll()?;
        let Some(Packet::ConnAck(connack)) = first else {
            return Err(TestCaseError::fail(format!("CONNACK first, not {first:?}")));
        };
        prop_assert_eq!(connack.reason, ReasonCode::Success);
        prop_assert_eq!(connack.session_present, present, "session present");
        if present {
            self.retransmissions = self.inbound.iter().map(retransmission).collect();
        } else {
            self.inbound.clear();
            self.unreleased.clear();
        }
        Ok(())
    }

    /// The last packets of a connection taken over: DISCONNECT 0x8E in MQTT 5, nothing in
    /// 3.x (which just closes).
    fn check_taken_over(&self, was_live: bool, last: &[Packet]) -> Result<(), TestCaseError> {
        if !was_live || !self.protocol.is_v5() {
            prop_assert!(last.is_empty(), "written at takeover: {:?}", last);
            return Ok(());
        }
        prop_assert!(
            matches!(last, [Packet::Disconnect(d)] if d.reason == ReasonCode::SessionTakenOver),
            "DISCONNECT 0x8E at takeover, not {:?}",
            last
        );
        Ok(())
    }

    /// The client leaves. Packets written at the end must be none (everything before was
    /// read in the step that queued it).
    pub fn leave(&mut self, how: Leaving, now_ms: u64) -> Result<(), TestCaseError> {
        let Some(mut link) = self.link.take() else {
            return Ok(());
        };
        let end = match how {
            Leaving::Abrupt => End::Abnormal,
            Leaving::Clean {
                with_will,
                expiry_zero,
            } => {
                let mut disconnect = Disconnect::default();
                if with_will {
                    disconnect.reason = ReasonCode::DisconnectWithWillMessage;
                }
                if expiry_zero {
                    disconnect.properties.session_expiry_interval_secs = Some(0);
                }
                let flow = link.send(Packet::Disconnect(disconnect), now_ms)?;
                prop_assert_eq!(flow, Flow::Disconnected);
                End::Normal
            }
        };
        let last = link.hang_up(end, None, None)?;
        prop_assert!(last.is_empty(), "written at the end: {:?}", last);
        Ok(())
    }

    /// Sends one packet to the router's session.
    fn send(&mut self, packet: Packet, now_ms: u64) -> Result<(), TestCaseError> {
        let Some(link) = self.link.as_mut() else {
            return Err(TestCaseError::fail("sending without a connection"));
        };
        let flow = link.send(packet, now_ms)?;
        prop_assert_eq!(flow, Flow::Continue);
        Ok(())
    }

    pub fn subscribe(
        &mut self,
        filter: &str,
        qos: u8,
        identifier: Option<u32>,
        now_ms: u64,
    ) -> Result<(), TestCaseError> {
        let packet_id = self.packet_id();
        let qos = QoS::from_u8(qos).unwrap_or(QoS::AtMostOnce);
        let mut properties = Properties::default();
        properties.subscription_identifiers = identifier.into_iter().collect();
        let options = SubscriptionOptions {
            qos,
            ..Default::default()
        };
        let granted = ReasonCode::from_u8(qos.value()).unwrap_or(ReasonCode::Success);
        self.awaited
            .push((packet_id, Awaited::SubAck(vec![granted])));
        let subscribe = Subscribe {
            packet_id,
            filters: vec![(filter.to_owned(), options)],
            properties,
        };
        self.send(Packet::Subscribe(subscribe), now_ms)
    }

    pub fn unsubscribe(
        &mut self,
        filter: &str,
        existed: bool,
        now_ms: u64,
    ) -> Result<(), TestCaseError> {
        let packet_id = self.packet_id();
        let reasons = match (self.protocol.is_v5(), existed) {
            (false, _) => Vec::new(),
            (true, true) => vec![ReasonCode::Success],
            (true, false) => vec![ReasonCode::NoSubscriptionExisted],
        };
        self.awaited.push((packet_id, Awaited::UnsubAck(reasons)));
        let unsubscribe = Unsubscribe {
            packet_id,
            filters: vec![filter.to_owned()],
            properties: Properties::default(),
        };
        self.send(Packet::Unsubscribe(unsubscribe), now_ms)
    }

    /// Publishes `tag` on `topic`: QoS 1 waits for one PUBACK, QoS 2 for one PUBREC.
    pub fn publish(
        &mut self,
        topic: &str,
        tag: &str,
        qos: u8,
        now_ms: u64,
    ) -> Result<(), TestCaseError> {
        let qos = QoS::from_u8(qos).unwrap_or(QoS::AtMostOnce);
        let packet_id = (qos != QoS::AtMostOnce).then(|| self.packet_id());
        let publish = Publish {
            qos,
            packet_id,
            topic: topic.to_owned(),
            payload: Bytes::from(tag.to_owned()),
            ..Publish::default()
        };
        match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.awaited.push((id, Awaited::PubAck)),
            (QoS::ExactlyOnce, Some(id)) => {
                self.awaited.push((id, Awaited::PubRec(publish.clone())));
            }
            _ => {}
        }
        self.send(Packet::Publish(publish), now_ms)
    }

    /// Sends the oldest unreleased QoS 2 PUBLISH again with DUP: the router answers PUBREC
    /// and must not publish it twice.
    pub fn resend(&mut self, now_ms: u64) -> Result<(), TestCaseError> {
        let Some(publish) = self.unreleased.pop_front() else {
            return Ok(());
        };
        let id = publish.packet_id.unwrap_or_default();
        let again = Publish {
            dup: true,
            ..publish.clone()
        };
        self.awaited.push((id, Awaited::PubRec(publish)));
        self.send(Packet::Publish(again), now_ms)
    }

    /// PUBREL for the oldest unreleased QoS 2 PUBLISH: one PUBCOMP comes back.
    pub fn release(&mut self, now_ms: u64) -> Result<(), TestCaseError> {
        let Some(publish) = self.unreleased.pop_front() else {
            return Ok(());
        };
        let packet_id = publish.packet_id.unwrap_or_default();
        self.awaited.push((packet_id, Awaited::PubComp));
        let release = PubRel {
            packet_id,
            ..PubRel::default()
        };
        self.send(Packet::PubRel(release), now_ms)
    }

    /// Acknowledges the `count` oldest messages from the router, in order: PUBACK (QoS 1),
    /// PUBREC (QoS 2, the router's PUBREL follows), PUBCOMP (after PUBREL).
    pub fn acknowledge(&mut self, count: usize, now_ms: u64) -> Result<(), TestCaseError> {
        for _ in 0..count {
            let Some(first) = self.inbound.first().cloned() else {
                return Ok(());
            };
            let packet_id = first.packet_id;
            let packet = match (first.qos, first.phase) {
                (QoS::ExactlyOnce, Phase::Received) => Packet::PubRec(PubRec {
                    packet_id,
                    ..PubRec::default()
                }),
                (QoS::ExactlyOnce, Phase::Released) => Packet::PubComp(PubComp {
                    packet_id,
                    ..PubComp::default()
                }),
                _ => Packet::PubAck(PubAck {
                    packet_id,
                    ..PubAck::default()
                }),
            };
            if !matches!(packet, Packet::PubRec(_)) {
                self.inbound.remove(0);
            }
            self.send(packet, now_ms)?;
            // The PUBREL that answers a PUBREC is read at once.
            let received = self.read()?;
            prop_assert!(
                received.is_empty(),
                "a PUBLISH in answer to an acknowledgement: {:?}",
                received
            );
        }
        Ok(())
    }

    /// Moves realm messages into the session while it wants them, as the connection task
    /// does, then reads what the session wrote.
    pub fn pump(&mut self, now_ms: u64) -> Result<Vec<Received>, TestCaseError> {
        if let Some(link) = self.link.as_mut() {
            link.pump(now_ms)?;
        }
        self.read()
    }

    /// What the session wrote, read as the client.
    fn read(&mut self) -> Result<Vec<Received>, TestCaseError> {
        let mut received = Vec::new();
        while let Some(packet) = self.poll()? {
            if let Some(new) = self.receive(packet)? {
                received.push(new);
            }
        }
        Ok(received)
    }

    /// The next packet the session wrote.
    fn poll(&mut self) -> Result<Option<Packet>, TestCaseError> {
        match self.link.as_mut() {
            Some(link) => link.poll(),
            None => Ok(None),
        }
    }

    fn receive(&mut self, packet: Packet) -> Result<Option<Received>, TestCaseError> {
        match packet {
            Packet::Publish(publish) => self.receive_publish(publish),
            Packet::PubRel(release) => {
                prop_assert_eq!(release.reason, ReasonCode::Success);
                self.receive_release(release.packet_id)?;
                Ok(None)
            }
            Packet::PubAck(ack) => self.answered(ack.packet_id, ack.reason, Awaited::PubAck),
            Packet::PubComp(comp) => self.answered(comp.packet_id, comp.reason, Awaited::PubComp),
            Packet::PubRec(rec) => {
                let position = self
                    .awaited
                    .iter()
                    .position(|(id, a)| *id == rec.packet_id && matches!(a, Awaited::PubRec(_)));
                let Some(position) = position else {
                    return Err(TestCaseError::fail(format!("PUBREC not awaited: {rec:?}")));
                };
                prop_assert_eq!(rec.reason, ReasonCode::Success);
                if let (_, Awaited::PubRec(publish)) = self.awaited.remove(position) {
                    self.unreleased.push_back(publish);
                }
                Ok(None)
            }
            Packet::SubAck(ack) => {
                let awaited = Awaited::SubAck(ack.reasons);
                self.answered(ack.packet_id, ReasonCode::Success, awaited)
            }
            Packet::UnsubAck(ack) => {
                let awaited = Awaited::UnsubAck(ack.reasons);
                self.answered(ack.packet_id, ReasonCode::Success, awaited)
            }
            other => Err(TestCaseError::fail(format!("unexpected {other:?}"))),
        }
    }

    /// One answer we waited for, exactly once.
    fn answered(
        &mut self,
        packet_id: u16,
        reason: ReasonCode,
        awaited: Awaited,
    ) -> Result<Option<Received>, TestCaseError> {
        let position = self
            .awaited
            .iter()
            .position(|(id, a)| *id == packet_id && *a == awaited);
        prop_assert!(
            position.is_some(),
            "not awaited: {:?} for {} (awaiting {:?})",
            awaited,
            packet_id,
            self.awaited
        );
        prop_assert_eq!(reason, ReasonCode::Success);
        if let Some(position) = position {
            self.awaited.remove(position);
        }
        Ok(None)
    }

    fn receive_publish(&mut self, publish: Publish) -> Result<Option<Received>, TestCaseError> {
        let tag = tag_of(&publish.payload);
        if publish.dup {
            let packet_id = publish.packet_id.unwrap_or_default();
            let expected = Retransmission::Publish { packet_id, tag };
            prop_assert_eq!(
                self.retransmissions.pop_front(),
                Some(expected),
                "a DUP PUBLISH retransmits what was in flight, in order"
            );
            return Ok(None);
        }
        prop_assert!(
            self.retransmissions.is_empty(),
            "a new PUBLISH before the retransmissions: {:?}",
            self.retransmissions
        );
        if publish.qos != QoS::AtMostOnce {
            let window = self.link.as_ref().map_or(0, |l| l.inflight_max);
            prop_assert!(
                self.inbound.len() < window,
                "a QoS {} PUBLISH past the inflight window of {}",
                publish.qos.value(),
                window
            );
            let packet_id = publish.packet_id.unwrap_or_default();
            prop_assert!(
                !self.inbound.iter().any(|i| i.packet_id == packet_id),
                "packet ID {} in use",
                packet_id
            );
            self.inbound.push(Inbound {
                packet_id,
                tag: tag.clone(),
                qos: publish.qos,
                phase: Phase::Received,
            });
        }
        Ok(Some(Received {
            tag,
            topic: publish.topic,
            qos: publish.qos.value(),
            retain: publish.retain,
            identifiers: publish.properties.subscription_identifiers.clone(),
            payload: publish.payload,
        }))
    }

    /// PUBREL: the answer to our PUBREC, or its retransmission after a resume.
    fn receive_release(&mut self, packet_id: u16) -> Result<(), TestCaseError> {
        if self.retransmissions.front() == Some(&Retransmission::Release(packet_id)) {
            self.retransmissions.pop_front();
            return Ok(());
        }
        prop_assert!(
            self.retransmissions.is_empty(),
            "PUBREL {} before the retransmissions",
            packet_id
        );
        let entry = self
            .inbound
            .iter_mut()
            .find(|i| i.packet_id == packet_id && i.qos == QoS::ExactlyOnce);
        let Some(entry) = entry else {
            return Err(TestCaseError::fail(format!("PUBREL {packet_id} unknown")));
        };
        prop_assert_eq!(entry.phase, Phase::Received, "one PUBREL per PUBREC");
        entry.phase = Phase::Released;
        Ok(())
    }

    /// After a step: every answer came, every retransmission was made.
    pub fn settled(&self) -> Result<(), TestCaseError> {
        prop_assert!(
            self.awaited.is_empty(),
            "answers missing: {:?}",
            self.awaited
        );
        prop_assert!(
            self.retransmissions.is_empty(),
            "retransmissions missing: {:?}",
            self.retransmissions
        );
        Ok(())
    }
}

/// What a resumed session must retransmit for a message still in flight.
fn retransmission(inbound: &Inbound) -> Retransmission {
    match inbound.phase {
        Phase::Received => Retransmission::Publish {
            packet_id: inbound.packet_id,
            tag: inbound.tag.clone(),
        },
        Phase::Released => Retransmission::Release(inbound.packet_id),
    }
}

/// The tag a payload carries: the bytes themselves, or a WAMP argument's JSON string.
pub(super) fn tag_of(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(&text)
        .to_owned()
}
