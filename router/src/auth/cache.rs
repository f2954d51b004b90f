//! A small cache of authenticator answers: entries live `ttl_ms`, at most `entries_max`
//! of them; when full, expired entries go first, then the oldest. Time is an argument.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Answers by request, each until its expiry.
#[derive(Debug)]
pub struct Cache<K, V> {
    entries: HashMap<K, (V, Instant)>,
    /// Keys in insertion order, for eviction; may hold keys replaced or removed since
    /// (at most `2 * entries_max` slots).
    order: VecDeque<(K, Instant)>,
    ttl: Duration,
    entries_max: usize,
}

impl<K: Clone + Eq + Hash, V: Clone> Cache<K, V> {
    /// An empty cache; `ttl_ms` 0 caches nothing.
    pub fn new(ttl_ms: u64, entries_max: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            ttl: Duration::from_millis(ttl_ms),
            entries_max,
        }
    }

    /// The answer for `key`, if one is cached and not expired at `now`.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<V> {
        match self.entries.get(key) {
            Some((value, expiry)) if *expiry > now => Some(value.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// The answer for `key` if one is held, expired or not (until evicted).
    pub fn peek(&self, key: &K) -> Option<V> {
        self.entries.get(key).map(|(value, _)| value.clone())
    }

    /// Keeps `value` for `key` until `now` + ttl.
    pub fn insert(&mut self, key: K, value: V, now: Instant) {
        if self.ttl.is_zero() || self.entries_max == 0 {
            return;
        }
        self.evict(now);
        let expiry = now + self.ttl;
        self.order.push_back((key.clone(), expiry));
        self.entries.insert(key, (value, expiry));
        if self.order.len() > 2 * self.entries_max {
            // Keys inserted again left stale slots behind a live front: drop them all.
            let entries = &self.entries;
            self.order
                .retain(|(k, e)| entries.get(k).is_some_and(|(_, current)| current == e));
        }
        debug_assert!(self.entries.len() <= self.entries_max);
    }

    /// Makes room for one entry: drops expired ones from the front of the order, then the
    /// oldest live ones while full. Each round pops one key, so the order's length bounds
    /// the loop.
    fn evict(&mut self, now: Instant) {
        while let Some((key, expiry)) = self.order.front() {
            let stale = match self.entries.get(key) {
                // The entry was replaced since: this order slot is stale.
                Some((_, current)) => current != expiry,
                None => true,
            };
            let expired = *expiry <= now;
            let full = self.entries.len() >= self.entries_max;
            if !(stale || expired || full) {
                break;
            }
            let Some((key, expiry)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&key).is_some_and(|(_, e)| *e == expiry) {
                self.entries.remove(&key);
            }
        }
    }

    /// Entries held (expired ones included until evicted).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let start = Instant::now();
        let mut cache = Cache::new(100, 10);
        cache.insert("a", 1, start);
        assert_eq!(cache.get(&"a", start + Duration::from_millis(99)), Some(1));
        assert_eq!(cache.get(&"a", start + Duration::from_millis(100)), None);
        assert_eq!(cache.len(), 0, "an expired entry is dropped when read");
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let now = Instant::now();
        let mut cache = Cache::new(0, 10);
        cache.insert("a", 1, now);
        assert_eq!(cache.get(&"a", now), None);
    }

    #[test]
    fn size_is_bounded_and_the_oldest_goes_first() {
        let start = Instant::now();
        let mut cache = Cache::new(10_000, 3);
        for (i, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
            cache.insert(key, i, start + Duration::from_millis(i as u64));
        }
        let now = start + Duration::from_millis(10);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&"a", now), None, "the oldest was evicted");
        assert_eq!(cache.get(&"d", now), Some(3));
        // Replacing a key keeps one entry for it; its old order slot is skipped later.
        cache.insert("b", 9, now);
        assert_eq!(cache.get(&"b", now), Some(9));
        for i in 0..100u64 {
            cache.insert("x", i as usize, now + Duration::from_millis(i));
            assert!(cache.len() <= 3);
            assert!(
                cache.order.len() <= 6,
                "the order does not grow without bound"
            );
        }
    }
}
