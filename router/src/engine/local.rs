//! [`LocalEngine`]: one process orders every publish itself.
//!
//! IDs come from a [`LocalSequencer`] with the cluster's ID format (`fox_sequencer::id`);
//! the realm applies and fans out each publication under its order lock right away, and
//! with `--data` the history / retained write is queued to the group committer in the same
//! order, so an acknowledgement waits for the fsync of the group it went into.
//!
//! Retained writes and the sync service (`when` / `watch` / `will`) go through the same
//! [`Applier`] a cluster entry runs over the permanent log: here every record it would
//! read from the log is applied at once, under the realm's order lock, with the next ID,
//! and so is every record it asks the log for (the wake of a parked write, a will). One
//! implementation decides a conditional write on one node and on every entry of a cluster.
//!
//! ```text
//! publish_conditional --Record::Publish{kv}--> Applier::apply --Keys::deliver--> Target::apply
//! publish (retained)  --Record::Publish------>    |  Resolve: the writer's answer (now, or
//! session_ended       --Record::SessionEnded-->   |    a parked writer's, through a channel)
//!                     <--Submit: Wake / Will------   (applied at once, with the next ID)
//! ```

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fox_sequencer::PermanentId;
use fox_wamp_proto::Value;
use tokio::sync::oneshot;

use super::record::{self, Conditional, Owner, Record};
use super::{unix_ms, Ack, Draft, Engine, EngineError, KvOutcome, StoreWrite, Target};
use crate::durable::Durable;
use crate::follow::applier::{Action, Applier, Keys, Refused};
use crate::locks::lock;
use crate::message::{KvWrite, Publication, PublishOptions, SessionId};
use crate::topic::Topic;

/// The largest permanent ID (a valid WAMP ID): the sequencer's, defined once.
pub const PERMANENT_ID_MAX: u64 = PermanentId::MAX.0;

/// Strictly increasing permanent IDs for this process. Lock-free.
#[derive(Debug, Default)]
pub struct LocalSequencer {
    last: AtomicU64,
}

impl LocalSequencer {
    /// A sequencer whose first ID is greater than `last`.
    pub fn resume_after(last: u64) -> Self {
        Self {
            last: AtomicU64::new(last),
        }
    }

    /// The last ID handed out (0 before the first).
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// The next ID: `max(last + 1, floor)`, where the floor is the cluster's
    /// ([`PermanentId::floor_at_unix_ms`]: ms since 2020-01-01, shifted by 12 bits). A store
    /// written with the older `unix_ms << 12` floor keeps working: its last ID is above
    /// today's floor, so IDs go on from it, one by one, and still only increase.
    pub fn next(&self, now_ms: u64) -> u64 {
        let floor = PermanentId::floor_at_unix_ms(now_ms).0;
        let mut last = self.last.load(Ordering::Acquire);
        loop {
            let id = floor.max(last + 1);
            // The floor stops 2^32 IDs short of 2^53 (FLOOR_HEADROOM), so a saturated clock
            // still leaves room; IDs increase, which is the property every consumer needs.
            debug_assert!(id > last);
            match self
                .last
                .compare_exchange_weak(last, id, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return id,
                Err(actual) => last = actual,
            }
        }
    }
}

/// The applier's name for this node and its life: a single node is the only entry of its
/// log, and its sessions never outlive the process (the store keeps their wills).
const NODE: u32 = 0;
const LIFE: u64 = 1;

/// A parked write's answer: the ID it was applied with and its store write, or why not.
type Verdict = Result<(u64, Option<StoreWrite>), EngineError>;

/// The single-node engine: a local sequencer, the sync service's applier, and the store
/// with `--data`.
#[derive(Debug)]
pub struct LocalEngine {
    sequencer: LocalSequencer,
    durable: Option<Arc<Durable>>,
    /// Taken after a realm's order lock, never before it.
    sync: Mutex<SyncState>,
}

/// The sync service of a single node.
#[derive(Debug)]
struct SyncState {
    applier: Applier,
    /// The answers owed to parked writers, by token.
    parked: HashMap<u64, oneshot::Sender<Verdict>>,
    next_token: u64,
    /// Sessions (realm, session) that wrote a will or parked a write: their end is applied.
    holders: HashSet<(String, SessionId)>,
    /// Keys whose will the store holds (`--data`).
    stored_wills: HashSet<(String, Topic)>,
}

impl LocalEngine {
    /// An engine whose IDs follow `last_id`, writing through `durable` (`--data`) if given.
    pub fn new(last_id: u64, durable: Option<Arc<Durable>>) -> Self {
        Self {
            sequencer: LocalSequencer::resume_after(last_id),
            durable,
            sync: Mutex::new(SyncState {
                applier: Applier::new(NODE, LIFE),
                parked: HashMap::new(),
                next_token: 0,
                holders: HashSet::new(),
                stored_wills: HashSet::new(),
            }),
        }
    }

