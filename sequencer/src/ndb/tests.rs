//! Unit tests of the ndb core.

use super::*;
use crate::config::Membership;

fn ndb() -> Ndb {
    let membership = Membership {
        entries: vec![NodeId(0), NodeId(4)],
        ndbs: vec![NodeId(1), NodeId(2)],
        syncs: vec![NodeId(3)],
    };
    Ndb::new(NdbConfig::new(NodeId(1), membership), 1_000)
}

fn keep() -> Message {
    let messages = vec![Publication {
        publisher: 1,
        sequence: 1,
        payload: vec![1],
    }];
    Message::Keep {
        segment: SegmentId::new_v7(1_000, [1; 10]),
        owner: NodeId(0),
        digest: segment_digest(&messages),
        messages,
    }
}

/// RESOLVED of the first resolution: `segment` (one message, `digest`) made permanent
/// at ID 100, by entry 0.
fn resolved_first(segment: SegmentId, digest: u64) -> Message {
    let resolution = Resolution {
        index: 1,
        segment,
        owner: NodeId(0),
        outcome: Outcome::Permanent {
            base: PermanentId(100),
            count: 1,
            digest,
        },
        raft_index: 1,
        raft_term: 1,
    };
    let resolutions = vec![resolution];
    Message::Resolved { resolutions }
}

#[test]
fn stored_is_released_only_in_the_batch_that_fsyncs() {
    let mut ndb = ndb();
    let _ = ndb.ready();
    ndb.handle_message(NodeId(0), keep(), 1_000);
    let first = ndb.ready();
    assert_eq!(first.writes.len(), 1);
    assert!(!first.fsync);
    assert!(first
        .messages
        .iter()
        .all(|(_, m)| !matches!(m, Message::Stored { .. })));
    // The group commit fires `group_commit_ms` after the first unsynced write.
    ndb.handle_timeout(1_000 + ndb.config.group_commit_ms);
    let second = ndb.ready();
    assert!(second.fsync);
    assert!(second
        .messages
        .iter()
        .any(|(to, m)| *to == NodeId(0) && matches!(m, Message::Stored { count: 1, .. })));
}

#[test]
fn recovery_keeps_what_was_synced_and_answers_stored_at_once() {
    let mut ndb = ndb();
    ndb.handle_message(NodeId(0), keep(), 1_000);
    let writes = ndb.ready().writes;
    let config = ndb.config.clone();
    let mut recovered = Ndb::recover(config, &writes, 2_000);
    assert_eq!(recovered.temp_segments().len(), 1);
    recovered.handle_message(NodeId(0), keep(), 2_000);
    let ready = recovered.ready();
    assert!(
        ready.writes.is_empty(),
        "already durable: nothing to write again"
    );
    assert!(ready
        .messages
        .iter()
        .any(|(_, m)| matches!(m, Message::Stored { .. })));
}

#[test]
fn keep_from_someone_else_than_the_owner_is_ignored() {
    let mut ndb = ndb();
    ndb.handle_message(NodeId(2), keep(), 1_000);
    assert!(ndb.ready().writes.is_empty());
}

#[test]
fn log_answers_are_cut_in_bytes_so_every_one_fits_in_a_frame() {
    use crate::config::wire_limits::FRAME_SIZE_MAX_BYTES;
    let six_mib = 6 << 20;
    let messages: Vec<Publication> = (1..=3)
        .map(|sequence| Publication {
            publisher: 1,
            sequence,
            payload: vec![7; six_mib],
        })
        .collect();
    let resolution = Resolution {
        index: 1,
        segment: SegmentId::new_v7(1_000, [1; 10]),
        owner: NodeId(0),
        outcome: Outcome::Permanent {
            base: PermanentId(100),
            count: 3,
            digest: segment_digest(&messages),
        },
        raft_index: 1,
        raft_term: 1,
    };
    let applied = NdbWrite::Applied {
        resolution,
        messages,
    };
    let config = ndb().config.clone();
    let mut ndb = Ndb::recover(config, [&applied], 1_000);
    assert_eq!(cached(&ndb).len(), 3);
    // Page through the log as an entry does: every LOG encodes, and reads make progress.
    let mut after = 0;
    for _ in 0..3 {
        ndb.handle_message(NodeId(0), Message::Read { after }, 1_000);
        let ready = ndb.ready();
        let Some((_, log)) = ready
            .early
            .into_iter()
            .find(|(_, m)| matches!(m, Message::Log { .. }))
        else {
            panic!("no LOG answer");
        };
        let frame = crate::wire::encode_frame(&log, FRAME_SIZE_MAX_BYTES);
        assert!(frame.is_ok(), "{:?}", frame.err());
        let Message::Log { records, .. } = log else {
            unreachable!()
        };
        assert!(!records.is_empty());
        after = records.last().map_or(after, |record| record.id.0);
    }
    assert_eq!(after, 102);
}

