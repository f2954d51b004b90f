//! Scenario tests that read like the protocol: a tiny driver, no faults but the ones named.

use fox_sequencer::config::{EntryConfig, Membership, NdbConfig, SyncConfig};
use fox_sequencer::{Entry, EntryEvent, Message, Ndb, NodeId, PermanentId, Publication, Sync};

enum Node {
    Entry(Entry),
    Ndb(Ndb),
    Sync(Box<Sync>),
}

/// One entry (n0), three ndb (n1..n3), three sync (n4..n6); every message arrives 1 ms
/// later unless `blocked` says the link is cut.
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
        let ids: Vec<NodeId> = (0..7).map(NodeId).collect();
        let membership = Membership {
            entries: ids[..1].to_vec(),
            ndbs: ids[1..4].to_vec(),
            syncs: ids[4..].to_vec(),
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
        for id in &ids[4..] {
            let config = SyncConfig::new(*id, membership.clone(), u64::from(id.0));
            let sync = Sync::new(config, now_ms).expect("valid sync config");
            nodes.push(Node::Sync(Box::new(sync)));
        }
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

    fn collect(&mut self, index: usize) {
        let from = NodeId(index as u32);
        let messages = match &mut self.nodes[index] {
            Node::Entry(node) => {
                let ready = node.ready();
                self.events.extend(ready.events);
                ready.messages
            }
            Node::Ndb(node) => node.ready().messages,
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
                    Some(ndb.log().len())
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
    cluster.blocked = |from, to| from.0 == 0 && to.0 >= 4;
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

#[test]
fn a_segment_stalled_past_the_abort_deadline_is_rejected_never_acked() {
    let mut cluster = Cluster::new();
    cluster.run_ms(200);
    // The entry reaches ndb but not sync: its SEGMENT_OVER never arrives, so ndb asks sync
    // to abort the segment after `abort_after_ms`; the leader tells the entry.
    cluster.blocked = |from, to| from.0 == 0 && to.0 >= 4;
    cluster.publish(1);
    cluster.run_ms(250);
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
    // Only n1 gets the KEEP: one STORED, no quorum, so no SEGMENT_OVER. n1 asks sync to
    // abort the orphan after `abort_after_ms`; the leader tells the entry.
    cluster.blocked = |from, to| from.0 == 0 && (to.0 == 2 || to.0 == 3);
    cluster.publish(1);
    cluster.run_ms(600);
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
fn an_entry_that_missed_the_abort_learns_it_from_the_ndb_it_retries() {
    let mut cluster = Cluster::new();
    cluster.run_ms(200);
    // As above, and the leader's RESOLVED(aborted) to the entry is lost as well.
    cluster.blocked =
        |from, to| (from.0 == 0 && (to.0 == 2 || to.0 == 3)) || (from.0 >= 4 && to.0 == 0);
    cluster.publish(1);
    cluster.run_ms(600);
    assert!(cluster.events.is_empty(), "{:?}", cluster.events);
    // The KEEP retries now reach n2 and n3, which applied the abort: they say so.
    cluster.blocked = |from, to| from.0 >= 4 && to.0 == 0;
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
