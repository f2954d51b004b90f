//! Length-prefixed frames and heartbeats (format in the parent module's docs).

use super::WireError;
use crate::message::Message;

/// Bytes of the frame length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

/// The lowest protocol version that has `message`. A link that negotiated an older one
/// must not carry it: its peer would read a bad frame and close the link. New kinds are
/// appended to `Message`, so the encoding of the older ones does not change.
pub fn message_version(message: &Message) -> u16 {
    match message {
        // A sync node of version 6 neither compacts nor installs snapshots: a snapshot
        // would break its log. It stays behind a leader that compacted past it (the
        // leader sends the snapshot again while it waits) until it is upgraded.
        Message::Raft(raft) if raft.0.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot => {
            7
        }
        Message::CheckpointOpen
        | Message::CheckpointFiles { .. }
        | Message::CheckpointRead { .. }
        | Message::CheckpointData { .. } => 8,
        Message::Undecided { .. } | Message::AbortOwner { .. } => 6,
        Message::Keep { .. }
        | Message::Stored { .. }
        | Message::SegmentOver { .. }
        | Message::Abort { .. }
        | Message::PullResolutions { .. }
        | Message::Resolved { .. }
        | Message::Fetch { .. }
        | Message::SegmentData { .. }
        | Message::Read { .. }
        | Message::Log { .. }
        | Message::Raft(_)
        | Message::StatusQuery
        | Message::Status(_) => 5,
    }
}

/// Encode one message as a frame.
pub fn encode_frame(message: &Message, frame_size_max_bytes: usize) -> Result<Vec<u8>, WireError> {
    let mut frame = vec![0u8; FRAME_HEADER_BYTES];
    let frame = postcard::to_extend(message, std::mem::take(&mut frame))
        .map_err(|_| WireError::BadPayload)?;
    let length = frame.len() - FRAME_HEADER_BYTES;
    if length > frame_size_max_bytes {
        return Err(WireError::FrameTooLarge {
            length,
            limit: frame_size_max_bytes,
        });
    }
    let mut frame = frame;
    frame[..FRAME_HEADER_BYTES].copy_from_slice(&(length as u32).to_be_bytes());
    Ok(frame)
}

/// Decode one frame from the front of `input`: `Ok(None)` if more bytes are needed,
/// else the message and the bytes used. Never panics on any input.
pub fn decode_frame(
    input: &[u8],
    frame_size_max_bytes: usize,
) -> Result<Option<(Message, usize)>, WireError> {
    let Some(header) = input.get(..FRAME_HEADER_BYTES) else {
        return Ok(None);
    };
    let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if length > frame_size_max_bytes {
        return Err(WireError::FrameTooLarge {
            length,
            limit: frame_size_max_bytes,
        });
    }
    let Some(payload) = input.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + length) else {
        return Ok(None);
    };
    let (message, rest) =
        postcard::take_from_bytes::<Message>(payload).map_err(|_| WireError::BadPayload)?;
    if !rest.is_empty() {
        return Err(WireError::BadPayload);
    }
    Ok(Some((message, FRAME_HEADER_BYTES + length)))
}

/// A heartbeat: a frame of length 0, no payload. Keeps an idle link's timers fed.
pub const HEARTBEAT_FRAME: [u8; FRAME_HEADER_BYTES] = [0; FRAME_HEADER_BYTES];

/// One received frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A heartbeat (length 0).
    Heartbeat,
    /// A protocol message.
    Message(Message),
}

