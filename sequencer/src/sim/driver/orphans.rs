//! Orphaned segments and lease expiries. The simulated entries have no router and so no
//! leases: the driver plays the router's part. It kills an entry for good while it has
//! segments in flight (the ndbs must abort them after its silence, so that nothing waits
//! for them forever), and some time later has a live entry pass on that entry's lease
//! expiry (ABORT_OWNER), as every router does when the log says a lease expired. In the
//! safety phase it also passes on expiries of entries at random, alive or not, as the log
//! does for an entry that was cut off or stalled: only segments held then are aborted,
//! their publishers rejected (allowed before the heal), and what sync decided stands.

use super::*;

/// An entry is killed for good, if it has segments in flight, with this chance per ms of
/// the safety phase, in parts per million (once per run at most).
const ENTRY_KILL_PPM: u32 = 500;
/// A live entry passes on the lease expiry of an entry picked at random with this chance
/// per ms of the safety phase, in parts per million.
const LEASE_EXPIRY_PPM: u32 = 1_000;
/// No random expiry this close to the heal, in ms: its ABORT_OWNER (delayed up to 12 ms
/// by the network) reaches ndb before the liveness phase, whose publishes must be acked.
const EXPIRY_BEFORE_HEAL_MS_MIN: u64 = 50;
/// A killed entry's lease expires this long after its death, in ms (the router's lease
/// is 1.5 s; the simulated run is shorter).
const LEASE_MS_MIN: u64 = 100;
/// At most this long.
const LEASE_MS_MAX: u64 = 250;

impl Sim {
    /// The safety phase's faults of this kind (see the module docs).
    pub(super) fn orphan_faults(&mut self, now_ms: u64) {
        if self.config.entries < 2 {
            return;
        }
        if self.entries_killed == 0 && self.rng.chance_ppm(ENTRY_KILL_PPM) {
            let index = self.rng.range(0, self.config.entries as u64 - 1) as usize;
            self.kill_entry_for_good(index, now_ms);
        }
        let heal_ms = self.start_ms + self.config.safety_ms;
        if now_ms + EXPIRY_BEFORE_HEAL_MS_MIN < heal_ms && self.rng.chance_ppm(LEASE_EXPIRY_PPM) {
            let owner = self.rng.range(0, self.config.entries as u64 - 1) as usize;
            self.expire_lease(owner, now_ms);
        }
    }

    /// Kills entry `index` for good if it has segments in flight: it does not come back,
    /// not even for the liveness phase. Its clients reconnect to other entries at once.
    fn kill_entry_for_good(&mut self, index: usize, now_ms: u64) {
        let Some(Node::Entry(entry)) = &self.slots[index].node else {
            return;
        };
        if entry.segments_in_flight() == 0 {
            return;
        }
        self.crash(index, now_ms, None);
        self.entries_killed += 1;
        self.trace(&[13, now_ms, index as u64]);
        for position in 0..self.publishers.len() {
            if self.publishers[position].entry == index {
                let entry = self.other_entry(index);
                self.publishers[position].entry = entry;
                self.trace(&[8, now_ms, self.publishers[position].id, entry as u64]);
            }
        }
        for position in 0..self.subscribers.len() {
            if self.subscribers[position].entry == index {
                let entry = self.other_entry(index);
                let join_at_ms = now_ms + self.rng.range(1, 30);
                let subscriber = &mut self.subscribers[position];
                (subscriber.entry, subscriber.joined) = (entry, false);
                subscriber.join_at_ms = join_at_ms;
                let id = subscriber.id;
                self.trace(&[9, now_ms, id, entry as u64]);
            }
        }
        let lease_ms = self.rng.range(LEASE_MS_MIN, LEASE_MS_MAX);
        self.expiries_due.push((now_ms + lease_ms, index));
    }

    /// Passes on the lease expiries that are due (of killed entries).
    pub(super) fn expire_due_leases(&mut self, now_ms: u64) {
        let due: Vec<usize> = self
            .expiries_due
            .iter()
            .filter(|(at_ms, _)| *at_ms <= now_ms)
            .map(|(_, owner)| *owner)
            .collect();
        for owner in due {
            if self.expire_lease(owner, now_ms) {
                self.expiries_due.retain(|(_, due)| *due != owner);
            }
        }
    }

    /// A live entry other than `owner` applies `owner`'s lease expiry at its own clock's
    /// time and tells the ndbs. False when no other entry is up (asked again later).
    fn expire_lease(&mut self, owner: usize, now_ms: u64) -> bool {
        let live: Vec<usize> = (0..self.config.entries)
            .filter(|index| *index != owner && self.slots[*index].node.is_some())
            .collect();
        if live.is_empty() {
            return false;
        }
        let by = live[self.rng.range(0, live.len() as u64 - 1) as usize];
        let local_ms = self.local_ms(by, now_ms);
        let owner_id = self.slots[owner].id;
        if let Some(Node::Entry(entry)) = &mut self.slots[by].node {
            entry.abort_owner(owner_id, local_ms);
        }
        self.lease_expiries += 1;
        self.trace(&[14, now_ms, owner as u64, by as u64]);
        self.process(by, now_ms);
        true
    }
}
