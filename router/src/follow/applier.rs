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

// A sans-IO core: time, randomness and tasks come from its caller (router/clippy.toml).
#![deny(clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashMap, VecDeque};

use fox_wamp_proto::Value;

use crate::engine::record::{self, Conditional, Owner, Record};
use crate::message::{MessageProperties, Payload, Publication, PublishOptions, SessionId};
use crate::realm::sync::fits;
use crate::topic::Topic;

/// Parked writes per key at most (as on one node); more are refused.
pub const PARKED_PER_KEY_MAX: usize = 10_000;

/// A request to the log not answered by its record within this time is asked again.
pub const ASK_AGAIN_MS: u64 = 3_000;

/// How often an entry writes a Beat record.
pub const BEAT_MS: u64 = 300;

/// An entry whose last beat is older than this, in log time, has lost its lease.
pub const LEASE_MS: u64 = 1_500;

/// An entry that keeps checkpoints ([`Applier::with_checkpoints`]) takes one at the first
/// record of every period this long of log time.
pub const CHECKPOINT_MS: u64 = 5_000;

/// Checkpoints kept (the newest).
pub const CHECKPOINTS_KEPT: usize = 12;

/// The digest of the derived state after one record: every entry that applied the log
/// through `at` has the same `digest` there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    /// The record.
    pub at: u64,
    /// [`Applier::digest`] after it.
    pub digest: u64,
}

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

    /// Takes a [`Checkpoint`] at the first record of every [`CHECKPOINT_MS`] of log time
    /// after record `after` (the start of what it applies: 0, or a snapshot's record).
    pub fn with_checkpoints(mut self, after: u64) -> Self {
        self.checkpoints = Some(VecDeque::new());
        self.period = log_time_ms(after) / CHECKPOINT_MS;
        self
    }

    /// The newest checkpoints, oldest first.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        self.checkpoints
            .as_ref()
            .map_or_else(Vec::new, |c| c.iter().copied().collect())
    }

    /// The newest checkpoint.
    pub fn last_checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoints.as_ref()?.back().copied()
    }

    fn checkpoint(&mut self, id: u64) {
        let period = log_time_ms(id) / CHECKPOINT_MS;
        if self.checkpoints.is_none() || period == self.period {
            return;
        }
        self.period = period;
        let digest = self.digest();
        if let Some(kept) = &mut self.checkpoints {
            if kept.len() >= CHECKPOINTS_KEPT {
                kept.pop_front();
            }
            kept.push_back(Checkpoint { at: id, digest });
        }
    }

    /// How many MQTT sessions the log holds.
    pub fn mqtt_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// A digest of the state derived from the log (parked writes, wills, testaments,
    /// entries' lives and leases, the coordinator, MQTT sessions), leaving out what is this
    /// entry's own (its identity, its requests, its claims): every entry that applied the
    /// same records has the same digest, whatever its clock did meanwhile.
    pub fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.digest_lines().hash(&mut hasher);
        hasher.finish()
    }

    /// What [`Applier::digest`] hashes: one line per item of derived state, sorted.
    pub fn digest_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (name, kv) in &self.realms {
            let parked = kv
                .parked
                .iter()
                .filter(|(_, queue)| !queue.is_empty())
                .map(|(topic, queue)| format!("{name} parked {topic:?} {queue:?}"));
            let wills = kv
                .wills
                .iter()
                .map(|(topic, will)| format!("{name} will {topic:?} {will:?}"));
            let testaments = kv
                .testaments
                .iter()
                .map(|(key, t)| format!("{name} testament {key:?} {t:?}"));
            lines.extend(parked.chain(wills).chain(testaments));
        }
        lines.extend(self.started.iter().map(|e| format!("started {e:?}")));
        lines.extend(self.leases.iter().map(|e| format!("lease {e:?}")));
        lines.extend(self.expired.iter().map(|e| format!("expired {e:?}")));
        lines.push(format!("coordinator {:?}", self.coordinator));
        self.sessions.digest_lines(&mut lines);
        lines.sort();
        lines
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

    fn mine(&self, owner: &Owner) -> bool {
        owner.node == self.node && owner.incarnation == self.incarnation
    }

    fn gone(&self, owner: &Owner) -> bool {
        let restarted = self
            .started
            .get(&owner.node)
            .is_some_and(|&started| started > owner.incarnation);
        let expired = self
            .expired
            .get(&owner.node)
            .is_some_and(|&expired| expired >= owner.incarnation);
        restarted || expired
    }

    /// Records that entry `node` in life `incarnation` is alive at record `id`.
    fn renew(&mut self, node: u32, incarnation: u64, id: u64, out: &mut Vec<Action>) {
        if self.expired.get(&node).is_some_and(|&e| e >= incarnation) {
            return; // a beat of a fenced life: too late
        }
        let at_ms = log_time_ms(id);
        let joined = match self.leases.get_mut(&node) {
            Some(lease) if incarnation < lease.0 => false,
            Some(lease) if incarnation == lease.0 => {
                lease.1 = lease.1.max(at_ms);
                false
            }
            _ => {
                self.leases.insert(node, (incarnation, at_ms));
                true
            }
        };
        if joined {
            out.push(Action::Member {
                node,
                incarnation,
                change: Change::Joined,
                at: id,
            });
        }
    }

    /// Ends entry `node`'s lease of life `incarnation` (`change`: left or lost): its
    /// sessions that hold keys end abnormally.
    fn end_lease<K: Keys>(
        &mut self,
        (node, incarnation): (u32, u64),
        change: Change,
        at: u64,
        realm: &impl Fn(&str) -> Option<K>,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let had = self.leases.get(&node).is_some_and(|l| l.0 <= incarnation);
        if had {
            self.leases.remove(&node);
            out.push(Action::Member {
                node,
                incarnation,
                change,
                at,
            });
        }
        let highest = self.expired.entry(node).or_insert(0);
        *highest = (*highest).max(incarnation);
        if change == Change::Lost && node == self.node && incarnation == self.incarnation {
            out.push(Action::Fenced);
        }
        let names: Vec<String> = self.realms.keys().cloned().collect();
        for name in names {
            let gone = |o: &Owner| o.node == node && o.incarnation <= incarnation;
            let touched = self.end(&name, gone, true, out);
            if let Some(keys) = realm(&name) {
                for topic in touched {
                    self.check_wakes(&name, &topic, &keys, now_ms, out);
                }
            }
        }
        self.mqtt_owners_gone(out);
    }

    /// Names the coordinator anew if the live leases changed it.
    fn coordinate(&mut self, at: u64, out: &mut Vec<Action>) {
        let coordinator = self
            .leases
            .keys()
            .min_by_key(|node| (self.ranks.get(node).copied().unwrap_or(0), **node))
            .copied();
        if coordinator != self.coordinator {
            self.coordinator = coordinator;
            out.push(Action::Coordinator {
                node: coordinator,
                at,
            });
        }
    }

    /// Ends the leases whose last beat is more than [`LEASE_MS`] before record `at`'s time.
    fn expire<K: Keys>(
        &mut self,
        at: u64,
        realm: &impl Fn(&str) -> Option<K>,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let at_ms = log_time_ms(at);
        let mut lapsed: Vec<(u32, u64)> = self
            .leases
            .iter()
            .filter(|(_, (_, beat))| at_ms > beat.saturating_add(LEASE_MS))
            .map(|(&node, &(incarnation, _))| (node, incarnation))
            .collect();
        // In node order, not the map's (which differs between entries): leases that lapse
        // at the same record end in the same order everywhere, and so do what each end
        // decides (membership events, who adopts the sessions of the dead).
        lapsed.sort_unstable();
        for (node, incarnation) in lapsed {
            tracing::info!(node, incarnation, "an entry's lease expired in the log");
            self.end_lease((node, incarnation), Change::Lost, at, realm, now_ms, out);
        }
    }

    /// Whether this entry writes the (dead) will of `owner`: its own entry while that one
    /// lives (a session that ended, a restart), else, once that entry's lease expired, the
    /// lowest entry whose lease is live.
    fn writes_will_of(&self, owner: &Owner) -> bool {
        let lapsed = self
            .expired
            .get(&owner.node)
            .is_some_and(|&e| e >= owner.incarnation)
            && !self.leases.contains_key(&owner.node);
        if lapsed {
            if let Some(lowest) = self.leases.keys().min() {
                return *lowest == self.node;
            }
        }
        owner.node == self.node
    }

    fn resolve(&self, kv: &Conditional, outcome: Result<u64, Refused>, out: &mut Vec<Action>) {
        if self.mine(&kv.owner) {
            out.push(Action::Resolve {
                token: kv.token,
                outcome,
            });
        }
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
        self.apply_one(id, publisher, record, &realm, now_ms, &mut out);
        self.expire(id, &realm, now_ms, &mut out);
        self.coordinate(id, &mut out);
        self.ask_wills(now_ms, &mut out);
        self.checkpoint(id);
        out
    }

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
                    Some(kv) => self.conditional(
                        &name,
                        &keys,
                        Parked {
                            id,
                            publication,
                            options,
                            kv,
                        },
                        now_ms,
                        out,
                    ),
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
                let Some(keys) = realm(&name) else {
                    return;
                };
                let topic = publication.topic.clone();
                let value = keys.value(&topic);
                let first = self.first_eligible(&name, &topic, &value);
                if first == Some(parked) {
                    if let Some(woken) = self.unpark(&name, &topic, parked) {
                        if self.write(&name, &keys, publication, &options, &woken.kv) {
                            self.ask_wills(now_ms, out);
                        }
                        self.resolve(&woken.kv, Ok(id), out);
                    }
                }
                self.check_wakes(&name, &topic, &keys, now_ms, out);
            }
            Record::Will {
                realm: name,
                publication,
                owner,
            } => {
                let topic = publication.topic.clone();
                self.asked.remove(&Ask::Will(name.clone(), topic.clone()));
                let Some(keys) = realm(&name) else {
                    return;
                };
                let st = self.state(&name);
                let held = st
                    .wills
                    .get(&topic)
                    .is_some_and(|w| w.owner == owner && w.dead);
                if held {
                    st.wills.remove(&topic);
                    let options = PublishOptions {
                        retain: true,
                        ..PublishOptions::default()
                    };
                    keys.deliver(publication, None, &options);
                    self.check_wakes(&name, &topic, &keys, now_ms, out);
                }
            }
            Record::Testament {
                realm: name,
                owner,
                index,
                publication,
                options,
                fired: false,
            } => {
                // A testament of a session already gone is published at once.
                let dead = self.gone(&owner);
                self.dying |= dead;
                let testament = Testament {
                    publication,
                    options,
                    dead,
                };
                let key = testament_key(&owner, index);
                self.state(&name).testaments.insert(key, testament);
            }
            Record::Testament {
                realm: name,
                owner,
                index,
                publication,
                options,
                fired: true,
            } => {
                let key = testament_key(&owner, index);
                self.asked.remove(&Ask::Testament(name.clone(), key));
                let held = self.state(&name).testaments.remove(&key).is_some();
                if let (true, Some(keys)) = (held, realm(&name)) {
                    let publisher = owner.session;
                    self.deliver(&name, &keys, publication, publisher, &options, now_ms, out);
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
            Record::Beat { node, incarnation } => self.renew(node, incarnation, id, out),
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
            Record::EntryStarted { node, incarnation } => {
                let started = self.started.entry(node).or_insert(0);
                *started = (*started).max(incarnation);
                self.renew(node, incarnation, id, out);
                let names: Vec<String> = self.realms.keys().cloned().collect();
                for name in names {
                    let gone = |o: &Owner| o.node == node && o.incarnation < incarnation;
                    let touched = self.end(&name, gone, true, out);
                    if let Some(keys) = realm(&name) {
                        for topic in touched {
                            self.check_wakes(&name, &topic, &keys, now_ms, out);
                        }
                    }
                }
                self.ask_wills(now_ms, out);
                self.mqtt_owners_gone(out);
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

    /// Delivers a plain (unconditional) publication; a retained one cancels its key's
    /// will and may wake the writes parked on the key.
    #[allow(clippy::too_many_arguments)] // the applier's context, as check_wakes takes it
    fn deliver<K: Keys>(
        &mut self,
        name: &str,
        keys: &K,
        publication: Publication,
        publisher: SessionId,
        options: &PublishOptions,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let topic = publication.topic.clone();
        keys.deliver(publication, Some(publisher), options);
        if options.retain {
            self.state(name).wills.remove(&topic);
            self.check_wakes(name, &topic, keys, now_ms, out);
        }
    }

    fn state(&mut self, realm: &str) -> &mut RealmKv {
        self.realms.entry(realm.to_owned()).or_default()
    }

    fn conditional<K: Keys>(
        &mut self,
        name: &str,
        keys: &K,
        write: Parked,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        if self.gone(&write.kv.owner) {
            // Its entry's lease expired (or the entry restarted) before it was ordered: the
            // fencing epoch refuses it.
            self.resolve(&write.kv, Err(Refused::NotAccepted), out);
            return;
        }
        let topic = write.publication.topic.clone();
        let value = keys.value(&topic);
        let holds = write.kv.write.when.as_ref().is_none_or(|w| fits(w, &value));
        // A parked write whose condition holds is waiting for its wake: the key is its.
        let reserved = self.first_eligible(name, &topic, &value).is_some();
        if holds && !reserved {
            let Parked {
                id,
                publication,
                options,
                kv,
            } = write;
            if self.write(name, keys, publication, &options, &kv) {
                self.ask_wills(now_ms, out);
            }
            self.resolve(&kv, Ok(id), out);
            self.check_wakes(name, &topic, keys, now_ms, out);
            return;
        }
        let queue = self.state(name).parked.entry(topic.clone()).or_default();
        if write.kv.write.watch && queue.len() < PARKED_PER_KEY_MAX {
            queue.push_back(write);
            self.check_wakes(name, &topic, keys, now_ms, out);
        } else {
            if queue.is_empty() {
                self.state(name).parked.remove(&topic);
            }
            self.resolve(&write.kv, Err(Refused::NotAccepted), out);
        }
    }

    /// Applies a conditional write: the retained value and the key's will. Returns whether
    /// the writer is already gone (its will is then to be written at once).
    fn write<K: Keys>(
        &mut self,
        name: &str,
        keys: &K,
        mut publication: Publication,
        options: &PublishOptions,
        kv: &Conditional,
    ) -> bool {
        let topic = publication.topic.clone();
        let dead = self.gone(&kv.owner);
        self.dying |= dead;
        let st = self.state(name);
        match &kv.write.will {
            Some(will) => {
                let will = Will {
                    owner: kv.owner,
                    payload: will.clone(),
                    dead,
                };
                st.wills.insert(topic, will);
            }
            None => {
                st.wills.remove(&topic);
            }
        }
        let mut options = options.clone();
        options.retain = true;
        publication.retain = true;
        keys.deliver(publication, Some(kv.owner.session), &options);
        dead
    }

    /// The ID of the first parked write on `topic` whose condition `value` satisfies.
    fn first_eligible(&self, name: &str, topic: &Topic, value: &Value) -> Option<u64> {
        let queue = self.realms.get(name)?.parked.get(topic)?;
        queue
            .iter()
            .find(|p| p.kv.write.when.as_ref().is_none_or(|w| fits(w, value)))
            .map(|p| p.id)
    }

    fn unpark(&mut self, name: &str, topic: &Topic, id: u64) -> Option<Parked> {
        let st = self.realms.get_mut(name)?;
        let queue = st.parked.get_mut(topic)?;
        let at = queue.iter().position(|p| p.id == id)?;
        let parked = queue.remove(at);
        if queue.is_empty() {
            st.parked.remove(topic);
        }
        parked
    }

    /// If the first parked write on `topic` that may go now is this entry's, asks the log
    /// for its wake (once).
    fn check_wakes<K: Keys>(
        &mut self,
        name: &str,
        topic: &Topic,
        keys: &K,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let value = keys.value(topic);
        let Some(id) = self.first_eligible(name, topic, &value) else {
            return;
        };
        let Some(parked) = self
            .realms
            .get(name)
            .and_then(|st| st.parked.get(topic))
            .and_then(|q| q.iter().find(|p| p.id == id))
        else {
            return;
        };
        if !self.mine(&parked.kv.owner) || self.asked.contains_key(&Ask::Wake(id)) {
            return;
        }
        let record = record::encode_wake(
            name,
            &parked.publication,
            &parked.options,
            parked.id,
            &parked.kv,
        );
        out.push(Action::Submit {
            publisher: parked.kv.owner.session,
            record,
        });
        self.asked.insert(Ask::Wake(id), now_ms);
    }

    /// Ends the sessions `gone` selects: drops their parked writes; fires (`abnormal`) or
    /// forgets their wills. Returns the keys whose parked writes changed.
    fn end(
        &mut self,
        name: &str,
        gone: impl Fn(&Owner) -> bool,
        abnormal: bool,
        out: &mut Vec<Action>,
    ) -> Vec<Topic> {
        let mut dropped = Vec::new();
        let mut touched = Vec::new();
        let Some(st) = self.realms.get_mut(name) else {
            return touched;
        };
        for (topic, queue) in &mut st.parked {
            let before = queue.len();
            queue.retain_mut(|p| {
                if gone(&p.kv.owner) {
                    dropped.push(p.kv.clone());
                    false
                } else {
                    true
                }
            });
            if queue.len() != before {
                touched.push(topic.clone());
            }
        }
        st.parked.retain(|_, q| !q.is_empty());
        // A testament is published however its session ends (GOODBYE or not).
        let mut dying = false;
        for (key, testament) in &mut st.testaments {
            if gone(&owner_of(key)) {
                testament.dead = true;
                dying = true;
            }
        }
        if abnormal {
            for will in st.wills.values_mut().filter(|w| gone(&w.owner)) {
                will.dead = true;
                dying = true;
            }
        } else {
            // A will already to be written (its lease expired) stays so: a later goodbye
            // of the fenced session must not keep its key held.
            st.wills.retain(|_, w| w.dead || !gone(&w.owner));
        }
        self.dying |= dying;
        for kv in dropped {
            self.resolve(&kv, Err(Refused::SessionEnded), out);
        }
        touched
    }

    /// Asks the log to write the wills of this entry's dead sessions (once each).
    fn ask_wills(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        if !self.dying {
            return;
        }
        // Whether any is dead, asked for or not (its entry's lease may end, or the log may
        // not answer, and this entry write it after all).
        let mut dying = false;
        for (name, st) in &self.realms {
            for (topic, will) in &st.wills {
                dying |= will.dead;
                if !will.dead || !self.writes_will_of(&will.owner) {
                    continue;
                }
                let ask = Ask::Will(name.clone(), topic.clone());
                if self.asked.contains_key(&ask) {
                    continue;
                }
                out.push(Action::Submit {
                    publisher: 0,
                    record: will_record(name, topic, will),
                });
                self.asked.insert(ask, now_ms);
            }
            for (key, testament) in &st.testaments {
                let owner = owner_of(key);
                dying |= testament.dead;
                if !testament.dead || !self.writes_will_of(&owner) {
                    continue;
                }
                let ask = Ask::Testament(name.clone(), *key);
                if self.asked.contains_key(&ask) {
                    continue;
                }
                out.push(Action::Submit {
                    publisher: 0,
                    record: record::encode_testament(
                        name,
                        &testament.publication,
                        &testament.options,
                        (&owner, key.3),
                        true,
                    ),
                });
                self.asked.insert(ask, now_ms);
            }
        }
        self.dying = dying;
    }
}

/// The record that writes `will` to key `topic` of `realm` (and names whose it is).
fn will_record(realm: &str, topic: &Topic, will: &Will) -> Vec<u8> {
    let publication = Publication {
        id: 0,
        topic: topic.clone(),
        payload: will.payload.clone(),
        publisher: 0,
        disclosed: None,
        qos: 0,
        retain: true,
        properties: MessageProperties::default(),
    };
    record::encode_will(realm, &publication, &will.owner)
}

pub mod sessions;
pub(crate) mod snapshot;

#[cfg(test)]
mod tests;
