//! Type checks for well-known keys of Options and Details dictionaries.
//!
//! The spec fixes the type of many options (`PUBLISH.Options.acknowledge|bool`, ...);
//! a peer sending another type commits a protocol violation. [`Serializer::decode`]
//! runs these checks so the router sees only well-typed options. Unknown keys pass
//! untouched (they may be implementation extensions).
//!
//! [`Serializer::decode`]: crate::Serializer::decode

use crate::error::DecodeError;
use crate::message::{Message, ID_MAX};
use crate::value::{Dict, Value};

/// The expected type of a well-known key.
#[derive(Debug, Clone, Copy)]
enum Rule {
    Bool,
    /// A bool, or (fox-wamp's `retain`) an integer read as true unless 0.
    Flag,
    Text,
    Integer,
    Id,
    IdList,
    TextList,
    DictList,
    OneOf(&'static [&'static str]),
}

const ENC_ALGO: Rule = Rule::OneOf(&["null", "cryptobox", "mqtt", "xbr"]);
const ENC_SERIALIZER: Rule = Rule::OneOf(&[
    "null",
    "json",
    "msgpack",
    "cbor",
    "ubjson",
    "opaque",
    "flatbuffers",
]);
const MATCH: Rule = Rule::OneOf(&["exact", "prefix", "wildcard"]);

const PUBLISH_OPTIONS: &[(&str, Rule)] = &[
    ("acknowledge", Rule::Bool),
    ("exclude_me", Rule::Bool),
    ("exclude", Rule::IdList),
    ("exclude_authid", Rule::TextList),
    ("exclude_authrole", Rule::TextList),
    ("eligible", Rule::IdList),
    ("eligible_authid", Rule::TextList),
    ("eligible_authrole", Rule::TextList),
    ("disclose_me", Rule::Bool),
    ("retain", Rule::Flag),
    ("transaction_hash", Rule::Text),
    ("forward_for", Rule::DictList),
    ("enc_algo", ENC_ALGO),
    ("enc_serializer", ENC_SERIALIZER),
];

const EVENT_DETAILS: &[(&str, Rule)] = &[
    ("publisher", Rule::Id),
    ("publisher_authid", Rule::Text),
    ("publisher_authrole", Rule::Text),
    ("topic", Rule::Text),
    ("retained", Rule::Bool),
    ("transaction_hash", Rule::Text),
    ("x_acknowledged_delivery", Rule::Bool),
    ("forward_for", Rule::DictList),
    ("enc_algo", ENC_ALGO),
    ("enc_serializer", ENC_SERIALIZER),
];

const SUBSCRIBE_OPTIONS: &[(&str, Rule)] = &[
    ("match", MATCH),
    ("get_retained", Rule::Bool),
    ("forward_for", Rule::DictList),
];

const CALL_OPTIONS: &[(&str, Rule)] = &[
    ("timeout", Rule::Integer),
    ("receive_progress", Rule::Bool),
    ("disclose_me", Rule::Bool),
    ("forward_for", Rule::DictList),
    ("enc_algo", ENC_ALGO),
    ("enc_serializer", ENC_SERIALIZER),
];

const REGISTER_OPTIONS: &[(&str, Rule)] = &[
    ("match", MATCH),
    (
        "invoke",
        Rule::OneOf(&[
            "single",
            "roundrobin",
            "random",
            "first",
            "last",
            "least_loaded",
        ]),
    ),
    ("disclose_caller", Rule::Bool),
    ("forward_for", Rule::DictList),
];

const CANCEL_OPTIONS: &[(&str, Rule)] = &[("mode", Rule::OneOf(&["skip", "kill", "killnowait"]))];

const PROGRESS: &[(&str, Rule)] = &[("progress", Rule::Bool)];

/// Checks the well-known keys of the message's Options/Details.
pub fn message(message: &Message) -> Result<(), DecodeError> {
    let (dict, dict_name, rules) = match message {
        Message::Publish { options, .. } => (options, "Options", PUBLISH_OPTIONS),
        Message::Event { details, .. } => (details, "Details", EVENT_DETAILS),
        Message::Subscribe { options, .. } => (options, "Options", SUBSCRIBE_OPTIONS),
        Message::Call { options, .. } => (options, "Options", CALL_OPTIONS),
        Message::Register { options, .. } => (options, "Options", REGISTER_OPTIONS),
        Message::Cancel { options, .. } => (options, "Options", CANCEL_OPTIONS),
        Message::Result { details, .. } => (details, "Details", PROGRESS),
        Message::Yield { options, .. } => (options, "Options", PROGRESS),
        _ => return Ok(()),
    };
    check(message.code(), dict, dict_name, rules)
}

