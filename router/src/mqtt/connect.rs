//! CONNECT: authentication (`user@realm` picks the realm), will permission, session
//! expiry, the takeover of an existing session with the same client identifier, and
//! the CONNACK with what we negotiated.
//!
//! This is the one async step of the gate: a takeover waits (bounded) for the old
//! connection to hand its session state over.

use crate::engine::Feature;
use std::sync::Arc;
use std::time::Duration;

use fox_mqtt_proto::{ConnAck, Connect, LastWill, Properties, Protocol, ReasonCode};
use tokio::sync::oneshot;

use super::inbound::message_properties;
use super::registry::{Handed, Previous, Registry};
use super::session::{packet_max_bytes, Negotiated, Parked, Session, SessionState, Will};
use crate::auth::external::verify;
use crate::auth::hooks::{Answer, Query};
use crate::auth::{Action, Identity, LoginRefused, Verification};
use crate::realm::{OutboundQueue, Realm, SessionHandle, SessionId, SessionInfo};
use crate::router::Router;
use crate::tls::TlsContext;
use crate::topic::{MatchPolicy, Topic};

/// How long a connection to a cluster entry waits for the session it claimed there (the
/// log answers within `follow::applier::sessions::CLAIM_WAIT_MS` while it orders records).
const CLAIM_WAIT_MS: u64 = 8_000;

/// An accepted connection: its session, realm queue and takeover channel.
#[derive(Debug)]
pub struct Accepted {
    /// The session (CONNACK queued), boxed: the connection task moves it in and out of
    /// futures, and an inline one would be copied into each of them.
    pub session: Box<Session>,
    /// The realm queue of the session.
    pub rx: OutboundQueue,
    /// Requests from a newer connection with the same client identifier.
    pub kicks: super::registry::Kicks,
    /// This connection's generation in the registry.
    pub generation: u64,
    /// The realm's MQTT clients (and, through it, the realm).
    pub registry: Arc<Registry>,
}

fn refusal(reason: ReasonCode) -> ConnAck {
    ConnAck {
        session_present: false,
        reason,
        properties: Properties::default(),
    }
}

fn will_of(will: &LastWill, now_ms: u64) -> Will {
    Will {
        topic: Topic::from_mqtt(&will.topic),
        payload: will.payload.clone(),
        qos: will.qos.value(),
        retain: will.retain,
        properties: message_properties(&will.properties, now_ms),
        delay_secs: will.properties.will_delay_interval_secs.unwrap_or(0),
    }
}

/// The CONNECT's login: its client ID (assigned when empty, and whether it was), realm and
/// identity, or the refusing CONNACK.
async fn login(
    router: &Arc<Router>,
    connect: &Connect,
    transport: &'static str,
    peer: &str,
    tls: Option<&TlsContext>,
) -> Result<(String, bool, String, Identity), ConnAck> {
    let assigned = connect.client_id.is_empty();
    let client_id = if assigned {
        format!("fox-{:016x}", rand::random::<u64>())
    } else {
        connect.client_id.clone()
    };
    let username = connect.username.as_deref();
    // A client named by its verified certificate (`[tls] identity`) logs in as that name,
    // whatever user name and password it sends (Mosquitto's use_identity_as_username).
    let certified = tls.and_then(|tls| tls.identity.as_deref());
    let (realm_name, verification) = match certified {
        Some(name) => router.authenticator.mqtt_certificate(name, username),
        None => router.authenticator.mqtt_verify(
            username,
            connect.password.as_deref(),
            &client_id,
            transport,
            peer,
        ),
    };
    let verdict = match verification {
        Verification::Done(verdict) => verdict,
        Verification::External(login) => verify(router.clone(), login).await,
    };
    let identity = match verdict {
        Ok(identity) => identity,
        Err(denied) => {
            tracing::info!(%peer, ?username, reason = %denied.reason, "MQTT login refused");
            router.metrics().auth_failed(crate::metrics::Protocol::Mqtt);
            return Err(refusal(match denied.refused {
                LoginRefused::NotAuthorized => ReasonCode::NotAuthorized,
                LoginRefused::BadCredentials => ReasonCode::BadUserNameOrPassword,
            }));
        }
    };
    Ok((client_id, assigned, realm_name, identity))
}

