//! Wire array → Message. The decoded top-level elements are moved (not copied)
//! into the message fields.

use crate::error::DecodeError;
use crate::message::{code, Id, Message, ID_MAX};
use crate::validate;
use crate::value::{Dict, Value};

/// Builds a message from the elements of a decoded top-level array and type-checks
/// its well-known options. Option errors are reported before an unsupported
/// transparent payload, so a peer learns about the more specific problem.
pub(crate) fn message_from_elements(elements: Vec<Value>) -> Result<Message, DecodeError> {
    let mut elements = elements.into_iter();
    let code = match elements.next() {
        None => return Err(DecodeError::NotAnArray),
        Some(first) => first.as_u64().ok_or_else(|| DecodeError::Invalid {
            code: 0,
            reason: "message type must be a non-negative integer".to_owned(),
        })?,
    };
    let mut fields = Fields {
        code,
        elements,
        transparent_payload: false,
    };
    let message = fields.message()?;
    let transparent_payload = fields.transparent_payload;
    fields.finish()?;
    validate::message(&message)?;
    if transparent_payload {
        return Err(DecodeError::Invalid {
            code,
            reason: "Arguments must be a list (payload transparency is not supported)".to_owned(),
        });
    }
    Ok(message)
}

/// The remaining elements of one message, consumed in wire order.
struct Fields {
    code: u64,
    elements: std::vec::IntoIter<Value>,
    /// A string/binary stood where Arguments belong (WAMP payload transparency).
    transparent_payload: bool,
}

impl Fields {
    fn invalid(&self, reason: String) -> DecodeError {
        DecodeError::Invalid {
            code: self.code,
            reason,
        }
    }

    fn required(&mut self, name: &str) -> Result<Value, DecodeError> {
        match self.elements.next() {
            Some(value) => Ok(value),
            None => Err(self.invalid(format!("missing element {name}"))),
        }
    }

    fn id(&mut self, name: &str) -> Result<Id, DecodeError> {
        match self.required(name)?.as_u64() {
            Some(id) if id <= ID_MAX => Ok(id),
            _ => Err(self.invalid(format!("{name} must be an integer ID in [0, 2^53]"))),
        }
    }

    fn integer(&mut self, name: &str) -> Result<u64, DecodeError> {
        match self.required(name)?.as_u64() {
            Some(number) => Ok(number),
            None => Err(self.invalid(format!("{name} must be a non-negative integer"))),
        }
    }

    /// A string field (URI, auth method, signature). One that starts with U+0000 is
    /// refused in every serializer: WAMP JSON reads such a string as binary, so the message
    /// could not be relayed to a JSON peer (the values inside arguments and dicts are
    /// carried either way: see the JSON serializer's text rule).
    fn string(&mut self, name: &str) -> Result<String, DecodeError> {
        match self.required(name)? {
            Value::Str(text) if text.starts_with('\0') => Err(self.invalid(format!(
                "{name} must not start with U+0000 (WAMP JSON would read it as binary)"
            ))),
            Value::Str(text) => Ok(text),
            _ => Err(self.invalid(format!("{name} must be a string"))),
        }
    }

    fn dict(&mut self, name: &str) -> Result<Dict, DecodeError> {
        match self.required(name)? {
            Value::Dict(dict) => Ok(dict),
            _ => Err(self.invalid(format!("{name} must be a dict"))),
        }
    }

    fn optional_dict(&mut self, name: &str) -> Result<Option<Dict>, DecodeError> {
        match self.elements.next() {
            None => Ok(None),
            Some(Value::Dict(dict)) => Ok(Some(dict)),
            Some(_) => Err(self.invalid(format!("{name} must be a dict"))),
        }
    }

    /// Arguments: a list, or absent. An explicit null is absent too, as autobahn (and so
    /// Crossbar) reads it: fox-wamp clients release a lock by publishing `null` arguments.
    /// A null followed by a (non-null) ArgumentsKw is the empty list: the wire has no "absent" in that
    /// place, so that is what the encoder writes back, and what a strict peer reads (the
    /// message must read the same after a round trip; found by fuzzing, `wamp_msgpack`).
    fn args(&mut self) -> Result<Option<Vec<Value>>, DecodeError> {
        match self.elements.next() {
            Some(Value::Null)
                if self
                    .elements
                    .as_slice()
                    .first()
                    .is_some_and(|kwargs| !kwargs.is_null()) =>
            {
                Ok(Some(Vec::new()))
            }
            None | Some(Value::Null) => Ok(None),
            Some(Value::List(list)) => Ok(Some(list)),
            Some(Value::Bytes(_) | Value::Str(_)) => {
                self.transparent_payload = true;
                Ok(None)
            }
            Some(_) => Err(self.invalid("Arguments must be a list".to_owned())),
        }
    }

