//! The output batch of every state machine: persist, then send, then ack.

use crate::id::NodeId;
use crate::message::Message;

/// What a state machine asks its driver to do, in this order:
/// 0. send `early` (messages that announce nothing about this batch's writes);
/// 1. append `writes` to its disk, then fsync the disk if `fsync` (all earlier writes too);
/// 2. send `messages` (after the fsync: some announce durability);
/// 3. hand `events` to clients (acks, rejections, deliveries).
#[derive(Debug)]
#[must_use = "a Ready batch holds writes, messages and acks that must be carried out"]
pub struct Ready<W, E> {
    /// Messages that may leave before `writes` are durable (a Raft leader's appends, an
    /// ndb's LOG answers: their records are final before this ndb's copy is durable).
    pub early: Vec<(NodeId, Message)>,
    /// Records to append to this node's durable log, in order.
    pub writes: Vec<W>,
    /// Whether to fsync after appending (covers writes of earlier batches too).
    pub fsync: bool,
    /// Messages to send, `(destination, message)`.
    pub messages: Vec<(NodeId, Message)>,
    /// Client-facing events.
    pub events: Vec<E>,
}

impl<W, E> Ready<W, E> {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.early.is_empty()
            && self.writes.is_empty()
            && !self.fsync
            && self.messages.is_empty()
            && self.events.is_empty()
    }
}

impl<W, E> Default for Ready<W, E> {
    fn default() -> Self {
        Ready {
            early: Vec::new(),
            writes: Vec::new(),
            fsync: false,
            messages: Vec::new(),
            events: Vec::new(),
        }
    }
}
