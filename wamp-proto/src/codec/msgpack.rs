//! MessagePack straight into a [`Value`], over a byte slice.
//!
//! The serde path (rmp-serde with [`ValueSeed`](crate::value_serde)) reads from a reader:
//! every string is first copied into the deserializer's buffer and then again into the
//! `Value`, and every element goes through a visitor. A router decodes every CALL, YIELD
//! and PUBLISH it relays, so this walks the slice once and copies each string once.
//!
//! It accepts what the serde path accepts and builds the same values: integers normalised
//! ([`Value::Int`] unless above `i64::MAX`), a str that is not UTF-8 read as bytes, map keys
//! str (or UTF-8 bin), the last of duplicate keys kept, msgpackr's `undefined` extension
//! (type 0, data `[0]`) read as null and every other extension refused, at most
//! [`NESTING_DEPTH_MAX`] nested containers, and no trailing bytes. A test checks the two
//! paths against each other on generated values.

use crate::error::DecodeError;
use crate::value::{Dict, Value};
use crate::NESTING_DEPTH_MAX;

/// Elements to preallocate at most for a container, whatever length the input claims.
const PREALLOCATE_ELEMENTS_MAX: usize = 256;

/// Decodes one whole MessagePack value; bytes after it are an error.
pub(super) fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut reader = Reader { bytes, at: 0 };
    let value = reader.value(NESTING_DEPTH_MAX)?;
    match bytes.len() - reader.at {
        0 => Ok(value),
        count => Err(super::trailing_bytes_error(count)),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

fn syntax(what: impl Into<String>) -> DecodeError {
    DecodeError::Syntax(what.into())
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| syntax("unexpected end of MessagePack input"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// A length of 1, 2 or 4 big-endian bytes (`size`: 0, 1, 2), as the 8/16/32 variants
    /// of a marker family carry it.
    fn length(&mut self, size: u8) -> Result<usize, DecodeError> {
        Ok(match size {
            0 => usize::from(self.byte()?),
            1 => usize::from(u16::from_be_bytes(self.array()?)),
            _ => u32::from_be_bytes(self.array()?) as usize,
        })
    }

    /// One value; `depth` is how many containers may still be opened here and below.
    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let marker = self.byte()?;
        Ok(match marker {
            0x00..=0x7f => Value::Int(i64::from(marker)),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0x90..=0x9f => self.list(usize::from(marker & 0x0f), depth)?,
            0xa0..=0xbf => self.text(usize::from(marker & 0x1f))?,
            0xc0 => Value::Null,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let len = self.length(marker - 0xc4)?;
                Value::Bytes(self.take(len)?.to_vec())
            }
            0xc7..=0xc9 => {
                let len = self.length(marker - 0xc7)?;
                self.extension(len)?
            }
            0xca => Value::Float(f64::from(f32::from_be_bytes(self.array()?))),
            0xcb => Value::Float(f64::from_be_bytes(self.array()?)),
            0xcc => Value::Int(i64::from(self.byte()?)),
            0xcd => Value::Int(i64::from(u16::from_be_bytes(self.array()?))),
            0xce => Value::Int(i64::from(u32::from_be_bytes(self.array()?))),
            0xcf => Value::from(u64::from_be_bytes(self.array()?)),
            0xd0 => Value::Int(i64::from(i8::from_be_bytes(self.array()?))),
            0xd1 => Value::Int(i64::from(i16::from_be_bytes(self.array()?))),
            0xd2 => Value::Int(i64::from(i32::from_be_bytes(self.array()?))),
            0xd3 => Value::Int(i64::from_be_bytes(self.array()?)),
            0xd4 => self.extension(1)?,
            0xd5 => self.extension(2)?,
            0xd6 => self.extension(4)?,
            0xd7 => self.extension(8)?,
            0xd8 => self.extension(16)?,
            0xd9..=0xdb => {
                let len = self.length(marker - 0xd9)?;
                self.text(len)?
            }
            0xdc..=0xdd => {
                let len = self.length(marker - 0xdb)?;
                self.list(len, depth)?
            }
            0xde..=0xdf => {
                let len = self.length(marker - 0xdd)?;
                self.map(len, depth)?
            }
            0xe0..=0xff => Value::Int(i64::from(marker as i8)),
            0xc1 => return Err(syntax("reserved MessagePack marker 0xc1")),
        })
    }

    /// A str; one that is not UTF-8 is kept as bytes (as rmp-serde hands it over).
    fn text(&mut self, len: usize) -> Result<Value, DecodeError> {
        let raw = self.take(len)?;
        Ok(match std::str::from_utf8(raw) {
            Ok(text) => Value::Str(text.to_owned()),
            Err(_) => Value::Bytes(raw.to_vec()),
        })
    }

    fn list(&mut self, len: usize, depth: usize) -> Result<Value, DecodeError> {
        let child = opened(depth)?;
        let mut list = Vec::with_capacity(len.min(PREALLOCATE_ELEMENTS_MAX));
        for _ in 0..len {
            list.push(self.value(child)?);
        }
        Ok(Value::List(list))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, DecodeError> {
        let child = opened(depth)?;
        let mut dict = Dict::new();
        for _ in 0..len {
            let key = self.key()?;
            let value = self.value(child)?;
            dict.insert(key, value);
        }
        Ok(Value::Dict(dict))
    }

    /// A map key: a str, or a bin holding UTF-8.
    fn key(&mut self) -> Result<String, DecodeError> {
        let marker = self.byte()?;
        let len = match marker {
            0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9..=0xdb => self.length(marker - 0xd9)?,
            0xc4..=0xc6 => self.length(marker - 0xc4)?,
            _ => return Err(syntax("invalid type: a map key must be a string")),
        };
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|e| syntax(format!("invalid UTF-8 in a map key: {e}")))
    }

    /// An extension of `len` data bytes (after its type byte).
    fn extension(&mut self, len: usize) -> Result<Value, DecodeError> {
        let kind = self.byte()? as i8;
        let data = self.take(len)?;
        if kind == 0 && data == [0] {
            return Ok(Value::Null); // msgpackr's `undefined`
        }
        Err(syntax(format!(
            "unsupported MessagePack extension type {kind}"
        )))
    }
}

