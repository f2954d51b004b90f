//! Records of the cluster's permanent log, as the router writes and reads them.
//!
//! The sequencer orders opaque bytes; this module gives them meaning. Every record is one
//! MessagePack list `[realm, topic URI, message, options]`, so the records written before
//! the sync service came to the cluster still read as [`Record::Publish`]:
//!
//! ```text
//! Publish       a client's publish; options "r": retained, "c": a conditional write
//!               (when / watch / will, its owner and the publisher's token)
//! Wake          "op": "wake": applies a parked write (the Publish record "p") if its
//!               condition holds now; written by the parked writer's entry
//! Will          "op": "will": writes a dead session's will to its key, if still its own
//! Testament     "op": "testament": a session's testament ("o" owner, "ti" index), held;
//!               "op": "fire": publishes it, if it is still held (once)
//! TestamentsFlushed "op": "flush": a session dropped its testaments
//! SessionEnded  "op": "end": a session that holds sync-service state or testaments ended
//!               ("ab": without GOODBYE, so its wills fire; testaments fire either way)
//! EntryStarted  "op": "start": an entry (re)started; its earlier sessions are gone
//! Beat          "op": "beat": an entry renews its lease (see `crate::follow::applier`)
//! EntryLeft     "op": "leave": an entry stops cleanly; its sessions' wills are written
//! MqttSession   "op": "ms": an MQTT session's state (`crate::mqtt::persist`'s record, in
//!               the message slot; nil: the session ended), by the entry that serves it
//!               ("h": handed over, the last word of an entry whose session was claimed)
//! MqttClaim     "op": "mc": a connection of another entry takes an MQTT session over
//! ```
//!
//! A condition is decided where the record is applied ([`crate::follow`]), so every entry
//! reaches the same verdict for the same log.

// A sans-IO core: time, randomness and tasks come from its caller (router/clippy.toml).
#![deny(clippy::disallowed_methods)]

use fox_wamp_proto::{Dict, Value};

use crate::durable::{encode, history_publication, history_value, payload_from, payload_value};
use crate::follow::applier::LEASE_RULE;
use crate::message::{KvWrite, Publication, PublishOptions, SessionId};
use crate::topic::Topic;

/// A session of one entry's one life: what a will or a parked write belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The entry's node ID.
    pub node: u32,
    /// The entry's incarnation (its start time, Unix ms): sessions of an earlier one are gone.
    pub incarnation: u64,
    /// The session.
    pub session: SessionId,
}

/// A conditional write: the options, whose it is, and the token its entry answers by.
#[derive(Clone, Debug, PartialEq)]
pub struct Conditional {
    /// `when` / `watch` / `will`.
    pub write: KvWrite,
    /// The writer.
    pub owner: Owner,
    /// The writer's entry's token for the answer (unique on that entry's incarnation).
    pub token: u64,
}