    /// Queues the store's write of an ordered publication (`--data`): a session's message
    /// goes to the history (and the retained table); a router-written retained value too
    /// (a will that fired: else a restart would bring back the value it replaced), unless
    /// its topic is the router's (`$SYS`); other router messages (meta events) are not
    /// stored.
    fn store(
        &self,
        realm: &str,
        publication: &Publication,
        by_session: bool,
        retain: bool,
        now_ms: u64,
    ) -> Option<StoreWrite> {
        let durable = self.durable.as_ref()?;
        if by_session {
            Some(durable.record(realm, publication, retain, now_ms))
        } else if retain && !publication.topic.is_system() {
            Some(durable.record_retained(realm, publication, now_ms))
        } else {
            None
        }
    }

    /// Applies `record` (ID `id`, written by `publisher`) and then every record the applier
    /// asks the log for meanwhile (wakes of parked writes, wills of ended sessions), each
    /// with the next ID; keeps the store's wills in step; answers the parked writers whose
    /// verdict came, and returns the verdict on `token` (the caller's own write), if any.
    fn run(
        &self,
        sync: &mut SyncState,
        keys: &Applied<'_>,
        (id, publisher, record): (u64, SessionId, Record),
        token: Option<u64>,
    ) -> Option<Result<Ack, Refused>> {
        let name = keys.realm.name();
        let mut queue = VecDeque::from([(id, publisher, record)]);
        let mut touched: Vec<Topic> = Vec::new();
        let mut mine = None;
        while let Some((id, publisher, record)) = queue.pop_front() {
            match &record {
                Record::Publish { publication, .. }
                | Record::Wake { publication, .. }
                | Record::Will { publication, .. } => {
                    touched.push(publication.topic.clone());
                }
                Record::SessionEnded { .. } => touched.extend(
                    sync.stored_wills
                        .iter()
                        .filter(|(realm, _)| realm == name)
                        .map(|(_, topic)| topic.clone()),
                ),
                _ => {}
            }
            let find = |realm: &str| (realm == name).then_some(keys);
            for action in sync.applier.apply(id, publisher, record, find, keys.now_ms) {
                match action {
                    Action::Resolve { token: t, outcome } => {
                        let write = outcome.as_ref().ok().and_then(|id| keys.take_write(*id));
                        if Some(t) == token {
                            mine = Some(outcome.map(|id| match write {
                                Some(write) => Ack::Stored(id, write),
                                None => Ack::Ready(id),
                            }));
                        } else if let Some(answer) = sync.parked.remove(&t) {
                            let verdict =
                                outcome
                                    .map(|id| (id, write))
                                    .map_err(|refused| match refused {
                                        Refused::NotAccepted => EngineError::NotAccepted,
                                        Refused::SessionEnded => EngineError::Stopped,
                                    });
                            let _ = answer.send(verdict);
                        }
                    }
                    Action::Submit { publisher, record } => {
                        let id = self.sequencer.next(keys.now_ms);
                        match record::decode(id, publisher, &record) {
                            Some(record) => queue.push_back((id, publisher, record)),
                            None => tracing::error!(
                                id,
                                "the sync service asked for a record it cannot read"
                            ),
                        }
                    }
                    // One node: no leases, members, claims or fencing.
                    _ => {}
                }
            }
        }
        self.keep_wills(sync, name, touched);
        mine
    }

    /// Writes to the store (`--data`) the wills of `topics` as the applier now holds them,
    /// so that a will still fires after the process dies (at the next start).
    fn keep_wills(&self, sync: &mut SyncState, realm: &str, mut topics: Vec<Topic>) {
        let Some(durable) = &self.durable else {
            return;
        };
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            let key = (realm.to_owned(), topic);
            match sync.applier.will(realm, &key.1) {
                Some(will) => {
                    durable.record_will(realm, &key.1, Some(will));
                    sync.stored_wills.insert(key);
                }
                None => {
                    if sync.stored_wills.remove(&key) {
                        durable.record_will(realm, &key.1, None);
                    }
                }
            }
        }
    }

    fn owner(session: SessionId) -> Owner {
        Owner {
            node: NODE,
            incarnation: LIFE,
            session,
        }
    }
}

/// The realm as the applier sees it during one call: deliveries are applied under the
/// order lock the caller holds, and their store writes kept for the answers.
struct Applied<'a> {
    engine: &'a LocalEngine,
    realm: &'a dyn Target,
    now_ms: u64,
    writes: RefCell<Vec<(u64, StoreWrite)>>,
}

impl<'a> Applied<'a> {
    fn new(engine: &'a LocalEngine, realm: &'a dyn Target, now_ms: u64) -> Self {
        Self {
            engine,
            realm,
            now_ms,
            writes: RefCell::new(Vec::new()),
        }
    }

