//! The dynamic [`Value`] carried in WAMP details, options, args and kwargs.

use std::collections::BTreeMap;

use base64::Engine as _;

/// A WAMP dictionary: string keys, ordered for deterministic encoding.
pub type Dict = BTreeMap<String, Value>;

/// A dynamically typed WAMP payload value.
///
/// Integers are normalised: every integer that fits in `i64` is [`Value::Int`];
/// [`Value::UInt`] is used only for values above `i64::MAX`. The `From` impls and
/// all decoders keep this invariant, so `PartialEq` compares numbers structurally.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// JSON `null`, MsgPack nil, CBOR null/undefined.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer (every integer in `i64` range).
    Int(i64),
    /// An unsigned integer above `i64::MAX` (only).
    UInt(u64),
    /// A floating point number.
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// Binary data (MsgPack bin, CBOR byte string, JSON `"\0" + base64`).
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Value>),
    /// A dictionary.
    Dict(Dict),
}

impl Value {
    /// The string, if this is a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The integer as `u64`, if this is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Int(number) => u64::try_from(number).ok(),
            Value::UInt(number) => Some(number),
            _ => None,
        }
    }

    /// The integer as `i64`, if this is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(number) => Some(number),
            _ => None,
        }
    }

    /// The float, if this is a [`Value::Float`].
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(number) => Some(number),
            _ => None,
        }
    }

    /// The boolean, if this is a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(flag) => Some(flag),
            _ => None,
        }
    }

    /// The bytes, if this is a [`Value::Bytes`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The dictionary, if this is a [`Value::Dict`].
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(dict) => Some(dict),
            _ => None,
        }
    }

    /// The list, if this is a [`Value::List`].
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(list) => Some(list),
            _ => None,
        }
    }

    /// How many lists/dicts are nested here: 0 for a scalar, 1 for `[]` or `[1]`, 2 for
    /// `[[1]]`. A message carries an argument only up to [`crate::ARGUMENT_NESTING_MAX`].
    pub fn nesting_depth(&self) -> usize {
        match self {
            Value::List(list) => 1 + list.iter().map(Value::nesting_depth).max().unwrap_or(0),
            Value::Dict(dict) => 1 + dict.values().map(Value::nesting_depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// `true` for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Looks up `key` when this is a [`Value::Dict`]; `None` otherwise.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict().and_then(|dict| dict.get(key))
    }

    /// Converts from a JSON tree using the WAMP convention: a string starting with
    /// `"\0"` is binary, base64 (standard alphabet) after the NUL. A `"\0"` string
    /// whose remainder is not valid base64 stays a string.
    pub fn from_json(json: serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(flag) => Value::Bool(flag),
            serde_json::Value::Number(number) => number_from_json(&number),
            serde_json::Value::String(text) => match binary_from_json_str(&text) {
                Some(Ok(bytes)) => Value::Bytes(bytes),
                _ => Value::Str(text),
            },
            serde_json::Value::Array(list) => {
                Value::List(list.into_iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(map) => Value::Dict(
                map.into_iter()
                    .map(|(key, value)| (key, Value::from_json(value)))
                    .collect(),
            ),
        }
    }

    /// [`Value::from_json`], refusing a `"\0"` string whose remainder is not valid
    /// base64 (as the WAMP JSON serializer refuses such a message), with the reason.
    pub fn try_from_json(json: serde_json::Value) -> Result<Value, String> {
        Ok(match json {
            serde_json::Value::String(text) => match binary_from_json_str(&text) {
                Some(Ok(bytes)) => Value::Bytes(bytes),
                Some(Err(error)) => {
                    return Err(format!("invalid base64 in binary string: {error}"))
                }
                None => Value::Str(text),
            },
            serde_json::Value::Array(list) => Value::List(
                list.into_iter()
                    .map(Value::try_from_json)
                    .collect::<Result<_, _>>()?,
            ),
            serde_json::Value::Object(map) => Value::Dict(
                map.into_iter()
                    .map(|(key, value)| Ok((key, Value::try_from_json(value)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => Value::from_json(other),
        })
    }

    /// Converts to a JSON tree using the WAMP convention (bytes become
    /// `"\0" + base64`). Non-finite floats become `null`, as JSON has no such numbers,
    /// and a string that starts with NUL becomes the binary of its UTF-8 bytes.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(flag) => serde_json::Value::Bool(*flag),
            Value::Int(number) => serde_json::Value::from(*number),
            Value::UInt(number) => serde_json::Value::from(*number),
            Value::Float(number) => serde_json::Number::from_f64(*number)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            // A text that starts with NUL would read back as binary (or not at all): it
            // goes as the binary of its UTF-8 bytes, as the WAMP JSON serializer sends it.
            Value::Str(text) if text.starts_with('\0') => {
                serde_json::Value::String(binary_to_json_str(text.as_bytes()))
            }
            Value::Str(text) => serde_json::Value::String(text.clone()),
            Value::Bytes(bytes) => serde_json::Value::String(binary_to_json_str(bytes)),
            Value::List(list) => {
                serde_json::Value::Array(list.iter().map(Value::to_json).collect())
            }
            Value::Dict(dict) => serde_json::Value::Object(
                dict.iter()
                    .map(|(key, value)| (key.clone(), value.to_json()))
                    .collect(),
            ),
        }
    }
}

fn number_from_json(number: &serde_json::Number) -> Value {
    if let Some(signed) = number.as_i64() {
        Value::Int(signed)
    } else if let Some(unsigned) = number.as_u64() {
        Value::UInt(unsigned)
    } else {
        Value::Float(number.as_f64().unwrap_or(f64::NAN))
    }
}

/// `None` if `text` is not a WAMP JSON binary string; otherwise the decoded bytes
/// or the base64 error.
pub(crate) fn binary_from_json_str(text: &str) -> Option<Result<Vec<u8>, base64::DecodeError>> {
    let encoded = text.strip_prefix('\0')?;
    Some(base64::engine::general_purpose::STANDARD.decode(encoded))
}

/// `"\0"` followed by the standard base64 of `bytes`.
pub(crate) fn binary_to_json_str(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(1 + bytes.len().div_ceil(3) * 4);
    text.push('\0');
    base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut text);
    text
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Str(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Str(text)
    }
}

impl From<i64> for Value {
    fn from(number: i64) -> Self {
        Value::Int(number)
    }
}

impl From<i32> for Value {
    fn from(number: i32) -> Self {
        Value::Int(i64::from(number))
    }
}

impl From<u32> for Value {
    fn from(number: u32) -> Self {
        Value::Int(i64::from(number))
    }
}

impl From<u64> for Value {
    fn from(number: u64) -> Self {
        match i64::try_from(number) {
            Ok(signed) => Value::Int(signed),
            Err(_) => Value::UInt(number),
        }
    }
}

impl From<f64> for Value {
    fn from(number: f64) -> Self {
        Value::Float(number)
    }
}

impl From<bool> for Value {
    fn from(flag: bool) -> Self {
        Value::Bool(flag)
    }
}

impl From<Vec<Value>> for Value {
    fn from(list: Vec<Value>) -> Self {
        Value::List(list)
    }
}

impl From<Dict> for Value {
    fn from(dict: Dict) -> Self {
        Value::Dict(dict)
    }
}

impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Self {
        Value::Bytes(bytes)
    }
}

impl From<&[u8]> for Value {
    fn from(bytes: &[u8]) -> Self {
        Value::Bytes(bytes.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_is_normalised() {
        assert_eq!(Value::from(5u64), Value::Int(5));
        assert_eq!(Value::from(u64::MAX), Value::UInt(u64::MAX));
        assert_eq!(Value::from(u64::MAX).as_u64(), Some(u64::MAX));
        assert_eq!(Value::Int(-1).as_u64(), None);
    }

    #[test]
    fn json_binary_convention() {
        let value = Value::Bytes(vec![0, 1, 2, 255]);
        let json = value.to_json();
        assert_eq!(json, serde_json::Value::String("\0AAEC/w==".to_owned()));
        assert_eq!(Value::from_json(json), value);
    }

    /// Found by the `bridge_json` fuzz target: a text that starts with NUL (from MsgPack,
    /// CBOR or an MQTT JSON payload) was written to JSON peers as a string they read as
    /// invalid base64, so they could not decode the message.
    #[test]
    fn a_text_starting_with_nul_goes_to_json_as_its_bytes() {
        for text in ["\0AQ", "\0AQID", "\0"] {
            let value = Value::Str(text.to_owned());
            let back = Value::from_json(value.to_json());
            assert_eq!(back, Value::Bytes(text.as_bytes().to_vec()), "{text:?}");
            let event = crate::Message::Event {
                subscription: 1,
                publication: 2,
                details: Dict::new(),
                args: Some(vec![value]),
                kwargs: None,
            };
            let json = crate::Serializer::Json.encode(&event);
            let decoded = crate::Serializer::Json.decode(&json, usize::MAX).unwrap();
            let crate::Message::Event { args, .. } = decoded else {
                panic!("{decoded:?}")
            };
            assert_eq!(args, Some(vec![Value::Bytes(text.as_bytes().to_vec())]));
        }
    }

    /// Found by the `bridge_json` fuzz target: serde_json reads 128 levels, a WAMP decoder
    /// 64; an argument within [`crate::ARGUMENT_NESTING_MAX`] is carried by every
    /// serializer, one level more by none.
    #[test]
    fn argument_nesting_limit_is_what_a_message_carries() {
        let nested =
            |levels: usize| (0..levels).fold(Value::Int(1), |inner, _| Value::List(vec![inner]));
        assert_eq!(nested(0).nesting_depth(), 0);
        assert_eq!(nested(3).nesting_depth(), 3);
        let event = |value: Value| crate::Message::Event {
            subscription: 1,
            publication: 2,
            details: Dict::new(),
            args: Some(vec![value]),
            kwargs: None,
        };
        for serializer in crate::Serializer::ALL {
            let fits = serializer.encode(&event(nested(crate::ARGUMENT_NESTING_MAX)));
            assert!(
                serializer.decode(&fits, usize::MAX).is_ok(),
                "{serializer:?}"
            );
            let deeper = serializer.encode(&event(nested(crate::ARGUMENT_NESTING_MAX + 1)));
            assert!(
                serializer.decode(&deeper, usize::MAX).is_err(),
                "{serializer:?}"
            );
        }
    }

    #[test]
    fn try_from_json_refuses_invalid_binary_strings() {
        let bad = serde_json::json!({"a": [1, {"b": "\0AQ"}]});
        assert!(Value::try_from_json(bad.clone())
            .unwrap_err()
            .contains("base64"));
        assert_eq!(
            Value::from_json(bad)
                .get("a")
                .and_then(Value::as_list)
                .map(<[Value]>::len),
            Some(2)
        );
        let good = serde_json::json!({"a": [1, "\0AQID", "x"], "b": null});
        assert_eq!(
            Value::try_from_json(good.clone()),
            Ok(Value::from_json(good))
        );
    }

    #[test]
    fn json_tree_round_trip() {
        let json = serde_json::json!({"a": [1, -2, 1.5, "x", null, true], "b": {}, "c": u64::MAX});
        assert_eq!(Value::from_json(json.clone()).to_json(), json);
    }

    #[test]
    fn getters() {
        let mut dict = Dict::new();
        dict.insert("k".to_owned(), Value::from("v"));
        let value = Value::Dict(dict);
        assert_eq!(value.get("k").and_then(Value::as_str), Some("v"));
        assert_eq!(value.get("missing"), None);
        assert_eq!(Value::Bool(true).as_bool(), Some(true));
        assert_eq!(Value::Int(-3).as_i64(), Some(-3));
        assert!(Value::List(vec![]).as_list().is_some());
    }
}
