//! Protocol messages as the viewer's model ([`crate::state::model`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use taskscope_api::proto;

use crate::state::model::{
    AppInfo, AppSource, Dropped, Finding, RuntimeMetrics, Task, TaskDetail, TaskEnd, TaskState,
};

/// Whether a task record is a spawned task or a runtime's `block_on` future.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// A spawned task.
    Task,
    /// The future a runtime's `block_on` runs (`#[tokio::main]`'s body).
    BlockOn,
    /// A `spawn_blocking` closure, or a runtime's worker thread: a thread,
    /// not a future (only console-subscriber apps report them).
    Blocking,
}

impl TaskKind {
    /// `task` or `block_on`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Task => "task",
            TaskKind::BlockOn => "block_on",
            TaskKind::Blocking => "blocking",
        }
    }
}

/// Where a task waits, from the wire.
pub fn async_stack(s: &proto::AsyncStack) -> crate::client::stacks::AsyncStack {
    let frames = |frames: &[proto::StackFrame]| -> Vec<taskscope_api::StackFrame> {
        frames
            .iter()
            .map(|f| taskscope_api::StackFrame {
                function: f.function.clone(),
                file: f.file.clone(),
                line: f.line,
            })
            .collect()
    };
    crate::client::stacks::AsyncStack {
        waiting_at: frames(&s.waiting_at),
        also: s.also.iter().map(|a| frames(&a.frames)).collect(),
        note: (!s.note.is_empty()).then(|| s.note.clone()),
    }
}

/// A time on the wire (ns since the Unix epoch).
pub fn time(unix_ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(unix_ns)
}

/// A task record.
///
/// An end the app no longer knew (`TASK_END_UNKNOWN`: its finished history
/// had let the task go before the server looked) shows as `completed`, what
/// nearly every task that ends unseen in a busy app did; the model has no
/// "unknown end".
pub fn task(t: proto::Task) -> Task {
    let state = match t.state() {
        proto::TaskState::Running => TaskState::Running,
        proto::TaskState::Scheduled => TaskState::Scheduled,
        proto::TaskState::Idle | proto::TaskState::Unspecified => TaskState::Idle,
    };
    let ended = match t.end() {
        proto::TaskEnd::Alive => None,
        proto::TaskEnd::Completed | proto::TaskEnd::Unknown => Some(TaskEnd::Completed),
        proto::TaskEnd::Cancelled => Some(TaskEnd::Cancelled),
        proto::TaskEnd::Panicked => Some(TaskEnd::Panicked),
    };
    Task {
        id: t.id,
        name: t.name,
        state,
        ended,
        spawned_at: t.spawned_at,
        parent: t.parent,
        age: Duration::from_nanos(t.age_ns),
        polls: t.polls,
        busy: Duration::from_nanos(t.busy_ns),
        idle: Duration::from_nanos(t.idle_ns),
        since_last_poll: t.since_last_poll_ns.map(Duration::from_nanos),
        max_poll: Duration::from_nanos(t.max_poll_ns),
        wakes: t.wakes,
        wakers: t.wakers,
    }
}

/// The kind of a task record.
pub fn kind(t: &proto::Task) -> TaskKind {
    match t.kind() {
        proto::TaskKind::BlockOn => TaskKind::BlockOn,
        proto::TaskKind::Task | proto::TaskKind::Unspecified => TaskKind::Task,
    }
}

/// Findings from their report lines. A line this viewer cannot read (a kind
/// from a newer app) is left out.
pub fn findings(lines: &[String]) -> Vec<Finding> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Who the app is.
pub fn app(a: &proto::AppInfo) -> AppInfo {
    AppInfo {
        name: a.name.clone(),
        pid: a.pid,
        version: a.version.clone(),
        protocol: a.protocol_version,
        slow_poll_threshold: Duration::from_nanos(a.slow_poll_threshold_ns),
        source: AppSource::Taskscope,
        poll_timing_one_in: a.poll_timing_one_in,
    }
}

/// Runtime metrics (all zero when the app has none).
pub fn metrics(m: Option<&proto::RuntimeMetrics>) -> RuntimeMetrics {
    let Some(m) = m else {
        return RuntimeMetrics::default();
    };
    RuntimeMetrics {
        workers: m.workers,
        alive_tasks: m.alive_tasks,
        global_queue_depth: m.global_queue_depth,
        local_queue_depths: m.local_queue_depths.clone(),
        blocking_threads: m.blocking_threads,
        blocking_queue_depth: m.blocking_queue_depth,
        worker_busy: m
            .worker_busy_ns
            .iter()
            .map(|ns| Duration::from_nanos(*ns))
            .collect(),
        worker_polls: m.worker_polls.clone(),
    }
}

/// Drop counters.
pub fn dropped(d: Option<&proto::Dropped>) -> Dropped {
    d.map(|d| Dropped {
        findings: d.findings,
        updates: d.updates,
        app_events: 0,
    })
    .unwrap_or_default()
}

/// A task detail.
pub fn detail(d: &proto::TaskDetailResponse, id: u64) -> TaskDetail {
    TaskDetail {
        id: d.task.as_ref().map_or(id, |t| t.id),
        histogram: d
            .histogram
            .iter()
            .map(|b| (b.upper_bound_ns.map(Duration::from_nanos), b.count))
            .collect(),
        slow_polls: findings(&d.slow_polls),
        wakes: d.wakes,
        wakers: d.wakers,
        parent: d.parent,
        children: d.children.clone(),
        async_stack: d.async_stack.clone(),
        async_stack_frames: None,
    }
}

/// Where the task of a detail asked with `include_async_stack` waits: its
/// frames, or the app's reason why there are none as the note.
pub fn detail_stack(d: &proto::TaskDetailResponse) -> crate::client::stacks::AsyncStack {
    match &d.async_stack_frames {
        Some(frames) => async_stack(frames),
        None => crate::client::stacks::AsyncStack {
            note: Some(if d.async_stack_unavailable.is_empty() {
                "the app sent no async stack and did not say why".to_string()
            } else {
                d.async_stack_unavailable.clone()
            }),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_task_with_an_unknown_end_is_ended() {
        let t = proto::Task {
            id: 3,
            name: Some("n".into()),
            state: proto::TaskState::Idle as i32,
            end: proto::TaskEnd::Unknown as i32,
            kind: proto::TaskKind::BlockOn as i32,
            busy_ns: 1_500,
            ..Default::default()
        };
        assert_eq!(kind(&t), TaskKind::BlockOn);
        let m = task(t.clone());
        assert_eq!(m.ended, Some(TaskEnd::Completed));
        assert_eq!(m.busy, Duration::from_nanos(1_500));
        assert_eq!(m.name.as_deref(), Some("n"));
        let alive = proto::Task {
            end: proto::TaskEnd::Alive as i32,
            state: proto::TaskState::Running as i32,
            ..t
        };
        let alive = task(alive);
        assert_eq!(alive.ended, None);
        assert_eq!(alive.state, TaskState::Running);
    }

    #[test]
    fn findings_travel_as_report_lines() {
        let lines = vec![
            r#"{"v":1,"kind":"never_awaited","name":"f","created_at":"src/a.rs:1:1","time":"x","task":null}"#.to_string(),
            r#"{"v":1,"kind":"from_the_future","time":"x","task":null}"#.to_string(),
        ];
        let f = findings(&lines);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind.name(), "never_awaited");
    }
}
