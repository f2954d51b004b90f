//! Unit tests of the sync core.

use super::*;
use crate::config::Membership;
use raft::Storage as _;

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

/// The config of sync node `id` of three (2, 3, 4), snapshotting every `interval` entries.
fn trio_config(id: u32, interval: u64) -> SyncConfig {
    let membership = Membership {
        entries: vec![NodeId(0)],
        ndbs: vec![NodeId(1)],
        syncs: vec![NodeId(2), NodeId(3), NodeId(4)],
    };
    let mut config = SyncConfig::new(NodeId(id), membership, u64::from(id));
    config.snapshot_interval_entries = interval;
    config
}

/// What a store keeps of `writes`, as `cluster/src/disk.rs` writes them: a `CompactLog`
/// deletes the entries it covers, an installed snapshot all of them.
fn durable(writes: &[SyncWrite]) -> Vec<SyncWrite> {
    let mut kept: Vec<SyncWrite> = Vec::new();
    for write in writes {
        let through = match write {
            SyncWrite::CompactLog { through } => *through,
            SyncWrite::Snapshot {
                installed: true, ..
            } => u64::MAX,
            _ => 0,
        };
        for record in &mut kept {
            if let SyncWrite::Entries(entries) = record {
                entries.retain(|entry| entry.index > through);
            }
        }
        if !matches!(write, SyncWrite::CompactLog { .. }) {
            kept.push(write.clone());
        }
    }
    kept
}

/// Three sync nodes on 1 ms links; a node in `cut` neither sends nor receives.
struct Trio {
    nodes: Vec<Sync>,
    writes: Vec<Vec<SyncWrite>>,
    in_flight: Vec<(u64, usize, NodeId, Message)>,
    cut: BTreeSet<usize>,
    /// Drop PULL_RESOLUTIONS and RESOLVED between sync nodes (no fill can finish).
    no_fills: bool,
    now_ms: u64,
}

impl Trio {
    fn new(interval: u64) -> Trio {
        Trio::with_cache(interval, crate::config::RESOLUTION_CACHE_MAX_DEFAULT)
    }

    /// Three nodes whose memory holds the newest `cache` resolutions.
    fn with_cache(interval: u64, cache: usize) -> Trio {
        let now_ms = 1_000;
        let nodes = (2..5)
            .map(|id| {
                let mut config = trio_config(id, interval);
                config.resolution_cache_max = cache;
                Sync::new(config, now_ms).expect("valid config")
            })
            .collect();
        Trio {
            nodes,
            writes: vec![Vec::new(); 3],
            in_flight: Vec::new(),
            cut: BTreeSet::new(),
            no_fills: false,
            now_ms,
        }
    }

    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now_ms += 1;
            let now_ms = self.now_ms;
            let due: Vec<_> = self
                .in_flight
                .iter()
                .filter(|m| m.0 <= now_ms)
                .cloned()
                .collect();
            self.in_flight.retain(|m| m.0 > now_ms);
            for (_, to, from, message) in due {
                let from_index = from.0 as usize - 2;
                let fill = matches!(
                    message,
                    Message::PullResolutions { .. } | Message::Resolved { .. }
                );
                if self.no_fills && fill {
                    continue;
                }
                if !self.cut.contains(&to) && !self.cut.contains(&from_index) {
                    self.nodes[to].handle_message(from, message, now_ms);
                }
            }
            for index in 0..self.nodes.len() {
                let node = &mut self.nodes[index];
                if node.poll_timeout() <= now_ms {
                    node.handle_timeout(now_ms);
                }
                let ready = node.ready();
                self.writes[index].extend(ready.writes);
                let from = NodeId(2 + index as u32);
                let mut messages: Vec<(NodeId, Message)> = Vec::new();
                for event in ready.events {
                    if let SyncEvent::ReadResolutions {
                        to,
                        from_index,
                        count,
                    } = event
                    {
                        let resolutions = read_resolutions(&self.writes[index], from_index, count);
                        messages.push((to, Message::Resolved { resolutions }));
                    }
                }
                let sent = ready.early.into_iter().chain(ready.messages);
                for (to, message) in sent.chain(messages) {
                    if (2..5).contains(&to.0) {
                        self.in_flight
                            .push((now_ms + 1, to.0 as usize - 2, from, message));
                    }
                }
            }
        }
    }

    fn leader(&self) -> Option<usize> {
        self.nodes.iter().position(Sync::is_leader)
    }

    /// Node `index` restarted from its disk without its resolution records (snapshot
    /// interval 4): it has to fill them from a peer.
    fn restart_without_resolutions(&mut self, index: usize) {
        let records: Vec<SyncWrite> = durable(&self.writes[index])
            .into_iter()
            .filter(|write| !matches!(write, SyncWrite::Resolutions(_)))
            .collect();
        let config = trio_config(2 + index as u32, 4);
        self.nodes[index] = Sync::recover(config, &records, self.now_ms).expect("recovers");
    }

    /// Segments `seeds`, one every 5 ms, sent to the leader (entry 0 as the owner).
    fn decide(&mut self, seeds: std::ops::Range<u8>) {
        for seed in seeds {
            let leader = self.leader().expect("a leader");
            let now_ms = self.now_ms;
            self.nodes[leader].handle_message(NodeId(0), over(seed, 3), now_ms);
            self.run(5);
        }
        self.run(100);
    }
}

