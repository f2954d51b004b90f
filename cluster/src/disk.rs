//! How ndb and sync records are laid out in a [`NodeStore`], and read back at start.
//!
//! ```text
//! ndb   temp         segment (16 bytes)      -> postcard (owner, messages)
//!       resolutions  index (u64 BE)          -> postcard Resolution
//!       log          permanent ID (u64 BE)   -> postcard Publication
//!       meta         "applied_index"         -> u64 BE
//! sync  raft_log     raft index (u64 BE)     -> protobuf Entry (after the snapshot only)
//!       raft_state   "hard_state"            -> protobuf HardState
//!                    "conf_state"            -> protobuf ConfState (voters; checked at start)
//!                    "snapshot"              -> postcard SyncSnapshot (the latest)
//!       resolutions  index (u64 BE)          -> postcard Resolution (the resolution log)
//! ```
//!
//! A sync snapshot taken locally is written (and fsynced) first; the entries it covers
//! are deleted by the next batch (`SyncWrite::CompactLog`), so there is never a moment
//! without either. A leader's snapshot replaces the whole log in one atomic batch.
//!
//! Applying a resolution is one batch: the resolution, its log records, the applied index,
//! and the deletion of the temporary segment. Recovery hands the state machines records
//! in an order their `recover` accepts: ndb temp segments then resolutions by index; sync
//! the latest snapshot and the resolutions it counts, then the Raft log after the snapshot
//! up to the first gap, then the hard state.

use fox_sequencer::sync::SyncSnapshot;
use fox_sequencer::{
    DecidedSegment, LogRecord, Message, NdbEvent, NdbWrite, NodeId, Outcome, Publication,
    Resolution, SyncWrite,
};
use fox_sequencer::{NdbBase, SegmentId};
use fox_storage::{u64_from_key, u64_key, NodeBatch, NodeStore, SCAN_RESULTS_MAX};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry as RaftEntry, HardState};
use std::collections::{BTreeSet, VecDeque};

use crate::error::ClusterError;

/// Column families of an ndb store.
pub const NDB_FAMILIES: &[&str] = &[TEMP, RESOLUTIONS, LOG, META];
/// Column families of a sync store.
pub const SYNC_FAMILIES: &[&str] = &[RAFT_LOG, RAFT_STATE, RESOLUTIONS];

const TEMP: &str = "temp";
const RESOLUTIONS: &str = "resolutions";
const LOG: &str = "log";
const META: &str = "meta";
const APPLIED_INDEX: &[u8] = b"applied_index";
const RAFT_LOG: &str = "raft_log";
const RAFT_STATE: &str = "raft_state";
const HARD_STATE: &[u8] = b"hard_state";
const CONF_STATE: &[u8] = b"conf_state";
const SNAPSHOT: &[u8] = b"snapshot";

/// Most pages one recovery scan reads (each `SCAN_RESULTS_MAX` records): a cap far above
/// any real store, so the loop is bounded.
const RECOVERY_PAGES_MAX: usize = 1 << 20;

/// Records per store read when an ndb serves a read from disk.
const READ_PAGE_RECORDS: usize = 64;

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ClusterError> {
    postcard::to_allocvec(value).map_err(|error| ClusterError::Corrupt {
        what: "record to write",
        reason: error.to_string(),
    })
}

fn decode<'a, T: serde::Deserialize<'a>>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<T, ClusterError> {
    postcard::from_bytes(bytes).map_err(|error| ClusterError::Corrupt {
        what,
        reason: error.to_string(),
    })
}

/// The batch that makes `writes` durable.
pub fn ndb_batch(writes: &[NdbWrite]) -> Result<NodeBatch, ClusterError> {
    let mut batch = NodeBatch::new();
    for write in writes {
        match write {
            NdbWrite::Temp {
                segment,
                owner,
                messages,
            } => batch.put(
                TEMP,
                segment.0.as_bytes().to_vec(),
                encode(&(owner, messages))?,
            ),
            NdbWrite::Applied {
                resolution,
                messages,
            } => applied(&mut batch, resolution, messages)?,
        }
    }
    Ok(batch)
}