fn check(
    code: u64,
    dict: &Dict,
    dict_name: &str,
    rules: &[(&str, Rule)],
) -> Result<(), DecodeError> {
    for &(key, rule) in rules {
        // An explicit null is an option left unset (JavaScript clients send their
        // `undefined` / `null` options as nil).
        let Some(value) = dict.get(key).filter(|v| !matches!(v, Value::Null)) else {
            continue;
        };
        if !matches(rule, value) {
            let name = Message::name_of(code).unwrap_or("message");
            return Err(DecodeError::Invalid {
                code,
                reason: format!("{name}.{dict_name}.{key} must be {}", describe(rule)),
            });
        }
    }
    Ok(())
}

fn is_id(value: &Value) -> bool {
    value.as_u64().is_some_and(|id| id <= ID_MAX)
}

/// A well-known string option or detail: not one starting with U+0000, which WAMP JSON
/// reads as binary (so a message holding it could not be relayed to a JSON peer).
fn is_text(value: &Value) -> bool {
    value.as_str().is_some_and(|text| !text.starts_with('\0'))
}

fn matches(rule: Rule, value: &Value) -> bool {
    match rule {
        Rule::Bool => value.as_bool().is_some(),
        Rule::Flag => value.as_bool().is_some() || value.as_i64().is_some(),
        Rule::Text => is_text(value),
        Rule::Integer => value.as_u64().is_some(),
        Rule::Id => is_id(value),
        Rule::IdList => value.as_list().is_some_and(|list| list.iter().all(is_id)),
        Rule::TextList => value.as_list().is_some_and(|list| list.iter().all(is_text)),
        Rule::DictList => value
            .as_list()
            .is_some_and(|list| list.iter().all(|item| item.as_dict().is_some())),
        Rule::OneOf(allowed) => value.as_str().is_some_and(|text| allowed.contains(&text)),
    }
}

fn describe(rule: Rule) -> String {
    match rule {
        Rule::Bool => "a bool".to_owned(),
        Rule::Flag => "a bool or an integer".to_owned(),
        Rule::Text => "a string (not starting with U+0000)".to_owned(),
        Rule::Integer => "a non-negative integer".to_owned(),
        Rule::Id => "an ID".to_owned(),
        Rule::IdList => "a list of IDs".to_owned(),
        Rule::TextList => "a list of strings (not starting with U+0000)".to_owned(),
        Rule::DictList => "a list of dicts".to_owned(),
        Rule::OneOf(allowed) => format!("one of {allowed:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish_with(key: &str, value: Value) -> Message {
        let mut options = Dict::new();
        options.insert(key.to_owned(), value);
        Message::Publish {
            request: 1,
            options,
            topic: "t".to_owned(),
            args: None,
            kwargs: None,
        }
    }

    #[test]
    fn well_typed_options_pass() {
        assert!(message(&publish_with("acknowledge", Value::Bool(true))).is_ok());
        assert!(message(&publish_with("exclude", Value::List(vec![Value::Int(3)]))).is_ok());
        assert!(message(&publish_with("x_custom", Value::Int(3))).is_ok());
        // fox-wamp's retain may be a number
        assert!(message(&publish_with("retain", Value::Int(100))).is_ok());
        assert!(message(&publish_with("retain", Value::from("yes"))).is_err());
    }

    #[test]
    fn ill_typed_options_name_the_key() {
        let error = message(&publish_with("acknowledge", Value::Int(1))).unwrap_err();
        assert!(error.to_string().contains("acknowledge"), "{error}");
        let error = message(&publish_with(
            "exclude",
            Value::List(vec![Value::from("x")]),
        ))
        .unwrap_err();
        assert!(error.to_string().contains("exclude"), "{error}");
        assert!(message(&publish_with("enc_algo", Value::from("invalid"))).is_err());
    }
}
