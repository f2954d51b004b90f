//! The harness of the session's unit tests: [`WampSession`]s over a real router built in
//! process, driven message by message with a virtual clock (Unix milliseconds chosen by
//! the test), no sockets and no tasks. What the realm sends a session (EVENTs, RPC
//! traffic, a close) is read from its queue the way the connection task reads it.

use std::sync::Arc;

use fox_wamp_proto::{Dict, Message, Value};

use super::{event_message, Entropy, Flow, WampSession};
use crate::config::Config;
use crate::realm::{Outbound, OutboundQueue};
use crate::router::Router;

/// The virtual time the tests start at (2026-12-06T00:00:00Z), Unix milliseconds.
pub const START_MS: u64 = 1_796_515_200_000;

/// The most queued messages one drain reads (a test's queue holds a handful).
const DRAIN_MAX: usize = 1_024;

/// A router with the default configuration (anonymous access, realms created on use).
pub fn router() -> Arc<Router> {
    Router::new(Config::default())
}

/// A router with this TOML configuration.
pub fn router_with(toml: &str) -> Arc<Router> {
    Router::new(Config::parse(toml, "test").expect("a valid test configuration"))
}

/// A dictionary of these entries.
pub fn dict<const N: usize>(entries: [(&str, Value); N]) -> Dict {
    entries
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
}

/// HELLO to `realm` with these details (`roles` added when absent).
pub fn hello(realm: &str, details: Dict) -> Message {
    let mut details = details;
    details.entry("roles".into()).or_insert_with(|| {
        let role = |name: &'static str| (name, Value::Dict(Dict::new()));
        Value::Dict(dict([
            role("publisher"),
            role("subscriber"),
            role("caller"),
            role("callee"),
        ]))
    });
    Message::Hello {
        realm: realm.to_owned(),
        details,
    }
}

/// The reason of an ABORT or a GOODBYE, the error URI of an ERROR.
pub fn uri_of(message: &Message) -> &str {
    match message {
        Message::Abort { reason, .. } | Message::Goodbye { reason, .. } => reason,
        Message::Error { error, .. } => error,
        other => panic!("no URI in {other:?}"),
    }
}

/// One session of the test, with the queue the realm fills for it once it is established.
pub struct Peer {
    pub session: WampSession,
    pub outbound: Option<OutboundQueue>,
}

impl Peer {
    /// A connection opened at `now_ms` whose session will have ID `session_id` (and a
    /// nonce derived from it).
    pub fn open(router: &Arc<Router>, session_id: u64, now_ms: u64) -> Self {
        let entropy = Entropy {
            session_id,
            nonce: u128::from(session_id) << 64 | 0xfeed,
        };
        let peer = format!("test-{session_id}");
        Self {
            session: WampSession::new(router.clone(), "websocket", peer, now_ms, entropy),
            outbound: None,
        }
    }

    /// A session with ID `session_id` joined anonymously to `realm` at [`START_MS`].
    pub fn join(router: &Arc<Router>, realm: &str, session_id: u64) -> Self {
        let mut peer = Self::open(router, session_id, START_MS);
        let (replies, flow) = peer.send(hello(realm, Dict::new()), START_MS);
        assert_eq!(flow, Flow::Continue);
        assert!(
            matches!(replies.as_slice(), [Message::Welcome { session, .. }] if *session == session_id),
            "WELCOME: {replies:?}"
        );
        peer
    }

    /// Hands the session one message received at `now_ms`: its direct replies and whether
    /// the connection goes on. The queue is taken once the session is established.
    pub fn send(&mut self, message: Message, now_ms: u64) -> (Vec<Message>, Flow) {
        let mut out = Vec::new();
        let flow = self.session.handle_message(message, now_ms, &mut out);
        if self.outbound.is_none() {
            self.outbound = self.session.take_outbound();
        }
        (out, flow)
    }

    /// A message after which the session goes on: its direct replies.
    pub fn request(&mut self, message: Message, now_ms: u64) -> Vec<Message> {
        let (replies, flow) = self.send(message, now_ms);
        assert_eq!(flow, Flow::Continue, "{replies:?}");
        replies
    }

    /// What the realm queued for this session, as the connection task would write it; a
    /// close becomes the session's GOODBYE at `now_ms`.
    pub fn queued(&mut self, now_ms: u64) -> Vec<Message> {
        let mut written = Vec::new();
        let Some(outbound) = self.outbound.as_mut() else {
            return written;
        };
        for _ in 0..DRAIN_MAX {
            let Ok(message) = outbound.try_recv() else {
                break;
            };
            match message {
                Outbound::Event(delivery) => written.push(event_message(&delivery)),
                Outbound::Wamp(message) => {
                    self.session.sending(&message);
                    written.push(*message);
                }
                Outbound::Close(close) => {
                    let (reason, text) = (&close.reason, &close.message);
                    self.session.goodbye(reason, text, now_ms, &mut written);
                }
            }
        }
        written
    }
}
