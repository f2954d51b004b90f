//! Unit tests of the sync core.

use super::*;
use crate::config::Membership;

/// 2096: the floor is saturated at `FLOOR_MAX`, 2^32 IDs below the end of the space.
const LATE_UNIX_MS: u64 = 4_000_000_000_000;

fn config() -> SyncConfig {
    let membership = Membership {
        entries: vec![NodeId(0)],
        ndbs: vec![NodeId(1)],
        syncs: vec![NodeId(2)],
    };
    SyncConfig::new(NodeId(2), membership, 7)
}

/// A one-voter sync node that leads, with every write it made so far.
fn leader(now_ms: &mut u64) -> (Sync, Vec<SyncWrite>) {
    let mut sync = Sync::new(config(), *now_ms).expect("valid config");
    let mut writes = sync.ready().writes;
    for _ in 0..200 {
        if sync.is_leader() {
            return (sync, writes);
        }
        *now_ms += 1;
        sync.handle_timeout(*now_ms);
        writes.extend(sync.ready().writes);
    }
    panic!("a single voter elects itself");
}

fn over(seed: u8, count: u32) -> Message {
    Message::SegmentOver {
        segment: SegmentId::new_v7(1, [seed; 10]),
        owner: NodeId(0),
        count,
        digest: 0,
        after: None,
    }
}

#[test]
fn exhaustion_is_refused_when_proposing_and_replay_does_not_crash() {
    let mut now_ms = LATE_UNIX_MS;
    let (mut sync, mut writes) = leader(&mut now_ms);
    // Two segments of 2^32 - 1 messages each: the first fits under 2^53, the second not.
    for seed in [1, 2] {
        now_ms += 1;
        sync.handle_message(NodeId(0), over(seed, u32::MAX), now_ms);
        writes.extend(sync.ready().writes);
        for _ in 0..10 {
            now_ms += 1;
            sync.handle_timeout(now_ms);
            writes.extend(sync.ready().writes);
        }
    }
    let outcomes: Vec<Outcome> = sync
        .resolutions()
        .iter()
        .map(|r| r.outcome.clone())
        .collect();
    let first = Outcome::Permanent {
        base: PermanentId::FLOOR_MAX,
        count: u32::MAX,
        digest: 0,
    };
    assert_eq!(outcomes, vec![first, Outcome::Aborted]);
    // The segment refused is answered "aborted" to its entry, so its publishers learn it.
    sync.handle_message(NodeId(0), over(2, u32::MAX), now_ms);
    let answered = sync.ready().messages.into_iter().any(|(to, message)| {
        to == NodeId(0)
            && matches!(message, Message::Resolved { resolutions }
                if resolutions[0].outcome == Outcome::Aborted)
    });
    assert!(answered);
    // A restarted replica replays the same log to the same resolutions.
    let replayed = Sync::recover(config(), &writes, now_ms).expect("own writes replay");
    assert_eq!(replayed.resolutions(), sync.resolutions());
}

#[test]
fn a_range_past_max_met_when_applying_is_aborted_not_asserted() {
    let mut now_ms = LATE_UNIX_MS;
    let (mut sync, _) = leader(&mut now_ms);
    // As if drafted by a leader whose view of the end was behind: both Overs in one draft.
    let items = [1u8, 2].map(|seed| Item::Over {
        segment: SegmentId::new_v7(1, [seed; 10]),
        owner: NodeId(0),
        count: u32::MAX,
        digest: 0,
    });
    let draft = Draft {
        floor: PermanentId::FLOOR_MAX.0,
        items: items.to_vec(),
    };
    sync.apply_draft(draft, 9, 1);
    let outcomes: Vec<bool> = sync
        .resolutions()
        .iter()
        .map(|r| r.outcome == Outcome::Aborted)
        .collect();
    assert_eq!(outcomes, vec![false, true]);
    assert!(sync.end <= PermanentId::MAX.0);
}

#[test]
fn a_damaged_raft_log_is_an_error_not_a_panic() {
    let entry = |index: u64| RaftEntry {
        index,
        term: 1,
        ..RaftEntry::default()
    };
    let gap = [
        SyncWrite::Entries(vec![entry(1)]),
        SyncWrite::Entries(vec![entry(3)]),
    ];
    assert!(matches!(
        Sync::recover(config(), &gap, 0),
        Err(SyncError::LogNotContiguous {
            index: 3,
            last_index: 1
        })
    ));
    let commit = HardState {
        term: 1,
        commit: 5,
        ..HardState::default()
    };
    let ahead = [
        SyncWrite::Entries(vec![entry(1)]),
        SyncWrite::HardState(commit),
    ];
    assert!(matches!(
        Sync::recover(config(), &ahead, 0),
        Err(SyncError::CommitBeyondLog {
            commit: 5,
            last_index: 1
        })
    ));
    let mut bad = config();
    bad.heartbeat_ticks = 0;
    assert!(matches!(Sync::new(bad, 0), Err(SyncError::Config(_))));
}

