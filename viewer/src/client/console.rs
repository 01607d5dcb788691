//! Apps that embed console-subscriber: tokio-console's protocol
//! (`rs.tokio.console.instrument.Instrument`, console-api's generated client)
//! read into the viewer's model. The viewer calls `taskscope.v1` first; when
//! the app answers UNIMPLEMENTED, it calls console's service: which one
//! answers says what the app speaks (a taskscope app serves both, and
//! `taskscope.v1` wins).
//!
//! What a console-subscriber app gives: its tasks (name, Tokio's task id,
//! kind, spawn location), their polls, busy and idle times, wakes and
//! wakers, and each task's poll-time histogram on request
//! (`WatchTaskDetails`). What it does not: stacks, findings (slow polls as
//! they happen, never-awaited futures, leaks, panics), parents, how a task
//! ended, runtime metrics.
//!
//! Slow polls come from console's own data: a task whose longest poll (its
//! histogram's max, or console-subscriber's highest outlier) reached
//! [`SLOW_POLL_THRESHOLD`] is marked slow. Only a task whose busy time
//! reached the threshold can have had such a poll, so only those histograms
//! are read ([`ConsoleState::candidates`]); the longest poll of another task
//! is a lower bound (its mean poll, or its poll in progress). `blocking`
//! tasks (`spawn_blocking`, and a multi-thread runtime's worker threads, each
//! one "poll" as long as the app's life) are threads, not futures: never
//! slow polls.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use console_api::field::{Name, Value};
use console_api::instrument::instrument_client::InstrumentClient;
use console_api::instrument::{InstrumentRequest, TaskDetailsRequest, Update as ConsoleUpdate};
use console_api::tasks::task_details::PollTimesHistogram;
use console_api::tasks::{DurationHistogram, Stats, Task as ConsoleTask};
use taskscope_api::ServerAddr;
use taskscope_api::console::{
    FIELD_KIND, FIELD_NAME, FIELD_TASK_ID, KIND_BLOCK_ON, KIND_BLOCKING, longest_poll, to_buckets,
};
use taskscope_api::histogram::poll_histogram_bucket_limit;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::client::auth::{AddToken, Token};
use crate::client::connect;
use crate::client::convert::TaskKind;
use crate::client::error::ClientError;
use crate::state::model::{AppInfo, AppSource, Task, TaskDetail, TaskEnd, TaskState};

/// A poll at least this long is a slow poll (taskscope's default threshold,
/// asyncio's `slow_callback_duration`).
pub const SLOW_POLL_THRESHOLD: Duration = Duration::from_millis(100);

/// A finished task is forgotten this long after it ended, by the app's
/// clock (as long as taskscope's own finished history keeps one by default;
/// console-subscriber keeps them an hour).
pub const KEEP_FINISHED: Duration = Duration::from_secs(60);

/// Largest message accepted from the app (console-subscriber keeps its first
/// update under tonic's default 4 MiB; this leaves room above it).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// A client of console's service, sending the token (if any) with every call.
pub type ConsoleClient = InstrumentClient<InterceptedService<Channel, AddToken>>;

/// A client of console's service at `addr`.
pub async fn connect(
    addr: &ServerAddr,
    token: Option<&Token>,
) -> Result<ConsoleClient, ClientError> {
    let channel = connect::endpoint(addr)?
        .connect()
        .await
        .map_err(|e| ClientError::from_transport(&addr.to_string(), &e))?;
    Ok(
        InstrumentClient::with_interceptor(channel, AddToken(token.cloned()))
            .max_decoding_message_size(MAX_MESSAGE),
    )
}

/// Who a console-subscriber app is, as far as its protocol says (it names
/// no process).
pub fn app_info() -> AppInfo {
    AppInfo {
        name: "console-subscriber app".into(),
        pid: 0,
        version: String::new(),
        protocol: 0,
        slow_poll_threshold: SLOW_POLL_THRESHOLD,
        source: AppSource::ConsoleSubscriber,
        poll_timing_one_in: 1,
    }
}

/// An error status from one of console's calls; UNIMPLEMENTED there means
/// neither taskscope's service nor console's answers.
pub fn from_status(addr: &str, status: &tonic::Status) -> ClientError {
    match status.code() {
        tonic::Code::Unimplemented => ClientError::NotTaskscope {
            addr: addr.to_string(),
        },
        _ => ClientError::from_status(addr, status),
    }
}

