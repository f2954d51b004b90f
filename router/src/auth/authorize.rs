//! Authorization: roles with allow rules (`permissions`) and deny rules (`deny`) on URIs.
//!
//! The configuration's rules are compiled per role once; [`Authorizer::permits`] answers
//! one action on one URI, [`Authorizer::may_receive`] whether a pattern subscription's
//! event may reach a session. The rules' semantics are documented in [`crate::config`].

use std::collections::HashMap;
use std::sync::Arc;

use super::hooks::AuthorizationHooks;
use crate::config::{Config, PermissionMatch, Role};
use crate::topic::Topic;

/// What a session wants to do to a URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// PUBLISH.
    Publish,
    /// SUBSCRIBE.
    Subscribe,
    /// CALL.
    Call,
    /// REGISTER.
    Register,
}

/// Role-based permissions: allow rules (`permissions`) and deny rules (`deny`), compiled
/// per role from the configuration.
#[derive(Clone, Debug)]
pub struct Authorizer {
    config: Arc<Config>,
    roles: HashMap<String, RoleRules>,
    /// The authorization hooks (`[authorization]`), if configured.
    hooks: Option<Arc<AuthorizationHooks>>,
}

/// One role's rules.
#[derive(Clone, Debug, Default)]
struct RoleRules {
    rules: Vec<Rule>,
    /// Every rule allows every action and one of them matches every URI: no check needed.
    allows_everything: bool,
}

/// One rule: where it matches and what it says about each action.
#[derive(Clone, Debug)]
struct Rule {
    uri: String,
    match_policy: PermissionMatch,
    effect: Effect,
}

#[derive(Clone, Copy, Debug)]
enum Effect {
    /// A permission: allows the actions set, denies the others.
    Allow(Actions),
    /// A deny rule: denies the actions set, says nothing about the others.
    Deny(Actions),
}

/// A set of actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Actions {
    publish: bool,
    subscribe: bool,
    call: bool,
    register: bool,
}

impl Actions {
    const ALL: Actions = Actions {
        publish: true,
        subscribe: true,
        call: true,
        register: true,
    };

    fn contains(self, action: Action) -> bool {
        match action {
            Action::Publish => self.publish,
            Action::Subscribe => self.subscribe,
            Action::Call => self.call,
            Action::Register => self.register,
        }
    }
}

impl Rule {
    fn matches(&self, uri: &str) -> bool {
        match self.match_policy {
            PermissionMatch::Exact => self.uri == uri,
            PermissionMatch::Prefix => uri.starts_with(self.uri.as_str()),
        }
    }

    /// Higher is more specific: an exact rule, then the longer prefix; at equal
    /// specificity a deny rule ranks above a permission.
    fn rank(&self) -> (bool, usize, bool) {
        let exact = self.match_policy == PermissionMatch::Exact;
        (
            exact,
            self.uri.len(),
            matches!(self.effect, Effect::Deny(_)),
        )
    }

    /// Whether this rule has a say on `action`: a permission on every action, a deny
    /// rule only on those it names.
    fn speaks_to(&self, action: Action) -> bool {
        match self.effect {
            Effect::Allow(_) => true,
            Effect::Deny(actions) => actions.contains(action),
        }
    }
}

impl RoleRules {
    fn of(role: &Role) -> Self {
        let allow = role.permissions.iter().map(|p| Rule {
            uri: p.uri.clone(),
            match_policy: p.match_policy,
            effect: Effect::Allow(Actions {
                publish: p.publish,
                subscribe: p.subscribe,
                call: p.call,
                register: p.register,
            }),
        });
        let deny = role.deny.iter().map(|d| Rule {
            uri: d.uri.clone(),
            match_policy: d.match_policy,
            effect: Effect::Deny(Actions {
                publish: d.publish,
                subscribe: d.subscribe,
                call: d.call,
                register: d.register,
            }),
        });
        let rules: Vec<Rule> = allow.chain(deny).collect();
        let allows_everything = rules
            .iter()
            .all(|r| matches!(r.effect, Effect::Allow(a) if a == Actions::ALL))
            && rules
                .iter()
                .any(|r| r.match_policy == PermissionMatch::Prefix && r.uri.is_empty());
        Self {
            rules,
            allows_everything,
        }
    }

    /// The most specific rule that speaks to `action` on `uri` decides; none denies.
    fn permits(&self, action: Action, uri: &str) -> bool {
        let decisive = self
            .rules
            .iter()
            .filter(|r| r.speaks_to(action) && r.matches(uri))
            .max_by_key(|r| r.rank());
        decisive.is_some_and(|r| match r.effect {
            Effect::Allow(actions) => actions.contains(action),
            Effect::Deny(_) => false,
        })
    }
}

