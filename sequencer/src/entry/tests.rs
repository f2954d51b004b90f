//! Unit tests of the entry core.

use super::*;
use crate::config::{wire_limits::FRAME_SIZE_MAX_BYTES, Membership};
use crate::wire;

fn entry() -> Entry {
    let membership = Membership {
        entries: vec![NodeId(0)],
        ndbs: vec![NodeId(1), NodeId(2), NodeId(3)],
        syncs: vec![NodeId(4)],
    };
    Entry::new(EntryConfig::new(NodeId(0), membership, 1), 1_000)
}

fn publication(sequence: u64, payload_bytes: usize) -> Publication {
    Publication {
        publisher: 1,
        sequence,
        payload: vec![7; payload_bytes],
    }
}

#[test]
fn a_publication_larger_than_a_frame_is_refused_at_publish() {
    let mut entry = entry();
    let refused = entry.publish(publication(1, FRAME_SIZE_MAX_BYTES), 1_000);
    assert!(
        matches!(refused, Err(PublishError::TooLarge { .. })),
        "{refused:?}"
    );
    assert!(!entry.has_segment_in_flight());
    // The entry is not stuck: a normal publish goes on.
    assert!(entry.publish(publication(2, 10), 1_000).is_ok());
}

#[test]
fn segments_are_cut_in_bytes_so_every_keep_fits_in_a_frame() {
    let mut entry = entry();
    entry.config.segments_in_flight_max = 1;
    let six_mib = 6 << 20;
    assert!(entry.publish(publication(1, six_mib), 1_000).is_ok());
    // The second does not fit beside the first: the first is sealed and sent alone.
    assert!(entry.publish(publication(2, six_mib), 1_000).is_ok());
    // One in flight and one filling: the third waits.
    assert_eq!(
        entry.publish(publication(3, six_mib), 1_000),
        Err(PublishError::Busy)
    );
    entry.handle_timeout(1_000 + entry.config.segment_window_ms);
    let keeps: Vec<Message> = entry
        .ready()
        .messages
        .into_iter()
        .map(|(_, message)| message)
        .filter(|message| matches!(message, Message::Keep { .. }))
        .collect();
    assert_eq!(keeps.len(), 3, "one KEEP per ndb");
    for keep in &keeps {
        let frame = wire::encode_frame(keep, FRAME_SIZE_MAX_BYTES);
        assert!(frame.is_ok(), "{:?}", frame.err());
    }
}

fn messages_of(entry: &mut Entry) -> Vec<(NodeId, Message)> {
    entry.ready().messages
}

fn stored_by_quorum(entry: &mut Entry, keep: &Message, now_ms: u64) {
    let Message::Keep {
        segment, messages, ..
    } = keep
    else {
        panic!("not a KEEP: {keep:?}");
    };
    for ndb in [NodeId(1), NodeId(2)] {
        let stored = Message::Stored {
            segment: *segment,
            count: messages.len() as u32,
            digest: crate::id::segment_digest(messages),
        };
        entry.handle_message(ndb, stored, now_ms);
    }
}

#[test]
fn a_lone_publish_is_sealed_when_the_input_drains_not_after_a_window() {
    let mut entry = entry();
    entry.publish(publication(1, 10), 1_000).expect("accepted");
    entry.publish(publication(2, 10), 1_000).expect("accepted");
    // Not sealed per publish: the caller hands over what waits, then the timer is due now.
    assert!(messages_of(&mut entry)
        .iter()
        .all(|(_, m)| !matches!(m, Message::Keep { .. })));
    assert_eq!(entry.poll_timeout(), 1_000);
    entry.handle_timeout(1_000);
    let keeps: Vec<Message> = messages_of(&mut entry)
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| matches!(m, Message::Keep { .. }))
        .collect();
    assert_eq!(keeps.len(), 3, "one KEEP per ndb, sealed at once");
    let Message::Keep { messages, .. } = &keeps[0] else {
        unreachable!()
    };
    assert_eq!(messages.len(), 2, "both publishes in one segment");
    // Nothing open: the next deadline is not "now" again (no busy loop).
    assert!(entry.poll_timeout() > 1_000);
}

