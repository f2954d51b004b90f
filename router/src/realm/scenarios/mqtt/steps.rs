//! The MQTT clients' steps: each drives the client (`client.rs`) and updates the model
//! the way the router is expected to act.

use bytes::Bytes;
use fox_mqtt_proto::{Connect, LastWill, QoS};
use proptest::prelude::*;

use super::client::{Client, Leaving};
use super::model::{identifier, Presence, Publisher, SessionModel, WillModel, FILTERS, TOPICS};
use super::{
    ConnectSpec, World, EXPIRIES_SECS, INFLIGHT_MAX, MQTT_CLIENTS, RECEIVE_MAXIMA, WILL_DELAYS_SECS,
};

impl World {
    /// CONNECT: a live connection of the client is taken over (it ends abnormally and
    /// hands its session over); a previous session is resumed, or discarded with a clean
    /// start (its held will is published then).
    pub(super) fn connect(&mut self, c: usize, spec: &ConnectSpec) -> Result<(), TestCaseError> {
        let v5 = self.mqtt[c].v5();
        if self.mqtt[c].client.is_connected() {
            self.ended(c, true, false);
        }
        if let Some(session) = self.mqtt[c].session.as_mut() {
            let held = session.will.take();
            if spec.clean {
                if let Some(will) = held {
                    self.will_published(c, will);
                }
                self.mqtt[c].session = None;
            }
        }
        let present = self.mqtt[c].session.is_some();
        let expiry_ms = match (v5, spec.clean) {
            (true, _) => u64::from(EXPIRIES_SECS[spec.expiry]) * 1000,
            (false, true) => 0,
            (false, false) => {
                u64::from(self.router.config.limits.mqtt_session_expiry_max_secs) * 1000
            }
        };
        let will = spec.will.map(|(topic, qos, delay)| WillModel {
            tag: self.tag("w"),
            topic,
            qos,
            delay_ms: match v5 {
                true => u64::from(WILL_DELAYS_SECS[delay]) * 1000,
                false => 0,
            },
        });
        let receive_max = if v5 {
            RECEIVE_MAXIMA[spec.receive_max]
        } else {
            None
        };
        let inflight_max = INFLIGHT_MAX.min(receive_max.unwrap_or(u16::MAX).max(1));
        let connect = connect_packet(spec.clean, expiry_ms, will.as_ref(), receive_max, v5);
        let now = self.unix_ms();
        let slot = &mut self.mqtt[c];
        slot.client.connect(
            &self.router,
            &self.runtime,
            connect,
            usize::from(inflight_max),
            present,
            now,
        )?;
        match slot.session.as_mut() {
            Some(session) => {
                session.presence = Presence::Live;
                session.expiry_ms = expiry_ms;
                session.will = will;
            }
            None => slot.session = Some(SessionModel::new(expiry_ms, will)),
        }
        Ok(())
    }

    /// The model of a connection's end (`Session::end`): an abnormal end publishes the
    /// will now unless it has a delay and the session outlives the connection (then it is
    /// held); a session with expiry 0 ends. `parks`: the session goes to the registry
    /// (not to a connection taking it over), where its expiry and will delay run.
    fn ended(&mut self, c: usize, abnormal: bool, parks: bool) {
        let Some(session) = self.mqtt[c].session.as_mut() else {
            return;
        };
        let expiry_ms = session.expiry_ms;
        let will = session.will.take().filter(|_| abnormal);
        let held = match will {
            Some(w) if w.delay_ms == 0 || expiry_ms == 0 => {
                self.will_published(c, w);
                None
            }
            held => held,
        };
        let slot = &mut self.mqtt[c];
        if expiry_ms == 0 {
            slot.session = None;
            return;
        }
        let Some(session) = slot.session.as_mut() else {
            return;
        };
        let will_at = held
            .as_ref()
            .filter(|w| w.delay_ms < expiry_ms)
            .map(|w| self.now_ms + w.delay_ms);
        session.will = held;
        if parks {
            session.presence = Presence::Parked {
                expires_at: self.now_ms + expiry_ms,
                will_at,
            };
        }
    }

    pub(super) fn disconnect(&mut self, c: usize, how: Leaving) -> Result<(), TestCaseError> {
        if !self.mqtt[c].client.is_connected() {
            return Ok(());
        }
        let now = self.unix_ms();
        let v5 = self.mqtt[c].v5();
        self.mqtt[c].client.leave(how, now)?;
        let Leaving::Clean {
            with_will,
            expiry_zero,
        } = how
        else {
            self.ended(c, true, true);
            return Ok(());
        };
        // 3.x has neither a reason code for this nor properties: they are not sent.
        if let Some(session) = self.mqtt[c].session.as_mut() {
            if expiry_zero && v5 {
                session.expiry_ms = 0;
            }
        }
        // DISCONNECT 0x04 keeps the will as a lost connection would: after its delay, or
        // when the session ends (MQTT-3.1.2-8).
        self.ended(c, with_will && v5, true);
        Ok(())
    }

