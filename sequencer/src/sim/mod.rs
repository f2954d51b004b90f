//! Deterministic simulation of a whole cluster in one thread, from one seed.
//!
//! One `SeededRng` drives everything: network delay, reordering (random delay), loss,
//! duplication and partitions; crashes and restarts of any node (an ndb loses the writes
//! it had not fsynced); clock skew; and the workload, publishers and subscribers on every
//! entry. Time advances in 1 ms steps. A safety phase with faults is followed by a
//! liveness phase: the network heals, crashed nodes restart, a random minority of ndb and
//! sync stays down, and every new publish must be acked. The `Checker` asserts the
//! invariants of DESIGN.md as events happen and at the end.

pub mod checker;
pub mod driver;
pub mod network;

pub use driver::{run, SimConfig, SimReport};
