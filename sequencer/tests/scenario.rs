//! Scenario tests that read like the protocol: a tiny driver, no faults but the ones named.

use fox_sequencer::config::{EntryConfig, Membership, NdbConfig, SyncConfig};
use fox_sequencer::{Entry, EntryEvent, Message, Ndb, NodeId, PermanentId, Publication, Sync};

enum Node {
    Entry(Entry),
    Ndb(Ndb),
    Sync(Box<Sync>),
}

/// The entry that publishes (n0), three ndb (n1..n3), three sync (n4..n6) and a second
/// entry (n7) that only passes on n0's lease expiry; every message arrives 1 ms later
/// unless `blocked` says the link is cut.
struct Cluster {
    nodes: Vec<Node>,
    in_flight: Vec<(u64, NodeId, NodeId, Message)>,
    events: Vec<EntryEvent>,
    now_ms: u64,
    blocked: fn(NodeId, NodeId) -> bool,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster::with(|_| {}, |_| {})
    }

    /// A cluster whose entry and ndb configurations are adjusted first.
    fn with(entry: fn(&mut EntryConfig), ndb: fn(&mut NdbConfig)) -> Cluster {
        let ids: Vec<NodeId> = (0..8).map(NodeId).collect();
        let membership = Membership {
            entries: vec![ids[0], ids[7]],
            ndbs: ids[1..4].to_vec(),
            syncs: ids[4..7].to_vec(),
        };
        let now_ms = 1_767_225_600_000;
        let mut entry_config = EntryConfig::new(ids[0], membership.clone(), 1);
        entry(&mut entry_config);
        let mut nodes = vec![Node::Entry(Entry::new(entry_config, now_ms))];
        for id in &ids[1..4] {
            let mut ndb_config = NdbConfig::new(*id, membership.clone());
            ndb(&mut ndb_config);
            nodes.push(Node::Ndb(Ndb::new(ndb_config, now_ms)));
        }
        for id in &ids[4..7] {
            let config = SyncConfig::new(*id, membership.clone(), u64::from(id.0));
            let sync = Sync::new(config, now_ms).expect("valid sync config");
            nodes.push(Node::Sync(Box::new(sync)));
        }
        let other = EntryConfig::new(ids[7], membership.clone(), 7);
        nodes.push(Node::Entry(Entry::new(other, now_ms)));
        Cluster {
            nodes,
            in_flight: Vec::new(),
            events: Vec::new(),
            now_ms,
            blocked: |_, _| false,
        }
    }

    fn entry(&mut self) -> &mut Entry {
        match &mut self.nodes[0] {
            Node::Entry(entry) => entry,
            _ => unreachable!("n0 is the entry"),
        }
    }

    /// n7 applies n0's lease expiry (as its router does when the log says so) at log
    /// time now, and tells the ndbs.
    fn expire_lease_of_n0(&mut self) {
        let now_ms = self.now_ms;
        match &mut self.nodes[7] {
            Node::Entry(entry) => entry.abort_owner(NodeId(0), now_ms),
            _ => unreachable!("n7 is an entry"),
        }
        self.collect(7);
    }

    fn collect(&mut self, index: usize) {
        let from = NodeId(index as u32);
        let messages = match &mut self.nodes[index] {
            Node::Entry(node) => {
                let ready = node.ready();
                self.events.extend(ready.events);
                ready.messages
            }
            Node::Ndb(node) => {
                // LOG answers leave early, before the batch's writes (none are lost here).
                let mut ready = node.ready();
                ready.early.append(&mut ready.messages);
                ready.early
            }
            Node::Sync(node) => {
                let mut ready = node.ready();
                ready.early.append(&mut ready.messages);
                ready.early
            }
        };
        for (to, message) in messages {
            if !(self.blocked)(from, to) {
                self.in_flight.push((self.now_ms + 1, from, to, message));
            }
        }
    }

    fn run_ms(&mut self, duration_ms: u64) {
        for _ in 0..duration_ms {
            self.now_ms += 1;
            let now_ms = self.now_ms;
            let (due, later): (Vec<_>, Vec<_>) =
                self.in_flight.drain(..).partition(|(at, ..)| *at <= now_ms);
            self.in_flight = later;
            for (_, from, to, message) in due {
                match &mut self.nodes[to.0 as usize] {
                    Node::Entry(node) => node.handle_message(from, message, now_ms),
                    Node::Ndb(node) => node.handle_message(from, message, now_ms),
                    Node::Sync(node) => node.handle_message(from, message, now_ms),
                }
                self.collect(to.0 as usize);
            }
            for index in 0..self.nodes.len() {
                match &mut self.nodes[index] {
                    Node::Entry(node) if node.poll_timeout() <= now_ms => {
                        node.handle_timeout(now_ms)
                    }
                    Node::Ndb(node) if node.poll_timeout() <= now_ms => node.handle_timeout(now_ms),
                    Node::Sync(node) if node.poll_timeout() <= now_ms => {
                        node.handle_timeout(now_ms)
                    }
                    _ => continue,
                }
                self.collect(index);
            }
        }
    }

    fn publish(&mut self, sequence: u64) {
        let now_ms = self.now_ms;
        let publication = Publication {
            publisher: 1,
            sequence,
            payload: vec![sequence as u8],
        };
        self.entry()
            .publish(publication, now_ms)
            .expect("entry accepts");
        self.collect(0);
    }

    fn ndb_logs(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .filter_map(|node| {
                if let Node::Ndb(ndb) = node {
                    Some(ndb.log_records() as usize)
                } else {
                    None
                }
            })
            .collect()
    }
}

