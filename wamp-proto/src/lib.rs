//! fox-wamp-proto (skeleton; filled by its issue).
