//! Deterministic simulation of a whole cluster in one thread, from one seed.
//!
//! One `SeededRng` drives everything, in 1 ms steps; the same seed gives the same trace
//! (and trace hash, over every message delivered and every client event), in any build
//! of the same source: `tests/simulation.rs` pins a few seeds' hashes. A safety phase
//! with faults is followed by a liveness phase: the network heals, crashed nodes
//! restart, a random minority of ndb and sync goes down for good, and every publish from
//! then on must be acked.
//!
//! ## Faults (the safety phase; loss, duplication and damage go on in the liveness phase)
//!
//! - Network: delay (1 to 2-12 ms one way, against the sync nodes' default 20 ms election
//!   timeout) and reordering (random delay), loss, duplication; damage of a KEEP or
//!   SEGMENT_DATA payload (one flipped bit: the two messages whose digest lets the receiver
//!   tell); partitions into two groups; one-way cuts of a few links (asymmetric
//!   partitions). On one seed in 8 the safety phase lasts 1 s and partitions up to 700 ms,
//!   longer than ndb's `abort_after_ms`.
//! - Orphans and leases (`driver/orphans.rs`; the simulated entries have no router, so
//!   the driver plays its part): on some seeds an entry is killed for good while it has
//!   segments in flight (its clients move; the ndbs must abort its segments after its
//!   silence), and 100 to 250 ms later a live entry passes on its lease expiry
//!   (ABORT_OWNER); in the safety phase, lease expiries of entries picked at random, alive
//!   or not, are passed on too (what ndb holds of theirs then is aborted; what sync
//!   decided stands).
//! - Nodes: crashes and restarts of any node. A crash keeps a random prefix of the writes
//!   not yet fsynced (torn writes: a torn record is dropped with everything after it) and
//!   loses the rest. A failed fsync stops the node before its batch's messages and events
//!   leave (fail-stop; safety phase only, like crashes). One ndb crash in eight, on a
//!   seed that lost none yet, loses the whole disk: the node comes back empty and must
//!   fetch the permanent log again (one lost disk per seed, the one ndb failure a cluster
//!   of three tolerates; no other ndb is then kept down in the liveness phase). Clocks are skewed, and a restart may find the clock stepped back
//!   up to 3 s or forward up to 10 minutes (a running node's driver counts time with a
//!   monotonic clock, so steps show across restarts only).
//! - Clients: publishers reconnect to another entry (a new session), and subscribers move
//!   to another entry resuming with `after` = the last ID they saw, also when theirs died.
//! - Load: one seed in 100 offers 18,000 publishes in 1 s against small caps (segment
//!   messages and bytes, segments in flight, sync queue, batch and votes in flight, RESOLVED
//!   batch, ndb resolution buffer, entry log cache, ndb reads), so that each is reached;
//!   odd seeds run small caches and byte caps with the normal load.
//!
//! ## What the checker asserts ([`checker`], DESIGN.md's invariants)
//!
//! As each event happens:
//! 1. An ack names the message's advance ID; its segment was voted; its ID is the one the
//!    vote gave; a quorum of ndb holds the segment durably *with the published contents*
//!    and a quorum of sync the vote (invariants 1 and 5); no message is acked twice.
//! 2. Every sync node applies the same resolutions in the same order; a segment is
//!    resolved once; bases rise above the previous end; a vote's digest is that of what
//!    was published; every ndb applies resolutions in index order, none skipped, and
//!    stores exactly what the vote decided and was published (invariant 2).
//! 3. When a message commits: every ack given before it was received named a smaller ID
//!    (invariant 3, real-time order, exact at that point).
//! 4. Within a session (a publisher's connection to one entry incarnation), committed and
//!    acked messages have IDs in publish order (invariant 4; across sessions, invariant 3
//!    orders what was published after an ack).
//! 5. Each delivery is the reference log's next record after the subscriber's last one,
//!    as published (invariant 6, also after a move to another entry).
//! 6. A rejection names an aborted segment; after the heal, any rejection, or a publisher
//!    left `Busy`, is a liveness failure (invariant 5, progress).
//!
//! At the end: every acked message is in the log with its ID; every live ndb's log and
//! every entry's cache equal the reference; no publish to a live entry incarnation is left
//! unanswered; no segment is in flight or stuck in temp; every sync node applied every
//! resolution; every subscriber of a live entry reached the end of the log.
//!
//! Each invariant has a deliberate bug (`config::Mutation`) that `tests/simulation.rs`
//! shows caught on most of 40 seeds.

pub mod checker;
pub mod driver;
pub mod network;

pub use driver::{run, Caps, SimConfig, SimReport};
