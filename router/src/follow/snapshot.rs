//! A cluster entry's snapshot of the state it derives from the permanent log, so that a
//! restart does not replay the log from its start.
//!
//! An entry whose `cluster.toml` node has `data` writes `snapshot.msgpack` there after
//! every `[router] snapshot_records` records it applied (10,000 by default; at least as
//! many records as the last snapshot held messages, so that the cost of snapshots stays a
//! bounded share of the cost of applying the log), and every [`SNAPSHOT_EVERY_MS`] while
//! fewer came. The follower only takes the snapshot (it shares the messages); encoding and
//! writing it are a blocking task's. A snapshot is taken between two records, in
//! the log follower (the only task that applies the log), so every part of it stands at
//! the same record `at`:
//!
//! - the applier's state ([`Applier::snapshot`]: parked writes, wills, testaments, entries'
//!   lives and leases, the coordinator, MQTT sessions);
//! - each realm's retained messages and in-memory history (as the log's records encode
//!   them; the router's own `$` topics are left out: each entry publishes those itself);
//! - the membership its system topics show.
//!
//! It is written to a temporary file, fsynced, and renamed over the last one, so a crash
//! leaves the old snapshot or the new one, never half of one. At start the entry reads it,
//! puts the state back, and follows the log after `at`; a snapshot it cannot read (another
//! format, another node, damaged) is set aside with a warning and the log is replayed from
//! its start. The entry's own requests to the log (wakes, wills, claims not answered yet)
//! are not kept: its new life asks again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fox_wamp_proto::{Dict, Value};

use super::applier::{snapshot::list, Applier};
use super::members::Membership;
use crate::durable::encode;
use crate::engine::record::{self, Record};
use crate::message::{Publication, PublishOptions};
use crate::router::Router;

/// A snapshot is also written this long after the last one when any record came since.
pub const SNAPSHOT_EVERY_MS: u64 = 30_000;

/// The file's name in the entry's `data` directory.
pub const FILE: &str = "snapshot.msgpack";

/// The file format's version.
const VERSION: u64 = 1;

/// What an entry's snapshots did since it started (for `/api/v1/cluster` and metrics).
#[derive(Debug, Default)]
pub struct SnapshotStats {
    /// The record the last snapshot written stands at (0: none written yet).
    pub at: AtomicU64,
    /// Its size, in bytes.
    pub bytes: AtomicU64,
    /// When it was written (Unix ms).
    pub written_ms: AtomicU64,
    /// Snapshots written.
    pub writes: AtomicU64,
    /// Snapshots that could not be written.
    pub failures: AtomicU64,
}