fn applied(
    batch: &mut NodeBatch,
    resolution: &Resolution,
    messages: &[Publication],
) -> Result<(), ClusterError> {
    batch.put(RESOLUTIONS, u64_key(resolution.index), encode(resolution)?);
    if let Outcome::Permanent { base, .. } = resolution.outcome {
        for (offset, message) in messages.iter().enumerate() {
            batch.put(LOG, u64_key(base.0 + offset as u64), encode(message)?);
        }
    }
    batch.delete(TEMP, resolution.segment.0.as_bytes().to_vec());
    batch.put(META, APPLIED_INDEX, u64_key(resolution.index).to_vec());
    Ok(())
}

/// Every entry of `family`, page by page (bounded).
fn scan_all(
    store: &NodeStore,
    family: &'static str,
    visit: impl FnMut(&[u8], &[u8]) -> Result<bool, ClusterError>,
) -> Result<(), ClusterError> {
    scan_from(store, family, &[], visit)
}

/// Every entry of `family` from key `start` on, page by page (bounded).
fn scan_from(
    store: &NodeStore,
    family: &'static str,
    start: &[u8],
    visit: impl FnMut(&[u8], &[u8]) -> Result<bool, ClusterError>,
) -> Result<(), ClusterError> {
    scan_paged(store, family, start, SCAN_RESULTS_MAX, visit)
}

