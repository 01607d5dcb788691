//! Reassembling the chunks of the Watch stream (a snapshot or a delta may come
//! in several messages, each under 4 MiB) into one [`Update`] each.
//!
//! What a server can make the viewer hold is bounded: one update (all its
//! chunks) at most [`MAX_UPDATE_BYTES`] and [`MAX_CHUNKS`] chunks, one
//! message at most [`MAX_MESSAGE`] (checked by gRPC before it is read). A
//! server that goes past them (chunks that never say `last`, say) gets a
//! [`ChunkError`] saying so, and the connection is dropped, instead of the
//! viewer growing.

use prost::Message;
use taskscope_api::proto;

use crate::client::convert;
use crate::state::model::{AppInfo, Update};

/// The largest message the viewer reads (gRPC's default; the app's chunks
/// are about 256 KiB).
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// The most bytes of one update (a snapshot or a delta, all its chunks) or
/// one task listing the viewer holds: about 1.5 million tasks (an app's
/// chunks are about 256 KiB each).
pub const MAX_UPDATE_BYTES: usize = 256 * 1024 * 1024;

/// The most chunks of one update or listing.
pub const MAX_CHUNKS: u32 = 16 * 1024;

/// A chunk sequence that does not add up: the stream is not trustworthy any more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkError(pub String);

/// What one update has cost so far: its chunks and their bytes, checked
/// against [`MAX_CHUNKS`] and [`MAX_UPDATE_BYTES`].
#[derive(Clone, Copy, Debug)]
pub struct Tally {
    chunks: u32,
    bytes: usize,
    max_bytes: usize,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            chunks: 0,
            bytes: 0,
            max_bytes: MAX_UPDATE_BYTES,
        }
    }
}

impl Tally {
    /// Counts one more chunk of `bytes` bytes of `what` (`snapshot`,
    /// `delta`, `listing`); past a bound, says so.
    pub fn add(&mut self, what: &str, bytes: usize) -> Result<(), ChunkError> {
        self.chunks += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        if self.chunks > MAX_CHUNKS || self.bytes > self.max_bytes {
            return Err(ChunkError(format!(
                "the app sent a {what} of more than {} chunks or {} MiB without its last \
                 chunk ({} chunks, {} MiB so far): the viewer holds no more than that",
                MAX_CHUNKS,
                self.max_bytes >> 20,
                self.chunks,
                self.bytes >> 20
            )));
        }
        Ok(())
    }
}

/// Collects chunks until the `last` one, then yields the whole update.
#[derive(Debug, Default)]
pub struct Assembler {
    partial: Option<Partial>,
    tally: Tally,
}

impl Assembler {
    /// An assembler that holds at most `max_bytes` of one update (for tests).
    #[cfg(test)]
    fn with_max_bytes(max_bytes: usize) -> Assembler {
        Assembler {
            partial: None,
            tally: Tally {
                max_bytes,
                ..Tally::default()
            },
        }
    }
}

#[derive(Debug)]
enum Partial {
    Snapshot(proto::Snapshot),
    Delta(proto::Delta),
}

