//! The cluster's membership on system topics, in every realm of this entry:
//!
//! - `$fox/cluster/members/<id>` (retained): one node, as `cluster.toml` names it (role,
//!   rank, addresses) with, for an entry, the state of its lease in the log (`joined`,
//!   `left`, `lost`; `unknown` before the log showed any), its incarnation and whether it
//!   is the coordinator. ndb and sync nodes hold no lease: their state is `configured`.
//! - `$fox/cluster/coordinator` (retained): the coordinator (`id` null when no entry's
//!   lease is live) and the record at which it was named.
//! - `$fox/cluster/events`: `joined`, `left`, `lost` and `coordinator` events.
//!
//! Every entry derives these from the permanent log by the applier's rules, so every entry
//! shows the same changes in the same order, and a partition cannot name two coordinators.
//! They are not written to the log: each entry publishes them to its own subscribers. A
//! client cannot publish on `$` topics (MQTT and WAMP refuse it).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use fox_wamp_proto::{Dict, Value};

use super::applier::{Action, Change};
use crate::engine::cluster::Member;
use crate::message::{Payload, PublishOptions};
use crate::realm::Realm;
use crate::router::Router;
use crate::topic::Topic;

/// The prefix of the membership topics.
pub const PREFIX: &str = "$fox/cluster";

/// One entry's lease as the log showed it last.
#[derive(Debug, Clone, Copy)]
struct Lease {
    change: Change,
    incarnation: u64,
    at: u64,
}

/// What this entry publishes of the cluster's membership.
pub struct Membership {
    members: Vec<Member>,
    leases: BTreeMap<u32, Lease>,
    coordinator: Option<u32>,
    coordinator_at: u64,
    /// The realms that got the current retained state.
    realms: HashSet<String>,
}

impl Membership {
    /// The membership of a cluster of `members`, with nothing seen in the log yet.
    pub fn new(members: Vec<Member>) -> Self {
        Self {
            members,
            leases: BTreeMap::new(),
            coordinator: None,
            coordinator_at: 0,
            realms: HashSet::new(),
        }
    }

    /// Publishes the retained state in every realm that has not got it yet (a realm made on
    /// first use after the follower started, say).
    pub fn catch_up(&mut self, router: &Router) {
        for realm in router.realms() {
            if self.realms.insert(realm.name.clone()) {
                for member in &self.members {
                    publish(
                        &realm,
                        &member_topic(member.id),
                        Some(self.member(member)),
                        true,
                    );
                }
                publish(&realm, &coordinator_topic(), Some(self.coordinator()), true);
            }
        }
    }

    /// Takes in a membership action (others are ignored) and publishes what it changed.
    pub fn note(&mut self, router: &Router, action: &Action) {
        self.catch_up(router);
        let mut changed = Vec::new();
        let event = match *action {
            Action::Member {
                node,
                incarnation,
                change,
                at,
            } => {
                self.leases.insert(
                    node,
                    Lease {
                        change,
                        incarnation,
                        at,
                    },
                );
                changed.push(node);
                dict([
                    ("event", Value::from(change.name())),
                    ("id", Value::from(node)),
                    ("incarnation", Value::from(incarnation)),
                    ("at", Value::from(at)),
                ])
            }
            Action::Coordinator { node, at } => {
                changed.extend(self.coordinator);
                changed.extend(node);
                self.coordinator = node;
                self.coordinator_at = at;
                dict([
                    ("event", Value::Str("coordinator".into())),
                    ("id", node.map_or(Value::Null, Value::from)),
                    ("at", Value::from(at)),
                ])
            }
            _ => return,
        };
        let coordinator_changed = matches!(action, Action::Coordinator { .. });
        for realm in router.realms() {
            for member in self.members.iter().filter(|m| changed.contains(&m.id)) {
                publish(
                    &realm,
                    &member_topic(member.id),
                    Some(self.member(member)),
                    true,
                );
            }
            if coordinator_changed {
                publish(&realm, &coordinator_topic(), Some(self.coordinator()), true);
            }
            publish(&realm, &events_topic(), Some(event.clone()), false);
        }
    }

