//! What the mixed harness expects, written here rather than taken from the router (the model
//! must not share the code it checks): the topics in both spellings, how MQTT filters and
//! WAMP patterns match them, and what each session is owed.
//!
//! MQTT semantics as this router implements them where the spec lets it choose
//! (`crate::mqtt`'s docs, `outbound.rs`): a message matching several of a session's
//! subscriptions is sent once, at the highest of min(message QoS, granted QoS), with every
//! Subscription Identifier (MQTT 5); a session registered in the realm (connected or
//! parked) is owed every matching message, QoS 0 included (it queues for a parked session
//! too). Where the spec does not let it choose, the spec's: a session that ended is owed
//! nothing more; a message buffered when the subscription it matched is replaced is still
//! owed (MQTT-3.8.4-3), one whose every matching subscription was removed may come or not
//! (MQTT-3.10.4); a will is published when the connection ends abnormally or its
//! DISCONNECT asked for it (0x04), after its delay or when the session ends, whichever
//! comes first, unless the client is back before (MQTT-3.1.2-8); a normal DISCONNECT
//! deletes it.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::topic::MatchPolicy;

/// Topics: (WAMP URI, MQTT topic name). The last one has a `.` inside an MQTT level,
/// which is a `/` inside the WAMP component.
pub(super) const TOPICS: [(&str, &str); 6] = [
    ("a.b.c", "a/b/c"),
    ("a.b.d", "a/b/d"),
    ("a.x.c", "a/x/c"),
    ("b.b.c", "b/b/c"),
    ("a.bc", "a/bc"),
    ("a.b/x.c", "a/b.x/c"),
];

/// MQTT topic filters the clients subscribe to.
pub(super) const FILTERS: [&str; 7] = ["a/b/c", "a/+/c", "a/#", "+/b/+", "#", "a/b.x/c", "a/b"];

/// WAMP subscriptions: (URI, match policy).
pub(super) const PATTERNS: [(&str, MatchPolicy); 5] = [
    ("a.b.c", MatchPolicy::Exact),
    ("a.b", MatchPolicy::Prefix),
    ("a..c", MatchPolicy::Wildcard),
    ("b.b.c", MatchPolicy::Exact),
    ("a.b/x.c", MatchPolicy::Exact),
];

/// Whether MQTT `filter` matches the MQTT topic name `topic` (none of these start with `$`).
pub(super) fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut wanted = filter.split('/');
    let mut levels = topic.split('/');
    // A level per round: at most as many rounds as the filter has levels, plus one.
    loop {
        match (wanted.next(), levels.next()) {
            (Some("#"), _) | (None, None) => return true,
            (Some(want), Some(level)) if want == "+" || want == level => {}
            _ => return false,
        }
    }
}

/// Whether WAMP `pattern` matches the WAMP URI `topic`.
pub(super) fn pattern_matches(pattern: usize, topic: &str) -> bool {
    let (uri, policy) = PATTERNS[pattern];
    super::super::model_matches(uri, policy, topic)
}

/// Who published a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Publisher {
    /// A WAMP session (slot): it does not get its own event (exclude_me).
    Wamp(usize),
    /// An MQTT client (slot), by PUBLISH or by its will: it gets its own message if subscribed.
    Mqtt(usize),
}

/// One message published into the realm.
#[derive(Clone, Debug)]
pub(super) struct Publication {
    /// Topic (index into [`TOPICS`]).
    pub topic: usize,
    /// QoS it was published with (WAMP: 0).
    pub qos: u8,
    /// Its permanent ID, once the witness saw it.
    pub id: Option<u64>,
    /// The payload an MQTT subscriber must get.
    pub mqtt_payload: Bytes,
}

/// A will as the model holds it.
#[derive(Clone, Debug)]
pub(super) struct WillModel {
    /// The tag its payload carries.
    pub tag: String,
    /// Topic (index into [`TOPICS`]).
    pub topic: usize,
    /// QoS.
    pub qos: u8,
    /// Will delay, ms.
    pub delay_ms: u64,
}

/// A message an MQTT session is owed.
#[derive(Clone, Debug)]
pub(super) struct Owed {
    /// The message's tag.
    pub tag: String,
    /// Its place in publication order (the model's count of messages before it).
    pub seq: u64,
    /// Topic (index into [`TOPICS`]).
    pub topic: usize,
    /// The QoS it must arrive with.
    pub qos: u8,
    /// The Subscription Identifiers it must carry (MQTT 5), ascending.
    pub identifiers: Vec<u32>,
    /// A subscription it matched was removed or changed its QoS before it was sent: it
    /// arrives with the QoS and identifiers of those left then (checked loosely: QoS at
    /// most the message's).
    pub changed: bool,
    /// Every subscription it matched was removed (at some time) before it was sent: it may
    /// arrive (at most once) or not, as the spec lets the server choose for messages
    /// buffered before an UNSUBSCRIBE (MQTT-3.10.4: "MAY continue to deliver").
    pub loose: bool,
}

