//! The WAMP gate: session state machine, connection task, WebSocket and RawSocket
//! transports. The codec lives in the `fox-wamp-proto` crate.

pub mod conn;
pub mod rawsocket;
pub mod session;
pub mod ws;