    fn member(&self, member: &Member) -> Value {
        let address =
            |a: Option<std::net::SocketAddr>| a.map_or(Value::Null, |a| a.to_string().into());
        let mut fields = vec![
            ("id", Value::from(member.id)),
            ("role", Value::from(member.role)),
            ("peer", Value::from(member.peer.to_string())),
        ];
        if member.role == "entry" {
            let lease = self.leases.get(&member.id);
            let [ws, rawsocket, mqtt] = member.listeners;
            fields.extend([
                ("rank", Value::from(member.rank)),
                ("ws", address(ws)),
                ("rawsocket", address(rawsocket)),
                ("mqtt", address(mqtt)),
                (
                    "state",
                    Value::from(lease.map_or("unknown", |l| l.change.name())),
                ),
                (
                    "incarnation",
                    lease.map_or(Value::Null, |l| l.incarnation.into()),
                ),
                ("at", lease.map_or(Value::Null, |l| l.at.into())),
                (
                    "coordinator",
                    Value::from(self.coordinator == Some(member.id)),
                ),
            ]);
        } else {
            fields.push(("state", Value::from("configured")));
        }
        dict(fields)
    }

    /// What the log showed of the leases and the coordinator, for the entry's snapshot.
    pub fn snapshot(&self) -> Value {
        let leases = self
            .leases
            .iter()
            .map(|(node, l)| {
                Value::List(vec![
                    Value::from(*node),
                    Value::from(l.change.name()),
                    Value::from(l.incarnation),
                    Value::from(l.at),
                ])
            })
            .collect();
        dict([
            ("leases", Value::List(leases)),
            (
                "coordinator",
                self.coordinator.map_or(Value::Null, Value::from),
            ),
            ("at", Value::from(self.coordinator_at)),
        ])
    }

    /// Takes back what [`Membership::snapshot`] wrote (`None`: it cannot be read).
    pub fn restore(&mut self, snapshot: Value) -> Option<()> {
        let Value::Dict(mut s) = snapshot else {
            return None;
        };
        let Value::List(leases) = s.remove("leases")? else {
            return None;
        };
        for lease in leases {
            let Value::List(parts) = lease else {
                return None;
            };
            let [node, change, incarnation, at] = <[Value; 4]>::try_from(parts).ok()?;
            let change = match change.as_str()? {
                "joined" => Change::Joined,
                "left" => Change::Left,
                "lost" => Change::Lost,
                _ => return None,
            };
            let lease = Lease {
                change,
                incarnation: incarnation.as_u64()?,
                at: at.as_u64()?,
            };
            self.leases
                .insert(u32::try_from(node.as_u64()?).ok()?, lease);
        }
        self.coordinator = match s.remove("coordinator")? {
            Value::Null => None,
            node => Some(u32::try_from(node.as_u64()?).ok()?),
        };
        self.coordinator_at = s.remove("at")?.as_u64()?;
        Some(())
    }

    fn coordinator(&self) -> Value {
        dict([
            ("id", self.coordinator.map_or(Value::Null, Value::from)),
            ("at", Value::from(self.coordinator_at)),
        ])
    }
}

/// A dictionary of `fields`.
pub(crate) fn dict<'a>(fields: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::Dict(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<Dict>(),
    )
}

fn member_topic(id: u32) -> Topic {
    Topic::from_mqtt_owned(format!("{PREFIX}/members/{id}"))
}

fn coordinator_topic() -> Topic {
    Topic::from_mqtt_owned(format!("{PREFIX}/coordinator"))
}

fn events_topic() -> Topic {
    Topic::from_mqtt_owned(format!("{PREFIX}/events"))
}

/// A router-originated publication of `value` (the first argument; an MQTT subscriber
/// gets its JSON) in `realm`, applied on this entry only (not logged). `None` with
/// `retain` clears the topic.
pub(crate) fn publish(realm: &Arc<Realm>, topic: &Topic, value: Option<Value>, retain: bool) {
    let payload = Payload::Wamp {
        args: value.map(|v| vec![v]),
        kwargs: None,
    };
    let options = PublishOptions {
        retain,
        ..Default::default()
    };
    realm.publish(None, topic, payload, &options);
}
