//! What the publisher records (`TASKSCOPE_RECORD`): every publish hands the
//! recording the delta it made for the viewers — the same encoded bytes —
//! and, when one is due, a full snapshot of the same moment:
//!
//! - a new segment starts with a snapshot: at the first publish, when the
//!   current segment would pass its share of the bound, and when the writer
//!   asks for one (after the file could not be written);
//! - within a segment, a snapshot every [`KEYFRAME_EVERY`] (so that a replay
//!   seeks from a nearby one), and at the next publish after a publish was
//!   dropped (the queue to the writer was full).
//!
//! A publish that records a snapshot records its delta too, under the same
//! number: a replay that plays on reads the delta, one that starts there
//! reads the snapshot. The writer itself (files, rotation, the bound) is
//! `pipeline::record_file`, on a thread of its own: nothing here touches a
//! file.

use std::time::{Duration, Instant};

use taskscope_api::proto::{self, RecordHead, RecordingHeader};
use taskscope_api::recording;

use crate::pipeline::record_queue::{Chunks, RecordItem, Recording};

/// How often a snapshot is recorded within a segment.
pub(crate) const KEYFRAME_EVERY: Duration = Duration::from_secs(60);

/// What one publish records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The delta.
    Delta,
    /// A snapshot and the delta, in the current segment.
    Keyframe,
    /// A new segment: its header, a snapshot and the delta.
    NewSegment,
}

impl Plan {
    /// Whether the publish must make a snapshot for the recording.
    pub(crate) fn snapshot(self) -> bool {
        self != Plan::Delta
    }
}

/// The publisher's side of the recording: numbers, segments, when snapshots are due.
pub(crate) struct Recorder {
    sink: Recording,
    /// The next publish's number.
    seq: u64,
    /// The current segment's number in this run (`None` before the first).
    segment: Option<u64>,
    /// Bytes handed over for the current segment.
    segment_bytes: u64,
    /// Bytes of its start (header, snapshot and delta).
    start_bytes: u64,
    last_snapshot: Option<Instant>,
    /// A publish was dropped: the next one records a snapshot.
    resync: bool,
    /// A new segment was due but could not be handed over: ask again.
    segment_due: bool,
    run_started_unix_ns: u64,
    /// The last publish before shutdown has been handed over.
    finished: bool,
    pub(crate) keyframe_every: Duration,
}

impl Recorder {
    /// The recorder of a run that started at `run_started_unix_ns`.
    pub(crate) fn new(sink: Recording, run_started_unix_ns: u64) -> Recorder {
        Recorder {
            sink,
            seq: 0,
            segment: None,
            segment_bytes: 0,
            start_bytes: 0,
            last_snapshot: None,
            resync: false,
            segment_due: false,
            run_started_unix_ns,
            finished: false,
            keyframe_every: KEYFRAME_EVERY,
        }
    }

    /// Whether it still records (the writer has not given up).
    pub(crate) fn active(&self) -> bool {
        self.sink.alive()
    }

    /// The queue to the writer.
    pub(crate) fn sink(&self) -> &Recording {
        &self.sink
    }

    /// What this publish records, given its delta.
    pub(crate) fn plan(&mut self, delta: &Chunks, at_unix_ns: u64) -> Plan {
        if self.segment.is_none() || self.segment_due || self.sink.take_segment_request() {
            return Plan::NewSegment;
        }
        let delta_bytes = frames_len(self.seq, at_unix_ns, false, delta);
        // A segment holds at least twice its start: an app whose snapshot is
        // bigger than a segment does not start one at every publish.
        let limit = self.sink.segment_limit.max(2 * self.start_bytes);
        if self.segment_bytes + delta_bytes > limit {
            return Plan::NewSegment;
        }
        let due = self
            .last_snapshot
            .is_none_or(|t| t.elapsed() >= self.keyframe_every);
        if self.resync || due {
            Plan::Keyframe
        } else {
            Plan::Delta
        }
    }

    /// Whether shutdown asks for the last publish (read before the publish
    /// reads the registry: then the publish holds all the app did).
    pub(crate) fn finishing(&self) -> bool {
        !self.finished && self.sink.finish_wanted()
    }

    /// Hands this publish to the writer, as `plan` says (`snapshot` is
    /// there when the plan asks for one), without waiting; `last`: it is the
    /// one shutdown waits for ([`Recorder::finishing`] before it began).
    pub(crate) fn record(
        &mut self,
        plan: Plan,
        app: &proto::AppInfo,
        at_unix_ns: u64,
        snapshot: Option<&Chunks>,
        delta: &Chunks,
        last: bool,
    ) {
        let seq = self.seq;
        self.seq += 1;
        let mut bytes = 0u64;
        let mut updates = Vec::with_capacity(2);
        let number = self.segment.map_or(0, |n| n + 1);
        let new_segment = (plan == Plan::NewSegment).then(|| {
            let start = recording::segment_start(&RecordingHeader {
                format_version: recording::FORMAT_VERSION,
                protocol_version: proto::PROTOCOL_VERSION,
                app: Some(app.clone()),
                started_unix_ns: at_unix_ns,
                run_started_unix_ns: self.run_started_unix_ns,
                segment: number,
            });
            bytes += start.len() as u64;
            start
        });
        let snapshot = snapshot.filter(|_| plan.snapshot());
        if let Some(snapshot) = snapshot {
            bytes += frames_len(seq, at_unix_ns, true, snapshot);
            updates.push((true, snapshot.clone()));
        }
        bytes += frames_len(seq, at_unix_ns, false, delta);
        updates.push((false, delta.clone()));
        let item = RecordItem {
            seq,
            at_unix_ns,
            new_segment,
            updates,
            last,
        };
        if !self.sink.offer(item) {
            // The reader sees the number skipped; the next publish records a
            // snapshot to go on from.
            self.resync = true;
            self.segment_due |= plan == Plan::NewSegment;
            return;
        }
        self.finished |= last;
        if plan == Plan::NewSegment {
            self.segment = Some(number);
            self.segment_bytes = bytes;
            self.start_bytes = bytes;
            self.segment_due = false;
        } else {
            self.segment_bytes += bytes;
        }
        if snapshot.is_some() {
            self.last_snapshot = Some(Instant::now());
            self.resync = false;
        }
    }
}

/// Bytes the records of `chunks` take in a file.
fn frames_len(seq: u64, at_unix_ns: u64, snapshot: bool, chunks: &Chunks) -> u64 {
    let head = RecordHead {
        seq,
        at_unix_ns,
        snapshot,
    };
    chunks
        .iter()
        .map(|c| recording::record_frame_len(&head, c.len()) as u64)
        .sum()
}