/// What a disk holding `writes` answers to `SyncEvent::ReadResolutions` (a write at an
/// index replaces it and all after it).
fn read_resolutions(writes: &[SyncWrite], from_index: u64, count: u64) -> Vec<Resolution> {
    crate::sim::driver::resolution_log(writes.iter())
        .into_iter()
        .skip(from_index as usize - 1)
        .take(count as usize)
        .collect()
}

fn snapshots_taken(writes: &[SyncWrite], installed: bool) -> usize {
    let taken = |write: &&SyncWrite| matches!(write, SyncWrite::Snapshot { installed: i, .. } if *i == installed);
    writes.iter().filter(taken).count()
}

#[test]
fn a_snapshot_is_taken_every_interval_and_the_log_below_it_compacted() {
    let mut now_ms = 1_000;
    let mut config = config();
    config.snapshot_interval_entries = 4;
    let mut sync = Sync::new(config, now_ms).expect("valid config");
    let mut writes = sync.ready().writes;
    while !sync.is_leader() && now_ms < 2_000 {
        now_ms += 1;
        sync.handle_timeout(now_ms);
        writes.extend(sync.ready().writes);
    }
    for seed in 1..=20 {
        sync.handle_message(NodeId(0), over(seed, 3), now_ms);
        for _ in 0..20 {
            now_ms += 1;
            sync.handle_timeout(now_ms);
            writes.extend(sync.ready().writes);
        }
    }
    assert_eq!(sync.resolutions().len(), 20);
    let status = sync.raft_status();
    let snapshots: Vec<&SyncSnapshot> = (writes.iter())
        .filter_map(|write| match write {
            SyncWrite::Snapshot { snapshot, .. } => Some(snapshot),
            _ => None,
        })
        .collect();
    // 20 votes and the leader's empty entry: a snapshot at each 4th index or soon after.
    assert!(snapshots.len() >= 4, "{snapshots:?}");
    for pair in snapshots.windows(2) {
        assert!(pair[1].raft_index >= pair[0].raft_index + 4);
    }
    assert_eq!(
        status.snapshot_index,
        snapshots[snapshots.len() - 1].raft_index
    );
    // The entries a durable snapshot covers are deleted, on disk and in memory.
    let compacted: Vec<u64> = (writes.iter())
        .filter_map(|write| match write {
            SyncWrite::CompactLog { through } => Some(*through),
            _ => None,
        })
        .collect();
    assert!(compacted.len() + 1 >= snapshots.len(), "{compacted:?}");
    assert_eq!(compacted[0], snapshots[0].raft_index);
    let first_index = sync.raft.store().first_index().expect("memory storage");
    assert_eq!(first_index, status.snapshot_index + 1);
    let kept = durable(&writes);
    let lowest = (kept.iter())
        .filter_map(|write| match write {
            SyncWrite::Entries(entries) => entries.first().map(|entry| entry.index),
            _ => None,
        })
        .min();
    assert!(lowest.is_some_and(|index| index > compacted[compacted.len() - 1]));
}

