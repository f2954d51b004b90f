//! The HTTP bridge's request bodies and their checks (serde, base64 and fox-wamp-proto
//! only, so that the `bridge_json` fuzz target compiles this file without the router;
//! see docs/fuzzing.md).

use base64::Engine as _;
use fox_wamp_proto::{Dict, Value};
use serde::Deserialize;

/// `POST /api/v1/publish`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// Default: `[router] mqtt_default_realm`.
    #[serde(default)]
    pub realm: Option<String>,
    /// A WAMP URI (`a.b.c`; MQTT subscribers see `a/b/c`).
    pub topic: String,
    #[serde(default)]
    pub args: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    /// A raw payload (UTF-8 text), as MQTT carries it.
    #[serde(default)]
    pub payload: Option<String>,
    /// A raw payload, base64.
    #[serde(default)]
    pub payload_base64: Option<String>,
    #[serde(default)]
    pub retain: bool,
    /// Wait for the permanent ID (and, with a store, the fsync). Default true.
    #[serde(default = "yes")]
    pub acknowledge: bool,
}

/// `POST /api/v1/call`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallBody {
    #[serde(default)]
    pub realm: Option<String>,
    pub procedure: String,
    #[serde(default)]
    pub args: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    /// Default 10,000; at most `limits.call_timeout_max_ms`.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

fn yes() -> bool {
    true
}

/// What a publish carries: raw bytes (`payload`, `payload_base64`) or WAMP arguments.
#[derive(Debug, PartialEq)]
pub enum BodyPayload {
    /// MQTT-style bytes.
    Raw(Vec<u8>),
    /// WAMP positional and keyword arguments.
    Wamp {
        args: Option<Vec<Value>>,
        kwargs: Option<Dict>,
    },
}

impl PublishBody {
    /// The publish's payload, or why the body is refused (a 400).
    pub fn payload(&mut self) -> Result<BodyPayload, String> {
        let raw = match (self.payload.take(), self.payload_base64.take()) {
            (Some(_), Some(_)) => {
                return Err("payload and payload_base64 exclude each other".to_owned())
            }
            (Some(text), None) => Some(text.into_bytes()),
            (None, Some(encoded)) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|e| format!("payload_base64: {e}"))?,
            ),
            (None, None) => None,
        };
        match raw {
            Some(_) if self.args.is_some() || self.kwargs.is_some() => {
                Err("a raw payload excludes args and kwargs".to_owned())
            }
            Some(bytes) => Ok(BodyPayload::Raw(bytes)),
            None => {
                let (args, kwargs) = wamp_args(self.args.take(), self.kwargs.take())?;
                Ok(BodyPayload::Wamp { args, kwargs })
            }
        }
    }
}

/// A URI fit for an exact publish or call: non-empty components without whitespace,
/// `#` or U+0000 (as the WAMP gate checks them).
pub fn valid_uri(uri: &str) -> bool {
    !uri.is_empty()
        && uri.split('.').all(|c| {
            !c.is_empty()
                && !c
                    .chars()
                    .any(|ch| ch.is_whitespace() || ch == '#' || ch == '\0')
        })
}

/// JSON arguments as WAMP values (a `"\0"`-prefixed base64 string is binary, the WAMP
/// JSON convention), or why they are refused (such a string that is not base64, or
/// nesting deeper than a WAMP message carries).
#[allow(clippy::type_complexity)]
pub fn wamp_args(
    args: Option<Vec<serde_json::Value>>,
    kwargs: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<(Option<Vec<Value>>, Option<Dict>), String> {
    let args = args
        .map(|a| {
            a.into_iter()
                .map(Value::try_from_json)
                .collect::<Result<_, _>>()
        })
        .transpose()
        .map_err(|e| format!("args: {e}"))?;
    let kwargs = kwargs
        .map(|k| {
            k.into_iter()
                .map(|(k, v)| Ok((k, Value::try_from_json(v)?)))
                .collect::<Result<_, String>>()
        })
        .transpose()
        .map_err(|e| format!("kwargs: {e}"))?;
    let too_deep = args
        .iter()
        .flatten()
        .chain(kwargs.iter().flat_map(Dict::values))
        .any(|v| v.nesting_depth() > fox_wamp_proto::ARGUMENT_NESTING_MAX);
    if too_deep {
        return Err(format!(
            "an argument nests lists and objects deeper than {} levels (what a WAMP message carries)",
            fox_wamp_proto::ARGUMENT_NESTING_MAX
        ));
    }
    Ok((args, kwargs))
}

/// A RESULT's or ERROR's arguments as the JSON answer `{args, kwargs}`.
pub fn payload_json(args: Option<Vec<Value>>, kwargs: Option<Dict>) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    body.insert(
        "args".to_owned(),
        serde_json::Value::Array(
            args.unwrap_or_default()
                .iter()
                .map(Value::to_json)
                .collect(),
        ),
    );
    body.insert(
        "kwargs".to_owned(),
        serde_json::Value::Object(
            kwargs
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        ),
    );
    serde_json::Value::Object(body)
}
