//! Realms: sessions, the broker (subscriptions), the dealer (registrations) and meta APIs.
//!
//! A realm is shared by every session task of the process; gates call into it directly and
//! it answers the caller synchronously, while messages for *other* sessions go to their
//! bounded outbound queues ([`SessionHandle`]). Locks are short and never held across an
//! await. Publishing takes the realm's order lock around "assign ID, fan out", so every
//! subscriber sees events in permanent-ID order.
//!
//! ```text
//! gate task --publish/subscribe/call--> Realm --try_send--> other sessions' queues
//!                                        |-- Sessions (own locks): the table, testaments
//!                                        |-- Broker (RwLock): trie of subscriptions
//!                                        |-- Dealer (Mutex): registrations, pending calls
//!                                        |-- Memory (own locks): retained table, history
//!                                        |-- sync: `when` / `watch` / `will` (the engine's
//!                                        |         applier decides; `sync.rs`)
//!                                        '-- meta: procedures, and events published back
//!                                            into the realm (`meta.rs`)
//! ```

// A core: time, randomness and tasks come from its caller (router/clippy.toml).
#![deny(clippy::disallowed_methods)]

pub mod backpressure;
pub mod broker;
pub mod dealer;
pub mod edge;
pub mod memory;
pub mod meta;
pub mod queue;
#[cfg(test)]
mod scenarios;
mod session;
mod sessions;
pub mod sync;

use meta::meta_details;

use std::sync::{Arc, Mutex, RwLock};

use fox_wamp_proto::{Message, Value};

use crate::auth::Authorizer;
use crate::config::Limits;
use crate::engine::{Ack, Draft, Engine, Publisher, Target};
use crate::topic::{Pattern, Topic};

pub use broker::{Broker, PublishOptions, SubscribeOptions, Subscription};
pub use dealer::Dealer;
pub use session::{Delivery, Kill, Outbound, SessionHandle, SessionInfo, SessionStats};

/// The receiving end of a session's outbound queue.
pub type OutboundQueue = queue::Receiver<Outbound>;

pub use crate::engine::StoreWrite;
pub use crate::message::{new_session_id, MessageProperties, Payload, Publication, SessionId};

/// Process-wide services every realm uses.
#[derive(Debug)]
pub struct Shared {
    /// How publishes are ordered, stored, acknowledged and delivered.
    pub engine: Arc<dyn Engine>,
    /// Permissions.
    pub authorizer: Authorizer,
    /// Limits.
    pub limits: Limits,
    /// Counters for the admin listener's `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The time and random numbers the broker and the dealer are given.
    pub edge: Arc<dyn edge::Edge>,
    /// The router's timers (call timeouts, MQTT session expiry), on `edge`'s clock.
    pub timers: Arc<crate::timers::Timers>,
}

impl Shared {
    /// The durable store (`--data`), if the engine keeps one on this node.
    pub fn durable(&self) -> Option<&Arc<crate::durable::Durable>> {
        self.engine.durable()
    }
}

/// One realm.
#[derive(Debug)]
pub struct Realm {
    /// The realm's name.
    pub name: String,
    /// This realm itself, for timers that outlive a call into it.
    me: std::sync::Weak<Realm>,
    shared: Arc<Shared>,
    sessions: sessions::Sessions,
    broker: RwLock<Broker>,
    order: Mutex<()>,
    dealer: Mutex<Dealer>,
    memory: memory::Memory,
}

/// What a new subscription replays before its live events (see
/// [`Realm::subscribe_replay`]).
#[derive(Debug, Default)]
pub struct Replay {
    /// Messages after the requested ID, in ID order.
    pub history: Vec<Arc<Publication>>,
    /// Retained messages as of the subscription's start, in topic order.
    pub retained: Vec<Arc<Publication>>,
    /// The subscription's start: the last ID fanned out before it (every later message
    /// that matches reaches the subscriber live).
    pub cut: u64,
}

/// A message published for a session when it leaves (testament meta API).
#[derive(Clone, Debug)]
pub struct Testament {
    /// Topic URI.
    pub topic: String,
    /// Payload.
    pub payload: Payload,
    /// Publish options.
    pub options: PublishOptions,
}

use crate::locks::{lock, read, write};

