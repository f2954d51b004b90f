//! When an ndb asks sync to abort a temporary segment: once its owner has not named it
//! (a KEEP, an UNDECIDED) for `abort_after_ms` (the entry died, or restarted and forgot
//! it), or at once when an entry passes on the owner's lease expiry (ABORT_OWNER). Not a
//! fixed time after the segment arrived: a live entry whose segments wait for a sync
//! leader keeps naming them, and they wait. The ABORT goes through sync's vote, whose
//! first decision for a segment stands: one already made permanent stays so.
//!
//! A pause of this ndb (a stopped process, a stalled disk under the driver, a host that
//! slept) is not its owners' silence: their UNDECIDED wait unread in its input meanwhile.
//! Time that passes between two calls more than [`PAUSE_GAP_MS`] apart (the driver calls
//! at least every `pull_ms` while it runs) is added to every waiting abort's deadline.

use super::Ndb;
use crate::config::wire_limits::UNDECIDED_SEGMENTS_MAX;
use crate::id::{NodeId, SegmentId};
use crate::message::Message;

/// A gap between two calls of the ndb above this is a pause of this node, in ms.
pub const PAUSE_GAP_MS: u64 = 250;

impl Ndb {
    /// Notes the time of a call; after a pause, the aborts not asked for yet wait as long
    /// again.
    pub(super) fn observe_time(&mut self, now_ms: u64) {
        let gap = now_ms.saturating_sub(self.last_now_ms);
        if self.last_now_ms != 0 && gap > PAUSE_GAP_MS {
            for temp in self.temp.values_mut().filter(|temp| !temp.aborting) {
                temp.abort_at_ms = temp.abort_at_ms.saturating_add(gap);
            }
        }
        self.last_now_ms = self.last_now_ms.max(now_ms);
    }

    /// Its owner named `segment` (a KEEP, an UNDECIDED): it lives and wants it, so the
    /// abort waits `abort_after_ms` from now, unless this ndb asks for it already.
    pub(super) fn named(&mut self, owner: NodeId, segment: SegmentId, now_ms: u64) {
        let Some(temp) = self.temp.get_mut(&segment) else {
            return;
        };
        if temp.owner == owner && !temp.aborting {
            temp.abort_at_ms = temp.abort_at_ms.max(now_ms + self.config.abort_after_ms);
        }
    }

    pub(super) fn on_undecided(
        &mut self,
        from: NodeId,
        owner: NodeId,
        segments: &[SegmentId],
        now_ms: u64,
    ) {
        if from != owner {
            return;
        }
        for segment in segments.iter().take(UNDECIDED_SEGMENTS_MAX) {
            self.named(owner, *segment, now_ms);
        }
    }

    /// Entry `owner`'s lease expired: the segments it cut at or before `cut_until_ms` that
    /// this ndb holds are aborted now (through sync's vote, where a segment already decided
    /// stays decided). Not remembered: a KEEP that comes later waits for its owner's
    /// silence, so a late or replayed request (or clocks apart) touches no later segment.
    pub(super) fn on_abort_owner(
        &mut self,
        from: NodeId,
        owner: NodeId,
        cut_until_ms: u64,
        now_ms: u64,
    ) {
        let entries = &self.config.membership.entries;
        if !entries.contains(&from) || !entries.contains(&owner) {
            return;
        }
        // Bounded by the number of temporary segments, which KEEP admission bounds.
        for (segment, temp) in &mut self.temp {
            if temp.owner == owner && segment.unix_ms() <= cut_until_ms {
                temp.abort_at_ms = temp.abort_at_ms.min(now_ms);
                temp.aborting = true;
            }
        }
        self.request_aborts(now_ms);
    }

    /// Asks sync to abort the segments whose time is up (and again every `retry_ms`).
    pub(super) fn request_aborts(&mut self, now_ms: u64) {
        let syncs = &self.config.membership.syncs;
        for (segment, temp) in &mut self.temp {
            if now_ms < temp.abort_at_ms {
                continue;
            }
            temp.abort_at_ms = now_ms + self.config.retry_ms;
            temp.aborting = true;
            // Its own rotation: sharing the pull's could land on the same down node forever.
            self.abort_target = (self.abort_target + 1) % syncs.len();
            let abort = Message::Abort {
                segment: *segment,
                owner: temp.owner,
            };
            self.out.messages.push((syncs[self.abort_target], abort));
        }
    }
}
