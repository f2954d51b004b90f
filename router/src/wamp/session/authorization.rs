//! The authorization hooks in the WAMP session (`crate::auth::hooks`): a PUBLISH,
//! SUBSCRIBE, CALL or REGISTER whose answer the session has not cached waits, parked, while
//! the connection task asks the hooks (reading nothing meanwhile), and is handled when the
//! answers come back.

use fox_wamp_proto::{Dict, Message, Value};

use super::{valid_uri, Flow, WampSession};
use crate::auth::hooks::Query;
use crate::auth::hooks::{ask, Answer, Decided, Key};
use crate::auth::Action;
use crate::realm::SessionHandle;
use crate::topic::MatchPolicy;

impl WampSession {
    /// `message`, if it can be handled now; `None` when it is parked for the hooks.
    pub(super) fn park_for_authorization(
        &mut self,
        handle: &SessionHandle,
        message: Message,
    ) -> Option<Message> {
        let Some(authorization) = self.authorization.as_mut() else {
            return Some(message);
        };
        let Some(key) = hook_key(&message) else {
            return Some(message);
        };
        if !authorization.missing(&key) {
            return Some(message);
        }
        let query = Query::new(&handle.info, "wamp", key);
        self.parked = Some((message, vec![query]));
        None
    }

    /// Whether a message waits for the hooks' answers (read nothing more until then).
    pub fn awaits_authorization(&self) -> bool {
        self.parked.is_some()
    }

    /// The hooks' answers for the parked message, to await (once); then
    /// [`WampSession::handle_authorization`].
    pub fn take_authorization(&mut self) -> Option<crate::auth::hooks::Pending> {
        let (_, queries) = self.parked.as_mut()?;
        let first = queries.first()?;
        let hooks = self
            .router
            .shared()
            .authorizer
            .hooks_for(&first.realm, &first.authrole)?
            .clone();
        Some(ask(self.router.clone(), hooks, std::mem::take(queries)))
    }

    /// The hooks answered at `now_ms`: the parked message is handled.
    pub fn handle_authorization(
        &mut self,
        answers: Vec<(Key, Decided)>,
        now_ms: u64,
        out: &mut Vec<Message>,
    ) -> Flow {
        let Some((message, _)) = self.parked.take() else {
            return Flow::Continue;
        };
        if let Some(authorization) = self.authorization.as_mut() {
            authorization.record(answers);
        }
        let flow = self.handle_message(message, now_ms, out);
        if let Some(authorization) = self.authorization.as_mut() {
            authorization.handled();
        }
        flow
    }

    /// The hooks' answer on an action: `Some(permitted)`, or `None` for the role's rules
    /// (no hooks, or they ignored it).
    pub(super) fn hook_answer(
        &self,
        action: Action,
        policy: MatchPolicy,
        uri: &str,
    ) -> Option<bool> {
        let key = (action, policy, uri.to_owned());
        match self.authorization.as_ref()?.answer(&key)? {
            Answer::Allow => Some(true),
            Answer::Deny => Some(false),
            Answer::Ignore => None,
        }
    }
}

/// What the hooks are asked about a message; `None` for other messages and for those
/// refused whatever they would say (invalid URI, unknown match policy, publishing or
/// registering under `wamp.`, publishing under `$`).
fn hook_key(message: &Message) -> Option<Key> {
    let policy_of =
        |options: &Dict| MatchPolicy::parse(options.get("match").and_then(Value::as_str));
    let (action, policy, uri) = match message {
        Message::Publish { topic, .. } => (Action::Publish, MatchPolicy::Exact, topic),
        Message::Subscribe { topic, options, .. } => {
            (Action::Subscribe, policy_of(options)?, topic)
        }
        Message::Call { procedure, .. } => (Action::Call, MatchPolicy::Exact, procedure),
        Message::Register {
            procedure, options, ..
        } => (Action::Register, policy_of(options)?, procedure),
        _ => return None,
    };
    let reserved = matches!(action, Action::Publish | Action::Register)
        && (uri.starts_with("wamp.") || (action == Action::Publish && uri.starts_with('$')));
    let valid = valid_uri(uri, policy != MatchPolicy::Exact)
        || (policy == MatchPolicy::Prefix && uri.is_empty());
    (valid && !reserved).then(|| (action, policy, uri.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribe(topic: &str, policy: Option<&str>) -> Message {
        let mut options = Dict::new();
        if let Some(p) = policy {
            options.insert("match".into(), Value::from(p));
        }
        Message::Subscribe {
            request: 1,
            options,
            topic: topic.to_owned(),
        }
    }

    #[test]
    fn only_what_the_hooks_could_decide_is_asked() {
        assert_eq!(
            hook_key(&subscribe("a..c", Some("wildcard"))),
            Some((Action::Subscribe, MatchPolicy::Wildcard, "a..c".to_owned()))
        );
        assert_eq!(
            hook_key(&subscribe("", Some("prefix"))),
            Some((Action::Subscribe, MatchPolicy::Prefix, String::new()))
        );
        assert_eq!(
            hook_key(&subscribe("a..c", None)),
            None,
            "invalid exact URI"
        );
        assert_eq!(hook_key(&subscribe("a", Some("regex"))), None);
        let register = |p: &str| Message::Register {
            request: 1,
            options: Dict::new(),
            procedure: p.to_owned(),
        };
        assert_eq!(hook_key(&register("wamp.session.count")), None);
        assert!(hook_key(&register("com.example.add")).is_some());
        let call = Message::Call {
            request: 1,
            options: Dict::new(),
            procedure: "wamp.session.count".to_owned(),
            args: None,
            kwargs: None,
        };
        assert!(hook_key(&call).is_some(), "meta procedures may be decided");
        assert_eq!(
            hook_key(&Message::Goodbye {
                details: Dict::new(),
                reason: "x".to_owned()
            }),
            None
        );
    }
}
