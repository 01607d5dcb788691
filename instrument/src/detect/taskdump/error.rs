//! Why a task dump was not taken, or gave no result: [`TaskDumpError`].

use std::fmt;
use std::time::Duration;

/// What a task dump needs that this build lacks, in one line that says how
/// to get it; `None` when task dumps are compiled in.
pub(crate) fn not_built() -> Option<&'static str> {
    if cfg!(taskscope_taskdump) {
        None
    } else if !cfg!(feature = "taskdump") {
        Some(
            "taskscope was built without its `taskdump` feature: add `features = [\"taskdump\"]` \
             to the taskscope dependency (Linux x86_64 or aarch64, with --cfg tokio_unstable) \
             to see where each task waits",
        )
    } else if !cfg!(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )) {
        Some("Tokio task dumps are only available on Linux x86_64 and aarch64")
    } else {
        Some(
            "taskscope's `taskdump` feature needs --cfg tokio_unstable as well \
             (RUSTFLAGS=\"--cfg tokio_unstable\" or the same in .cargo/config.toml)",
        )
    }
}

/// A thread inside one poll, as a task dump's refusal or timeout names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusyWorker {
    /// The thread's name (`tokio-runtime-worker`, `main`, …).
    pub thread: String,
    /// The task it is polling (Tokio's task id).
    pub task: u64,
    /// How long that poll had lasted.
    pub for_: Duration,
}

impl fmt::Display for BusyWorker {
    /// `worker tokio-runtime-worker has been in a poll of task 104 for 0.100 s`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "worker {} has been in a poll of task {} for {:.3} s",
            self.thread,
            self.task,
            self.for_.as_secs_f64()
        )
    }
}

fn list(workers: &[BusyWorker]) -> String {
    workers
        .iter()
        .map(BusyWorker::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why taskscope took no task dump, or got no result from one.
///
/// ```
/// let err = taskscope::TaskDumpError::AlreadyRunning { for_: std::time::Duration::from_millis(1500) };
/// assert_eq!(err.to_string(), "another task dump has been running for 1.500 s");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskDumpError {
    /// Task dumps are not compiled in: the message says what is missing
    /// (the `taskdump` feature, the platform, `--cfg tokio_unstable`).
    #[error("{}", not_built().unwrap_or("task dumps are compiled in"))]
    NotBuilt,
    /// `TASKSCOPE_TASKDUMP=off`.
    #[error("task dumps are off (TASKSCOPE_TASKDUMP=off)")]
    Off,
    /// The runtime is a multi-thread one, and the policy allows dumps of
    /// current-thread runtimes only (the default).
    #[error(
        "no task dump of a multi-thread runtime: with Tokio 1.54 a dump can leave such a runtime \
         stuck for good, so taskscope takes them only with TASKSCOPE_TASKDUMP=multi_thread"
    )]
    MultiThreadNotAllowed,
    /// A multi-thread runtime, with `TASKSCOPE_TASKDUMP=multi_thread`, and a
    /// dump taskscope would take on its own (at shutdown, for a leak
    /// finding): those it takes of current-thread runtimes only.
    #[error(
        "no task dump of a multi-thread runtime unless a person asks for one: with Tokio 1.54 a \
         dump can leave such a runtime stuck, or keep the app from exiting, so even with \
         TASKSCOPE_TASKDUMP=multi_thread taskscope takes them only when asked (dump --stacks, the \
         Detail view, task_stacks(), a failing LeakGuard), never at shutdown or for leak findings"
    )]
    MultiThreadOnlyWhenAsked,
    /// taskscope is not started, or no runtime is known to dump.
    #[error("no runtime to dump: {0}")]
    NoRuntime(&'static str),
    /// Another dump is under way (possibly one whose caller gave up waiting).
    #[error("another task dump has been running for {:.3} s", for_.as_secs_f64())]
    AlreadyRunning {
        /// Since when.
        for_: Duration,
    },
    /// Not started: a thread has been inside one poll for too long, and
    /// would not stop for the dump.
    #[error("task dump not started: {}", list(workers))]
    WorkerBusy {
        /// The threads inside a poll, longest first.
        workers: Vec<BusyWorker>,
    },
    /// Not started: more tasks queued on the workers of a multi-thread
    /// runtime than Tokio 1.54's dump can gather without spinning forever.
    #[error(
        "task dump not started: {queued} tasks queued on the workers (Tokio 1.54's dump cannot \
         gather that many)"
    )]
    QueuesTooFull {
        /// Tasks in the workers' local queues.
        queued: usize,
    },
    /// Started, but no result within the deadline: the dump goes on without
    /// its caller and its result is dropped.
    #[error(
        "the task dump gave no result within {:.3} s{}",
        after.as_secs_f64(),
        if unanswered.is_empty() { String::new() } else { format!("; not answering: {}", list(unanswered)) }
    )]
    TimedOut {
        /// How long the caller waited.
        after: Duration,
        /// The threads inside a poll when the caller gave up.
        unanswered: Vec<BusyWorker>,
    },
    /// The caller is a worker of that multi-thread runtime: blocking it to
    /// wait would keep it from the dump (use the async form).
    #[error("a worker thread cannot wait for a dump of its own runtime (use the async form)")]
    WouldBlockWorker,
}
