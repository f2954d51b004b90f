//! Wire primitives (spec 1.5): integers, Variable Byte Integers, UTF-8 strings and
//! binary data. Reading is over a [`Bytes`] holding exactly one packet body, so slices
//! (payloads, binary data) are zero-copy.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::Error;

/// Largest value a Variable Byte Integer can hold (four bytes, spec 1.5.5).
pub const VARINT_MAX: u32 = 268_435_455;

/// Largest length of a UTF-8 string or binary data field (a two-byte prefix).
pub const STRING_LEN_MAX_BYTES: usize = 65_535;

/// The outcome of parsing a Variable Byte Integer from a possibly incomplete slice.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Varint {
    /// More bytes are needed.
    Incomplete,
    /// The value, the number of bytes it used, and whether it used the fewest possible.
    Complete {
        value: u32,
        len: usize,
        minimal: bool,
    },
}

/// Parses a Variable Byte Integer at the start of `bytes`; a fifth byte is malformed.
pub(crate) fn parse_varint(bytes: &[u8]) -> Result<Varint, Error> {
    let mut value: u32 = 0;
    for index in 0..4 {
        let Some(&byte) = bytes.get(index) else {
            return Ok(Varint::Incomplete);
        };
        value |= u32::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            let len = index + 1;
            // A last byte of zero after a first byte means a shorter encoding existed.
            let minimal = len == 1 || byte != 0;
            return Ok(Varint::Complete {
                value,
                len,
                minimal,
            });
        }
    }
    Err(Error::MalformedPacket(
        "variable byte integer longer than 4 bytes",
    ))
}

/// Number of bytes [`put_varint`] writes for `value`.
pub(crate) fn varint_len(value: u32) -> usize {
    debug_assert!(value <= VARINT_MAX);
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `value` as a minimal Variable Byte Integer.
pub(crate) fn put_varint(buf: &mut BytesMut, value: u32) {
    assert!(value <= VARINT_MAX, "varint {value} out of range");
    let mut rest = value;
    loop {
        let mut byte = (rest % 128) as u8;
        rest /= 128;
        if rest > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if rest == 0 {
            break;
        }
    }
}

/// Writes a length-prefixed UTF-8 string; the caller checked it with [`string_len`].
pub(crate) fn put_string(buf: &mut BytesMut, value: &str) {
    put_binary(buf, value.as_bytes());
}

/// Writes length-prefixed binary data; the caller checked its length.
pub(crate) fn put_binary(buf: &mut BytesMut, value: &[u8]) {
    let len = u16::try_from(value.len()).expect("length checked by string_len / binary_len");
    buf.put_u16(len);
    buf.put_slice(value);
}

/// Encoded size of a UTF-8 string field, or why it cannot be encoded.
pub(crate) fn string_len(value: &str) -> Result<usize, &'static str> {
    if value.contains('\0') {
        return Err("string contains U+0000");
    }
    binary_len(value.as_bytes())
}

/// Encoded size of a binary data field, or why it cannot be encoded.
pub(crate) fn binary_len(value: &[u8]) -> Result<usize, &'static str> {
    if value.len() > STRING_LEN_MAX_BYTES {
        return Err("string or binary field longer than 65535 bytes");
    }
    Ok(2 + value.len())
}

/// Checks a decoded UTF-8 string against spec 1.5.4: valid UTF-8 (which in Rust also
/// excludes the surrogates U+D800..U+DFFF) and no U+0000.
pub(crate) fn validate_utf8(bytes: Bytes) -> Result<String, Error> {
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| Error::MalformedPacket("string is not valid UTF-8"))?;
    if text.contains('\0') {
        return Err(Error::MalformedPacket("string contains U+0000"));
    }
    Ok(text)
}

/// A cursor over one packet body. Every read past the end is a malformed packet:
/// the body's length was declared by the fixed header, so running out is the peer's
/// fault, not a reason to wait for more bytes.
#[derive(Debug)]
pub(crate) struct Reader {
    bytes: Bytes,
}