    /// The store write of the delivery of `id`, if it made one.
    fn take_write(&self, id: u64) -> Option<StoreWrite> {
        let mut writes = self.writes.borrow_mut();
        let at = writes.iter().position(|(w, _)| *w == id)?;
        Some(writes.swap_remove(at).1)
    }
}

impl Keys for &Applied<'_> {
    fn value(&self, topic: &Topic) -> Value {
        self.realm.value(topic)
    }

    fn deliver(
        &self,
        publication: Publication,
        publisher: Option<SessionId>,
        options: &PublishOptions,
    ) {
        // The applier names the router's own writes (a will) session 0.
        let publisher = publisher.filter(|&session| session != 0);
        let publication = Arc::new(publication);
        let (name, retain) = (self.realm.name(), options.retain);
        let by_session = publisher.is_some();
        let stored = self
            .engine
            .store(name, &publication, by_session, retain, self.now_ms);
        if let Some(write) = stored {
            self.writes.borrow_mut().push((publication.id, write));
        }
        self.realm.apply(&publication, publisher, options);
    }
}

/// The answer to a parked write: once it is applied (and stored), or why not.
fn parked_answer(verdict: oneshot::Receiver<Verdict>) -> Ack {
    Ack::Remote(Box::pin(async move {
        match verdict.await.unwrap_or(Err(EngineError::Stopped))? {
            (id, Some(write)) => Ack::Stored(id, write).wait().await,
            (id, None) => Ok(id),
        }
    }))
}

impl Engine for LocalEngine {
    fn publish(&self, realm: &dyn Target, draft: Draft<'_>) -> Ack {
        // One clock read per publish, outside the lock: the ID only needs ms granularity.
        let now_ms = unix_ms();
        let _order = realm.order();
        let id = self.sequencer.next(now_ms);
        if draft.options.retain {
            // A retained write cancels its key's will and may wake the writes parked on
            // it: the sync service applies it.
            let (publication, publisher, options) = draft.into_owned(id);
            let record = Record::Publish {
                realm: realm.name().to_owned(),
                publication,
                options: options.clone(),
                kv: None,
            };
            let keys = Applied::new(self, realm, now_ms);
            let session = publisher.map_or(0, |p| p.id);
            let _ = self.run(&mut lock(&self.sync), &keys, (id, session, record), None);
            return keys
                .take_write(id)
                .map_or(Ack::Ready(id), |write| Ack::Stored(id, write));
        }
        let (publication, publisher, options) = draft.into_publication(id);
        let stored = self.store(
            realm.name(),
            &publication,
            publisher.is_some(),
            false,
            now_ms,
        );
        realm.apply(&publication, publisher.map(|p| p.id), options);
        match stored {
            Some(write) => Ack::Stored(id, write),
            None => Ack::Ready(id),
        }
    }

    fn publish_conditional(
        &self,
        realm: &dyn Target,
        draft: Draft<'_>,
        write: &KvWrite,
    ) -> KvOutcome {
        let now_ms = unix_ms();
        let _order = realm.order();
        let mut sync = lock(&self.sync);
        let id = self.sequencer.next(now_ms);
        let (publication, publisher, options) = draft.into_owned(id);
        let session = publisher.map_or(0, |p| p.id);
        sync.next_token += 1;
        let token = sync.next_token;
        if write.watch || write.will.is_some() {
            sync.holders.insert((realm.name().to_owned(), session));
        }
        let record = Record::Publish {
            realm: realm.name().to_owned(),
            publication,
            options: options.clone(),
            kv: Some(Conditional {
                write: write.clone(),
                owner: Self::owner(session),
                token,
            }),
        };
        let keys = Applied::new(self, realm, now_ms);
        match self.run(&mut sync, &keys, (id, session, record), Some(token)) {
            Some(Ok(ack)) => KvOutcome::Applied(ack),
            Some(Err(_)) => KvOutcome::Refused,
            None => {
                let (answer, verdict) = oneshot::channel();
                sync.parked.insert(token, answer);
                KvOutcome::Parked(parked_answer(verdict))
            }
        }
    }

    fn session_ended(&self, realm: &dyn Target, session: SessionId, abnormal: bool) {
        let now_ms = unix_ms();
        let _order = realm.order();
        let mut sync = lock(&self.sync);
        if !sync.holders.remove(&(realm.name().to_owned(), session)) {
            return;
        }
        let record = Record::SessionEnded {
            realm: realm.name().to_owned(),
            owner: Self::owner(session),
            abnormal,
        };
        let keys = Applied::new(self, realm, now_ms);
        // The end takes no ID of its own: it delivers nothing (its wills take theirs).
        let at = self.sequencer.last();
        let _ = self.run(&mut sync, &keys, (at, session, record), None);
    }

    fn last_applied(&self) -> u64 {
        self.sequencer.last()
    }

    fn durable(&self) -> Option<&Arc<Durable>> {
        self.durable.as_ref()
    }
}

#[cfg(test)]
mod tests;
