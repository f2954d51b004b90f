//! fox-mqtt-proto (skeleton; filled by its issue).