impl Reader {
    pub(crate) fn new(bytes: Bytes) -> Reader {
        Reader { bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn need(&self, len: usize) -> Result<(), Error> {
        if self.bytes.len() < len {
            return Err(Error::MalformedPacket("packet shorter than its fields"));
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        self.need(1)?;
        Ok(self.bytes.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        self.need(2)?;
        Ok(self.bytes.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        self.need(4)?;
        Ok(self.bytes.get_u32())
    }

    /// A Variable Byte Integer inside a body; non-minimal encodings are malformed
    /// (spec 1.5.5 [MQTT-1.5.5-1]). Only MQTT 5.0 has these inside bodies.
    pub(crate) fn varint(&mut self) -> Result<u32, Error> {
        match parse_varint(&self.bytes)? {
            Varint::Incomplete => Err(Error::MalformedPacket("truncated variable byte integer")),
            Varint::Complete { minimal: false, .. } => Err(Error::MalformedPacket(
                "variable byte integer not minimally encoded",
            )),
            Varint::Complete {
                value,
                len,
                minimal: true,
            } => {
                self.bytes.advance(len);
                Ok(value)
            }
        }
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<Bytes, Error> {
        self.need(len)?;
        Ok(self.bytes.split_to(len))
    }

    pub(crate) fn binary(&mut self) -> Result<Bytes, Error> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }

    pub(crate) fn string(&mut self) -> Result<String, Error> {
        let bytes = self.binary()?;
        validate_utf8(bytes)
    }

    /// Everything left (a PUBLISH payload).
    pub(crate) fn rest(&mut self) -> Bytes {
        self.bytes.split_off(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(value: u32) -> Vec<u8> {
        let mut buf = BytesMut::new();
        put_varint(&mut buf, value);
        buf.to_vec()
    }

    #[test]
    fn varint_boundaries_from_spec_table_1_5_5() {
        for (value, bytes) in [
            (0, vec![0x00]),
            (127, vec![0x7F]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xFF, 0x7F]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (2_097_151, vec![0xFF, 0xFF, 0x7F]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
            (VARINT_MAX, vec![0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            assert_eq!(varint_bytes(value), bytes);
            assert_eq!(varint_len(value), bytes.len());
            let parsed = parse_varint(&bytes).expect("valid varint");
            assert_eq!(
                parsed,
                Varint::Complete {
                    value,
                    len: bytes.len(),
                    minimal: true
                }
            );
        }
    }

    #[test]
    fn varint_fifth_byte_is_malformed_spec_1_5_5() {
        assert!(parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]).is_err());
        assert_eq!(parse_varint(&[0xFF, 0xFF]), Ok(Varint::Incomplete));
    }

    #[test]
    fn varint_non_minimal_is_flagged_mqtt_1_5_5_1() {
        let parsed = parse_varint(&[0x80, 0x00]).expect("parses");
        assert_eq!(
            parsed,
            Varint::Complete {
                value: 0,
                len: 2,
                minimal: false
            }
        );
        let mut reader = Reader::new(Bytes::from_static(&[0x81, 0x00]));
        assert!(reader.varint().is_err());
    }

    #[test]
    fn string_rejects_nul_and_invalid_utf8_mqtt_1_5_4() {
        let mut reader = Reader::new(Bytes::from_static(&[0, 3, b'a', 0, b'b']));
        assert_eq!(
            reader.string(),
            Err(Error::MalformedPacket("string contains U+0000"))
        );
        // An encoded surrogate (U+D800) is not UTF-8 [MQTT-1.5.4-1].
        let mut reader = Reader::new(Bytes::from_static(&[0, 3, 0xED, 0xA0, 0x80]));
        assert!(reader.string().is_err());
        let mut reader = Reader::new(Bytes::from_static(&[0, 2, b'o', b'k']));
        assert_eq!(reader.string(), Ok("ok".to_owned()));
    }

    #[test]
    fn reading_past_the_body_is_malformed() {
        let mut reader = Reader::new(Bytes::from_static(&[0, 5, b'a']));
        assert!(reader.string().is_err());
        assert!(string_len(&"x".repeat(65_536)).is_err());
        assert_eq!(string_len("abc"), Ok(5));
    }
}
