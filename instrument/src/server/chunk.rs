//! Splitting what grows with the number of tasks (snapshots, deltas; task
//! listings are made chunk by chunk in [`super::listing`] with the same
//! budget) into chunks of about 256 KiB, well under tonic's default 4 MiB
//! decode limit. Every task, finished task and finding lands in exactly one
//! chunk, in order, and the last chunk says `last`.
//!
//! No single item can make a chunk too big for a viewer: a task's name and
//! spawn location are cut to [`MAX_TEXT`] bytes and marked ([`bounded_task`]; the capture
//! already cuts names, this holds whatever the source), and a finding longer
//! than [`MAX_ITEM`] bytes (none is, since panic messages and names are cut
//! where they are captured) is left out ([`fitting`]; the publisher counts it
//! among the dropped findings), rather than sent in a message every viewer
//! must refuse.

use prost::Message;

use taskscope_api::format::{MAX_MARKED, MAX_TEXT, truncate};
use taskscope_api::proto;

/// tonic's default limit on a decoded message.
pub(crate) const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// Bytes of tasks and findings per chunk. Far under [`MAX_MESSAGE`] (the
/// rest is room for the header fields: well under 1 KiB with a hundred
/// workers): a chunk is what each viewer's connection holds a copy of while
/// sending it, so smaller chunks keep 20 viewers of a big app cheap.
pub(crate) const CHUNK_BUDGET: usize = 256 * 1024;

const _: () = assert!(CHUNK_BUDGET + 64 * 1024 <= MAX_MESSAGE);

/// The largest finding sent (its JSON line, in bytes).
pub(crate) const MAX_ITEM: usize = 1024 * 1024;

const _: () = assert!(MAX_ITEM + 64 * 1024 <= MAX_MESSAGE);

/// `task` with its name and spawn location at most [`MAX_MARKED`] bytes
/// each (a name already cut where it was captured is left as it is).
pub(crate) fn bounded_task(mut task: proto::Task) -> proto::Task {
    if let Some(name) = &task.name
        && name.len() > MAX_MARKED
    {
        task.name = Some(truncate(name, MAX_TEXT).into_owned());
    }
    if task.spawned_at.len() > MAX_MARKED {
        task.spawned_at = truncate(&task.spawned_at, MAX_TEXT).into_owned();
    }
    task
}

/// The findings that fit in a chunk, and how many did not.
pub(crate) fn fitting(mut findings: Vec<String>) -> (Vec<String>, u64) {
    let before = findings.len();
    findings.retain(|f| f.len() <= MAX_ITEM);
    let left_out = (before - findings.len()) as u64;
    (findings, left_out)
}

/// What a task adds to a chunk, encoded.
pub(crate) fn task_cost(task: &proto::Task) -> usize {
    field_cost(task.encoded_len())
}

/// The repeated fields of one chunk.
#[derive(Debug, Default)]
pub(crate) struct Part {
    pub(crate) tasks: Vec<proto::Task>,
    pub(crate) finished: Vec<proto::Task>,
    pub(crate) findings: Vec<String>,
}

/// Encoded size of one element of a repeated length-delimited field with a
/// tag below 16 (one byte of key).
pub(crate) fn field_cost(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
}

/// Packs the lists into parts of at most `budget` encoded bytes each (an item
/// bigger than the budget gets a part of its own; tasks are bounded with
/// [`bounded_task`], findings must have been through [`fitting`]). Always at
/// least one part.
pub(crate) fn pack(
    tasks: Vec<proto::Task>,
    finished: Vec<proto::Task>,
    findings: Vec<String>,
    budget: usize,
) -> Vec<Part> {
    let mut parts = vec![Part::default()];
    let mut used = 0usize;
    let mut room = |parts: &mut Vec<Part>, cost: usize| {
        if used > 0 && used + cost > budget {
            parts.push(Part::default());
            used = 0;
        }
        used += cost;
    };
    for t in tasks {
        let t = bounded_task(t);
        room(&mut parts, task_cost(&t));
        parts.last_mut().expect("one part").tasks.push(t);
    }
    for t in finished {
        let t = bounded_task(t);
        room(&mut parts, task_cost(&t));
        parts.last_mut().expect("one part").finished.push(t);
    }
    for f in findings {
        room(&mut parts, field_cost(f.len()));
        parts.last_mut().expect("one part").findings.push(f);
    }
    parts
}

