//! The CONNECT step: the first packet read (within the handshake timeout), the session
//! accepted or the connection refused with a CONNACK in the client's protocol.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fox_mqtt_proto::{decode, encode, ConnAck, Connect, Error, Packet, Protocol, ReasonCode};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{linger, Source};
use crate::engine::unix_ms;
use crate::metrics::{Count, Traffic};
use crate::mqtt::connect::{accept, Accepted};
use crate::mqtt::session::packet_max_bytes;
use crate::router::Router;
use crate::tls::TlsContext;

/// An accepted connection: its session, its streams and what was read past the CONNECT.
pub(super) struct Started<R, W> {
    pub(super) accepted: Accepted,
    pub(super) reader: R,
    pub(super) writer: W,
    pub(super) input: BytesMut,
}

/// CONNECT: the session, the streams and what was read past the CONNECT; `None` when the
/// connection was refused (CONNACK written) or went away.
pub(super) async fn handshake<R: Source, W: AsyncWrite + Unpin + Send>(
    router: &Arc<Router>,
    mut reader: R,
    mut writer: W,
    transport: &'static str,
    peer: &str,
    tls: Option<Arc<TlsContext>>,
) -> Option<Box<Started<R, W>>> {
    let max_in = packet_max_bytes(&router.config.limits);
    let mut input = BytesMut::new();
    let handshake = Duration::from_millis(router.config.limits.handshake_timeout_ms);
    let first =
        tokio::time::timeout(handshake, read_connect(&mut reader, &mut input, max_in)).await;
    let handshake_traffic = &router.metrics().mqtt_handshake;
    let connect = match first {
        Ok(Ok(Some((connect, connect_bytes)))) => {
            let mut received = Count::default();
            received.message(connect_bytes);
            handshake_traffic.received(received);
            connect
        }
        Ok(Err((error, guess))) => {
            tracing::info!(%peer, %error, "bad MQTT CONNECT");
            refuse(&mut writer, guess, error.reason_code(), handshake_traffic).await;
            linger(&mut reader, input).await;
            return None;
        }
        Ok(Ok(None)) | Err(_) => return None,
    };
    let protocol = connect.protocol;
    match accept(router, connect, transport, peer, tls.as_deref(), unix_ms()).await {
        Ok(accepted) => Some(Box::new(Started {
            accepted,
            reader,
            writer,
            input,
        })),
        Err(connack) => {
            refuse(
                &mut writer,
                Some(protocol),
                connack.reason,
                handshake_traffic,
            )
            .await;
            linger(&mut reader, input).await;
            None
        }
    }
}

/// Reads until the first packet, which must be CONNECT: the packet and its size in bytes.
/// `Ok(None)`: the peer went away.
async fn read_connect<R: Source>(
    reader: &mut R,
    input: &mut BytesMut,
    max_in: usize,
) -> Result<Option<(Connect, usize)>, (Error, Option<Protocol>)> {
    loop {
        let guess = guess_protocol(input);
        let before = input.len();
        match decode(input, None, max_in) {
            Ok(Some(Packet::Connect(connect))) => {
                return Ok(Some((*connect, before - input.len())))
            }
            Ok(Some(_)) => {
                return Err((Error::ProtocolError("first packet is not CONNECT"), guess))
            }
            Ok(None) => {}
            Err(error) => return Err((error, guess)),
        }
        match reader.read_some(input).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// The protocol a (possibly bad) CONNECT asks for, from its level byte, so a refusal can
/// be answered in it.
fn guess_protocol(input: &[u8]) -> Option<Protocol> {
    let header_len = 1 + input.iter().skip(1).take(4).position(|b| b & 0x80 == 0)? + 1;
    let name_len = usize::from(u16::from_be_bytes([
        *input.get(header_len)?,
        *input.get(header_len + 1)?,
    ]));
    let level = *input.get(header_len + 2 + name_len)?;
    match level {
        3 => Some(Protocol::V3_1),
        4 => Some(Protocol::V3_1_1),
        5 => Some(Protocol::V5),
        _ => None,
    }
}

/// Answers a refused or bad CONNECT with a CONNACK where the protocol has a code for the
/// reason (an unknown protocol level gets the 3.1.1 "unacceptable protocol version"),
/// then closes.
async fn refuse<W: AsyncWrite + Unpin>(
    writer: &mut W,
    protocol: Option<Protocol>,
    reason: ReasonCode,
    traffic: &Traffic,
) {
    let protocol = match protocol {
        Some(p) => p,
        None if reason == ReasonCode::UnsupportedProtocolVersion => Protocol::V3_1_1,
        None => return,
    };
    let connack = Packet::ConnAck(ConnAck {
        session_present: false,
        reason,
        properties: Default::default(),
    });
    let mut out = BytesMut::new();
    if encode(&connack, protocol, &mut out).is_ok() {
        let mut sent = Count::default();
        sent.message(out.len());
        traffic.sent(sent);
        let _ = writer.write_all(&out).await;
        let _ = writer.flush().await;
    }
    let _ = writer.shutdown().await;
}
