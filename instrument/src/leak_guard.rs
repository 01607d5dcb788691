//! A leak guard for tests, Go's goleak for Tokio: fail a test that leaves tasks
//! running.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use crate::capture::poll;
use crate::detect::taskdump::collect::{path_trim, stacks};
use crate::detect::taskdump::dump::{dump_async, dump_blocking};
use crate::detect::taskdump::request::{Gate, Options};
use crate::detect::taskdump::stack::AsyncStack;
use crate::model::app_runtime;
use crate::model::task::TaskInfo;
use crate::session;
use taskscope_api::format;

/// How long [`LeakGuard::check`] waits by default for tasks to finish.
pub const DEFAULT_GRACE: Duration = Duration::from_millis(500);

/// Watches the tasks spawned from the moment it is made; [`LeakGuard::check`]
/// fails if any of them is still alive once the grace period has passed.
///
/// Tasks "spawned during the test" are those that did not exist when the guard
/// was made and, when the guard was made inside a task (as in `#[tokio::test]`),
/// that descend from that task — so tests running in parallel in one process do
/// not see each other's tasks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let _ts = taskscope::Builder::new().server_addr(taskscope::ServerAddr::Off).try_init();
/// let guard = taskscope::LeakGuard::new();
/// let worker = tokio::spawn(async { /* ... */ });
/// worker.await.unwrap();
/// guard.check().await.expect("no task leaked");
/// # }
/// ```
#[derive(Debug)]
pub struct LeakGuard {
    before: HashSet<u64>,
    root: Option<u64>,
    grace: Duration,
    ignore_names: Vec<String>,
    ignore_locations: Vec<String>,
}

/// The tasks a [`LeakGuard`] found still alive. Its `Display` is the message a
/// failing test shows: each task, and where it waits.
#[derive(Debug, Clone)]
pub struct Leaks {
    /// The leaked tasks, oldest first.
    pub tasks: Vec<TaskInfo>,
    /// How long the guard waited for them.
    pub waited: Duration,
    /// Where each task of `tasks` waits, in the same order: from one Tokio
    /// task dump taken when the check failed (with the crate's `taskdump`
    /// feature, on a runtime the policy lets taskscope dump); otherwise
    /// empty stacks whose note says why.
    pub stacks: Vec<AsyncStack>,
}

impl fmt::Display for Leaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} task(s) spawned during the test still alive after waiting {}:",
            self.tasks.len(),
            format::duration(self.waited)
        )?;
        // No stack at all, for one reason: say it once, at the end.
        let one_reason = self
            .stacks
            .first()
            .filter(|first| {
                self.stacks
                    .iter()
                    .all(|s| s.waiting_at.is_empty() && s.note == first.note)
            })
            .and_then(|first| first.note.clone());
        for (i, t) in self.tasks.iter().enumerate() {
            write!(
                f,
                "\n  task {} {} spawned at {}: {}, idle for {}, {} polls",
                t.id,
                t.name
                    .as_deref()
                    .map_or_else(|| "(unnamed)".to_string(), |n| format!("{n:?}")),
                t.spawned_at,
                t.state,
                format::duration(t.since_last_poll.unwrap_or(t.age)),
                t.polls
            )?;
            if one_reason.is_none()
                && let Some(stack) = self.stacks.get(i)
            {
                write_stack(f, stack)?;
            }
        }
        match one_reason {
            Some(why) => write!(f, "\n  (where each waits: {why})"),
            None if self.stacks.is_empty() => {
                write!(f, "\n  (where each waits: no task dump was taken)")
            }
            None => Ok(()),
        }
    }
}

/// `    waiting at tests/x.rs:26:` and the stack's lines under it.
fn write_stack(f: &mut fmt::Formatter<'_>, stack: &AsyncStack) -> fmt::Result {
    let suffix = stack.warning_suffix();
    match suffix.strip_prefix("; ") {
        Some(head) => write!(f, "\n    {head}:")?,
        None => write!(f, "\n    where it waits is not known:")?,
    }
    if stack.waiting_at.is_empty()
        && stack.note.as_deref() == Some(taskscope_api::waiting::NO_TOKIO_PRIMITIVE)
    {
        // The line above says it.
        return Ok(());
    }
    for line in stack.lines() {
        write!(f, "\n      {line}")?;
    }
    Ok(())
}

impl std::error::Error for Leaks {}

impl Default for LeakGuard {
    fn default() -> Self {
        LeakGuard::new()
    }
}

impl LeakGuard {
    /// Starts watching. Make it at the start of the test; taskscope must be started.
    pub fn new() -> LeakGuard {
        let before = crate::all_tasks().into_iter().map(|t| t.id).collect();
        LeakGuard {
            before,
            root: poll::with_current(|_, cell| cell.id),
            grace: DEFAULT_GRACE,
            ignore_names: Vec::new(),
            ignore_locations: Vec::new(),
        }
    }

    /// How long [`check`](Self::check) retries before failing (default 500 ms).
    pub fn grace(mut self, grace: Duration) -> LeakGuard {
        self.grace = grace;
        self
    }

    /// Ignores tasks with this name.
    pub fn ignore_name(mut self, name: impl Into<String>) -> LeakGuard {
        self.ignore_names.push(name.into());
        self
    }

