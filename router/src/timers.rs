//! The router's timers: a closed set ([`Timer`]) on one deadline-ordered wheel per router
//! ([`Timers`], in [`crate::realm::Shared`]), driven by one task, instead of a
//! `tokio::spawn(sleep)` per call.
//!
//! Deadlines are read on the realm's [`Edge`](crate::realm::edge::Edge) monotonic clock,
//! so a test with virtual time moves the clock and calls [`Timers::fire_due`] itself; the
//! driver task ([`Timers::schedule_in`] starts it on the first timer, when there is a tokio
//! runtime) sleeps until the earliest deadline, or until an earlier one is scheduled.
//!
//! ```text
//! dealer:        QueuedCall (a queued call's timeout), Invocation (a call's timeout)
//! MQTT registry: MqttWill (a parked session's will delay), MqttExpiry (its expiry)
//! ```

// A core: time, randomness and tasks come from its caller (router/clippy.toml).
#![deny(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use fox_wamp_proto::Id;

use crate::locks::lock;
use crate::message::SessionId;
use crate::realm::edge::Edge;
use crate::realm::Realm;

/// Everything the router waits for.
#[derive(Debug)]
pub enum Timer {
    /// A call queued for a busy procedure (`call_queue` limits) was not started in time.
    QueuedCall {
        /// Its realm.
        realm: Weak<Realm>,
        /// The registration it waits for.
        registration: Id,
        /// The caller and its request.
        caller: SessionId,
        /// The CALL's request ID.
        request: Id,
    },
    /// An invocation's `timeout` passed.
    Invocation {
        /// Its realm.
        realm: Weak<Realm>,
        /// (callee, invocation ID).
        key: (SessionId, Id),
    },
    /// A parked MQTT session's will delay passed.
    MqttWill {
        /// The realm's MQTT registry.
        registry: Weak<crate::mqtt::Registry>,
        /// The client.
        client: String,
        /// The parked session's generation (a client that came back has another).
        generation: u64,
    },
    /// A parked MQTT session expired.
    MqttExpiry {
        /// The realm's MQTT registry.
        registry: Weak<crate::mqtt::Registry>,
        /// The client.
        client: String,
        /// The parked session's generation.
        generation: u64,
    },
}

impl Timer {
    fn fire(self) {
        match self {
            Timer::QueuedCall {
                realm,
                registration,
                caller,
                request,
            } => {
                if let Some(realm) = realm.upgrade() {
                    realm.queued_call_timed_out(registration, caller, request);
                }
            }
            Timer::Invocation { realm, key } => {
                if let Some(realm) = realm.upgrade() {
                    realm.call_timed_out(key);
                }
            }
            Timer::MqttWill {
                registry,
                client,
                generation,
            } => {
                if let Some(registry) = registry.upgrade() {
                    crate::mqtt::will_delay_passed(&registry, &client, generation);
                }
            }
            Timer::MqttExpiry {
                registry,
                client,
                generation,
            } => {
                if let Some(registry) = registry.upgrade() {
                    crate::mqtt::session_expired(&registry, &client, generation);
                }
            }
        }
    }
}

/// The wheel: timers by deadline (monotonic ms), then by the order they were scheduled.
#[derive(Debug)]
pub struct Timers {
    edge: Arc<dyn Edge>,
    queue: Mutex<Wheel>,
    /// An earlier deadline was scheduled: the driver looks again.
    earlier: tokio::sync::Notify,
    driving: AtomicBool,
    me: Weak<Timers>,
}

#[derive(Debug, Default)]
struct Wheel {
    timers: BTreeMap<(u64, u64), Timer>,
    scheduled: u64,
}

impl Timers {
    /// A wheel on `edge`'s monotonic clock.
    pub fn new(edge: Arc<dyn Edge>) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            edge,
            queue: Mutex::default(),
            earlier: tokio::sync::Notify::new(),
            driving: AtomicBool::new(false),
            me: me.clone(),
        })
    }

    /// Fires `timer` in `ms` milliseconds (on the edge's clock).
    pub fn schedule_in(&self, ms: u64, timer: Timer) {
        let at = self.edge.monotonic_ms().saturating_add(ms);
        let earliest = {
            let mut wheel = lock(&self.queue);
            wheel.scheduled += 1;
            let key = (at, wheel.scheduled);
            wheel.timers.insert(key, timer);
            wheel.timers.keys().next() == Some(&key)
        };
        self.drive();
        if earliest {
            self.earlier.notify_one();
        }
    }

    /// Fires every timer whose deadline passed; returns how many.
    pub fn fire_due(&self) -> usize {
        let due = self.take_due(self.edge.monotonic_ms());
        let fired = due.len();
        for timer in due {
            timer.fire();
        }
        fired
    }

    /// Timers waiting.
    pub fn len(&self) -> usize {
        lock(&self.queue).timers.len()
    }

    /// Whether no timer waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take_due(&self, now_ms: u64) -> Vec<Timer> {
        let mut wheel = lock(&self.queue);
        let later = wheel.timers.split_off(&(now_ms.saturating_add(1), 0));
        std::mem::replace(&mut wheel.timers, later)
            .into_values()
            .collect()
    }

    fn next_deadline(&self) -> Option<u64> {
        lock(&self.queue).timers.keys().next().map(|(at, _)| *at)
    }

    /// Starts the driver task once, when there is a runtime to run it (a test without one
    /// calls [`Timers::fire_due`]).
    fn drive(&self) {
        if self.driving.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.driving.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(me) = self.me.upgrade() {
            runtime.spawn(run(me));
        }
    }
}

/// The driver: fires what is due, then sleeps until the next deadline or an earlier one.
async fn run(wheel: Arc<Timers>) {
    loop {
        let earlier = wheel.earlier.notified();
        tokio::pin!(earlier);
        earlier.as_mut().enable();
        wheel.fire_due();
        let wait = wheel
            .next_deadline()
            .map(|at| at.saturating_sub(wheel.edge.monotonic_ms()).max(1));
        match wait {
            Some(ms) => {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    () = &mut earlier => {}
                }
            }
            None => earlier.await,
        }
    }
}
