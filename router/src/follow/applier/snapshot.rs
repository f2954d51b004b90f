//! The applier's derived state as bytes, and back: an entry that restarts loads it with its
//! realms' state at the same log position and follows the log from there, instead of
//! replaying the log from its start ([`crate::follow::snapshot`]).
//!
//! What is written is exactly what [`Applier::digest`] covers (parked writes, wills,
//! testaments, entries' lives and leases, the coordinator, MQTT sessions), so a restored
//! applier has the digest of the one that wrote it. Parked writes, wills and testaments are
//! kept as the log records that made them (`crate::engine::record`), so the format follows
//! the records'. What is this entry's own (its requests to the log, its claims) is not
//! kept: a new life asks again.

// A sans-IO core: time, randomness and tasks come from its caller (router/clippy.toml).
#![deny(clippy::disallowed_methods)]

use std::collections::HashMap;

use fox_wamp_proto::{Dict, Value};

use super::{testament_key, Applier, Parked, RealmKv, Testament, Will};
use crate::durable::encode;
use crate::engine::record::{self, Record};

/// The format's version: a snapshot of another version is not read (the log is replayed).
/// 2: with the log clock and the leases' marks (lease rule 2), which a snapshot of version 1
/// cannot give back exactly.
const VERSION: u64 = 2;

impl Applier {
    /// The derived state, encoded.
    // Long, as a format is: the snapshot field by field; `restore` reads it back in the same order.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut realms = Vec::new();
        for (name, kv) in &self.realms {
            let parked = kv
                .parked
                .values()
                .flatten()
                .map(|p| {
                    let bytes =
                        record::encode_publish(name, &p.publication, &p.options, Some(&p.kv));
                    Value::List(vec![
                        Value::from(p.id),
                        Value::from(p.publication.publisher),
                        Value::Bytes(bytes),
                    ])
                })
                .collect();
            let wills = kv
                .wills
                .iter()
                .map(|(topic, will)| {
                    let bytes = super::kv::will_record(name, topic, will);
                    Value::List(vec![Value::Bytes(bytes), Value::Bool(will.dead)])
                })
                .collect();
            let testaments = kv
                .testaments
                .iter()
                .map(|(key, t)| {
                    let owner = super::owner_of(key);
                    let bytes = record::encode_testament(
                        name,
                        &t.publication,
                        &t.options,
                        (&owner, key.3),
                        false,
                    );
                    Value::List(vec![
                        Value::Bytes(bytes),
                        Value::Bool(t.dead),
                        Value::from(t.publication.id),
                    ])
                })
                .collect();
            realms.push(dict([
                ("name", Value::from(name.as_str())),
                ("parked", Value::List(parked)),
                ("wills", Value::List(wills)),
                ("testaments", Value::List(testaments)),
            ]));
        }
        let pairs = |map: &HashMap<u32, u64>| {
            let mut pairs: Vec<_> = map.iter().map(|(n, i)| (*n, *i)).collect();
            pairs.sort_unstable();
            Value::List(
                pairs
                    .into_iter()
                    .map(|(n, i)| Value::List(vec![Value::from(n), Value::from(i)]))
                    .collect(),
            )
        };
        let leases = self
            .leases
            .iter()
            .map(|(node, (life, beat))| {
                Value::List(vec![
                    Value::from(*node),
                    Value::from(*life),
                    Value::from(*beat),
                ])
            })
            .collect();
        let mut marks: Vec<_> = self.marks.iter().collect();
        marks.sort_unstable_by_key(|(node, _)| **node);
        let marks = marks
            .into_iter()
            .map(|(node, mark)| {
                Value::List(vec![
                    Value::from(*node),
                    Value::from(mark.rule),
                    Value::from(mark.stalled_ms),
                ])
            })
            .collect();
        let clock = Value::List(vec![
            Value::from(self.clock.last_ms),
            Value::from(self.clock.stalled_ms),
        ]);
        let snapshot = dict([
            ("v", Value::from(VERSION)),
            ("realms", Value::List(realms)),
            ("started", pairs(&self.started)),
            ("expired", pairs(&self.expired)),
            ("leases", Value::List(leases)),
            ("marks", Value::List(marks)),
            ("clock", clock),
            (
                "coordinator",
                self.coordinator.map_or(Value::Null, Value::from),
            ),
            ("mqtt", self.sessions.snapshot()),
        ]);
        encode(&snapshot)
    }

    /// The applier of entry `node` in its life `incarnation`, with the derived state of
    /// `bytes` ([`Applier::snapshot`]); `None` if they cannot be read.
    // Long, as a format is: `snapshot` read back field by field.
    pub fn restore(node: u32, incarnation: u64, bytes: &[u8]) -> Option<Applier> {
        let Value::Dict(mut s) = rmp_serde::from_slice::<Value>(bytes).ok()? else {
            return None;
        };
        if s.remove("v")?.as_u64()? != VERSION {
            return None;
        }
        let mut applier = Applier::new(node, incarnation);
        for realm in list(s.remove("realms"))? {
            let Value::Dict(mut realm) = realm else {
                return None;
            };
            let name = realm.remove("name")?.as_str()?.to_owned();
            let mut kv = RealmKv::default();
            for parked in list(realm.remove("parked"))? {
                let [id, publisher, bytes] = <[Value; 3]>::try_from(list(Some(parked))?).ok()?;
                let (id, publisher) = (id.as_u64()?, publisher.as_u64()?);
                let Value::Bytes(bytes) = bytes else {
                    return None;
                };
                let Record::Publish {
                    publication,
                    options,
                    kv: Some(conditional),
                    ..
                } = record::decode(id, publisher, &bytes)?
                else {
                    return None;
                };
                kv.parked
                    .entry(publication.topic.clone())
                    .or_default()
                    .push_back(Parked {
                        id,
                        publication,
                        options,
                        kv: conditional,
                    });
            }
            for will in list(realm.remove("wills"))? {
                let (bytes, dead) = flagged(will)?;
                let Record::Will {
                    publication, owner, ..
                } = record::decode(0, 0, &bytes)?
                else {
                    return None;
                };
                let will = Will {
                    owner,
                    payload: publication.payload,
                    dead,
                };
                kv.wills.insert(publication.topic, will);
            }
            for testament in list(realm.remove("testaments"))? {
                let [bytes, dead, id] = <[Value; 3]>::try_from(list(Some(testament))?).ok()?;
                let (Value::Bytes(bytes), Some(dead), Some(id)) =
                    (bytes, dead.as_bool(), id.as_u64())
                else {
                    return None;
                };
                let Record::Testament {
                    owner,
                    index,
                    publication,
                    options,
                    ..
                } = record::decode(id, owner_session(&bytes)?, &bytes)?
                else {
                    return None;
                };
                let testament = Testament {
                    publication,
                    options,
                    dead,
                };
                kv.testaments
                    .insert(testament_key(&owner, index), testament);
            }
            applier.dying |=
                kv.wills.values().any(|w| w.dead) || kv.testaments.values().any(|t| t.dead);
            applier.realms.insert(name, kv);
        }
        applier.started = pairs_from(s.remove("started"))?;
        applier.expired = pairs_from(s.remove("expired"))?;
        for lease in list(s.remove("leases"))? {
            let [node, life, beat] = <[Value; 3]>::try_from(list(Some(lease))?).ok()?;
            let node = u32::try_from(node.as_u64()?).ok()?;
            applier
                .leases
                .insert(node, (life.as_u64()?, beat.as_u64()?));
        }
        for mark in list(s.remove("marks"))? {
            let [node, rule, stalled_ms] = <[Value; 3]>::try_from(list(Some(mark))?).ok()?;
            let node = u32::try_from(node.as_u64()?).ok()?;
            let mark = super::leases::Mark {
                rule: rule.as_u64()?,
                stalled_ms: stalled_ms.as_u64()?,
            };
            applier.marks.insert(node, mark);
        }
        let [last_ms, stalled_ms] = <[Value; 2]>::try_from(list(s.remove("clock"))?).ok()?;
        applier.clock = super::leases::LogClock {
            last_ms: last_ms.as_u64()?,
            stalled_ms: stalled_ms.as_u64()?,
        };
        applier.coordinator = match s.remove("coordinator")? {
            Value::Null => None,
            node => Some(u32::try_from(node.as_u64()?).ok()?),
        };
        applier.sessions.restore(list(s.remove("mqtt"))?)?;
        Some(applier)
    }
}