/// One record of the permanent log.
#[derive(Debug)]
pub enum Record {
    /// A client's publish (retained or not); a conditional write when `kv` is set.
    Publish {
        /// Realm.
        realm: String,
        /// The message (its ID is the record's).
        publication: Publication,
        /// Delivery options (`retain` included).
        options: PublishOptions,
        /// The sync service's options.
        kv: Option<Conditional>,
    },
    /// Applies the parked write of record `parked` if it is still parked and its condition
    /// holds; the write itself comes again, so the log holds what is delivered.
    Wake {
        /// Realm.
        realm: String,
        /// The parked message.
        publication: Publication,
        /// Its delivery options.
        options: PublishOptions,
        /// The Publish record that was parked.
        parked: u64,
        /// Its conditional write.
        kv: Conditional,
    },
    /// Writes `owner`'s will (the publication) to its key, if the will is still `owner`'s.
    Will {
        /// Realm.
        realm: String,
        /// The will, on its key.
        publication: Publication,
        /// The dead session.
        owner: Owner,
    },
    /// A session's testament (WAMP `wamp.session.add_testament`), `index` among its
    /// testaments: held until the session ends, then published once, by its entry or,
    /// when that entry is gone, by another. `fired`: that publication, delivered only if
    /// the testament is still held (so at most once).
    Testament {
        /// Realm.
        realm: String,
        /// The session.
        owner: Owner,
        /// Its place among the session's testaments.
        index: u32,
        /// The message (when fired, its ID is the record's).
        publication: Publication,
        /// Its delivery options.
        options: PublishOptions,
        /// A publication of the testament rather than its registration.
        fired: bool,
    },
    /// A session dropped its testaments (`wamp.session.flush_testaments`).
    TestamentsFlushed {
        /// Realm.
        realm: String,
        /// The session.
        owner: Owner,
    },
    /// A session with wills or parked writes ended; `abnormal`: without GOODBYE.
    SessionEnded {
        /// Realm.
        realm: String,
        /// The session.
        owner: Owner,
        /// Its wills fire.
        abnormal: bool,
    },
    /// An entry (re)started: every session of its earlier incarnations has ended abnormally.
    EntryStarted {
        /// The entry.
        node: u32,
        /// Its new incarnation.
        incarnation: u64,
        /// The lease rule its binary applies (`follow::applier::LEASE_RULE`; 1 when the
        /// record does not say: a binary from before the rule had a number).
        rule: u64,
    },
    /// An entry stops cleanly (SIGTERM): its lease ends now, its sessions that hold keys
    /// with it (their wills are written by another entry).
    EntryLeft {
        /// The entry.
        node: u32,
        /// Its incarnation.
        incarnation: u64,
    },
    /// An entry renews its lease: its sessions hold their keys while its beats keep coming.
    Beat {
        /// The entry.
        node: u32,
        /// Its incarnation.
        incarnation: u64,
        /// The lease rule its binary applies (as in `EntryStarted`).
        rule: u64,
    },
    /// The state of MQTT client `client`'s session (`None`: it ended), written by `owner`,
    /// the session serving it; `handover`: its last word after another entry claimed it.
    MqttSession {
        /// Realm.
        realm: String,
        /// The MQTT client identifier.
        client: String,
        /// The session that serves the client.
        owner: Owner,
        /// The stored record (`crate::mqtt::persist`).
        body: Option<Vec<u8>>,
        /// Written in answer to a claim.
        handover: bool,
    },
    /// `owner`, a new connection of `client`, takes its session over.
    MqttClaim {
        /// Realm.
        realm: String,
        /// The MQTT client identifier.
        client: String,
        /// The claiming session.
        owner: Owner,
    },
}

pub(crate) fn owner_value(owner: &Owner) -> Value {
    Value::List(vec![
        Value::from(owner.node),
        Value::from(owner.incarnation),
        Value::from(owner.session),
    ])
}

pub(crate) fn owner_from(value: Option<Value>) -> Option<Owner> {
    let Value::List(parts) = value? else {
        return None;
    };
    let [node, incarnation, session] = <[Value; 3]>::try_from(parts).ok()?;
    Some(Owner {
        node: u32::try_from(node.as_u64()?).ok()?,
        incarnation: incarnation.as_u64()?,
        session: session.as_u64()?,
    })
}

/// The delivery options as the record's option map (defaults left out).
fn options_dict(options: &PublishOptions, disclosed: Option<&(SessionId, String, String)>) -> Dict {
    let mut o = Dict::new();
    o.insert("x".into(), Value::Bool(options.exclude_me));
    o.insert("q".into(), Value::from(u64::from(options.qos)));
    if options.retain {
        o.insert("r".into(), Value::Bool(true));
    }
    let ids = |list: &[SessionId]| Value::List(list.iter().map(|&i| Value::from(i)).collect());
    let names =
        |list: &[String]| Value::List(list.iter().map(|n| Value::from(n.as_str())).collect());
    if !options.exclude.is_empty() {
        o.insert("e".into(), ids(&options.exclude));
    }
    if !options.exclude_authid.is_empty() {
        o.insert("ea".into(), names(&options.exclude_authid));
    }
    if !options.exclude_authrole.is_empty() {
        o.insert("er".into(), names(&options.exclude_authrole));
    }
    if let Some(list) = &options.eligible {
        o.insert("l".into(), ids(list));
    }
    if let Some(list) = &options.eligible_authid {
        o.insert("la".into(), names(list));
    }
    if let Some(list) = &options.eligible_authrole {
        o.insert("lr".into(), names(list));
    }
    if let Some((session, authid, authrole)) = disclosed.filter(|_| options.disclose_me) {
        let disclosed = vec![
            Value::from(*session),
            Value::from(authid.as_str()),
            Value::from(authrole.as_str()),
        ];
        o.insert("d".into(), Value::List(disclosed));
    }
    o
}