#[test]
fn keep_whose_messages_do_not_match_its_digest_is_dropped() {
    let mut ndb = ndb();
    let Message::Keep {
        segment,
        owner,
        digest,
        mut messages,
    } = keep()
    else {
        unreachable!()
    };
    messages[0].payload[0] ^= 1;
    let damaged = Message::Keep {
        segment,
        owner,
        digest,
        messages,
    };
    ndb.handle_message(NodeId(0), damaged, 1_000);
    ndb.handle_timeout(1_000);
    let ready = ndb.ready();
    assert!(ready.writes.is_empty());
    assert!(ready
        .messages
        .iter()
        .all(|(_, m)| !matches!(m, Message::Stored { .. })));
}

/// Found by the simulator (damaged KEEP payloads, before KEEP carried a digest): an ndb
/// holding another copy under a segment's ID never asked a peer for the decided one, and
/// dropped it when it came, so it stopped applying resolutions for good.
#[test]
fn a_held_copy_that_is_not_the_decided_one_is_fetched_again_and_replaced() {
    let decided = vec![Publication {
        publisher: 1,
        sequence: 1,
        payload: vec![1],
    }];
    let mut other = decided.clone();
    other[0].payload[0] = 2;
    let segment = SegmentId::new_v7(1_000, [1; 10]);
    let held = NdbWrite::Temp {
        segment,
        owner: NodeId(0),
        messages: other,
    };
    let mut ndb = Ndb::recover(ndb().config.clone(), [&held], 1_000);
    let _ = ndb.ready();
    let digest = segment_digest(&decided);
    ndb.handle_message(NodeId(3), resolved_first(segment, digest), 1_000);
    assert!(
        cached(&ndb).is_empty(),
        "the held copy is not the decided one"
    );
    let ready = ndb.ready();
    assert!(ready
        .messages
        .iter()
        .any(|(to, m)| *to == NodeId(2) && *m == Message::Fetch { segment }));
    let data = Message::SegmentData {
        segment,
        owner: NodeId(0),
        messages: decided.clone(),
    };
    ndb.handle_message(NodeId(2), data, 1_001);
    assert_eq!(cached(&ndb).len(), 1);
    assert_eq!(cached(&ndb)[0].publication, decided[0]);
}

/// Found by the simulator (a big-workload seed with `pending_resolutions_max` small): the
/// leader's announcements filled the buffer with later resolutions, the next one to apply
/// was dropped each time it came, and the ndb stopped applying for good.
#[test]
fn a_full_resolution_buffer_keeps_the_ones_applied_next() {
    let mut ndb = ndb();
    ndb.config.pending_resolutions_max = 2;
    let aborted = |index: u64| Resolution {
        index,
        segment: SegmentId::new_v7(1_000, [index as u8; 10]),
        owner: NodeId(0),
        outcome: Outcome::Aborted,
        raft_index: index,
        raft_term: 1,
    };
    let resolved = |indices: &[u64]| Message::Resolved {
        resolutions: indices.iter().map(|index| aborted(*index)).collect(),
    };
    ndb.handle_message(NodeId(3), resolved(&[3, 4]), 1_000);
    assert_eq!(ndb.applied_index(), 0);
    ndb.handle_message(NodeId(3), resolved(&[1]), 1_001);
    ndb.handle_message(NodeId(3), resolved(&[2]), 1_002);
    assert_eq!(
        ndb.applied_index(),
        3,
        "1 and 2 got in, 3 stayed, 4 is pulled again"
    );
}

