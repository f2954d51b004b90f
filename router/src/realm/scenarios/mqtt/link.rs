//! One MQTT connection without a socket: what the connection task (`crate::mqtt::conn`)
//! does around the sans-IO session core, done synchronously on the virtual clock. CONNECT
//! goes through `accept` (a takeover kicks the live connection, which hands its session
//! over), packets through the real codec both ways, realm messages into the session while it
//! wants deliveries, and at the end `finish` parks, releases or hands the session over.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use fox_mqtt_proto::{decode, encode, Connect, Packet, Protocol, ReasonCode};
use proptest::prelude::*;
use tokio::sync::oneshot;

use crate::mqtt::{Accepted, End, Flow, Kicks, Parked, Registry, Session};
use crate::realm::OutboundQueue;
use crate::router::Router;

/// Largest packet either side decodes here.
const PACKET_MAX_BYTES: usize = 1 << 20;
/// Polls of a CONNECT: the first may wait for a takeover, the second completes it.
const ACCEPT_POLLS_MAX: usize = 4;
/// Realm messages taken in one pump (far above what a case publishes).
const PUMP_MAX: usize = 10_000;

/// One connection: the session core and what the connection task holds beside it.
pub(super) struct Link {
    session: Box<Session>,
    rx: OutboundQueue,
    kicks: Kicks,
    generation: u64,
    registry: Arc<Registry>,
    /// The negotiated outbound window: min(our limit, the client's Receive Maximum).
    pub inflight_max: usize,
}

impl Link {
    /// CONNECT on a new connection (through the codec), while `old` is this client's live
    /// connection, if any: it is taken over. The new link and the packets `old` wrote last.
    pub fn connect(
        router: &Arc<Router>,
        runtime: &tokio::runtime::Runtime,
        connect: Connect,
        old: Option<Link>,
        inflight_max: usize,
        now_ms: u64,
    ) -> Result<(Link, Vec<Packet>), TestCaseError> {
        let protocol = connect.protocol;
        let mut bytes = BytesMut::new();
        let packet = Packet::Connect(Box::new(connect));
        prop_assert!(encode(&packet, protocol, &mut bytes).is_ok());
        let Ok(Some(Packet::Connect(connect))) = decode(&mut bytes, None, PACKET_MAX_BYTES) else {
            return Err(TestCaseError::fail("CONNECT does not decode"));
        };
        let (accepted, last) = accept_now(router, runtime, *connect, old, now_ms)?;
        let Accepted {
            session,
            rx,
            kicks,
            generation,
            registry,
        } = accepted;
        let link = Link {
            session,
            rx,
            kicks,
            generation,
            registry,
            inflight_max,
        };
        Ok((link, last))
    }

    /// One packet from the client, through the codec.
    pub fn send(&mut self, packet: Packet, now_ms: u64) -> Result<Flow, TestCaseError> {
        let packet = wire(&packet, self.session.protocol())?;
        let flow = self.session.handle_packet(packet, now_ms);
        flow.map_err(|violation| TestCaseError::fail(format!("packet refused: {violation:?}")))
    }

    /// Moves realm messages into the session while it wants them, as the connection task
    /// does.
    pub fn pump(&mut self, now_ms: u64) -> Result<(), TestCaseError> {
        for _ in 0..PUMP_MAX {
            if !self.session.wants_deliveries() {
                break;
            }
            let Ok(message) = self.rx.try_recv() else {
                break;
            };
            let handled = self.session.handle_outbound(message, now_ms);
            prop_assert!(handled.is_ok(), "a delivery refused: {:?}", handled);
        }
        Ok(())
    }

    /// The next packet the session wrote, as the client reads it.
    pub fn poll(&mut self) -> Result<Option<Packet>, TestCaseError> {
        let protocol = self.session.protocol();
        self.session
            .poll_packet()
            .map(|packet| wire(&packet, protocol))
            .transpose()
    }

    /// Ends the connection as `conn.rs` does: our DISCONNECT (`reason`, MQTT 5 only) is
    /// written, then the session is handed on (`finish`). The packets written last.
    pub fn hang_up(
        mut self,
        end: End,
        reason: Option<ReasonCode>,
        kick: Option<oneshot::Sender<Option<Parked>>>,
    ) -> Result<Vec<Packet>, TestCaseError> {
        if let Some(packet) = reason.and_then(|r| self.session.disconnect_packet(r)) {
            self.session.queue(packet);
        }
        let last = std::iter::from_fn(|| self.poll().transpose()).collect::<Result<_, _>>()?;
        let Link {
            session,
            rx,
            registry,
            generation,
            ..
        } = self;
        let client_id = session.client_id().to_owned();
        crate::mqtt::finish(&registry, &client_id, generation, session, rx, end, kick);
        Ok(last)
    }
}

/// Runs `accept` to completion on the virtual clock. It waits only for a takeover: then the
/// live connection (`old`) gets its kick and hands its session over, as `conn.rs` does on
/// a kick (End::Abnormal, DISCONNECT 0x8E). The new connection and the packets the old one
/// wrote last.
fn accept_now(
    router: &Arc<Router>,
    runtime: &tokio::runtime::Runtime,
    connect: Connect,
    mut old: Option<Link>,
    now_ms: u64,
) -> Result<(Accepted, Vec<Packet>), TestCaseError> {
    // `accept` bounds its waits with tokio timers: they need a runtime (never driven here:
    // nothing waits for them to fire).
    let _runtime = runtime.enter();
    let mut context = Context::from_waker(Waker::noop());
    let accepting = crate::mqtt::accept(router, connect, "mqtt", "harness", None, now_ms);
    let mut accepting = std::pin::pin!(accepting);
    let mut last = Vec::new();
    for _ in 0..ACCEPT_POLLS_MAX {
        if let Poll::Ready(accepted) = accepting.as_mut().poll(&mut context) {
            prop_assert!(old.is_none(), "a live connection was not taken over");
            return match accepted {
                Ok(accepted) => Ok((accepted, last)),
                Err(connack) => Err(TestCaseError::fail(format!("CONNECT refused: {connack:?}"))),
            };
        }
        let Some(mut link) = old.take() else {
            return Err(TestCaseError::fail("CONNECT waits, and nobody to kick"));
        };
        let Ok(reply) = link.kicks.try_recv() else {
            return Err(TestCaseError::fail("CONNECT waits, and no kick came"));
        };
        let reason = Some(ReasonCode::SessionTakenOver);
        last = link.hang_up(End::Abnormal, reason, Some(reply))?;
    }
    Err(TestCaseError::fail("CONNECT did not complete"))
}

/// A packet as the other side reads it: encoded, then decoded (an unencodable packet is
/// a failure; the connection task would skip it).
fn wire(packet: &Packet, protocol: Protocol) -> Result<Packet, TestCaseError> {
    let mut bytes = BytesMut::new();
    let encoded = encode(packet, protocol, &mut bytes);
    prop_assert!(encoded.is_ok(), "{:?} not encodable: {:?}", packet, encoded);
    let decoded = decode(&mut bytes, Some(protocol), PACKET_MAX_BYTES);
    prop_assert!(bytes.is_empty(), "one packet, decoded whole");
    match decoded {
        Ok(Some(packet)) => Ok(packet),
        other => Err(TestCaseError::fail(format!(
            "{packet:?} decodes as {other:?}"
        ))),
    }
}
