//! MQTT 5.0 reason codes, shared by every version (3.x return codes map onto them).

macro_rules! reason_codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// An MQTT 5.0 reason code (spec 2.4). MQTT 3.x CONNACK return codes and
        /// SUBACK return codes are mapped onto these (see [`ReasonCode::to_v3_connack`]).
        ///
        /// The value 0x00 has three names in the spec; they are one variant here,
        /// [`ReasonCode::Success`], with the aliases [`ReasonCode::NORMAL_DISCONNECTION`]
        /// and [`ReasonCode::GRANTED_QOS_0`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[non_exhaustive]
        #[repr(u8)]
        pub enum ReasonCode {
            $($(#[$doc])* $name = $value,)*
        }

        impl ReasonCode {
            /// The reason code for a wire byte, or `None` if the spec defines none.
            pub fn from_u8(value: u8) -> Option<ReasonCode> {
                match value {
                    $($value => Some(ReasonCode::$name),)*
                    _ => None,
                }
            }

            /// Every defined reason code, in ascending order.
            pub const ALL: &'static [ReasonCode] = &[$(ReasonCode::$name,)*];
        }
    };
}

reason_codes! {
    /// 0x00: Success / Normal disconnection / Granted QoS 0.
    #[default]
    Success = 0x00,
    /// 0x01: Granted QoS 1.
    GrantedQoS1 = 0x01,
    /// 0x02: Granted QoS 2.
    GrantedQoS2 = 0x02,
    /// 0x04: Disconnect with Will Message.
    DisconnectWithWillMessage = 0x04,
    /// 0x10: No matching subscribers.
    NoMatchingSubscribers = 0x10,
    /// 0x11: No subscription existed.
    NoSubscriptionExisted = 0x11,
    /// 0x18: Continue authentication.
    ContinueAuthentication = 0x18,
    /// 0x19: Re-authenticate.
    ReAuthenticate = 0x19,
    /// 0x80: Unspecified error (MQTT 3.1.1 SUBACK "Failure").
    UnspecifiedError = 0x80,
    /// 0x81: Malformed Packet.
    MalformedPacket = 0x81,
    /// 0x82: Protocol Error.
    ProtocolError = 0x82,
    /// 0x83: Implementation specific error.
    ImplementationSpecificError = 0x83,
    /// 0x84: Unsupported Protocol Version.
    UnsupportedProtocolVersion = 0x84,
    /// 0x85: Client Identifier not valid.
    ClientIdentifierNotValid = 0x85,
    /// 0x86: Bad User Name or Password.
    BadUserNameOrPassword = 0x86,
    /// 0x87: Not authorized.
    NotAuthorized = 0x87,
    /// 0x88: Server unavailable.
    ServerUnavailable = 0x88,
    /// 0x89: Server busy.
    ServerBusy = 0x89,
    /// 0x8A: Banned.
    Banned = 0x8A,
    /// 0x8B: Server shutting down.
    ServerShuttingDown = 0x8B,
    /// 0x8C: Bad authentication method.
    BadAuthenticationMethod = 0x8C,
    /// 0x8D: Keep Alive timeout.
    KeepAliveTimeout = 0x8D,
    /// 0x8E: Session taken over.
    SessionTakenOver = 0x8E,
    /// 0x8F: Topic Filter invalid.
    TopicFilterInvalid = 0x8F,
    /// 0x90: Topic Name invalid.
    TopicNameInvalid = 0x90,
    /// 0x91: Packet Identifier in use.
    PacketIdentifierInUse = 0x91,
    /// 0x92: Packet Identifier not found.
    PacketIdentifierNotFound = 0x92,
    /// 0x93: Receive Maximum exceeded.
    ReceiveMaximumExceeded = 0x93,
    /// 0x94: Topic Alias invalid.
    TopicAliasInvalid = 0x94,
    /// 0x95: Packet too large.
    PacketTooLarge = 0x95,
    /// 0x96: Message rate too high.
    MessageRateTooHigh = 0x96,
    /// 0x97: Quota exceeded.
    QuotaExceeded = 0x97,
    /// 0x98: Administrative action.
    AdministrativeAction = 0x98,
    /// 0x99: Payload format invalid.
    PayloadFormatInvalid = 0x99,
    /// 0x9A: Retain not supported.
    RetainNotSupported = 0x9A,
    /// 0x9B: QoS not supported.
    QoSNotSupported = 0x9B,
    /// 0x9C: Use another server.
    UseAnotherServer = 0x9C,
    /// 0x9D: Server moved.
    ServerMoved = 0x9D,
    /// 0x9E: Shared Subscriptions not supported.
    SharedSubscriptionsNotSupported = 0x9E,
    /// 0x9F: Connection rate exceeded.
    ConnectionRateExceeded = 0x9F,
    /// 0xA0: Maximum connect time.
    MaximumConnectTime = 0xA0,
    /// 0xA1: Subscription Identifiers not supported.
    SubscriptionIdentifiersNotSupported = 0xA1,
    /// 0xA2: Wildcard Subscriptions not supported.
    WildcardSubscriptionsNotSupported = 0xA2,
}

