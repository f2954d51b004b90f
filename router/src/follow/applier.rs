//! The sync service of a cluster entry: retained keys, `when` / `watch` / `will`, decided
//! by applying the permanent log.
//!
//! Every entry applies the same records in the same order, so every entry reaches the same
//! verdict on every conditional write and holds the same derived state: the retained table
//! (in the realm), the parked writes and the wills (here). Nothing here reads a clock or a
//! random number: the follower passes `now_ms`, which only paces this entry's own requests.
//!
//! ```text
//! record ----------> Applier::apply ---> Keys::deliver (retained table, history, fan-out)
//!   Publish (kv)       decide `when`      Action::Resolve  (this entry's writer's answer)
//!   Wake / Will        against the key    Action::Submit   (a wake of a parked write of this
//!   SessionEnded       and the writes                       entry's session, a will of its
//!   EntryStarted       parked before it                     dead session: back to the log)
//! ```
//!
//! A parked write cannot take an ID of its own when it wakes (IDs are the log's), so the
//! entry of its writer asks the log for it again (Wake): applied if it is still the first
//! parked write whose condition holds. Until then, the key is reserved for it: a new
//! conditional write parks behind it or is refused, first come first served as on one node.
//! A dead session's wills are written the same way (Will), one record per key. Requests
//! that got lost (the entry's publish timed out) are asked again by [`Applier::tick`].
//!
//! Leases: every entry writes a Beat record every [`BEAT_MS`]. The log is its own clock (a
//! permanent ID is the time of its vote, DESIGN.md): when a record is applied whose time is
//! more than [`LEASE_MS`] past an entry's last beat, that entry's lease has expired *at that
//! point of the log*, on every entry alike. Its sessions with keys end there (their wills
//! fire, written by the lowest entry whose lease is live), and any later conditional write
//! of that incarnation is refused: the incarnation is its fencing epoch. The entry itself
//! stops its sessions with keys before that can happen (`follow::SELF_FENCE_MS` after the
//! last beat it saw ordered), and when it applies its own expiry it starts a new life
//! ([`Action::Fenced`]).
//!
//! A stall is not a death: when the whole log stops (every ndb's disk stalls, the sync
//! tier pauses), no record is decided, and the first one after it is far later in log time
//! than every entry's last beat. Under lease rule 2 ([`LEASE_RULE`]) the lease counts log
//! time without stalls: of the gap between two consecutive records, only
//! [`STALL_GAP_MS`] counts. While any entry lives its beats are at most [`BEAT_MS`]
//! apart, so a dead entry's lease still lapses [`LEASE_MS`] after its last beat; a log
//! that stopped for everyone expires nobody. (The entry's own `SELF_FENCE_MS` still counts
//! real time: it cannot tell a stall from a partition that cuts it off alone.) Every start
//! and beat names the rule of its binary, and rule 2 holds at a record only when every live
//! lease's last start or beat named it: a cluster that still runs an older binary decides
//! by rule 1, as that binary does.

// A sans-IO core: time, randomness and tasks come from its caller (router/clippy.toml).
#![deny(clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashMap, VecDeque};

use fox_wamp_proto::Value;

use crate::engine::record::{Conditional, Owner, Record};
use crate::message::{Payload, Publication, PublishOptions, SessionId};
use crate::topic::Topic;

/// Parked writes per key at most (as on one node); more are refused.
pub const PARKED_PER_KEY_MAX: usize = 10_000;

/// A request to the log not answered by its record within this time is asked again.
pub const ASK_AGAIN_MS: u64 = 3_000;

/// How often an entry writes a Beat record.
pub const BEAT_MS: u64 = 300;

/// An entry whose last beat is older than this, in log time, has lost its lease.
pub const LEASE_MS: u64 = 1_500;

/// The lease rule this binary applies and names in its starts and beats: 1, log time as it
/// is; 2, log time without stalls (the module's comment).
pub const LEASE_RULE: u64 = 2;

/// Under lease rule 2, the most of the gap between two consecutive records that counts
/// toward a lease: above [`BEAT_MS`], so that a log carried by live entries' beats counts
/// in full.
pub const STALL_GAP_MS: u64 = 500;