fn time(ts: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    SystemTime::try_from(ts?).ok()
}

fn duration(d: Option<prost_types::Duration>) -> Duration {
    d.and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default()
}

fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

/// What the viewer keeps of one of console's tasks.
#[derive(Clone, Debug)]
struct Kept {
    /// The id shown: Tokio's task id (the `task.id` field), else console's.
    shown: u64,
    name: Option<String>,
    kind: TaskKind,
    spawned_at: String,
    stats: Stats,
    /// The longest poll read from its histogram, and the busy time then.
    longest: Option<(Duration, Duration)>,
}

/// A task of a console-subscriber app, as its updates describe it.
pub struct ConsoleState {
    /// Field names of each metadata, for fields named by index.
    metadata: HashMap<u64, Vec<String>>,
    /// By console's task id (console-subscriber: a tracing span id).
    tasks: HashMap<u64, Kept>,
    /// Console's task id of each id shown.
    by_shown: HashMap<u64, u64>,
    /// The app's time of the last update.
    pub now: SystemTime,
    /// Events the app could not record, in all (each update says how many since the previous).
    pub dropped_events: u64,
    /// Updates applied.
    pub updates: u64,
}

impl Default for ConsoleState {
    fn default() -> Self {
        ConsoleState {
            metadata: HashMap::new(),
            tasks: HashMap::new(),
            by_shown: HashMap::new(),
            now: SystemTime::UNIX_EPOCH,
            dropped_events: 0,
            updates: 0,
        }
    }
}

/// What one update changed: console's ids of the tasks that are new or whose
/// stats changed.
#[derive(Debug, Default)]
pub struct Changed {
    /// Tasks new or changed.
    pub ids: HashSet<u64>,
}

fn str_name<'a>(field: &'a console_api::Field, names: Option<&'a Vec<String>>) -> Option<&'a str> {
    match field.name.as_ref()? {
        Name::StrName(name) => Some(name),
        Name::NameIdx(i) => names?.get(*i as usize).map(String::as_str),
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::DebugVal(s) | Value::StrVal(s) => Some(s.clone()),
        Value::U64Val(n) => Some(n.to_string()),
        Value::I64Val(n) => Some(n.to_string()),
        Value::BoolVal(b) => Some(b.to_string()),
    }
}

impl ConsoleState {
    /// Folds in one update; returns what changed.
    pub fn apply(&mut self, update: &ConsoleUpdate) -> Changed {
        self.updates += 1;
        if let Some(now) = time(update.now) {
            self.now = now;
        }
        if let Some(meta) = &update.new_metadata {
            for m in &meta.metadata {
                if let (Some(id), Some(data)) = (&m.id, &m.metadata) {
                    self.metadata.insert(id.id, data.field_names.clone());
                }
            }
        }
        let mut changed = Changed::default();
        let Some(tasks) = &update.task_update else {
            return changed;
        };
        self.dropped_events = self.dropped_events.saturating_add(tasks.dropped_events);
        for task in &tasks.new_tasks {
            let Some(id) = task.id.as_ref().map(|i| i.id) else {
                continue;
            };
            // As tokio-console: a new task comes with its stats, or not at all.
            let Some(stats) = tasks.stats_update.get(&id) else {
                continue;
            };
            let kept = self.kept(id, task, *stats);
            self.by_shown.insert(kept.shown, id);
            self.tasks.insert(id, kept);
            changed.ids.insert(id);
        }
        for (id, stats) in &tasks.stats_update {
            if let Some(kept) = self.tasks.get_mut(id) {
                kept.stats = *stats;
                changed.ids.insert(*id);
            }
        }
        self.forget_old();
        changed.ids.retain(|id| self.tasks.contains_key(id));
        changed
    }

