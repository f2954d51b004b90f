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
                // its registrations or its subscriptions. The client did not choose to
                // leave (shutdown, kick, slow consumer): its retained-key wills fire, as an
                // MQTT will does when the server disconnects; only the client's own
                // GOODBYE is a clean end that keeps them from firing.
                realm.leave_abnormally(handle.info.id);
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

#[cfg(test)]
mod tests {
    use fox_wamp_proto::{CloseUri, Dict, ErrorUri, Message};

    use super::super::testing::{router, uri_of, Peer, START_MS};
    use super::super::Flow;
    use super::GOODBYE_WAIT_MS;

    /// The peer's GOODBYE.
    fn goodbye(reason: &str) -> Message {
        Message::Goodbye {
            details: Dict::new(),
            reason: reason.to_owned(),
        }
    }

    /// The close reason a client sends with its own GOODBYE.
    const CLOSE_REALM: &str = "wamp.close.close_realm";

    fn session_ids(router: &crate::router::Router) -> Vec<u64> {
        let realm = router.realm("realm1").expect("realm1");
        let mut ids: Vec<u64> = realm.sessions().iter().map(|h| h.info.id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn the_peers_goodbye_is_answered_and_the_session_leaves() {
        let router = router();
        let mut peer = Peer::join(&router, "realm1", 1);
        assert_eq!(session_ids(&router), vec![1]);
        let (replies, flow) = peer.send(goodbye(CLOSE_REALM), START_MS + 10);
        assert_eq!(flow, Flow::Close);
        assert!(
            matches!(replies.as_slice(), [Message::Goodbye { .. }]),
            "{replies:?}"
        );
        assert_eq!(uri_of(&replies[0]), CloseUri::GoodbyeAndOut.as_str());
        assert_eq!(session_ids(&router), Vec::<u64>::new());
        assert_eq!(peer.session.poll_timeout(), None, "no wait: we answered");
    }

    #[test]
    fn a_message_not_allowed_in_an_established_session_is_aborted() {
        let router = router();
        let mut peer = Peer::join(&router, "realm1", 1);
        let welcome = Message::Welcome {
            session: 5,
            details: Dict::new(),
        };
        let (replies, flow) = peer.send(welcome, START_MS);
        assert_eq!(flow, Flow::Close);
        assert_eq!(uri_of(&replies[0]), ErrorUri::ProtocolViolation.as_str());
        assert_eq!(session_ids(&router), Vec::<u64>::new(), "left the realm");
    }

    /// The router ends a session (shutdown, kill, slow consumer): GOODBYE at once, the
    /// session leaves the realm at once, and what the peer sends before its own GOODBYE is
    /// dropped; its GOODBYE then closes the connection without another word.
    #[test]
    fn the_routers_goodbye_waits_for_the_peers() {
        let router = router();
        let mut peer = Peer::join(&router, "realm1", 1);
        let mut out = Vec::new();
        let now_ms = START_MS + 100;
        let reason = CloseUri::SystemShutdown.as_str();
        peer.session.goodbye(reason, "bye", now_ms, &mut out);
        assert!(
            matches!(out.as_slice(), [Message::Goodbye { .. }]),
            "{out:?}"
        );
        assert_eq!(uri_of(&out[0]), reason);
        assert!(peer.session.is_closing());
        assert_eq!(session_ids(&router), Vec::<u64>::new(), "left at once");
        assert_eq!(peer.session.poll_timeout(), Some(now_ms + GOODBYE_WAIT_MS));
        let publish = Message::Publish {
            request: 1,
            options: Dict::new(),
            topic: "com.a".to_owned(),
            args: None,
            kwargs: None,
        };
        let (replies, flow) = peer.send(publish, now_ms + 1);
        assert_eq!((replies.len(), flow), (0, Flow::Continue), "dropped");
        let (replies, flow) = peer.send(goodbye(CloseUri::GoodbyeAndOut.as_str()), now_ms + 2);
        assert_eq!((replies.len(), flow), (0, Flow::Close));
        assert!(!peer.session.is_closing());
    }

    /// A peer that never answers our GOODBYE is closed when the wait ends, not before.
    #[test]
    fn the_goodbye_wait_times_out_at_its_deadline_and_not_before() {
        let router = router();
        let mut peer = Peer::join(&router, "realm1", 1);
        let mut out = Vec::new();
        let now_ms = START_MS + 100;
        peer.session
            .goodbye(CloseUri::Killed.as_str(), "", now_ms, &mut out);
        let deadline_ms = now_ms + GOODBYE_WAIT_MS;
        assert_eq!(peer.session.handle_timeout(deadline_ms - 1), Flow::Continue);
        assert!(peer.session.is_closing());
        assert_eq!(peer.session.handle_timeout(deadline_ms), Flow::Close);
        assert!(!peer.session.is_closing());
        assert_eq!(peer.session.poll_timeout(), None);
    }

    /// The realm closes a session through its queue (here: another session kills it with
    /// the meta API): the connection task turns that into the session's GOODBYE.
    #[test]
    fn a_close_from_the_realm_becomes_a_goodbye() {
        let router = router();
        let mut victim = Peer::join(&router, "realm1", 1);
        let mut admin = Peer::join(&router, "realm1", 2);
        let kill = Message::Call {
            request: 1,
            options: Dict::new(),
            procedure: "wamp.session.kill".to_owned(),
            args: Some(vec![1u64.into()]),
            kwargs: None,
        };
        let (replies, flow) = admin.send(kill, START_MS + 5);
        assert_eq!(flow, Flow::Continue);
        let answered = replies.into_iter().chain(admin.queued(START_MS + 5));
        assert!(
            answered
                .into_iter()
                .any(|m| matches!(m, Message::Result { request: 1, .. })),
            "RESULT of the kill"
        );
        let written = victim.queued(START_MS + 7);
        assert!(
            matches!(written.as_slice(), [Message::Goodbye { .. }]),
            "{written:?}"
        );
        assert_eq!(uri_of(&written[0]), CloseUri::Killed.as_str());
        assert_eq!(
            victim.session.poll_timeout(),
            Some(START_MS + 7 + GOODBYE_WAIT_MS)
        );
        assert_eq!(session_ids(&router), vec![2]);
    }

    #[test]
    fn an_established_session_has_no_deadline_and_never_times_out() {
        let router = router();
        let mut peer = Peer::join(&router, "realm1", 1);
        assert_eq!(peer.session.poll_timeout(), None);
        assert_eq!(peer.session.handle_timeout(u64::MAX), Flow::Continue);
        assert!(peer.session.handle().is_some());
    }

    #[test]
    fn finish_leaves_the_realm_once() {
        let router = router();
        let mut peer = Peer::join(&router, "realm1", 1);
        let _other = Peer::join(&router, "realm1", 2);
        assert_eq!(session_ids(&router), vec![1, 2]);
        peer.session.finish();
        peer.session.finish();
        assert_eq!(session_ids(&router), vec![2]);
        let (replies, flow) = peer.send(goodbye(CLOSE_REALM), START_MS);
        assert_eq!((replies.len(), flow), (0, Flow::Close), "closed");
    }
}