/// Like [`decode_frame`], but a zero-length frame is a heartbeat instead of an error.
pub fn decode_frame_or_heartbeat(
    input: &[u8],
    frame_size_max_bytes: usize,
) -> Result<Option<(Frame, usize)>, WireError> {
    if input.get(..FRAME_HEADER_BYTES) == Some(&HEARTBEAT_FRAME[..]) {
        return Ok(Some((Frame::Heartbeat, FRAME_HEADER_BYTES)));
    }
    let decoded = decode_frame(input, frame_size_max_bytes)?;
    Ok(decoded.map(|(message, used)| (Frame::Message(message), used)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{PROTOCOL_VERSION, PROTOCOL_VERSION_MIN};
    use proptest::prelude::*;

    const LIMIT: usize = 1 << 20;

    /// One message of each kind (shared with the fuzz seeds).
    fn samples() -> Vec<Message> {
        crate::fuzzing::sample_messages()
    }

    #[test]
    fn frames_round_trip() {
        for message in samples() {
            let frame = encode_frame(&message, LIMIT).unwrap();
            let (decoded, used) = decode_frame(&frame, LIMIT).unwrap().unwrap();
            assert_eq!(decoded, message);
            assert_eq!(used, frame.len());
            for cut in 0..frame.len() {
                assert_eq!(
                    decode_frame(&frame[..cut], LIMIT),
                    Ok(None),
                    "truncated at {cut}"
                );
            }
        }
    }

    /// Postcard writes a variant's index first: appending kinds keeps every older kind's
    /// encoding, which is what lets a version-5 peer go on reading what it knows.
    #[test]
    fn every_kind_keeps_its_tag_and_names_its_version() {
        let tags = [
            ("KEEP", 0),
            ("STORED", 1),
            ("SEGMENT_OVER", 2),
            ("ABORT", 3),
            ("PULL_RESOLUTIONS", 4),
            ("RESOLVED", 5),
            ("FETCH", 6),
            ("SEGMENT_DATA", 7),
            ("READ", 8),
            ("LOG", 9),
            ("RAFT", 10),
            ("STATUS_QUERY", 11),
            ("STATUS", 12),
            ("UNDECIDED", 13),
            ("ABORT_OWNER", 14),
            ("CHECKPOINT_OPEN", 15),
            ("CHECKPOINT_FILES", 16),
            ("CHECKPOINT_READ", 17),
            ("CHECKPOINT_DATA", 18),
        ];
        let samples = samples();
        assert_eq!(samples.len(), tags.len(), "one sample of each kind");
        for (message, (kind, tag)) in samples.iter().zip(tags) {
            assert_eq!(message.kind(), kind);
            let frame = encode_frame(message, LIMIT).unwrap();
            assert_eq!(frame[FRAME_HEADER_BYTES], tag, "{kind}");
            let version = message_version(message);
            assert!((PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&version));
            let expected = match tag {
                13 | 14 => 6,
                15.. => 8,
                _ => 5,
            };
            assert_eq!(version, expected, "{kind}");
        }
    }

    #[test]
    fn a_raft_snapshot_needs_version_7() {
        let mut raft = raft::eraftpb::Message::default();
        raft.set_msg_type(raft::eraftpb::MessageType::MsgSnapshot);
        let snapshot = Message::Raft(crate::message::RaftMessage(raft.clone()));
        assert_eq!(message_version(&snapshot), 7);
        raft.set_msg_type(raft::eraftpb::MessageType::MsgAppend);
        let append = Message::Raft(crate::message::RaftMessage(raft));
        assert_eq!(message_version(&append), 5);
    }

    #[test]
    fn oversized_frames_are_refused() {
        let frame = encode_frame(&samples()[0], LIMIT).unwrap();
        assert!(matches!(
            decode_frame(&frame, 4),
            Err(WireError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            encode_frame(&samples()[0], 4),
            Err(WireError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn heartbeats_decode_and_frames_still_do() {
        let decoded = decode_frame_or_heartbeat(&HEARTBEAT_FRAME, LIMIT).unwrap();
        assert_eq!(decoded, Some((Frame::Heartbeat, FRAME_HEADER_BYTES)));
        let frame = encode_frame(&samples()[1], LIMIT).unwrap();
        let decoded = decode_frame_or_heartbeat(&frame, LIMIT).unwrap();
        assert_eq!(
            decoded,
            Some((Frame::Message(samples()[1].clone()), frame.len()))
        );
    }

    proptest! {
        #[test]
        fn garbage_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(&bytes, LIMIT);
        }

        #[test]
        fn garbage_after_a_valid_header_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            let _ = decode_frame(&frame, LIMIT);
        }

        #[test]
        fn flipped_bytes_never_panic(index in 0usize..64, value in any::<u8>()) {
            for message in samples() {
                let mut frame = encode_frame(&message, LIMIT).unwrap();
                let position = index % frame.len();
                frame[position] = value;
                let _ = decode_frame(&frame, LIMIT);
            }
        }
    }
}