    fn kept(&self, id: u64, task: &ConsoleTask, stats: Stats) -> Kept {
        let names = task
            .metadata
            .as_ref()
            .and_then(|m| self.metadata.get(&m.id));
        let mut kept = Kept {
            shown: id,
            name: None,
            kind: TaskKind::Task,
            spawned_at: "<unknown location>".into(),
            stats,
            longest: None,
        };
        for field in &task.fields {
            let (Some(name), Some(value)) = (str_name(field, names), field.value.as_ref()) else {
                continue;
            };
            match (name, value) {
                // Tokio's id, unless another task already shows it.
                (FIELD_TASK_ID, Value::U64Val(n))
                    if self.by_shown.get(n).is_none_or(|other| *other == id) =>
                {
                    kept.shown = *n;
                }
                (FIELD_NAME, v) => kept.name = text(v).filter(|s| !s.is_empty()),
                (FIELD_KIND, v) => {
                    kept.kind = match text(v).as_deref() {
                        Some(KIND_BLOCKING) => TaskKind::Blocking,
                        Some(KIND_BLOCK_ON) => TaskKind::BlockOn,
                        _ => TaskKind::Task,
                    }
                }
                // What old Tokio versions sent instead of a location.
                ("spawn.location", v) => {
                    if let Some(at) = text(v) {
                        kept.spawned_at = at;
                    }
                }
                _ => {}
            }
        }
        if let Some(loc) = &task.location
            && let Some(file) = &loc.file
        {
            kept.spawned_at = format!(
                "{file}:{}:{}",
                loc.line.unwrap_or(0),
                loc.column.unwrap_or(0)
            );
        }
        kept
    }

    /// Forgets finished tasks older than [`KEEP_FINISHED`] by the app's clock.
    fn forget_old(&mut self) {
        let now = self.now;
        let by_shown = &mut self.by_shown;
        self.tasks.retain(|_, k| {
            let keep = time(k.stats.dropped_at).is_none_or(|at| since(now, at) < KEEP_FINISHED);
            if !keep {
                by_shown.remove(&k.shown);
            }
            keep
        });
    }

    /// Tasks known.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task is known.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Console's id of the task shown as `shown`.
    pub fn console_id(&self, shown: u64) -> Option<u64> {
        self.by_shown.get(&shown).copied()
    }

    /// Whether task `id` (console's) is running: a poll started after the last ended.
    fn running(stats: &Stats) -> bool {
        let Some(p) = stats.poll_stats.as_ref() else {
            return false;
        };
        stats.dropped_at.is_none()
            && match (time(p.last_poll_started), time(p.last_poll_ended)) {
                (Some(started), Some(ended)) => started > ended,
                (Some(_), None) => true,
                _ => false,
            }
    }

    /// Busy time now: completed polls, plus the poll in progress.
    fn busy(&self, stats: &Stats) -> Duration {
        let p = stats.poll_stats.unwrap_or_default();
        let mut busy = duration(p.busy_time);
        if Self::running(stats)
            && let Some(started) = time(p.last_poll_started)
        {
            busy += since(self.now, started);
        }
        busy
    }

    /// The tasks whose histogram should be read, most promising first, at
    /// most `max`: not blocking; busy for at least `threshold`; not known
    /// slow yet, and not read since their busy time last grew by `threshold`
    /// (a poll of `threshold` or more adds at least that much).
    pub fn candidates(&self, threshold: Duration, max: usize) -> Vec<u64> {
        let mut found: Vec<(Duration, u64)> = self
            .tasks
            .iter()
            .filter(|(_, k)| k.kind != TaskKind::Blocking)
            .filter_map(|(id, k)| {
                let busy = duration(k.stats.poll_stats.unwrap_or_default().busy_time);
                let due = busy >= threshold
                    && match k.longest {
                        None => true,
                        Some((longest, _)) if longest >= threshold => false,
                        Some((_, read_at)) => busy >= read_at + threshold,
                    };
                due.then_some((busy, *id))
            })
            .collect();
        found.sort_unstable_by(|a, b| b.cmp(a));
        found.into_iter().take(max).map(|(_, id)| id).collect()
    }

    /// Notes the longest poll read from task `id`'s histogram.
    pub fn set_longest(&mut self, id: u64, longest: Duration) {
        if let Some(k) = self.tasks.get_mut(&id) {
            let busy = duration(k.stats.poll_stats.unwrap_or_default().busy_time);
            k.longest = Some((longest, busy));
        }
    }