impl Authorizer {
    /// An authorizer over this configuration.
    pub fn new(config: Arc<Config>) -> Self {
        let roles = config
            .roles
            .iter()
            .map(|role| (role.name.clone(), RoleRules::of(role)))
            .collect();
        let hooks = AuthorizationHooks::new(&config.authorization).map(Arc::new);
        Self {
            config,
            roles,
            hooks,
        }
    }

    /// The authorization hooks, when they decide for sessions of `role` on `realm`.
    pub fn hooks_for(&self, realm: &str, role: &str) -> Option<&Arc<AuthorizationHooks>> {
        self.hooks.as_ref().filter(|h| h.covers(realm, role))
    }

    /// Whether `role` may do `action` on `uri`. For that action the most specific rule
    /// decides: an exact rule, else the longest matching prefix; a deny rule beats a
    /// permission of equal specificity. An unconfigured role named as the anonymous role
    /// permits everything (the embedded default); any other unknown role nothing.
    pub fn permits(&self, role: &str, action: Action, uri: &str) -> bool {
        if self.permits_everything(role) {
            return true;
        }
        self.roles
            .get(role)
            .is_some_and(|rules| rules.permits(action, uri))
    }

    /// Whether `role` may do anything on any URI: the router's own roles, an
    /// unconfigured anonymous role, and a role whose only rules allow everything. Lets a
    /// hot path skip building the URI.
    pub fn permits_everything(&self, role: &str) -> bool {
        if role.starts_with("foxrouter.") {
            return true;
        }
        match self.roles.get(role) {
            Some(rules) => rules.allows_everything,
            None => role == self.config.auth.anonymous_role,
        }
    }

    /// Whether a session of `role` may receive an event on `topic` through a pattern
    /// subscription (one that was granted, but may cover topics the role may not
    /// subscribe to: those deliveries are filtered out).
    ///
    /// For sessions the authorization hooks cover, the hook's decision on the subscription
    /// stands (as Crossbar.io authorizes the subscribe, not each event): nothing filtered.
    pub fn may_receive(&self, realm: &str, role: &str, topic: &Topic) -> bool {
        self.permits_everything(role)
            || self.hooks_for(realm, role).is_some()
            || self.permits(role, Action::Subscribe, topic.wamp_uri())
    }

