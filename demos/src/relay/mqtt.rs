//! The relay's MQTT side: packets split by their fixed header, PUBLISH forwarded byte for
//! byte, fixed answers to everything a fox-bench client waits for (see the module above).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::topics::Topics;
use super::{FRAME_SIZE_MAX_BYTES, OUTGOING_QUEUE_MAX, READ_RESERVE_BYTES, WRITE_BATCH_BYTES_MAX};

/// Packet types (the fixed header's upper four bits).
mod kind {
    pub const CONNECT: u8 = 1;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const PINGREQ: u8 = 12;
    pub const DISCONNECT: u8 = 14;
}

/// The queues of the connections subscribed to a topic.
type Queues = Topics<mpsc::Sender<Bytes>>;

/// A packet that cannot be framed or read; the connection is closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The remaining length runs over four bytes.
    #[error("malformed remaining length")]
    RemainingLength,
    /// Larger than [`FRAME_SIZE_MAX_BYTES`].
    #[error("packet of {0} bytes over the limit")]
    TooLarge(usize),
    /// A field runs past the end of its packet.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A packet type the relay does not answer.
    #[error("packet type {0} not supported")]
    Unsupported(u8),
}

/// One whole packet: its bytes and where the variable header starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPacket {
    /// The whole packet, fixed header included.
    pub bytes: Bytes,
    /// Length of the fixed header (type byte and remaining length).
    pub body_start: usize,
}

impl RawPacket {
    /// Packet type.
    pub fn kind(&self) -> u8 {
        self.bytes[0] >> 4
    }

    /// Variable header and payload.
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.body_start..]
    }
}

/// Splits the next whole packet off the front of `input`; `Ok(None)` when more bytes are
/// needed.
pub fn next_packet(input: &mut BytesMut) -> Result<Option<RawPacket>, Error> {
    let mut remaining = 0usize;
    for index in 1..=4 {
        let Some(&byte) = input.get(index) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7f) << (7 * (index - 1));
        if byte & 0x80 == 0 {
            let total = 1 + index + remaining;
            if total > FRAME_SIZE_MAX_BYTES {
                return Err(Error::TooLarge(total));
            }
            if input.len() < total {
                input.reserve(total - input.len());
                return Ok(None);
            }
            return Ok(Some(RawPacket {
                bytes: input.split_to(total).freeze(),
                body_start: 1 + index,
            }));
        }
    }
    Err(Error::RemainingLength)
}

/// Serves one MQTT connection until it closes or sends something unsupported.
pub(crate) async fn serve(stream: TcpStream, topics: Arc<Queues>) {
    let connection = topics.next_id();
    let (mut read, write) = stream.into_split();
    let (queue, outgoing) = mpsc::channel(OUTGOING_QUEUE_MAX);
    let writer = tokio::spawn(write_loop(write, outgoing));
    let mut session = Session {
        connection,
        v5: false,
        queue,
        topics: topics.clone(),
    };
    let mut input = BytesMut::with_capacity(READ_RESERVE_BYTES);
    'read: loop {
        loop {
            match next_packet(&mut input) {
                Ok(Some(packet)) => {
                    if !session.handle(packet).await {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "relay: closing MQTT connection");
                    break 'read;
                }
            }
        }
        input.reserve(READ_RESERVE_BYTES);
        match read.read_buf(&mut input).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    topics.remove(connection);
    drop(session);
    let _ = writer.await;
}

/// What the relay knows of one connection.
struct Session {
    connection: u64,
    /// The CONNECT asked for MQTT 5 (CONNACK and SUBACK carry properties then).
    v5: bool,
    /// This connection's own outgoing queue.
    queue: mpsc::Sender<Bytes>,
    topics: Arc<Queues>,
}

impl Session {
    /// Handles one packet; `false` closes the connection.
    async fn handle(&mut self, packet: RawPacket) -> bool {
        let answer = match packet.kind() {
            kind::PUBLISH => return self.publish(packet).await,
            kind::CONNECT => self.connect(&packet),
            kind::SUBSCRIBE => self.subscribe(&packet),
            kind::PUBREL => ack(kind::PUBCOMP, 0, &packet),
            kind::PUBREC => ack(kind::PUBREL, 2, &packet),
            kind::PUBACK | kind::PUBCOMP => return true,
            kind::PINGREQ => Ok(Bytes::from_static(&[0xD0, 0x00])),
            kind::DISCONNECT => return false,
            other => Err(Error::Unsupported(other)),
        };
        match answer {
            Ok(bytes) => self.queue.send(bytes).await.is_ok(),
            Err(error) => {
                tracing::debug!(%error, "relay: closing MQTT connection");
                false
            }
        }
    }

