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
use crate::state::model::{AppInfo, Task, Update};

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

/// An update whose last chunk has not come yet: the first chunk's fields,
/// and the tasks of every chunk so far, converted as each chunk came (so
/// that a snapshot of a million tasks is not held twice, as protobuf
/// messages and as the viewer's tasks).
#[derive(Debug)]
struct Gathered<H> {
    head: H,
    tasks: Vec<Task>,
    finished: Vec<Task>,
}

#[derive(Debug)]
enum Partial {
    Snapshot(Gathered<proto::Snapshot>),
    Delta(Gathered<proto::Delta>),
}

/// Tasks converted by value (their strings move).
fn converted(tasks: Vec<proto::Task>) -> Vec<Task> {
    tasks.into_iter().map(convert::task).collect()
}

/// A chunk of a snapshot or of a delta: what gathering needs of it.
trait Chunk: Sized {
    /// `snapshot` or `delta`, for messages.
    const WHAT: &'static str;
    /// Its number in the update (0 first).
    fn number(&self) -> u32;
    /// Its tasks and its finished tasks, taken out.
    fn take_tasks(&mut self) -> (Vec<proto::Task>, Vec<proto::Task>);
    /// Takes the number, `last` and the findings of `next`, the chunk after it.
    fn follow(&mut self, next: Self);
    /// What `partial` gathers, if it is an update of this kind.
    fn gathered(partial: Partial) -> Option<Gathered<Self>>;
}

/// [`Chunk`] for an update type: its tasks' field and its [`Partial`] variant.
macro_rules! chunk {
    ($update:ty, $what:literal, $tasks:ident, $variant:ident) => {
        impl Chunk for $update {
            const WHAT: &'static str = $what;
            fn number(&self) -> u32 {
                self.chunk
            }
            fn take_tasks(&mut self) -> (Vec<proto::Task>, Vec<proto::Task>) {
                (
                    std::mem::take(&mut self.$tasks),
                    std::mem::take(&mut self.finished),
                )
            }
            fn follow(&mut self, next: Self) {
                self.chunk = next.chunk;
                self.last = next.last;
                self.findings.extend(next.findings);
            }
            fn gathered(partial: Partial) -> Option<Gathered<Self>> {
                match partial {
                    Partial::$variant(g) => Some(g),
                    _ => None,
                }
            }
        }
    };
}

chunk!(proto::Snapshot, "snapshot", tasks, Snapshot);
chunk!(proto::Delta, "delta", changed, Delta);

impl<H: Chunk> Gathered<H> {
    /// `chunk` after what `partial` gathered (it must be the next chunk of
    /// an update of the same kind), or the start of an update (chunk 0).
    fn gather(partial: Option<Partial>, mut chunk: H) -> Result<Gathered<H>, ChunkError> {
        let (tasks, finished) = chunk.take_tasks();
        let (tasks, finished) = (converted(tasks), converted(finished));
        match (partial.map(H::gathered), chunk.number()) {
            (None, 0) => Ok(Gathered {
                head: chunk,
                tasks,
                finished,
            }),
            (Some(Some(mut so_far)), n) if n == so_far.head.number() + 1 => {
                so_far.head.follow(chunk);
                so_far.tasks.extend(tasks);
                so_far.finished.extend(finished);
                Ok(so_far)
            }
            (_, n) => Err(ChunkError(format!("{} chunk {n} out of order", H::WHAT))),
        }
    }
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
                let mut whole = Gathered::gather(self.partial.take(), chunk)?;
                if !whole.head.last {
                    self.partial = Some(Partial::Snapshot(whole));
                    return Ok(None);
                }
                let head = &whole.head;
                if whole.tasks.len() as u64 != head.total_tasks
                    || whole.finished.len() as u64 != head.total_finished
                    || head.findings.len() as u64 != head.total_findings
                {
                    return Err(ChunkError(format!(
                        "snapshot incomplete: {} of {} tasks",
                        whole.tasks.len(),
                        head.total_tasks
                    )));
                }
                let app = head.app.as_ref().map(convert::app).unwrap_or_default();
                let update = Update::Snapshot {
                    app: app.clone(),
                    findings: convert::findings(&head.findings),
                    metrics: convert::metrics(head.metrics.as_ref()),
                    dropped: convert::dropped(head.dropped.as_ref()),
                    at: convert::time(head.at_unix_ns),
                    tasks: std::mem::take(&mut whole.tasks),
                    finished: std::mem::take(&mut whole.finished),
                };
                Ok(Some((update, Some(app))))
            }
            proto::update::Kind::Delta(chunk) => {
                let mut whole = Gathered::gather(self.partial.take(), chunk)?;
                if !whole.head.last {
                    self.partial = Some(Partial::Delta(whole));
                    return Ok(None);
                }
                let head = &whole.head;
                let update = Update::Delta {
                    findings: convert::findings(&head.findings),
                    metrics: convert::metrics(head.metrics.as_ref()),
                    dropped: convert::dropped(head.dropped.as_ref()),
                    at: convert::time(head.at_unix_ns),
                    changed: std::mem::take(&mut whole.tasks),
                    finished: std::mem::take(&mut whole.finished),
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

    /// A delta in three chunks: its changed and finished tasks and its
    /// findings, in order, from every chunk; the first chunk's header.
    #[test]
    fn a_delta_in_chunks_keeps_every_chunks_tasks_and_findings() {
        let finding = |name: &str| {
            format!(
                r#"{{"v":1,"kind":"never_awaited","name":"{name}","created_at":"src/a.rs:1:1","time":"x","task":null}}"#
            )
        };
        let chunk =
            |n: u32, last: bool, changed: &[u64], finished: &[u64], found: &[&str]| proto::Update {
                kind: Some(proto::update::Kind::Delta(proto::Delta {
                    chunk: n,
                    last,
                    changed: changed.iter().copied().map(task).collect(),
                    finished: finished.iter().copied().map(task).collect(),
                    findings: found.iter().map(|f| finding(f)).collect(),
                    at_unix_ns: 1_000_000_000 * (u64::from(n) + 1),
                    ..Default::default()
                })),
            };
        let mut a = Assembler::default();
        assert_eq!(
            a.push(chunk(0, false, &[1, 2], &[7], &["f"])).unwrap(),
            None
        );
        assert_eq!(a.push(chunk(1, false, &[], &[8], &[])).unwrap(), None);
        let (update, _) = a.push(chunk(2, true, &[3], &[], &["g"])).unwrap().unwrap();
        let Update::Delta {
            changed,
            finished,
            findings,
            at,
            ..
        } = update
        else {
            panic!()
        };
        let ids = |tasks: &[Task]| tasks.iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(ids(&changed), [1, 2, 3]);
        assert_eq!(ids(&finished), [7, 8]);
        assert_eq!(findings.len(), 2);
        assert_eq!(at, convert::time(1_000_000_000), "the first chunk's time");
        // A chunk out of order is an error, and the next update starts afresh.
        let mut a = Assembler::default();
        a.push(chunk(0, false, &[1], &[], &[])).unwrap();
        assert!(a.push(chunk(2, true, &[2], &[], &[])).is_err());
        assert!(a.push(chunk(0, true, &[5], &[], &[])).unwrap().is_some());
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