    /// Whether a pattern registration of a callee of `role` may be invoked for
    /// `procedure` (one its role may register; for the hooks' sessions, the hook's
    /// decision on the registration stands).
    pub fn may_be_invoked(&self, realm: &str, role: &str, procedure: &str) -> bool {
        self.hooks_for(realm, role).is_some() || self.permits(role, Action::Register, procedure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE_R: &str = r#"
[[role]]
name = "r"
permissions = [
  { uri = "com.", match = "prefix", publish = true, subscribe = true },
  { uri = "com.secret", call = false },
  { uri = "com.secret.", match = "prefix" },
]
"#;

    fn authorizer(toml: &str) -> Authorizer {
        Authorizer::new(Arc::new(Config::parse(toml, "t").unwrap()))
    }

    const EVERYTHING: &str = r#"{ uri = "", match = "prefix", publish = true, subscribe = true, call = true, register = true }"#;

    /// Allow everything, deny subscribing to one topic: only that action on that URI is
    /// refused; the other actions there, and the topic's neighbours, stay allowed.
    #[test]
    fn a_deny_rule_takes_one_action_out_of_an_allow_all() {
        let a = authorizer(&format!(
            "[[role]]\nname = \"anonymous\"\npermissions = [ {EVERYTHING} ]\n\
             deny = [ {{ uri = \"test.nosubscribe\", subscribe = true }} ]\n"
        ));
        assert!(
            !a.permits_everything("anonymous"),
            "a deny rule needs checks"
        );
        assert!(!a.permits("anonymous", Action::Subscribe, "test.nosubscribe"));
        assert!(a.permits("anonymous", Action::Publish, "test.nosubscribe"));
        assert!(
            a.permits("anonymous", Action::Subscribe, "test.nosubscribe.x"),
            "exact only"
        );
        assert!(a.permits("anonymous", Action::Subscribe, "test.nosubscribes"));
        assert!(
            a.permits("anonymous", Action::Subscribe, "test."),
            "a wider pattern is granted"
        );
        assert!(!a.may_receive("realm1", "anonymous", &Topic::from_mqtt("test/nosubscribe")));
        assert!(a.may_receive("realm1", "anonymous", &Topic::from_mqtt("test/other")));
    }

    /// The most specific rule decides per action: exact before prefix, longer prefix
    /// before shorter, whether it allows or denies.
    #[test]
    fn the_most_specific_rule_decides_per_action() {
        let a = authorizer(
            r#"
[[role]]
name = "r"
permissions = [
  { uri = "com.", match = "prefix", publish = true, subscribe = true, call = true },
  { uri = "com.secret.public.", match = "prefix", publish = true, subscribe = true, call = true },
  { uri = "com.secret.exact", call = true },
]
deny = [
  { uri = "com.secret.", match = "prefix", publish = true, call = true },
  { uri = "com.secret.public.no", publish = true },
]
"#,
        );
        // The deny prefix is more specific than the com. permission.
        assert!(!a.permits("r", Action::Publish, "com.secret.x"));
        assert!(!a.permits("r", Action::Call, "com.secret.x"));
        // It does not name subscribe: the com. permission still decides that.
        assert!(a.permits("r", Action::Subscribe, "com.secret.x"));
        // A longer permission prefix inside the denied subtree allows again.
        assert!(a.permits("r", Action::Publish, "com.secret.public.x"));
        // An exact deny inside it denies again, for the action it names only.
        assert!(!a.permits("r", Action::Publish, "com.secret.public.no"));
        assert!(a.permits("r", Action::Call, "com.secret.public.no"));
        // An exact permission beats any prefix: call allowed, publish not (unset).
        assert!(a.permits("r", Action::Call, "com.secret.exact"));
        assert!(!a.permits("r", Action::Publish, "com.secret.exact"));
        assert!(!a.permits("r", Action::Register, "com.x"), "never allowed");
    }

    /// At equal specificity (same kind, same URI length) a deny rule wins.
    #[test]
    fn a_deny_rule_wins_at_equal_specificity() {
        let a = authorizer(
            r#"
[[role]]
name = "r"
permissions = [
  { uri = "a.b.", match = "prefix", publish = true, subscribe = true },
  { uri = "x.y", publish = true, subscribe = true },
  { uri = "p.", match = "prefix", publish = true },
]
deny = [
  { uri = "a.b.", match = "prefix", subscribe = true },
  { uri = "x.y", publish = true },
  { uri = "q.", match = "prefix", publish = true },
]
"#,
        );
        assert!(!a.permits("r", Action::Subscribe, "a.b.c"));
        assert!(a.permits("r", Action::Publish, "a.b.c"));
        assert!(!a.permits("r", Action::Publish, "x.y"));
        assert!(a.permits("r", Action::Subscribe, "x.y"));
        // Same length, different prefixes: each matches only its own URIs.
        assert!(a.permits("r", Action::Publish, "p.1"));
        assert!(!a.permits("r", Action::Publish, "q.1"));
        // An exact rule is more specific than a prefix of the same text.
        let a = authorizer(
            r#"
[[role]]
name = "r"
permissions = [ { uri = "t", publish = true } ]
deny = [ { uri = "t", match = "prefix", publish = true } ]
"#,
        );
        assert!(a.permits("r", Action::Publish, "t"));
        assert!(!a.permits("r", Action::Publish, "tx"));
    }

    /// A role whose only rule allows every action on every URI needs no check (the hot
    /// path); one with a deny rule or a narrower permission does.
    #[test]
    fn only_an_unrestricted_role_skips_the_checks() {
        let open = authorizer(&format!(
            "[[role]]\nname = \"all\"\npermissions = [ {EVERYTHING} ]\n"
        ));
        assert!(open.permits_everything("all"));
        let narrower = authorizer(&format!(
            "[[role]]\nname = \"r\"\npermissions = [ {EVERYTHING}, {{ uri = \"a\", publish = true }} ]\n"
        ));
        assert!(!narrower.permits_everything("r"));
        assert!(!narrower.permits("r", Action::Subscribe, "a"));
        assert!(narrower.permits("r", Action::Subscribe, "b"));
        let empty = authorizer("[[role]]\nname = \"anonymous\"\n");
        assert!(
            !empty.permits_everything("anonymous"),
            "configured: its (no) rules apply"
        );
        assert!(!empty.permits("anonymous", Action::Publish, "a"));
    }

    #[test]
    fn longest_prefix_decides() {
        let a = authorizer(ROLE_R);
        assert!(a.permits("r", Action::Publish, "com.x"));
        assert!(!a.permits("r", Action::Publish, "com.secret.x"));
        assert!(!a.permits("r", Action::Call, "com.x"));
        assert!(!a.permits("nobody", Action::Publish, "com.x"));
    }

    #[test]
    fn only_router_roles_and_an_unconfigured_anonymous_role_permit_everything() {
        let a = authorizer(ROLE_R);
        assert!(a.permits_everything("foxrouter.trusted"));
        assert!(!a.permits_everything("r"), "a configured role has rules");
        assert!(!a.permits_everything("nobody"));
        let open = Authorizer::new(Arc::new(Config::parse("", "t").unwrap()));
        assert!(open.permits_everything("anonymous"));
        assert!(open.permits("anonymous", Action::Publish, "any.uri"));
        assert!(!open.permits_everything("r"));
        assert!(!open.permits("r", Action::Publish, "any.uri"));
    }
}
