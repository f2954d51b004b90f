//! The node-to-node protocol messages (the payload of one wire frame).

use crate::id::{NodeId, PermanentId, Publication, SegmentId};
use protobuf::Message as _;
use raft::eraftpb;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One protocol message between cluster nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// entry -> ndb: store a sealed segment (offsets `0..messages.len()`) durably.
    Keep {
        /// The segment.
        segment: SegmentId,
        /// The entry that cut it.
        owner: NodeId,
        /// `segment_digest` of `messages` as the entry cut them: an ndb stores (and
        /// answers STORED for) only a copy that matches, so a copy damaged on the way is
        /// never held under the segment's ID (protocol version 5).
        digest: u64,
        /// Its messages, in offset order.
        messages: Vec<Publication>,
    },
    /// ndb -> entry: the segment is on this ndb's disk (fsynced), with this count and digest.
    Stored {
        /// The segment.
        segment: SegmentId,
        /// Messages stored.
        count: u32,
        /// Digest of what was stored.
        digest: u64,
    },
    /// entry -> sync: a quorum of ndb holds the segment; give it a permanent range.
    SegmentOver {
        /// The segment.
        segment: SegmentId,
        /// The entry that cut it.
        owner: NodeId,
        /// Messages in it.
        count: u32,
        /// Digest of its messages.
        digest: u64,
        /// The segment this entry sealed before it, if that one was still undecided when
        /// this one was sealed: sync drafts this one only once that one is decided (or in
        /// the same draft, before it), so that pipelined segments keep publish order.
        after: Option<SegmentId>,
    },
    /// ndb or entry -> sync: give up on a segment nobody closed (its entry died).
    Abort {
        /// The segment.
        segment: SegmentId,
        /// The entry that cut it.
        owner: NodeId,
    },
    /// ndb -> sync: send me resolutions from this log index on.
    PullResolutions {
        /// First resolution index wanted (from 1).
        from_index: u64,
    },
    /// sync -> entry / ndb: final decisions, in resolution-log order.
    Resolved {
        /// Decisions, each carrying its index.
        resolutions: Vec<Resolution>,
    },
    /// ndb -> ndb: send me a segment's messages (I must promote it and lack them).
    Fetch {
        /// The segment.
        segment: SegmentId,
    },
    /// ndb -> ndb: a segment's messages.
    SegmentData {
        /// The segment.
        segment: SegmentId,
        /// The entry that cut it.
        owner: NodeId,
        /// Its messages, in offset order.
        messages: Vec<Publication>,
    },
    /// entry -> ndb: permanent log records with IDs greater than `after`.
    Read {
        /// Last ID the reader has (0 for the start of the log).
        after: u64,
    },
    /// ndb -> entry: consecutive permanent log records following `after`.
    Log {
        /// The `after` of the request this answers.
        after: u64,
        /// Records in permanent-ID order, with no gap in the log.
        records: Vec<LogRecord>,
    },
    /// sync <-> sync: one Raft message.
    Raft(RaftMessage),
    /// entry -> ndb / sync: report your state (for the entry's operators; no state machine
    /// acts on it, the node's driver answers).
    StatusQuery,
    /// ndb / sync -> entry: the answer to a STATUS_QUERY.
    Status(NodeReport),
    /// entry -> ndb: these sealed segments of mine are still undecided; I live and still
    /// want them (protocol version 6). An ndb asks sync to abort a temporary segment only
    /// once its owner has not named it (here or by a KEEP) for `abort_after_ms`. Sent to
    /// every ndb at most every `retry_ms`, and only while a segment sealed at least
    /// `retry_ms` ago waits, so an entry whose segments are decided in time sends none.
    Undecided {
        /// The entry that cut them: the sender.
        owner: NodeId,
        /// Its undecided segments, at most `wire_limits::UNDECIDED_SEGMENTS_MAX` (an ndb
        /// reads no more).
        segments: Vec<SegmentId>,
    },
    /// entry -> ndb: entry `owner`'s lease expired (at log time `cut_until_ms`): ask sync
    /// at once to abort the temporary segments of it held now that it cut (their UUIDv7
    /// time) at or before then (protocol version 6). Sync's first decision for a segment
    /// stands, so one it already made permanent stays so.
    AbortOwner {
        /// The entry whose lease expired.
        owner: NodeId,
        /// Its segments cut at or before this time, in Unix ms, are abandoned.
        cut_until_ms: u64,
    },
    /// ndb -> ndb: make (or reuse) a checkpoint of your store for me to pull (protocol
    /// version 8). Sent by an ndb that starts empty or far behind; no state machine acts
    /// on it, the node's checkpoint server answers with CHECKPOINT_FILES.
    CheckpointOpen,
    /// ndb -> ndb: the files of checkpoint `checkpoint` (a consistent copy of the whole
    /// store), each with its size and, when the serving ndb knows it already, its SHA-256
    /// (protocol version 8).
    CheckpointFiles {
        /// The checkpoint's number on the serving ndb.
        checkpoint: u64,
        /// The last resolution applied in it.
        applied_index: u64,
        /// The last permanent ID in it (0: empty log).
        last_id: u64,
        /// Its files, at most `wire_limits::CHECKPOINT_FILES_MAX`.
        files: Vec<CheckpointFile>,
    },
    /// ndb -> ndb: send me `bytes` of file `file` of checkpoint `checkpoint` from `offset`
    /// (protocol version 8).
    CheckpointRead {
        /// The checkpoint.
        checkpoint: u64,
        /// One of its files, by name.
        file: String,
        /// First byte wanted.
        offset: u64,
        /// Bytes wanted, at most `wire_limits::CHECKPOINT_CHUNK_BYTES_MAX`.
        bytes: u32,
    },
    /// ndb -> ndb: a piece of a checkpoint file (empty at or past its end), or
    /// `gone` if the checkpoint is no longer served (protocol version 8).
    CheckpointData {
        /// The checkpoint.
        checkpoint: u64,
        /// The file.
        file: String,
        /// Where `data` starts in it.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
        /// On the piece that ends the file: its SHA-256 (the serving ndb hashes a file as
        /// it reads it for the puller, so no byte is read twice).
        sha256: Option<[u8; 32]>,
        /// The checkpoint expired, or the ndb restarted: open a new one.
        gone: bool,
    },
}