fn conditional_value(kv: &Conditional) -> Value {
    let mut c = Dict::new();
    if let Some(when) = &kv.write.when {
        c.insert("w".into(), when.clone());
    }
    if kv.write.watch {
        c.insert("wa".into(), Value::Bool(true));
    }
    if let Some(will) = &kv.write.will {
        c.insert("wi".into(), payload_value(will));
    }
    c.insert("o".into(), owner_value(&kv.owner));
    c.insert("t".into(), Value::from(kv.token));
    Value::Dict(c)
}

fn conditional_from(value: Option<Value>) -> Option<Option<Conditional>> {
    let Some(value) = value else {
        return Some(None);
    };
    let Value::Dict(mut c) = value else {
        return None;
    };
    let will = match c.remove("wi") {
        Some(will) => Some(payload_from(will)?),
        None => None,
    };
    Some(Some(Conditional {
        write: KvWrite {
            when: c.remove("w"),
            watch: matches!(c.remove("wa"), Some(Value::Bool(true))),
            will,
        },
        owner: owner_from(c.remove("o"))?,
        token: c.remove("t")?.as_u64()?,
    }))
}

/// Encodes a message record: [`Record::Publish`] (`op` and `extra` empty), [`Record::Wake`]
/// or [`Record::Will`].
fn encode_message(
    realm: &str,
    publication: &Publication,
    options: &PublishOptions,
    extra: Vec<(&str, Value)>,
) -> Vec<u8> {
    let mut o = options_dict(options, publication.disclosed.as_ref());
    for (key, value) in extra {
        o.insert(key.into(), value);
    }
    encode(&Value::List(vec![
        Value::from(realm),
        Value::from(publication.topic.to_wamp()),
        history_value(publication),
        Value::Dict(o),
    ]))
}

/// A client's publish; `kv` for a conditional write.
pub fn encode_publish(
    realm: &str,
    publication: &Publication,
    options: &PublishOptions,
    kv: Option<&Conditional>,
) -> Vec<u8> {
    let extra = kv.map(|kv| vec![("c", conditional_value(kv))]);
    encode_message(realm, publication, options, extra.unwrap_or_default())
}

/// A wake of the parked write of record `parked`.
pub fn encode_wake(
    realm: &str,
    publication: &Publication,
    options: &PublishOptions,
    parked: u64,
    kv: &Conditional,
) -> Vec<u8> {
    let extra = vec![
        ("op", Value::from("wake")),
        ("p", Value::from(parked)),
        ("c", conditional_value(kv)),
    ];
    encode_message(realm, publication, options, extra)
}

/// The will of `owner`, to write to its key.
pub fn encode_will(realm: &str, publication: &Publication, owner: &Owner) -> Vec<u8> {
    let options = PublishOptions {
        retain: true,
        ..PublishOptions::default()
    };
    let extra = vec![("op", Value::from("will")), ("o", owner_value(owner))];
    encode_message(realm, publication, &options, extra)
}

/// Testament `index` of `owner`: held until its session ends, or, `fired`, published.
pub fn encode_testament(
    realm: &str,
    publication: &Publication,
    options: &PublishOptions,
    (owner, index): (&Owner, u32),
    fired: bool,
) -> Vec<u8> {
    let extra = vec![
        ("op", Value::from(if fired { "fire" } else { "testament" })),
        ("o", owner_value(owner)),
        ("ti", Value::from(u64::from(index))),
    ];
    encode_message(realm, publication, options, extra)
}

/// `owner` dropped its testaments.
pub fn encode_testaments_flushed(realm: &str, owner: &Owner) -> Vec<u8> {
    let mut o = Dict::new();
    o.insert("op".into(), Value::from("flush"));
    o.insert("o".into(), owner_value(owner));
    encode(&Value::List(vec![
        Value::from(realm),
        Value::from(""),
        Value::Null,
        Value::Dict(o),
    ]))
}

/// A session with sync-service state ended.
pub fn encode_session_ended(realm: &str, owner: &Owner, abnormal: bool) -> Vec<u8> {
    let mut o = Dict::new();
    o.insert("op".into(), Value::from("end"));
    o.insert("o".into(), owner_value(owner));
    o.insert("ab".into(), Value::Bool(abnormal));
    encode(&Value::List(vec![
        Value::from(realm),
        Value::from(""),
        Value::Null,
        Value::Dict(o),
    ]))
}