/// The depth left for the children of a container opened with `depth` left.
fn opened(depth: usize) -> Result<usize, DecodeError> {
    depth.checked_sub(1).ok_or(DecodeError::TooDeep {
        max_depth: NESTING_DEPTH_MAX,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The serde path this decoder replaces.
    fn serde_decode(bytes: &[u8]) -> Result<Value, DecodeError> {
        super::super::decode_msgpack_serde(bytes)
    }

    fn value_strategy() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            (i64::MAX as u64 + 1..=u64::MAX).prop_map(Value::UInt),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
                .prop_map(Value::Float),
            ".{0,40}".prop_map(Value::Str),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20).prop_map(Value::List),
                proptest::collection::btree_map(".{0,12}", inner, 0..8).prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        /// Whatever we encode decodes to the same value, both ways.
        #[test]
        fn agrees_with_the_serde_path_on_encoded_values(value in value_strategy()) {
            let bytes = rmp_serde::to_vec(&value).expect("encodable");
            prop_assert_eq!(decode(&bytes), Ok(value.clone()));
            prop_assert_eq!(serde_decode(&bytes), Ok(value));
        }

        /// A damaged encoding (one byte changed, or cut short) is accepted by both or by
        /// neither, with the same value.
        #[test]
        fn agrees_with_the_serde_path_on_damaged_encodings(
            value in value_strategy(),
            at in any::<proptest::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<bool>(),
        ) {
            let mut bytes = rmp_serde::to_vec(&value).expect("encodable");
            let at = at.index(bytes.len());
            if cut {
                bytes.truncate(at);
            } else {
                bytes[at] = byte;
            }
            let ours = decode(&bytes);
            let theirs = serde_decode(&bytes);
            prop_assert_eq!(ours.as_ref().ok(), theirs.as_ref().ok(), "{:02x?}", bytes);
        }

        /// On arbitrary bytes both paths accept the same inputs, with the same value.
        #[test]
        fn agrees_with_the_serde_path_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..64)
        ) {
            let ours = decode(&bytes);
            let theirs = serde_decode(&bytes);
            prop_assert_eq!(ours.as_ref().ok(), theirs.as_ref().ok(), "{:02x?}", bytes);
        }
    }

    #[test]
    fn every_marker_family() {
        let cases: &[(&[u8], Value)] = &[
            (&[0x05], Value::Int(5)),
            (&[0xff], Value::Int(-1)),
            (&[0xcc, 0xff], Value::Int(255)),
            (&[0xcd, 0x01, 0x00], Value::Int(256)),
            (&[0xce, 0, 1, 0, 0], Value::Int(65_536)),
            (
                &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                Value::UInt(u64::MAX),
            ),
            (&[0xcf, 0, 0, 0, 0, 0, 0, 0, 7], Value::Int(7)),
            (&[0xd0, 0x80], Value::Int(-128)),
            (&[0xd1, 0x80, 0x00], Value::Int(-32_768)),
            (&[0xd2, 0xff, 0xff, 0xff, 0xfe], Value::Int(-2)),
            (&[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0], Value::Int(i64::MIN)),
            (&[0xca, 0x3f, 0x80, 0, 0], Value::Float(1.0)),
            (&[0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0], Value::Float(1.0)),
            (&[0xc0], Value::Null),
            (&[0xc2], Value::Bool(false)),
            (&[0xc3], Value::Bool(true)),
            (&[0xa2, b'h', b'i'], Value::Str("hi".into())),
            (&[0xd9, 1, b'x'], Value::Str("x".into())),
            (&[0xda, 0, 1, b'x'], Value::Str("x".into())),
            (&[0xdb, 0, 0, 0, 1, b'x'], Value::Str("x".into())),
            (&[0xa1, 0xff], Value::Bytes(vec![0xff])),
            (&[0xc4, 2, 1, 2], Value::Bytes(vec![1, 2])),
            (&[0xc5, 0, 1, 9], Value::Bytes(vec![9])),
            (&[0xc6, 0, 0, 0, 1, 9], Value::Bytes(vec![9])),
            (
                &[0x92, 1, 2],
                Value::List(vec![Value::Int(1), Value::Int(2)]),
            ),
            (&[0xdc, 0, 1, 1], Value::List(vec![Value::Int(1)])),
            (&[0xdd, 0, 0, 0, 1, 1], Value::List(vec![Value::Int(1)])),
            (&[0xd4, 0, 0], Value::Null),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(bytes).as_ref(), Ok(want), "{bytes:02x?}");
            assert_eq!(
                serde_decode(bytes).as_ref(),
                Ok(want),
                "serde: {bytes:02x?}"
            );
        }
        let mut dict = Dict::new();
        dict.insert("a".into(), Value::Int(2)); // the last of duplicate keys
        for bytes in [
            &[0x82, 0xa1, b'a', 1, 0xa1, b'a', 2][..],
            &[0xde, 0, 1, 0xc4, 1, b'a', 2],
            &[0xdf, 0, 0, 0, 1, 0xa1, b'a', 2],
        ] {
            assert_eq!(decode(bytes), Ok(Value::Dict(dict.clone())), "{bytes:02x?}");
            assert_eq!(serde_decode(bytes), Ok(Value::Dict(dict.clone())));
        }
    }

    #[test]
    fn refuses_what_the_serde_path_refuses() {
        for bytes in [
            &[0xc1][..],                     // reserved
            &[0x81, 0x01, 0x01],             // integer key
            &[0x81, 0xa1, 0xff, 0x01],       // key not UTF-8
            &[0xd4, 0x01, 0x00],             // another extension type
            &[0xd5, 0x00, 0x00, 0x00],       // type 0 with other data
            &[0x92, 0x01],                   // a missing element
            &[0xa5, b'a'],                   // a short string
            &[0xdd, 0xff, 0xff, 0xff, 0xff], // a huge claimed length
            &[0x01, 0x02],                   // trailing bytes
            &[],
        ] {
            assert!(decode(bytes).is_err(), "{bytes:02x?}");
            assert!(serde_decode(bytes).is_err(), "serde: {bytes:02x?}");
        }
        let nested = vec![0x91; NESTING_DEPTH_MAX + 1];
        assert_eq!(
            decode(&nested),
            Err(DecodeError::TooDeep {
                max_depth: NESTING_DEPTH_MAX
            })
        );
        let mut deepest = vec![0x91; NESTING_DEPTH_MAX - 1];
        deepest.push(0x90);
        assert!(decode(&deepest).is_ok());
    }
}
