//! The viewer's picture of a remote app: plain data, filled by the client from
//! the wire protocol, read by the views. This file is the contract between the
//! client (which produces [`Update`]s) and the state and views (which consume them).

use std::time::{Duration, SystemTime};

pub use taskscope_api::{Finding, FindingKind, TaskEnd, TaskState};

/// One task as the viewer knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// Tokio task id.
    pub id: u64,
    /// Name given at spawn, if any.
    pub name: Option<String>,
    /// Running, scheduled or idle while alive.
    pub state: TaskState,
    /// How it ended, once it has.
    pub ended: Option<TaskEnd>,
    /// `path:line:col` of the spawn.
    pub spawned_at: String,
    /// The task that spawned it.
    pub parent: Option<u64>,
    /// Age when last updated.
    pub age: Duration,
    /// Number of polls.
    pub polls: u64,
    /// Time inside polls.
    pub busy: Duration,
    /// Time alive but not polled.
    pub idle: Duration,
    /// Time since the last poll ended (None before the first).
    pub since_last_poll: Option<Duration>,
    /// Longest poll.
    pub max_poll: Duration,
    /// Wakes (0 when the app uses the runtime-hooks capture).
    pub wakes: u64,
    /// Wakers alive.
    pub wakers: i64,
}

/// Tokio runtime metrics of the app.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimeMetrics {
    /// Worker threads.
    pub workers: u64,
    /// Tasks alive in the runtime.
    pub alive_tasks: u64,
    /// Tasks in the global (injection) queue.
    pub global_queue_depth: u64,
    /// Tasks in each worker's local queue.
    pub local_queue_depths: Vec<u64>,
    /// Threads in the blocking pool.
    pub blocking_threads: u64,
    /// Tasks waiting for a blocking thread.
    pub blocking_queue_depth: u64,
    /// Time each worker has been busy since the runtime started, by worker
    /// index (empty when the app does not send it).
    pub worker_busy: Vec<Duration>,
    /// Polls each worker has run since the runtime started, by worker index
    /// (empty when the app does not send it).
    pub worker_polls: Vec<u64>,
}

/// Counts of things the app or its server had to drop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Findings dropped because the findings queue was full.
    pub findings: u64,
    /// Updates this viewer missed (its queue on the server was full).
    pub updates: u64,
    /// Events a console-subscriber app could not record (its buffer was
    /// full): what it shows of its tasks is missing some of their activity.
    pub app_events: u64,
}

/// Which protocol the app speaks, and so what the viewer can show of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AppSource {
    /// taskscope's own (`taskscope.v1`): everything.
    #[default]
    Taskscope,
    /// tokio-console's, from console-subscriber: tasks, polls, wakers and
    /// poll histograms; no stacks, no findings, no runtime metrics.
    ConsoleSubscriber,
}

/// Who the app is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppInfo {
    /// Process name.
    pub name: String,
    /// Process id.
    pub pid: u32,
    /// taskscope version in the app.
    pub version: String,
    /// Protocol version spoken.
    pub protocol: u32,
    /// Slow-poll threshold in force.
    pub slow_poll_threshold: Duration,
    /// Which protocol it speaks.
    pub source: AppSource,
    /// One short poll in this many is timed (and counts this many times):
    /// busy times and poll histograms are estimates. 0 or 1: every poll is timed.
    pub poll_timing_one_in: u32,
}

impl AppInfo {
    /// Busy times and poll histograms are estimates from sampled polls.
    pub fn timing_sampled(&self) -> bool {
        self.poll_timing_one_in > 1
    }
}

/// Everything about one task, asked for when the user opens it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskDetail {
    /// The task.
    pub id: u64,
    /// Poll-duration histogram: `(upper bound, count)`; `None` = no upper bound.
    pub histogram: Vec<(Option<Duration>, u64)>,
    /// The task's slow polls (with stacks), newest last.
    pub slow_polls: Vec<Finding>,
    /// Wakes and wakers alive.
    pub wakes: u64,
    /// Wakers alive.
    pub wakers: i64,
    /// Parent task.
    pub parent: Option<u64>,
    /// Child tasks alive.
    pub children: Vec<u64>,
    /// Tokio task dump of the task, when the app enabled it.
    pub async_stack: Option<String>,
    /// Where the task waits, when it was asked for
    /// ([`Request::DetailWithStack`]): its frames, or a note saying why there
    /// are none; `None` when not asked for.
    pub async_stack_frames: Option<crate::client::stacks::AsyncStack>,
}

/// The state of the connection to the app, always shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Trying to connect (attempt number, from 1).
    Connecting {
        /// Address, as given.
        addr: String,
        /// Attempt number.
        attempt: u32,
    },
    /// Receiving updates.
    Connected {
        /// Address, as given.
        addr: String,
    },
    /// Lost or refused; retrying after `retry_in`.
    Disconnected {
        /// Address, as given.
        addr: String,
        /// Why, in words a person understands ("connection refused: is the app running with TASKSCOPE_ADDR=...?").
        reason: String,
        /// Until the next attempt.
        retry_in: Duration,
    },
    /// The server is not a taskscope server, or speaks an incompatible protocol. No retry.
    Incompatible {
        /// Address, as given.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// What the client hands to the state.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// Full picture, on (re)connect: replaces everything.
    Snapshot {
        /// The app.
        app: AppInfo,
        /// Live tasks.
        tasks: Vec<Task>,
        /// Recently finished tasks (with `ended` set).
        finished: Vec<Task>,
        /// Recent findings, oldest first.
        findings: Vec<Finding>,
        /// Runtime metrics.
        metrics: RuntimeMetrics,
        /// Drop counters.
        dropped: Dropped,
        /// When the server took it.
        at: SystemTime,
    },
    /// Changes since the previous update.
    Delta {
        /// New or changed live tasks (whole records).
        changed: Vec<Task>,
        /// Tasks that ended since (whole records with `ended` set).
        finished: Vec<Task>,
        /// New findings, oldest first.
        findings: Vec<Finding>,
        /// Runtime metrics now.
        metrics: RuntimeMetrics,
        /// Drop counters now.
        dropped: Dropped,
        /// When the server took it.
        at: SystemTime,
    },
    /// Answer to a detail request.
    Detail(TaskDetail),
    /// The connection changed.
    Connection(Connection),
}

/// What the viewer asks of the client (and through it, of the app).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Send the [`TaskDetail`] of this task (answered with [`Update::Detail`]).
    /// Asked when the user opens a task, then about once a second while its
    /// detail stays on screen.
    Detail(u64),
    /// The same with where the task waits ([`TaskDetail::async_stack_frames`]):
    /// a Tokio task dump, which pauses the app's runtime, so asked only when
    /// the user opens the task or asks again (`s`).
    DetailWithStack(u64),
}
