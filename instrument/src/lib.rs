//! # taskscope
//!
//! asyncio's debug mode and `asyncio.all_tasks()` for Tokio. Embed it with one
//! line; it records every task (spawn, polls, wakes, end), warns about polls
//! longer than 100 ms in asyncio's words, lists live and finished tasks, and
//! appends its findings to a JSON-lines report file.
//!
//! ```no_run
//! #[tokio::main]
//! async fn main() {
//!     let _guard = taskscope::init();
//!     tokio::spawn(async {
//!         std::thread::sleep(std::time::Duration::from_millis(250)); // blocks a worker
//!     })
//!     .await
//!     .unwrap();
//!     // stderr: WARN taskscope: Executing task 2 (spawned at src/main.rs:4:5) took 0.250 seconds
//! }
//! ```
//!
//! ## Two ways to see tasks
//!
//! Both need the app built with `RUSTFLAGS="--cfg tokio_unstable"` (or the same
//! in `.cargo/config.toml`): Tokio compiles its task hooks and its tracing
//! instrumentation only under that flag. Without it taskscope still builds, but
//! sees no task.
//!
//! | | [`init`] / [`Builder::layer`] (tracing) | [`Builder::install_on`] (task hooks) |
//! |---|---|---|
//! | works with `#[tokio::main]` | yes | no: you build the runtime |
//! | task names | yes | no (null) |
//! | wakes, scheduled vs idle, lost wakers | yes | no (0, idle) |
//! | spawn location, parent, polls, busy/idle, slow polls | yes | yes |
//! | per-poll cost | [`init`]: a table lookup from taskscope's own subscriber, plus Tokio's span enter/exit and one event per wake; [`Builder::layer`]: the same through `tracing-subscriber`'s registry, about 2.7× the overhead | one table lookup |
//!
//! Use one of them per process, not both.
//!
//! ## The hot path
//!
//! Per poll: two clock reads (the CPU's time-stamp counter, read inline, where
//! it is invariant; the monotonic clock otherwise), a lock-free lookup of the
//! task's record in a fixed table, and relaxed atomic loads and stores on that
//! record, which only the polling thread writes. No lock, no allocation, no
//! syscall. A spawn is a compare-and-swap in the table and a record taken from
//! a per-thread cache of reused records; an end is a swap in the table and one
//! in the finished-history ring: no lock either. Findings go through a bounded
//! queue to a thread of their own, which writes the log and the report file;
//! when the queue is full the finding is counted as dropped, never waited for.
//!
//! ## Memory
//!
//! Measured with a counting allocator (`cargo run --release -p taskscope-tests
//! --bin mem_per_task -- hooks|init|bare`, 10,000 pending tasks): one live task
//! costs **272 bytes** more with either capture (the runtime hooks of
//! `#[taskscope::main]` and [`Builder::install_on`], or [`init`]'s subscriber),
//! over the 576 bytes the task, its `oneshot` and its `JoinHandle` take without
//! taskscope. That is the task's record (`size_of::<TaskCell>()` = 256 bytes on
//! x86_64) and its reference counts. The
//! finished history keeps at most 1,000 records for at most 60 s by default
//! (`TASKSCOPE_FINISHED_MAX`, `TASKSCOPE_FINISHED_TTL_S`), and records kept
//! for reuse are at most 1,024 shared plus 65 per thread, so memory does not
//! grow with the number of tasks that have ended.
//!
//! ## Report file
//!
//! See [`Finding`] for the schema (version 1) and `README.md` for an example
//! line of each kind.

#![warn(missing_docs)]
// Without `--cfg tokio_unstable` the task hooks' half of the capture is not
// reached (see capture/no_hooks.rs); it still compiles, without warnings.
#![cfg_attr(not(tokio_unstable), allow(dead_code))]

// Top: the ways in (the builder, the one place that starts threads; the
// listing and the leak guard; tracked futures), then the capture and the
// server, which never import each other; below them the detectors, the
// session they share, the findings pipeline, the model of tasks, and the
// base modules. Imports run downwards only: see ARCHITECTURE.md.
mod builder;
mod leak_guard;
mod listing;
mod tracked;

mod capture;
mod server;

mod detect;

mod session;

mod model;
mod pipeline;

mod clock;
mod error;
mod internal;
mod settings;
mod sync;

pub use builder::{__private, Builder, FLUSH_TIMEOUT, Guard, init, try_init};

pub use capture::layer::{TaskFilter, TaskLayer};
pub use error::Error;
pub use leak_guard::{DEFAULT_GRACE, LeakGuard, Leaks};
pub use listing::{all_tasks, dump, findings, finished_tasks, flush, format_tasks, pipeline_stats};
pub use model::task::{
    FinishedTask, POLL_HISTOGRAM_BUCKETS, SpawnLocation, TaskEnd, TaskInfo, TaskState,
    poll_histogram_bucket_limit,
};
pub use pipeline::PipelineStats;
pub use settings::{
    DEFAULT_ADDR, DEFAULT_FINISHED_CAPACITY, DEFAULT_FINISHED_MAX_AGE, DEFAULT_SLOW_POLL,
    ServerAddr, SettingError, Settings,
};
/// Text forms shared by the task table and messages (from `taskscope-api`).
#[doc(inline)]
pub use taskscope_api::format;
/// The wire protocol between the app and the viewer (from `taskscope-api`).
#[doc(inline)]
pub use taskscope_api::proto;
pub use taskscope_api::{
    Finding, FindingKind, LeakReason, SCHEMA_VERSION, StackFrame, TaskRef, blocking_frame,
};
/// Like `#[tokio::main]`, with taskscope installed on the runtime through
/// Tokio's task hooks — the cheapest way to see every task (no task names or
/// wakes; see the crate docs) — and a stderr subscriber for the warnings.
/// Takes `flavor = "multi_thread" | "current_thread"` and `worker_threads = N`.
///
/// ```no_run
/// #[taskscope::main]
/// async fn main() {
///     tokio::spawn(async { /* ... */ }).await.unwrap();
/// }
/// ```
pub use taskscope_macros::main;
pub use tracked::{TrackExt, Tracked, track, track_named};

#[cfg(test)]
mod size_tests {
    #[test]
    fn task_record_size_is_what_the_docs_say() {
        assert_eq!(std::mem::size_of::<crate::model::task::TaskCell>(), 256);
    }
}
