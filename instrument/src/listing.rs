//! `all_tasks()`, `finished_tasks()` and `dump()`: the task listing, in the
//! spirit of asyncio's `all_tasks()` and `python -m asyncio ps`.

use std::io::Write;

use taskscope_api::{Finding, format};

use crate::model::task::{FinishedTask, TaskInfo};
use crate::pipeline::PipelineStats;
use crate::session;

/// Every live task of the app, ordered by id. Empty when taskscope is not started.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let _guard = taskscope::init();
/// for task in taskscope::all_tasks() {
///     println!("{} {:?} {} at {}", task.id, task.name, task.state, task.spawned_at);
/// }
/// # }
/// ```
pub fn all_tasks() -> Vec<TaskInfo> {
    session::global()
        .map(|s| s.registry.snapshot())
        .unwrap_or_default()
}

/// The bounded history of finished tasks, oldest first, with how each ended.
pub fn finished_tasks() -> Vec<FinishedTask> {
    session::global()
        .map(|s| s.registry.finished())
        .unwrap_or_default()
}

/// The most recent findings (up to 1,000), oldest first, once the sinks have seen them.
pub fn findings() -> Vec<Finding> {
    session::global()
        .map(|s| s.pipeline.recent())
        .unwrap_or_default()
}

/// Counters of the findings pipeline: produced, dropped, handled, written.
pub fn pipeline_stats() -> PipelineStats {
    session::global()
        .map(|s| s.pipeline.stats())
        .unwrap_or_default()
}

/// Waits (at most `timeout`) until every finding accepted so far has reached
/// the log and the report file. Returns false on timeout.
pub fn flush(timeout: std::time::Duration) -> bool {
    session::global().is_none_or(|s| s.flush(timeout))
}

/// Prints [`all_tasks`] to stdout as an aligned table.
pub fn dump() {
    let text = format_tasks(&all_tasks());
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// The table [`dump`] prints: one row a task, with a header.
///
/// ```
/// let table = taskscope::format_tasks(&[]);
/// assert!(table.starts_with("ID"));
/// ```
pub fn format_tasks(tasks: &[TaskInfo]) -> String {
    let locations: Vec<String> = tasks.iter().map(|t| t.spawned_at.to_string()).collect();
    format::task_table(tasks.iter().zip(&locations).map(|(t, at)| format::TaskRow {
        id: t.id,
        name: t.name.as_deref().unwrap_or("-"),
        state: t.state.as_str(),
        spawned_at: at,
        parent: t.parent,
        age: t.age,
        polls: t.polls,
        busy: t.busy,
        idle: t.idle,
        since_last_poll: t.since_last_poll,
        wakes: t.wakes,
    }))
}
