//! The MQTT gate: MQTT 3.1, 3.1.1 and 5.0 over TCP and over WebSocket (path `/mqtt`,
//! subprotocol `mqtt`), on the strict codec `fox-mqtt-proto`, into the realm's one topic
//! space shared with WAMP.
//!
//! # Layout
//!
//! ```text
//! conn.rs       tokio edge: socket / WebSocket bridge, select loop, timers, writes
//! connect.rs    CONNECT: login (user@realm), will permission, takeover, CONNACK
//! authorization.rs  PUBLISH / SUBSCRIBE parked for the authorization hooks' answers
//! session.rs    sans-IO session core: handle_packet / handle_outbound / handle_timeout,
//!               poll_packet, poll_timeout, end
//! inbound.rs    PUBLISH from the client: aliases, permission, QoS 0/1/2 (exactly once)
//! outbound.rs   deliveries to the client: inflight window, DUP retransmission, acks
//! inflight.rs   the window and packet-ID allocation
//! subscribe.rs  SUBSCRIBE / UNSUBSCRIBE, shared subscriptions, retain handling
//! registry.rs   sessions by client id per realm (the router keeps one beside each realm):
//!               live, parked (persistent), expiry
//! persist.rs    session records: in the store with --data (restored at start), or in
//!               the cluster's log on an entry
//! cluster.rs    a session's takeover between cluster entries (handover, resume)
//! sys.rs        $SYS/broker/... statistics
//! ```
//!
//! # One topic space with WAMP
//!
//! MQTT `a/b/c` is WAMP `a.b.c`. A `.` inside an MQTT level is a `/` inside the WAMP
//! component and the reverse (`x.y/z` is WAMP `x/y.z`), so no two distinct topics collide
//! and every topic round-trips (see [`crate::topic`]). MQTT `+` is a WAMP wildcard
//! component (`a/+/c` = `a..c`, match `wildcard`), MQTT `a/#` matches `a` and everything
//! below, like the WAMP prefix `a.`. Permissions are checked on the WAMP spelling.
//! Payloads: an MQTT payload reaches WAMP as `args = [json]` (or `[bytes]` when it is
//! not JSON); a WAMP event reaches MQTT as the JSON of its only argument, or
//! `{"args": [...], "kwargs": {...}}` ([`crate::realm::Payload`]). Retained messages
//! are one store (an empty payload clears a topic); a will is published like a WAMP
//! testament. Every message has one permanent ID, which MQTT 5 subscribers receive as
//! the user property `fox-id` when they ask for it (`outbound.rs`): user properties are
//! otherwise forwarded unaltered.
//!
//! A message matching several of a session's subscriptions is sent once, at the highest
//! granted QoS, with every Subscription Identifier (shared subscriptions apart).
//! `limits.message_size_max_bytes` counts PUBLISH payloads; packets may be
//! `PACKET_HEADROOM_BYTES` larger (our Maximum Packet Size, `session.rs`).
//!
//! # Sessions
//!
//! A session with expiry > 0 (3.x clean session 0: `limits.mqtt_session_expiry_max_secs`;
//! 5.0: Session Expiry Interval, capped by it) stays registered in the realm while its
//! client is away: its subscriptions keep matching and its realm queue
//! (`limits.session_queue_max`) holds the messages; when full, the newest are dropped and
//! counted. Reconnecting with the same client id in the same realm resumes it (session
//! present), retransmitting unacknowledged messages with DUP. A second connection with
//! the same client id takes the session over; the first gets DISCONNECT 0x8E (5.0).
//! With `--data`, sessions and wills also survive a restart (`persist.rs`).
//!
//! Outbound QoS 1/2 messages are limited by an inflight window of
//! min(client Receive Maximum, `limits.mqtt_inflight_max`); while it is full the
//! connection stops taking from the realm queue (backpressure into the bounded queue).
//!
//! Bad input (decode errors, protocol violations) ends the connection with DISCONNECT
//! and the reason code in 5.0 (CONNACK before the session exists), a plain close in 3.x;
//! each is logged once, and the will is published. A connection we close lingers: our
//! side is shut down and the client's input read and discarded for a bounded time, so a
//! client still sending reads the reason code instead of a reset (`conn.rs`).
//!
//! Known limits: no enhanced authentication (AUTH); a session subscribing the same
//! filter both plain and as `$share/...` shares one broker subscription; QoS 0 messages
//! are queued for offline sessions too (the spec allows it).

mod authorization;
pub mod cluster;
mod conn;
mod connect;
mod inbound;
mod inflight;
mod outbound;
mod persist;
mod registry;
mod session;
mod subscribe;
mod sys;

pub use conn::{run, serve_tcp, serve_tls, serve_websocket};
pub use outbound::FOX_ID_PROPERTY;
pub use persist::restore;
pub use registry::Registry;
pub(crate) use registry::{expired as session_expired, will_delay_passed};
pub use session::{
    packet_max_bytes, End, Flow, Negotiated, Parked, Session, SessionState, Violation, Will,
};
pub use sys::Stats;

// The scenario harness (`crate::realm::scenarios::mqtt`) drives sessions as the connection
// task does, without its sockets: CONNECT, then the session core, then the hand-off.
#[cfg(test)]
pub(crate) use conn::finish;
#[cfg(test)]
pub(crate) use connect::{accept, Accepted};
#[cfg(test)]
pub(crate) use registry::Kicks;

#[cfg(test)]
mod tests;