/// The state of MQTT client `client`'s session, by `owner` (`None`: it ended).
pub fn encode_mqtt_session(
    realm: &str,
    client: &str,
    owner: &Owner,
    body: Option<&[u8]>,
    handover: bool,
) -> Vec<u8> {
    let mut o = Dict::new();
    o.insert("op".into(), Value::from("ms"));
    o.insert("o".into(), owner_value(owner));
    if handover {
        o.insert("h".into(), Value::Bool(true));
    }
    let body = body.map_or(Value::Null, |b| Value::Bytes(b.to_vec()));
    encode(&Value::List(vec![
        Value::from(realm),
        Value::from(client),
        body,
        Value::Dict(o),
    ]))
}

/// `owner` claims MQTT client `client`'s session.
pub fn encode_mqtt_claim(realm: &str, client: &str, owner: &Owner) -> Vec<u8> {
    let mut o = Dict::new();
    o.insert("op".into(), Value::from("mc"));
    o.insert("o".into(), owner_value(owner));
    encode(&Value::List(vec![
        Value::from(realm),
        Value::from(client),
        Value::Null,
        Value::Dict(o),
    ]))
}

/// An entry (re)started.
pub fn encode_entry_started(node: u32, incarnation: u64) -> Vec<u8> {
    encode_entry_record("start", node, incarnation, Some(LEASE_RULE))
}

/// An entry's clean stop.
pub fn encode_entry_left(node: u32, incarnation: u64) -> Vec<u8> {
    encode_entry_record("leave", node, incarnation, None)
}

/// An entry's lease renewal.
pub fn encode_beat(node: u32, incarnation: u64) -> Vec<u8> {
    encode_entry_record("beat", node, incarnation, Some(LEASE_RULE))
}

/// A start or a beat as a binary of lease rule `rule` writes it (1: without the field, as
/// binaries from before the rule had a number did), for tests of mixed clusters.
#[cfg(test)]
pub fn encode_entry_record_of_rule(op: &str, node: u32, incarnation: u64, rule: u64) -> Vec<u8> {
    encode_entry_record(op, node, incarnation, (rule > 1).then_some(rule))
}

fn encode_entry_record(op: &str, node: u32, incarnation: u64, rule: Option<u64>) -> Vec<u8> {
    let mut o = Dict::new();
    o.insert("op".into(), Value::from(op));
    if let Some(rule) = rule {
        o.insert("lr".into(), Value::from(rule));
    }
    let owner = Owner {
        node,
        incarnation,
        session: 0,
    };
    o.insert("o".into(), owner_value(&owner));
    encode(&Value::List(vec![
        Value::from(""),
        Value::from(""),
        Value::Null,
        Value::Dict(o),
    ]))
}

/// Decodes the record with permanent ID `id` written by session `publisher` (`None`:
/// malformed, or of a kind this version does not know).
pub fn decode(id: u64, publisher: SessionId, bytes: &[u8]) -> Option<Record> {
    let Value::List(parts) = rmp_serde::from_slice::<Value>(bytes).ok()? else {
        return None;
    };
    let [realm, topic, message, options] = <[Value; 4]>::try_from(parts).ok()?;
    let (Value::Str(realm), Value::Str(topic), Value::Dict(mut o)) = (realm, topic, options) else {
        return None;
    };
    let op = match o.remove("op") {
        None => None,
        Some(Value::Str(op)) => Some(op),
        Some(_) => return None,
    };
    match op.as_deref() {
        None | Some("wake" | "will" | "testament" | "fire") => {
            let at = (id, publisher);
            decode_message(at, op.as_deref(), realm, topic, message, o)
        }
        Some(op) => decode_control(op, realm, topic, message, o),
    }
}

/// The lease rule a start or a beat names: 1 if it names none (`None`: not a number).
fn lease_rule(o: &mut Dict) -> Option<u64> {
    match o.remove("lr") {
        None => Some(1),
        Some(rule) => rule.as_u64(),
    }
}