    /// Ignores tasks spawned at a location starting with `prefix`
    /// (a file, `file:line`, or `file:line:col`).
    pub fn ignore_location(mut self, prefix: impl Into<String>) -> LeakGuard {
        self.ignore_locations.push(prefix.into());
        self
    }

    /// The tasks spawned since the guard was made that are alive now.
    pub fn leaked_now(&self) -> Vec<TaskInfo> {
        let live = crate::all_tasks();
        let mut parents: HashMap<u64, Option<u64>> =
            live.iter().map(|t| (t.id, t.parent)).collect();
        for f in crate::finished_tasks() {
            parents.entry(f.task.id).or_insert(f.task.parent);
        }
        live.into_iter()
            .filter(|t| !self.before.contains(&t.id))
            .filter(|t| Some(t.id) != self.root)
            .filter(|t| {
                self.root
                    .is_none_or(|root| descends_from(t.id, root, &parents))
            })
            .filter(|t| {
                !t.name
                    .as_deref()
                    .is_some_and(|n| self.ignore_names.iter().any(|i| i == n))
            })
            .filter(|t| {
                let at = t.spawned_at.to_string();
                !self
                    .ignore_locations
                    .iter()
                    .any(|p| at.starts_with(p.as_str()))
            })
            .collect()
    }

    /// Waits up to the grace period for the tasks spawned since the guard was
    /// made to finish; `Err` lists those still alive, with where each waits
    /// (one Tokio task dump of the runtime it runs in: see [`Leaks::stacks`]).
    pub async fn check(self) -> Result<(), Leaks> {
        let started = Instant::now();
        loop {
            let leaked = self.leaked_now();
            if leaked.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= self.grace {
                let waited = started.elapsed();
                let stacks = stacks_async(&leaked).await;
                return Err(Leaks {
                    tasks: leaked,
                    waited,
                    stacks,
                });
            }
            // Yield to the runtime so the tasks can finish, without a timer
            // (the test's runtime may not have one enabled).
            let until = Instant::now() + Duration::from_millis(10);
            while Instant::now() < until {
                yield_once().await;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Like [`check`](Self::check), for code outside the runtime (blocks the
    /// thread; the dump is of the runtime it is in, or else of the app's).
    pub fn check_blocking(self) -> Result<(), Leaks> {
        let started = Instant::now();
        loop {
            let leaked = self.leaked_now();
            if leaked.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= self.grace {
                let waited = started.elapsed();
                let stacks = stacks_blocking(&leaked);
                return Err(Leaks {
                    tasks: leaked,
                    waited,
                    stacks,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Panics with the list of leaked tasks if any is left after the grace period.
    pub async fn assert_no_leaks(self) {
        if let Err(leaks) = self.check().await {
            panic!("{leaks}");
        }
    }
}

/// Where each of `tasks` waits: one task dump of the runtime the caller is in.
async fn stacks_async(tasks: &[TaskInfo]) -> Vec<AsyncStack> {
    let Some(session) = session::global() else {
        return vec![AsyncStack::missing("taskscope is not started"); tasks.len()];
    };
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return vec![AsyncStack::missing("no task dump: not inside a Tokio runtime"); tasks.len()];
    };
    let gate = Gate {
        session,
        caller_key: poll::current_key(),
        asked: true,
    };
    let dumped = dump_async(
        &handle,
        session.settings.task_dumps,
        &Options::default(),
        &gate,
    )
    .await;
    in_order(session, tasks, dumped)
}

/// Like [`stacks_async`], blocking (of the runtime the caller is in, or the app's).
fn stacks_blocking(tasks: &[TaskInfo]) -> Vec<AsyncStack> {
    let Some(session) = session::global() else {
        return vec![AsyncStack::missing("taskscope is not started"); tasks.len()];
    };
    let Some(handle) = tokio::runtime::Handle::try_current()
        .ok()
        .or_else(|| app_runtime::handle().cloned())
    else {
        return vec![
            AsyncStack::missing("no task dump: taskscope has not seen the app's runtime");
            tasks.len()
        ];
    };
    let gate = Gate {
        session,
        caller_key: poll::current_key(),
        asked: true,
    };
    let dumped = dump_blocking(
        &handle,
        session.settings.task_dumps,
        &Options::default(),
        &gate,
    );
    in_order(session, tasks, dumped)
}

fn in_order(
    session: &crate::session::Session,
    tasks: &[TaskInfo],
    dumped: Result<crate::detect::taskdump::dumped::Dumped, crate::TaskDumpError>,
) -> Vec<AsyncStack> {
    match dumped {
        Ok(dumped) => {
            let want: HashSet<u64> = tasks.iter().map(|t| t.id).collect();
            let mut found = stacks(&dumped, Some(&want), &mut path_trim(session), None);
            tasks
                .iter()
                .map(|t| found.remove(&t.id).unwrap_or_default())
                .collect()
        }
        Err(err) => vec![AsyncStack::missing(err.to_string()); tasks.len()],
    }
}

fn descends_from(mut id: u64, root: u64, parents: &HashMap<u64, Option<u64>>) -> bool {
    for _ in 0..64 {
        match parents.get(&id).copied().flatten() {
            Some(p) if p == root => return true,
            Some(p) => id = p,
            None => return false,
        }
    }
    false
}

async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}
