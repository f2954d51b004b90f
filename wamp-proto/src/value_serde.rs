//! serde glue: [`Value`] encodes and decodes straight through the format's
//! serializer, with no intermediate tree.
//!
//! Binary formats carry bytes natively (`serialize_bytes` → MsgPack bin, CBOR byte
//! string). JSON uses the WAMP convention `"\0" + base64`, selected by
//! [`TextMode::Json`]. Decoding counts nesting and fails past
//! [`NESTING_DEPTH_MAX`](crate::NESTING_DEPTH_MAX) levels, so hostile input cannot
//! exhaust the stack.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::value::{binary_from_json_str, binary_to_json_str, Dict, Value};
use crate::NESTING_DEPTH_MAX;

/// Marker in the error text of a nesting-limit failure, so the codec can report
/// [`DecodeError::TooDeep`](crate::DecodeError::TooDeep) whatever the format's error type.
pub(crate) const NESTING_ERROR_MARKER: &str = "fox-wamp-proto: nesting limit exceeded";

/// Elements to preallocate at most for a container, whatever length the input claims.
const PREALLOCATE_ELEMENTS_MAX: usize = 256;

/// How bytes are represented in the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextMode {
    /// Native binary type (MsgPack, CBOR).
    Binary,
    /// WAMP JSON convention: strings starting with NUL are base64 binary.
    Json,
}

/// Serializes a [`Value`] for one format.
pub(crate) struct SerValue<'a> {
    pub(crate) value: &'a Value,
    pub(crate) mode: TextMode,
}

/// Serializes a [`Dict`] for one format.
pub(crate) struct SerDict<'a> {
    pub(crate) dict: &'a Dict,
    pub(crate) mode: TextMode,
}

/// Serializes a list of values for one format.
pub(crate) struct SerList<'a> {
    pub(crate) list: &'a [Value],
    pub(crate) mode: TextMode,
}

impl Serialize for SerValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mode = self.mode;
        match self.value {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(flag) => serializer.serialize_bool(*flag),
            Value::Int(number) => serializer.serialize_i64(*number),
            Value::UInt(number) => serializer.serialize_u64(*number),
            Value::Float(number) => serializer.serialize_f64(*number),
            // WAMP JSON reads a string that starts with NUL as binary: such a text (a
            // MsgPack or CBOR peer, an MQTT JSON payload can hold one) goes as its UTF-8
            // bytes, so that a JSON peer can decode every message the router sends.
            Value::Str(text) if mode == TextMode::Json && text.starts_with('\0') => {
                serializer.serialize_str(&binary_to_json_str(text.as_bytes()))
            }
            Value::Str(text) => serializer.serialize_str(text),
            Value::Bytes(bytes) => match mode {
                TextMode::Binary => serializer.serialize_bytes(bytes),
                TextMode::Json => serializer.serialize_str(&binary_to_json_str(bytes)),
            },
            Value::List(list) => SerList { list, mode }.serialize(serializer),
            Value::Dict(dict) => SerDict { dict, mode }.serialize(serializer),
        }
    }
}

impl Serialize for SerList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.list.len()))?;
        for value in self.list {
            seq.serialize_element(&SerValue {
                value,
                mode: self.mode,
            })?;
        }
        seq.end()
    }
}

impl Serialize for SerDict<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.dict.len()))?;
        for (key, value) in self.dict {
            map.serialize_entry(
                key,
                &SerValue {
                    value,
                    mode: self.mode,
                },
            )?;
        }
        map.end()
    }
}

/// Serializes with native bytes (MsgPack/CBOR style). For JSON text use
/// [`Value::to_json`] or [`Serializer::encode`](crate::Serializer::encode), which
/// apply the `"\0" + base64` convention.
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SerValue {
            value: self,
            mode: TextMode::Binary,
        }
        .serialize(serializer)
    }
}

/// Deserializes with native bytes and the crate's nesting limit.
impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ValueSeed::new(TextMode::Binary).deserialize(deserializer)
    }
}