    pub(super) fn subscribe(&mut self, c: usize, f: usize, qos: u8) -> Result<(), TestCaseError> {
        let now = self.unix_ms();
        let slot = &mut self.mqtt[c];
        let v5 = slot.v5();
        let (true, Some(session)) = (slot.client.is_connected(), slot.session.as_mut()) else {
            return Ok(());
        };
        session.subscribed(f, qos, self.publications.len() as u64);
        let identifier = v5.then(|| identifier(f));
        slot.client.subscribe(FILTERS[f], qos, identifier, now)
    }

    pub(super) fn unsubscribe(&mut self, c: usize, f: usize) -> Result<(), TestCaseError> {
        let now = self.unix_ms();
        let slot = &mut self.mqtt[c];
        let (true, Some(session)) = (slot.client.is_connected(), slot.session.as_mut()) else {
            return Ok(());
        };
        let existed = session.unsubscribed(f);
        slot.client.unsubscribe(FILTERS[f], existed, now)
    }

    pub(super) fn publish(&mut self, c: usize, t: usize, qos: u8) -> Result<(), TestCaseError> {
        if !self.mqtt[c].client.is_connected() {
            return Ok(());
        }
        let tag = self.tag("m");
        // The model first: the session core fans out before it returns.
        let payload = Bytes::from(tag.clone());
        self.published(tag.clone(), t, qos, Publisher::Mqtt(c), payload);
        let now = self.unix_ms();
        self.mqtt[c].client.publish(TOPICS[t].1, &tag, qos, now)
    }

    /// A client step that publishes nothing (acknowledgements, QoS 2 resend and release).
    pub(super) fn mqtt_op(
        &mut self,
        c: usize,
        op: impl FnOnce(&mut Client, u64) -> Result<(), TestCaseError>,
    ) -> Result<(), TestCaseError> {
        let now = self.unix_ms();
        let client = &mut self.mqtt[c].client;
        if !client.is_connected() {
            return Ok(());
        }
        op(client, now)
    }

    /// Time moves on; the wheel fires will delays and session expiries.
    pub(super) fn advance(&mut self, ms: u64) {
        self.edge.advance(ms);
        self.now_ms += ms;
        self.router.shared().timers.fire_due();
        let now = self.now_ms;
        let mut expired = Vec::new();
        for c in 0..MQTT_CLIENTS {
            let Some(session) = self.mqtt[c].session.as_mut() else {
                continue;
            };
            let Presence::Parked {
                expires_at,
                will_at,
            } = session.presence
            else {
                continue;
            };
            let will_due = will_at.is_some_and(|at| at <= now) || expires_at <= now;
            if let Some(will) = session.will.take_if(|_| will_due) {
                self.will_published(c, will);
            }
            if expires_at <= now {
                expired.push(c);
            }
        }
        // After the wills: a session expiring in the same step is gone either way.
        for c in expired {
            self.mqtt[c].session = None;
        }
    }
}

/// The CONNECT of a client (its protocol and client identifier are the client's).
fn connect_packet(
    clean: bool,
    expiry_ms: u64,
    will: Option<&WillModel>,
    receive_max: Option<u16>,
    v5: bool,
) -> Connect {
    let mut connect = Connect {
        clean_start: clean,
        keep_alive_secs: 0,
        ..Connect::default()
    };
    if v5 {
        let expiry_secs = u32::try_from(expiry_ms / 1000).unwrap_or(u32::MAX);
        connect.properties.session_expiry_interval_secs = (expiry_secs > 0).then_some(expiry_secs);
        connect.properties.receive_maximum = receive_max;
    }
    connect.will = will.map(|will| {
        let mut last = LastWill {
            topic: TOPICS[will.topic].1.to_owned(),
            payload: Bytes::from(will.tag.clone()),
            qos: QoS::from_u8(will.qos).unwrap_or(QoS::AtMostOnce),
            ..LastWill::default()
        };
        let delay_secs = u32::try_from(will.delay_ms / 1000).unwrap_or(u32::MAX);
        if v5 && delay_secs > 0 {
            last.properties.will_delay_interval_secs = Some(delay_secs);
        }
        last
    });
    connect
}