/// The header of a snapshot, repeated in each of its chunks.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotHeader {
    pub(crate) app: proto::AppInfo,
    pub(crate) metrics: proto::RuntimeMetrics,
    pub(crate) dropped: proto::Dropped,
    pub(crate) at_unix_ns: u64,
}

/// How many tasks, finished tasks and findings a whole snapshot holds.
#[derive(Clone, Copy)]
struct Totals {
    tasks: usize,
    finished: usize,
    findings: usize,
}

impl SnapshotHeader {
    /// Chunk `chunk` of a snapshot (`last`: its final one) holding `part`.
    fn chunk(&self, part: Part, chunk: u32, last: bool, totals: Totals) -> proto::Update {
        proto::Update {
            kind: Some(proto::update::Kind::Snapshot(proto::Snapshot {
                chunk,
                last,
                app: Some(self.app.clone()),
                tasks: part.tasks,
                finished: part.finished,
                findings: part.findings,
                metrics: Some(self.metrics.clone()),
                dropped: Some(self.dropped),
                at_unix_ns: self.at_unix_ns,
                total_tasks: totals.tasks as u64,
                total_finished: totals.finished as u64,
                total_findings: totals.findings as u64,
            })),
        }
    }
}

/// A full picture as a sequence of `Update`s, each under [`MAX_MESSAGE`]
/// (the publisher uses [`snapshot_encoded`], which makes the same chunks).
#[cfg(test)]
pub(crate) fn snapshot(
    header: &SnapshotHeader,
    tasks: Vec<proto::Task>,
    finished: Vec<proto::Task>,
    findings: Vec<String>,
) -> Vec<proto::Update> {
    // The publisher counted those left out among the dropped (as they came).
    let (findings, _) = fitting(findings);
    let totals = Totals {
        tasks: tasks.len(),
        finished: finished.len(),
        findings: findings.len(),
    };
    let parts = pack(tasks, finished, findings, CHUNK_BUDGET);
    let count = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| header.chunk(p, i as u32, i + 1 == count, totals))
        .collect()
}

/// A snapshot made and encoded chunk by chunk from an iterator of live
/// tasks (`total_tasks` of them): only one chunk's tasks exist as protocol
/// messages at a time, so a snapshot of a million tasks costs its encoded
/// bytes, not those plus every task converted first. The same chunks as
/// `snapshot` gives.
pub(crate) fn snapshot_encoded<E>(
    header: &SnapshotHeader,
    total_tasks: usize,
    tasks: impl Iterator<Item = proto::Task>,
    finished: Vec<proto::Task>,
    findings: Vec<String>,
    encode: impl Fn(&proto::Update) -> E,
) -> Vec<E> {
    let totals = Totals {
        tasks: total_tasks,
        finished: finished.len(),
        findings: findings.len(),
    };
    let mut encoded = Vec::new();
    let mut part = Part::default();
    let mut used = 0usize;
    let mut chunk = 0u32;
    let make = |part: Part, chunk: u32, last: bool| header.chunk(part, chunk, last, totals);
    // Starts a new part when `cost` does not fit: the full one is encoded.
    let mut room = |part: &mut Part, cost: usize, encoded: &mut Vec<E>| {
        if used > 0 && used + cost > CHUNK_BUDGET {
            encoded.push(encode(&make(std::mem::take(part), chunk, false)));
            chunk += 1;
            used = 0;
        }
        used += cost;
    };
    for t in tasks {
        room(&mut part, field_cost(t.encoded_len()), &mut encoded);
        part.tasks.push(t);
    }
    for t in finished {
        room(&mut part, field_cost(t.encoded_len()), &mut encoded);
        part.finished.push(t);
    }
    for f in findings {
        room(&mut part, field_cost(f.len()), &mut encoded);
        part.findings.push(f);
    }
    encoded.push(encode(&make(part, chunk, true)));
    encoded
}

