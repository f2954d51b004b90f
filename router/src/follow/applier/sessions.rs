//! MQTT sessions across entries: who serves each client's session, and its last state.
//!
//! The entry serving a session writes its state to the log (`crate::mqtt::persist`'s
//! record, [`Record::MqttSession`]) at CONNECT, after SUBSCRIBE / UNSUBSCRIBE, at most once a
//! second while acknowledgements come in, and when its connection ends. A connection to
//! another entry takes the session over in two steps:
//!
//! ```text
//! new entry:  MqttClaim ------------------> (applied everywhere: the claimer owns it now;
//!                                            later writes of the old owner are ignored)
//! old entry:  applies the claim: ends its connection (DISCONNECT 0x8E) or parked session,
//!             writes its exact last state: MqttSession, handover
//! new entry:  applies the handover: resumes the session from it (Action::MqttResume)
//! ```
//!
//! When the old owner is gone (its lease expired, it restarted or left) there is nobody to
//! hand over: the claimer resumes from the last state written. A claim whose handover does
//! not come within [`CLAIM_WAIT_MS`] of this entry's clock is answered with what is known
//! (that answer is this entry's own; the derived state does not depend on it).
//!
//! Owners are compared by entry and life only: one life of an entry serves a client's
//! session at most once at a time (its registry has one slot per client). A write of a life
//! that never served the session takes it over without a handover: a connection on an entry
//! that had not yet applied the session's first record started it anew; the old owner's
//! entry ends its copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Action, Applier};
use crate::engine::record::{owner_from, owner_value, Owner};
use crate::locks::lock;
use fox_wamp_proto::Value;

/// A claim of this entry not answered by a handover within this time (this entry's clock)
/// resumes from the last state the log holds.
pub const CLAIM_WAIT_MS: u64 = 3_000;

/// A client of a realm: (realm, client identifier).
pub type ClientKey = (String, String);

/// The clients whose sessions the log knows, shared with the engine: a connection of one
/// of them on another entry must claim it.
pub type Known = Arc<Mutex<std::collections::HashSet<ClientKey>>>;

/// One client's session as the log knows it.
#[derive(Debug)]
pub(super) struct Held {
    /// The session serving it.
    owner: Owner,
    /// The last state its owner wrote (`None`: claimed, nothing written since).
    body: Option<Vec<u8>>,
    /// A claim waits for this owner's handover.
    handing: Option<Owner>,
    /// Lives that served the session before a claim: their late writes are ignored.
    superseded: Vec<Owner>,
}

/// Superseded lives remembered per session (the oldest are forgotten first).
const SUPERSEDED_MAX: usize = 8;

impl Held {
    fn supersede(&mut self, owner: Owner) {
        if self.superseded.len() >= SUPERSEDED_MAX {
            self.superseded.remove(0);
        }
        self.superseded.push(owner);
    }
}

/// The MQTT part of the applier's state.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    held: HashMap<ClientKey, Held>,
    /// This entry's claims not answered yet, and when they were applied (not derived state).
    claims: HashMap<ClientKey, (Owner, u64)>,
    known: Option<Known>,
}

fn same_life(a: &Owner, b: &Owner) -> bool {
    a.node == b.node && a.incarnation == b.incarnation
}

impl Sessions {
    pub(super) fn share(&mut self, known: Known) {
        *lock(&known) = self.held.keys().cloned().collect();
        self.known = Some(known);
    }

    fn insert(&mut self, key: ClientKey, held: Held) {
        if let Some(known) = &self.known {
            lock(known).insert(key.clone());
        }
        self.held.insert(key, held);
    }

    fn remove(&mut self, key: &ClientKey) {
        if let Some(known) = &self.known {
            lock(known).remove(key);
        }
        self.held.remove(key);
    }

    /// How many sessions the log holds.
    pub(super) fn len(&self) -> usize {
        self.held.len()
    }

    /// The derived state, one line per session, for [`Applier::digest`].
    pub(super) fn digest_lines(&self, lines: &mut Vec<String>) {
        lines.extend(
            self.held
                .iter()
                .map(|(key, held)| format!("mqtt {key:?} {held:?}")),
        );
    }
}