fn over_after(seed: u8, after: Option<u8>) -> Message {
    Message::SegmentOver {
        segment: SegmentId::new_v7(1, [seed; 10]),
        owner: NodeId(0),
        count: 3,
        digest: 0,
        after: after.map(|a| SegmentId::new_v7(1, [a; 10])),
    }
}

fn run_for(sync: &mut Sync, now_ms: &mut u64, ms: u64) {
    for _ in 0..ms {
        *now_ms += 1;
        sync.handle_timeout(*now_ms);
        let _ = sync.ready();
    }
}

#[test]
fn a_segment_is_decided_only_after_the_one_its_entry_sealed_before_it() {
    let mut now_ms = 1_000;
    let (mut sync, _) = leader(&mut now_ms);
    // B (after A) arrives first: it waits.
    sync.handle_message(NodeId(0), over_after(2, Some(1)), now_ms);
    run_for(&mut sync, &mut now_ms, 20);
    assert!(sync.resolutions().is_empty(), "{:?}", sync.resolutions());
    // A arrives: A, then B, with increasing IDs.
    sync.handle_message(NodeId(0), over_after(1, None), now_ms);
    run_for(&mut sync, &mut now_ms, 20);
    let decided: Vec<(SegmentId, u64)> = sync
        .resolutions()
        .iter()
        .map(|r| match r.outcome {
            Outcome::Permanent { base, .. } => (r.segment, base.0),
            Outcome::Aborted => panic!("aborted"),
        })
        .collect();
    assert_eq!(decided.len(), 2);
    assert_eq!(decided[0].0, SegmentId::new_v7(1, [1; 10]));
    assert_eq!(decided[1].0, SegmentId::new_v7(1, [2; 10]));
    assert!(decided[0].1 < decided[1].1);
}

#[test]
fn an_aborted_predecessor_releases_the_segment_that_follows_it_when_its_entry_says_so() {
    let mut now_ms = 1_000;
    let (mut sync, _) = leader(&mut now_ms);
    sync.handle_message(NodeId(0), over_after(2, Some(1)), now_ms);
    run_for(&mut sync, &mut now_ms, 10);
    assert!(sync.resolutions().is_empty());
    let abort = Message::Abort {
        segment: SegmentId::new_v7(1, [1; 10]),
        owner: NodeId(0),
    };
    sync.handle_message(NodeId(1), abort, now_ms);
    run_for(&mut sync, &mut now_ms, 20);
    // A was aborted; B waits until its entry names what A followed (nothing here).
    assert_eq!(sync.resolutions().len(), 1);
    sync.handle_message(NodeId(0), over_after(2, None), now_ms);
    run_for(&mut sync, &mut now_ms, 20);
    let outcomes: Vec<bool> = sync
        .resolutions()
        .iter()
        .map(|r| matches!(r.outcome, Outcome::Permanent { .. }))
        .collect();
    assert_eq!(outcomes, vec![false, true]);
}

/// Found by the simulator (seed 1095 of round 12's fox-sim): an entry pipelines A, B, C
/// (B after A, C after B); B stalls and an ndb has it aborted; C's `after` was B, which
/// counted as decided, so C got a range before A did and a publisher's messages in C were
/// ordered before its earlier message in A. An aborted `after` must not count.
#[test]
fn a_segment_after_an_aborted_one_waits_for_the_one_before_it() {
    let segment = |seed: u8| SegmentId::new_v7(1, [seed; 10]);
    let over_after = |seed: u8, after: Option<u8>| Message::SegmentOver {
        segment: segment(seed),
        owner: NodeId(0),
        count: 1,
        digest: 0,
        after: after.map(segment),
    };
    let mut now_ms = 1_000;
    let (mut sync, _) = leader(&mut now_ms);
    let mut step = |sync: &mut Sync, message: Option<Message>| {
        now_ms += 1;
        if let Some(message) = message {
            sync.handle_message(NodeId(1), message, now_ms);
        }
        for _ in 0..10 {
            now_ms += 1;
            sync.handle_timeout(now_ms);
            let _ = sync.ready();
        }
    };
    let abort = Message::Abort {
        segment: segment(2),
        owner: NodeId(0),
    };
    step(&mut sync, Some(abort));
    step(&mut sync, Some(over_after(3, Some(2))));
    let decided: Vec<SegmentId> = sync.resolutions().iter().map(|r| r.segment).collect();
    assert_eq!(
        decided,
        vec![segment(2)],
        "C waits: B was aborted, A is open"
    );
    // The entry learns of B's abort and names A as C's `after`; A comes, then C.
    step(&mut sync, Some(over_after(3, Some(1))));
    assert_eq!(sync.resolutions().len(), 1);
    step(&mut sync, Some(over_after(1, None)));
    let decided: Vec<SegmentId> = sync.resolutions().iter().map(|r| r.segment).collect();
    assert_eq!(decided, vec![segment(2), segment(1), segment(3)]);
}

