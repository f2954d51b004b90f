//! The error and close reason URIs a router sends (WAMP v2, sections "Predefined URIs"),
//! typed, each spelled once, plus foxrouter's own (`fox.error.*`). A peer's own error
//! URIs (a callee's ERROR) stay strings: these are the ones the router decides.

use std::fmt;

macro_rules! uris {
    ($(#[$meta:meta])* $name:ident { $($(#[$doc:meta])* $variant:ident = $uri:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$doc])* $variant,)*
        }

        impl $name {
            /// Every URI of this kind.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The URI as it goes on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $uri,)*
                }
            }

            /// The variant of a URI, if it is one of these.
            pub fn parse(uri: &str) -> Option<Self> {
                match uri {
                    $($uri => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<$name> for String {
            fn from(uri: $name) -> String {
                uri.as_str().to_owned()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.as_str() == other
            }
        }
    };
}

uris! {
    /// An ERROR's or ABORT's reason that the router decides.
    ErrorUri {
        /// The peer broke the protocol (ABORT).
        ProtocolViolation = "wamp.error.protocol_violation",
        /// A URI that is not valid (for its match policy).
        InvalidUri = "wamp.error.invalid_uri",
        /// A request's arguments or options are not acceptable.
        InvalidArgument = "wamp.error.invalid_argument",
        /// The realm does not exist (and is not created on demand).
        NoSuchRealm = "wamp.error.no_such_realm",
        /// None of the offered authentication methods is accepted.
        NoAuthMethod = "wamp.error.no_auth_method",
        /// Not allowed (role permissions, an authorizer, a failed login).
        NotAuthorized = "wamp.error.not_authorized",
        /// No callee registered the procedure.
        NoSuchProcedure = "wamp.error.no_such_procedure",
        /// UNREGISTER of a registration the session does not hold.
        NoSuchRegistration = "wamp.error.no_such_registration",
        /// UNSUBSCRIBE of a subscription the session does not hold.
        NoSuchSubscription = "wamp.error.no_such_subscription",
        /// A meta procedure asked about a session that does not exist.
        NoSuchSession = "wamp.error.no_such_session",
        /// REGISTER of a procedure already registered (single registration).
        ProcedureAlreadyExists = "wamp.error.procedure_already_exists",
        /// REGISTER with an invocation policy other than the one registered.
        ProcedureExistsWithDifferentInvocationPolicy =
            "wamp.error.procedure_exists_with_different_invocation_policy",
        /// The call was canceled (by the caller, or its callee left).
        Canceled = "wamp.error.canceled",
        /// The call's timeout ran out.
        Timeout = "wamp.error.timeout",
        /// The router offers the feature, but not here (a cluster entry, say).
        FeatureNotSupported = "wamp.error.feature_not_supported",
        /// The service is not available right now (no quorum).
        Unavailable = "wamp.error.unavailable",
        /// The store failed to keep a write.
        StorageFailed = "wamp.error.storage_failed",
        /// foxrouter: a per-session limit is reached (the message names it); WAMP defines
        /// none for this.
        LimitExceeded = "fox.error.limit_exceeded",
    }
}

uris! {
    /// A GOODBYE's or ABORT's close reason.
    CloseUri {
        /// The router shuts down.
        SystemShutdown = "wamp.close.system_shutdown",
        /// The session was killed (meta API, admin).
        Killed = "wamp.close.killed",
        /// The session stopped reading and its queue overflowed.
        SlowConsumer = "wamp.close.slow_consumer",
        /// The answer to a peer's GOODBYE.
        GoodbyeAndOut = "wamp.close.goodbye_and_out",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_uri_parses_back_and_is_spelled_once() {
        let mut seen = std::collections::HashSet::new();
        for uri in ErrorUri::ALL {
            assert_eq!(ErrorUri::parse(uri.as_str()), Some(*uri));
            assert!(seen.insert(uri.as_str()), "{uri} twice");
            assert!(
                uri.as_str().starts_with("wamp.error.") || uri.as_str().starts_with("fox.error.")
            );
        }
        for uri in CloseUri::ALL {
            assert_eq!(CloseUri::parse(uri.as_str()), Some(*uri));
            assert!(uri.as_str().starts_with("wamp.close."));
        }
        assert_eq!(ErrorUri::parse("com.example.oops"), None);
        assert!(ErrorUri::Timeout == *"wamp.error.timeout");
        assert_eq!(String::from(CloseUri::Killed), "wamp.close.killed");
    }
}