    /// Forwards the packet to the topic's subscribers, then acknowledges it.
    async fn publish(&mut self, packet: RawPacket) -> bool {
        let qos = (packet.bytes[0] >> 1) & 0x03;
        let body = packet.body();
        let Some(topic) = string_at(body, 0) else {
            return false;
        };
        let packet_id = body
            .get(2 + topic.len()..4 + topic.len())
            .map(<[u8]>::to_vec);
        if let Some((_, subscribers)) = self.topics.lookup(topic) {
            for (_, queue) in subscribers.iter() {
                let _ = queue.send(packet.bytes.clone()).await;
            }
        }
        let answer_kind = match qos {
            0 => return true,
            1 => kind::PUBACK,
            _ => kind::PUBREC,
        };
        let Some(id) = packet_id else {
            return false;
        };
        let answer = Bytes::from(vec![answer_kind << 4, 0x02, id[0], id[1]]);
        self.queue.send(answer).await.is_ok()
    }

    /// CONNACK, session not present, success; version from the protocol level.
    fn connect(&mut self, packet: &RawPacket) -> Result<Bytes, Error> {
        let body = packet.body();
        let name = string_at(body, 0).ok_or(Error::Truncated("CONNECT"))?;
        let level = *body
            .get(2 + name.len())
            .ok_or(Error::Truncated("CONNECT"))?;
        self.v5 = level == 5;
        Ok(if self.v5 {
            Bytes::from_static(&[0x20, 0x03, 0x00, 0x00, 0x00])
        } else {
            Bytes::from_static(&[0x20, 0x02, 0x00, 0x00])
        })
    }

    /// Registers every filter as an exact topic; SUBACK grants each requested QoS.
    fn subscribe(&mut self, packet: &RawPacket) -> Result<Bytes, Error> {
        let body = packet.body();
        let id = body.get(..2).ok_or(Error::Truncated("SUBSCRIBE"))?;
        let mut at = 2;
        if self.v5 {
            let (length, length_bytes) =
                variable_int(&body[at..]).ok_or(Error::Truncated("SUBSCRIBE"))?;
            at += length_bytes + length;
        }
        let mut granted = Vec::new();
        while at < body.len() {
            let filter = string_at(body, at).ok_or(Error::Truncated("SUBSCRIBE"))?;
            let options = *body
                .get(at + 2 + filter.len())
                .ok_or(Error::Truncated("SUBSCRIBE"))?;
            self.topics
                .subscribe(filter, self.connection, self.queue.clone());
            granted.push(options & 0x03);
            at += 2 + filter.len() + 1;
        }
        let properties: &[u8] = if self.v5 { &[0x00] } else { &[] };
        let remaining = 2 + properties.len() + granted.len();
        let mut suback = vec![0x90];
        encode_variable_int(remaining, &mut suback);
        suback.extend_from_slice(id);
        suback.extend_from_slice(properties);
        suback.extend_from_slice(&granted);
        Ok(Bytes::from(suback))
    }
}

/// A two-byte acknowledgement of kind `kind` (`flags` in the low bits) for the packet
/// identifier at the front of `packet`'s body.
fn ack(kind: u8, flags: u8, packet: &RawPacket) -> Result<Bytes, Error> {
    let id = packet.body().get(..2).ok_or(Error::Truncated("ack"))?;
    Ok(Bytes::from(vec![(kind << 4) | flags, 0x02, id[0], id[1]]))
}

/// The length-prefixed string (or binary) at `at`.
fn string_at(body: &[u8], at: usize) -> Option<&[u8]> {
    let length = usize::from(u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]));
    body.get(at + 2..at + 2 + length)
}

/// A variable byte integer and how many bytes it took.
fn variable_int(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (index, byte) in bytes.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

fn encode_variable_int(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Writes what is queued, gathered into writes of up to [`WRITE_BATCH_BYTES_MAX`].
async fn write_loop(mut write: OwnedWriteHalf, mut outgoing: mpsc::Receiver<Bytes>) {
    let mut batch = Vec::with_capacity(16 * 1024);
    while let Some(first) = outgoing.recv().await {
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH_BYTES_MAX {
            let Ok(next) = outgoing.try_recv() else { break };
            batch.extend_from_slice(&next);
        }
        if write.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
    let _ = write.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_split_by_their_fixed_header() {
        let mut input = BytesMut::from(&[0xC0, 0x00, 0x30, 0x03, 0x00, 0x01, b't', 0x30][..]);
        let ping = next_packet(&mut input).unwrap().unwrap();
        assert_eq!((ping.kind(), ping.body()), (kind::PINGREQ, &[][..]));
        let publish = next_packet(&mut input).unwrap().unwrap();
        assert_eq!(publish.kind(), kind::PUBLISH);
        assert_eq!(string_at(publish.body(), 0), Some(&b"t"[..]));
        assert_eq!(
            next_packet(&mut input).unwrap(),
            None,
            "a partial header waits"
        );
        let mut bad = BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert!(matches!(next_packet(&mut bad), Err(Error::RemainingLength)));
    }

    #[test]
    fn variable_ints_round_trip() {
        for value in [0, 127, 128, 16_383, 16_384, 2_097_151, 268_435_455] {
            let mut bytes = Vec::new();
            encode_variable_int(value, &mut bytes);
            assert_eq!(variable_int(&bytes), Some((value, bytes.len())));
        }
    }
}