/// A KEEP from entry 0 of a one-message segment cut at `cut_ms`.
fn keep_cut_at(cut_ms: u64, seed: u8) -> (SegmentId, Message) {
    let messages = vec![Publication {
        publisher: 1,
        sequence: u64::from(seed),
        payload: vec![seed],
    }];
    let segment = SegmentId::new_v7(cut_ms, [seed; 10]);
    let keep = Message::Keep {
        segment,
        owner: NodeId(0),
        digest: segment_digest(&messages),
        messages,
    };
    (segment, keep)
}

/// The segments of the ABORTs in the ndb's batch (each to the sync node).
fn aborts_sent(ndb: &mut Ndb) -> Vec<SegmentId> {
    let mut segments = Vec::new();
    for (to, message) in ndb.ready().messages {
        if let Message::Abort { segment, owner } = message {
            assert_eq!((to, owner), (NodeId(3), NodeId(0)));
            segments.push(segment);
        }
    }
    segments
}

/// Runs the ndb's timers at each ms of `from_ms..=until_ms` that it asks for; the ABORTs
/// it sends, with their time.
fn run_timers(ndb: &mut Ndb, from_ms: u64, until_ms: u64) -> Vec<(u64, SegmentId)> {
    let mut sent = Vec::new();
    for now_ms in from_ms..=until_ms {
        if ndb.poll_timeout() <= now_ms {
            ndb.handle_timeout(now_ms);
        }
        sent.extend(
            aborts_sent(ndb)
                .into_iter()
                .map(|segment| (now_ms, segment)),
        );
    }
    sent
}

fn undecided(segments: &[SegmentId]) -> Message {
    Message::Undecided {
        owner: NodeId(0),
        segments: segments.to_vec(),
    }
}

/// The case of simulator seed 17791 (and 3878 before): the sync tier had no stable leader
/// for 190-300 ms after a heal, and the ndb's fixed timer aborted a live entry's
/// segments, so a publish after the heal was rejected. Now a segment whose owner keeps
/// naming it waits as long as it takes.
#[test]
fn a_segment_its_owner_names_within_abort_after_ms_is_not_aborted() {
    let mut ndb = ndb();
    let abort_after_ms = ndb.config.abort_after_ms;
    let (segment, keep) = keep_cut_at(1_000, 1);
    ndb.handle_message(NodeId(0), keep, 1_000);
    let mut sent = Vec::new();
    // Named every 20 ms for 2 s, far longer than abort_after_ms.
    for tick in 1..=100 {
        let now_ms = 1_000 + tick * 20;
        sent.extend(run_timers(&mut ndb, now_ms - 19, now_ms));
        ndb.handle_message(NodeId(0), undecided(&[segment]), now_ms);
    }
    assert!(
        sent.is_empty(),
        "aborted while its owner named it: {sent:?}"
    );
    // A KEEP resent counts as naming it too.
    ndb.handle_message(NodeId(0), keep_cut_at(1_000, 1).1, 3_100);
    assert!(run_timers(&mut ndb, 3_001, 3_399).is_empty());
    // Then silence: the abort is asked for abort_after_ms after the last name.
    let sent = run_timers(&mut ndb, 3_400, 3_500);
    assert_eq!(sent.first(), Some(&(3_100 + abort_after_ms, segment)));
}

