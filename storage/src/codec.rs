//! How a history record is laid out in RocksDB.
//!
//! ```text
//! key   = id: u64 big-endian (8 bytes: byte order == numeric order)
//! value = version: u8 (= 1) | timestamp_ms: u64 BE | topic_len: u32 BE | topic (UTF-8) | payload
//! ```
//!
//! Decoding checks every length and returns [`StoreError::Corrupt`], never panics.

use crate::{HistoryRecord, StoreError};

const VERSION: u8 = 1;
const KEY_SIZE_BYTES: usize = 8;
const VALUE_HEADER_SIZE_BYTES: usize = 1 + 8 + 4;
const TABLE: &str = "history";

/// Key + encoded value size of a record with these lengths.
pub(crate) fn stored_size_bytes(topic_len: usize, payload_len: usize) -> u64 {
    (KEY_SIZE_BYTES + VALUE_HEADER_SIZE_BYTES + topic_len + payload_len) as u64
}

/// Stored size from an encoded value's length (what RocksDB hands back).
pub(crate) fn stored_size_of_value(value_len: usize) -> u64 {
    (KEY_SIZE_BYTES + value_len) as u64
}

pub(crate) fn encode_key(id: u64) -> [u8; KEY_SIZE_BYTES] {
    id.to_be_bytes()
}

pub(crate) fn decode_key(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; KEY_SIZE_BYTES] = key
        .try_into()
        .map_err(|_| corrupt(format!("key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

pub(crate) fn encode_value(record: &HistoryRecord) -> Vec<u8> {
    // Validation caps topics at KEY_SIZE_MAX_BYTES, far below u32::MAX.
    let topic_len =
        u32::try_from(record.topic.len()).expect("topic length checked by batch validation");
    let mut value =
        Vec::with_capacity(VALUE_HEADER_SIZE_BYTES + record.topic.len() + record.payload.len());
    value.push(VERSION);
    value.extend_from_slice(&record.timestamp_ms.to_be_bytes());
    value.extend_from_slice(&topic_len.to_be_bytes());
    value.extend_from_slice(record.topic.as_bytes());
    value.extend_from_slice(&record.payload);
    value
}

/// The timestamp alone (retention by age needs no more).
pub(crate) fn decode_timestamp_ms(value: &[u8]) -> Result<u64, StoreError> {
    let (timestamp_ms, _) = decode_header(value)?;
    Ok(timestamp_ms)
}

pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<HistoryRecord, StoreError> {
    let id = decode_key(key)?;
    let (timestamp_ms, topic_len) = decode_header(value)?;
    let body = &value[VALUE_HEADER_SIZE_BYTES..];
    if body.len() < topic_len {
        return Err(corrupt(format!(
            "id {id}: topic of {topic_len} bytes, {} left",
            body.len()
        )));
    }
    let (topic, payload) = body.split_at(topic_len);
    let topic = std::str::from_utf8(topic).map_err(|e| corrupt(format!("id {id}: topic: {e}")))?;
    Ok(HistoryRecord {
        id,
        timestamp_ms,
        topic: topic.to_owned(),
        payload: payload.to_vec(),
    })
}

/// `(timestamp_ms, topic_len)`; checks version and header length.
fn decode_header(value: &[u8]) -> Result<(u64, usize), StoreError> {
    if value.len() < VALUE_HEADER_SIZE_BYTES {
        return Err(corrupt(format!(
            "value of {} bytes, header needs {VALUE_HEADER_SIZE_BYTES}",
            value.len()
        )));
    }
    if value[0] != VERSION {
        return Err(corrupt(format!("unknown version {}", value[0])));
    }
    let mut timestamp = [0u8; 8];
    timestamp.copy_from_slice(&value[1..9]);
    let mut topic_len = [0u8; 4];
    topic_len.copy_from_slice(&value[9..13]);
    Ok((
        u64::from_be_bytes(timestamp),
        u32::from_be_bytes(topic_len) as usize,
    ))
}

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt {
        table: TABLE,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(id in 1u64..=crate::ID_MAX, timestamp_ms: u64, topic in ".{0,20}", payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let record = HistoryRecord { id, timestamp_ms, topic, payload };
            let value = encode_value(&record);
            prop_assert_eq!(stored_size_of_value(value.len()), record.size_bytes());
            prop_assert_eq!(decode(&encode_key(id), &value).unwrap(), record);
        }

        #[test]
        fn arbitrary_bytes_never_panic(key in proptest::collection::vec(any::<u8>(), 0..12), value in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode(&key, &value);
            let _ = decode_timestamp_ms(&value);
        }
    }

    #[test]
    fn big_endian_keys_sort_numerically() {
        let mut keys = [100u64, 9, 10, 256, 1].map(encode_key);
        keys.sort();
        let ids: Vec<u64> = keys.iter().map(|k| decode_key(k).unwrap()).collect();
        assert_eq!(ids, vec![1, 9, 10, 100, 256]);
    }

    #[test]
    fn truncated_topic_is_corrupt() {
        let record = HistoryRecord {
            id: 1,
            timestamp_ms: 2,
            topic: "abc".into(),
            payload: vec![],
        };
        let value = encode_value(&record);
        assert!(matches!(
            decode(&encode_key(1), &value[..value.len() - 1]),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode(&[1, 2, 3], &value),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
