//! Recordings made by hand for the tests: segment files written with the
//! format of [`taskscope_api::recording`], as the app writes them.

use std::path::{Path, PathBuf};

use prost::Message;
use taskscope_api::proto::{self, RecordHead, RecordingHeader};
use taskscope_api::recording;

/// The recordings' first time: 2026-11-22T10:00:00Z, in ns.
pub(crate) const T0: u64 = 1_795_341_600 * 1_000_000_000;

/// `T0` plus `seconds`.
pub(crate) fn at(seconds: f64) -> u64 {
    T0 + (seconds * 1e9) as u64
}

/// A fresh directory for one test.
pub(crate) fn dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskscope-replay-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A task record, alive or completed.
pub(crate) fn task(id: u64, name: &str, parent: Option<u64>, ended: bool) -> proto::Task {
    proto::Task {
        id,
        name: Some(name.into()),
        state: proto::TaskState::Idle as i32,
        spawned_at: format!("src/main.rs:{id}:5"),
        parent,
        age_ns: 1_000_000_000,
        polls: id,
        kind: proto::TaskKind::Task as i32,
        end: if ended {
            proto::TaskEnd::Completed
        } else {
            proto::TaskEnd::Alive
        } as i32,
        ..Default::default()
    }
}

/// A slow-poll finding of task `id`, as the wire carries it.
pub(crate) fn slow_poll(id: u64, seconds: f64) -> String {
    format!(
        r#"{{"v":1,"kind":"slow_poll","duration_ms":250.0,"threshold_ms":100,"thread":"w","stack":[],"in_progress":false,"poll":1,"time":"2026-11-22T10:00:{:02}.000Z","task":{{"id":{id},"name":"t{id}","spawned_at":"src/main.rs:{id}:5"}}}}"#,
        seconds as u64
    )
}

/// A never-awaited finding, as the wire carries it.
pub(crate) fn never_awaited(n: u64) -> String {
    format!(
        r#"{{"v":1,"kind":"never_awaited","name":"fetch{n}","created_at":"src/main.rs:99:1","time":"2026-11-22T10:00:00.000Z","task":null}}"#
    )
}

/// The recorded app's info, as the recordings of these tests carry it.
pub(crate) fn app() -> proto::AppInfo {
    proto::AppInfo {
        protocol_version: proto::PROTOCOL_VERSION,
        name: "recorded".into(),
        pid: 7,
        version: "0.1.0".into(),
        slow_poll_threshold_ns: 100_000_000,
        capture: "tracing".into(),
        ..Default::default()
    }
}

fn metrics(alive: u64) -> proto::RuntimeMetrics {
    proto::RuntimeMetrics {
        available: true,
        workers: 1,
        alive_tasks: alive,
        ..Default::default()
    }
}

/// A snapshot in one chunk.
pub(crate) fn snapshot(at: u64, tasks: Vec<proto::Task>, findings: Vec<String>) -> proto::Update {
    snapshot_with_finished(at, tasks, Vec::new(), findings)
}

/// A snapshot in one chunk, with the app's finished history.
pub(crate) fn snapshot_with_finished(
    at: u64,
    tasks: Vec<proto::Task>,
    finished: Vec<proto::Task>,
    findings: Vec<String>,
) -> proto::Update {
    proto::Update {
        kind: Some(proto::update::Kind::Snapshot(proto::Snapshot {
            chunk: 0,
            last: true,
            app: Some(app()),
            total_tasks: tasks.len() as u64,
            total_finished: finished.len() as u64,
            total_findings: findings.len() as u64,
            metrics: Some(metrics(tasks.len() as u64)),
            tasks,
            finished,
            findings,
            at_unix_ns: at,
            ..Default::default()
        })),
    }
}

/// A delta in one chunk.
pub(crate) fn delta(
    at: u64,
    changed: Vec<proto::Task>,
    finished: Vec<proto::Task>,
    findings: Vec<String>,
) -> proto::Update {
    proto::Update {
        kind: Some(proto::update::Kind::Delta(proto::Delta {
            chunk: 0,
            last: true,
            metrics: Some(metrics(changed.len() as u64)),
            changed,
            finished,
            findings,
            at_unix_ns: at,
            ..Default::default()
        })),
    }
}

/// One record to write: its publish number and its update (chunk).
pub(crate) struct Rec {
    pub(crate) seq: u64,
    pub(crate) update: proto::Update,
}

/// `Rec { seq, update }`.
pub(crate) fn rec(seq: u64, update: proto::Update) -> Rec {
    Rec { seq, update }
}

/// The bytes of a segment (header, then the records) of run `run`.
pub(crate) fn segment_bytes(run: u64, segment: u64, records: &[Rec]) -> Vec<u8> {
    let mut file = recording::segment_start(&RecordingHeader {
        format_version: recording::FORMAT_VERSION,
        protocol_version: proto::PROTOCOL_VERSION,
        app: Some(app()),
        started_unix_ns: T0,
        run_started_unix_ns: run,
        segment,
    });
    for r in records {
        let (snapshot, at) = match &r.update.kind {
            Some(proto::update::Kind::Snapshot(s)) => (true, s.at_unix_ns),
            Some(proto::update::Kind::Delta(d)) => (false, d.at_unix_ns),
            None => (false, 0),
        };
        let head = RecordHead {
            seq: r.seq,
            at_unix_ns: at,
            snapshot,
        };
        let update = r.update.encode_to_vec();
        let frame = recording::record_frame(&head, &update);
        file.extend_from_slice(&frame.prefix);
        file.extend_from_slice(&update);
        file.extend_from_slice(&frame.crc);
    }
    file
}

/// Writes a segment file.
pub(crate) fn write_segment(path: &Path, run: u64, segment: u64, records: &[Rec]) {
    std::fs::write(path, segment_bytes(run, segment, records)).unwrap();
}

/// `PATH.000001`.
pub(crate) fn numbered(path: &Path, n: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n:06}"));
    PathBuf::from(name)
}