/// The ndb itself stopped for 4 s (SIGSTOP, a stalled disk under its driver): its owner's
/// UNDECIDED waited unread in its input meanwhile, so the pause does not count as the
/// owner's silence. The abort waits abort_after_ms of time this ndb ran.
#[test]
fn a_pause_of_the_ndb_is_not_its_owners_silence() {
    let mut ndb = ndb();
    let abort_after_ms = ndb.config.abort_after_ms;
    let (segment, keep) = keep_cut_at(1_000, 1);
    ndb.handle_message(NodeId(0), keep, 1_000);
    assert!(run_timers(&mut ndb, 1_001, 1_100).is_empty());
    // Resumed 4 s later: the timers run before the input is read.
    let resumed_ms = 5_100;
    assert!(run_timers(&mut ndb, resumed_ms, resumed_ms).is_empty());
    ndb.handle_message(NodeId(0), undecided(&[segment]), resumed_ms);
    assert!(run_timers(&mut ndb, resumed_ms + 1, resumed_ms + abort_after_ms - 1).is_empty());
    // Its owner silent from then on: aborted abort_after_ms after the last name.
    let sent = run_timers(
        &mut ndb,
        resumed_ms + abort_after_ms,
        resumed_ms + abort_after_ms,
    );
    assert_eq!(sent, vec![(resumed_ms + abort_after_ms, segment)]);
}

#[test]
fn an_orphan_is_aborted_after_its_owners_silence_even_if_the_owner_speaks_again() {
    let mut ndb = ndb();
    let (abort_after_ms, retry_ms) = (ndb.config.abort_after_ms, ndb.config.retry_ms);
    let (orphan, keep) = keep_cut_at(1_000, 1);
    ndb.handle_message(NodeId(0), keep, 1_000);
    // The entry restarted (same node, no memory): it names only its new segment and reads
    // the log. Names from another node, or for another owner, do not count either.
    let (fresh, keep) = keep_cut_at(1_050, 2);
    ndb.handle_message(NodeId(0), keep, 1_050);
    for now_ms in (1_060..1_400).step_by(20) {
        ndb.handle_message(NodeId(0), undecided(&[fresh]), now_ms);
        ndb.handle_message(NodeId(0), Message::Read { after: 0 }, now_ms);
        let stranger = Message::Undecided {
            owner: NodeId(4),
            segments: vec![orphan],
        };
        ndb.handle_message(NodeId(4), stranger, now_ms);
        ndb.handle_message(NodeId(4), undecided(&[orphan]), now_ms);
    }
    let sent = run_timers(&mut ndb, 1_000, 1_400);
    let expected: Vec<(u64, SegmentId)> = (0..6)
        .map(|attempt| (1_000 + abort_after_ms + attempt * retry_ms, orphan))
        .collect();
    assert_eq!(
        sent, expected,
        "asked at once after the silence, then every retry_ms"
    );
}

#[test]
fn an_expired_lease_aborts_the_owners_segments_at_once() {
    let mut ndb = ndb();
    let (abort_after_ms, retry_ms) = (ndb.config.abort_after_ms, ndb.config.retry_ms);
    let (before, keep) = keep_cut_at(1_000, 1);
    ndb.handle_message(NodeId(0), keep, 1_590);
    let (after, keep) = keep_cut_at(1_600, 2);
    ndb.handle_message(NodeId(0), keep, 1_600);
    assert!(run_timers(&mut ndb, 1_590, 1_610).is_empty());
    // Only from an entry of the cluster, about an entry of the cluster.
    let expired = |owner| Message::AbortOwner {
        owner: NodeId(owner),
        cut_until_ms: 1_500,
    };
    ndb.handle_message(NodeId(2), expired(0), 1_610);
    ndb.handle_message(NodeId(4), expired(3), 1_610);
    assert!(aborts_sent(&mut ndb).is_empty());
    // Entry 4 applied entry 0's lease expiry at log time 1500.
    ndb.handle_message(NodeId(4), expired(0), 1_610);
    assert_eq!(
        aborts_sent(&mut ndb),
        vec![before],
        "at once, cut before the expiry only"
    );
    // Its owner naming it no longer defers it: the ABORT may be on its way.
    ndb.handle_message(NodeId(0), undecided(&[before, after]), 1_615);
    let sent = run_timers(&mut ndb, 1_611, 1_611 + retry_ms);
    assert_eq!(sent, vec![(1_610 + retry_ms, before)]);
    // Not remembered: a KEEP that arrives later waits for its owner's silence.
    let (late, keep) = keep_cut_at(1_400, 3);
    ndb.handle_message(NodeId(0), keep, 1_640);
    let sent = run_timers(&mut ndb, 1_640, 1_640 + abort_after_ms - 1);
    assert!(sent.iter().all(|(_, segment)| *segment != late));
}

