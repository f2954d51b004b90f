//! Client sessions by client identifier, per realm: the live connection of each, or the
//! parked state of a persistent session whose client is away.
//!
//! The router keeps one [`Registry`] beside each realm (`Router::mqtt`), made together
//! with it; the registry holds its realm, the realm knows nothing of MQTT (the dependency
//! runs one way, `mqtt` -> `realm`).
//!
//! ```text
//! CONNECT(id) --claim--> previous slot:  none   -> new session
//!                                        parked -> resume (unless clean start)
//!                                        live   -> kick: the old connection sends
//!                                                  DISCONNECT 0x8E and hands its state back
//! connection ends --park--> Parked (expiry > 0; an expiry task publishes a delayed will
//!                                   and, after the session expiry, leaves the realm)
//!                 --release--> removed (expiry 0)
//! ```
//!
//! Every claim gets a new generation; park and release act only if the slot still holds
//! their generation, so a connection that was superseded never overwrites its successor.
//! While parked, the realm keeps the session's handle: its subscriptions keep matching and
//! its bounded queue fills (when full, the newest events are dropped and counted in
//! `SessionStats::events_dropped`).

// A core: time, randomness and tasks come from its caller (router/clippy.toml).
#![deny(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::session::Parked;
use super::sys::Stats;
use crate::realm::Realm;

/// How a live connection is asked to give up its session.
/// (A connection is kicked at most once: it ends then, so a oneshot is enough.)
pub type Kick = oneshot::Sender<oneshot::Sender<Option<Parked>>>;

/// The connection's end of its [`Kick`].
pub type Kicks = oneshot::Receiver<oneshot::Sender<Option<Parked>>>;

#[derive(Debug)]
enum Slot {
    /// A connection holds the session. `handoff`: the state of the connection it
    /// superseded, when that one ended before it could answer the kick.
    Live {
        generation: u64,
        kick: Kick,
        handoff: Option<Box<Parked>>,
    },
    Parked {
        generation: u64,
        parked: Box<Parked>,
    },
}

/// What a claim found.
#[derive(Debug)]
pub enum Previous {
    /// No session with this client identifier.
    None,
    /// A parked session.
    Parked(Box<Parked>),
    /// A live connection: kick it to get its state. A stale handoff found there (a
    /// session nobody resumed) is for the caller to end.
    Live(Kick, Option<Box<Parked>>),
}

/// The MQTT side of a realm: its client sessions, live and parked, and its statistics.
#[derive(Debug)]
pub struct Registry {
    realm: Arc<Realm>,
    clients: Mutex<HashMap<String, Slot>>,
    next_generation: AtomicU64,
    /// MQTT statistics of the realm (`$SYS`).
    pub stats: Stats,
    sys_started: AtomicBool,
    /// Connections waiting for the session they claimed on another cluster entry.
    claims: Mutex<HashMap<String, Claimed>>,
}

/// Where a claimed session is handed to its new connection (`None`: nothing to resume).
pub type Claimed = oneshot::Sender<Option<Box<Parked>>>;

/// What ending a session here for another cluster entry found.
#[derive(Debug)]
pub enum Evicted {
    /// The session, to hand over.
    Session(Box<Parked>),
    /// No session outlives the connection here.
    Nothing,
    /// The connection did not hand its session over in time: its state is unknown.
    Unknown,
}

/// How long a live connection asked for its session (a takeover here, or for another
/// cluster entry) is waited for.
const TAKEOVER_WAIT_MS: u64 = 5_000;

/// What a live connection asked for its session answered.
#[derive(Debug)]
pub enum Handed {
    /// Its session (expiry > 0).
    Session(Box<Parked>),
    /// Its session ended with it (expiry 0), or it ended before it could answer.
    Ended,
    /// No answer in time.
    Late,
}

/// Asks a live connection to give up its session (it sends DISCONNECT 0x8E).
pub async fn ask_for_session(kick: Kick) -> Handed {
    let (reply, answer) = oneshot::channel();
    if kick.send(reply).is_err() {
        return Handed::Ended;
    }
    match tokio::time::timeout(Duration::from_millis(TAKEOVER_WAIT_MS), answer).await {
        Ok(Ok(Some(parked))) => Handed::Session(Box::new(parked)),
        Ok(_) => Handed::Ended,
        Err(_) => Handed::Late,
    }
}

impl Registry {
    /// An empty registry of `realm`'s MQTT clients.
    pub fn new(realm: Arc<Realm>) -> Self {
        Self {
            realm,
            clients: Mutex::default(),
            next_generation: AtomicU64::default(),
            stats: Stats::default(),
            sys_started: AtomicBool::default(),
            claims: Mutex::default(),
        }
    }

    /// The realm these clients are in.
    pub fn realm(&self) -> &Arc<Realm> {
        &self.realm
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // Poisoned only if a holder panicked; every critical section here is panic-free.
        crate::locks::lock(&self.clients)
    }

