//! The realm's memory of what was published: the retained messages (one per topic, shared
//! by MQTT and WAMP) and the in-memory history (the last `limits.history_max_messages`
//! publications of sessions). A service of its own, with its own locks: the realm applies
//! each ordered publication to it under its order lock, and reads it for replays,
//! conditions (the sync service's key values), the admin API and snapshots.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use fox_wamp_proto::Value;

use crate::locks::{lock, read, write};
use crate::message::Publication;
use crate::topic::{Pattern, Topic};

/// Retained messages and the in-memory history of one realm.
#[derive(Debug)]
pub struct Memory {
    retained: RwLock<BTreeMap<Topic, Arc<Publication>>>,
    history: Mutex<VecDeque<Arc<Publication>>>,
    history_max: usize,
}

impl Memory {
    /// Empty, keeping at most `history_max` messages of history.
    pub fn new(history_max: usize) -> Self {
        Self {
            retained: RwLock::new(BTreeMap::new()),
            history: Mutex::new(VecDeque::new()),
            history_max,
        }
    }

    /// An ordered publication: it replaces (or, empty, clears) its topic's retained message
    /// when `retain`, and enters the history when `in_history` (a session's, not the
    /// router's own).
    pub(super) fn apply(&self, publication: &Arc<Publication>, retain: bool, in_history: bool) {
        if retain {
            let mut retained = write(&self.retained);
            if publication.payload.is_empty() {
                retained.remove(&publication.topic);
            } else {
                retained.insert(publication.topic.clone(), publication.clone());
            }
        }
        if in_history && self.history_max > 0 {
            let mut history = lock(&self.history);
            if history.len() >= self.history_max {
                history.pop_front();
            }
            history.push_back(publication.clone());
        }
    }

    /// The value of retained key `topic`, as the sync service's conditions see it.
    pub fn value(&self, topic: &Topic) -> Value {
        let retained = read(&self.retained);
        super::sync::key_value(retained.get(topic).map(|p| &p.payload))
    }

    /// Puts a retained message read back from the store or a snapshot (at start).
    pub fn restore_retained(&self, publication: Publication) {
        write(&self.retained).insert(publication.topic.clone(), Arc::new(publication));
    }

    /// Puts a message of a snapshot back into the history (oldest first).
    pub fn restore_history(&self, publication: Publication) {
        self.apply(&Arc::new(publication), false, true);
    }

    /// What a cluster entry's realm derived from the log, for its snapshot: the retained
    /// messages (the router's own `$` topics left out: each entry publishes those itself)
    /// and the history, oldest first.
    pub fn derived(&self) -> (Vec<Arc<Publication>>, Vec<Arc<Publication>>) {
        let retained = read(&self.retained)
            .values()
            .filter(|p| !p.topic.is_system())
            .cloned()
            .collect();
        let history = lock(&self.history).iter().cloned().collect();
        (retained, history)
    }

    /// Retained messages whose topic matches `pattern`, in topic order, not expired at
    /// `now_ms` (MQTT 5 message expiry). `$` topics only for a pattern that names them.
    pub fn retained_matching(&self, pattern: &Pattern, now_ms: u64) -> Vec<Arc<Publication>> {
        let dollar_ok = pattern.first_level_is_literal();
        read(&self.retained)
            .iter()
            .filter(|(topic, _)| pattern.matches(topic) && (dollar_ok || !topic.is_system()))
            .filter(|(_, p)| p.properties.expires_at_ms.is_none_or(|t| t > now_ms))
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// How many topics have a retained message.
    pub fn retained_count(&self) -> usize {
        read(&self.retained).len()
    }

    /// Every retained message, in topic order (the admin API; expired ones included).
    pub fn retained_all(&self) -> Vec<Arc<Publication>> {
        read(&self.retained).values().cloned().collect()
    }

    /// The history after `after` that `keep` keeps, oldest first, and the oldest ID the
    /// history still holds (`None`: empty).
    pub fn history_where(
        &self,
        after: u64,
        keep: impl Fn(&Publication) -> bool,
    ) -> (Vec<Arc<Publication>>, Option<u64>) {
        let history = lock(&self.history);
        let oldest = history.front().map(|p| p.id);
        let found = history
            .iter()
            .filter(|p| p.id > after && keep(p))
            .cloned()
            .collect();
        (found, oldest)
    }

    /// The history after `after`, oldest first, and the oldest ID it still holds.
    pub fn history_after(&self, after: u64) -> (Vec<Arc<Publication>>, Option<u64>) {
        self.history_where(after, |_| true)
    }

    /// The last `limit` messages of the history that `keep` keeps, oldest first.
    pub fn last_where(
        &self,
        limit: usize,
        keep: impl Fn(&Publication) -> bool,
    ) -> Vec<Arc<Publication>> {
        let history = lock(&self.history);
        let mut found: Vec<Arc<Publication>> = history
            .iter()
            .rev()
            .filter(|p| keep(p))
            .take(limit)
            .cloned()
            .collect();
        found.reverse();
        found
    }

    /// Messages in the history.
    pub fn history_len(&self) -> usize {
        lock(&self.history).len()
    }
}