#[test]
fn an_expired_lease_leaves_a_segment_decided_permanent_as_it_is() {
    let mut ndb = ndb();
    let (segment, keep) = keep_cut_at(1_000, 1);
    ndb.handle_message(NodeId(0), keep, 1_000);
    let Message::Keep { messages, .. } = keep_cut_at(1_000, 1).1 else {
        unreachable!()
    };
    let digest = segment_digest(&messages);
    ndb.handle_message(NodeId(3), resolved_first(segment, digest), 1_010);
    assert_eq!(cached(&ndb).len(), 1);
    let _ = ndb.ready();
    let expired = Message::AbortOwner {
        owner: NodeId(0),
        cut_until_ms: 2_000,
    };
    ndb.handle_message(NodeId(4), expired, 1_020);
    // The owner's KEEP, resent late, is answered STORED from the log, not aborted.
    ndb.handle_message(NodeId(0), keep_cut_at(1_000, 1).1, 1_030);
    assert!(run_timers(&mut ndb, 1_020, 2_000).is_empty());
    assert_eq!(cached(&ndb).len(), 1);
    assert_eq!(cached(&ndb)[0].id, PermanentId(100));
    assert_eq!((ndb.applied_index(), ndb.temp_segment_count()), (1, 0));
}

#[test]
fn a_read_sent_again_keeps_its_first_deadline_so_an_idle_log_answers_empty() {
    // An entry resends its unanswered tail READ every `retry_ms` (20 ms), far below
    // `read_park_ms`: if each copy pushed the deadline on, an idle log would never
    // answer, and the reader, hearing nothing, would turn to another (maybe dead) ndb.
    let mut ndb = ndb();
    let park = ndb.config.read_park_ms;
    let _ = ndb.ready();
    let mut now_ms = 1_000;
    let mut answered_at = None;
    while now_ms <= 1_000 + 2 * park {
        ndb.handle_message(NodeId(0), Message::Read { after: 0 }, now_ms);
        ndb.handle_timeout(now_ms);
        let empty_log = ndb.ready().early.into_iter().any(|(to, m)| {
            to == NodeId(0)
                && matches!(m, Message::Log { after: 0, ref records } if records.is_empty())
        });
        if empty_log {
            answered_at = Some(now_ms);
            break;
        }
        now_ms += 20;
    }
    let answered_at = answered_at.expect("the parked READ was never answered");
    assert!(
        answered_at >= 1_000 + park && answered_at <= 1_000 + park + 20,
        "answered at {answered_at}, parked at 1000 for {park} ms"
    );
}

/// A LOG does not wait for the fsync of the batch it leaves in: its records are final
/// (decided by sync, the segment durable on a quorum), so a tailing entry delivers them
/// without waiting for this ndb's group commit, while STORED still waits for it.
#[test]
fn a_log_answer_leaves_before_the_fsync_that_stored_waits_for() {
    let mut ndb = ndb();
    let _ = ndb.ready();
    ndb.handle_message(NodeId(0), Message::Read { after: 0 }, 1_000);
    assert!(ndb.ready().is_empty(), "parked: the log is empty");
    let Message::Keep {
        segment, digest, ..
    } = keep()
    else {
        unreachable!()
    };
    ndb.handle_message(NodeId(0), keep(), 1_000);
    ndb.handle_message(NodeId(3), resolved_first(segment, digest), 1_000);
    ndb.handle_timeout(1_000);
    let ready = ndb.ready();
    assert!(
        ready.fsync,
        "the KEEP's temp record is fsynced in this batch"
    );
    let early_log = ready.early.iter().find_map(|(to, m)| match m {
        Message::Log { records, .. } if *to == NodeId(0) => Some(records.len()),
        _ => None,
    });
    assert_eq!(early_log, Some(1), "the parked READ is answered early");
    assert!(ready
        .messages
        .iter()
        .all(|(_, m)| !matches!(m, Message::Log { .. })));
    assert!(ready
        .messages
        .iter()
        .any(|(_, m)| matches!(m, Message::Stored { .. })));
}

