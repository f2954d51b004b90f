//! A session as the realm sees it: who it is, and its bounded outbound queue.
//!
//! Slow-consumer policy: events past `session_queue_max` are dropped (newest first) and
//! counted in [`SessionStats::events_dropped`]; a message that must not be lost (RESULT,
//! INVOCATION, ERROR, ...) finding the queue full closes the session instead, with reason
//! `wamp.close.slow_consumer`, so no caller or callee ever waits on a message that was
//! silently thrown away.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use fox_wamp_proto::{Dict, Message, Value};
use tokio::sync::{mpsc, Notify};

use super::{Publication, SessionId};
use crate::auth::Identity;

/// Who a session is and how it is connected.
#[derive(Debug)]
pub struct SessionInfo {
    /// Session ID.
    pub id: SessionId,
    /// Realm name.
    pub realm: String,
    /// Authenticated identity.
    pub identity: Identity,
    /// `websocket`, `rawsocket`, `mqtt` or `mqtt-websocket`.
    pub transport: &'static str,
    /// Peer address.
    pub peer: String,
    /// Roles and features from HELLO (empty for MQTT).
    pub roles: Dict,
}

impl SessionInfo {
    /// The session's details dict, as the session meta API returns it.
    pub fn details(&self) -> Dict {
        let mut transport = Dict::new();
        transport.insert("type".into(), Value::from(self.transport));
        transport.insert("peer".into(), Value::from(self.peer.as_str()));
        let mut d = Dict::new();
        d.insert("session".into(), Value::from(self.id));
        d.insert("realm".into(), Value::from(self.realm.as_str()));
        d.insert("authid".into(), Value::from(self.identity.authid.as_str()));
        d.insert(
            "authrole".into(),
            Value::from(self.identity.authrole.as_str()),
        );
        d.insert(
            "authmethod".into(),
            Value::from(self.identity.authmethod.as_str()),
        );
        d.insert(
            "authprovider".into(),
            Value::from(self.identity.authprovider.as_str()),
        );
        d.insert("transport".into(), Value::Dict(transport));
        d
    }

    /// Whether the peer announced a feature for a role (`callee`, `call_canceling`).
    pub fn has_feature(&self, role: &str, feature: &str) -> bool {
        self.roles
            .get(role)
            .and_then(|r| r.get("features"))
            .and_then(|f| f.get(feature))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// A delivery of a publication to one subscription of one session.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The subscription it matched.
    pub subscription: u64,
    /// Whether that subscription is pattern-based (then EVENT.Details.topic is set).
    pub pattern_based: bool,
    /// The publication.
    pub publication: Arc<Publication>,
    /// QoS granted to the subscription (MQTT).
    pub qos: u8,
    /// Replayed from retained state rather than live.
    pub retained: bool,
}

/// What the realm sends to a session's gate.
#[derive(Debug)]
pub enum Outbound {
    /// An event.
    Event(Delivery),
    /// A WAMP message (RPC traffic).
    Wamp(Message),
    /// Close the session (meta API kill, slow consumer): GOODBYE with this reason.
    Close {
        /// The reason URI.
        reason: String,
        /// A message for the peer.
        message: String,
    },
}

/// Counters of one session.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Events dropped because the queue was full.
    pub events_dropped: AtomicU64,
    /// Set when the session must close because a non-droppable message found its queue
    /// full.
    pub overflowed: AtomicBool,
    /// Wakes the session task when `overflowed` is set.
    pub overflow: Notify,
}

/// The realm's handle on a session: cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    /// Who it is.
    pub info: Arc<SessionInfo>,
    tx: mpsc::Sender<Outbound>,
    /// Counters.
    pub stats: Arc<SessionStats>,
}

impl SessionHandle {
    /// A handle and the receiving end of its queue (capacity `queue_max`).
    pub fn new(info: SessionInfo, queue_max: usize) -> (Self, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(queue_max.max(1));
        let handle = Self {
            info: Arc::new(info),
            tx,
            stats: Arc::new(SessionStats::default()),
        };
        (handle, rx)
    }

    /// Queues an event; drops and counts it when the queue is full.
    pub fn deliver(&self, delivery: Delivery) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(Outbound::Event(delivery))
        {
            let dropped = self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
            if dropped == 0 {
                tracing::warn!(session = self.info.id, "slow consumer: dropping events");
            }
        }
    }

    /// Queues a message that must not be dropped; on a full queue the session is told to
    /// close. Returns whether it was queued.
    pub fn send(&self, message: Outbound) -> bool {
        match self.tx.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.stats.overflowed.swap(true, Ordering::AcqRel) {
                    tracing::warn!(session = self.info.id, "slow consumer: closing session");
                }
                self.stats.overflow.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}
