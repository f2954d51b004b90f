//! fox-demos (skeleton; filled by its issue).