/// The session this connection takes over, if any: from another entry of the cluster
/// (what the log knows), parked here, or from a live connection, which is kicked; or the
/// refusing CONNACK.
async fn take_over(
    router: &Arc<Router>,
    registry: &Arc<Registry>,
    connect: &Connect,
    (settings, session, generation): (&Negotiated, SessionId, u64),
    previous: Previous,
) -> Result<Option<Parked>, ConnAck> {
    let realm = registry.realm();
    let previous = match previous {
        Previous::None => {
            // A session that may outlive this connection, or one to resume, needs what the
            // log knows; a clean one that ends with its connection does not wait for it.
            let keeps = !connect.clean_start || settings.expiry_secs > 0;
            let claimed =
                claim_elsewhere(router, registry, &settings.client_id, session, keeps).await;
            match claimed {
                Ok(claimed) => claimed,
                Err(refused) => {
                    if let Some(stale) = registry.release(&settings.client_id, generation) {
                        realm.leave(stale.handle.info.id);
                    }
                    return Err(refused);
                }
            }
        }
        Previous::Parked(parked) => Some(*parked),
        Previous::Live(kick, stale) => {
            if let Some(stale) = stale {
                realm.leave(stale.handle.info.id);
            }
            match super::registry::ask_for_session(kick).await {
                Handed::Session(parked) => Some(*parked),
                // The old connection ended before it could answer: it left its state here.
                Handed::Ended | Handed::Late => registry
                    .take_handoff(&settings.client_id, generation)
                    .map(|p| *p),
            }
        }
    };
    Ok(previous)
}

/// Checks CONNECT and establishes the session, or gives the refusing CONNACK.
pub async fn accept(
    router: &Arc<Router>,
    connect: Connect,
    transport: &'static str,
    peer: &str,
    tls: Option<&TlsContext>,
    now_ms: u64,
) -> Result<Accepted, ConnAck> {
    if connect.properties.authentication_method.is_some() {
        return Err(refusal(ReasonCode::BadAuthenticationMethod));
    }
    let (client_id, assigned, realm_name, identity) =
        login(router, &connect, transport, peer, tls).await?;
    let Some(registry) = router.mqtt(&realm_name) else {
        return Err(refusal(ReasonCode::NotAuthorized));
    };
    let realm = registry.realm();
    if let Some((reason, why)) = engine_refusal(router, &connect) {
        tracing::info!(%peer, client = %client_id, why, "MQTT CONNECT refused");
        return Err(refusal(reason));
    }
    let payload_max_bytes = router.config.limits.message_size_max_bytes;
    if connect
        .will
        .as_ref()
        .is_some_and(|w| w.payload.len() > payload_max_bytes)
    {
        return Err(refusal(ReasonCode::PacketTooLarge));
    }
    let will = connect.will.as_ref().map(|w| will_of(w, now_ms));
    let info = SessionInfo {
        id: crate::realm::new_session_id(),
        realm: realm.name.clone(),
        identity,
        transport,
        peer: peer.to_owned(),
        roles: fox_wamp_proto::Dict::new(),
    };
    if let Some(will) = &will {
        if !will_permitted(router, realm, &info, &client_id, will).await {
            return Err(refusal(ReasonCode::NotAuthorized));
        }
    }
    let mut settings = negotiate(router, &connect, client_id);
    settings.fox_id = connect.protocol.is_v5()
        && (listener_sends_fox_id(router, transport)
            || super::outbound::asks_for_fox_id(&connect.properties.user_properties));
    let (kick, kicks) = oneshot::channel();
    let (generation, previous) = registry.claim(&settings.client_id, kick);
    // With a store, a client id seen before may have a stored record (persist.rs).
    let mut maybe_stored = !matches!(previous, Previous::None);
    let claim = (&settings, info.id, generation);
    let previous = take_over(router, &registry, &connect, claim, previous).await?;
    maybe_stored |= previous.is_some();
    let previous = previous.and_then(|p| resume_or_discard(realm, p, connect.clean_start));
    let session_present = previous.is_some();
    let (handle, rx, state) = match previous {
        Some(parked) => (parked.handle, parked.rx, parked.state),
        None => fresh_session(router, realm, info, &settings),
    };
    super::sys::ensure_started(router, &registry);
    let connack = connack(&connect, &settings, session_present, assigned, router);
    let mut session = Session::new(
        registry.clone(),
        handle,
        settings,
        state,
        will,
        connack,
        now_ms,
    );
    session.stored = maybe_stored;
    session.persist(now_ms);
    Ok(Accepted {
        session: Box::new(session),
        rx,
        kicks,
        generation,
        registry,
    })
}

