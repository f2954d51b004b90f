//! When an ndb asks sync to abort a temporary segment: once its owner has not named it
//! (a KEEP, an UNDECIDED) for `abort_after_ms` (the entry died, or restarted and forgot
//! it), or at once when an entry passes on the owner's lease expiry (ABORT_OWNER). Not a
//! fixed time after the segment arrived: a live entry whose segments wait for a sync
//! leader keeps naming them, and they wait. The ABORT goes through sync's vote, whose
//! first decision for a segment stands: one already made permanent stays so.

use super::Ndb;
use crate::config::wire_limits::UNDECIDED_SEGMENTS_MAX;
use crate::id::{NodeId, SegmentId};
use crate::message::Message;

impl Ndb {
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