    /// Registers a new live connection for `client_id`: its generation and what was there.
    pub fn claim(&self, client_id: &str, kick: Kick) -> (u64, Previous) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
        let slot = Slot::Live {
            generation,
            kick,
            handoff: None,
        };
        let previous = self.clients().insert(client_id.to_owned(), slot);
        let previous = match previous {
            None => Previous::None,
            Some(Slot::Parked { parked, .. }) => Previous::Parked(parked),
            Some(Slot::Live { kick, handoff, .. }) => Previous::Live(kick, handoff),
        };
        (generation, previous)
    }

    /// Parks a session whose connection ended. If another connection has claimed the
    /// client identifier meanwhile, the state is left there for it to take over
    /// ([`Registry::take_handoff`]); it is given back only if that is impossible (the
    /// caller then ends the session).
    pub fn park(
        self: &Arc<Self>,
        client_id: &str,
        generation: u64,
        mut parked: Box<Parked>,
    ) -> Result<(), Box<Parked>> {
        let expiry_ms = u64::from(parked.expiry_secs) * 1000;
        let will_delay_ms = parked.will.as_ref().map(|w| u64::from(w.delay_secs) * 1000);
        parked.parked_ms = self.realm().shared().edge.now_ms();
        {
            let mut clients = self.clients();
            match clients.get_mut(client_id) {
                Some(Slot::Live { generation: g, .. }) if *g == generation => {}
                Some(Slot::Live { handoff, .. }) if handoff.is_none() => {
                    *handoff = Some(parked);
                    return Ok(());
                }
                _ => return Err(parked),
            }
            super::persist::persist_parked(&self.realm, client_id, &parked);
            clients.insert(client_id.to_owned(), Slot::Parked { generation, parked });
        }
        arm_expiry(self, client_id, generation, will_delay_ms, expiry_ms);
        Ok(())
    }

    /// Parks a session restored from the store at start (`persist.rs`): its will waits
    /// `will_delay_ms` more, the session `expiry_ms` more.
    pub fn restore(
        self: &Arc<Self>,
        client_id: &str,
        parked: Box<Parked>,
        will_delay_ms: Option<u64>,
        expiry_ms: u64,
    ) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.clients()
            .insert(client_id.to_owned(), Slot::Parked { generation, parked });
        arm_expiry(self, client_id, generation, will_delay_ms, expiry_ms);
    }

    /// Removes the slot of a connection whose session ended with it; a handoff still
    /// there (never taken) is returned for the caller to end.
    pub fn release(&self, client_id: &str, generation: u64) -> Option<Box<Parked>> {
        let mut clients = self.clients();
        let own = matches!(clients.get(client_id), Some(Slot::Live { generation: g, .. }) if *g == generation);
        if !own {
            return None;
        }
        match clients.remove(client_id) {
            Some(Slot::Live { handoff, .. }) => handoff,
            _ => None,
        }
    }

    /// The state a superseded connection left for this one (see [`Registry::park`]).
    pub fn take_handoff(&self, client_id: &str, generation: u64) -> Option<Box<Parked>> {
        match self.clients().get_mut(client_id) {
            Some(Slot::Live {
                generation: g,
                handoff,
                ..
            }) if *g == generation => handoff.take(),
            _ => None,
        }
    }

    /// A connection of `client_id` waits for the session it claimed on another cluster
    /// entry: the answer, from [`Registry::take_claim`]'s holder.
    pub fn await_claim(&self, client_id: &str) -> oneshot::Receiver<Option<Box<Parked>>> {
        let (claimed, answer) = oneshot::channel();
        crate::locks::lock(&self.claims).insert(client_id.to_owned(), claimed);
        answer
    }

    /// The connection waiting for `client_id`'s claimed session, if it still waits.
    pub fn take_claim(&self, client_id: &str) -> Option<Claimed> {
        crate::locks::lock(&self.claims).remove(client_id)
    }

    /// Ends this node's hold on `client_id`'s session for a connection on another cluster
    /// entry: a live connection is closed (DISCONNECT 0x8E, as for a takeover here) and
    /// hands its state over once its received publishes are settled; a parked session is
    /// taken as it is.
    pub async fn evict(&self, client_id: &str) -> Evicted {
        // A live connection's slot stays, under a generation of its own, while it ends: if
        // it ends on its own meanwhile (its client went away), it leaves its state there
        // (`park`'s handoff), as for a takeover here.
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
        let kick = {
            let mut clients = self.clients();
            match clients.remove(client_id) {
                None => return Evicted::Nothing,
                Some(Slot::Parked { parked, .. }) => return Evicted::Session(parked),
                Some(Slot::Live { kick, handoff, .. }) => {
                    if let Some(stale) = handoff {
                        self.realm.leave(stale.handle.info.id);
                    }
                    let (placeholder, _) = oneshot::channel();
                    let slot = Slot::Live {
                        generation,
                        kick: placeholder,
                        handoff: None,
                    };
                    clients.insert(client_id.to_owned(), slot);
                    kick
                }
            }
        };
        let answer = ask_for_session(kick).await;
        let left = self.release(client_id, generation);
        match answer {
            Handed::Session(parked) => Evicted::Session(parked),
            // Expiry 0, or the connection ended on its own: what it left, if anything.
            Handed::Ended => left.map_or(Evicted::Nothing, Evicted::Session),
            Handed::Late => Evicted::Unknown,
        }
    }

    /// Whether a connection or parked session here serves `client_id`, or a connection
    /// waits for its claim.
    pub fn serves(&self, client_id: &str) -> bool {
        self.clients().contains_key(client_id)
            || crate::locks::lock(&self.claims).contains_key(client_id)
    }

    /// Clients known: (connected, parked).
    pub fn counts(&self) -> (usize, usize) {
        let clients = self.clients();
        let parked = clients
            .values()
            .filter(|s| matches!(s, Slot::Parked { .. }))
            .count();
        (clients.len() - parked, parked)
    }

    /// Whether the `$SYS` publisher of this realm still has to be started (true once).
    pub fn start_sys(&self) -> bool {
        !self.sys_started.swap(true, Ordering::AcqRel)
    }

    fn take_parked(&self, client_id: &str, generation: u64) -> Option<Box<Parked>> {
        let mut clients = self.clients();
        match clients.get(client_id) {
            Some(Slot::Parked { generation: g, .. }) if *g == generation => {}
            _ => return None,
        }
        match clients.remove(client_id) {
            Some(Slot::Parked { parked, .. }) => Some(parked),
            _ => None,
        }
    }

    fn take_will(
        &self,
        client_id: &str,
        generation: u64,
    ) -> Option<(super::session::Will, crate::realm::SessionHandle)> {
        let mut clients = self.clients();
        match clients.get_mut(client_id) {
            Some(Slot::Parked {
                generation: g,
                parked,
            }) if *g == generation => parked.will.take().map(|w| (w, parked.handle.clone())),
            _ => None,
        }
    }
}