/// A record about a session or an entry, not a message.
fn decode_control(
    op: &str,
    realm: String,
    topic: String,
    message: Value,
    mut o: Dict,
) -> Option<Record> {
    let owner = owner_from(o.remove("o"))?;
    let (node, incarnation) = (owner.node, owner.incarnation);
    let record = match op {
        "end" => {
            let abnormal = matches!(o.remove("ab"), Some(Value::Bool(true)));
            Record::SessionEnded {
                realm,
                owner,
                abnormal,
            }
        }
        "start" => Record::EntryStarted {
            node,
            incarnation,
            rule: lease_rule(&mut o)?,
        },
        "leave" => Record::EntryLeft { node, incarnation },
        "beat" => Record::Beat {
            node,
            incarnation,
            rule: lease_rule(&mut o)?,
        },
        "flush" => Record::TestamentsFlushed { realm, owner },
        "ms" => {
            let body = match message {
                Value::Null => None,
                Value::Bytes(body) => Some(body),
                _ => return None,
            };
            let handover = matches!(o.remove("h"), Some(Value::Bool(true)));
            Record::MqttSession {
                realm,
                client: topic,
                owner,
                body,
                handover,
            }
        }
        "mc" => Record::MqttClaim {
            realm,
            client: topic,
            owner,
        },
        _ => return None,
    };
    Some(record)
}

/// A record that carries a message (`op`: none, a publish, or "wake", "will", "testament",
/// "fire"), record `id` written by session `publisher`.
fn decode_message(
    (id, publisher): (u64, SessionId),
    op: Option<&str>,
    realm: String,
    topic: String,
    message: Value,
    mut o: Dict,
) -> Option<Record> {
    let mut publication = history_publication(id, Topic::from_wamp(&topic), message)?;
    let options = options_from(&mut o, &mut publication);
    publication.publisher = publisher;
    match op {
        Some("will") => {
            let owner = owner_from(o.remove("o"))?;
            publication.publisher = 0;
            Some(Record::Will {
                realm,
                publication,
                owner,
            })
        }
        Some(kind @ ("testament" | "fire")) => {
            let owner = owner_from(o.remove("o"))?;
            let index = u32::try_from(o.remove("ti")?.as_u64()?).ok()?;
            Some(Record::Testament {
                realm,
                owner,
                index,
                publication,
                options,
                fired: kind == "fire",
            })
        }
        Some("wake") => {
            let parked = o.remove("p")?.as_u64()?;
            let kv = conditional_from(o.remove("c"))??;
            Some(Record::Wake {
                realm,
                publication,
                options,
                parked,
                kv,
            })
        }
        _ => {
            let kv = conditional_from(o.remove("c"))?;
            Some(Record::Publish {
                realm,
                publication,
                options,
                kv,
            })
        }
    }
}

/// The delivery options of a message record; sets the publication's disclosure and retain.
fn options_from(o: &mut Dict, publication: &mut Publication) -> PublishOptions {
    let ids = |v: Option<Value>| -> Option<Vec<SessionId>> {
        match v? {
            Value::List(list) => Some(list.iter().filter_map(Value::as_u64).collect()),
            _ => None,
        }
    };
    let names = |v: Option<Value>| -> Option<Vec<String>> {
        match v? {
            Value::List(list) => Some(
                list.into_iter()
                    .filter_map(|n| match n {
                        Value::Str(s) => Some(s),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        }
    };
    if let Some(Value::List(d)) = o.remove("d") {
        if let Ok([session, Value::Str(authid), Value::Str(authrole)]) = <[Value; 3]>::try_from(d) {
            publication.disclosed = session.as_u64().map(|session| (session, authid, authrole));
        }
    }
    let retain = matches!(o.remove("r"), Some(Value::Bool(true)));
    publication.retain = retain;
    PublishOptions {
        exclude_me: !matches!(o.remove("x"), Some(Value::Bool(false))),
        disclose_me: publication.disclosed.is_some(),
        exclude: ids(o.remove("e")).unwrap_or_default(),
        exclude_authid: names(o.remove("ea")).unwrap_or_default(),
        exclude_authrole: names(o.remove("er")).unwrap_or_default(),
        eligible: ids(o.remove("l")),
        eligible_authid: names(o.remove("la")),
        eligible_authrole: names(o.remove("lr")),
        qos: publication.qos,
        retain,
    }
}

#[cfg(test)]
mod tests;
