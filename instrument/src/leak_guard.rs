//! A leak guard for tests, Go's goleak for Tokio: fail a test that leaves tasks
//! running.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use crate::capture::poll;
use crate::model::task::TaskInfo;
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
/// failing test shows.
#[derive(Debug, Clone)]
pub struct Leaks {
    /// The leaked tasks, oldest first.
    pub tasks: Vec<TaskInfo>,
    /// How long the guard waited for them.
    pub waited: Duration,
}

impl fmt::Display for Leaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} task(s) spawned during the test still alive after waiting {}:",
            self.tasks.len(),
            format::duration(self.waited)
        )?;
        for t in &self.tasks {
            writeln!(
                f,
                "  task {} {} spawned at {}: {}, idle for {}, {} polls",
                t.id,
                t.name
                    .as_deref()
                    .map_or_else(|| "(unnamed)".to_string(), |n| format!("{n:?}")),
                t.spawned_at,
                t.state,
                format::duration(t.since_last_poll.unwrap_or(t.age)),
                t.polls
            )?;
        }
        write!(
            f,
            "  (where each waits: Tokio's task dump needs --cfg tokio_taskdump, not available here)"
        )
    }
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
    /// made to finish; `Err` lists those still alive.
    pub async fn check(self) -> Result<(), Leaks> {
        let started = Instant::now();
        loop {
            let leaked = self.leaked_now();
            if leaked.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= self.grace {
                return Err(Leaks {
                    tasks: leaked,
                    waited: started.elapsed(),
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

    /// Like [`check`](Self::check), for code outside the runtime (blocks the thread).
    pub fn check_blocking(self) -> Result<(), Leaks> {
        let started = Instant::now();
        loop {
            let leaked = self.leaked_now();
            if leaked.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= self.grace {
                return Err(Leaks {
                    tasks: leaked,
                    waited: started.elapsed(),
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