fn arm_expiry(
    registry: &Arc<Registry>,
    client_id: &str,
    generation: u64,
    will_delay_ms: Option<u64>,
    expiry_ms: u64,
) {
    use crate::timers::Timer;
    let timers = &registry.realm.shared().timers;
    if let Some(delay_ms) = will_delay_ms.filter(|d| *d < expiry_ms) {
        let will = Timer::MqttWill {
            registry: Arc::downgrade(registry),
            client: client_id.to_owned(),
            generation,
        };
        timers.schedule_in(delay_ms, will);
    }
    let expiry = Timer::MqttExpiry {
        registry: Arc::downgrade(registry),
        client: client_id.to_owned(),
        generation,
    };
    timers.schedule_in(expiry_ms, expiry);
}

/// A parked session's will delay passed: its will is published, unless the client came
/// back (the generation changed) or the will is gone.
pub(crate) fn will_delay_passed(registry: &Arc<Registry>, client_id: &str, generation: u64) {
    if let Some((will, handle)) = registry.take_will(client_id, generation) {
        will.publish(&registry.realm, &handle);
        registry.persist_parked(client_id, generation);
    }
}

/// A parked session expired: it ends (its will, if still held, is published), unless the
/// client came back.
pub(crate) fn expired(registry: &Arc<Registry>, client_id: &str, generation: u64) {
    if let Some(parked) = registry.take_parked(client_id, generation) {
        let realm = &registry.realm;
        tracing::debug!(client = %client_id, "persistent session expired");
        super::persist::forget(realm, client_id, parked.handle.info.id);
        if let Some(will) = parked.will {
            will.publish(realm, &parked.handle);
        }
        realm.leave(parked.handle.info.id);
    }
}

impl Registry {
    /// Ends the parked session whose realm session ID is `session` (the admin API's kick of
    /// a session no connection serves): as if it expired now, its will (delayed or not) is
    /// published, its stored record deleted and it leaves the realm. `false` if no parked
    /// session has this ID (it is connected, or gone).
    pub fn end_parked(&self, session: crate::realm::SessionId) -> bool {
        let parked = {
            let mut clients = self.clients();
            let client_id = clients.iter().find_map(|(client_id, slot)| match slot {
                Slot::Parked { parked, .. } if parked.handle.info.id == session => {
                    Some(client_id.clone())
                }
                _ => None,
            });
            match client_id.and_then(|id| clients.remove(&id).map(|slot| (id, slot))) {
                Some((client_id, Slot::Parked { parked, .. })) => Some((client_id, parked)),
                _ => None,
            }
        };
        let Some((client_id, parked)) = parked else {
            return false;
        };
        tracing::info!(client = %client_id, session, "parked MQTT session ended by the administrator");
        let realm = &self.realm;
        super::persist::forget(realm, &client_id, parked.handle.info.id);
        if let Some(will) = parked.will {
            will.publish(realm, &parked.handle);
        }
        realm.leave(parked.handle.info.id);
        true
    }

    /// Rewrites the stored record of a parked session (its will was published).
    fn persist_parked(&self, client_id: &str, generation: u64) {
        if let Some(Slot::Parked {
            generation: g,
            parked,
        }) = self.clients().get(client_id)
        {
            if *g == generation {
                super::persist::persist_parked(&self.realm, client_id, parked);
            }
        }
    }
}
