//! The checks after every step, and the liveness phase at the end.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::client::{tag_of, Received};
use super::model::{Presence, Publication, SessionModel, TOPICS};
use super::{
    ConnectSpec, MqttSlot, Op, World, EXPIRIES_SECS, MQTT_CLIENTS, SETTLE_ROUNDS_MAX, WAMP_SESSIONS,
};
use crate::realm::Outbound;

impl World {
    pub(super) fn check(&mut self) -> Result<(), TestCaseError> {
        self.witness_ids()?;
        for s in 0..WAMP_SESSIONS {
            self.check_wamp(s)?;
        }
        for c in 0..MQTT_CLIENTS {
            self.check_mqtt(c)?;
        }
        let connected = self.mqtt.iter().filter(|s| s.client.is_connected()).count();
        let parked = self
            .mqtt
            .iter()
            .filter_map(|slot| slot.session.as_ref())
            .filter(|s| s.presence != Presence::Live)
            .count();
        prop_assert_eq!(
            self.registry.counts(),
            (connected, parked),
            "(connected, parked)"
        );
        Ok(())
    }

    /// The witness got exactly the messages the model expects of this step, once each, in
    /// ID order: their IDs.
    fn witness_ids(&mut self) -> Result<(), TestCaseError> {
        let mut last = self.last_id;
        for out in self.witness.drain() {
            let Outbound::Event(delivery) = out else {
                continue;
            };
            let publication = &delivery.publication;
            let tag = tag_of(&publication.payload.to_mqtt());
            let uri = publication.topic.wamp_uri();
            prop_assert!(
                self.published.contains(&tag),
                "not expected: {} on {}",
                tag,
                uri
            );
            prop_assert!(publication.id > last, "IDs increase in publication order");
            last = publication.id;
            let Some(model) = self.publications.get_mut(&tag) else {
                return Err(TestCaseError::fail(format!("{tag} not noted")));
            };
            prop_assert!(model.id.is_none(), "{} published twice", tag);
            prop_assert_eq!(uri, TOPICS[model.topic].0);
            model.id = Some(publication.id);
        }
        let missing: Vec<&String> = self
            .published
            .iter()
            .filter(|tag| self.publications[*tag].id.is_none())
            .collect();
        prop_assert!(missing.is_empty(), "expected, not published: {:?}", missing);
        self.published.clear();
        self.last_id = last;
        Ok(())
    }

    /// A WAMP session got one EVENT per matching subscription, in ID order.
    fn check_wamp(&mut self, s: usize) -> Result<(), TestCaseError> {
        let Some(session) = self.wamp[s].as_mut() else {
            return Ok(());
        };
        for out in session.peer.drain() {
            let Outbound::Event(delivery) = out else {
                continue;
            };
            let publication = &delivery.publication;
            let tag = tag_of(&publication.payload.to_mqtt());
            prop_assert!(publication.id >= session.last_id, "events in ID order");
            session.last_id = publication.id;
            let topic = self.publications.get(&tag).map(|p| TOPICS[p.topic].0);
            prop_assert_eq!(Some(publication.topic.wamp_uri()), topic);
            session.got.push((tag, delivery.subscription));
        }
        let mut owed = session.owed.clone();
        let mut got = session.got.clone();
        owed.sort_unstable();
        got.sort_unstable();
        prop_assert_eq!(got, owed, "WAMP session {} got what it is owed", s);
        Ok(())
    }

    /// An MQTT client got what its session is owed, in ID order; with room in its window,
    /// everything.
    fn check_mqtt(&mut self, c: usize) -> Result<(), TestCaseError> {
        let now = self.unix_ms();
        let slot = &mut self.mqtt[c];
        let live = slot.session.as_ref().map(|s| s.presence == Presence::Live);
        let connected = slot.client.is_connected();
        prop_assert_eq!(connected, live == Some(true), "client {} connected", c);
        if !connected {
            return Ok(());
        }
        let received = slot.client.pump(now)?;
        slot.client.settled()?;
        let Some(session) = slot.session.as_mut() else {
            return Ok(());
        };
        let publications = &self.publications;
        session.owed.sort_by_key(|o| publications[&o.tag].id);
        for r in received {
            receive(session, publications, r)
                .map_err(|e| TestCaseError::fail(format!("client {c}: {e}")))?;
        }
        if slot.client.window_open() {
            let held = session.firm();
            prop_assert!(
                held.is_empty(),
                "client {} has room, waits for {:?}",
                c,
                held
            );
        }
        Ok(())
    }

    /// Every parked client comes back; every client acknowledges everything (and releases
    /// its QoS 2 publishes): nothing owed is left.
    pub(super) fn finish(&mut self) -> Result<(), TestCaseError> {
        for c in 0..MQTT_CLIENTS {
            let parked = (self.mqtt[c].session.as_ref())
                .is_some_and(|session| session.presence != Presence::Live);
            if parked {
                let spec = ConnectSpec {
                    clean: false,
                    expiry: EXPIRIES_SECS.len() - 1,
                    will: None,
                    receive_max: 0,
                };
                self.step(&Op::Connect(c, spec))?;
            }
        }
        for _ in 0..SETTLE_ROUNDS_MAX {
            let busy = |slot: &MqttSlot| {
                let client = &slot.client;
                client.is_connected() && (client.unacknowledged() > 0 || client.has_unreleased())
            };
            if !self.mqtt.iter().any(busy) {
                break;
            }
            for c in 0..MQTT_CLIENTS {
                self.apply(&Op::Acknowledge(c, usize::MAX))?;
                self.apply(&Op::Release(c))?;
                self.check()?;
            }
        }
        for (c, slot) in self.mqtt.iter().enumerate() {
            let Some(session) = slot.session.as_ref() else {
                continue;
            };
            let left = session.firm();
            prop_assert!(left.is_empty(), "client {} never got {:?}", c, left);
            prop_assert_eq!(slot.client.unacknowledged(), 0);
        }
        Ok(())
    }
}

/// One new PUBLISH an MQTT client got: the first message owed (those before it may be
/// missing only if loose), as the model says it must look.
fn receive(
    session: &mut SessionModel,
    publications: &BTreeMap<String, Publication>,
    r: Received,
) -> Result<(), TestCaseError> {
    let Some(publication) = publications.get(&r.tag) else {
        return Err(TestCaseError::fail(format!("unknown message {r:?}")));
    };
    let Some(position) = session.owed.iter().position(|o| o.tag == r.tag) else {
        return Err(TestCaseError::fail(format!(
            "{} not owed (a duplicate, or no subscription matched it)",
            r.tag
        )));
    };
    let skipped: Vec<&String> = session.owed[..position]
        .iter()
        .filter(|o| !o.loose)
        .map(|o| &o.tag)
        .collect();
    prop_assert!(skipped.is_empty(), "{} came before {:?}", r.tag, skipped);
    let Some(owed) = session.owed.drain(..=position).next_back() else {
        return Err(TestCaseError::fail("position is in range"));
    };
    prop_assert_eq!(&r.topic, TOPICS[publication.topic].1);
    prop_assert_eq!(&r.payload, &publication.mqtt_payload);
    prop_assert!(!r.retain, "never retained");
    if owed.changed {
        prop_assert!(r.qos <= publication.qos, "{}: QoS {}", r.tag, r.qos);
    } else {
        prop_assert_eq!(r.qos, owed.qos, "{}: QoS", r.tag);
        prop_assert_eq!(&r.identifiers, &owed.identifiers, "{}: identifiers", r.tag);
    }
    Ok(())
}
