//! Entry leases and the coordinator, decided by applying the log (see the module above).

use super::{log_time_ms, Action, Applier, Change, Keys, LEASE_MS, STALL_GAP_MS};
use crate::engine::record::Owner;

/// A live lease's rule and where it stands on the stall-free clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Mark {
    /// The rule its last start or beat named.
    pub(super) rule: u64,
    /// [`LogClock::stalled_ms`] at its last beat.
    pub(super) stalled_ms: u64,
}

/// Log time as leases count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct LogClock {
    /// The log time of the last record applied (Unix ms; 0: none yet).
    pub(super) last_ms: u64,
    /// Of the log time so far, what rule 2 does not count: each gap between consecutive
    /// records beyond [`STALL_GAP_MS`], while rule 2 held.
    pub(super) stalled_ms: u64,
}

impl Applier {
    pub(super) fn mine(&self, owner: &Owner) -> bool {
        owner.node == self.node && owner.incarnation == self.incarnation
    }

    pub(super) fn gone(&self, owner: &Owner) -> bool {
        let restarted = self
            .started
            .get(&owner.node)
            .is_some_and(|&started| started > owner.incarnation);
        let expired = self
            .expired
            .get(&owner.node)
            .is_some_and(|&expired| expired >= owner.incarnation);
        restarted || expired
    }

    /// Whether lease rule 2 holds: every live lease's last start or beat named it.
    pub(super) fn stalls_excluded(&self) -> bool {
        !self.leases.is_empty()
            && self
                .leases
                .keys()
                .all(|node| self.marks.get(node).is_some_and(|m| m.rule >= 2))
    }

    /// Moves the log clock to record `id`, before it is applied: the gap since the last
    /// record beyond [`STALL_GAP_MS`] is a stall if rule 2 holds.
    pub(super) fn tick_clock(&mut self, id: u64) {
        let at_ms = log_time_ms(id);
        if self.clock.last_ms != 0 && self.stalls_excluded() {
            let gap = at_ms.saturating_sub(self.clock.last_ms);
            let stall = gap.saturating_sub(STALL_GAP_MS);
            if stall >= LEASE_MS - STALL_GAP_MS {
                tracing::info!(
                    gap_ms = gap,
                    record = id,
                    "the log stalled: no record for {gap} ms (leases count {STALL_GAP_MS} ms of it)"
                );
            }
            self.clock.stalled_ms += stall;
        }
        self.clock.last_ms = self.clock.last_ms.max(at_ms);
    }

    /// Records that entry `node` in life `incarnation`, whose binary applies lease rule
    /// `rule`, is alive at record `id`.
    pub(super) fn renew(
        &mut self,
        (node, incarnation): (u32, u64),
        rule: u64,
        id: u64,
        out: &mut Vec<Action>,
    ) {
        if self.expired.get(&node).is_some_and(|&e| e >= incarnation) {
            return; // a beat of a fenced life: too late
        }
        let at_ms = log_time_ms(id);
        let mark = Mark {
            rule,
            stalled_ms: self.clock.stalled_ms,
        };
        let joined = match self.leases.get_mut(&node) {
            Some(lease) if incarnation < lease.0 => false,
            Some(lease) if incarnation == lease.0 => {
                if at_ms >= lease.1 {
                    lease.1 = at_ms;
                    self.marks.insert(node, mark);
                }
                false
            }
            _ => {
                self.leases.insert(node, (incarnation, at_ms));
                self.marks.insert(node, mark);
                true
            }
        };
        if joined {
            out.push(Action::Member {
                node,
                incarnation,
                change: Change::Joined,
                at: id,
            });
        }
    }