/// The session a testament record names (its publisher): the testament's owner's.
fn owner_session(bytes: &[u8]) -> Option<u64> {
    match record::decode(0, 0, bytes)? {
        Record::Testament { owner, .. } => Some(owner.session),
        _ => None,
    }
}

fn dict<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut d = Dict::new();
    for (key, value) in pairs {
        d.insert(key.into(), value);
    }
    Value::Dict(d)
}

/// The items of a list value (`None`: absent, or not a list).
pub(crate) fn list(value: Option<Value>) -> Option<Vec<Value>> {
    match value? {
        Value::List(items) => Some(items),
        _ => None,
    }
}

/// A record's bytes and the flag beside them.
fn flagged(value: Value) -> Option<(Vec<u8>, bool)> {
    let [bytes, flag] = <[Value; 2]>::try_from(list(Some(value))?).ok()?;
    match bytes {
        Value::Bytes(bytes) => Some((bytes, flag.as_bool()?)),
        _ => None,
    }
}

fn pairs_from(value: Option<Value>) -> Option<HashMap<u32, u64>> {
    list(value)?
        .into_iter()
        .map(|pair| {
            let [node, life] = <[Value; 2]>::try_from(list(Some(pair))?).ok()?;
            Some((u32::try_from(node.as_u64()?).ok()?, life.as_u64()?))
        })
        .collect()
}