    /// Task `id` (console's) in the viewer's model, at the app's time of the
    /// last update.
    pub fn task(&self, id: u64) -> Option<(Task, TaskKind)> {
        let k = self.tasks.get(&id)?;
        let s = &k.stats;
        let p = s.poll_stats.unwrap_or_default();
        let running = Self::running(s);
        let ended = time(s.dropped_at);
        let end = ended.unwrap_or(self.now);
        let age = time(s.created_at).map_or(Duration::ZERO, |c| since(end, c));
        let busy = self.busy(s);
        let scheduled = duration(s.scheduled_time);
        let last_wake = time(s.last_wake);
        let started = time(p.last_poll_started);
        let state = if running {
            TaskState::Running
        } else if last_wake.is_some() && last_wake > started {
            TaskState::Scheduled
        } else {
            TaskState::Idle
        };
        let polls_done = p.polls.saturating_sub(u64::from(running));
        let in_progress = if running {
            started.map_or(Duration::ZERO, |s| since(self.now, s))
        } else {
            Duration::ZERO
        };
        let max_poll = match (k.kind, k.longest) {
            // A thread, not a future: its "poll" is its whole run.
            (TaskKind::Blocking, _) => Duration::ZERO,
            (_, Some((longest, _))) => longest.max(in_progress),
            (_, None) => {
                let mean = u32::try_from(polls_done)
                    .ok()
                    .filter(|n| *n > 0)
                    .map_or(Duration::ZERO, |n| duration(p.busy_time) / n);
                mean.max(in_progress)
            }
        };
        let task = Task {
            id: k.shown,
            name: k.name.clone(),
            state,
            ended: ended.map(|_| TaskEnd::Completed),
            spawned_at: k.spawned_at.clone(),
            parent: None,
            age,
            polls: p.polls,
            busy: busy.min(age),
            idle: age.saturating_sub(busy + scheduled),
            since_last_poll: time(p.last_poll_ended).map(|e| since(end, e)),
            max_poll,
            wakes: s.wakes,
            wakers: s.waker_clones as i64 - s.waker_drops as i64,
        };
        Some((task, k.kind))
    }

    /// Every task known, live and finished, by the id shown.
    pub fn tasks(&self) -> Vec<(Task, TaskKind)> {
        let mut all: Vec<_> = self.tasks.keys().filter_map(|id| self.task(*id)).collect();
        all.sort_unstable_by_key(|(t, _)| t.id);
        all
    }

    /// The detail of task `id` (console's) from its `TaskDetails`.
    pub fn detail(&self, id: u64, histogram: Option<&DurationHistogram>) -> Option<TaskDetail> {
        let (task, _) = self.task(id)?;
        let buckets = histogram.and_then(to_buckets).unwrap_or_default();
        Some(TaskDetail {
            id: task.id,
            histogram: buckets
                .iter()
                .enumerate()
                .map(|(k, n)| {
                    (
                        poll_histogram_bucket_limit(k).map(Duration::from_nanos),
                        u64::from(*n),
                    )
                })
                .collect(),
            slow_polls: Vec::new(),
            wakes: task.wakes,
            wakers: task.wakers,
            parent: None,
            children: Vec::new(),
            async_stack: None,
            async_stack_frames: None,
        })
    }
}

/// The poll-time histogram of a `TaskDetails`, when it has one.
pub fn poll_histogram(details: &console_api::tasks::TaskDetails) -> Option<&DurationHistogram> {
    match details.poll_times_histogram.as_ref()? {
        PollTimesHistogram::Histogram(h) => Some(h),
        // What console-subscriber sent before 0.1.9: no outlier counts; read the same way.
        PollTimesHistogram::LegacyHistogram(_) => None,
    }
}

/// The first `TaskDetails` of task `id` (console's), its stream dropped at once.
pub async fn details(
    client: &mut ConsoleClient,
    shown: &str,
    id: u64,
) -> Result<Option<console_api::tasks::TaskDetails>, ClientError> {
    let request = TaskDetailsRequest {
        id: Some(console_api::Id { id }),
    };
    let mut stream = client
        .watch_task_details(request)
        .await
        .map_err(|s| from_status(shown, &s))?
        .into_inner();
    stream.message().await.map_err(|s| from_status(shown, &s))
}

