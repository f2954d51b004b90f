//! One internal topic form for both protocols, and the pattern trie that matches it.
//!
//! A topic is a list of levels. WAMP `a.b.c` and MQTT `a/b/c` are the same topic
//! `[a, b, c]`. Inside a level, the character that is the *other* protocol's separator is
//! swapped (the convention RabbitMQ's MQTT plugin uses): an MQTT level `x.y` is the WAMP
//! component `x/y`, and a WAMP component `x/y` is the MQTT level `x.y`. Levels are stored in
//! WAMP spelling. Because MQTT levels cannot contain `/` and WAMP components cannot contain
//! `.`, the swap is a bijection: no two distinct topics of either protocol collide, and every
//! topic round-trips unchanged through the other protocol.
//!
//! Patterns:
//! - `Exact`: the topic itself.
//! - `Prefix`: WAMP prefix match, a string prefix of the URI (`a.b` matches `a.b`, `a.bc`,
//!   `a.b.c`). Stored as whole levels plus a partial last level.
//! - `Wildcard`: WAMP wildcard (`a..c`, an empty component matches any one level) = MQTT `+`.
//! - `Tail`: MQTT `a/b/#`: the topic `a/b` itself and everything below it.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

/// A topic in internal form: levels in WAMP spelling.
///
/// Cheap to clone (one shared allocation), and each protocol's spelling is computed at most
/// once and then shared by every clone: a publication's topic is converted once per
/// publish, not once per delivery. Equality, order and hash are those of the levels.
#[derive(Clone)]
pub struct Topic {
    inner: Arc<Spellings>,
}

struct Spellings {
    levels: Vec<String>,
    /// `a.b.c`, filled on first use (or at parse, when parsed from WAMP).
    wamp: OnceLock<String>,
    /// `a/b/c`, filled on first use (or at parse, when parsed from MQTT).
    mqtt: OnceLock<String>,
}

impl Topic {
    fn from_levels(levels: Vec<String>) -> Self {
        Self {
            inner: Arc::new(Spellings {
                levels,
                wamp: OnceLock::new(),
                mqtt: OnceLock::new(),
            }),
        }
    }

    /// A topic from a WAMP URI (`a.b.c`). Empty components are kept as empty levels.
    pub fn from_wamp(uri: &str) -> Self {
        let topic = Self::from_levels(uri.split('.').map(str::to_owned).collect());
        let _ = topic.inner.wamp.set(uri.to_owned());
        topic
    }

    /// A topic from an MQTT topic name (`a/b/c`); `.` inside a level becomes `/`.
    pub fn from_mqtt(name: &str) -> Self {
        Self::from_mqtt_owned(name.to_owned())
    }

    /// [`Topic::from_mqtt`] keeping `name` as the topic's MQTT spelling (no copy).
    pub fn from_mqtt_owned(name: String) -> Self {
        let topic = Self::from_levels(name.split('/').map(|l| swap(l, '.', '/')).collect());
        let _ = topic.inner.mqtt.set(name);
        topic
    }

    /// A system topic: `$...` (MQTT `$SYS` and the like) or the router's `wamp.*` meta
    /// events. Patterns whose first level is a wildcard or prefix do not match these.
    pub fn is_system(&self) -> bool {
        self.inner
            .levels
            .first()
            .is_some_and(|l| l.starts_with('$') || l == "wamp")
    }

    /// The levels in WAMP spelling.
    pub fn levels(&self) -> &[String] {
        &self.inner.levels
    }

    /// The WAMP URI of this topic, computed once.
    pub fn wamp_uri(&self) -> &str {
        self.inner.wamp.get_or_init(|| self.inner.levels.join("."))
    }

    /// The MQTT topic name of this topic, computed once.
    pub fn mqtt_name(&self) -> &str {
        self.inner.mqtt.get_or_init(|| {
            let swapped: Vec<String> = self
                .inner
                .levels
                .iter()
                .map(|l| swap(l, '/', '.'))
                .collect();
            swapped.join("/")
        })
    }

    /// The WAMP URI of this topic.
    pub fn to_wamp(&self) -> String {
        self.wamp_uri().to_owned()
    }

    /// The MQTT topic name of this topic.
    pub fn to_mqtt(&self) -> String {
        self.mqtt_name().to_owned()
    }
}

/// `level` with `from` replaced by `to`, copied once (no scan-and-rebuild when absent).
fn swap(level: &str, from: char, to: char) -> String {
    if level.contains(from) {
        level.replace(from, to.encode_utf8(&mut [0; 4]))
    } else {
        level.to_owned()
    }
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("levels", &self.inner.levels)
            .finish()
    }
}

impl PartialEq for Topic {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.levels == other.inner.levels
    }
}

impl Eq for Topic {}

impl Hash for Topic {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.levels.hash(state);
    }
}