/// A new session in `realm`: nothing before now is owed to it.
fn fresh_session(
    router: &Router,
    realm: &Realm,
    info: SessionInfo,
    settings: &Negotiated,
) -> (SessionHandle, OutboundQueue, SessionState) {
    let (handle, rx) = SessionHandle::new(info, router.config.limits.session_queue_max);
    realm.join(handle.clone());
    // The durable watermark (persist.rs): only a session that may outlive its connection
    // needs that cut, which costs the realm's order lock.
    let received_through = if settings.expiry_secs > 0 && realm.shared().engine.keeps_sessions() {
        realm.fanned_out_through()
    } else {
        0
    };
    let state = SessionState {
        received_through,
        ..SessionState::default()
    };
    (handle, rx, state)
}

/// Whether the listener a connection came through sends the permanent ID to every MQTT 5
/// client (`listen.mqtt_fox_id`, `listen.ws_mqtt_fox_id`).
fn listener_sends_fox_id(router: &Router, transport: &str) -> bool {
    let listen = &router.config.listen;
    match transport {
        super::conn::TRANSPORT_TCP => listen.mqtt_fox_id,
        super::conn::TRANSPORT_WEBSOCKET => listen.ws_mqtt_fox_id,
        _ => false,
    }
}

/// Whether the will may be published: never on a `$` topic; else the authorization
/// hooks' answer when they decide for this session (asked now, awaited), else the role's
/// publish permission.
async fn will_permitted(
    router: &Arc<Router>,
    realm: &Realm,
    info: &SessionInfo,
    client_id: &str,
    will: &Will,
) -> bool {
    if will
        .topic
        .levels()
        .first()
        .is_some_and(|l| l.starts_with('$'))
    {
        return false;
    }
    let uri = will.topic.to_wamp();
    let authorizer = &realm.shared().authorizer;
    if let Some(hooks) = authorizer.hooks_for(&info.realm, &info.identity.authrole) {
        let key = (Action::Publish, MatchPolicy::Exact, uri.clone());
        let mut query = Query::new(info, "mqtt", key);
        query.client_id = Some(client_id.to_owned());
        query.topic = Some(will.topic.to_mqtt());
        match hooks.decide(router, &query).await.answer {
            Answer::Allow => return true,
            Answer::Deny => return false,
            Answer::Ignore => {}
        }
    }
    authorizer.permits(&info.identity.authrole, Action::Publish, &uri)
}

/// On a cluster entry, the session of `client_id` that another entry serves (or served):
/// claimed through the log, handed over by that entry, resumed here (`crate::mqtt::cluster`).
/// `Ok(None)`: no session anywhere. Refused (Server unavailable) when the cluster does not
/// answer in time, or (`keeps`: a session that may outlive its connection or resume)
/// while this entry has not caught up with the log: starting afresh would lose what the
/// session is owed.
async fn claim_elsewhere(
    router: &Router,
    registry: &Registry,
    client_id: &str,
    session: crate::realm::SessionId,
    keeps: bool,
) -> Result<Option<Parked>, ConnAck> {
    let engine = &router.shared().engine;
    let wait = Duration::from_millis(CLAIM_WAIT_MS);
    if keeps
        && tokio::time::timeout(wait, engine.sessions_known())
            .await
            .is_err()
    {
        tracing::warn!(client = %client_id, "this entry has not caught up with the log yet: MQTT CONNECT refused");
        return Err(refusal(ReasonCode::ServerUnavailable));
    }
    let answer = registry.await_claim(client_id);
    if !engine.claim_session(&registry.realm().name, client_id, session) {
        registry.take_claim(client_id);
        return Ok(None);
    }
    router
        .metrics()
        .session_moved(crate::metrics::SessionMove::Claimed);
    match tokio::time::timeout(wait, answer).await {
        Ok(Ok(parked)) => Ok(parked.map(|p| *p)),
        _ => {
            registry.take_claim(client_id);
            tracing::warn!(client = %client_id, "the cluster did not answer the claim of an MQTT session in time");
            Err(refusal(ReasonCode::ServerUnavailable))
        }
    }
}