/// The time of permanent ID `id` (Unix ms): its vote's, to the ms (DESIGN.md's ID format).
pub fn log_time_ms(id: u64) -> u64 {
    (id >> fox_sequencer::PermanentId::TIME_SHIFT_BITS)
        .saturating_add(fox_sequencer::PermanentId::EPOCH_UNIX_MS)
}

/// What the applier needs of a realm.
pub trait Keys {
    /// The value of retained key `topic`, as conditions see it.
    fn value(&self, topic: &Topic) -> Value;
    /// Applies an ordered message: retained table, history, fan-out.
    fn deliver(
        &self,
        publication: Publication,
        publisher: Option<SessionId>,
        options: &PublishOptions,
    );
}

/// A change of an entry's membership, decided at a point of the log.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Change {
    /// Its lease began (a start, or the first beat this log shows of that life).
    Joined,
    /// It stopped cleanly.
    Left,
    /// Its lease expired.
    Lost,
}

impl Change {
    /// The name events and member states carry.
    pub fn name(self) -> &'static str {
        match self {
            Change::Joined => "joined",
            Change::Left => "left",
            Change::Lost => "lost",
        }
    }
}

/// What the follower does for the applier.
#[derive(Debug, PartialEq, Clone)]
pub enum Action {
    /// An entry's membership changed at record `at`.
    Member {
        /// The entry.
        node: u32,
        /// Its life.
        incarnation: u64,
        /// What happened.
        change: Change,
        /// The record at which it happened.
        at: u64,
    },
    /// The coordinator changed at record `at` (`None`: no entry's lease is live).
    Coordinator {
        /// The entry with the lowest rank, then ID, among those whose lease is live.
        node: Option<u32>,
        /// The record at which it changed.
        at: u64,
    },
    /// The verdict on this entry's conditional write `token`: applied with this ID, or not
    /// accepted (`Err`).
    Resolve {
        /// The write's token.
        token: u64,
        /// The ID it was applied with.
        outcome: Result<u64, Refused>,
    },
    /// This entry's own lease expired in the log: its sessions with keys are gone
    /// everywhere; it must end them here and start a new life.
    Fenced,
    /// This entry's MQTT session of `client` was claimed by `claimer` (a connection to
    /// another entry): end it here and write its last state (a handover).
    MqttTakeOver {
        /// Realm.
        realm: String,
        /// The MQTT client identifier.
        client: String,
        /// The claiming session.
        claimer: Owner,
    },
    /// This entry's claim of `client`'s session is answered: resume from `body` (`None`:
    /// nothing to resume).
    MqttResume {
        /// Realm.
        realm: String,
        /// The MQTT client identifier.
        client: String,
        /// The claiming session.
        claimer: Owner,
        /// The session's last state.
        body: Option<Vec<u8>>,
    },
    /// The entry that served `client`'s session is gone and nobody claimed it: this entry
    /// parks it from its last state (`body`), publishes its will when due, ends it when it
    /// expires, and hands it over when its client comes back.
    MqttAdopt {
        /// Realm.
        realm: String,
        /// The MQTT client identifier.
        client: String,
        /// The session's last state.
        body: Vec<u8>,
    },
    /// A record this entry hands to the log, in `publisher`'s order.
    Submit {
        /// The session whose order it keeps (0: the router's).
        publisher: SessionId,
        /// The record.
        record: Vec<u8>,
    },
}

/// Why a conditional write was not applied.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Refused {
    /// Its `when` did not hold and it was not to be parked (or too many were parked).
    NotAccepted,
    /// Its session ended while it was parked.
    SessionEnded,
}

#[derive(Debug)]
struct Parked {
    /// The Publish record that parked it.
    id: u64,
    publication: Publication,
    options: PublishOptions,
    kv: Conditional,
}

#[derive(Debug)]
struct Will {
    owner: Owner,
    payload: Payload,
    /// Its session is gone: the will is to be written.
    dead: bool,
}

/// A session's testament, held until it is published.
#[derive(Debug)]
struct Testament {
    publication: Publication,
    options: PublishOptions,
    /// Its session is gone: the testament is to be published.
    dead: bool,
}

/// A testament's key: its owner (node, incarnation, session) and its index.
type TestamentKey = (u32, u64, SessionId, u32);

fn testament_key(owner: &Owner, index: u32) -> TestamentKey {
    (owner.node, owner.incarnation, owner.session, index)
}

