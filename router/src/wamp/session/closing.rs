//! The end of a session: the router's GOODBYE (shutdown, kill, slow consumer) and the wait
//! for the peer's, or the connection's end. The peer's own GOODBYE is answered in
//! `mod.rs`, with the other requests of an established session.

use fox_wamp_proto::{Dict, Message, Value};

use super::{State, WampSession};

/// How long we wait for the peer's GOODBYE after ours.
pub const GOODBYE_WAIT_MS: u64 = 1_000;

impl WampSession {
    /// The router closes the session at `now_ms` (shutdown, kill, slow consumer): GOODBYE,
    /// and the session leaves its realm at once; it then waits [`GOODBYE_WAIT_MS`] for the
    /// peer's GOODBYE ([`WampSession::poll_timeout`]).
    pub fn goodbye(&mut self, reason: &str, message: &str, now_ms: u64, out: &mut Vec<Message>) {
        let state = std::mem::replace(&mut self.state, State::Closed);
        self.state = match state {
            State::Established { realm, handle } => {
                let mut details = Dict::new();
                if !message.is_empty() {
                    details.insert("message".into(), Value::from(message));
                }
                out.push(Message::Goodbye {
                    details,
                    reason: reason.to_owned(),
                });
                // The session ends now: it may send nothing but the GOODBYE reply, which is
                // only awaited for a clean close. A peer that saw our GOODBYE (or its
                // transport close) must not still find the session in the realm's lists,
                // its registrations or its subscriptions.
                realm.leave(handle.info.id);
                State::Closing {
                    deadline_ms: now_ms.saturating_add(GOODBYE_WAIT_MS),
                }
            }
            other => other,
        };
    }

    /// The connection is gone: an established session leaves its realm abnormally (a
    /// closing one already left, when GOODBYE was sent or exchanged). Idempotent.
    pub fn finish(&mut self) {
        if let State::Established { realm, handle } =
            std::mem::replace(&mut self.state, State::Closed)
        {
            realm.leave_abnormally(handle.info.id);
        }
    }
}
