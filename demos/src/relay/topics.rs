//! The relay's one table: subscribers by exact topic (bytes, no wildcards).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Connection IDs and what to send to, one per subscribed connection.
pub(crate) type Subscribed<T> = Arc<[(u64, T)]>;

/// Who receives a topic's messages: one subscription ID per topic (WAMP shares it among
/// subscribers, MQTT has none), and the subscribers' connection IDs and queues.
pub(crate) struct Entry<T> {
    /// Subscription ID of the topic (WAMP SUBSCRIBED / EVENT).
    pub id: u64,
    /// The subscribed connections.
    pub subscribers: Subscribed<T>,
}

/// Subscribers by topic. Publishers read it once per message (a read lock and a clone of
/// an `Arc`); subscribing and closing copy the topic's list.
pub(crate) struct Topics<T> {
    entries: RwLock<HashMap<Vec<u8>, Entry<T>>>,
    id_last: AtomicU64,
}

impl<T: Clone> Topics<T> {
    /// An empty table.
    pub fn new() -> Self {
        Topics {
            entries: RwLock::new(HashMap::new()),
            id_last: AtomicU64::new(0),
        }
    }

    /// A new ID (connections, subscriptions, sessions, publications share the sequence).
    pub fn next_id(&self) -> u64 {
        self.id_last.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds `connection` to `topic` (once; a second SUBSCRIBE replaces the first) and
    /// returns the topic's subscription ID.
    pub fn subscribe(&self, topic: &[u8], connection: u64, subscriber: T) -> u64 {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let next_id = self.next_id();
        let entry = entries.entry(topic.to_vec()).or_insert_with(|| Entry {
            id: next_id,
            subscribers: Arc::from(Vec::new()),
        });
        let mut subscribers: Vec<(u64, T)> = entry
            .subscribers
            .iter()
            .filter(|(id, _)| *id != connection)
            .cloned()
            .collect();
        subscribers.push((connection, subscriber));
        entry.subscribers = subscribers.into();
        entry.id
    }

    /// The topic's subscription ID and subscribers.
    pub fn lookup(&self, topic: &[u8]) -> Option<(u64, Subscribed<T>)> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(topic)
            .map(|entry| (entry.id, entry.subscribers.clone()))
    }

    /// Forgets every subscription of `connection` (it closed).
    pub fn remove(&self, connection: u64) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, entry| {
            if entry.subscribers.iter().any(|(id, _)| *id == connection) {
                let kept: Vec<(u64, T)> = entry
                    .subscribers
                    .iter()
                    .filter(|(id, _)| *id != connection)
                    .cloned()
                    .collect();
                entry.subscribers = kept.into();
            }
            !entry.subscribers.is_empty()
        });
    }
}

impl<T: Clone> Default for Topics<T> {
    fn default() -> Self {
        Topics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_lookup_remove() {
        let topics = Topics::new();
        let a = topics.subscribe(b"t/1", 1, "one");
        assert_eq!(topics.subscribe(b"t/1", 2, "two"), a);
        assert_eq!(topics.subscribe(b"t/1", 2, "two again"), a);
        let (id, subscribers) = topics.lookup(b"t/1").expect("subscribed");
        assert_eq!(id, a);
        assert_eq!(&subscribers[..], &[(1, "one"), (2, "two again")]);
        assert!(topics.lookup(b"t/+").is_none(), "no wildcards");
        topics.remove(1);
        topics.remove(2);
        assert!(topics.lookup(b"t/1").is_none());
    }
}
