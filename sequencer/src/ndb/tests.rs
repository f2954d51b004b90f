//! Unit tests of the ndb core.

use super::*;
use crate::config::Membership;

fn ndb() -> Ndb {
    let membership = Membership {
        entries: vec![NodeId(0)],
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
    assert_eq!(ndb.log().len(), 3);
    // Page through the log as an entry does: every LOG encodes, and reads make progress.
    let mut after = 0;
    for _ in 0..3 {
        ndb.handle_message(NodeId(0), Message::Read { after }, 1_000);
        let ready = ndb.ready();
        let Some((_, log)) = ready
            .messages
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
    let resolution = Resolution {
        index: 1,
        segment,
        owner: NodeId(0),
        outcome: Outcome::Permanent {
            base: PermanentId(100),
            count: 1,
            digest: segment_digest(&decided),
        },
        raft_index: 1,
        raft_term: 1,
    };
    let resolutions = vec![resolution];
    ndb.handle_message(NodeId(3), Message::Resolved { resolutions }, 1_000);
    assert!(ndb.log().is_empty(), "the held copy is not the decided one");
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
    assert_eq!(ndb.log().len(), 1);
    assert_eq!(ndb.log()[0].publication, decided[0]);
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