#[test]
fn a_node_recovered_from_a_snapshot_keeps_its_resolutions_and_does_not_replay_from_index_1() {
    let mut trio = Trio::new(4);
    trio.run(300);
    trio.decide(1..25);
    let leader = trio.leader().expect("a leader");
    let follower = (leader + 1) % 3;
    let before = trio.nodes[follower].resolutions().to_vec();
    assert_eq!(before.len(), 24);
    let records = durable(&trio.writes[follower]);
    let config = trio_config(2 + follower as u32, 4);
    let recovered = Sync::recover(config, &records, trio.now_ms).expect("own writes recover");
    let status = recovered.raft_status();
    assert!(status.started_from_snapshot > 1, "{status:?}");
    assert_eq!(status.filling_to, None);
    let first_index = recovered
        .raft
        .store()
        .first_index()
        .expect("memory storage");
    assert_eq!(first_index, status.started_from_snapshot + 1);
    assert_eq!(recovered.resolutions(), &before[..]);
    // The recovered node rejoins and decides on with the others.
    trio.nodes[follower] = recovered;
    trio.decide(25..30);
    let after = trio.nodes[follower].resolutions();
    assert_eq!(after.len(), 29);
    assert_eq!(after, trio.nodes[leader].resolutions());
}

#[test]
fn a_follower_behind_a_compacted_log_installs_a_snapshot_and_fills_its_resolutions() {
    let mut trio = Trio::new(4);
    trio.run(300);
    let leader = trio.leader().expect("a leader");
    let behind = (leader + 1) % 3;
    trio.cut.insert(behind);
    trio.decide(1..25);
    assert!(trio.nodes[behind].resolutions().len() < 24);
    trio.cut.clear();
    trio.run(500);
    let leader = trio.leader().expect("a leader");
    assert_eq!(snapshots_taken(&trio.writes[behind], true), 1);
    let status = trio.nodes[behind].raft_status();
    assert_eq!(status.filling_to, None, "{status:?}");
    assert_eq!(
        trio.nodes[behind].resolutions(),
        trio.nodes[leader].resolutions()
    );
    // Votes after the snapshot are applied on it, in the same order everywhere.
    trio.decide(25..30);
    for node in &trio.nodes {
        assert_eq!(node.resolutions().len(), 29);
        assert_eq!(node.resolutions(), trio.nodes[leader].resolutions());
    }
    // What it pulled is durable: a restart needs no peer.
    let records = durable(&trio.writes[behind]);
    let config = trio_config(2 + behind as u32, 4);
    let recovered = Sync::recover(config, &records, trio.now_ms).expect("own writes recover");
    assert_eq!(recovered.raft_status().filling_to, None);
    assert_eq!(recovered.resolutions(), trio.nodes[leader].resolutions());
}

/// A leader's MsgSnapshot at index 50 whose data is `data`.
fn snapshot_message(data: Vec<u8>) -> Message {
    let mut metadata = raft::eraftpb::SnapshotMetadata {
        index: 50,
        term: 3,
        ..Default::default()
    };
    metadata.set_conf_state(raft::eraftpb::ConfState::from((vec![3, 4, 5], vec![])));
    let mut snapshot = raft::eraftpb::Snapshot::default();
    snapshot.set_metadata(metadata);
    snapshot.data = data.into();
    let mut message = raft::eraftpb::Message::default();
    message.set_msg_type(raft::eraftpb::MessageType::MsgSnapshot);
    message.from = 3;
    message.to = 4;
    message.term = 3;
    message.set_snapshot(snapshot);
    Message::Raft(RaftMessage(message))
}