/// Found by the simulator (a big workload against a small `queue_items_max`, no faults):
/// segments waiting for their `after` filled the leader's queue, the segments they waited
/// for were dropped on arrival, and nothing moved until ndb aborted them (700 publishes of
/// 4,000 rejected). A full queue now makes room for what can be drafted.
#[test]
fn a_full_queue_makes_room_for_the_segment_the_queued_ones_wait_for() {
    let mut config = config();
    config.queue_items_max = 1;
    let mut now_ms = 1_000;
    let mut sync = Sync::new(config, now_ms).expect("valid config");
    for _ in 0..200 {
        now_ms += 1;
        sync.handle_timeout(now_ms);
        let _ = sync.ready();
        if sync.is_leader() {
            break;
        }
    }
    assert!(sync.is_leader());
    // C waits for B; the queue is full.
    sync.handle_message(NodeId(0), over_after(3, Some(2)), now_ms);
    run_for(&mut sync, &mut now_ms, 10);
    assert!(sync.resolutions().is_empty());
    // B (after nothing) gets in, C is dropped and resent by its entry.
    sync.handle_message(NodeId(0), over_after(2, None), now_ms);
    run_for(&mut sync, &mut now_ms, 10);
    sync.handle_message(NodeId(0), over_after(3, Some(2)), now_ms);
    run_for(&mut sync, &mut now_ms, 10);
    let decided: Vec<SegmentId> = sync.resolutions().iter().map(|r| r.segment).collect();
    assert_eq!(
        decided,
        vec![SegmentId::new_v7(1, [2; 10]), SegmentId::new_v7(1, [3; 10])]
    );
}

/// Two of three sync nodes, started together, messages taking 8 ms each way (a round trip
/// of 80% of the 20 ms election timeout): a leader within 300 ms on each of 30 seeds. With
/// only the tick jitter to break ties, their elections kept colliding on 11 of them (3 at
/// 6 ms; the simulator saw 350 ms without a leader after the heal).
#[test]
fn two_of_three_sync_nodes_elect_a_leader_despite_slow_links() {
    const DELAY_MS: u64 = 8;
    let membership = Membership {
        entries: vec![NodeId(0)],
        ndbs: vec![NodeId(1)],
        syncs: vec![NodeId(2), NodeId(3), NodeId(4)],
    };
    let mut slow = Vec::new();
    for seed in 0..30 {
        let start_ms = 1_000;
        let mut nodes: Vec<Sync> = [NodeId(2), NodeId(3)]
            .iter()
            .map(|id| {
                let config = SyncConfig::new(*id, membership.clone(), seed * 2 + u64::from(id.0));
                Sync::new(config, start_ms).expect("valid config")
            })
            .collect();
        let mut in_flight: Vec<(u64, usize, NodeId, Message)> = Vec::new();
        let mut elected_at = None;
        for now_ms in start_ms..start_ms + 300 {
            let due: Vec<_> = in_flight
                .iter()
                .filter(|(at, ..)| *at <= now_ms)
                .cloned()
                .collect();
            in_flight.retain(|(at, ..)| *at > now_ms);
            for (_, to, from, message) in due {
                nodes[to].handle_message(from, message, now_ms);
            }
            for (index, node) in nodes.iter_mut().enumerate() {
                if node.poll_timeout() <= now_ms {
                    node.handle_timeout(now_ms);
                }
                let ready = node.ready();
                let from = NodeId(2 + index as u32);
                for (to, message) in ready.early.into_iter().chain(ready.messages) {
                    if let Some(to) = [NodeId(2), NodeId(3)].iter().position(|n| *n == to) {
                        in_flight.push((now_ms + DELAY_MS, to, from, message));
                    }
                }
            }
            if nodes.iter().any(Sync::is_leader) {
                elected_at = Some(now_ms - start_ms);
                break;
            }
        }
        if elected_at.is_none() {
            slow.push(seed);
        }
    }
    assert!(
        slow.is_empty(),
        "no leader within 300 ms for seeds {slow:?}"
    );
}