impl PartialOrd for Topic {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Topic {
    fn cmp(&self, other: &Self) -> Ordering {
        self.inner.levels.cmp(&other.inner.levels)
    }
}

/// How a subscription or registration matches topics.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// The topic itself.
    Exact(Topic),
    /// WAMP prefix match on the URI string: whole levels, then a partial last level.
    Prefix {
        /// Whole levels that must match exactly.
        levels: Vec<String>,
        /// The next level must start with this.
        partial: String,
    },
    /// WAMP wildcard / MQTT `+`: `None` matches any one level.
    Wildcard(Vec<Option<String>>),
    /// MQTT `#`: levels (with `None` for `+`), then the parent itself and everything below.
    Tail(Vec<Option<String>>),
}

/// WAMP match policies, as named on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchPolicy {
    /// `exact` (the default).
    Exact,
    /// `prefix`.
    Prefix,
    /// `wildcard`.
    Wildcard,
}

impl MatchPolicy {
    /// Parses the `match` option; `None` for an unknown policy.
    pub fn parse(option: Option<&str>) -> Option<Self> {
        match option {
            None | Some("exact") => Some(Self::Exact),
            Some("prefix") => Some(Self::Prefix),
            Some("wildcard") => Some(Self::Wildcard),
            Some(_) => None,
        }
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Prefix => "prefix",
            Self::Wildcard => "wildcard",
        }
    }
}

impl Pattern {
    /// A pattern from a WAMP URI and match policy.
    pub fn from_wamp(uri: &str, policy: MatchPolicy) -> Self {
        match policy {
            MatchPolicy::Exact => Self::Exact(Topic::from_wamp(uri)),
            MatchPolicy::Prefix => {
                let mut levels: Vec<String> = uri.split('.').map(str::to_owned).collect();
                let partial = levels.pop().unwrap_or_default();
                Self::Prefix { levels, partial }
            }
            MatchPolicy::Wildcard => Self::Wildcard(
                uri.split('.')
                    .map(|c| (!c.is_empty()).then(|| c.to_owned()))
                    .collect(),
            ),
        }
    }

    /// A pattern from a (validated) MQTT topic filter.
    pub fn from_mqtt_filter(filter: &str) -> Self {
        let mut levels: Vec<Option<String>> = filter
            .split('/')
            .map(|l| (l != "+").then(|| l.replace('.', "/")))
            .collect();
        if levels.last() == Some(&Some("#".to_owned())) {
            levels.pop();
            return Self::Tail(levels);
        }
        if levels.iter().all(Option::is_some) {
            let exact = levels.into_iter().flatten().collect();
            return Self::Exact(Topic::from_levels(exact));
        }
        Self::Wildcard(levels)
    }

    /// The WAMP URI and policy that describe this pattern (for meta APIs).
    pub fn to_wamp(&self) -> (String, MatchPolicy) {
        match self {
            Self::Exact(topic) => (topic.to_wamp(), MatchPolicy::Exact),
            Self::Prefix { levels, partial } => {
                let mut all = levels.clone();
                all.push(partial.clone());
                (all.join("."), MatchPolicy::Prefix)
            }
            Self::Wildcard(levels) => (join_optional(levels), MatchPolicy::Wildcard),
            Self::Tail(levels) => {
                let mut uri = join_optional(levels);
                if !uri.is_empty() {
                    uri.push('.');
                }
                (uri, MatchPolicy::Prefix)
            }
        }
    }

    /// Whether the first level is a literal (not `+`, `#`, a wildcard or a prefix): only
    /// such patterns match topics that start with `$` (MQTT 4.7.2).
    pub fn first_level_is_literal(&self) -> bool {
        match self {
            Self::Exact(_) => true,
            Self::Prefix { levels, .. } => !levels.is_empty(),
            Self::Wildcard(levels) | Self::Tail(levels) => {
                levels.first().is_some_and(Option::is_some)
            }
        }
    }

    /// Whether this pattern matches the topic (reference semantics; the trie agrees).
    pub fn matches(&self, topic: &Topic) -> bool {
        let levels = topic.levels();
        match self {
            Self::Exact(t) => t == topic,
            Self::Prefix {
                levels: whole,
                partial,
            } => {
                levels.len() > whole.len()
                    && levels[..whole.len()] == whole[..]
                    && levels[whole.len()].starts_with(partial.as_str())
            }
            Self::Wildcard(pattern) => {
                pattern.len() == levels.len() && level_match(pattern, &levels[..pattern.len()])
            }
            Self::Tail(pattern) => {
                levels.len() >= pattern.len() && level_match(pattern, &levels[..pattern.len()])
            }
        }
    }
}

fn join_optional(levels: &[Option<String>]) -> String {
    let parts: Vec<&str> = levels.iter().map(|l| l.as_deref().unwrap_or("")).collect();
    parts.join(".")
}