#[test]
fn pipelined_segments_each_name_the_undecided_one_before_them() {
    let mut entry = entry();
    let mut keeps = Vec::new();
    for sequence in 1..=3 {
        entry
            .publish(publication(sequence, 10), 1_000)
            .expect("accepted");
        entry.handle_timeout(1_000);
        let keep = messages_of(&mut entry)
            .into_iter()
            .map(|(_, m)| m)
            .find(|m| matches!(m, Message::Keep { .. }))
            .expect("sealed");
        keeps.push(keep);
    }
    assert_eq!(entry.segments_in_flight(), 3);
    let mut overs = Vec::new();
    for keep in keeps.iter().rev() {
        stored_by_quorum(&mut entry, keep, 1_001);
        overs.extend(
            messages_of(&mut entry)
                .into_iter()
                .filter_map(|(_, m)| match m {
                    Message::SegmentOver { segment, after, .. } => Some((segment, after)),
                    _ => None,
                }),
        );
    }
    let ids: Vec<SegmentId> = keeps
        .iter()
        .map(|k| match k {
            Message::Keep { segment, .. } => *segment,
            _ => unreachable!(),
        })
        .collect();
    overs.sort();
    let mut expected = vec![
        (ids[0], None),
        (ids[1], Some(ids[0])),
        (ids[2], Some(ids[1])),
    ];
    expected.sort();
    assert_eq!(overs, expected);
}

#[test]
fn in_flight_segments_are_capped_and_the_open_one_waits_without_spinning() {
    let mut entry = entry();
    entry.config.segments_in_flight_max = 2;
    for sequence in 1..=2 {
        entry
            .publish(publication(sequence, 10), 1_000)
            .expect("accepted");
        entry.handle_timeout(1_000);
    }
    assert_eq!(entry.segments_in_flight(), 2);
    entry
        .publish(publication(3, 10), 1_000)
        .expect("fills the open segment");
    entry.handle_timeout(1_000);
    assert_eq!(entry.segments_in_flight(), 2, "no third segment in flight");
    assert!(
        entry.poll_timeout() > 1_000,
        "an open segment that cannot go is not due"
    );
}

#[test]
fn an_aborted_segment_hands_its_after_to_the_segment_sealed_after_it() {
    let mut entry = entry();
    for sequence in 1..=3 {
        assert!(entry.publish(publication(sequence, 10), 1_000).is_ok());
        entry.handle_timeout(1_000);
    }
    let ids: Vec<SegmentId> = entry.sealed.iter().map(|sealed| sealed.id).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(entry.sealed[2].after, Some(ids[1]));
    for position in 0..3 {
        let (segment, digest) = (entry.sealed[position].id, entry.sealed[position].digest);
        for ndb in [NodeId(1), NodeId(2)] {
            let stored = Message::Stored {
                segment,
                count: 1,
                digest,
            };
            entry.handle_message(ndb, stored, 1_001);
        }
    }
    let _ = entry.ready();
    let resolutions = vec![Resolution {
        index: 1,
        segment: ids[1],
        owner: NodeId(0),
        outcome: Outcome::Aborted,
        raft_index: 1,
        raft_term: 1,
    }];
    entry.handle_message(NodeId(4), Message::Resolved { resolutions }, 1_002);
    let repeated = entry.ready().messages.into_iter().any(|(_, message)| {
        matches!(message, Message::SegmentOver { segment, after, .. }
            if segment == ids[2] && after == Some(ids[0]))
    });
    assert!(repeated, "C's SEGMENT_OVER names A once B is aborted");
}

fn reads_of(entry: &mut Entry) -> Vec<u64> {
    messages_of(entry)
        .into_iter()
        .filter_map(|(_, message)| match message {
            Message::Read { after } => Some(after),
            _ => None,
        })
        .collect()
}

fn record(id: u64) -> LogRecord {
    LogRecord {
        id: PermanentId(id),
        publication: publication(id, 10),
    }
}

