//! The driver with a fake disk and outbox: persist and fsync come before the messages
//! that announce them, and messages that arrive together share one fsync.

use super::*;
use fox_sequencer::{Membership, NdbConfig, Publication, SegmentId};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Persisted { ops: usize, fsync: bool },
    Sent { to: NodeId, kind: &'static str },
    Report { to: NodeId, report: NodeReport },
}

#[derive(Clone, Default)]
struct Journal(Arc<Mutex<Vec<Event>>>);

impl Journal {
    fn push(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

impl Disk for Journal {
    fn persist(&self, batch: &NodeBatch, fsync: bool) -> Result<(), ClusterError> {
        self.push(Event::Persisted {
            ops: batch.len(),
            fsync,
        });
        Ok(())
    }

    fn read(&self, _: &StoreRead) -> Result<(NodeId, Message), ClusterError> {
        Err(ClusterError::Task("the journal holds no records".into()))
    }
}

impl Outbox for Journal {
    fn send(&self, to: NodeId, message: Message) {
        match message {
            Message::Status(report) => self.push(Event::Report { to, report }),
            message => self.push(Event::Sent {
                to,
                kind: message.kind(),
            }),
        }
    }
}

fn keep(index: u8) -> Message {
    let messages = vec![Publication {
        publisher: 1,
        sequence: u64::from(index),
        payload: vec![index],
    }];
    Message::Keep {
        segment: SegmentId::new_v7(1_000, [index; 10]),
        owner: NodeId(0),
        digest: fox_sequencer::id::segment_digest(&messages),
        messages,
    }
}

/// A running ndb driver over a journal.
struct Running {
    journal: Journal,
    inbox: mpsc::Sender<(NodeId, Message)>,
    stop: watch::Sender<bool>,
    shown: watch::Receiver<NodeStatus>,
    task: tokio::task::JoinHandle<Result<(), ClusterError>>,
}

/// An ndb driver over a journal, started with `keeps` KEEPs from entry 0 in its inbox.
fn ndb_driver(keeps: u8) -> Running {
    let membership = Membership {
        entries: vec![NodeId(0)],
        ndbs: vec![NodeId(1), NodeId(2)],
        syncs: vec![NodeId(3)],
    };
    let clock = Clock::new();
    let ndb = Ndb::new(NdbConfig::new(NodeId(1), membership), clock.now_ms());
    let journal = Journal::default();
    let (inbox_sender, inbox) = mpsc::channel(16);
    let (stop, shutdown) = watch::channel(false);
    for index in 0..keeps {
        inbox_sender.try_send((NodeId(0), keep(index))).unwrap();
    }
    let (status, shown) = watch::channel(NodeStatus::default());
    let driver = Driver {
        store: Arc::new(journal.clone()),
        mesh: journal.clone(),
        inbox,
        shutdown,
        clock,
        log_last_index: 0,
        status,
        checkpoints: None,
        reading: Default::default(),
    };
    let task = tokio::spawn(driver.run(ndb));
    Running {
        journal,
        inbox: inbox_sender,
        stop,
        shown,
        task,
    }
}

#[tokio::test]
async fn stored_leaves_only_after_the_fsync_that_covers_it_and_keeps_share_one_fsync() {
    let Running {
        journal,
        inbox: _inbox,
        stop,
        shown,
        task,
    } = ndb_driver(3);
    for _ in 0..200 {
        let stored = journal
            .events()
            .iter()
            .filter(|e| matches!(e, Event::Sent { kind: "STORED", .. }))
            .count();
        if stored == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
    let events = journal.events();
    let first_stored = events
        .iter()
        .position(|e| matches!(e, Event::Sent { kind: "STORED", .. }))
        .expect("STORED sent");
    let fsyncs: Vec<&Event> = events[..first_stored]
        .iter()
        .filter(|e| matches!(e, Event::Persisted { fsync: true, .. }))
        .collect();
    assert_eq!(
        fsyncs,
        vec![&Event::Persisted {
            ops: 3,
            fsync: true
        }],
        "{events:?}"
    );
    let stored_to_entry = events
        .iter()
        .filter(|e| {
            **e == Event::Sent {
                to: NodeId(0),
                kind: "STORED",
            }
        })
        .count();
    assert_eq!(stored_to_entry, 3);
    // What the node reports: three KEEPs handled, their segment held, an fsynced write.
    let reported = *shown.borrow();
    assert_eq!(reported.messages_handled, 3, "{reported:?}");
    assert_eq!(reported.temp_segments, 3, "{reported:?}");
    assert!(reported.store_fsyncs >= 1 && reported.store_writes >= reported.store_fsyncs);
}

#[tokio::test]
async fn a_status_query_is_answered_by_the_driver_with_the_last_turns_status() {
    let Running {
        journal,
        inbox: inbox_sender,
        stop,
        mut shown,
        task,
    } = ndb_driver(2);
    shown
        .wait_for(|status| status.temp_segments == 2)
        .await
        .unwrap();
    inbox_sender
        .send((NodeId(0), Message::StatusQuery))
        .await
        .unwrap();
    let mut answer = None;
    for _ in 0..200 {
        answer = journal.events().into_iter().find_map(|event| match event {
            Event::Report { to, report } => Some((to, report)),
            _ => None,
        });
        if answer.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
    let (to, report) = answer.expect("a STATUS answer");
    assert_eq!(to, NodeId(0));
    assert_eq!(report.temp_segments, 2, "{report:?}");
    assert_eq!((report.term, report.leader, report.last_id), (0, None, 0));
    // The query counts as a message handled (the state machine never saw it).
    assert_eq!(
        shown.borrow().messages_handled,
        3,
        "two KEEPs and the query"
    );
}
