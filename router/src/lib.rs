//! fox-router (skeleton; filled by its issue).
