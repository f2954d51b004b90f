//! [`LocalEngine`]: one process orders every publish itself.
//!
//! IDs come from a [`LocalSequencer`] with the cluster's ID format (`fox_sequencer::id`);
//! the realm applies and fans out each publication under its order lock right away, and
//! with `--data` the history / retained write is queued to the group committer in the same
//! order, so an acknowledgement waits for the fsync of the group it went into.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fox_sequencer::PermanentId;

use super::{unix_ms, Ack, Draft, Engine, Target};
use crate::durable::Durable;

/// The largest permanent ID (a valid WAMP ID): the sequencer's, defined once.
pub const PERMANENT_ID_MAX: u64 = PermanentId::MAX.0;

/// Strictly increasing permanent IDs for this process. Lock-free.
#[derive(Debug, Default)]
pub struct LocalSequencer {
    last: AtomicU64,
}

impl LocalSequencer {
    /// A sequencer whose first ID is greater than `last`.
    pub fn resume_after(last: u64) -> Self {
        Self {
            last: AtomicU64::new(last),
        }
    }

    /// The last ID handed out (0 before the first).
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// The next ID: `max(last + 1, floor)`, where the floor is the cluster's
    /// ([`PermanentId::floor_at_unix_ms`]: ms since 2020-01-01, shifted by 12 bits). A store
    /// written with the older `unix_ms << 12` floor keeps working: its last ID is above
    /// today's floor, so IDs go on from it, one by one, and still only increase.
    pub fn next(&self, now_ms: u64) -> u64 {
        let floor = PermanentId::floor_at_unix_ms(now_ms).0;
        let mut last = self.last.load(Ordering::Acquire);
        loop {
            let id = floor.max(last + 1);
            // The floor stops 2^32 IDs short of 2^53 (FLOOR_HEADROOM), so a saturated clock
            // still leaves room; IDs increase, which is the property every consumer needs.
            debug_assert!(id > last);
            match self
                .last
                .compare_exchange_weak(last, id, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return id,
                Err(actual) => last = actual,
            }
        }
    }
}

/// The single-node engine: a local sequencer, and the store with `--data`.
#[derive(Debug)]
pub struct LocalEngine {
    sequencer: LocalSequencer,
    durable: Option<Arc<Durable>>,
}

impl LocalEngine {
    /// An engine whose IDs follow `last_id`, writing through `durable` (`--data`) if given.
    pub fn new(last_id: u64, durable: Option<Arc<Durable>>) -> Self {
        Self {
            sequencer: LocalSequencer::resume_after(last_id),
            durable,
        }
    }
}

impl Engine for LocalEngine {
    fn publish(&self, realm: &dyn Target, draft: Draft<'_>) -> Ack {
        // One clock read per publish, outside the lock: the ID only needs ms granularity.
        let now_ms = unix_ms();
        let _order = realm.order();
        let id = self.sequencer.next(now_ms);
        let (publication, publisher, options) = draft.into_publication(id);
        // Router-originated messages (meta events) are not stored, but a router-written
        // retained value is (a will that fired: else a restart would bring back the value
        // it replaced); `$` topics ($SYS) stay in memory.
        let write = match (&self.durable, publisher) {
            (Some(durable), Some(_)) => {
                Some(durable.record(realm.name(), &publication, options.retain, now_ms))
            }
            (Some(durable), None) if options.retain && !publication.topic.is_system() => {
                Some(durable.record_retained(realm.name(), &publication, now_ms))
            }
            _ => None,
        };
        realm.apply(&publication, publisher.map(|p| p.id), options);
        match write {
            Some(write) => Ack::Stored(id, write),
            None => Ack::Ready(id),
        }
    }

    fn last_applied(&self) -> u64 {
        self.sequencer.last()
    }

    fn durable(&self) -> Option<&Arc<Durable>> {
        self.durable.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: u64 = PermanentId::EPOCH_UNIX_MS;

    #[test]
    fn ids_follow_the_clock_and_never_repeat() {
        let s = LocalSequencer::default();
        let a = s.next(EPOCH + 1000);
        assert_eq!(a, 1000 << 12);
        assert_eq!(s.next(EPOCH + 1000), a + 1);
        assert_eq!(
            s.next(EPOCH + 999),
            a + 2,
            "a clock going back does not move IDs back"
        );
        assert_eq!(s.next(EPOCH + 2000), 2000 << 12);
    }

    #[test]
    fn a_store_written_with_the_unix_epoch_floor_goes_on_increasing() {
        let now_ms = 1_796_000_000_000; // 2026
        let old_floor_id = now_ms << 12;
        let s = LocalSequencer::resume_after(old_floor_id);
        assert_eq!(s.next(now_ms), old_floor_id + 1);
        assert_eq!(s.next(now_ms + 10), old_floor_id + 2);
    }

    #[test]
    fn ids_still_read_as_time_in_2089() {
        let year_2089_ms = 3_755_376_000_000; // 2089-01-01T00:00:00Z
        let id = LocalSequencer::default().next(year_2089_ms);
        assert_eq!(id, (year_2089_ms - EPOCH) << 12);
        assert!(id < PERMANENT_ID_MAX);
    }

    #[test]
    fn resume_continues_after_the_stored_id() {
        let s = LocalSequencer::resume_after(5000 << 12);
        assert_eq!(s.next(EPOCH + 1), (5000 << 12) + 1);
    }

    #[test]
    fn concurrent_ids_are_unique() {
        let s = std::sync::Arc::new(LocalSequencer::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || (0..10_000).map(|_| s.next(7)).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 40_000);
    }
}
