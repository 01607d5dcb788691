//! taskscope's records as protocol messages.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::task::{FinishedTask, TaskCell, TaskEnd, TaskInfo, TaskState};
use crate::session::Session;
use taskscope_api::Finding;
use taskscope_api::proto;

/// Nanoseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ns(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64)
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// The future a runtime's `block_on` runs, rather than a spawned task. The
/// tracing capture names it `block_on` (Tokio's span says `kind=block_on`).
pub(crate) fn kind(is_block_on: bool, name: Option<&str>) -> proto::TaskKind {
    if is_block_on || name == Some("block_on") {
        proto::TaskKind::BlockOn
    } else {
        proto::TaskKind::Task
    }
}

/// The kind of a live record.
pub(crate) fn kind_of(cell: &TaskCell) -> proto::TaskKind {
    kind(cell.is_block_on, cell.name.as_deref())
}

/// A task state on the wire.
pub(crate) fn state(state: TaskState) -> proto::TaskState {
    match state {
        TaskState::Running => proto::TaskState::Running,
        TaskState::Scheduled => proto::TaskState::Scheduled,
        TaskState::Idle => proto::TaskState::Idle,
    }
}

/// How a task ended, on the wire.
pub(crate) fn end(end: TaskEnd) -> proto::TaskEnd {
    match end {
        TaskEnd::Completed => proto::TaskEnd::Completed,
        TaskEnd::Cancelled => proto::TaskEnd::Cancelled,
        TaskEnd::Panicked => proto::TaskEnd::Panicked,
    }
}

/// A task snapshot on the wire (alive: `end` is `ALIVE`).
pub(crate) fn task(info: &TaskInfo, kind: proto::TaskKind) -> proto::Task {
    proto::Task {
        id: info.id,
        name: info.name.clone(),
        state: state(info.state) as i32,
        spawned_at: info.spawned_at.to_string(),
        parent: info.parent,
        age_ns: ns(info.age),
        polls: info.polls,
        busy_ns: ns(info.busy),
        idle_ns: ns(info.idle),
        since_last_poll_ns: info.since_last_poll.map(ns),
        max_poll_ns: ns(info.max_poll),
        wakes: info.wakes,
        wakers: info.wakers,
        kind: kind as i32,
        end: proto::TaskEnd::Alive as i32,
        ended_at_unix_ns: None,
    }
}

/// A live record at clock time `now`.
pub(crate) fn live(cell: &TaskCell, now: u64) -> proto::Task {
    task(&cell.info(now), kind_of(cell))
}

/// A task of the finished history.
pub(crate) fn finished(f: &FinishedTask) -> proto::Task {
    let mut t = task(&f.task, kind(false, f.task.name.as_deref()));
    t.end = end(f.end) as i32;
    t.ended_at_unix_ns = Some(unix_ns(f.ended_at));
    t
}

/// A task that ended while the history no longer had it: its last record,
/// with an unknown end.
pub(crate) fn gone(cell: &TaskCell, now: u64, at: SystemTime) -> proto::Task {
    let mut t = live(cell, now);
    if t.state == proto::TaskState::Running as i32 {
        t.state = proto::TaskState::Idle as i32;
    }
    t.end = proto::TaskEnd::Unknown as i32;
    t.ended_at_unix_ns = Some(unix_ns(at));
    t
}

/// A finding as its report-file line.
pub(crate) fn finding(f: &Finding) -> String {
    serde_json::to_string(f).unwrap_or_else(|e| {
        // Not expected (the schema serializes); say so rather than drop it.
        format!(
            r#"{{"v":{},"kind":"findings_dropped","count":1,"time":{:?},"task":null,"error":{:?}}}"#,
            taskscope_api::SCHEMA_VERSION,
            f.time,
            e.to_string()
        )
    })
}

/// Who the app is.
pub(crate) fn app_info(session: &Session) -> proto::AppInfo {
    proto::AppInfo {
        protocol_version: proto::PROTOCOL_VERSION,
        name: process_name(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        slow_poll_threshold_ns: session.slow_poll_ns,
        capture: if session.wakes_known.load(Relaxed) {
            "tracing"
        } else {
            "hooks"
        }
        .to_string(),
        poll_timing_one_in: session.sample_mask + 1,
    }
}

fn process_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| std::env::args().next())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::SpawnLocation;

    #[test]
    fn a_task_keeps_its_fields_on_the_wire() {
        let cell = TaskCell::new(
            7,
            Some("handler".into()),
            SpawnLocation {
                file: "src/main.rs",
                line: 42,
                col: 5,
            },
            Some(1),
        );
        let t = live(&cell, crate::clock::now());
        assert_eq!(t.id, 7);
        assert_eq!(t.name.as_deref(), Some("handler"));
        assert_eq!(t.spawned_at, "src/main.rs:42:5");
        assert_eq!(t.parent, Some(1));
        assert_eq!(t.state(), proto::TaskState::Scheduled);
        assert_eq!(t.kind(), proto::TaskKind::Task);
        assert_eq!(t.end(), proto::TaskEnd::Alive);
        assert_eq!(kind(false, Some("block_on")), proto::TaskKind::BlockOn);
    }
}
