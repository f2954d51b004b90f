//! The message types every layer shares: what a publication is, its payload and its
//! properties. A leaf: it imports nothing from the router's realms, engines, stores or
//! gates, so that those can depend on it without depending on each other.

use bytes::Bytes;
use fox_wamp_proto::{Dict, Value};

use crate::topic::Topic;

/// A session's ID: random in [1, 2^53].
pub type SessionId = u64;

/// A new session ID: random in [1, 2^53], as WAMP requires (both gates use it).
pub fn new_session_id() -> SessionId {
    rand::random::<u64>() % fox_wamp_proto::ID_MAX + 1
}

/// What a message carries, in the form its publisher gave it. Each gate converts on
/// delivery (see [`Payload::to_wamp`] and [`Payload::to_mqtt`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// WAMP arguments.
    Wamp {
        /// Positional arguments.
        args: Option<Vec<Value>>,
        /// Keyword arguments.
        kwargs: Option<Dict>,
    },
    /// Raw bytes (an MQTT payload).
    Raw(Bytes),
}

impl Payload {
    /// Whether there is nothing in it (clears a retained topic).
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Raw(bytes) => bytes.is_empty(),
            Self::Wamp { args, kwargs } => {
                args.as_ref().is_none_or(Vec::is_empty)
                    && kwargs.as_ref().is_none_or(Dict::is_empty)
            }
        }
    }

    /// WAMP arguments: an MQTT payload becomes `args = [value]`, where value is the decoded
    /// JSON when the payload is valid UTF-8 JSON (nested no deeper than
    /// [`fox_wamp_proto::ARGUMENT_NESTING_MAX`]) and the raw bytes otherwise.
    pub fn to_wamp(&self) -> (Option<Vec<Value>>, Option<Dict>) {
        match self {
            Self::Wamp { args, kwargs } => (args.clone(), kwargs.clone()),
            Self::Raw(bytes) => {
                // JSON nested deeper than a WAMP message carries goes as bytes.
                let value = serde_json::from_slice::<serde_json::Value>(bytes)
                    .ok()
                    .map(Value::from_json)
                    .filter(|v| v.nesting_depth() <= fox_wamp_proto::ARGUMENT_NESTING_MAX)
                    .unwrap_or_else(|| Value::Bytes(bytes.to_vec()));
                (Some(vec![value]), None)
            }
        }
    }

    /// MQTT payload: the JSON of `args[0]` when it is the only argument and there are no
    /// kwargs (its raw bytes when it is binary); no arguments at all is an empty payload;
    /// otherwise the JSON object `{"args": [...], "kwargs": {...}}`.
    pub fn to_mqtt(&self) -> Bytes {
        let (args, kwargs) = match self {
            Self::Raw(bytes) => return bytes.clone(),
            Self::Wamp { args, kwargs } => (args, kwargs),
        };
        let no_kwargs = kwargs.as_ref().is_none_or(|k| k.is_empty());
        match args.as_deref() {
            None | Some([]) if no_kwargs => Bytes::new(),
            Some([Value::Bytes(b)]) if no_kwargs => Bytes::from(b.clone()),
            Some([single]) if no_kwargs => Bytes::from(single.to_json().to_string()),
            _ => {
                let mut object = serde_json::Map::new();
                let list = args.iter().flatten().map(Value::to_json).collect();
                object.insert("args".into(), serde_json::Value::Array(list));
                let dict = kwargs
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect();
                object.insert("kwargs".into(), serde_json::Value::Object(dict));
                Bytes::from(serde_json::Value::Object(object).to_string())
            }
        }
    }
}

/// A published message, shared by every delivery of it.
#[derive(Debug)]
pub struct Publication {
    /// Permanent ID.
    pub id: u64,
    /// Topic.
    pub topic: Topic,
    /// Payload.
    pub payload: Payload,
    /// Publisher's session (0 for the router itself).
    pub publisher: SessionId,
    /// Publisher identity, when disclosed: (session, authid, authrole).
    pub disclosed: Option<(SessionId, String, String)>,
    /// MQTT QoS the publisher used (0 for WAMP).
    pub qos: u8,
    /// Whether the publisher asked to retain it.
    pub retain: bool,
    /// Message properties carried end to end (MQTT 5 properties; empty for WAMP).
    pub properties: MessageProperties,
}

/// Properties of a message that travel with it unchanged, whichever gate delivers it
/// (MQTT 5 passes them through; WAMP ignores them). All empty by default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MessageProperties {
    /// When the message expires (Unix ms): not delivered, nor replayed as retained, after.
    pub expires_at_ms: Option<u64>,
    /// MQTT payload format indicator: the payload is UTF-8 text.
    pub payload_utf8: Option<bool>,
    /// MQTT content type.
    pub content_type: Option<String>,
    /// MQTT response topic (MQTT spelling, as the publisher gave it).
    pub response_topic: Option<String>,
    /// MQTT correlation data.
    pub correlation_data: Option<Bytes>,
    /// MQTT user properties, in order.
    pub user_properties: Vec<(String, String)>,
}

/// Options of a publish that the broker applies.
#[derive(Clone, Debug)]
pub struct PublishOptions {
    /// Do not deliver to the publisher itself (WAMP default true; MQTT false).
    pub exclude_me: bool,
    /// Disclose the publisher's identity to subscribers.
    pub disclose_me: bool,
    /// Never deliver to these sessions.
    pub exclude: Vec<SessionId>,
    /// Never deliver to sessions with these authids.
    pub exclude_authid: Vec<String>,
    /// Never deliver to sessions with these authroles.
    pub exclude_authrole: Vec<String>,
    /// Only deliver to these sessions.
    pub eligible: Option<Vec<SessionId>>,
    /// Only deliver to sessions with these authids.
    pub eligible_authid: Option<Vec<String>>,
    /// Only deliver to sessions with these authroles.
    pub eligible_authrole: Option<Vec<String>>,
    /// MQTT QoS of the publish.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
}

/// A conditional write to a retained key (fox-wamp's sync service options on a retained
/// publish): `when`, `watch`, `will`.
#[derive(Clone, Debug, PartialEq)]
pub struct KvWrite {
    /// The condition (`None`: unconditional). `Some(Value::Null)` means "key absent".
    pub when: Option<Value>,
    /// Park the write until `when` holds.
    pub watch: bool,
    /// The will: `Some(payload)` to write when the writer dies (an empty payload clears).
    pub will: Option<Payload>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            exclude_me: true,
            disclose_me: false,
            exclude: Vec::new(),
            exclude_authid: Vec::new(),
            exclude_authrole: Vec::new(),
            eligible: None,
            eligible_authid: None,
            eligible_authrole: None,
            qos: 0,
            retain: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An MQTT JSON payload nested deeper than a WAMP message carries reaches WAMP
    /// subscribers as its bytes (it could not be decoded there as JSON arguments).
    #[test]
    fn mqtt_json_nested_too_deep_for_wamp_goes_as_bytes() {
        let nested = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        let fits = nested(fox_wamp_proto::ARGUMENT_NESTING_MAX);
        let (args, _) = Payload::Raw(Bytes::from(fits)).to_wamp();
        assert!(matches!(args.as_deref(), Some([Value::List(_)])));
        let deeper = nested(fox_wamp_proto::ARGUMENT_NESTING_MAX + 1);
        let (args, _) = Payload::Raw(Bytes::from(deeper.clone())).to_wamp();
        assert_eq!(args, Some(vec![Value::Bytes(deeper.into_bytes())]));
    }
}