use ReasonCode as R;

/// Reason codes a CONNACK may carry (spec 3.2.2.2).
pub(crate) const CONNACK: &[ReasonCode] = &[
    R::Success,
    R::UnspecifiedError,
    R::MalformedPacket,
    R::ProtocolError,
    R::ImplementationSpecificError,
    R::UnsupportedProtocolVersion,
    R::ClientIdentifierNotValid,
    R::BadUserNameOrPassword,
    R::NotAuthorized,
    R::ServerUnavailable,
    R::ServerBusy,
    R::Banned,
    R::BadAuthenticationMethod,
    R::TopicNameInvalid,
    R::PacketTooLarge,
    R::QuotaExceeded,
    R::PayloadFormatInvalid,
    R::RetainNotSupported,
    R::QoSNotSupported,
    R::UseAnotherServer,
    R::ServerMoved,
    R::ConnectionRateExceeded,
];

/// Reason codes a PUBACK or PUBREC may carry (spec 3.4.2.1, 3.5.2.1).
pub(crate) const PUBACK_PUBREC: &[ReasonCode] = &[
    R::Success,
    R::NoMatchingSubscribers,
    R::UnspecifiedError,
    R::ImplementationSpecificError,
    R::NotAuthorized,
    R::TopicNameInvalid,
    R::PacketIdentifierInUse,
    R::QuotaExceeded,
    R::PayloadFormatInvalid,
];

/// Reason codes a PUBREL or PUBCOMP may carry (spec 3.6.2.1, 3.7.2.1).
pub(crate) const PUBREL_PUBCOMP: &[ReasonCode] = &[R::Success, R::PacketIdentifierNotFound];

/// Reason codes a SUBACK may carry (spec 3.9.3).
pub(crate) const SUBACK: &[ReasonCode] = &[
    R::Success,
    R::GrantedQoS1,
    R::GrantedQoS2,
    R::UnspecifiedError,
    R::ImplementationSpecificError,
    R::NotAuthorized,
    R::TopicFilterInvalid,
    R::PacketIdentifierInUse,
    R::QuotaExceeded,
    R::SharedSubscriptionsNotSupported,
    R::SubscriptionIdentifiersNotSupported,
    R::WildcardSubscriptionsNotSupported,
];

/// Reason codes an UNSUBACK may carry (spec 3.11.3).
pub(crate) const UNSUBACK: &[ReasonCode] = &[
    R::Success,
    R::NoSubscriptionExisted,
    R::UnspecifiedError,
    R::ImplementationSpecificError,
    R::NotAuthorized,
    R::TopicFilterInvalid,
    R::PacketIdentifierInUse,
];

/// Reason codes a DISCONNECT may carry (spec 3.14.2.1).
pub(crate) const DISCONNECT: &[ReasonCode] = &[
    R::Success,
    R::DisconnectWithWillMessage,
    R::UnspecifiedError,
    R::MalformedPacket,
    R::ProtocolError,
    R::ImplementationSpecificError,
    R::NotAuthorized,
    R::ServerBusy,
    R::ServerShuttingDown,
    R::KeepAliveTimeout,
    R::SessionTakenOver,
    R::TopicFilterInvalid,
    R::TopicNameInvalid,
    R::ReceiveMaximumExceeded,
    R::TopicAliasInvalid,
    R::PacketTooLarge,
    R::MessageRateTooHigh,
    R::QuotaExceeded,
    R::AdministrativeAction,
    R::PayloadFormatInvalid,
    R::RetainNotSupported,
    R::QoSNotSupported,
    R::UseAnotherServer,
    R::ServerMoved,
    R::SharedSubscriptionsNotSupported,
    R::ConnectionRateExceeded,
    R::MaximumConnectTime,
    R::SubscriptionIdentifiersNotSupported,
    R::WildcardSubscriptionsNotSupported,
];