#[test]
fn a_publish_is_acked_only_after_ndb_stored_it_and_sync_voted() {
    let mut cluster = Cluster::new();
    cluster.run_ms(200); // sync elects a leader
    cluster.publish(1);
    cluster.run_ms(100);
    let acked: Vec<_> = cluster
        .events
        .iter()
        .filter(|e| matches!(e, EntryEvent::Acked { .. }))
        .collect();
    assert_eq!(acked.len(), 1, "{:?}", cluster.events);
    let EntryEvent::Acked { id, .. } = acked[0] else {
        unreachable!()
    };
    assert!(id.is_valid());
    // The ID reads as time: its top bits are the vote's ms since the 2020 epoch.
    let epoch_ms = 1_767_225_600_000 - PermanentId::EPOCH_UNIX_MS;
    assert!(id.0 >> PermanentId::TIME_SHIFT_BITS >= epoch_ms);
    assert!(id.0 >> PermanentId::TIME_SHIFT_BITS < epoch_ms + 1_000);
    assert_eq!(cluster.ndb_logs(), vec![1, 1, 1]);
}

#[test]
fn no_ack_when_sync_is_unreachable_then_progress_when_it_returns() {
    let mut cluster = Cluster::new();
    cluster.run_ms(200);
    cluster.blocked = |from, to| from.0 == 0 && (4..=6).contains(&to.0);
    cluster.publish(1);
    cluster.run_ms(100);
    assert!(cluster.events.is_empty(), "{:?}", cluster.events);
    cluster.blocked = |_, _| false;
    cluster.run_ms(100);
    assert!(
        matches!(
            cluster.events.as_slice(),
            [EntryEvent::Acked { sequence: 1, .. }]
        ),
        "{:?}",
        cluster.events
    );
}

/// The case of simulator seed 17791: a live entry's segment waits for sync far longer
/// than ndb's `abort_after_ms` (no leader after a heal, or sync cut off). It names the
/// segment to every ndb meanwhile (UNDECIDED), so nothing aborts it, and it is acked
/// when sync is back. Before protocol version 6 ndb aborted it after 300 ms.
#[test]
fn a_live_entrys_segment_waits_for_sync_however_long_and_is_acked() {
    let mut cluster = Cluster::new();
    cluster.run_ms(200);
    cluster.blocked = |from, to| from.0 == 0 && (4..=6).contains(&to.0);
    cluster.publish(1);
    cluster.run_ms(1_000);
    assert!(cluster.events.is_empty(), "{:?}", cluster.events);
    cluster.blocked = |_, _| false;
    cluster.run_ms(100);
    assert!(
        matches!(
            cluster.events.as_slice(),
            [EntryEvent::Acked { sequence: 1, .. }]
        ),
        "{:?}",
        cluster.events
    );
    assert_eq!(cluster.ndb_logs(), vec![1, 1, 1]);
}

