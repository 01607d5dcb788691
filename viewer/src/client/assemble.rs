//! Reassembling the chunks of the Watch stream (a snapshot or a delta may come
//! in several messages, each under 4 MiB) into one [`Update`] each.

use taskscope_api::proto;

use crate::client::convert;
use crate::state::model::{AppInfo, Update};

/// A chunk sequence that does not add up: the stream is not trustworthy any more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkError(pub String);

/// Collects chunks until the `last` one, then yields the whole update.
#[derive(Debug, Default)]
pub struct Assembler {
    partial: Option<Partial>,
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
        let Some(kind) = update.kind else {
            return Err(ChunkError(
                "an update with neither snapshot nor delta".into(),
            ));
        };
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
}