/// One subscription of an MQTT session.
#[derive(Clone, Copy, Debug)]
pub(super) struct Subscribed {
    /// Granted QoS.
    pub qos: u8,
    /// Messages published before it was made (a message with this `seq` or later is
    /// matched by it); kept when the subscription is replaced.
    pub since: u64,
}

/// Where an MQTT session is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Presence {
    /// A connection serves it.
    Live,
    /// Its client is away: it expires at `expires_at` (virtual ms); its will, if held,
    /// is published at `will_at` (or at expiry when there is none).
    Parked {
        /// Expiry, virtual ms.
        expires_at: u64,
        /// The will delay's end, virtual ms.
        will_at: Option<u64>,
    },
}

/// An MQTT session as the model sees it (it exists while the realm holds it).
#[derive(Clone, Debug)]
pub(super) struct SessionModel {
    /// Connected or parked.
    pub presence: Presence,
    /// Subscriptions by filter (index into [`FILTERS`]).
    pub subscriptions: BTreeMap<usize, Subscribed>,
    /// Messages owed and not received yet.
    pub owed: Vec<Owed>,
    /// Session expiry of the last connection, ms (0: ends with it).
    pub expiry_ms: u64,
    /// The will of the connection, or held while parked.
    pub will: Option<WillModel>,
}

impl SessionModel {
    /// A new, empty session.
    pub fn new(expiry_ms: u64, will: Option<WillModel>) -> Self {
        Self {
            presence: Presence::Live,
            subscriptions: BTreeMap::new(),
            owed: Vec::new(),
            expiry_ms,
            will,
        }
    }

    /// What message `seq` on `topic` at `qos` owes this session, if any of its
    /// subscriptions matches: one copy at the highest granted QoS with every identifier
    /// (`v5`).
    pub fn owed_for(&self, tag: &str, seq: u64, topic: usize, qos: u8, v5: bool) -> Option<Owed> {
        let name = TOPICS[topic].1;
        let matching: Vec<(usize, u8)> = self
            .subscriptions
            .iter()
            .filter(|(f, _)| filter_matches(FILTERS[**f], name))
            .map(|(f, s)| (*f, s.qos))
            .collect();
        let best = matching
            .iter()
            .map(|(_, granted)| qos.min(*granted))
            .max()?;
        let identifiers = match v5 {
            true => matching.iter().map(|(f, _)| identifier(*f)).collect(),
            false => Vec::new(),
        };
        Some(Owed {
            tag: tag.to_owned(),
            seq,
            topic,
            qos: best,
            identifiers,
            changed: false,
            loose: false,
        })
    }

    /// SUBSCRIBE to `filter` at `qos` when `seq` messages were published: a new
    /// subscription, or one replaced (its start kept: what it matched is still owed,
    /// MQTT-3.8.4-3, with the new QoS perhaps).
    pub fn subscribed(&mut self, filter: usize, qos: u8, seq: u64) {
        let Some(subscribed) = self.subscriptions.get_mut(&filter) else {
            let since = seq;
            self.subscriptions.insert(filter, Subscribed { qos, since });
            return;
        };
        if subscribed.qos == qos {
            return;
        }
        subscribed.qos = qos;
        for owed in self.owed.iter_mut() {
            owed.changed |= filter_matches(FILTERS[filter], TOPICS[owed.topic].1);
        }
    }

    /// The messages owed that must still come (in owed order): all but the loose ones.
    pub fn firm(&self) -> Vec<&str> {
        let firm = self.owed.iter().filter(|o| !o.loose);
        firm.map(|o| o.tag.as_str()).collect()
    }

    /// UNSUBSCRIBE from `filter`: whether the session had it. A message it matched is
    /// still owed if another subscription that matched it is still there.
    pub fn unsubscribed(&mut self, filter: usize) -> bool {
        if self.subscriptions.remove(&filter).is_none() {
            return false;
        }
        for owed in self.owed.iter_mut() {
            let name = TOPICS[owed.topic].1;
            if !filter_matches(FILTERS[filter], name) {
                continue;
            }
            owed.changed = true;
            let kept = self
                .subscriptions
                .iter()
                .any(|(f, s)| s.since <= owed.seq && filter_matches(FILTERS[*f], name));
            owed.loose |= !kept;
        }
        true
    }
}

/// The MQTT 5 Subscription Identifier the harness gives `filter`.
pub(super) fn identifier(filter: usize) -> u32 {
    u32::try_from(filter).expect("a few filters") + 1
}

#[test]
fn the_models_matchers_agree_with_the_specs_examples() {
    assert!(filter_matches("a/#", "a"));
    assert!(filter_matches("a/#", "a/b/c"));
    assert!(filter_matches("#", "a/bc"));
    assert!(filter_matches("a/+/c", "a/b.x/c"));
    assert!(!filter_matches("a/+", "a/b/c"));
    assert!(!filter_matches("a/b", "a/bc"));
    assert!(
        pattern_matches(1, "a.bc"),
        "a WAMP prefix is a string prefix"
    );
    assert!(pattern_matches(1, "a.b/x.c"));
    assert!(!pattern_matches(2, "a.b/x"));
}