#[test]
fn a_foreign_snapshot_from_a_peer_stalls_visibly_and_does_not_panic() {
    let foreign_voters = SyncSnapshot {
        raft_index: 50,
        raft_term: 3,
        voters: vec![7, 8, 9],
        resolutions: 10,
        end: 100,
    };
    let foreign_voters = postcard::to_allocvec(&foreign_voters).expect("encodes");
    for data in [b"not a sync snapshot".to_vec(), foreign_voters] {
        let mut now_ms = 1_000;
        let mut sync = Sync::new(trio_config(3, 4), now_ms).expect("valid config");
        now_ms += 1;
        sync.handle_message(NodeId(2), snapshot_message(data), now_ms);
        let _ = sync.ready();
        run_for(&mut sync, &mut now_ms, 50);
        let status = sync.raft_status();
        assert_eq!(status.filling_to, Some(u64::MAX), "{status:?}");
        assert!(sync.resolutions().is_empty());
    }
}

#[test]
fn a_damaged_or_foreign_snapshot_on_disk_is_an_error_not_a_panic() {
    let snapshot = |raft_index: u64, voters: Vec<u64>| SyncWrite::Snapshot {
        snapshot: SyncSnapshot {
            raft_index,
            raft_term: 1,
            voters,
            resolutions: 0,
            end: 0,
        },
        installed: false,
    };
    // The single voter of `config()` is node 2, Raft ID 3.
    assert!(matches!(
        Sync::recover(config(), &[snapshot(10, vec![7, 8])], 0),
        Err(SyncError::SnapshotVoters { .. })
    ));
    assert!(matches!(
        Sync::recover(config(), &[snapshot(0, vec![3])], 0),
        Err(SyncError::LogNotContiguous { .. })
    ));
    let gap = RaftEntry {
        index: 12,
        term: 1,
        ..RaftEntry::default()
    };
    let records = [snapshot(10, vec![3]), SyncWrite::Entries(vec![gap])];
    assert!(matches!(
        Sync::recover(config(), &records, 0),
        Err(SyncError::LogNotContiguous { index: 12, .. })
    ));
    let sync = Sync::recover(config(), &[snapshot(10, vec![3])], 0).expect("a good snapshot");
    assert_eq!(sync.raft_status().started_from_snapshot, 10);
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
    let step = |nodes: &mut Vec<Sync>, now_ms: u64, input: Option<Message>| {
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

/// A leader whose resolution log is still being filled cannot draft: it hands the
/// leadership to a peer, so that votes go on (seed 62907 of fox-sim: a filling node was
/// elected, and nothing was decided for the rest of the run). Here its fill cannot finish
/// and the third node is down; the leadership is handed to it by its peer.
#[test]
fn a_leader_still_filling_its_resolutions_hands_the_leadership_over() {
    let mut trio = Trio::new(4);
    trio.run(300);
    let leader = trio.leader().expect("a leader");
    trio.decide(1..13);
    // Another node, restarted from its disk without its resolution records: it fills.
    let filling = (leader + 1) % 3;
    trio.restart_without_resolutions(filling);
    assert!(trio.nodes[filling].raft_status().filling_to.is_some());
    trio.no_fills = true;
    trio.cut.insert((leader + 2) % 3);
    trio.run(100);
    // The leader hands over to the filling node (as an operator's transfer, or an
    // election it happens to win, would).
    trio.nodes[leader]
        .raft
        .transfer_leader(raft_id(NodeId(2 + filling as u32)));
    trio.run(30);
    assert!(
        trio.nodes[filling].raft_status().filling_to.is_some(),
        "still filling"
    );
    trio.run(600);
    let now = trio.leader().expect("a leader");
    assert_ne!(now, filling, "a filling node does not stay leader");
    let before = trio.nodes[now].resolutions().len();
    trio.decide(13..16);
    assert_eq!(
        trio.nodes[now].resolutions().len(),
        before + 3,
        "votes go on"
    );
}

/// With one peer down, a node that restarts without its resolution records fills them
/// in pages of two from the peer that answers, within one retry timeout (it asks that
/// peer again after each page, whoever leads).
#[test]
fn a_fill_keeps_pulling_from_the_peer_that_answers() {
    let mut trio = Trio::new(4);
    trio.run(300);
    let leader = trio.leader().expect("a leader");
    trio.decide(1..13);
    trio.nodes[leader].config.resolved_batch_max = 2;
    let filling = (leader + 1) % 3;
    trio.restart_without_resolutions(filling);
    let target = trio.nodes[filling]
        .raft_status()
        .filling_to
        .expect("filling");
    assert!(target >= 10, "six pages or more to pull");
    trio.cut.insert((leader + 2) % 3);
    let lost_ms = trio.nodes[filling].snapshot_lost_ms();
    trio.run(lost_ms + 40);
    assert_eq!(trio.nodes[filling].raft_status().filling_to, None, "filled");
    assert_eq!(
        trio.nodes[filling].resolutions(),
        trio.nodes[leader].resolutions()
    );
}

/// A one-voter leader whose memory holds the newest `cache` resolutions, after deciding
/// segments `1..=count` (one vote each), with its writes.
fn leader_with_cache(cache: usize, count: u8, now_ms: &mut u64) -> (Sync, Vec<SyncWrite>) {
    let mut config = config();
    config.resolution_cache_max = cache;
    config.snapshot_interval_entries = 2;
    let mut sync = Sync::new(config, *now_ms).expect("valid config");
    let mut writes = sync.ready().writes;
    while !sync.is_leader() {
        *now_ms += 1;
        sync.handle_timeout(*now_ms);
        writes.extend(sync.ready().writes);
    }
    for seed in 1..=count {
        sync.handle_message(NodeId(0), over(seed, 2), *now_ms);
        for _ in 0..5 {
            *now_ms += 1;
            sync.handle_timeout(*now_ms);
            writes.extend(sync.ready().writes);
        }
    }
    (sync, writes)
}

#[test]
fn memory_holds_the_newest_resolutions_and_older_ones_are_read_from_disk() {
    let mut now_ms = 1_000;
    let (mut sync, writes) = leader_with_cache(4, 10, &mut now_ms);
    assert_eq!(sync.resolution_count(), 10);
    let cached: Vec<u64> = sync.resolutions().iter().map(|r| r.index).collect();
    assert_eq!(cached, vec![7, 8, 9, 10]);
    // A pull from the start is a read of the disk, for the asker, of a whole page.
    sync.handle_message(
        NodeId(1),
        Message::PullResolutions { from_index: 1 },
        now_ms,
    );
    let ready = sync.ready();
    assert!(ready.messages.is_empty(), "{:?}", ready.messages);
    let read = SyncEvent::ReadResolutions {
        to: NodeId(1),
        from_index: 1,
        count: 10,
    };
    assert_eq!(ready.events, vec![read]);
    let page = read_resolutions(&writes, 1, 10);
    let indexes: Vec<u64> = page.iter().map(|r| r.index).collect();
    assert_eq!(indexes, (1..=10).collect::<Vec<u64>>());
    assert_eq!(page[6..], sync.resolutions()[..]);
    // A pull within memory is answered from it.
    sync.handle_message(
        NodeId(1),
        Message::PullResolutions { from_index: 8 },
        now_ms,
    );
    let ready = sync.ready();
    assert!(ready.events.is_empty());
    assert!(
        matches!(&ready.messages[..], [(NodeId(1), Message::Resolved { resolutions })]
        if resolutions.iter().map(|r| r.index).eq(8..=10))
    );
    // A segment decided long ago is still decided: its SEGMENT_OVER again is answered
    // with its resolution, read from disk, and is never decided twice.
    sync.handle_message(NodeId(0), over(2, 2), now_ms);
    let ready = sync.ready();
    let read = SyncEvent::ReadResolutions {
        to: NodeId(0),
        from_index: 2,
        count: 1,
    };
    assert_eq!(ready.events, vec![read]);
    sync.handle_message(NodeId(0), over(10, 2), now_ms);
    let ready = sync.ready();
    assert!(
        matches!(&ready.messages[..], [(NodeId(0), Message::Resolved { resolutions })]
        if resolutions[0].index == 10)
    );
    run_for(&mut sync, &mut now_ms, 20);
    assert_eq!(sync.resolution_count(), 10);
}

#[test]
fn a_node_recovered_with_a_small_cache_remembers_every_decided_segment() {
    let mut now_ms = 1_000;
    let (sync, writes) = leader_with_cache(3, 8, &mut now_ms);
    let mut config = config();
    config.resolution_cache_max = 3;
    let mut recovered = Sync::recover(config, &writes, now_ms).expect("own writes replay");
    assert_eq!(recovered.resolution_count(), 8);
    assert_eq!(recovered.resolutions(), sync.resolutions());
    while !recovered.is_leader() {
        run_for(&mut recovered, &mut now_ms, 1);
    }
    // Segment 1 left memory long ago: it is not decided again.
    recovered.handle_message(NodeId(0), over(1, 2), now_ms);
    run_for(&mut recovered, &mut now_ms, 20);
    assert_eq!(recovered.resolution_count(), 8);
}

#[test]
fn a_follower_fills_from_peers_that_read_old_resolutions_from_disk() {
    let mut trio = Trio::with_cache(4, 3);
    trio.run(300);
    let leader = trio.leader().expect("a leader");
    let behind = (leader + 1) % 3;
    trio.cut.insert(behind);
    trio.decide(1..25);
    trio.cut.clear();
    trio.run(800);
    let leader = trio.leader().expect("a leader");
    assert_eq!(snapshots_taken(&trio.writes[behind], true), 1);
    let status = trio.nodes[behind].raft_status();
    assert_eq!(status.filling_to, None, "{status:?}");
    let log = |index: usize| read_resolutions(&trio.writes[index], 1, 100);
    assert_eq!(log(behind).len(), 24);
    assert_eq!(log(behind), log(leader));
    assert_eq!(trio.nodes[behind].resolution_count(), 24);
}

#[test]
fn a_node_recovered_from_decided_segments_and_a_tail_is_the_one_recovered_from_everything() {
    let mut now_ms = 1_000;
    let (_, writes) = leader_with_cache(3, 12, &mut now_ms);
    let small = || {
        let mut config = config();
        config.resolution_cache_max = 3;
        config
    };
    let whole = Sync::recover(small(), &writes, now_ms).expect("own writes replay");
    assert!(whole.raft_status().started_from_snapshot > 0);
    // As the disk hands it: resolutions 1 to 6 as decided segments, the rest whole.
    let all = read_resolutions(&writes, 1, 100);
    let older: Vec<DecidedSegment> = all[..6].iter().map(DecidedSegment::from).collect();
    let tail: Vec<SyncWrite> = writes
        .iter()
        .filter_map(|write| match write {
            SyncWrite::Resolutions(resolutions) => {
                let kept: Vec<Resolution> = resolutions
                    .iter()
                    .filter(|r| r.index > 6)
                    .cloned()
                    .collect();
                (!kept.is_empty()).then_some(SyncWrite::Resolutions(kept))
            }
            write => Some(write.clone()),
        })
        .collect();
    let mut split = Sync::recover_with(small(), &older, &tail, now_ms).expect("recovers");
    assert_eq!(split.resolution_count(), whole.resolution_count());
    assert_eq!(split.resolutions(), whole.resolutions());
    assert_eq!(split.by_segment, whole.by_segment);
    while !split.is_leader() {
        run_for(&mut split, &mut now_ms, 1);
    }
    split.handle_message(NodeId(0), over(2, 2), now_ms);
    run_for(&mut split, &mut now_ms, 20);
    assert_eq!(split.resolution_count(), whole.resolution_count());
    // Decided segments that do not start at index 1, one by one, are a damaged disk.
    let gap = Sync::recover_with(small(), &older[1..], &tail, now_ms);
    assert!(matches!(
        gap,
        Err(SyncError::ResolutionsNotContiguous { .. })
    ));
}
