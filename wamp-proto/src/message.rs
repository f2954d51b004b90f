//! The WAMP v2 message model (basic and advanced profile).

use crate::value::{Dict, Value};

/// A WAMP ID (session, request, publication, subscription, registration).
/// Valid IDs lie in `0..=ID_MAX`; decoders reject others.
pub type Id = u64;

/// Largest valid [`Id`]: 2^53, so IDs are exact in every JSON implementation.
pub const ID_MAX: u64 = 1 << 53;

/// Message type codes (first element of every message array).
pub mod code {
    /// `[HELLO, Realm|uri, Details|dict]`
    pub const HELLO: u64 = 1;
    /// `[WELCOME, Session|id, Details|dict]`
    pub const WELCOME: u64 = 2;
    /// `[ABORT, Details|dict, Reason|uri]`
    pub const ABORT: u64 = 3;
    /// `[CHALLENGE, AuthMethod|string, Extra|dict]`
    pub const CHALLENGE: u64 = 4;
    /// `[AUTHENTICATE, Signature|string, Extra|dict]`
    pub const AUTHENTICATE: u64 = 5;
    /// `[GOODBYE, Details|dict, Reason|uri]`
    pub const GOODBYE: u64 = 6;
    /// `[ERROR, REQUEST.Type|int, REQUEST.Request|id, Details|dict, Error|uri, (Arguments|list, ArgumentsKw|dict)]`
    pub const ERROR: u64 = 8;
    /// `[PUBLISH, Request|id, Options|dict, Topic|uri, (Arguments|list, ArgumentsKw|dict)]`
    pub const PUBLISH: u64 = 16;
    /// `[PUBLISHED, PUBLISH.Request|id, Publication|id]`
    pub const PUBLISHED: u64 = 17;
    /// `[SUBSCRIBE, Request|id, Options|dict, Topic|uri]`
    pub const SUBSCRIBE: u64 = 32;
    /// `[SUBSCRIBED, SUBSCRIBE.Request|id, Subscription|id]`
    pub const SUBSCRIBED: u64 = 33;
    /// `[UNSUBSCRIBE, Request|id, SUBSCRIBED.Subscription|id]`
    pub const UNSUBSCRIBE: u64 = 34;
    /// `[UNSUBSCRIBED, UNSUBSCRIBE.Request|id, (Details|dict)]`
    pub const UNSUBSCRIBED: u64 = 35;
    /// `[EVENT, SUBSCRIBED.Subscription|id, PUBLISHED.Publication|id, Details|dict, (Arguments|list, ArgumentsKw|dict)]`
    pub const EVENT: u64 = 36;
    /// `[CALL, Request|id, Options|dict, Procedure|uri, (Arguments|list, ArgumentsKw|dict)]`
    pub const CALL: u64 = 48;
    /// `[CANCEL, CALL.Request|id, Options|dict]`
    pub const CANCEL: u64 = 49;
    /// `[RESULT, CALL.Request|id, Details|dict, (YIELD.Arguments|list, YIELD.ArgumentsKw|dict)]`
    pub const RESULT: u64 = 50;
    /// `[REGISTER, Request|id, Options|dict, Procedure|uri]`
    pub const REGISTER: u64 = 64;
    /// `[REGISTERED, REGISTER.Request|id, Registration|id]`
    pub const REGISTERED: u64 = 65;
    /// `[UNREGISTER, Request|id, REGISTERED.Registration|id]`
    pub const UNREGISTER: u64 = 66;
    /// `[UNREGISTERED, UNREGISTER.Request|id, (Details|dict)]`
    pub const UNREGISTERED: u64 = 67;
    /// `[INVOCATION, Request|id, REGISTERED.Registration|id, Details|dict, (CALL.Arguments|list, CALL.ArgumentsKw|dict)]`
    pub const INVOCATION: u64 = 68;
    /// `[INTERRUPT, INVOCATION.Request|id, Options|dict]`
    pub const INTERRUPT: u64 = 69;
    /// `[YIELD, INVOCATION.Request|id, Options|dict, (Arguments|list, ArgumentsKw|dict)]`
    pub const YIELD: u64 = 70;
}