fn level_match(pattern: &[Option<String>], levels: &[String]) -> bool {
    pattern
        .iter()
        .zip(levels)
        .all(|(p, l)| p.as_ref().is_none_or(|p| p == l))
}

/// A trie from patterns to values of type `V` (subscription or registration IDs).
///
/// `insert` and `remove` are by pattern; `matches` walks the trie once per publish and calls
/// the visitor for every value whose pattern matches, each exactly once.
#[derive(Debug)]
pub struct Trie<V> {
    root: Node<V>,
    len: usize,
}

#[derive(Debug)]
struct Node<V> {
    children: HashMap<String, Node<V>>,
    any: Option<Box<Node<V>>>,
    exact: Vec<V>,
    tail: Vec<V>,
    prefix: Vec<(String, V)>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            children: HashMap::new(),
            any: None,
            exact: Vec::new(),
            tail: Vec::new(),
            prefix: Vec::new(),
        }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.any.is_none()
            && self.exact.is_empty()
            && self.tail.is_empty()
            && self.prefix.is_empty()
    }
}

impl<V> Default for Trie<V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<V: PartialEq + Clone> Trie<V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` under `pattern`.
    pub fn insert(&mut self, pattern: &Pattern, value: V) {
        let (path, slot) = Self::path_of(pattern);
        let mut node = &mut self.root;
        for level in path {
            node = match level {
                Some(name) => node.children.entry(name).or_default(),
                None => node.any.get_or_insert_with(Box::default),
            };
        }
        match slot {
            Slot::Exact => node.exact.push(value),
            Slot::Tail => node.tail.push(value),
            Slot::Prefix(partial) => node.prefix.push((partial, value)),
        }
        self.len += 1;
    }

    /// Removes `value` from under `pattern`; returns whether it was there.
    pub fn remove(&mut self, pattern: &Pattern, value: &V) -> bool {
        let (path, slot) = Self::path_of(pattern);
        let removed = Self::remove_at(&mut self.root, &path, &slot, value);
        if removed {
            self.len -= 1;
        }
        removed
    }

    fn remove_at(node: &mut Node<V>, path: &[Option<String>], slot: &Slot, value: &V) -> bool {
        let Some((first, rest)) = path.split_first() else {
            let before = Self::slot_len(node, slot);
            match slot {
                Slot::Exact => node.exact.retain(|v| v != value),
                Slot::Tail => node.tail.retain(|v| v != value),
                Slot::Prefix(p) => node.prefix.retain(|(q, v)| !(q == p && v == value)),
            }
            return Self::slot_len(node, slot) < before;
        };
        match first {
            Some(name) => {
                let Some(child) = node.children.get_mut(name) else {
                    return false;
                };
                let removed = Self::remove_at(child, rest, slot, value);
                if child.is_empty() {
                    node.children.remove(name);
                }
                removed
            }
            None => {
                let Some(child) = node.any.as_mut() else {
                    return false;
                };
                let removed = Self::remove_at(child, rest, slot, value);
                if child.is_empty() {
                    node.any = None;
                }
                removed
            }
        }
    }

    fn slot_len(node: &Node<V>, slot: &Slot) -> usize {
        match slot {
            Slot::Exact => node.exact.len(),
            Slot::Tail => node.tail.len(),
            Slot::Prefix(_) => node.prefix.len(),
        }
    }

    fn path_of(pattern: &Pattern) -> (Vec<Option<String>>, Slot) {
        match pattern {
            Pattern::Exact(topic) => (
                topic.levels().iter().cloned().map(Some).collect(),
                Slot::Exact,
            ),
            Pattern::Prefix { levels, partial } => (
                levels.iter().cloned().map(Some).collect(),
                Slot::Prefix(partial.clone()),
            ),
            Pattern::Wildcard(levels) => (levels.clone(), Slot::Exact),
            Pattern::Tail(levels) => (levels.clone(), Slot::Tail),
        }
    }

    /// Calls `visit` for every value whose pattern matches `topic`.
    pub fn matches(&self, topic: &Topic, mut visit: impl FnMut(&V)) {
        Self::walk(&self.root, topic.levels(), &mut visit);
    }

    fn walk(node: &Node<V>, rest: &[String], visit: &mut impl FnMut(&V)) {
        node.tail.iter().for_each(&mut *visit);
        let Some((first, tail)) = rest.split_first() else {
            node.exact.iter().for_each(visit);
            return;
        };
        for (partial, value) in &node.prefix {
            if first.starts_with(partial.as_str()) {
                visit(value);
            }
        }
        if let Some(child) = node.children.get(first) {
            Self::walk(child, tail, visit);
        }
        if let Some(any) = &node.any {
            Self::walk(any, tail, visit);
        }
    }
}

enum Slot {
    Exact,
    Tail,
    Prefix(String),
}

#[cfg(test)]
mod tests;
