//! What gossip shows, on system topics in every realm of an entry (as Pokan's
//! `new_key` / `key_changed` / `key_removed` events, without Redis):
//!
//! - `$fox/gossip/nodes/<id>` (retained): the node's [`NodeView`] (liveness, metadata and
//!   load, application keys);
//! - `$fox/gossip/keys/<id>/<key>` (retained): the value of node `<id>`'s application key
//!   (cleared when it is removed);
//! - `$fox/gossip/events`: `node_up`, `node_down`, `new_key`, `key_changed`, `key_removed`,
//!   with `node`, and `key` and `value` for the key events.
//!
//! Each entry publishes what its own gossip shows, when it sees it: entries may see a
//! change at different moments and, for quick successive changes, only the last one.
//! Gossip is advice; what must be the same everywhere goes through the log.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fox_wamp_proto::Value;

use super::{Gossip, NodeView};
use crate::follow::members::dict;
use crate::realm::Realm;
use crate::router::Router;
use crate::topic::Topic;

/// How often the entry compares what gossip shows with what it published.
const LOOK_EVERY_MS: u64 = 200;

/// What a difference between two views of the nodes calls for.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Node `id`'s view changed (or is new): republish it.
    Node(u32),
    /// An event.
    Event {
        /// `node_up`, `node_down`, `new_key`, `key_changed` or `key_removed`.
        event: &'static str,
        /// The node.
        node: u32,
        /// The key and its value (`None` for node events; value `None` when removed).
        key: Option<(String, Option<String>)>,
    },
}

/// The changes from `old` to `new` (both by node ID), in node order.
pub fn diff(old: &BTreeMap<u32, NodeView>, new: &BTreeMap<u32, NodeView>) -> Vec<Change> {
    let mut out = Vec::new();
    for (&id, view) in new {
        let before = old.get(&id);
        if before == Some(view) {
            continue;
        }
        out.push(Change::Node(id));
        let was_live = before.is_some_and(|b| b.live);
        if view.live != was_live {
            out.push(Change::Event {
                event: if view.live { "node_up" } else { "node_down" },
                node: id,
                key: None,
            });
        }
        let empty = BTreeMap::new();
        let old_app = before.map_or(&empty, |b| &b.app);
        for (key, value) in &view.app {
            let event = match old_app.get(key) {
                None => "new_key",
                Some(old) if old != value => "key_changed",
                Some(_) => continue,
            };
            out.push(Change::Event {
                event,
                node: id,
                key: Some((key.clone(), Some(value.clone()))),
            });
        }
        for key in old_app.keys().filter(|k| !view.app.contains_key(*k)) {
            out.push(Change::Event {
                event: "key_removed",
                node: id,
                key: Some((key.clone(), None)),
            });
        }
    }
    out
}

/// Publishes what `gossip` shows in `router`'s realms until the task is dropped.
pub async fn publish(router: Arc<Router>, gossip: Arc<Gossip>) {
    let mut shown: BTreeMap<u32, NodeView> = BTreeMap::new();
    let mut realms: HashSet<String> = HashSet::new();
    let mut every = tokio::time::interval(Duration::from_millis(LOOK_EVERY_MS));
    loop {
        every.tick().await;
        let now: BTreeMap<u32, NodeView> = gossip
            .nodes()
            .await
            .into_iter()
            .map(|v| (v.id, v))
            .collect();
        // A realm made since gets the retained state first.
        for realm in router.realms() {
            if realms.insert(realm.name.clone()) {
                for view in shown.values() {
                    retain_node(&realm, view, None);
                }
            }
        }
        let changes = diff(&shown, &now);
        for realm in router.realms() {
            for change in &changes {
                match change {
                    Change::Node(id) => retain_node(&realm, &now[id], shown.get(id)),
                    Change::Event { event, node, key } => {
                        let mut fields = vec![
                            ("event", Value::Str((*event).into())),
                            ("node", Value::Int((*node).into())),
                        ];
                        if let Some((key, value)) = key {
                            fields.push(("key", Value::Str(key.clone())));
                            fields.push(("value", value.clone().map_or(Value::Null, Value::Str)));
                        }
                        send(
                            &realm,
                            &format!("{PREFIX}/events"),
                            Some(dict(fields)),
                            false,
                        );
                    }
                }
            }
        }
        shown = now;
    }
}