/// One file of an ndb checkpoint (CHECKPOINT_FILES).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointFile {
    /// Its name in the store's directory (no path).
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of its content, if the serving ndb has it already (an SST file it hashed
    /// before: they never change); else it comes with the file's last piece.
    pub sha256: Option<[u8; 32]>,
}

/// What an ndb or sync node tells an entry about itself (STATUS). Fields that do not
/// apply to its role are 0 / `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Sync: the Raft term.
    pub term: u64,
    /// Sync: the leader this node knows of.
    pub leader: Option<NodeId>,
    /// Sync: the highest Raft index known committed.
    pub commit_index: u64,
    /// Sync: segments resolved so far (the resolution log's length).
    pub resolutions: u64,
    /// Ndb: the last resolution applied to its permanent log.
    pub applied_index: u64,
    /// Ndb: the last permanent ID in its log (0: empty).
    pub last_id: u64,
    /// Ndb: temporary segments held, not yet resolved.
    pub temp_segments: u64,
}

impl Message {
    /// A short name for traces and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Keep { .. } => "KEEP",
            Message::Stored { .. } => "STORED",
            Message::SegmentOver { .. } => "SEGMENT_OVER",
            Message::Abort { .. } => "ABORT",
            Message::PullResolutions { .. } => "PULL_RESOLUTIONS",
            Message::Resolved { .. } => "RESOLVED",
            Message::Fetch { .. } => "FETCH",
            Message::SegmentData { .. } => "SEGMENT_DATA",
            Message::Read { .. } => "READ",
            Message::Log { .. } => "LOG",
            Message::Raft(_) => "RAFT",
            Message::StatusQuery => "STATUS_QUERY",
            Message::Status(_) => "STATUS",
            Message::Undecided { .. } => "UNDECIDED",
            Message::AbortOwner { .. } => "ABORT_OWNER",
            Message::CheckpointOpen => "CHECKPOINT_OPEN",
            Message::CheckpointFiles { .. } => "CHECKPOINT_FILES",
            Message::CheckpointRead { .. } => "CHECKPOINT_READ",
            Message::CheckpointData { .. } => "CHECKPOINT_DATA",
        }
    }
}

/// The final fate of a segment, decided by a committed sync vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Messages `offset` get permanent IDs `base + offset`.
    Permanent {
        /// ID of offset 0.
        base: PermanentId,
        /// Messages in the segment.
        count: u32,
        /// Digest of its messages.
        digest: u64,
    },
    /// The segment is dropped; none of its publishers were or will be acknowledged.
    Aborted,
}