/// As [`scan_from`], `page` entries per store read: reads that stop early (a LOG's byte
/// cap) read little more than they keep.
fn scan_paged(
    store: &NodeStore,
    family: &'static str,
    start: &[u8],
    page: usize,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, ClusterError>,
) -> Result<(), ClusterError> {
    let mut from = start.to_vec();
    for _ in 0..RECOVERY_PAGES_MAX {
        let page = store.scan(family, &from, page)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        from = last.clone();
        from.push(0);
        for (key, value) in &page {
            if !visit(key, value)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// What an ndb rebuilds from, in an order `Ndb::recover_from` accepts: the oldest
/// resolutions summed up (all but the newest `keep`: it remembers no more decisions than
/// that), then every temporary segment and the newest resolutions, with the permanent
/// log's records only for the newest resolutions that hold `tail_records` of them (the
/// rest stays on disk, which `Ndb::recover_from` accepts: memory holds only the newest
/// records anyway).
pub fn ndb_records(
    store: &NodeStore,
    tail_records: usize,
    tail_bytes: usize,
    keep: usize,
) -> Result<(NdbBase, Vec<NdbWrite>), ClusterError> {
    let mut records = Vec::new();
    scan_all(store, TEMP, |key, value| {
        let bytes: [u8; 16] = key.try_into().map_err(|_| ClusterError::Corrupt {
            what: "temp segment key",
            reason: format!("{} bytes", key.len()),
        })?;
        let (owner, messages): (NodeId, Vec<Publication>) = decode("temp segment", value)?;
        let segment = fox_sequencer::SegmentId(uuid::Uuid::from_bytes(bytes));
        records.push(NdbWrite::Temp {
            segment,
            owner,
            messages,
        });
        Ok(true)
    })?;
    // A temporary segment of a resolution applied already is not held (it left `temp`
    // in the batch that applied it); one that is summed up below is dropped rather than
    // held again. Only the temporary segments are kept in a set, not every summed one.
    let mut temp: BTreeSet<SegmentId> = records
        .iter()
        .filter_map(|record| match record {
            NdbWrite::Temp { segment, .. } => Some(*segment),
            NdbWrite::Applied { .. } => None,
        })
        .collect();
    let held = temp.len();
    let mut resolutions: VecDeque<Resolution> = VecDeque::new();
    let mut summed = NdbBase::default();
    scan_all(store, RESOLUTIONS, |_, value| {
        resolutions.push_back(decode::<Resolution>("resolution", value)?);
        if resolutions.len() > keep.max(1) {
            if let Some(oldest) = resolutions.pop_front() {
                summed.add(&oldest);
                temp.remove(&oldest.segment);
            }
        }
        Ok(true)
    })?;
    if temp.len() < held {
        records.retain(
            |record| !matches!(record, NdbWrite::Temp { segment, .. } if !temp.contains(segment)),
        );
    }
    // The newest resolutions whose records make up the tail memory holds: those from the
    // first whose records all have IDs from the tail's first on.
    let tail = read_tail(store, tail_records, tail_bytes)?;
    let tail_id = tail.first().map_or(u64::MAX, |record| record.id.0);
    let mut tail_from = resolutions.len();
    while tail_from > 0 {
        match resolutions[tail_from - 1].outcome {
            Outcome::Permanent { base, .. } if base.0 < tail_id => break,
            _ => tail_from -= 1,
        }
    }
    let log = tail;
    let mut position = 0usize;
    for (number, resolution) in resolutions.into_iter().enumerate() {
        let mut messages = Vec::new();
        if number < tail_from {
            records.push(NdbWrite::Applied {
                resolution,
                messages,
            });
            continue;
        }
        if let Outcome::Permanent { base, count, .. } = resolution.outcome {
            let start = log[position..].partition_point(|r| r.id.0 < base.0) + position;
            let end = (start + count as usize).min(log.len());
            let slice = &log[start..end];
            let contiguous = slice.len() == count as usize
                && slice
                    .iter()
                    .enumerate()
                    .all(|(i, r)| r.id.0 == base.0 + i as u64);
            if !contiguous {
                return Err(ClusterError::Corrupt {
                    what: "permanent log",
                    reason: format!("resolution {} lacks its records", resolution.index),
                });
            }
            messages = slice.iter().map(|r| r.publication.clone()).collect();
            position = end;
        }
        records.push(NdbWrite::Applied {
            resolution,
            messages,
        });
    }
    Ok((summed, records))
}

/// The newest records of the log, oldest first, at most `records` of them and `bytes`
/// encoded bytes, read backwards from the end a page at a time.
fn read_tail(
    store: &NodeStore,
    records: usize,
    bytes: usize,
) -> Result<Vec<LogRecord>, ClusterError> {
    let mut tail = Vec::new();
    let mut total = 0usize;
    let mut before: Option<Vec<u8>> = None;
    'pages: for _ in 0..RECOVERY_PAGES_MAX {
        let page = store.scan_back(LOG, before.as_deref(), READ_PAGE_RECORDS)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        before = Some(last.clone());
        for (key, value) in &page {
            let record = log_record(key, value)?;
            total += record.encoded_bytes_max();
            if tail.len() >= records || total > bytes {
                break 'pages;
            }
            tail.push(record);
        }
    }
    tail.reverse();
    Ok(tail)
}

/// Carries out an ndb's read of the records it keeps on disk only ([`NdbEvent`]): the
/// message to send and to whom.
pub fn ndb_read(store: &NodeStore, read: &NdbEvent) -> Result<(NodeId, Message), ClusterError> {
    let mut answer = read.clone().answer();
    let start = u64_key(read.first_id());
    scan_paged(store, LOG, &start, READ_PAGE_RECORDS, |key, value| {
        answer
            .push(log_record(key, value)?)
            .map_err(|missing| ClusterError::Corrupt {
                what: "permanent log",
                reason: format!("a decided segment lacks record {missing}"),
            })
    })?;
    Ok(answer.finish())
}

fn log_record(key: &[u8], value: &[u8]) -> Result<LogRecord, ClusterError> {
    let id = u64_from_key(key).ok_or(ClusterError::Corrupt {
        what: "log key",
        reason: format!("{} bytes", key.len()),
    })?;
    Ok(LogRecord {
        id: fox_sequencer::PermanentId(id),
        publication: decode("log record", value)?,
    })
}

/// Where an ndb's store stands: its last applied resolution and the last permanent ID in
/// its log (0 for none), read without loading the log.
pub fn ndb_position(store: &NodeStore) -> Result<(u64, u64), ClusterError> {
    let applied = match store.get(META, APPLIED_INDEX)? {
        Some(value) => u64_from_key(&value).ok_or(ClusterError::Corrupt {
            what: "applied index",
            reason: format!("{} bytes", value.len()),
        })?,
        None => 0,
    };
    let last_id = match store.last(LOG)? {
        Some((key, _)) => u64_from_key(&key).ok_or(ClusterError::Corrupt {
            what: "log key",
            reason: format!("{} bytes", key.len()),
        })?,
        None => 0,
    };
    Ok((applied, last_id))
}

/// A batch that copies every temporary segment of `store` (as stored) into another ndb
/// store: a catching-up ndb keeps the segments it answered STORED for.
pub fn ndb_temp_copy(store: &NodeStore) -> Result<NodeBatch, ClusterError> {
    let mut batch = NodeBatch::new();
    scan_all(store, TEMP, |key, value| {
        batch.put(TEMP, key.to_vec(), value.to_vec());
        Ok(true)
    })?;
    Ok(batch)
}

fn protobuf_error(what: &'static str) -> impl Fn(protobuf::ProtobufError) -> ClusterError {
    move |error| ClusterError::Corrupt {
        what,
        reason: error.to_string(),
    }
}

/// The batch that makes `writes` durable. Entries at an index replace it and all after it:
/// stored entries past the last new one are deleted, with one bounded range tombstone, and
/// only when there are any (a tombstone per append made every scan and every restart slow:
/// RocksDB merges all of them). `log_last_index` is the last index on disk, updated here.
pub fn sync_batch(
    writes: &[SyncWrite],
    log_last_index: &mut u64,
) -> Result<NodeBatch, ClusterError> {
    let mut batch = NodeBatch::new();
    for write in writes {
        match write {
            SyncWrite::Entries(entries) => {
                for entry in entries {
                    let bytes = entry
                        .write_to_bytes()
                        .map_err(protobuf_error("raft entry"))?;
                    batch.put(RAFT_LOG, u64_key(entry.index), bytes);
                }
                if let Some(last) = entries.last() {
                    if *log_last_index > last.index {
                        let after = last.index.saturating_add(1);
                        let end = log_last_index.saturating_add(1);
                        batch.delete_range(RAFT_LOG, u64_key(after), u64_key(end));
                    }
                    *log_last_index = last.index;
                }
            }
            SyncWrite::HardState(state) => {
                let bytes = state
                    .write_to_bytes()
                    .map_err(protobuf_error("hard state"))?;
                batch.put(RAFT_STATE, HARD_STATE, bytes);
            }
            SyncWrite::Resolutions(resolutions) => {
                for resolution in resolutions {
                    batch.put(RESOLUTIONS, u64_key(resolution.index), encode(resolution)?);
                }
            }
            SyncWrite::Snapshot {
                snapshot,
                installed,
            } => {
                batch.put(RAFT_STATE, SNAPSHOT, encode(snapshot)?);
                if *installed {
                    // It replaces the log: every entry goes with it, atomically.
                    let end = (*log_last_index).max(snapshot.raft_index).saturating_add(1);
                    batch.delete_range(RAFT_LOG, u64_key(0), u64_key(end));
                    *log_last_index = snapshot.raft_index;
                }
            }
            SyncWrite::CompactLog { through } => {
                batch.delete_range(RAFT_LOG, u64_key(0), u64_key(through.saturating_add(1)));
            }
        }
    }
    Ok(batch)
}

/// What a sync node rebuilds from ([`fox_sequencer::Sync::recover_with`]): the oldest
/// resolutions as only their decided segments, and the records (the latest snapshot, the
/// newest `tail` resolutions, the Raft log after the snapshot up to the first gap, then
/// the hard state).
pub struct SyncRecovery {
    /// Resolutions 1 to `older.len()`, as decided segments.
    pub older: Vec<DecidedSegment>,
    /// The records after them.
    pub records: Vec<SyncWrite>,
}

/// Checks (or, on a new store, writes) the voters; returns what a sync node rebuilds
/// from, with at most the newest `tail` resolutions whole.
pub fn sync_records(
    store: &NodeStore,
    voters: &[u64],
    tail: usize,
) -> Result<SyncRecovery, ClusterError> {
    check_conf_state(store, voters)?;
    let mut records = Vec::new();
    let mut older = Vec::new();
    let snapshot: Option<SyncSnapshot> = match store.get(RAFT_STATE, SNAPSHOT)? {
        Some(bytes) => Some(decode("sync snapshot", &bytes)?),
        None => None,
    };
    let after = snapshot.as_ref().map_or(0, |snapshot| snapshot.raft_index);
    if let Some(snapshot) = snapshot {
        // From index 1 to the first gap; at least the snapshot's count is needed to start
        // without pulling from a peer (the rest, if any, is derived again from the Raft log).
        let whole_from = snapshot.resolutions.saturating_sub(tail as u64) + 1;
        let mut resolutions = Vec::new();
        scan_resolutions(store, 1, snapshot.resolutions, |resolution| {
            if resolution.index < whole_from {
                older.push(DecidedSegment::from(&resolution));
            } else {
                resolutions.push(resolution);
            }
        })?;
        records.push(SyncWrite::Snapshot {
            snapshot,
            installed: false,
        });
        if !resolutions.is_empty() {
            records.push(SyncWrite::Resolutions(resolutions));
        }
    }
    let mut entries: Vec<RaftEntry> = Vec::new();
    scan_from(store, RAFT_LOG, &u64_key(after + 1), |key, value| {
        let index = u64_from_key(key).unwrap_or(0);
        if index != after + entries.len() as u64 + 1 {
            tracing::warn!(index, "gap in the stored raft log; the rest is re-learned");
            return Ok(false);
        }
        let entry = RaftEntry::parse_from_bytes(value).map_err(protobuf_error("raft entry"))?;
        if entry.index != index {
            return Err(ClusterError::Corrupt {
                what: "raft entry",
                reason: format!("entry {} stored under index {index}", entry.index),
            });
        }
        entries.push(entry);
        Ok(true)
    })?;
    let last_index = after + entries.len() as u64;
    if !entries.is_empty() {
        records.push(SyncWrite::Entries(entries));
    }
    if let Some(bytes) = store.get(RAFT_STATE, HARD_STATE)? {
        let mut state =
            HardState::parse_from_bytes(&bytes).map_err(protobuf_error("hard state"))?;
        if state.commit > last_index {
            tracing::warn!(
                commit = state.commit,
                last_index,
                "commit beyond the stored log"
            );
            state.commit = last_index;
        }
        records.push(SyncWrite::HardState(state));
    }
    Ok(SyncRecovery { older, records })
}

/// A sync node's read for a peer ([`fox_sequencer::SyncEvent::ReadResolutions`]): at
/// most `count` resolutions from `from_index`, consecutive (a gap ends the page).
pub fn sync_read(
    store: &NodeStore,
    from_index: u64,
    count: u64,
) -> Result<Vec<Resolution>, ClusterError> {
    let mut resolutions = Vec::new();
    scan_resolutions(store, from_index, count, |resolution| {
        resolutions.push(resolution)
    })?;
    Ok(resolutions)
}

/// Visits at most `count` consecutive resolutions from `from_index` (a gap ends the
/// scan); the number visited.
fn scan_resolutions(
    store: &NodeStore,
    from_index: u64,
    count: u64,
    mut visit: impl FnMut(Resolution),
) -> Result<u64, ClusterError> {
    let from_index = from_index.max(1);
    let page = count.clamp(1, SCAN_RESULTS_MAX as u64) as usize;
    let mut visited = 0u64;
    scan_paged(
        store,
        RESOLUTIONS,
        &u64_key(from_index),
        page,
        |key, value| {
            let index = u64_from_key(key).unwrap_or(0);
            if index != from_index + visited || visited >= count {
                return Ok(false);
            }
            let resolution: Resolution = decode("resolution", value)?;
            if resolution.index != index {
                return Err(ClusterError::Corrupt {
                    what: "resolution",
                    reason: format!("resolution {} stored under index {index}", resolution.index),
                });
            }
            visit(resolution);
            visited += 1;
            Ok(visited < count)
        },
    )?;
    Ok(visited)
}

fn check_conf_state(store: &NodeStore, voters: &[u64]) -> Result<(), ClusterError> {
    let mut configured = voters.to_vec();
    configured.sort_unstable();
    match store.get(RAFT_STATE, CONF_STATE)? {
        Some(bytes) => {
            let state =
                ConfState::parse_from_bytes(&bytes).map_err(protobuf_error("conf state"))?;
            let mut stored = state.voters.clone();
            stored.sort_unstable();
            if stored != configured {
                return Err(ClusterError::MembershipChanged { stored, configured });
            }
            Ok(())
        }
        None => {
            let state = ConfState::from((configured, vec![]));
            let bytes = state
                .write_to_bytes()
                .map_err(protobuf_error("conf state"))?;
            let mut batch = NodeBatch::new();
            batch.put(RAFT_STATE, CONF_STATE, bytes);
            store.write(&batch, true)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fox_sequencer::{PermanentId, SegmentId};
    use fox_storage::SyncMode;

    fn publication(sequence: u64) -> Publication {
        Publication {
            publisher: 1,
            sequence,
            payload: vec![sequence as u8],
        }
    }

    #[test]
    fn ndb_records_round_trip_and_applied_segments_leave_temp() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(dir.path(), NDB_FAMILIES, SyncMode::None).unwrap();
        let first = SegmentId::new_v7(1_000, [1; 10]);
        let second = SegmentId::new_v7(1_001, [2; 10]);
        let messages = vec![publication(1), publication(2)];
        let resolution = Resolution {
            index: 1,
            segment: first,
            owner: NodeId(1),
            outcome: Outcome::Permanent {
                base: PermanentId(4096),
                count: 2,
                digest: fox_sequencer::id::segment_digest(&messages),
            },
            raft_index: 3,
            raft_term: 1,
        };
        let writes = vec![
            NdbWrite::Temp {
                segment: first,
                owner: NodeId(1),
                messages: messages.clone(),
            },
            NdbWrite::Temp {
                segment: second,
                owner: NodeId(1),
                messages: vec![publication(3)],
            },
            NdbWrite::Applied {
                resolution: resolution.clone(),
                messages: messages.clone(),
            },
        ];
        store.write(&ndb_batch(&writes).unwrap(), true).unwrap();
        let (_, records) = ndb_records(&store, usize::MAX, usize::MAX, 8).unwrap();
        assert_eq!(records.len(), 2);
        assert!(matches!(&records[0], NdbWrite::Temp { segment, .. } if *segment == second));
        assert_eq!(
            records[1],
            NdbWrite::Applied {
                resolution,
                messages
            }
        );
    }

    /// Recovery reads back only the newest records memory holds; older ones are read from
    /// the disk for peers (READ, FETCH), in order and within the caps.
    #[test]
    fn ndb_recovery_reads_the_tail_and_older_records_are_read_for_peers() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(dir.path(), NDB_FAMILIES, SyncMode::None).unwrap();
        let segment = |n: u8| fox_sequencer::SegmentId(uuid::Uuid::from_bytes([n; 16]));
        let mut writes = Vec::new();
        for index in 1..=3u64 {
            let messages: Vec<Publication> = (0..3).map(|i| publication(index * 10 + i)).collect();
            let resolution = Resolution {
                index,
                segment: segment(index as u8),
                owner: NodeId(1),
                outcome: Outcome::Permanent {
                    base: PermanentId(index * 100),
                    count: 3,
                    digest: fox_sequencer::id::segment_digest(&messages),
                },
                raft_index: index,
                raft_term: 1,
            };
            writes.push(NdbWrite::Applied {
                resolution,
                messages,
            });
        }
        store.write(&ndb_batch(&writes).unwrap(), true).unwrap();
        let (_, records) = ndb_records(&store, 4, usize::MAX, 8).unwrap();
        let record_bytes = LogRecord {
            id: PermanentId(100),
            publication: publication(10),
        }
        .encoded_bytes_max();
        let (_, by_bytes) = ndb_records(&store, usize::MAX, 4 * record_bytes, 8).unwrap();
        assert_eq!(records, by_bytes, "the bytes of 4 records");
        // Remembering 2 decisions, the first resolution comes back summed up only.
        let (base, newest) = ndb_records(&store, 4, usize::MAX, 2).unwrap();
        let summed = fox_sequencer::NdbBase {
            applied_index: 1,
            log_records: 3,
            last_id: 102,
        };
        assert_eq!((base, &newest[..]), (summed, &records[1..]));
        // A stray temporary copy of a summed-up segment is dropped; of a newer one, kept.
        let stray = |n: u8| NdbWrite::Temp {
            segment: segment(n),
            owner: NodeId(1),
            messages: vec![publication(1)],
        };
        store
            .write(&ndb_batch(&[stray(1), stray(2)]).unwrap(), true)
            .unwrap();
        let (_, newest) = ndb_records(&store, 4, usize::MAX, 2).unwrap();
        let temps: Vec<SegmentId> = (newest.iter())
            .filter_map(|record| match record {
                NdbWrite::Temp { segment, .. } => Some(*segment),
                NdbWrite::Applied { .. } => None,
            })
            .collect();
        assert_eq!(temps, vec![segment(2)]);
        let held: Vec<usize> = records
            .iter()
            .map(|r| match r {
                NdbWrite::Applied { messages, .. } => messages.len(),
                NdbWrite::Temp { .. } => usize::MAX,
            })
            .collect();
        assert_eq!(
            held,
            vec![0, 0, 3],
            "the newest resolutions whose records fit in 4"
        );
        let read = NdbEvent::ReadLog {
            to: NodeId(7),
            after: 101,
            records_max: 4,
            bytes_max: 1 << 20,
        };
        let (to, Message::Log { after, records }) = ndb_read(&store, &read).unwrap() else {
            panic!("a LOG");
        };
        let ids: Vec<u64> = records.iter().map(|r| r.id.0).collect();
        assert_eq!((to, after, ids), (NodeId(7), 101, vec![102, 200, 201, 202]));
        let read = NdbEvent::ReadLog {
            to: NodeId(7),
            after: 0,
            records_max: 100,
            bytes_max: 1,
        };
        let (_, Message::Log { records, .. }) = ndb_read(&store, &read).unwrap() else {
            panic!("a LOG");
        };
        assert_eq!(records.len(), 1, "one record goes whatever the byte cap");
        let read = NdbEvent::ReadSegment {
            to: NodeId(2),
            segment: segment(2),
            owner: NodeId(9),
            first: 200,
            count: 3,
        };
        let (
            _,
            Message::SegmentData {
                messages, owner, ..
            },
        ) = ndb_read(&store, &read).unwrap()
        else {
            panic!("SEGMENT_DATA");
        };
        let sequences: Vec<u64> = messages.iter().map(|m| m.sequence).collect();
        assert_eq!((owner, sequences), (NodeId(9), vec![20, 21, 22]));
    }

    #[test]
    fn sync_records_truncate_replaced_entries_and_check_voters() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(dir.path(), SYNC_FAMILIES, SyncMode::None).unwrap();
        assert!(sync_records(&store, &[1, 2, 3], 8)
            .unwrap()
            .records
            .is_empty());
        let entry = |index, term| RaftEntry {
            index,
            term,
            ..Default::default()
        };
        let writes = vec![
            SyncWrite::Entries(vec![entry(1, 1), entry(2, 1), entry(3, 1)]),
            SyncWrite::Entries(vec![entry(2, 2)]),
            SyncWrite::HardState(HardState {
                term: 2,
                vote: 1,
                commit: 9,
                ..Default::default()
            }),
        ];
        let mut last = 0;
        store
            .write(&sync_batch(&writes, &mut last).unwrap(), true)
            .unwrap();
        assert_eq!(last, 2);
        let records = sync_records(&store, &[3, 2, 1], 8).unwrap().records;
        let SyncWrite::Entries(entries) = &records[0] else {
            panic!("entries first")
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].term, 2);
        let SyncWrite::HardState(state) = &records[1] else {
            panic!("hard state second")
        };
        assert_eq!(state.commit, 2, "commit clamped to the stored log");
        assert!(matches!(
            sync_records(&store, &[1, 2], 8).map(|r| r.records),
            Err(ClusterError::MembershipChanged { .. })
        ));
    }

    /// Resolution `index`: an aborted segment.
    fn aborted(index: u64) -> Resolution {
        Resolution {
            index,
            segment: SegmentId::new_v7(1_000, [index as u8; 10]),
            owner: NodeId(1),
            outcome: Outcome::Aborted,
            raft_index: index + 1,
            raft_term: 1,
        }
    }

    #[test]
    fn a_sync_read_answers_consecutive_resolutions_from_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(dir.path(), SYNC_FAMILIES, SyncMode::None).unwrap();
        let mut last = 0;
        let writes = [SyncWrite::Resolutions((1..=5).map(aborted).collect())];
        store
            .write(&sync_batch(&writes, &mut last).unwrap(), false)
            .unwrap();
        let read = |from, count| -> Vec<u64> {
            let page = sync_read(&store, from, count).unwrap();
            page.iter().map(|r| r.index).collect()
        };
        assert_eq!(read(2, 3), vec![2, 3, 4]);
        assert_eq!(read(0, 2), vec![1, 2]);
        assert_eq!(read(4, 100), vec![4, 5]);
        assert!(read(6, 10).is_empty());
        // A gap ends the page (a damaged disk answers less, never out of order).
        let gap = [SyncWrite::Resolutions(vec![aborted(8)])];
        store
            .write(&sync_batch(&gap, &mut last).unwrap(), false)
            .unwrap();
        assert_eq!(read(5, 10), vec![5]);
    }

    #[test]
    fn sync_records_start_at_the_snapshot_and_compacted_entries_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(dir.path(), SYNC_FAMILIES, SyncMode::None).unwrap();
        let entry = |index| RaftEntry {
            index,
            term: 1,
            ..Default::default()
        };
        let snapshot = |raft_index, resolutions| SyncSnapshot {
            raft_index,
            raft_term: 1,
            voters: vec![1],
            resolutions,
            end: 0,
        };
        let mut last = 0;
        let writes = [
            SyncWrite::Entries((1..=5).map(entry).collect()),
            SyncWrite::Resolutions(vec![aborted(1), aborted(2), aborted(3)]),
            SyncWrite::Snapshot {
                snapshot: snapshot(4, 3),
                installed: false,
            },
        ];
        store
            .write(&sync_batch(&writes, &mut last).unwrap(), true)
            .unwrap();
        let compact = [SyncWrite::CompactLog { through: 4 }];
        store
            .write(&sync_batch(&compact, &mut last).unwrap(), true)
            .unwrap();
        assert_eq!(store.scan(RAFT_LOG, &[], 10).unwrap().len(), 1);
        let records = sync_records(&store, &[1], 8).unwrap().records;
        assert!(
            matches!(&records[0], SyncWrite::Snapshot { snapshot, .. } if snapshot.raft_index == 4)
        );
        assert!(matches!(&records[1], SyncWrite::Resolutions(r) if r.len() == 3));
        assert!(matches!(&records[2], SyncWrite::Entries(e) if e.len() == 1 && e[0].index == 5));
        // With memory for the newest 2, the first comes back as its decided segment only.
        let recovery = sync_records(&store, &[1], 2).unwrap();
        assert_eq!(recovery.older, vec![DecidedSegment::from(&aborted(1))]);
        assert!(
            matches!(&recovery.records[1], SyncWrite::Resolutions(r) if r.len() == 2 && r[0].index == 2)
        );
        // A leader's snapshot replaces the whole log, in the batch that holds it.
        let installed = [SyncWrite::Snapshot {
            snapshot: snapshot(9, 7),
            installed: true,
        }];
        store
            .write(&sync_batch(&installed, &mut last).unwrap(), true)
            .unwrap();
        assert!(store.scan(RAFT_LOG, &[], 10).unwrap().is_empty());
        assert_eq!(last, 9);
        // A damaged snapshot record is an error.
        let mut batch = NodeBatch::new();
        batch.put(RAFT_STATE, SNAPSHOT, b"\xff\xff\xff".to_vec());
        store.write(&batch, false).unwrap();
        assert!(matches!(
            sync_records(&store, &[1], 8).map(|r| r.records),
            Err(ClusterError::Corrupt { .. })
        ));
    }

    #[test]
    fn garbage_on_disk_is_an_error_not_a_panic() {
        let garbage: &[&[u8]] = &[b"", b"\xff", b"\x01\x02\x03", &[0xff; 64]];
        for value in garbage {
            let dir = tempfile::tempdir().unwrap();
            let store = NodeStore::open(dir.path(), NDB_FAMILIES, SyncMode::None).unwrap();
            let mut batch = NodeBatch::new();
            batch.put(TEMP, [7u8; 16].to_vec(), value.to_vec());
            store.write(&batch, false).unwrap();
            assert!(ndb_records(&store, usize::MAX, usize::MAX, 8).is_err());
            let mut batch = NodeBatch::new();
            batch.delete(TEMP, [7u8; 16].to_vec());
            batch.put(
                TEMP,
                b"short key".to_vec(),
                encode(&(NodeId(1), Vec::<Publication>::new())).unwrap(),
            );
            store.write(&batch, false).unwrap();
            assert!(ndb_records(&store, usize::MAX, usize::MAX, 8).is_err());
            let mut batch = NodeBatch::new();
            batch.delete(TEMP, b"short key".to_vec());
            batch.put(RESOLUTIONS, u64_key(1), value.to_vec());
            store.write(&batch, false).unwrap();
            assert!(ndb_records(&store, usize::MAX, usize::MAX, 8).is_err());

            let dir = tempfile::tempdir().unwrap();
            let store = NodeStore::open(dir.path(), SYNC_FAMILIES, SyncMode::None).unwrap();
            let mut batch = NodeBatch::new();
            batch.put(RAFT_LOG, u64_key(1), value.to_vec());
            batch.put(RAFT_STATE, HARD_STATE, value.to_vec());
            store.write(&batch, false).unwrap();
            // Whatever parses must also be consistent (an entry's index is its key).
            assert!(sync_records(&store, &[1], 8).is_err());
        }
    }
}