const PREFIX: &str = "$fox/gossip";

/// Publishes node `view` retained, and its application keys that changed since `before`.
fn retain_node(realm: &Arc<Realm>, view: &NodeView, before: Option<&NodeView>) {
    let mut meta = fox_wamp_proto::Dict::new();
    for (k, v) in &view.meta {
        meta.insert(k.clone(), Value::Str(v.clone()));
    }
    let mut app = fox_wamp_proto::Dict::new();
    for (k, v) in &view.app {
        app.insert(k.clone(), Value::Str(v.clone()));
    }
    let fields = vec![
        ("id", Value::Int(view.id.into())),
        ("live", Value::Bool(view.live)),
        ("generation", Value::from(view.generation)),
        ("address", Value::Str(view.address.clone())),
        ("meta", Value::Dict(meta)),
        ("app", Value::Dict(app)),
    ];
    send(
        realm,
        &format!("{PREFIX}/nodes/{}", view.id),
        Some(dict(fields)),
        true,
    );
    let empty = BTreeMap::new();
    let old_app = before.map_or(&empty, |b| &b.app);
    for (key, value) in &view.app {
        if old_app.get(key) != Some(value) {
            let topic = format!("{PREFIX}/keys/{}/{key}", view.id);
            send(realm, &topic, Some(Value::Str(value.clone())), true);
        }
    }
    for key in old_app.keys().filter(|k| !view.app.contains_key(*k)) {
        let topic = format!("{PREFIX}/keys/{}/{key}", view.id);
        send(realm, &topic, None, true);
    }
}

/// A router-originated publication on this entry only (`None` with `retain`: a clear).
fn send(realm: &Arc<Realm>, topic: &str, value: Option<Value>, retain: bool) {
    let topic = Topic::from_mqtt_owned(topic.to_owned());
    crate::follow::members::publish(realm, &topic, value, retain);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: u32, live: bool, app: &[(&str, &str)]) -> NodeView {
        NodeView {
            id,
            generation: 1,
            address: "127.0.0.1:1".into(),
            live,
            meta: BTreeMap::new(),
            app: app
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn by_id(views: Vec<NodeView>) -> BTreeMap<u32, NodeView> {
        views.into_iter().map(|v| (v.id, v)).collect()
    }

    fn events(changes: &[Change]) -> Vec<(&'static str, u32, Option<&str>)> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Event { event, node, key } => {
                    Some((*event, *node, key.as_ref().map(|(k, _)| k.as_str())))
                }
                Change::Node(_) => None,
            })
            .collect()
    }

    #[test]
    fn keys_that_appear_change_and_go_are_new_changed_and_removed() {
        let a = by_id(vec![view(1, true, &[("x", "1"), ("y", "1")])]);
        let b = by_id(vec![view(1, true, &[("x", "2"), ("z", "1")])]);
        let changes = diff(&a, &b);
        assert_eq!(changes[0], Change::Node(1));
        assert_eq!(
            events(&changes),
            vec![
                ("key_changed", 1, Some("x")),
                ("new_key", 1, Some("z")),
                ("key_removed", 1, Some("y")),
            ]
        );
        assert!(diff(&b, &b).is_empty(), "no change, nothing published");
    }

    #[test]
    fn a_node_seen_live_then_dead_is_up_then_down() {
        let none = BTreeMap::new();
        let up = by_id(vec![view(2, true, &[])]);
        let down = by_id(vec![view(2, false, &[])]);
        assert_eq!(events(&diff(&none, &up)), vec![("node_up", 2, None)]);
        assert_eq!(events(&diff(&up, &down)), vec![("node_down", 2, None)]);
        // A node first seen dead is published, without an event.
        assert_eq!(diff(&none, &down), vec![Change::Node(2)]);
    }
}