#[test]
fn a_segment_whose_entry_falls_silent_is_rejected_never_acked() {
    let mut cluster = Cluster::new();
    cluster.run_ms(200);
    // The KEEPs leave; then the entry reaches neither ndb nor sync (it hears them): its
    // SEGMENT_OVER never arrives, and ndb, hearing nothing of it for `abort_after_ms`,
    // asks sync to abort the segment; the leader tells the entry.
    cluster.blocked = |from, to| from.0 == 0 && (4..=6).contains(&to.0);
    cluster.publish(1);
    cluster.run_ms(1);
    cluster.blocked = |from, to| from.0 == 0 && (1..=6).contains(&to.0);
    cluster.run_ms(249);
    assert!(cluster.events.is_empty(), "{:?}", cluster.events);
    cluster.run_ms(250);
    assert!(
        matches!(
            cluster.events.as_slice(),
            [EntryEvent::Rejected { sequence: 1, .. }]
        ),
        "{:?}",
        cluster.events
    );
    assert_eq!(cluster.ndb_logs(), vec![0, 0, 0]);
    cluster.blocked = |_, _| false;
    // The entry goes on: the next publish is acked.
    cluster.publish(2);
    cluster.run_ms(100);
    assert!(
        matches!(
            cluster.events.last(),
            Some(EntryEvent::Acked { sequence: 2, .. })
        ),
        "{:?}",
        cluster.events
    );
    assert_eq!(cluster.ndb_logs(), vec![1, 1, 1]);
}

#[test]
fn a_segment_aborted_before_a_stored_quorum_rejects_its_publishers_and_the_entry_goes_on() {
    let mut cluster = Cluster::new();
    cluster.run_ms(200);
    // Only n1 gets the KEEP: one STORED, no quorum, so no SEGMENT_OVER. Then the entry is
    // cut off from n1 as well: n1 asks sync to abort the orphan after its silence; the
    // leader tells the entry.
    cluster.blocked = |from, to| from.0 == 0 && (to.0 == 2 || to.0 == 3);
    cluster.publish(1);
    cluster.run_ms(1);
    cluster.blocked = |from, to| from.0 == 0 && (1..=3).contains(&to.0);
    cluster.run_ms(599);
    assert!(
        matches!(
            cluster.events.as_slice(),
            [EntryEvent::Rejected { sequence: 1, .. }]
        ),
        "{:?}",
        cluster.events
    );
    cluster.blocked = |_, _| false;
    cluster.publish(2);
    cluster.run_ms(100);
    assert!(
        matches!(
            cluster.events.last(),
            Some(EntryEvent::Acked { sequence: 2, .. })
        ),
        "{:?}",
        cluster.events
    );
    assert_eq!(cluster.ndb_logs(), vec![1, 1, 1]);
}

#[test]
fn a_lease_expiry_aborts_the_entrys_segments_at_once() {
    let mut cluster = Cluster::new();
    cluster.run_ms(200);
    // n0 reaches ndb but not sync, and keeps naming its segment. Then the log says its
    // lease expired: n7 passes that on, and the segment is aborted within a few round
    // trips, not after `abort_after_ms`.
    cluster.blocked = |from, to| from.0 == 0 && (4..=6).contains(&to.0);
    cluster.publish(1);
    cluster.run_ms(100);
    assert!(cluster.events.is_empty(), "{:?}", cluster.events);
    cluster.expire_lease_of_n0();
    cluster.run_ms(20);
    assert!(
        matches!(
            cluster.events.as_slice(),
            [EntryEvent::Rejected { sequence: 1, .. }]
        ),
        "{:?}",
        cluster.events
    );
    // What it publishes later is not touched (the expiry named segments cut until then).
    cluster.run_ms(1);
    cluster.publish(2);
    cluster.blocked = |_, _| false;
    cluster.run_ms(100);
    assert!(
        matches!(
            cluster.events.last(),
            Some(EntryEvent::Acked { sequence: 2, .. })
        ),
        "{:?}",
        cluster.events
    );
    assert_eq!(cluster.ndb_logs(), vec![1, 1, 1]);
}

