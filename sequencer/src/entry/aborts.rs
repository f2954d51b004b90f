//! What keeps an entry's segments from being aborted while it lives, and what has another
//! entry's aborted once its lease expired: UNDECIDED names the segments still waiting to
//! every ndb, ABORT_OWNER passes on a lease expiry (protocol version 6; `ndb/aborts.rs`
//! is the other side).

use super::Entry;
use crate::id::{NodeId, SegmentId};
use crate::message::Message;

impl Entry {
    /// Entry `owner`'s lease expired at log time `cut_until_ms` (the router applied its
    /// expiry): tells every ndb to have sync abort that entry's segments cut at or before
    /// then. Idempotent, and harmless for a segment already decided (sync's first decision
    /// stands). Sent once: an ndb that misses it aborts them after the owner's silence.
    pub fn abort_owner(&mut self, owner: NodeId, cut_until_ms: u64) {
        for ndb in &self.config.membership.ndbs {
            let abort = Message::AbortOwner {
                owner,
                cut_until_ms,
            };
            self.out.messages.push((*ndb, abort));
        }
    }

    /// Tells every ndb that the segments sealed at least `retry_ms` ago are still wanted
    /// (UNDECIDED), at most every `retry_ms`: an ndb aborts a segment only once its owner
    /// has not named it for `abort_after_ms`, so a live entry's segments wait for a sync
    /// leader however long it takes, while a dead (or restarted) entry's are aborted.
    /// Segments decided within `retry_ms`, the common case, cost no message.
    pub(super) fn name_undecided(&mut self, now_ms: u64) {
        if now_ms < self.name_at_ms {
            return;
        }
        let retry_ms = self.config.retry_ms;
        // Oldest first; bounded by `segments_in_flight_max`.
        let segments: Vec<SegmentId> = self
            .sealed
            .iter()
            .take_while(|sealed| sealed.sealed_ms + retry_ms <= now_ms)
            .map(|sealed| sealed.id)
            .collect();
        if segments.is_empty() {
            return;
        }
        self.name_at_ms = now_ms + retry_ms;
        for ndb in &self.config.membership.ndbs {
            let undecided = Message::Undecided {
                owner: self.config.id,
                segments: segments.clone(),
            };
            self.out.messages.push((*ndb, undecided));
        }
    }
}