    /// Ends entry `node`'s lease of life `incarnation` (`change`: left or lost): its
    /// sessions that hold keys end abnormally.
    pub(super) fn end_lease<K: Keys>(
        &mut self,
        (node, incarnation): (u32, u64),
        change: Change,
        at: u64,
        realm: &impl Fn(&str) -> Option<K>,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let had = self.leases.get(&node).is_some_and(|l| l.0 <= incarnation);
        if had {
            self.leases.remove(&node);
            self.marks.remove(&node);
            out.push(Action::Member {
                node,
                incarnation,
                change,
                at,
            });
        }
        let highest = self.expired.entry(node).or_insert(0);
        *highest = (*highest).max(incarnation);
        if change == Change::Lost && node == self.node && incarnation == self.incarnation {
            out.push(Action::Fenced);
        }
        let gone = |o: &Owner| o.node == node && o.incarnation <= incarnation;
        self.end_everywhere(gone, realm, now_ms, out);
        self.mqtt_owners_gone(out);
    }

    /// Entry `node` started its life `incarnation` (record `id`): the sessions of its
    /// earlier lives are gone.
    pub(super) fn entry_started<K: Keys>(
        &mut self,
        (node, incarnation): (u32, u64),
        rule: u64,
        id: u64,
        realm: &impl Fn(&str) -> Option<K>,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let started = self.started.entry(node).or_insert(0);
        *started = (*started).max(incarnation);
        self.renew((node, incarnation), rule, id, out);
        let gone = |o: &Owner| o.node == node && o.incarnation < incarnation;
        self.end_everywhere(gone, realm, now_ms, out);
        self.ask_wills(now_ms, out);
        self.mqtt_owners_gone(out);
    }

    /// Names the coordinator anew if the live leases changed it.
    pub(super) fn coordinate(&mut self, at: u64, out: &mut Vec<Action>) {
        let coordinator = self
            .leases
            .keys()
            .min_by_key(|node| (self.ranks.get(node).copied().unwrap_or(0), **node))
            .copied();
        if coordinator != self.coordinator {
            self.coordinator = coordinator;
            out.push(Action::Coordinator {
                node: coordinator,
                at,
            });
        }
    }

    /// Ends the leases whose last beat is more than [`LEASE_MS`] before record `at`'s time
    /// (under rule 2, without the stalls between).
    pub(super) fn expire<K: Keys>(
        &mut self,
        at: u64,
        realm: &impl Fn(&str) -> Option<K>,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let at_ms = log_time_ms(at);
        let stalls_excluded = self.stalls_excluded();
        let lapsed_since = |node: &u32, beat: u64| {
            let mut since = at_ms.saturating_sub(beat);
            if stalls_excluded {
                let at_beat = self.marks.get(node).map_or(0, |m| m.stalled_ms);
                since = since.saturating_sub(self.clock.stalled_ms.saturating_sub(at_beat));
            }
            since > LEASE_MS
        };
        let mut lapsed: Vec<(u32, u64)> = self
            .leases
            .iter()
            .filter(|(node, (_, beat))| lapsed_since(node, *beat))
            .map(|(&node, &(incarnation, _))| (node, incarnation))
            .collect();
        // In node order, not the map's (which differs between entries): leases that lapse
        // at the same record end in the same order everywhere, and so do what each end
        // decides (membership events, who adopts the sessions of the dead).
        lapsed.sort_unstable();
        for (node, incarnation) in lapsed {
            tracing::info!(node, incarnation, "an entry's lease expired in the log");
            self.end_lease((node, incarnation), Change::Lost, at, realm, now_ms, out);
        }
    }

    /// Whether this entry writes the (dead) will of `owner`: its own entry while that one
    /// lives (a session that ended, a restart), else, once that entry's lease expired, the
    /// lowest entry whose lease is live.
    pub(super) fn writes_will_of(&self, owner: &Owner) -> bool {
        let lapsed = self
            .expired
            .get(&owner.node)
            .is_some_and(|&e| e >= owner.incarnation)
            && !self.leases.contains_key(&owner.node);
        if lapsed {
            if let Some(lowest) = self.leases.keys().min() {
                return *lowest == self.node;
            }
        }
        owner.node == self.node
    }
}