/// An ndb that knows of many more decided resolutions than it applied (a wiped disk
/// catching up) leaves a READ at its log's end unanswered: an empty LOG would keep the
/// reader on it, its subscribers stalled until it caught up; silence sends the reader to
/// another ndb. Its own history it still serves, and once caught up it parks as before.
#[test]
fn a_catching_up_ndb_is_silent_to_a_read_at_its_end_and_serves_what_it_has() {
    let mut ndb = ndb();
    let _ = ndb.ready();
    let messages = |i: u64| {
        vec![Publication {
            publisher: 1,
            sequence: i,
            payload: vec![i as u8],
        }]
    };
    let count = FETCH_AHEAD_MAX as u64 + 10;
    let resolutions: Vec<Resolution> = (1..=count)
        .map(|i| Resolution {
            index: i,
            segment: SegmentId::new_v7(1_000 + i, [i as u8; 10]),
            owner: NodeId(0),
            outcome: Outcome::Permanent {
                base: PermanentId(100 * i),
                count: 1,
                digest: segment_digest(&messages(i)),
            },
            raft_index: i,
            raft_term: 1,
        })
        .collect();
    // It learned every resolution, and got the first segment's data from a peer: one
    // record applied, the rest to fetch.
    ndb.handle_message(
        NodeId(3),
        Message::Resolved {
            resolutions: resolutions.clone(),
        },
        1_000,
    );
    let first = &resolutions[0];
    ndb.handle_message(
        NodeId(2),
        Message::SegmentData {
            segment: first.segment,
            owner: NodeId(0),
            messages: messages(1),
        },
        1_000,
    );
    ndb.handle_timeout(1_000);
    let _ = ndb.ready();
    assert_eq!(ndb.applied_index(), 1);

    // At its end: no answer, not even after the park time.
    ndb.handle_message(NodeId(0), Message::Read { after: 100 }, 1_000);
    ndb.handle_timeout(1_000 + 3 * ndb.config.read_park_ms);
    let ready = ndb.ready();
    assert!(
        ready
            .early
            .iter()
            .chain(&ready.messages)
            .all(|(_, m)| !matches!(m, Message::Log { .. })),
        "a catching-up ndb answered a READ at its end"
    );
    // Below its end: the records it has.
    ndb.handle_message(NodeId(0), Message::Read { after: 0 }, 1_400);
    let answered = ndb.ready().early.into_iter().find_map(|(to, m)| match m {
        Message::Log { after: 0, records } if to == NodeId(0) => Some(records.len()),
        _ => None,
    });
    assert_eq!(answered, Some(1));

    // Caught up (every segment's data arrived): a READ at the end parks and is answered.
    for (i, resolution) in resolutions.iter().enumerate().skip(1) {
        ndb.handle_message(
            NodeId(2),
            Message::SegmentData {
                segment: resolution.segment,
                owner: NodeId(0),
                messages: messages(i as u64 + 1),
            },
            1_500,
        );
    }
    assert_eq!(ndb.applied_index(), count);
    let _ = ndb.ready();
    let end = 100 * count;
    ndb.handle_message(NodeId(0), Message::Read { after: end }, 1_500);
    ndb.handle_timeout(1_500 + ndb.config.read_park_ms);
    let empty = ndb.ready().early.into_iter().any(|(to, m)| {
        to == NodeId(0) && matches!(m, Message::Log { after, ref records } if after == end && records.is_empty())
    });
    assert!(
        empty,
        "a caught-up ndb parks a READ at its end and answers it empty"
    );
}

/// The records memory holds, oldest first.
fn cached(ndb: &Ndb) -> Vec<LogRecord> {
    ndb.log_cache().1.cloned().collect()
}