/// Reason codes an AUTH may carry (spec 3.15.2.1).
pub(crate) const AUTH: &[ReasonCode] = &[R::Success, R::ContinueAuthentication, R::ReAuthenticate];

impl ReasonCode {
    /// Alias of [`ReasonCode::Success`] used in DISCONNECT.
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode::Success;
    /// Alias of [`ReasonCode::Success`] used in SUBACK.
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode::Success;

    /// The wire byte.
    pub fn value(self) -> u8 {
        self as u8
    }

    /// True for codes 0x80 and above, which report a failure.
    pub fn is_error(self) -> bool {
        self.value() >= 0x80
    }

    /// The MQTT 3.x CONNACK return code (0..=5) for this reason code.
    ///
    /// The mapping is many-to-one, so that a gate can reason in v5 codes only:
    /// server-side unavailability (busy, shutting down, moved, use another server,
    /// connection rate exceeded) becomes 3 "server unavailable", a bad authentication
    /// method becomes 4 "bad user name or password" and Banned becomes 5 "not
    /// authorized". Codes with no 3.x meaning (e.g. Malformed Packet: a 3.x server just
    /// closes the connection) yield `None`.
    pub fn to_v3_connack(self) -> Option<u8> {
        match self {
            R::Success => Some(0),
            R::UnsupportedProtocolVersion => Some(1),
            R::ClientIdentifierNotValid => Some(2),
            R::ServerUnavailable
            | R::ServerBusy
            | R::ServerShuttingDown
            | R::UseAnotherServer
            | R::ServerMoved
            | R::ConnectionRateExceeded => Some(3),
            R::BadUserNameOrPassword | R::BadAuthenticationMethod => Some(4),
            R::NotAuthorized | R::Banned => Some(5),
            _ => None,
        }
    }

    /// The reason code for an MQTT 3.x CONNACK return code, or `None` for 6..=255.
    pub fn from_v3_connack(return_code: u8) -> Option<ReasonCode> {
        match return_code {
            0 => Some(R::Success),
            1 => Some(R::UnsupportedProtocolVersion),
            2 => Some(R::ClientIdentifierNotValid),
            3 => Some(R::ServerUnavailable),
            4 => Some(R::BadUserNameOrPassword),
            5 => Some(R::NotAuthorized),
            _ => None,
        }
    }

    /// Decodes a reason byte that must be one of `allowed` for this packet type.
    pub(crate) fn decode(
        value: u8,
        allowed: &[ReasonCode],
    ) -> Result<ReasonCode, crate::error::Error> {
        match ReasonCode::from_u8(value) {
            Some(code) if allowed.contains(&code) => Ok(code),
            _ => Err(crate::error::Error::MalformedPacket(
                "reason code not valid for this packet",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_byte() {
        for code in ReasonCode::ALL {
            assert_eq!(ReasonCode::from_u8(code.value()), Some(*code));
        }
        assert_eq!(ReasonCode::ALL.len(), 43);
        assert_eq!(ReasonCode::from_u8(0x03), None);
    }

    #[test]
    fn v3_connack_codes_round_trip() {
        for return_code in 0..=5 {
            let code = ReasonCode::from_v3_connack(return_code).expect("0..=5 are defined");
            assert_eq!(code.to_v3_connack(), Some(return_code));
        }
        assert_eq!(ReasonCode::from_v3_connack(6), None);
        assert_eq!(ReasonCode::Banned.to_v3_connack(), Some(5));
        assert_eq!(ReasonCode::MalformedPacket.to_v3_connack(), None);
    }

    #[test]
    fn per_packet_sets_only_contain_defined_codes() {
        for set in [
            CONNACK,
            PUBACK_PUBREC,
            PUBREL_PUBCOMP,
            SUBACK,
            UNSUBACK,
            DISCONNECT,
            AUTH,
        ] {
            assert!(set.contains(&ReasonCode::Success));
        }
        assert!(ReasonCode::decode(0x92, PUBACK_PUBREC).is_err());
        assert!(ReasonCode::decode(0x92, PUBREL_PUBCOMP).is_ok());
    }
}