    /// ArgumentsKw: a dict, or absent; an explicit null is absent too (see [`Self::args`]).
    fn kwargs(&mut self) -> Result<Option<Dict>, DecodeError> {
        match self.elements.next() {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Dict(dict)) => Ok(Some(dict)),
            Some(_) => Err(self.invalid("ArgumentsKw must be a dict".to_owned())),
        }
    }

    fn finish(mut self) -> Result<(), DecodeError> {
        match self.elements.next() {
            None => Ok(()),
            Some(_) => Err(self.invalid("too many elements".to_owned())),
        }
    }

    fn message(&mut self) -> Result<Message, DecodeError> {
        Ok(match self.code {
            code::HELLO => Message::Hello {
                realm: self.string("Realm")?,
                details: self.dict("Details")?,
            },
            code::WELCOME => Message::Welcome {
                session: self.id("Session")?,
                details: self.dict("Details")?,
            },
            code::ABORT => Message::Abort {
                details: self.dict("Details")?,
                reason: self.string("Reason")?,
            },
            code::CHALLENGE => Message::Challenge {
                authmethod: self.string("AuthMethod")?,
                extra: self.dict("Extra")?,
            },
            code::AUTHENTICATE => Message::Authenticate {
                signature: self.string("Signature")?,
                extra: self.dict("Extra")?,
            },
            code::GOODBYE => Message::Goodbye {
                details: self.dict("Details")?,
                reason: self.string("Reason")?,
            },
            code::ERROR => Message::Error {
                request_type: self.integer("REQUEST.Type")?,
                request: self.id("REQUEST.Request")?,
                details: self.dict("Details")?,
                error: self.string("Error")?,
                args: self.args()?,
                kwargs: self.kwargs()?,
            },
            _ => return self.pubsub_message(),
        })
    }

    fn pubsub_message(&mut self) -> Result<Message, DecodeError> {
        Ok(match self.code {
            code::PUBLISH => Message::Publish {
                request: self.id("Request")?,
                options: self.dict("Options")?,
                topic: self.string("Topic")?,
                args: self.args()?,
                kwargs: self.kwargs()?,
            },
            code::PUBLISHED => Message::Published {
                request: self.id("PUBLISH.Request")?,
                publication: self.id("Publication")?,
            },
            code::SUBSCRIBE => Message::Subscribe {
                request: self.id("Request")?,
                options: self.dict("Options")?,
                topic: self.string("Topic")?,
            },
            code::SUBSCRIBED => Message::Subscribed {
                request: self.id("SUBSCRIBE.Request")?,
                subscription: self.id("Subscription")?,
            },
            code::UNSUBSCRIBE => Message::Unsubscribe {
                request: self.id("Request")?,
                subscription: self.id("SUBSCRIBED.Subscription")?,
            },
            code::UNSUBSCRIBED => Message::Unsubscribed {
                request: self.id("UNSUBSCRIBE.Request")?,
                details: self.optional_dict("Details")?,
            },
            code::EVENT => Message::Event {
                subscription: self.id("SUBSCRIBED.Subscription")?,
                publication: self.id("PUBLISHED.Publication")?,
                details: self.dict("Details")?,
                args: self.args()?,
                kwargs: self.kwargs()?,
            },
            _ => return self.rpc_message(),
        })
    }

    fn rpc_message(&mut self) -> Result<Message, DecodeError> {
        Ok(match self.code {
            code::CALL => Message::Call {
                request: self.id("Request")?,
                options: self.dict("Options")?,
                procedure: self.string("Procedure")?,
                args: self.args()?,
                kwargs: self.kwargs()?,
            },
            code::CANCEL => Message::Cancel {
                request: self.id("CALL.Request")?,
                options: self.dict("Options")?,
            },
            code::RESULT => Message::Result {
                request: self.id("CALL.Request")?,
                details: self.dict("Details")?,
                args: self.args()?,
                kwargs: self.kwargs()?,
            },
            code::REGISTER => Message::Register {
                request: self.id("Request")?,
                options: self.dict("Options")?,
                procedure: self.string("Procedure")?,
            },
            code::REGISTERED => Message::Registered {
                request: self.id("REGISTER.Request")?,
                registration: self.id("Registration")?,
            },
            code::UNREGISTER => Message::Unregister {
                request: self.id("Request")?,
                registration: self.id("REGISTERED.Registration")?,
            },
            code::UNREGISTERED => Message::Unregistered {
                request: self.id("UNREGISTER.Request")?,
                details: self.optional_dict("Details")?,
            },
            code::INVOCATION => Message::Invocation {
                request: self.id("Request")?,
                registration: self.id("REGISTERED.Registration")?,
                details: self.dict("Details")?,
                args: self.args()?,
                kwargs: self.kwargs()?,
            },
            code::INTERRUPT => Message::Interrupt {
                request: self.id("INVOCATION.Request")?,
                options: self.dict("Options")?,
            },
            code::YIELD => Message::Yield {
                request: self.id("INVOCATION.Request")?,
                options: self.dict("Options")?,
                args: self.args()?,
                kwargs: self.kwargs()?,
            },
            unknown => return Err(DecodeError::UnknownType(unknown)),
        })
    }
}