#[test]
fn a_subscriber_ahead_of_the_tail_is_served_from_its_position_not_after_the_whole_log() {
    let mut entry = entry();
    entry.handle_timeout(1_000);
    assert_eq!(
        reads_of(&mut entry),
        [0],
        "a fresh entry's tail reads from the start"
    );
    // An entry restarting from a snapshot at 500: the tail reads on from there.
    entry.subscribe(7, PermanentId(500));
    entry.handle_timeout(1_000 + entry.config.tail_poll_ms);
    assert_eq!(reads_of(&mut entry), [500]);
    entry.handle_message(
        NodeId(1),
        Message::Log {
            after: 500,
            records: vec![record(501)],
        },
        1_010,
    );
    let delivered: Vec<u64> = entry
        .ready()
        .events
        .into_iter()
        .filter_map(|event| match event {
            EntryEvent::Deliver {
                subscriber: 7,
                record,
            } => Some(record.id.0),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, [501]);
    // The answer to the tail's first READ (from 0) comes late: nobody needs it.
    entry.handle_message(
        NodeId(2),
        Message::Log {
            after: 0,
            records: vec![record(1)],
        },
        1_020,
    );
    assert!(entry.ready().events.is_empty());
    // A second subscriber from the start lags behind the tail: it reads from ndb.
    entry.subscribe(8, PermanentId(0));
    assert!(reads_of(&mut entry).contains(&0));
}

/// The UNDECIDED messages of a batch: (ndb, segments named).
fn undecided_of(entry: &mut Entry) -> Vec<(NodeId, Vec<SegmentId>)> {
    let mut named = Vec::new();
    for (to, message) in entry.ready().messages {
        if let Message::Undecided { owner, segments } = message {
            assert_eq!(owner, NodeId(0));
            named.push((to, segments));
        }
    }
    named
}

/// Runs the entry's timers at each ms of `from_ms..=until_ms` that it asks for (sealing
/// at once); the UNDECIDED messages, with their time.
fn run_timers(
    entry: &mut Entry,
    from_ms: u64,
    until_ms: u64,
) -> Vec<(u64, NodeId, Vec<SegmentId>)> {
    let mut sent = Vec::new();
    for now_ms in from_ms..=until_ms {
        if entry.poll_timeout() <= now_ms {
            entry.handle_timeout(now_ms);
        }
        for (to, segments) in undecided_of(entry) {
            sent.push((now_ms, to, segments));
        }
    }
    sent
}

#[test]
fn undecided_segments_are_named_to_every_ndb_every_retry_ms_once_they_wait() {
    let mut entry = entry();
    let retry_ms = entry.config.retry_ms;
    assert!(entry.publish(publication(1, 10), 1_000).is_ok());
    entry.handle_timeout(1_000);
    let first = entry.sealed[0].id;
    let _ = entry.ready();
    assert!(entry.publish(publication(2, 10), 1_005).is_ok());
    entry.handle_timeout(1_005);
    let second = entry.sealed[1].id;
    let _ = entry.ready();
    // Nothing until the oldest has waited retry_ms, then one per ndb every retry_ms,
    // naming those that waited that long, oldest first.
    let sent = run_timers(&mut entry, 1_005, 1_000 + 3 * retry_ms);
    let times: Vec<u64> = sent.iter().map(|(at, ..)| *at).collect();
    let each = |at| [at; 3];
    let expected: Vec<u64> = [1_000 + retry_ms, 1_000 + 2 * retry_ms, 1_000 + 3 * retry_ms]
        .into_iter()
        .flat_map(each)
        .collect();
    assert_eq!(times, expected);
    let ndbs: Vec<NodeId> = sent[..3].iter().map(|(_, to, _)| *to).collect();
    assert_eq!(ndbs, vec![NodeId(1), NodeId(2), NodeId(3)]);
    assert_eq!(
        sent[0].2,
        vec![first],
        "the second has not waited retry_ms yet"
    );
    assert_eq!(sent[3].2, vec![first, second]);
    // Decided: no longer named, and no UNDECIDED at all once none waits.
    for segment in [first, second] {
        let resolutions = vec![Resolution {
            index: 1,
            segment,
            owner: NodeId(0),
            outcome: Outcome::Aborted,
            raft_index: 1,
            raft_term: 1,
        }];
        entry.handle_message(NodeId(4), Message::Resolved { resolutions }, 1_070);
    }
    assert!(run_timers(&mut entry, 1_070, 1_200).is_empty());
}

#[test]
fn a_segment_decided_within_retry_ms_costs_no_undecided() {
    let mut entry = entry();
    assert!(entry.publish(publication(1, 10), 1_000).is_ok());
    entry.handle_timeout(1_000);
    let keep = messages_of(&mut entry)
        .into_iter()
        .map(|(_, message)| message)
        .find(|message| matches!(message, Message::Keep { .. }))
        .expect("a KEEP");
    stored_by_quorum(&mut entry, &keep, 1_003);
    let Message::Keep {
        segment, messages, ..
    } = keep
    else {
        unreachable!()
    };
    let resolutions = vec![Resolution {
        index: 1,
        segment,
        owner: NodeId(0),
        outcome: Outcome::Permanent {
            base: PermanentId(4096),
            count: 1,
            digest: crate::id::segment_digest(&messages),
        },
        raft_index: 1,
        raft_term: 1,
    }];
    entry.handle_message(NodeId(4), Message::Resolved { resolutions }, 1_010);
    assert!(run_timers(&mut entry, 1_010, 1_500).is_empty());
    assert!(!entry.has_segment_in_flight());
}

#[test]
fn a_lost_lease_is_passed_to_every_ndb() {
    let mut entry = entry();
    entry.abort_owner(NodeId(7), 1_500);
    let sent = messages_of(&mut entry);
    let expected: Vec<(NodeId, Message)> = [1, 2, 3]
        .map(|ndb| {
            let abort = Message::AbortOwner {
                owner: NodeId(7),
                cut_until_ms: 1_500,
            };
            (NodeId(ndb), abort)
        })
        .to_vec();
    assert_eq!(sent, expected);
}
