//! The stored form of an MQTT session (MessagePack, named fields): what a record holds and
//! how it is built from a session's state.

use bytes::{Bytes, BytesMut};
use fox_mqtt_proto::{Packet, Protocol};
use serde::{Deserialize, Serialize};

use crate::mqtt::inflight::{Entry, Phase};
use crate::mqtt::session::{SessionState, Will};
use crate::realm::{MessageProperties, SessionHandle};
use crate::topic::Topic;

/// The stored form of a session.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct SessionRecord {
    /// The session ID in the process that wrote the record (history keeps publishers by
    /// session ID: no local).
    pub(super) sid: u64,
    pub(super) authid: String,
    pub(super) authrole: String,
    pub(super) authmethod: String,
    pub(super) authprovider: String,
    pub(super) expiry_secs: u32,
    pub(super) subscriptions: Vec<StoredSubscription>,
    pub(super) will: Option<StoredWill>,
    /// Every message up to this ID has been dealt with.
    pub(super) through: u64,
    /// When the connection ended (Unix ms); `None` while connected.
    pub(super) parked_ms: Option<u64>,
    /// The highest ID taken from the realm queue: of the messages at or below it, only
    /// `waiting` and `inflight` ones are owed (`None`: every one after `through`).
    #[serde(default)]
    pub(super) taken: Option<u64>,
    /// Messages taken from the realm queue and waiting for the inflight window.
    #[serde(default)]
    pub(super) waiting: Vec<u64>,
    /// Messages sent and not acknowledged, with their packet IDs: sent again as they were
    /// (DUP), or their PUBREL, so that a client's QoS 2 state stays valid.
    #[serde(default)]
    pub(super) inflight: Vec<StoredInflight>,
    /// Inbound QoS 2 packet IDs: PUBREC sent, PUBREL awaited.
    #[serde(default)]
    pub(super) inbound_qos2: Vec<u16>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct StoredInflight {
    /// The message's permanent ID (0: a retained replay).
    pub(super) id: u64,
    pub(super) packet_id: u16,
    /// 1: PUBACK awaited, 2: PUBREC awaited, 3: PUBCOMP awaited.
    pub(super) phase: u8,
    /// The PUBLISH as first sent, encoded as MQTT 5.
    #[serde(with = "fox_sequencer::byte_string")]
    pub(super) publish: Vec<u8>,
}

impl StoredInflight {
    pub(super) fn of(entry: &Entry) -> Option<Self> {
        let mut bytes = BytesMut::new();
        let packet = Packet::Publish(entry.publish.clone());
        fox_mqtt_proto::encode(&packet, Protocol::V5, &mut bytes).ok()?;
        Some(Self {
            id: entry.id,
            packet_id: entry.packet_id,
            phase: match entry.phase {
                Phase::AwaitPubAck => 1,
                Phase::AwaitPubRec => 2,
                Phase::AwaitPubComp => 3,
            },
            publish: bytes.to_vec(),
        })
    }

    pub(super) fn into_entry(self) -> Option<Entry> {
        let mut bytes = BytesMut::from(&self.publish[..]);
        let Ok(Some(Packet::Publish(publish))) =
            fox_mqtt_proto::decode(&mut bytes, Some(Protocol::V5), usize::MAX)
        else {
            return None;
        };
        let phase = match self.phase {
            1 => Phase::AwaitPubAck,
            2 => Phase::AwaitPubRec,
            3 => Phase::AwaitPubComp,
            _ => return None,
        };
        Some(Entry {
            packet_id: self.packet_id,
            publish,
            phase,
            id: self.id,
        })
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct StoredSubscription {
    pub(super) filter: String,
    pub(super) qos: u8,
    pub(super) no_local: bool,
    pub(super) retain_as_published: bool,
    pub(super) identifier: Option<u32>,
    pub(super) since: u64,
    /// Written since the `fox-id` opt-in; older records read as false.
    #[serde(default)]
    pub(super) fox_id: bool,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct StoredWill {
    /// WAMP spelling of the topic.
    pub(super) topic: String,
    #[serde(with = "fox_sequencer::byte_string")]
    pub(super) payload: Vec<u8>,
    pub(super) qos: u8,
    pub(super) retain: bool,
    pub(super) delay_secs: u32,
    pub(super) expires_at_ms: Option<u64>,
    pub(super) payload_utf8: Option<bool>,
    pub(super) content_type: Option<String>,
    pub(super) response_topic: Option<String>,
    pub(super) correlation_data: Option<Vec<u8>>,
    pub(super) user_properties: Vec<(String, String)>,
}

impl StoredWill {
    pub(super) fn of(will: &Will) -> Self {
        let p = &will.properties;
        Self {
            topic: will.topic.to_wamp(),
            payload: will.payload.to_vec(),
            qos: will.qos,
            retain: will.retain,
            delay_secs: will.delay_secs,
            expires_at_ms: p.expires_at_ms,
            payload_utf8: p.payload_utf8,
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.as_ref().map(|b| b.to_vec()),
            user_properties: p.user_properties.clone(),
        }
    }

    pub(super) fn into_will(self) -> Will {
        Will {
            topic: Topic::from_wamp(&self.topic),
            payload: Bytes::from(self.payload),
            qos: self.qos.min(2),
            retain: self.retain,
            properties: MessageProperties {
                expires_at_ms: self.expires_at_ms,
                payload_utf8: self.payload_utf8,
                content_type: self.content_type,
                response_topic: self.response_topic,
                correlation_data: self.correlation_data.map(Bytes::from),
                user_properties: self.user_properties,
            },
            delay_secs: self.delay_secs,
        }
    }
}

/// Everything at or below this ID has been dealt with: below the oldest live message still
/// in flight or pending, else the last one taken from the realm queue (later ones are
/// still in it, and have higher IDs).
pub(super) fn done_through(state: &SessionState) -> u64 {
    let in_flight = state.inflight.iter().map(|e| e.id);
    let pending = state
        .pending
        .iter()
        .filter(|d| !d.retained)
        .map(|d| d.publication.id);
    match in_flight.chain(pending).filter(|id| *id > 0).min() {
        Some(oldest) => oldest - 1,
        None => state.received_through,
    }
}

pub(super) fn record(
    handle: &SessionHandle,
    state: &SessionState,
    expiry_secs: u32,
    will: Option<&Will>,
    parked_ms: Option<u64>,
) -> SessionRecord {
    let identity = &handle.info.identity;
    let mut subscriptions: Vec<StoredSubscription> = state
        .subscriptions
        .iter()
        .map(|(filter, r)| StoredSubscription {
            filter: filter.clone(),
            qos: r.qos,
            no_local: r.no_local,
            retain_as_published: r.retain_as_published,
            identifier: r.identifier,
            since: r.since,
            fox_id: r.fox_id,
        })
        .collect();
    subscriptions.sort_by(|a, b| a.filter.cmp(&b.filter));
    SessionRecord {
        sid: handle.info.id,
        authid: identity.authid.clone(),
        authrole: identity.authrole.clone(),
        authmethod: identity.authmethod.clone(),
        authprovider: identity.authprovider.clone(),
        expiry_secs,
        subscriptions,
        will: will.map(StoredWill::of),
        through: done_through(state),
        parked_ms,
        taken: Some(state.received_through),
        waiting: state
            .pending
            .iter()
            .filter(|d| !d.retained)
            .map(|d| d.publication.id)
            .collect(),
        inflight: state
            .inflight
            .iter()
            .filter_map(StoredInflight::of)
            .collect(),
        inbound_qos2: state.inbound_qos2.iter().copied().collect(),
    }
}