/// Resolution `index` of segment `segment`: `count` records from ID `base` (and them).
fn applied_segment(index: u64, segment: SegmentId, base: u64, count: u64) -> NdbWrite {
    let messages: Vec<Publication> = (0..count)
        .map(|sequence| Publication {
            publisher: 1,
            sequence: base + sequence,
            payload: vec![1; 10],
        })
        .collect();
    let resolution = Resolution {
        index,
        segment,
        owner: NodeId(0),
        outcome: Outcome::Permanent {
            base: PermanentId(base),
            count: count as u32,
            digest: segment_digest(&messages),
        },
        raft_index: index,
        raft_term: 1,
    };
    NdbWrite::Applied {
        resolution,
        messages,
    }
}

/// Memory holds the newest records only; a READ or a FETCH of older ones becomes a read
/// of the disk for the driver, and what memory holds is answered as before.
#[test]
fn a_small_cache_keeps_the_newest_records_and_older_reads_go_to_the_disk() {
    let mut config = ndb().config.clone();
    config.log_cache_records_max = 2;
    let first = SegmentId::new_v7(1_000, [1; 10]);
    let second = SegmentId::new_v7(1_001, [2; 10]);
    let writes = [
        applied_segment(1, first, 100, 3),
        applied_segment(2, second, 200, 2),
    ];
    let mut ndb = Ndb::recover(config, &writes, 1_000);
    let ids: Vec<u64> = cached(&ndb).iter().map(|r| r.id.0).collect();
    assert_eq!(ids, vec![200, 201]);
    assert_eq!((ndb.log_records(), ndb.last_id()), (5, 201));
    assert_eq!(ndb.log_cache().0, PermanentId(102));
    // From the start: the disk.
    ndb.handle_message(NodeId(0), Message::Read { after: 0 }, 1_000);
    let ready = ndb.ready();
    assert!(ready.early.is_empty() && ready.messages.is_empty());
    assert_eq!(
        ready.events,
        vec![NdbEvent::ReadLog {
            to: NodeId(0),
            after: 0,
            records_max: ndb.config.read_records_max,
            bytes_max: ndb.config.log_read_bytes_max,
        }]
    );
    // From what memory holds: answered at once.
    ndb.handle_message(NodeId(0), Message::Read { after: 102 }, 1_000);
    let ready = ndb.ready();
    assert!(ready.events.is_empty());
    let [(_, Message::Log { records, .. })] = &ready.early[..] else {
        panic!("one LOG: {:?}", ready.early);
    };
    assert_eq!(
        records.iter().map(|r| r.id.0).collect::<Vec<_>>(),
        vec![200, 201]
    );
    // A peer fetches the older segment: the disk; the newer one: memory.
    ndb.handle_message(NodeId(2), Message::Fetch { segment: first }, 1_000);
    assert_eq!(
        ndb.ready().events,
        vec![NdbEvent::ReadSegment {
            to: NodeId(2),
            segment: first,
            owner: NodeId(1),
            first: 100,
            count: 3,
        }]
    );
    ndb.handle_message(NodeId(2), Message::Fetch { segment: second }, 1_000);
    let ready = ndb.ready();
    assert!(ready.events.is_empty());
    assert!(
        matches!(&ready.early[..], [(_, Message::SegmentData { messages, .. })] if messages.len() == 2)
    );
}

/// Recovery may hand over old resolutions without their records (the driver reads only the
/// newest back): the log's size and end are whole, and a late KEEP of such a segment is
/// answered STORED from the resolution.
#[test]
fn recovery_without_the_old_records_answers_from_the_resolutions() {
    let config = ndb().config.clone();
    let first = SegmentId::new_v7(1_000, [1; 10]);
    let second = SegmentId::new_v7(1_001, [2; 10]);
    let NdbWrite::Applied {
        resolution,
        messages,
    } = applied_segment(1, first, 100, 3)
    else {
        unreachable!()
    };
    let on_disk_only = NdbWrite::Applied {
        resolution,
        messages: Vec::new(),
    };
    let writes = [on_disk_only, applied_segment(2, second, 200, 2)];
    let mut ndb = Ndb::recover(config, &writes, 1_000);
    assert_eq!(
        (ndb.log_records(), ndb.last_id(), ndb.applied_index()),
        (5, 201, 2)
    );
    assert_eq!(ndb.log_cache().0, PermanentId(102));
    assert_eq!(cached(&ndb).len(), 2);
    let keep = Message::Keep {
        segment: first,
        owner: NodeId(0),
        digest: segment_digest(&messages),
        messages: messages.clone(),
    };
    ndb.handle_message(NodeId(0), keep, 1_000);
    let ready = ndb.ready();
    let stored = ready
        .early
        .iter()
        .chain(&ready.messages)
        .find_map(|(_, m)| match m {
            Message::Stored { count, digest, .. } => Some((*count, *digest)),
            _ => None,
        });
    assert_eq!(stored, Some((3, segment_digest(&messages))));
}