fn owner_of(key: &TestamentKey) -> Owner {
    Owner {
        node: key.0,
        incarnation: key.1,
        session: key.2,
    }
}

#[derive(Debug, Default)]
struct RealmKv {
    parked: HashMap<Topic, VecDeque<Parked>>,
    wills: HashMap<Topic, Will>,
    testaments: BTreeMap<TestamentKey, Testament>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Ask {
    Wake(u64),
    Will(String, Topic),
    Testament(String, TestamentKey),
}

/// The derived state of the sync service on one entry, and its requests to the log.
#[derive(Debug)]
pub struct Applier {
    node: u32,
    incarnation: u64,
    realms: HashMap<String, RealmKv>,
    /// The last incarnation each entry announced: sessions of earlier ones are gone.
    started: HashMap<u32, u64>,
    /// Live leases: entry -> (incarnation, log time of its last beat).
    leases: HashMap<u32, (u64, u64)>,
    /// Per live lease, the rule its last start or beat named and the stalled log time
    /// ([`LogClock::stalled_ms`]) at that beat.
    marks: HashMap<u32, leases::Mark>,
    /// The log time of the last record applied, and how much of it was stalls.
    clock: leases::LogClock,
    /// Per entry, the highest incarnation whose lease expired: its sessions are gone.
    expired: HashMap<u32, u64>,
    /// Entries' ranks for the coordinator (absent: 0).
    ranks: HashMap<u32, u32>,
    /// The coordinator as of the last record.
    coordinator: Option<u32>,
    /// This entry's requests not answered yet, and when they were made (not derived state).
    asked: HashMap<Ask, u64>,
    /// MQTT sessions: who serves each, and its last state.
    sessions: sessions::Sessions,
    /// Some will or testament may be dead (to be written): only then does
    /// [`Applier::ask_wills`] look through them, not on every record.
    dying: bool,
    /// Checkpoints taken (`None`: none are kept), and the log-time period of the last
    /// record applied.
    checkpoints: Option<VecDeque<Checkpoint>>,
    period: u64,
}

impl Applier {
    /// The applier of entry `node` in its life `incarnation`.
    pub fn new(node: u32, incarnation: u64) -> Self {
        Self {
            node,
            incarnation,
            realms: HashMap::new(),
            started: HashMap::new(),
            leases: HashMap::new(),
            marks: HashMap::new(),
            clock: leases::LogClock::default(),
            expired: HashMap::new(),
            ranks: HashMap::new(),
            coordinator: None,
            asked: HashMap::new(),
            sessions: sessions::Sessions::default(),
            dying: false,
            checkpoints: None,
            period: 0,
        }
    }

    /// Shares the set of MQTT clients whose sessions the log holds (the engine asks it).
    pub fn with_known(mut self, known: sessions::Known) -> Self {
        self.sessions.share(known);
        self
    }

    /// How many MQTT sessions the log holds.
    pub fn mqtt_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The will held on key `topic` of `realm` while its writer lives: a single node keeps
    /// it in its store too, so that it still fires after the process dies.
    pub fn will(&self, realm: &str, topic: &Topic) -> Option<&Payload> {
        let will = self.realms.get(realm)?.wills.get(topic)?;
        (!will.dead).then_some(&will.payload)
    }

    /// With the entries' ranks for the coordinator (`cluster.toml` `rank`).
    pub fn with_ranks(mut self, ranks: HashMap<u32, u32>) -> Self {
        self.ranks = ranks;
        self
    }

    /// This entry's new life (after it was fenced): its writers answer by it from now on.
    pub fn set_incarnation(&mut self, incarnation: u64) {
        self.incarnation = incarnation;
    }

    /// Applies record `id` (written by session `publisher`); `realm` finds a realm by name
    /// (`None`: not configured here, the record is skipped).
    pub fn apply<K: Keys>(
        &mut self,
        id: u64,
        publisher: SessionId,
        record: Record,
        realm: impl Fn(&str) -> Option<K>,
        now_ms: u64,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        self.tick_clock(id);
        self.apply_one(id, publisher, record, &realm, now_ms, &mut out);
        self.expire(id, &realm, now_ms, &mut out);
        self.coordinate(id, &mut out);
        self.ask_wills(now_ms, &mut out);
        self.checkpoint(id);
        out
    }