impl Assembler {
    /// Adds one message; returns the update it completes, if it does.
    pub fn push(
        &mut self,
        update: proto::Update,
    ) -> Result<Option<(Update, Option<AppInfo>)>, ChunkError> {
        let size = update.encoded_len();
        let Some(kind) = update.kind else {
            return Err(ChunkError(
                "an update with neither snapshot nor delta".into(),
            ));
        };
        if self.partial.is_none() {
            self.tally = Tally {
                max_bytes: self.tally.max_bytes,
                ..Tally::default()
            };
        }
        let what = match kind {
            proto::update::Kind::Snapshot(_) => "snapshot",
            proto::update::Kind::Delta(_) => "delta",
        };
        if let Err(err) = self.tally.add(what, size) {
            self.partial = None;
            return Err(err);
        }
        match kind {
            proto::update::Kind::Snapshot(chunk) => {
                let whole = match (self.partial.take(), chunk.chunk) {
                    (None, 0) => chunk,
                    (Some(Partial::Snapshot(mut so_far)), n) if n == so_far.chunk + 1 => {
                        so_far.chunk = n;
                        so_far.last = chunk.last;
                        so_far.tasks.extend(chunk.tasks);
                        so_far.finished.extend(chunk.finished);
                        so_far.findings.extend(chunk.findings);
                        so_far
                    }
                    (_, n) => return Err(ChunkError(format!("snapshot chunk {n} out of order"))),
                };
                if !whole.last {
                    self.partial = Some(Partial::Snapshot(whole));
                    return Ok(None);
                }
                if whole.tasks.len() as u64 != whole.total_tasks
                    || whole.finished.len() as u64 != whole.total_finished
                    || whole.findings.len() as u64 != whole.total_findings
                {
                    return Err(ChunkError(format!(
                        "snapshot incomplete: {} of {} tasks",
                        whole.tasks.len(),
                        whole.total_tasks
                    )));
                }
                let app = whole.app.as_ref().map(convert::app).unwrap_or_default();
                let update = Update::Snapshot {
                    app: app.clone(),
                    tasks: whole.tasks.iter().map(convert::task).collect(),
                    finished: whole.finished.iter().map(convert::task).collect(),
                    findings: convert::findings(&whole.findings),
                    metrics: convert::metrics(whole.metrics.as_ref()),
                    dropped: convert::dropped(whole.dropped.as_ref()),
                    at: convert::time(whole.at_unix_ns),
                };
                Ok(Some((update, Some(app))))
            }
            proto::update::Kind::Delta(chunk) => {
                let whole = match (self.partial.take(), chunk.chunk) {
                    (None, 0) => chunk,
                    (Some(Partial::Delta(mut so_far)), n) if n == so_far.chunk + 1 => {
                        so_far.chunk = n;
                        so_far.last = chunk.last;
                        so_far.changed.extend(chunk.changed);
                        so_far.finished.extend(chunk.finished);
                        so_far.findings.extend(chunk.findings);
                        so_far
                    }
                    (_, n) => return Err(ChunkError(format!("delta chunk {n} out of order"))),
                };
                if !whole.last {
                    self.partial = Some(Partial::Delta(whole));
                    return Ok(None);
                }
                let update = Update::Delta {
                    changed: whole.changed.iter().map(convert::task).collect(),
                    finished: whole.finished.iter().map(convert::task).collect(),
                    findings: convert::findings(&whole.findings),
                    metrics: convert::metrics(whole.metrics.as_ref()),
                    dropped: convert::dropped(whole.dropped.as_ref()),
                    at: convert::time(whole.at_unix_ns),
                };
                Ok(Some((update, None)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64) -> proto::Task {
        proto::Task {
            id,
            state: proto::TaskState::Idle as i32,
            ..Default::default()
        }
    }

    fn snapshot_chunk(chunk: u32, last: bool, ids: &[u64], total: u64) -> proto::Update {
        proto::Update {
            kind: Some(proto::update::Kind::Snapshot(proto::Snapshot {
                chunk,
                last,
                app: Some(proto::AppInfo {
                    protocol_version: 1,
                    ..Default::default()
                }),
                tasks: ids.iter().copied().map(task).collect(),
                total_tasks: total,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn chunks_make_one_snapshot() {
        let mut a = Assembler::default();
        assert_eq!(a.push(snapshot_chunk(0, false, &[1, 2], 3)).unwrap(), None);
        let (update, app) = a.push(snapshot_chunk(1, true, &[3], 3)).unwrap().unwrap();
        let Update::Snapshot { tasks, .. } = update else {
            panic!()
        };
        assert_eq!(tasks.iter().map(|t| t.id).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(app.unwrap().protocol, 1);
    }

    #[test]
    fn a_missing_chunk_or_a_short_total_is_an_error() {
        let mut a = Assembler::default();
        a.push(snapshot_chunk(0, false, &[1], 3)).unwrap();
        assert!(a.push(snapshot_chunk(2, true, &[3], 3)).is_err());
        let mut a = Assembler::default();
        assert!(a.push(snapshot_chunk(0, true, &[1], 3)).is_err());
        let mut a = Assembler::default();
        assert!(a.push(snapshot_chunk(1, true, &[1], 1)).is_err());
    }

    #[test]
    fn a_delta_in_one_chunk() {
        let mut a = Assembler::default();
        let (update, app) = a
            .push(proto::Update {
                kind: Some(proto::update::Kind::Delta(proto::Delta {
                    last: true,
                    changed: vec![task(9)],
                    ..Default::default()
                })),
            })
            .unwrap()
            .unwrap();
        assert!(app.is_none());
        let Update::Delta { changed, .. } = update else {
            panic!()
        };
        assert_eq!(changed[0].id, 9);
    }

    #[test]
    fn chunks_without_an_end_are_refused_past_the_bound_saying_so() {
        let mut a = Assembler::default();
        // Empty chunks that never say `last`: bounded by their number.
        let mut refused = None;
        for n in 0..=MAX_CHUNKS {
            if let Err(err) = a.push(snapshot_chunk(n, false, &[], 1)) {
                refused = Some((n, err));
                break;
            }
        }
        let (n, ChunkError(why)) = refused.expect("refused");
        assert_eq!(n, MAX_CHUNKS);
        assert!(
            why.starts_with("the app sent a snapshot of more than 16384 chunks or 256 MiB"),
            "{why}"
        );
        // Nothing is held after it; a new update starts afresh.
        assert!(a.partial.is_none());
        assert!(a.push(snapshot_chunk(0, true, &[1], 1)).unwrap().is_some());

        // Big chunks: bounded by their bytes, long before their number (a
        // bound of 8 MiB here, the real one's 256 MiB being a lot for a test).
        let mut a = Assembler::with_max_bytes(8 << 20);
        let ids: Vec<u64> = (0..100_000).collect();
        let chunk_bytes = snapshot_chunk(0, false, &ids, 1).encoded_len();
        let mut pushed = 0;
        let err = loop {
            match a.push(snapshot_chunk(pushed, false, &ids, 1)) {
                Ok(_) => pushed += 1,
                Err(err) => break err,
            }
        };
        assert_eq!(pushed as usize, (8 << 20) / chunk_bytes);
        assert!(
            err.0.contains("or 8 MiB without its last chunk"),
            "{}",
            err.0
        );
    }
}
