//! Message → wire array. A message is flattened into at most
//! [`ELEMENTS_MAX`] borrowed elements, then serialized as one sequence.

use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};

use crate::message::{Id, Message, ID_MAX};
use crate::value::{Dict, Value};
use crate::value_serde::{SerDict, SerList, TextMode};

/// The longest message (ERROR, EVENT, ...) has seven elements.
const ELEMENTS_MAX: usize = 7;

/// One top-level element of a message array, borrowed from the message.
#[derive(Clone, Copy)]
enum Element<'a> {
    Integer(u64),
    Text(&'a str),
    Dict(&'a Dict),
    List(&'a [Value]),
}

/// The elements of one message, in wire order.
pub(crate) struct Elements<'a> {
    items: [Element<'a>; ELEMENTS_MAX],
    len: usize,
    mode: TextMode,
}

impl<'a> Elements<'a> {
    fn new(code: u64, mode: TextMode) -> Self {
        Elements {
            items: [Element::Integer(code); ELEMENTS_MAX],
            len: 1,
            mode,
        }
    }

    fn push(&mut self, element: Element<'a>) {
        // Invariant: every message layout in `of` has at most ELEMENTS_MAX elements.
        assert!(
            self.len < ELEMENTS_MAX,
            "message layout longer than ELEMENTS_MAX"
        );
        self.items[self.len] = element;
        self.len += 1;
    }

    fn id(&mut self, id: Id) {
        debug_assert!(id <= ID_MAX, "encoding an ID above 2^53: {id}");
        self.push(Element::Integer(id));
    }

    fn text(&mut self, text: &'a str) {
        self.push(Element::Text(text));
    }

    fn dict(&mut self, dict: &'a Dict) {
        self.push(Element::Dict(dict));
    }

    /// Appends args/kwargs following the omission rules documented on [`Message`].
    fn payload(&mut self, args: &'a Option<Vec<Value>>, kwargs: &'a Option<Dict>) {
        match (args, kwargs) {
            (None, None) => {}
            (Some(args), None) => self.push(Element::List(args)),
            (args, Some(kwargs)) => {
                self.push(Element::List(args.as_deref().unwrap_or(&[])));
                self.push(Element::Dict(kwargs));
            }
        }
    }

    /// Flattens `message` into its wire elements.
    pub(crate) fn of(message: &'a Message, mode: TextMode) -> Self {
        let mut out = Elements::new(message.code(), mode);
        match message {
            Message::Hello { realm, details } => {
                out.text(realm);
                out.dict(details);
            }
            Message::Welcome { session, details } => {
                out.id(*session);
                out.dict(details);
            }
            Message::Abort { details, reason } | Message::Goodbye { details, reason } => {
                out.dict(details);
                out.text(reason);
            }
            Message::Challenge {
                authmethod: text,
                extra,
            }
            | Message::Authenticate {
                signature: text,
                extra,
            } => {
                out.text(text);
                out.dict(extra);
            }
            Message::Error {
                request_type,
                request,
                details,
                error,
                args,
                kwargs,
            } => {
                out.push(Element::Integer(*request_type));
                out.id(*request);
                out.dict(details);
                out.text(error);
                out.payload(args, kwargs);
            }
            Message::Publish {
                request,
                options,
                topic: uri,
                args,
                kwargs,
            }
            | Message::Call {
                request,
                options,
                procedure: uri,
                args,
                kwargs,
            } => {
                out.id(*request);
                out.dict(options);
                out.text(uri);
                out.payload(args, kwargs);
            }
            Message::Subscribe {
                request,
                options,
                topic: uri,
            }
            | Message::Register {
                request,
                options,
                procedure: uri,
            } => {
                out.id(*request);
                out.dict(options);
                out.text(uri);
            }
            Message::Published {
                request,
                publication: second,
            }
            | Message::Subscribed {
                request,
                subscription: second,
            }
            | Message::Unsubscribe {
                request,
                subscription: second,
            }
            | Message::Registered {
                request,
                registration: second,
            }
            | Message::Unregister {
                request,
                registration: second,
            } => {
                out.id(*request);
                out.id(*second);
            }
            Message::Unsubscribed { request, details }
            | Message::Unregistered { request, details } => {
                out.id(*request);
                if let Some(details) = details {
                    out.dict(details);
                }
            }
            Message::Event {
                subscription: first,
                publication: second,
                details,
                args,
                kwargs,
            }
            | Message::Invocation {
                request: first,
                registration: second,
                details,
                args,
                kwargs,
            } => {
                out.id(*first);
                out.id(*second);
                out.dict(details);
                out.payload(args, kwargs);
            }
            Message::Cancel { request, options } | Message::Interrupt { request, options } => {
                out.id(*request);
                out.dict(options);
            }
            Message::Result {
                request,
                details: dict,
                args,
                kwargs,
            }
            | Message::Yield {
                request,
                options: dict,
                args,
                kwargs,
            } => {
                out.id(*request);
                out.dict(dict);
                out.payload(args, kwargs);
            }
        }
        out
    }
}

impl Serialize for Elements<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mode = self.mode;
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for element in &self.items[..self.len] {
            match *element {
                Element::Integer(number) => seq.serialize_element(&number)?,
                Element::Text(text) => seq.serialize_element(text)?,
                Element::Dict(dict) => seq.serialize_element(&SerDict { dict, mode })?,
                Element::List(list) => seq.serialize_element(&SerList { list, mode })?,
            }
        }
        seq.end()
    }
}