#[test]
fn a_lease_expiry_leaves_a_segment_decided_permanent_as_it_is() {
    let mut cluster = Cluster::new();
    cluster.run_ms(200);
    cluster.publish(1);
    cluster.run_ms(100);
    let acked = cluster.events.clone();
    assert!(
        matches!(acked.as_slice(), [EntryEvent::Acked { sequence: 1, .. }]),
        "{acked:?}"
    );
    // A late expiry (a lagging entry, a replay of the log) changes nothing decided.
    cluster.expire_lease_of_n0();
    cluster.run_ms(400);
    assert_eq!(cluster.events, acked);
    assert_eq!(cluster.ndb_logs(), vec![1, 1, 1]);
}

#[test]
fn an_entry_that_missed_the_abort_learns_it_from_the_ndb_it_retries() {
    let mut cluster = Cluster::new();
    cluster.run_ms(200);
    // Only n1 gets the KEEP (no quorum), the leader's messages to the entry are lost,
    // and the entry's lease expires: n1 aborts the segment, the entry does not hear it.
    cluster.blocked = |from, to| {
        (from.0 == 0 && (to.0 == 2 || to.0 == 3)) || ((4..=6).contains(&from.0) && to.0 == 0)
    };
    cluster.publish(1);
    cluster.run_ms(50);
    cluster.expire_lease_of_n0();
    cluster.run_ms(550);
    assert!(cluster.events.is_empty(), "{:?}", cluster.events);
    // The KEEP retries now reach n2 and n3, which applied the abort: they say so.
    cluster.blocked = |from, to| (4..=6).contains(&from.0) && to.0 == 0;
    cluster.run_ms(100);
    assert!(
        matches!(
            cluster.events.as_slice(),
            [EntryEvent::Rejected { sequence: 1, .. }]
        ),
        "{:?}",
        cluster.events
    );
    cluster.blocked = |_, _| false;
    cluster.publish(2);
    cluster.run_ms(100);
    assert!(
        matches!(
            cluster.events.last(),
            Some(EntryEvent::Acked { sequence: 2, .. })
        ),
        "{:?}",
        cluster.events
    );
}

/// The IDs delivered to `subscriber`, in delivery order.
fn delivered(events: &[EntryEvent], subscriber: u64) -> Vec<u64> {
    events
        .iter()
        .filter_map(|event| match event {
            EntryEvent::Deliver {
                subscriber: s,
                record,
            } if *s == subscriber => Some(record.id.0),
            _ => None,
        })
        .collect()
}

#[test]
fn delivery_goes_on_past_the_log_cache_and_lagging_subscribers_refill_from_ndb() {
    // A cache of 8 records and LOG answers of 7: 100 messages pass the cache many times over.
    let mut cluster = Cluster::with(
        |entry| entry.log_cache_records_max = 8,
        |ndb| ndb.read_records_max = 7,
    );
    cluster.run_ms(200);
    cluster.entry().subscribe(1, PermanentId(0));
    for round in 0..20 {
        for sequence in 1..=5 {
            cluster.publish(round * 5 + sequence);
        }
        cluster.run_ms(5);
    }
    cluster.run_ms(200);
    let mut acked: Vec<u64> = cluster
        .events
        .iter()
        .filter_map(|event| match event {
            EntryEvent::Acked { id, .. } => Some(id.0),
            _ => None,
        })
        .collect();
    assert_eq!(acked.len(), 100);
    acked.sort_unstable();
    assert_eq!(delivered(&cluster.events, 1), acked, "the live subscriber");
    // Late subscribers from before the cache: from the start, and from the 50th ID.
    cluster.entry().subscribe(2, PermanentId(0));
    cluster.entry().subscribe(3, PermanentId(acked[49]));
    cluster.collect(0);
    cluster.run_ms(100);
    assert_eq!(
        delivered(&cluster.events, 2),
        acked,
        "resumed from the start"
    );
    assert_eq!(
        delivered(&cluster.events, 3),
        acked[50..],
        "resumed after the 50th"
    );
    // And all of them go on live.
    cluster.publish(101);
    cluster.run_ms(100);
    for (subscriber, count) in [(1, 101), (2, 101), (3, 51)] {
        assert_eq!(delivered(&cluster.events, subscriber).len(), count);
    }
}