/// A previous session is resumed unless the client asked for a clean start; a discarded
/// one leaves the realm (and its pending delayed will is published: its session ended).
/// A resumed session's pending will is cancelled: the client came back in time.
fn resume_or_discard(realm: &Realm, mut parked: Parked, clean_start: bool) -> Option<Parked> {
    let will = parked.will.take();
    if !clean_start {
        return Some(parked);
    }
    if let Some(will) = will {
        will.publish(realm, &parked.handle);
    }
    realm.leave(parked.handle.info.id);
    None
}

/// What the engine cannot serve (a cluster entry, for now): a 3.1.1 session that must
/// outlive its connection (MQTT 5 clients are told Session Expiry 0 in CONNACK instead), and
/// a retained will.
fn engine_refusal(router: &Router, connect: &Connect) -> Option<(ReasonCode, &'static str)> {
    let engine = &router.shared().engine;
    if !connect.protocol.is_v5() && !connect.clean_start {
        if let Some(why) = engine.refuses(Feature::PersistentSession) {
            return Some((ReasonCode::ServerUnavailable, why));
        }
    }
    if connect.will.as_ref().is_some_and(|w| w.retain) {
        if let Some(why) = engine.refuses(Feature::Retain) {
            return Some((ReasonCode::RetainNotSupported, why));
        }
    }
    None
}

fn negotiate(router: &Router, connect: &Connect, client_id: String) -> Negotiated {
    let limits = &router.config.limits;
    let mut settings = Negotiated::from_limits(limits, connect.protocol, client_id);
    let properties = &connect.properties;
    settings.keep_alive_secs = match connect.keep_alive_secs {
        0 if limits.mqtt_keep_alive_max_secs < u16::MAX => limits.mqtt_keep_alive_max_secs,
        asked => asked.min(limits.mqtt_keep_alive_max_secs),
    };
    settings.expiry_secs = if connect.protocol.is_v5() {
        properties.session_expiry_interval_secs.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        u32::MAX
    }
    .min(limits.mqtt_session_expiry_max_secs);
    if let Some(receive_max) = properties.receive_maximum {
        settings.inflight_max = settings.inflight_max.min(receive_max.max(1));
    }
    if let Some(max) = properties.maximum_packet_size_bytes {
        settings.client_packet_max_bytes = max as usize;
    }
    settings.client_topic_alias_max = properties.topic_alias_maximum.unwrap_or(0);
    settings
}

fn connack(
    connect: &Connect,
    settings: &Negotiated,
    session_present: bool,
    assigned: bool,
    router: &Router,
) -> ConnAck {
    let mut properties = Properties::default();
    if connect.protocol == Protocol::V5 {
        let limits = &router.config.limits;
        properties.receive_maximum = Some(settings.receive_max);
        properties.topic_alias_maximum = Some(settings.topic_alias_max);
        properties.maximum_packet_size_bytes = u32::try_from(packet_max_bytes(limits)).ok();
        if connect.properties.session_expiry_interval_secs.unwrap_or(0) != settings.expiry_secs {
            properties.session_expiry_interval_secs = Some(settings.expiry_secs);
        }
        if settings.keep_alive_secs != connect.keep_alive_secs {
            properties.server_keep_alive_secs = Some(settings.keep_alive_secs);
        }
        if assigned {
            properties.assigned_client_identifier = Some(settings.client_id.clone());
        }
        if router.shared().engine.refuses(Feature::Retain).is_some() {
            properties.retain_available = Some(false);
        }
    }
    ConnAck {
        session_present,
        reason: ReasonCode::Success,
        properties,
    }
}