impl Applier {
    /// A session's state, by `owner`: taken if `owner` serves the session (or nobody
    /// does), or if it is the handover a claim waits for.
    pub(super) fn mqtt_state(
        &mut self,
        key: ClientKey,
        owner: Owner,
        body: Option<Vec<u8>>,
        handover: bool,
        out: &mut Vec<Action>,
    ) {
        let me = Owner {
            node: self.node,
            incarnation: self.incarnation,
            session: 0,
        };
        let sessions = &mut self.sessions;
        let Some(held) = sessions.held.get_mut(&key) else {
            if let (Some(body), false) = (body, handover) {
                let held = Held {
                    owner,
                    body: Some(body),
                    handing: None,
                    superseded: Vec::new(),
                };
                sessions.insert(key, held);
            }
            return;
        };
        if handover {
            if held.handing.is_some_and(|h| same_life(&h, &owner)) {
                held.handing = None;
                held.body = body;
                let claimer = held.owner;
                self.answer_claim(&key, claimer, out);
            }
            return;
        }
        if held.superseded.iter().any(|s| same_life(s, &owner)) {
            // A late write of an owner that was claimed from (it had not applied the claim).
            return;
        }
        if !same_life(&held.owner, &owner) {
            let previous = held.owner;
            held.supersede(previous);
            if same_life(&previous, &me) && !same_life(&owner, &me) {
                out.push(Action::MqttTakeOver {
                    realm: key.0.clone(),
                    client: key.1.clone(),
                    claimer: owner,
                });
            }
        }
        held.owner = owner;
        match body {
            Some(body) => held.body = Some(body),
            None => sessions.remove(&key),
        }
    }

    /// `claimer` takes the session over: its old owner, if alive, hands it over.
    pub(super) fn mqtt_claim(
        &mut self,
        key: ClientKey,
        claimer: Owner,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let previous = self.sessions.held.get(&key).map(|h| h.owner);
        let handing = previous.filter(|p| !same_life(p, &claimer) && !self.gone(p));
        let (body, mut superseded) = match self.sessions.held.get_mut(&key) {
            Some(held) => (held.body.take(), std::mem::take(&mut held.superseded)),
            None => (None, Vec::new()),
        };
        let mut held = Held {
            owner: claimer,
            body,
            handing,
            superseded: Vec::new(),
        };
        superseded.extend(previous.filter(|p| !same_life(p, &claimer)));
        // A life that claims the session back serves it again.
        superseded.retain(|s| !same_life(s, &claimer));
        for owner in superseded {
            held.supersede(owner);
        }
        self.sessions.insert(key.clone(), held);
        if self.mine(&claimer) {
            self.sessions.claims.insert(key.clone(), (claimer, now_ms));
        }
        match handing {
            Some(previous) if self.mine(&previous) => out.push(Action::MqttTakeOver {
                realm: key.0,
                client: key.1,
                claimer,
            }),
            Some(_) => {}
            None => self.answer_claim(&key, claimer, out),
        }
    }

    /// Claims waiting for owners that are gone now are answered with the last state; the
    /// sessions those owners served with nobody claiming them are adopted by the entry that
    /// writes the dead's wills (the lowest live one, or a restarted entry its own): it
    /// parks them, publishes their wills when due and ends them when they expire.
    pub(super) fn mqtt_owners_gone(&mut self, out: &mut Vec<Action>) {
        let orphans: Vec<(ClientKey, Owner)> = self
            .sessions
            .held
            .iter()
            .filter(|(_, h)| h.handing.is_none() && h.body.is_some())
            .filter(|(_, h)| self.gone(&h.owner))
            .map(|(k, h)| (k.clone(), h.owner))
            .collect();
        for (key, owner) in orphans {
            let Some(adopter) = self.adopter_of(&owner) else {
                continue; // no entry lives: a claim resumes it from its last state
            };
            let mine = self.mine(&adopter);
            let Some(held) = self.sessions.held.get_mut(&key) else {
                continue;
            };
            held.supersede(owner);
            held.owner = adopter;
            if mine {
                let body = held.body.clone().unwrap_or_default();
                out.push(Action::MqttAdopt {
                    realm: key.0,
                    client: key.1,
                    body,
                });
            }
        }
        let waiting: Vec<(ClientKey, Owner)> = self
            .sessions
            .held
            .iter()
            .filter_map(|(k, h)| Some((k.clone(), h.handing?, h.owner)))
            .filter(|(_, handing, _)| self.gone(handing))
            .map(|(k, _, claimer)| (k, claimer))
            .collect();
        for (key, claimer) in waiting {
            if let Some(held) = self.sessions.held.get_mut(&key) {
                held.handing = None;
            }
            self.answer_claim(&key, claimer, out);
        }
    }