/// Decodes one [`Value`] with a remaining nesting budget.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueSeed {
    /// Containers that may still be opened at and below this level.
    depth_remaining: usize,
    mode: TextMode,
}

impl ValueSeed {
    /// A seed for a top-level value.
    pub(crate) fn new(mode: TextMode) -> Self {
        ValueSeed {
            depth_remaining: NESTING_DEPTH_MAX,
            mode,
        }
    }

    /// The seed for the children of a container opened at this level; fails when
    /// this level has no budget left for a container.
    fn child<E: de::Error>(self) -> Result<Self, E> {
        match self.depth_remaining.checked_sub(1) {
            Some(depth_remaining) => Ok(ValueSeed {
                depth_remaining,
                ..self
            }),
            None => Err(E::custom(NESTING_ERROR_MARKER)),
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a WAMP value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<Value, E> {
        Ok(Value::Bool(flag))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Value, E> {
        Ok(Value::Int(number))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Value, E> {
        Ok(Value::from(number))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Value, E> {
        Ok(Value::Float(number))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Value, E> {
        match (self.mode, binary_from_json_str(text)) {
            (TextMode::Json, Some(decoded)) => decoded.map(Value::Bytes).map_err(|error| {
                E::custom(format_args!("invalid base64 in binary string: {error}"))
            }),
            _ => Ok(Value::Str(text.to_owned())),
        }
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Value, E> {
        if self.mode == TextMode::Json && text.starts_with('\0') {
            return self.visit_str(&text);
        }
        Ok(Value::Str(text))
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(bytes.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(bytes))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let child = self.child()?;
        let capacity = seq.size_hint().unwrap_or(0).min(PREALLOCATE_ELEMENTS_MAX);
        let mut list = Vec::with_capacity(capacity);
        while let Some(value) = seq.next_element_seed(child)? {
            list.push(value);
        }
        Ok(Value::List(list))
    }

    /// CBOR tags (ciborium presents a tagged item as an enum): the tag is dropped and the
    /// item kept, as RFC 8949 section 3.4 allows a generic decoder. What clients send is
    /// tag 64 (RFC 8746, uint8 typed array) around a byte string: a browser's `Uint8Array`
    /// from node-cbor or cbor-x, which is WAMP binary.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (_, item) = data.variant::<de::IgnoredAny>()?;
        de::VariantAccess::newtype_variant_seed(item, self.child()?)
    }

    /// MessagePack extension types (rmp-serde presents one as a newtype of `(type, data)`).
    /// Only msgpackr's `undefined` (type 0, data `[0]`, what wampy.js sends for an unset
    /// option) is read, as null; any other extension is refused.
    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Value, D::Error> {
        let Extension(kind, data) = Extension::deserialize(deserializer)?;
        if kind == 0 && data == [0] {
            return Ok(Value::Null);
        }
        Err(de::Error::custom(format_args!(
            "unsupported MessagePack extension type {kind}"
        )))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let child = self.child()?;
        let mut dict = Dict::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(child)?;
            dict.insert(key, value);
        }
        Ok(Value::Dict(dict))
    }
}

/// A MessagePack extension: its type and data.
struct Extension(i8, Vec<u8>);

impl<'de> Deserialize<'de> for Extension {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExtensionVisitor;

        impl<'de> Visitor<'de> for ExtensionVisitor {
            type Value = Extension;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a MessagePack extension (type, data)")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Extension, A::Error> {
                let kind: i8 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let data: ExtensionData = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                Ok(Extension(kind, data.0))
            }
        }

        deserializer.deserialize_tuple(2, ExtensionVisitor)
    }
}

/// The data of a MessagePack extension, read as bytes.
struct ExtensionData(Vec<u8>);

impl<'de> Deserialize<'de> for ExtensionData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DataVisitor;

        impl<'de> Visitor<'de> for DataVisitor {
            type Value = ExtensionData;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("extension data")
            }

            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<ExtensionData, E> {
                Ok(ExtensionData(bytes.to_vec()))
            }

            fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<ExtensionData, E> {
                Ok(ExtensionData(bytes))
            }
        }

        deserializer.deserialize_bytes(DataVisitor)
    }
}