/// One entry of the resolution log that every sync node derives from committed Raft entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// Position in the resolution log, dense from 1.
    pub index: u64,
    /// The segment.
    pub segment: SegmentId,
    /// The entry that cut it.
    pub owner: NodeId,
    /// What was decided.
    pub outcome: Outcome,
    /// Raft index of the entry that decided it.
    pub raft_index: u64,
    /// Raft term of that entry (with the index, names the entry uniquely).
    pub raft_term: u64,
}

/// One record of the permanent log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Its permanent ID.
    pub id: PermanentId,
    /// The message.
    pub publication: Publication,
}

impl LogRecord {
    /// An upper bound of its encoded size, in bytes: the publication's and a 10-byte ID varint.
    pub fn encoded_bytes_max(&self) -> usize {
        self.publication.encoded_bytes_max().saturating_add(10)
    }
}

/// The records of one LOG answer, gathered in order: at most `records_max`, and no more
/// encoded bytes than `bytes_max` beyond the first (which always goes: it came in a KEEP,
/// so it is no larger than a segment), so that the LOG fits in a frame.
#[derive(Debug)]
pub struct LogPage {
    records: Vec<LogRecord>,
    bytes: usize,
    records_max: usize,
    bytes_max: usize,
}

impl LogPage {
    /// An empty page with these caps.
    pub fn new(records_max: usize, bytes_max: usize) -> LogPage {
        LogPage {
            records: Vec::new(),
            bytes: 0,
            records_max,
            bytes_max,
        }
    }

    /// Adds `record` if it fits; whether it did (once one does not, the page is full).
    pub fn push(&mut self, record: LogRecord) -> bool {
        let bytes = self.bytes.saturating_add(record.encoded_bytes_max());
        let fits = self.records.is_empty() || bytes <= self.bytes_max;
        if self.records.len() >= self.records_max || !fits {
            return false;
        }
        self.bytes = bytes;
        self.records.push(record);
        true
    }

    /// The records gathered.
    pub fn into_records(self) -> Vec<LogRecord> {
        self.records
    }
}

/// A Raft message; on the wire, its protobuf bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct RaftMessage(pub eraftpb::Message);

impl Serialize for RaftMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = self.0.write_to_bytes().map_err(serde::ser::Error::custom)?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for RaftMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes: &[u8] = Deserialize::deserialize(deserializer)?;
        let message =
            eraftpb::Message::parse_from_bytes(bytes).map_err(serde::de::Error::custom)?;
        Ok(RaftMessage(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::wire_limits::ENVELOPE_BYTES_MAX;
    use proptest::prelude::*;

    fn encoded_len(message: &Message) -> usize {
        postcard::to_allocvec(message).map_or(usize::MAX, |bytes| bytes.len())
    }

    proptest! {
        #[test]
        fn byte_bounds_cover_the_encoding(
            fields in proptest::collection::vec((any::<u64>(), any::<u64>(), 0usize..300), 0..20),
            after in any::<u64>(),
            owner in any::<u32>(),
        ) {
            let publications: Vec<Publication> = fields
                .iter()
                .map(|(publisher, sequence, length)| Publication {
                    publisher: *publisher,
                    sequence: *sequence,
                    payload: vec![0xa5; *length],
                })
                .collect();
            let segment = SegmentId::new_v7(after, [7; 10]);
            let keep = Message::Keep { segment, owner: NodeId(owner), digest: u64::MAX, messages: publications.clone() };
            let bytes: usize = publications.iter().map(Publication::encoded_bytes_max).sum();
            prop_assert!(encoded_len(&keep) <= bytes + ENVELOPE_BYTES_MAX);
            let data = Message::SegmentData { segment, owner: NodeId(owner), messages: publications.clone() };
            prop_assert!(encoded_len(&data) <= bytes + ENVELOPE_BYTES_MAX);
            let records: Vec<LogRecord> = publications
                .into_iter()
                .zip(fields.iter().map(|(publisher, ..)| *publisher))
                .map(|(publication, id)| LogRecord { id: PermanentId(id), publication })
                .collect();
            let bytes: usize = records.iter().map(LogRecord::encoded_bytes_max).sum();
            let log = Message::Log { after, records };
            prop_assert!(encoded_len(&log) <= bytes + ENVELOPE_BYTES_MAX);
        }
    }
}