impl Realm {
    /// A new, empty realm.
    pub fn new(name: String, shared: Arc<Shared>) -> Arc<Self> {
        let history_max = shared.limits.history_max_messages;
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            name,
            shared,
            sessions: sessions::Sessions::default(),
            broker: RwLock::new(Broker::default()),
            order: Mutex::new(()),
            dealer: Mutex::new(Dealer::default()),
            memory: memory::Memory::new(history_max),
        })
    }

    /// Process-wide services.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Adds a session and announces it (`wamp.session.on_join`).
    pub fn join(&self, handle: SessionHandle) {
        let details = handle.info.details();
        self.sessions.insert(handle);
        self.publish_meta("wamp.session.on_join", vec![Value::Dict(details)]);
    }

    /// Removes a session that closed normally (GOODBYE): its subscriptions, registrations
    /// and pending calls; publishes its testaments and the meta events. Safe to call twice.
    pub fn leave(&self, session: SessionId) {
        self.end_session(session, false);
    }

    /// Removes a session whose connection dropped (no GOODBYE): as [`Realm::leave`], and its
    /// retained-key wills are applied.
    pub fn leave_abnormally(&self, session: SessionId) {
        self.end_session(session, true);
    }

    fn end_session(&self, session: SessionId, abnormal: bool) {
        let Some((handle, testaments)) = self.sessions.remove(session) else {
            return;
        };
        // A testament is the session's last message: published as its own (after its other
        // publications, and, on a cluster entry, through the log to every entry, before
        // the session's end).
        for (index, t) in (0u32..).zip(testaments) {
            let topic = Topic::from_wamp(&t.topic);
            let draft = testament_draft(&handle.info, &topic, t.payload, &t.options);
            drop(self.shared.engine.publish_testament(self, draft, index));
        }
        self.shared.engine.session_ended(self, session, abnormal);
        let removed = write(&self.broker).remove_session(session);
        for (sub_id, deleted) in removed {
            self.subscription_meta(session, sub_id, None, deleted, false);
        }
        let events = lock(&self.dealer).remove_session(session);
        self.drain_all();
        for e in events {
            self.registration_meta(session, e.registration, None, e.deleted, false);
        }
        let info = &handle.info;
        self.publish_meta(
            "wamp.session.on_leave",
            vec![
                Value::from(info.id),
                Value::from(info.identity.authid.as_str()),
                Value::from(info.identity.authrole.as_str()),
            ],
        );
    }

    /// The session with this ID.
    pub fn session(&self, id: SessionId) -> Option<SessionHandle> {
        self.sessions.get(id)
    }

    /// Every session (a snapshot).
    pub fn sessions(&self) -> Vec<SessionHandle> {
        self.sessions.all()
    }

    /// Wakes every session's connection task (see [`SessionHandle::wake`]).
    pub fn wake_sessions(&self) {
        self.sessions.visit(SessionHandle::wake);
    }

    /// Publishes a message; returns its permanent ID when the engine knows it at once (a
    /// single node always does). The caller checked permissions.
    pub fn publish(
        &self,
        publisher: Option<&SessionInfo>,
        topic: &Topic,
        payload: Payload,
        options: &PublishOptions,
    ) -> Option<u64> {
        self.publish_with(
            publisher,
            topic,
            payload,
            options,
            MessageProperties::default(),
        )
    }

    /// [`Realm::publish`] with message properties (MQTT 5) that travel with the message.
    pub fn publish_with(
        &self,
        publisher: Option<&SessionInfo>,
        topic: &Topic,
        payload: Payload,
        options: &PublishOptions,
        properties: MessageProperties,
    ) -> Option<u64> {
        // Without a waiter the write still happens, in order; nobody needs its answer.
        self.publish_durable(publisher, topic, payload, options, properties)
            .id()
    }

    /// Publishes through the engine: the answer says when the publisher may be
    /// acknowledged (with `--data`, once the write is durable). A retained write also
    /// cancels the key's will and wakes writes parked on it (the engine's sync service).
    pub fn publish_durable(
        &self,
        publisher: Option<&SessionInfo>,
        topic: &Topic,
        payload: Payload,
        options: &PublishOptions,
        properties: MessageProperties,
    ) -> Ack {
        let publisher = publisher.map(publisher_of);
        let draft = Draft {
            publisher,
            topic,
            payload,
            options,
            properties,
        };
        self.shared.engine.publish(self, draft)
    }

    /// The realm's order lock: publications are applied under it in permanent-ID order,
    /// and a subscription starts under it at a cut between two of them.
    pub fn order(&self) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.order)
    }

    /// Applies an ordered publication: retained table, in-memory history, fan-out to the
    /// subscribers. The engine calls it holding [`Realm::order`], in permanent-ID order.
    /// `publisher` is the publishing session (`None` for router-originated messages, which
    /// stay out of the history).
    pub fn apply(
        &self,
        publication: &Arc<Publication>,
        publisher: Option<SessionId>,
        options: &PublishOptions,
    ) {
        self.memory
            .apply(publication, options.retain, publisher.is_some());
        let dropped =
            read(&self.broker).fan_out(publication, publisher, options, &self.shared.authorizer);
        self.shared.metrics.queue_dropped(dropped);
    }

    /// Subscribes and returns what the subscriber asked to see first, with no gap and no
    /// duplicate against the live events that follow: the messages after `after` that match
    /// (history) and, with `retained`, the retained messages that match as of the same cut.
    /// The subscription starts under the order lock, at the cut where the in-memory history
    /// and the retained table are copied; history older than the in-memory copy comes from
    /// the store (`--data`).
    pub fn subscribe_replay(
        &self,
        handle: &SessionHandle,
        pattern: Pattern,
        options: SubscribeOptions,
        after: Option<u64>,
        retained: bool,
    ) -> (u64, Replay) {
        let mut options = options;
        options.live_after = after.unwrap_or(0);
        let filter = options.filter.clone();
        let exact = matches!(pattern, Pattern::Exact(_));
        let (sub_id, recent, oldest, retained, cut) = {
            let _order = lock(&self.order);
            let cut = self.shared.engine.last_applied();
            let (recent, oldest) = match after {
                Some(after) => self
                    .memory
                    .history_where(after, |p| pattern.matches(&p.topic)),
                None => (Vec::new(), None),
            };
            let retained = if retained {
                self.retained_matching(&pattern)
            } else {
                Vec::new()
            };
            let (sub_id, created) = write(&self.broker).subscribe(
                handle,
                pattern.clone(),
                options,
                self.shared.edge.now_ms(),
            );
            drop(_order);
            self.subscription_meta(handle.info.id, sub_id, Some(created), false, true);
            (sub_id, recent, oldest, retained, cut)
        };
        let mut history = match (after, self.shared.durable(), oldest) {
            (Some(after), Some(durable), Some(oldest)) if oldest > after + 1 => {
                durable.history_between(&self.name, after, oldest, &pattern)
            }
            (Some(after), Some(durable), None) => {
                durable.history_between(&self.name, after, u64::MAX, &pattern)
            }
            _ => Vec::new(),
        };
        history.extend(recent);
        // A pattern may cover topics the role may not subscribe to (deny rules): those are
        // not replayed, as they are not delivered live.
        let role = &handle.info.identity.authrole;
        let admits = |p: &Arc<Publication>| {
            broker::admits_filter(filter.as_ref(), p)
                && (exact
                    || self
                        .shared
                        .authorizer
                        .may_receive(&self.name, role, &p.topic))
        };
        history.retain(admits);
        let mut retained = retained;
        retained.retain(admits);
        (
            sub_id,
            Replay {
                history,
                retained,
                cut,
            },
        )
    }

    /// The last ID whose fan-out is complete: every later message that matches a
    /// subscription made now reaches it live.
    pub fn fanned_out_through(&self) -> u64 {
        let _order = lock(&self.order);
        self.shared.engine.last_applied()
    }

    /// The last `limit` messages matching `pattern` (event history) that a session of
    /// `role` may receive, oldest first.
    pub fn recent_events(
        &self,
        pattern: &Pattern,
        limit: usize,
        role: &str,
    ) -> Vec<Arc<Publication>> {
        let authorizer = &self.shared.authorizer;
        self.memory.last_where(limit, |p| {
            pattern.matches(&p.topic) && authorizer.may_receive(&self.name, role, &p.topic)
        })
    }

    /// Retained messages whose topic matches `pattern`, in topic order. MQTT and WAMP share
    /// this one store: a publish with `retain` replaces the topic's message, and an empty
    /// payload (MQTT zero bytes, WAMP no arguments) clears it.
    pub fn retained_matching(&self, pattern: &Pattern) -> Vec<Arc<Publication>> {
        self.memory
            .retained_matching(pattern, self.shared.edge.now_ms())
    }

    /// The realm's retained messages and history.
    pub fn memory(&self) -> &memory::Memory {
        &self.memory
    }

    /// Visits every session under the lock (counting them clones nothing). `visit` must
    /// not call back into the realm.
    pub fn visit_sessions(&self, visit: impl FnMut(&SessionHandle)) {
        self.sessions.visit(visit);
    }

    /// The broker, read-locked (the admin API lists its subscriptions).
    pub fn broker(&self) -> std::sync::RwLockReadGuard<'_, Broker> {
        read(&self.broker)
    }

    /// The dealer, locked (the admin API lists its registrations). Hold it briefly: calls
    /// wait on it.
    pub fn dealer(&self) -> std::sync::MutexGuard<'_, Dealer> {
        lock(&self.dealer)
    }

    /// Subscribes a session; returns the subscription ID.
    pub fn subscribe(
        &self,
        handle: &SessionHandle,
        pattern: Pattern,
        options: SubscribeOptions,
    ) -> u64 {
        let (sub_id, created) =
            write(&self.broker).subscribe(handle, pattern, options, self.shared.edge.now_ms());
        self.subscription_meta(handle.info.id, sub_id, Some(created), false, true);
        sub_id
    }

    /// Unsubscribes a session; `false` if it had no such subscription.
    pub fn unsubscribe(&self, session: SessionId, subscription: u64) -> bool {
        let result = write(&self.broker).unsubscribe(session, subscription);
        match result {
            Some(deleted) => {
                self.subscription_meta(session, subscription, None, deleted, false);
                true
            }
            None => false,
        }
    }

    /// Stores a testament for a session (published when it leaves).
    pub fn add_testament(&self, session: SessionId, testament: Testament) {
        self.sessions
            .add_testament(session, testament, |handle, testament, index| {
                let Some(handle) = handle else { return };
                let topic = Topic::from_wamp(&testament.topic);
                let payload = testament.payload.clone();
                let draft = testament_draft(&handle.info, &topic, payload, &testament.options);
                self.shared.engine.testament_added(self, draft, index);
            });
    }

    /// Drops a session's testaments; how many there were.
    pub fn flush_testaments(&self, session: SessionId) -> usize {
        let flushed = self.sessions.flush_testaments(session);
        if flushed > 0 {
            self.shared.engine.testaments_flushed(self, session);
        }
        flushed
    }

    /// Sends a WAMP message to a session; `false` if it is gone or was closed as a slow
    /// consumer.
    pub fn send_to(&self, session: SessionId, message: Message) -> bool {
        self.session(session)
            .is_some_and(|h| h.send(Outbound::wamp(message)))
    }
}

impl Target for Realm {
    fn name(&self) -> &str {
        &self.name
    }

    fn order(&self) -> std::sync::MutexGuard<'_, ()> {
        Realm::order(self)
    }

    fn value(&self, topic: &Topic) -> Value {
        self.current_value(topic)
    }

    fn apply(
        &self,
        publication: &Arc<Publication>,
        publisher: Option<SessionId>,
        options: &PublishOptions,
    ) {
        Realm::apply(self, publication, publisher, options);
    }
}

/// A testament of `info`'s session, as the engine takes it.
fn testament_draft<'a>(
    info: &'a SessionInfo,
    topic: &'a Topic,
    payload: Payload,
    options: &'a PublishOptions,
) -> Draft<'a> {
    Draft {
        publisher: Some(publisher_of(info)),
        topic,
        payload,
        options,
        properties: MessageProperties::default(),
    }
}

/// The engine's view of a session as a publisher.
fn publisher_of(info: &SessionInfo) -> Publisher<'_> {
    Publisher {
        id: info.id,
        authid: &info.identity.authid,
        authrole: &info.identity.authrole,
    }
}

#[cfg(test)]
mod tests;