/// One WAMP v2 message.
///
/// `args`/`kwargs` encoding: `kwargs: None` omits it; both `None` omit both;
/// `kwargs: Some` with `args: None` emits `[]` for args. Decoding keeps an
/// explicit empty args list as `Some(vec![])`.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // Fields are named as in the specification; see `code` for each layout.
pub enum Message {
    /// Client opens a session on `realm`.
    Hello { realm: String, details: Dict },
    /// Router accepts the session.
    Welcome { session: Id, details: Dict },
    /// Either side refuses or ends session establishment.
    Abort { details: Dict, reason: String },
    /// Router asks the client to authenticate.
    Challenge { authmethod: String, extra: Dict },
    /// Client answers a challenge.
    Authenticate { signature: String, extra: Dict },
    /// Either side closes an established session.
    Goodbye { details: Dict, reason: String },
    /// A request of type `request_type` failed.
    Error {
        request_type: u64,
        request: Id,
        details: Dict,
        error: String,
        args: Option<Vec<Value>>,
        kwargs: Option<Dict>,
    },
    /// Publish an event to `topic`.
    Publish {
        request: Id,
        options: Dict,
        topic: String,
        args: Option<Vec<Value>>,
        kwargs: Option<Dict>,
    },
    /// Acknowledges a PUBLISH.
    Published { request: Id, publication: Id },
    /// Subscribe to `topic`.
    Subscribe {
        request: Id,
        options: Dict,
        topic: String,
    },
    /// Acknowledges a SUBSCRIBE.
    Subscribed { request: Id, subscription: Id },
    /// Drop a subscription.
    Unsubscribe { request: Id, subscription: Id },
    /// Acknowledges an UNSUBSCRIBE (or, with details, a router-side revocation).
    Unsubscribed { request: Id, details: Option<Dict> },
    /// An event delivered to a subscriber.
    Event {
        subscription: Id,
        publication: Id,
        details: Dict,
        args: Option<Vec<Value>>,
        kwargs: Option<Dict>,
    },
    /// Call `procedure`.
    Call {
        request: Id,
        options: Dict,
        procedure: String,
        args: Option<Vec<Value>>,
        kwargs: Option<Dict>,
    },
    /// Cancel an outstanding CALL.
    Cancel { request: Id, options: Dict },
    /// Result of a CALL.
    Result {
        request: Id,
        details: Dict,
        args: Option<Vec<Value>>,
        kwargs: Option<Dict>,
    },
    /// Register `procedure`.
    Register {
        request: Id,
        options: Dict,
        procedure: String,
    },
    /// Acknowledges a REGISTER.
    Registered { request: Id, registration: Id },
    /// Drop a registration.
    Unregister { request: Id, registration: Id },
    /// Acknowledges an UNREGISTER (or, with details, a router-side revocation).
    Unregistered { request: Id, details: Option<Dict> },
    /// A call routed to a callee.
    Invocation {
        request: Id,
        registration: Id,
        details: Dict,
        args: Option<Vec<Value>>,
        kwargs: Option<Dict>,
    },
    /// Interrupt an outstanding INVOCATION.
    Interrupt { request: Id, options: Dict },
    /// A callee's result for an INVOCATION.
    Yield {
        request: Id,
        options: Dict,
        args: Option<Vec<Value>>,
        kwargs: Option<Dict>,
    },
}

impl Message {
    /// The message type code (see [`code`]).
    pub fn code(&self) -> u64 {
        match self {
            Message::Hello { .. } => code::HELLO,
            Message::Welcome { .. } => code::WELCOME,
            Message::Abort { .. } => code::ABORT,
            Message::Challenge { .. } => code::CHALLENGE,
            Message::Authenticate { .. } => code::AUTHENTICATE,
            Message::Goodbye { .. } => code::GOODBYE,
            Message::Error { .. } => code::ERROR,
            Message::Publish { .. } => code::PUBLISH,
            Message::Published { .. } => code::PUBLISHED,
            Message::Subscribe { .. } => code::SUBSCRIBE,
            Message::Subscribed { .. } => code::SUBSCRIBED,
            Message::Unsubscribe { .. } => code::UNSUBSCRIBE,
            Message::Unsubscribed { .. } => code::UNSUBSCRIBED,
            Message::Event { .. } => code::EVENT,
            Message::Call { .. } => code::CALL,
            Message::Cancel { .. } => code::CANCEL,
            Message::Result { .. } => code::RESULT,
            Message::Register { .. } => code::REGISTER,
            Message::Registered { .. } => code::REGISTERED,
            Message::Unregister { .. } => code::UNREGISTER,
            Message::Unregistered { .. } => code::UNREGISTERED,
            Message::Invocation { .. } => code::INVOCATION,
            Message::Interrupt { .. } => code::INTERRUPT,
            Message::Yield { .. } => code::YIELD,
        }
    }

    /// The upper-case spec name of a message type code (`"HELLO"`), if known.
    pub fn name_of(code: u64) -> Option<&'static str> {
        Some(match code {
            code::HELLO => "HELLO",
            code::WELCOME => "WELCOME",
            code::ABORT => "ABORT",
            code::CHALLENGE => "CHALLENGE",
            code::AUTHENTICATE => "AUTHENTICATE",
            code::GOODBYE => "GOODBYE",
            code::ERROR => "ERROR",
            code::PUBLISH => "PUBLISH",
            code::PUBLISHED => "PUBLISHED",
            code::SUBSCRIBE => "SUBSCRIBE",
            code::SUBSCRIBED => "SUBSCRIBED",
            code::UNSUBSCRIBE => "UNSUBSCRIBE",
            code::UNSUBSCRIBED => "UNSUBSCRIBED",
            code::EVENT => "EVENT",
            code::CALL => "CALL",
            code::CANCEL => "CANCEL",
            code::RESULT => "RESULT",
            code::REGISTER => "REGISTER",
            code::REGISTERED => "REGISTERED",
            code::UNREGISTER => "UNREGISTER",
            code::UNREGISTERED => "UNREGISTERED",
            code::INVOCATION => "INVOCATION",
            code::INTERRUPT => "INTERRUPT",
            code::YIELD => "YIELD",
            _ => return None,
        })
    }
}
