//! fox-sequencer (skeleton; filled by its issue).