    /// One record's own effect (what follows every record is in [`Applier::apply`]).
    // Long, as a dispatch is: one arm per record kind, handing its fields to its method.
    fn apply_one<K: Keys>(
        &mut self,
        id: u64,
        publisher: SessionId,
        record: Record,
        realm: &impl Fn(&str) -> Option<K>,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        match record {
            Record::Publish {
                realm: name,
                publication,
                options,
                kv,
            } => {
                let Some(keys) = realm(&name) else {
                    tracing::warn!(id, realm = %name, "record of a realm that is not configured");
                    return;
                };
                match kv {
                    None => {
                        self.deliver(&name, &keys, publication, publisher, &options, now_ms, out);
                    }
                    Some(kv) => {
                        let write = Parked {
                            id,
                            publication,
                            options,
                            kv,
                        };
                        self.conditional(&name, &keys, write, now_ms, out);
                    }
                }
            }
            Record::Wake {
                realm: name,
                publication,
                options,
                parked,
                kv: _,
            } => {
                self.asked.remove(&Ask::Wake(parked));
                if let Some(keys) = realm(&name) {
                    let written = (publication, options);
                    self.wake(&name, &keys, (parked, id), written, now_ms, out);
                }
            }
            Record::Will {
                realm: name,
                publication,
                owner,
            } => self.apply_will(&name, publication, owner, realm, now_ms, out),
            Record::Testament {
                realm: name,
                owner,
                index,
                publication,
                options,
                fired,
            } => {
                let key = testament_key(&owner, index);
                let testament = (publication, options);
                if fired {
                    self.fire_testament(&name, key, testament, realm, now_ms, out);
                } else {
                    self.keep_testament(&name, key, testament);
                }
            }
            Record::TestamentsFlushed { realm: name, owner } => {
                let of_owner = |k: &TestamentKey| owner_of(k) == owner;
                self.state(&name).testaments.retain(|k, _| !of_owner(k));
            }
            Record::SessionEnded {
                realm: name,
                owner,
                abnormal,
            } => {
                let touched = self.end(&name, |o| *o == owner, abnormal, out);
                if let Some(keys) = realm(&name) {
                    for topic in touched {
                        self.check_wakes(&name, &topic, &keys, now_ms, out);
                    }
                }
                self.ask_wills(now_ms, out);
            }
            Record::Beat {
                node,
                incarnation,
                rule,
            } => self.renew((node, incarnation), rule, id, out),
            Record::EntryLeft { node, incarnation } => {
                self.end_lease((node, incarnation), Change::Left, id, realm, now_ms, out);
            }
            Record::MqttSession {
                realm: name,
                client,
                owner,
                body,
                handover,
            } => self.mqtt_state((name, client), owner, body, handover, out),
            Record::MqttClaim {
                realm: name,
                client,
                owner,
            } => self.mqtt_claim((name, client), owner, now_ms, out),
            Record::EntryStarted {
                node,
                incarnation,
                rule,
            } => {
                self.entry_started((node, incarnation), rule, id, realm, now_ms, out);
            }
        }
    }

    /// Asks again what the log did not answer within [`ASK_AGAIN_MS`].
    pub fn tick<K: Keys>(&mut self, realm: impl Fn(&str) -> Option<K>, now_ms: u64) -> Vec<Action> {
        self.asked
            .retain(|_, asked| now_ms.saturating_sub(*asked) < ASK_AGAIN_MS);
        let mut out = Vec::new();
        self.mqtt_tick(now_ms, &mut out);
        let keys: Vec<(String, Topic)> = self
            .realms
            .iter()
            .flat_map(|(name, st)| st.parked.keys().map(move |t| (name.clone(), t.clone())))
            .collect();
        for (name, topic) in keys {
            if let Some(k) = realm(&name) {
                self.check_wakes(&name, &topic, &k, now_ms, &mut out);
            }
        }
        self.ask_wills(now_ms, &mut out);
        self.realms.retain(|_, st| {
            !st.parked.is_empty() || !st.wills.is_empty() || !st.testaments.is_empty()
        });
        out
    }
}

mod checkpoint;
mod kv;
mod leases;
pub mod sessions;
pub(crate) mod snapshot;

pub use checkpoint::{Checkpoint, CHECKPOINTS_KEPT, CHECKPOINT_MS};

#[cfg(test)]
mod tests;