/// The changes since the previous update, as a sequence of `Update`s.
pub(crate) fn delta(
    header: &SnapshotHeader,
    changed: Vec<proto::Task>,
    finished: Vec<proto::Task>,
    findings: Vec<String>,
) -> Vec<proto::Update> {
    // The publisher counted those left out among the dropped (as they came).
    let (findings, _) = fitting(findings);
    let parts = pack(changed, finished, findings, CHUNK_BUDGET);
    let count = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| proto::Update {
            kind: Some(proto::update::Kind::Delta(proto::Delta {
                chunk: i as u32,
                last: i + 1 == count,
                changed: p.tasks,
                finished: p.finished,
                findings: p.findings,
                metrics: Some(header.metrics.clone()),
                dropped: Some(header.dropped),
                at_unix_ns: header.at_unix_ns,
            })),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task record as big as a typical one: a name, a nested source path.
    pub(crate) fn sample_task(id: u64) -> proto::Task {
        proto::Task {
            id,
            name: Some(format!("connection-handler-{id}")),
            state: proto::TaskState::Idle as i32,
            spawned_at: format!("src/server/connections/handler.rs:{}:17", 100 + id % 900),
            parent: Some(1),
            age_ns: 12_345_678_901,
            polls: 1_000 + id,
            busy_ns: 98_765_432,
            idle_ns: 12_246_913_469,
            since_last_poll_ns: Some(1_234_567_890),
            max_poll_ns: 4_567_890,
            wakes: 1_000 + id,
            wakers: 1,
            kind: proto::TaskKind::Task as i32,
            end: proto::TaskEnd::Alive as i32,
            ended_at_unix_ns: None,
        }
    }

    fn header() -> SnapshotHeader {
        SnapshotHeader {
            app: proto::AppInfo {
                protocol_version: proto::PROTOCOL_VERSION,
                name: "app".into(),
                pid: 1,
                version: "0.1.0".into(),
                slow_poll_threshold_ns: 100_000_000,
                capture: "tracing".into(),
                poll_timing_one_in: 1,
            },
            metrics: proto::RuntimeMetrics {
                available: true,
                workers: 64,
                local_queue_depths: vec![1_000; 64],
                ..Default::default()
            },
            dropped: proto::Dropped::default(),
            at_unix_ns: 1,
        }
    }

    #[test]
    fn a_snapshot_made_chunk_by_chunk_is_the_same_as_one_made_at_once() {
        let tasks: Vec<_> = (0..20_000).map(sample_task).collect();
        let finished = vec![sample_task(30_000)];
        let findings = vec!["{}".to_string(); 3];
        let at_once = snapshot(&header(), tasks.clone(), finished.clone(), findings.clone());
        let streamed = snapshot_encoded(
            &header(),
            tasks.len(),
            tasks.into_iter(),
            finished,
            findings,
            Clone::clone,
        );
        assert!(at_once.len() > 3, "{} chunks", at_once.len());
        assert_eq!(streamed, at_once);
    }

    #[test]
    fn a_snapshot_of_100_000_tasks_is_chunked_under_4_mib_without_losing_any() {
        let tasks: Vec<_> = (0..100_000).map(sample_task).collect();
        let finished: Vec<_> = (100_000..101_000)
            .map(|id| {
                let mut t = sample_task(id);
                t.end = proto::TaskEnd::Completed as i32;
                t.ended_at_unix_ns = Some(1);
                t
            })
            .collect();
        // 1,000 findings with 64-frame stacks: a big recent-findings list.
        let frame = r#"{"function":"app::server::connections::handler::{{closure}}","file":"src/server/connections/handler.rs","line":123}"#;
        let stack = vec![frame; 64].join(",");
        let finding = format!(
            r#"{{"v":1,"kind":"slow_poll","duration_ms":153.2,"threshold_ms":100,"thread":"tokio-runtime-worker","stack":[{stack}],"in_progress":false,"poll":3,"time":"2026-11-22T10:00:00.153Z","task":{{"id":17,"name":"handler","spawned_at":"src/main.rs:42:5"}}}}"#
        );
        let findings = vec![finding; 1_000];

        let updates = snapshot(&header(), tasks, finished, findings);
        let mut total_bytes = 0;
        let (mut tasks_seen, mut finished_seen, mut findings_seen) = (0, 0, 0);
        let mut ids = Vec::new();
        for (i, u) in updates.iter().enumerate() {
            let size = u.encoded_len();
            assert!(size < MAX_MESSAGE, "chunk {i} is {size} bytes");
            total_bytes += size;
            let Some(proto::update::Kind::Snapshot(s)) = &u.kind else {
                panic!("not a snapshot chunk")
            };
            assert_eq!(s.chunk as usize, i);
            assert_eq!(s.last, i + 1 == updates.len());
            assert_eq!(s.total_tasks, 100_000);
            tasks_seen += s.tasks.len();
            finished_seen += s.finished.len();
            findings_seen += s.findings.len();
            ids.extend(s.tasks.iter().map(|t| t.id));
        }
        assert_eq!(
            (tasks_seen, finished_seen, findings_seen),
            (100_000, 1_000, 1_000)
        );
        assert_eq!(ids, (0..100_000).collect::<Vec<u64>>(), "order kept");
        assert!(updates.len() > 1);
        println!(
            "snapshot of 100,000 tasks + 1,000 finished + 1,000 findings: {total_bytes} bytes in {} chunks",
            updates.len()
        );
        let tasks_only = snapshot(
            &header(),
            (0..100_000).map(sample_task).collect(),
            vec![],
            vec![],
        );
        let bytes: usize = tasks_only.iter().map(Message::encoded_len).sum();
        println!(
            "snapshot of 100,000 tasks alone: {bytes} bytes in {} chunks",
            tasks_only.len()
        );
    }

    #[test]
    fn a_task_is_bounded_once() {
        let mut t = sample_task(1);
        t.name = Some("n".repeat(1 << 20));
        t.spawned_at = "s".repeat(1 << 20);
        let t = bounded_task(t);
        let name = t.name.clone().unwrap();
        assert!(name.ends_with(" … [truncated, 1048576 bytes]"), "{name}");
        assert_eq!(t.spawned_at.len(), name.len());
        // Already cut (where it was captured): left as it is.
        assert_eq!(bounded_task(t.clone()), t);
    }

    #[test]
    fn empty_lists_still_make_one_last_chunk() {
        let updates = delta(&header(), vec![], vec![], vec![]);
        assert_eq!(updates.len(), 1);
        let Some(proto::update::Kind::Delta(d)) = &updates[0].kind else {
            panic!()
        };
        assert!(d.last);
        assert_eq!(d.chunk, 0);
    }

    #[test]
    fn parts_respect_the_budget_and_an_oversized_item_stands_alone() {
        let parts = pack(
            (0..10).map(sample_task).collect(),
            vec![],
            vec!["x".repeat(1_000), "y".into()],
            400,
        );
        for p in &parts {
            let size: usize = p
                .tasks
                .iter()
                .map(|t| field_cost(t.encoded_len()))
                .chain(p.findings.iter().map(|f| field_cost(f.len())))
                .sum();
            assert!(
                size <= 400 || (p.tasks.is_empty() && p.findings.len() == 1),
                "{size}"
            );
        }
        let n: usize = parts.iter().map(|p| p.tasks.len()).sum();
        assert_eq!(n, 10);
        assert!(parts.iter().any(|p| p.findings == ["x".repeat(1_000)]));
        // The exact cost matches prost's encoding of a one-element message.
        let t = sample_task(3);
        let one = proto::Delta {
            changed: vec![t.clone()],
            ..Default::default()
        };
        assert_eq!(one.encoded_len(), field_cost(t.encoded_len()));
    }
}