/// Decisions are remembered up to `decided_segments_max`; a KEEP of a segment decided
/// before them is held as a new copy, and dropped when sync answers that it was decided
/// (its resolution is applied already).
#[test]
fn old_decisions_are_forgotten_and_a_late_copy_is_dropped_when_sync_answers() {
    let mut config = ndb().config.clone();
    config.decided_segments_max = 2;
    let segments: Vec<SegmentId> = (1..=3u8)
        .map(|n| SegmentId::new_v7(1_000, [n; 10]))
        .collect();
    let writes: Vec<NdbWrite> = (0..3)
        .map(|i| applied_segment(i as u64 + 1, segments[i], 100 * (i as u64 + 1), 2))
        .collect();
    let mut ndb = Ndb::recover(config, &writes, 1_000);
    assert_eq!(ndb.decided.len(), 2);
    assert!(!ndb.decided.contains_key(&segments[0]));
    let NdbWrite::Applied {
        resolution,
        messages,
    } = &writes[0]
    else {
        unreachable!()
    };
    let keep = Message::Keep {
        segment: segments[0],
        owner: NodeId(0),
        digest: segment_digest(messages),
        messages: messages.clone(),
    };
    ndb.handle_message(NodeId(0), keep, 1_000);
    assert_eq!(ndb.temp_segment_count(), 1, "held as a new copy");
    let resolved = Message::Resolved {
        resolutions: vec![resolution.clone()],
    };
    ndb.handle_message(NodeId(3), resolved, 1_001);
    assert_eq!(
        ndb.temp_segment_count(),
        0,
        "dropped: its resolution is applied"
    );
    assert_eq!(ndb.applied_index(), 3);
}

/// Recovery from the oldest resolutions summed up (`NdbBase`) and the newest ones rebuilds
/// what recovery from all of them does: the same position, log, cache and decisions.
#[test]
fn recovery_from_a_summed_up_start_is_recovery_from_every_resolution() {
    let mut config = ndb().config.clone();
    config.decided_segments_max = 2;
    config.log_cache_records_max = 3;
    let segments: Vec<SegmentId> = (1..=5u8)
        .map(|n| SegmentId::new_v7(1_000, [n; 10]))
        .collect();
    let mut writes: Vec<NdbWrite> = (0..5)
        .map(|i| applied_segment(i as u64 + 1, segments[i], 100 * (i as u64 + 1), 2))
        .collect();
    // The oldest three as the driver hands them: without their records.
    for write in &mut writes[..3] {
        if let NdbWrite::Applied { messages, .. } = write {
            messages.clear();
        }
    }
    let whole = Ndb::recover(config.clone(), &writes, 1_000);
    let mut base = NdbBase::default();
    for write in &writes[..3] {
        if let NdbWrite::Applied { resolution, .. } = write {
            base.add(resolution);
        }
    }
    let split = Ndb::recover_from(config, base, &writes[3..], 1_000);
    let position = |ndb: &Ndb| (ndb.applied_index(), ndb.log_records(), ndb.last_id());
    assert_eq!(position(&split), (5, 10, 501));
    assert_eq!(position(&split), position(&whole));
    assert_eq!(cached(&split), cached(&whole));
    assert_eq!(split.log_cache().0, whole.log_cache().0);
    assert_eq!(split.decided, whole.decided);
    assert_eq!(split.stored_end, whole.stored_end);
}
