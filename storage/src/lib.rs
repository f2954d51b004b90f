//! fox-storage (skeleton; filled by its issue).