    /// The life that adopts the sessions of `owner`, which is gone: that entry's new life
    /// if it restarted and lives, else the lowest entry whose lease is live.
    fn adopter_of(&self, owner: &Owner) -> Option<Owner> {
        let life = |node: u32| {
            self.leases.get(&node).map(|&(incarnation, _)| Owner {
                node,
                incarnation,
                session: 0,
            })
        };
        let restarted = life(owner.node).filter(|l| l.incarnation > owner.incarnation);
        restarted.or_else(|| self.leases.keys().min().and_then(|&node| life(node)))
    }

    /// This entry's claims whose handover did not come in time resume from what is known.
    pub(super) fn mqtt_tick(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let late: Vec<(ClientKey, Owner)> = self
            .sessions
            .claims
            .iter()
            .filter(|(_, (_, at))| now_ms.saturating_sub(*at) >= CLAIM_WAIT_MS)
            .map(|(k, (claimer, _))| (k.clone(), *claimer))
            .collect();
        for (key, claimer) in late {
            tracing::warn!(realm = %key.0, client = %key.1, "no handover of a claimed MQTT session came in time: resuming from its last recorded state");
            self.answer_claim(&key, claimer, out);
        }
    }

    fn answer_claim(&mut self, key: &ClientKey, claimer: Owner, out: &mut Vec<Action>) {
        let Some((asked, _)) = self.sessions.claims.remove(key) else {
            return;
        };
        if asked != claimer {
            return;
        }
        let body = self.sessions.held.get(key).and_then(|h| h.body.clone());
        out.push(Action::MqttResume {
            realm: key.0.clone(),
            client: key.1.clone(),
            claimer,
            body,
        });
    }
}

impl Sessions {
    /// The sessions held, encoded (claims are this entry's own: not kept).
    pub(super) fn snapshot(&self) -> Value {
        let mut held: Vec<_> = self.held.iter().collect();
        held.sort_by(|a, b| a.0.cmp(b.0));
        Value::List(
            held.into_iter()
                .map(|((realm, client), h)| {
                    Value::List(vec![
                        Value::from(realm.as_str()),
                        Value::from(client.as_str()),
                        owner_value(&h.owner),
                        h.body.clone().map_or(Value::Null, Value::Bytes),
                        h.handing.as_ref().map_or(Value::Null, owner_value),
                        Value::List(h.superseded.iter().map(owner_value).collect()),
                    ])
                })
                .collect(),
        )
    }

    /// Takes the sessions of [`Self::snapshot`] (the shared set of known clients too).
    pub(super) fn restore(&mut self, held: Vec<Value>) -> Option<()> {
        for session in held {
            let parts = <[Value; 6]>::try_from(super::snapshot::list(Some(session))?).ok()?;
            let [realm, client, owner, body, handing, superseded] = parts;
            let key = (realm.as_str()?.to_owned(), client.as_str()?.to_owned());
            let body = match body {
                Value::Null => None,
                Value::Bytes(bytes) => Some(bytes),
                _ => return None,
            };
            let handing = match handing {
                Value::Null => None,
                owner => Some(owner_from(Some(owner))?),
            };
            let superseded = super::snapshot::list(Some(superseded))?
                .into_iter()
                .map(|o| owner_from(Some(o)))
                .collect::<Option<Vec<_>>>()?;
            let held = Held {
                owner: owner_from(Some(owner))?,
                body,
                handing,
                superseded,
            };
            self.insert(key, held);
        }
        Some(())
    }
}