/// An ABORT (an ndb's, after its owner's silence or its lease's expiry) of a segment sync
/// already made permanent changes nothing: the first decision stands.
#[test]
fn an_abort_of_a_segment_decided_permanent_changes_nothing() {
    let mut now_ms = 1_000;
    let (mut sync, _) = leader(&mut now_ms);
    sync.handle_message(NodeId(0), over_after(1, None), now_ms);
    run_for(&mut sync, &mut now_ms, 20);
    let decided = sync.resolutions().to_vec();
    assert_eq!(decided.len(), 1);
    assert!(matches!(decided[0].outcome, Outcome::Permanent { .. }));
    let abort = Message::Abort {
        segment: decided[0].segment,
        owner: NodeId(0),
    };
    sync.handle_message(NodeId(1), abort, now_ms);
    run_for(&mut sync, &mut now_ms, 20);
    assert_eq!(sync.resolutions(), &decided[..]);
}

/// A follower fsyncs once per vote, for the entry it appends: the commit index it learns
/// in the leader's next append (or heartbeat) is written without an fsync of its own
/// (raft-rs's `must_sync`), as a leader's own commit index already was.
#[test]
fn a_follower_fsyncs_once_per_vote_not_again_for_the_commit() {
    let membership = Membership {
        entries: vec![NodeId(0)],
        ndbs: vec![NodeId(1)],
        syncs: vec![NodeId(2), NodeId(3), NodeId(4)],
    };
    let ids = [NodeId(2), NodeId(3)];
    let mut nodes: Vec<Sync> = ids
        .iter()
        .map(|id| {
            Sync::new(
                SyncConfig::new(*id, membership.clone(), 11 + u64::from(id.0)),
                1_000,
            )
            .unwrap()
        })
        .collect();
    // One step: every node's timers, then its ready; messages between the two arrive at
    // once. Returns the fsyncs made per node.
    let mut step = |nodes: &mut Vec<Sync>, now_ms: u64, input: Option<Message>| {
        let mut fsyncs = [0; 2];
        let mut queue: Vec<(usize, NodeId, Message)> = Vec::new();
        if let Some(message) = input {
            let leader = nodes.iter().position(Sync::is_leader).expect("a leader");
            queue.push((leader, NodeId(0), message));
        }
        for _ in 0..50 {
            for (to, from, message) in std::mem::take(&mut queue) {
                nodes[to].handle_message(from, message, now_ms);
            }
            for (index, node) in nodes.iter_mut().enumerate() {
                if node.poll_timeout() <= now_ms {
                    node.handle_timeout(now_ms);
                }
                let ready = node.ready();
                fsyncs[index] += usize::from(ready.fsync);
                for (to, message) in ready.early.into_iter().chain(ready.messages) {
                    if let Some(to) = ids.iter().position(|n| *n == to) {
                        queue.push((to, ids[index], message));
                    }
                }
            }
            if queue.is_empty() {
                break;
            }
        }
        fsyncs
    };
    let mut now_ms = 1_000;
    while !nodes.iter().any(Sync::is_leader) {
        now_ms += 1;
        assert!(now_ms < 3_000, "no leader");
        step(&mut nodes, now_ms, None);
    }
    // Quiet: the new leader's first entry committed everywhere.
    for _ in 0..50 {
        now_ms += 1;
        step(&mut nodes, now_ms, None);
    }
    let follower = nodes.iter().position(|n| !n.is_leader()).unwrap();
    let mut follower_fsyncs = 0;
    for seed in 1..=5 {
        now_ms += 1;
        follower_fsyncs += step(&mut nodes, now_ms, Some(over_after(seed, None)))[follower];
        // Until the vote is applied on both (the follower learns its commit from the
        // leader's next message).
        for _ in 0..30 {
            now_ms += 1;
            follower_fsyncs += step(&mut nodes, now_ms, None)[follower];
        }
    }
    assert!(
        nodes.iter().all(|n| n.resolutions().len() == 5),
        "five votes applied"
    );
    assert_eq!(follower_fsyncs, 5, "one fsync per vote on the follower");
}