/// Reads the histograms of `state`'s candidates (at most `max`) and notes
/// their longest polls; returns the tasks whose longest poll changed. A task
/// that is gone meanwhile (NOT_FOUND) is skipped.
pub async fn read_longest(
    client: &mut ConsoleClient,
    shown: &str,
    state: &mut ConsoleState,
    max: usize,
) -> Result<Vec<u64>, ClientError> {
    let mut read = Vec::new();
    for id in state.candidates(SLOW_POLL_THRESHOLD, max) {
        let details = match details(client, shown, id).await {
            Ok(details) => details,
            Err(ClientError::NotFound { .. }) => continue,
            Err(err) => return Err(err),
        };
        let longest = details
            .as_ref()
            .and_then(poll_histogram)
            .and_then(longest_poll);
        if let Some(longest) = longest {
            state.set_longest(id, longest);
            read.push(id);
        }
    }
    Ok(read)
}

/// Every live task of the console-subscriber app at `addr`, once, and the
/// app's time then: its first update (the whole state), and the histograms
/// of the tasks busy for at least [`SLOW_POLL_THRESHOLD`].
pub async fn live_tasks(
    addr: &ServerAddr,
    token: Option<&Token>,
) -> Result<(Vec<(Task, TaskKind)>, SystemTime), ClientError> {
    let shown = addr.to_string();
    let mut client = connect(addr, token).await?;
    let mut stream = client
        .watch_updates(InstrumentRequest {})
        .await
        .map_err(|s| from_status(&shown, &s))?
        .into_inner();
    let first = stream
        .message()
        .await
        .map_err(|s| from_status(&shown, &s))?
        .ok_or_else(|| ClientError::Lost {
            addr: shown.clone(),
            detail: "the app ended the stream before its first update".into(),
        })?;
    drop(stream);
    let mut state = ConsoleState::default();
    state.apply(&first);
    read_longest(&mut client, &shown, &mut state, usize::MAX).await?;
    let tasks = state
        .tasks()
        .into_iter()
        .filter(|(t, _)| t.ended.is_none())
        .collect();
    Ok((tasks, state.now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use console_api::instrument::Update;
    use console_api::tasks::TaskUpdate;
    use console_api::{Field, Location, MetaId, RegisterMetadata, register_metadata};

    fn ts(t: SystemTime) -> Option<prost_types::Timestamp> {
        Some(t.into())
    }

    fn field(name: &str, value: Value) -> Field {
        Field {
            name: Some(Name::StrName(name.into())),
            value: Some(value),
            metadata_id: Some(MetaId { id: 1 }),
        }
    }

    fn task(id: u64, tokio_id: u64, name: &str, kind: &str, line: u32) -> ConsoleTask {
        ConsoleTask {
            id: Some(console_api::Id { id }),
            metadata: Some(MetaId { id: 1 }),
            kind: 0,
            fields: vec![
                field(FIELD_NAME, Value::DebugVal(name.into())),
                field(FIELD_TASK_ID, Value::U64Val(tokio_id)),
                field(FIELD_KIND, Value::DebugVal(kind.into())),
            ],
            parents: vec![],
            location: Some(Location {
                file: Some("src/main.rs".into()),
                module_path: None,
                line: Some(line),
                column: Some(5),
            }),
        }
    }

    fn stats(t0: SystemTime, polls: u64, busy: Duration, running: bool) -> Stats {
        let start = t0 + Duration::from_secs(1);
        let end = if running {
            t0 + Duration::from_millis(500)
        } else {
            start + busy
        };
        Stats {
            created_at: ts(t0),
            dropped_at: None,
            wakes: 3,
            waker_clones: 2,
            waker_drops: 1,
            last_wake: None,
            poll_stats: Some(console_api::PollStats {
                polls,
                first_poll: ts(t0),
                last_poll_started: ts(start),
                last_poll_ended: ts(end),
                busy_time: busy.try_into().ok(),
            }),
            self_wakes: 0,
            scheduled_time: None,
        }
    }

    fn update(now: SystemTime, tasks: Vec<ConsoleTask>, stats: Vec<(u64, Stats)>) -> Update {
        Update {
            now: ts(now),
            task_update: Some(TaskUpdate {
                new_tasks: tasks,
                stats_update: stats.into_iter().collect(),
                dropped_events: 2,
            }),
            resource_update: None,
            async_op_update: None,
            new_metadata: Some(RegisterMetadata {
                metadata: vec![register_metadata::NewMetadata {
                    id: Some(MetaId { id: 1 }),
                    metadata: Some(console_api::Metadata::default()),
                }],
            }),
        }
    }

    #[test]
    fn tasks_as_the_viewer_shows_them() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let now = t0 + Duration::from_secs(3);
        let mut state = ConsoleState::default();
        let changed = state.apply(&update(
            now,
            vec![
                task(2251799813685249, 7, "handler", "task", 10),
                task(2251799813685250, 8, "", "blocking", 20),
                task(2251799813685251, 9, "worker", "task", 30),
                task(2251799813685252, 10, "orphan", "task", 40),
            ],
            vec![
                (
                    2251799813685249,
                    stats(t0, 4, Duration::from_millis(260), false),
                ),
                (2251799813685250, stats(t0, 1, Duration::ZERO, true)),
                (
                    2251799813685251,
                    stats(t0, 9, Duration::from_millis(90), false),
                ),
            ],
        ));
        assert_eq!(changed.ids.len(), 3, "a task without its stats is left out");
        assert_eq!(state.dropped_events, 2);
        let tasks = state.tasks();
        let ids: Vec<u64> = tasks.iter().map(|(t, _)| t.id).collect();
        assert_eq!(ids, [7, 8, 9], "Tokio's ids are shown");
        let (handler, kind) = &tasks[0];
        assert_eq!(kind, &TaskKind::Task);
        assert_eq!(handler.name.as_deref(), Some("handler"));
        assert_eq!(handler.spawned_at, "src/main.rs:10:5");
        assert_eq!(handler.state, TaskState::Idle);
        assert_eq!(handler.polls, 4);
        assert_eq!(handler.busy, Duration::from_millis(260));
        assert_eq!(handler.age, Duration::from_secs(3));
        assert_eq!(handler.wakers, 1);
        assert_eq!(
            handler.max_poll,
            Duration::from_millis(65),
            "the mean, a lower bound"
        );

        // The blocking worker thread: running for the app's life, never slow.
        let (worker, kind) = &tasks[1];
        assert_eq!(kind, &TaskKind::Blocking);
        assert_eq!(worker.name, None, "an empty name is no name");
        assert_eq!(worker.state, TaskState::Running);
        assert_eq!(
            worker.busy,
            Duration::from_millis(2_000),
            "busy since its poll began"
        );
        assert_eq!(worker.max_poll, Duration::ZERO);

        // Only the handler can have had a 100 ms poll.
        assert_eq!(
            state.candidates(SLOW_POLL_THRESHOLD, 10),
            [2251799813685249]
        );
        state.set_longest(2251799813685249, Duration::from_millis(250));
        assert_eq!(
            state.task(2251799813685249).unwrap().0.max_poll,
            Duration::from_millis(250)
        );
        assert!(
            state.candidates(SLOW_POLL_THRESHOLD, 10).is_empty(),
            "known slow"
        );
        assert_eq!(state.console_id(7), Some(2251799813685249));

        // It ends; a minute later it is forgotten.
        let mut ended = stats(t0, 5, Duration::from_millis(260), false);
        ended.dropped_at = ts(now);
        state.apply(&update(now, vec![], vec![(2251799813685249, ended)]));
        let (handler, _) = state.task(2251799813685249).unwrap();
        assert_eq!(handler.ended, Some(TaskEnd::Completed));
        state.apply(&update(now + KEEP_FINISHED, vec![], vec![]));
        assert!(state.task(2251799813685249).is_none());
        assert_eq!(state.console_id(7), None);
        assert_eq!(state.len(), 2);
    }

    #[test]
    fn a_task_read_below_the_threshold_is_read_again_once_busy_grew_by_it() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut state = ConsoleState::default();
        let id = 1;
        state.apply(&update(
            t0,
            vec![task(id, 1, "t", "task", 1)],
            vec![(id, stats(t0, 30, Duration::from_millis(150), false))],
        ));
        assert_eq!(state.candidates(SLOW_POLL_THRESHOLD, 10), [id]);
        state.set_longest(id, Duration::from_millis(20));
        assert!(state.candidates(SLOW_POLL_THRESHOLD, 10).is_empty());
        state.apply(&update(
            t0,
            vec![],
            vec![(id, stats(t0, 40, Duration::from_millis(249), false))],
        ));
        assert!(state.candidates(SLOW_POLL_THRESHOLD, 10).is_empty());
        state.apply(&update(
            t0,
            vec![],
            vec![(id, stats(t0, 41, Duration::from_millis(251), false))],
        ));
        assert_eq!(state.candidates(SLOW_POLL_THRESHOLD, 10), [id]);
    }
}