impl SnapshotStats {
    fn written(&self, at: u64, bytes: usize) {
        self.at.store(at, Ordering::Release);
        self.bytes.store(bytes as u64, Ordering::Release);
        self.written_ms
            .store(crate::engine::unix_ms(), Ordering::Release);
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where and how often an entry writes its snapshots.
#[derive(Debug)]
pub struct Snapshots {
    dir: PathBuf,
    stats: Arc<SnapshotStats>,
    node: u32,
    every_records: u64,
    /// Records applied since the last snapshot.
    since: u64,
    /// Messages the last snapshot held: the next one waits for at least as many records,
    /// so that writing snapshots costs a bounded share of applying the log however large
    /// the state grows.
    last_messages: u64,
    last: Instant,
    /// A snapshot is being written (the next one waits for it).
    writing: Arc<AtomicBool>,
}

/// What a snapshot gave back at start.
#[derive(Debug)]
pub struct Restored {
    /// The last record it covers: the log is followed after it.
    pub at: u64,
    /// The applier, with this entry's identity.
    pub applier: Applier,
    /// Retained messages and history messages put back, over all realms.
    pub messages: usize,
}

impl Snapshots {
    /// Snapshots of entry `node` in `dir`, every `every_records` records, counted in
    /// `stats`.
    pub fn new(dir: PathBuf, node: u32, every_records: u64, stats: Arc<SnapshotStats>) -> Self {
        Self {
            dir,
            stats,
            node,
            every_records: every_records.max(1),
            since: 0,
            last_messages: 0,
            last: Instant::now(),
            writing: Arc::default(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Reads the last snapshot and puts the realms' state and the membership back; the
    /// applier comes back for entry `node`'s life `incarnation`. `None`: there is none, or
    /// it cannot be read (set aside, with a warning: the log is replayed from its start).
    pub fn load(
        &self,
        router: &Router,
        membership: &mut Membership,
        incarnation: u64,
    ) -> Option<Restored> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read the snapshot; replaying the log from its start");
                return None;
            }
        };
        let restored = self.read(&bytes, router, membership, incarnation);
        if restored.is_none() {
            let aside = path.with_extension("unreadable");
            tracing::warn!(path = %path.display(), aside = %aside.display(), "the snapshot cannot be read; set aside, replaying the log from its start");
            let _ = std::fs::rename(&path, &aside);
        }
        restored
    }

    fn read(
        &self,
        bytes: &[u8],
        router: &Router,
        membership: &mut Membership,
        incarnation: u64,
    ) -> Option<Restored> {
        let Value::Dict(mut s) = rmp_serde::from_slice::<Value>(bytes).ok()? else {
            return None;
        };
        if s.remove("v")?.as_u64()? != VERSION
            || s.remove("node")?.as_u64()? != u64::from(self.node)
        {
            return None;
        }
        let at = s.remove("at")?.as_u64()?;
        let Value::Bytes(applier) = s.remove("applier")? else {
            return None;
        };
        let applier = Applier::restore(self.node, incarnation, &applier)?;
        // Everything is read before anything is put back: a damaged snapshot changes nothing.
        let mut realms = Vec::new();
        for realm in list(s.remove("realms"))? {
            let Value::Dict(mut realm) = realm else {
                return None;
            };
            let name = realm.remove("name")?.as_str()?.to_owned();
            let retained = publications(&name, realm.remove("retained"))?;
            let history = publications(&name, realm.remove("history"))?;
            realms.push((name, retained, history));
        }
        let mut restored_membership = Membership::new(Vec::new());
        restored_membership.restore(s.remove("membership")?)?;
        membership.restore(restored_membership.snapshot())?;
        let mut messages = 0;
        for (name, retained, history) in realms {
            let Some(realm) = router.realm(&name) else {
                tracing::warn!(realm = %name, "a realm of the snapshot is not configured here; its state is skipped");
                continue;
            };
            messages += retained.len() + history.len();
            for publication in retained {
                realm.memory().restore_retained(publication);
            }
            for publication in history {
                realm.memory().restore_history(publication);
            }
        }
        Some(Restored {
            at,
            applier,
            messages,
        })
    }

    /// One more record (`at`) was applied: writes a snapshot when one is due.
    pub fn applied(
        &mut self,
        router: &Router,
        applier: &Applier,
        membership: &Membership,
        at: u64,
    ) {
        self.since += 1;
        if self.since >= self.every_records.max(self.last_messages) {
            self.write(router, applier, membership, at);
        }
    }

    /// The follower's tick: writes a snapshot when records came and the last is old.
    pub fn tick(&mut self, router: &Router, applier: &Applier, membership: &Membership, at: u64) {
        let old = self.last.elapsed() >= Duration::from_millis(SNAPSHOT_EVERY_MS);
        if self.since > 0 && old {
            self.write(router, applier, membership, at);
        }
    }

    /// Takes a snapshot at record `at` (here, between two records) and writes it in the
    /// background; skipped while the previous one is still being written.
    fn write(&mut self, router: &Router, applier: &Applier, membership: &Membership, at: u64) {
        if self.writing.swap(true, Ordering::AcqRel) {
            return;
        }
        let captured = capture(self.node, router, applier, membership, at);
        self.since = 0;
        self.last_messages = captured.messages();
        self.last = Instant::now();
        let (path, writing, stats) = (self.path(), self.writing.clone(), self.stats.clone());
        tokio::task::spawn_blocking(move || {
            store(&path, &captured.encode(), at, &stats);
            writing.store(false, Ordering::Release);
        });
    }

    /// The last snapshot, at a clean stop: written now (waiting for one in progress), so
    /// that the next start applies nothing twice.
    pub async fn write_last(
        &mut self,
        router: &Router,
        applier: &Applier,
        membership: &Membership,
        at: u64,
    ) {
        while self.writing.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let captured = capture(self.node, router, applier, membership, at);
        let (path, stats) = (self.path(), self.stats.clone());
        let _ =
            tokio::task::spawn_blocking(move || store(&path, &captured.encode(), at, &stats)).await;
    }
}

fn store(path: &Path, bytes: &[u8], at: u64, stats: &SnapshotStats) {
    match write_atomically(path, bytes) {
        Ok(()) => {
            stats.written(at, bytes.len());
            tracing::debug!(at, bytes = bytes.len(), "snapshot written");
        }
        Err(error) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(path = %path.display(), %error, "cannot write the snapshot");
        }
    }
}

/// The entry's derived state at record `at`, taken between two records: the applier's
/// part encoded (it is small), the realms' messages only shared (encoding them, which costs
/// in proportion to the history, is [`Captured::encode`]'s, off the log follower).
fn capture(
    node: u32,
    router: &Router,
    applier: &Applier,
    membership: &Membership,
    at: u64,
) -> Captured {
    let realms = router
        .realms()
        .into_iter()
        .map(|realm| {
            let (retained, history) = realm.memory().derived();
            (realm.name.clone(), retained, history)
        })
        .collect();
    Captured {
        node,
        at,
        applier: applier.snapshot(),
        membership: membership.snapshot(),
        realms,
    }
}

/// A snapshot taken, not yet encoded.
struct Captured {
    node: u32,
    at: u64,
    applier: Vec<u8>,
    membership: Value,
    realms: Vec<RealmMessages>,
}

/// A realm's name, retained messages and history.
type RealmMessages = (String, Vec<Arc<Publication>>, Vec<Arc<Publication>>);

impl Captured {
    /// Messages it holds, over all realms.
    fn messages(&self) -> u64 {
        let count = |(_, retained, history): &RealmMessages| retained.len() + history.len();
        self.realms.iter().map(count).sum::<usize>() as u64
    }
}

impl Captured {
    fn encode(self) -> Vec<u8> {
        let realms = self
            .realms
            .iter()
            .map(|(name, retained, history)| {
                let encoded = |messages: &Vec<Arc<Publication>>| {
                    Value::List(
                        messages
                            .iter()
                            .map(|p| publication_value(name, p))
                            .collect(),
                    )
                };
                let mut d = Dict::new();
                d.insert("name".into(), Value::from(name.as_str()));
                d.insert("retained".into(), encoded(retained));
                d.insert("history".into(), encoded(history));
                Value::Dict(d)
            })
            .collect();
        let mut s = Dict::new();
        s.insert("v".into(), Value::from(VERSION));
        s.insert("node".into(), Value::from(self.node));
        s.insert("at".into(), Value::from(self.at));
        s.insert("applier".into(), Value::Bytes(self.applier));
        s.insert("realms".into(), Value::List(realms));
        s.insert("membership".into(), self.membership);
        encode(&Value::Dict(s))
    }
}

/// A message as the log's record of it: [id, publisher, record].
fn publication_value(realm: &str, p: &Publication) -> Value {
    let options = PublishOptions {
        retain: p.retain,
        disclose_me: p.disclosed.is_some(),
        qos: p.qos,
        ..PublishOptions::default()
    };
    Value::List(vec![
        Value::from(p.id),
        Value::from(p.publisher),
        Value::Bytes(record::encode_publish(realm, p, &options, None)),
    ])
}

fn publications(realm: &str, value: Option<Value>) -> Option<Vec<Publication>> {
    list(value)?
        .into_iter()
        .map(|item| {
            let [id, publisher, bytes] = <[Value; 3]>::try_from(list(Some(item))?).ok()?;
            let Value::Bytes(bytes) = bytes else {
                return None;
            };
            match record::decode(id.as_u64()?, publisher.as_u64()?, &bytes)? {
                Record::Publish {
                    realm: of,
                    publication,
                    ..
                } if of == realm => Some(publication),
                _ => None,
            }
        })
        .collect()
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
