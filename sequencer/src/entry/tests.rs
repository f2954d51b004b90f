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
