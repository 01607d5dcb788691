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
//! Use one of them per process: a second capture of another kind (or a
//! second layer) is refused with [`Error::CaptureConflict`], and the first
//! one keeps running.
//!
//! ## Cargo features
//!
//! `tracing-capture` (on by default) brings the capture through Tokio's
//! tracing instrumentation: [`init`], [`try_init`], [`Builder::init`],
//! [`Builder::try_init`], [`Builder::layer`], [`TaskLayer`] and [`TaskFilter`],
//! and turns on Tokio's `tracing` feature, which they need. An app that sees
//! its tasks through the task hooks only (`#[taskscope::main]` or
//! [`Builder::install_on`]) can leave it out:
//!
//! ```toml
//! taskscope = { version = "0.1", default-features = false }
//! ```
//!
//! Its Tokio is then built without `tracing`, whose spans cost every spawn and
//! poll even when nothing listens to them (measured in `BENCHMARKS.md`); those
//! items are then absent, everything else is the same.
//!
//! ## The hot path
//!
//! Per poll: one clock read at its start and, for the polls that are timed,
//! one at its end (the CPU's time-stamp counter, read inline, where it is
//! invariant; the monotonic clock otherwise; which polls are timed:
//! [`PollTiming`]), a lock-free lookup of the
//! task's record in a table that grows with the number of live tasks (no lock
//! at any size: a million live tasks cost a poll what ten do), and relaxed
//! atomic loads and stores on that
//! record, which only the polling thread writes. No lock, no allocation, no
//! syscall. A spawn is a compare-and-swap in the table and a record taken from
//! a per-thread cache of reused records; an end is a swap in the table and one
//! in the finished-history ring: no lock either. Findings go through a bounded
//! queue to a thread of their own, which writes the log and the report file;
//! when the queue is full the finding is counted as dropped, never waited for.
//!
//! ## Memory
//!
//! Measured with `cargo run --release -p taskscope-tests --bin mem_per_task --
//! hooks|init|bare [N]` (N pending tasks, 10,000 unless told): one live task
//! costs about **264 bytes** more with either capture, as the allocator counts
//! it (the runtime hooks of `#[taskscope::main]` and [`Builder::install_on`], or
//! [`init`]'s subscriber), over the 576 bytes the task, its `oneshot` and its
//! `JoinHandle` take without taskscope. That is the task's record
//! (`size_of::<TaskCell>()` = 248 bytes on x86_64) and its reference counts:
//! glibc gives it a 272-byte chunk. The task table adds about 18 bytes a live
//! task (16-byte slots, about 1.1 of them a task, at most 1.6 right after it
//! grows): at a million pending tasks, +282 bytes counted and +261 resident,
//! the same with the hooks and with `init()`. (A poll that runs longer than
//! the slow-poll threshold loads the binary's debug info once to symbolize
//! its stack: tens of megabytes, kept for the next report, whatever the
//! number of tasks.) The table's levels are kept once allocated: its memory is
//! that of the most tasks ever alive at once. The
//! finished history keeps at most 1,000 records for at most 60 s by default
//! (`TASKSCOPE_FINISHED_MAX`, `TASKSCOPE_FINISHED_TTL_S`), and records kept
//! for reuse are at most 1,024 shared plus 65 per thread, so memory does not
//! grow with the number of tasks that have ended.
//!
//! ## Report file
//!
//! See [`Finding`] for the schema (version 1) and `README.md` for an example
//! line of each kind.
//!
//! ## Findings as `tracing` events
//!
//! Every finding is also a WARN event of target `taskscope`, its message the
//! asyncio-style text, its fields a stable interface named as in the report
//! file, for any subscriber (a JSON log, `opentelemetry-appender-tracing`:
//! see `tests/examples/otel.rs` for findings as OTLP logs through
//! [`Builder::layer`]). A field whose value is absent (an unnamed task, a
//! finding without a task) is left out.
//!
//! | kind | fields |
//! |---|---|
//! | every kind | `kind`; for a task: `task.id`, `task.name`, `spawned_at` (`path:line:col`) |
//! | `slow_poll` | `duration_ms` (f64), `threshold_ms`, `in_progress` (bool), `poll`, `thread`, `blocked_in` (the blocking frame, when there is a stack), `stack_unavailable` |
//! | `never_awaited` | `future` (its name), `created_at` |
//! | `leaked_task` | `reason` (`alive_at_shutdown`, `lost_waker`, `idle_too_long`), `age_ms`, `idle_ms` |
//! | `task_panicked` | `panic_message`, `panicked_at`, `joined` |
//! | `findings_dropped` | `count` |
//!
//! ## Watching a fleet: Prometheus metrics
//!
//! With `TASKSCOPE_METRICS_ADDR=127.0.0.1:9464` (or
//! [`Builder::metrics_addr`]; off by default), taskscope serves `GET
//! /metrics` in the OpenMetrics text format (the Prometheus 0.0.4 text
//! format to clients that do not ask for OpenMetrics), encoded with the
//! `prometheus-client` crate, on a thread of its own, never on the app's
//! runtime. The address rules are those of `TASKSCOPE_ADDR`: loopback unless
//! you name another address, with a warning on stderr when you do; with
//! `TASKSCOPE_TOKEN` set, a scrape must send it as a bearer token. Per
//! spawn location (label `spawned_at`, `path:line:col`):
//!
//! | metric | type | how to read it |
//! |---|---|---|
//! | `taskscope_tasks_alive` | gauge | live tasks spawned there; a line that only grows is a leak |
//! | `taskscope_tasks_spawned_total` | counter | tasks spawned there since taskscope started; `rate()` is the spawn rate |
//! | `taskscope_polls_total` | counter | polls of those tasks that ended |
//! | `taskscope_poll_duration_seconds` | histogram | how long those polls took; `histogram_quantile(0.99, …)` for the p99; `_sum` is the time they held a worker |
//! | `taskscope_slow_polls_total` | counter | polls at or over the slow-poll threshold, each counted once as it ends (not once per `in_progress` report): `rate()` by `spawned_at` is *which line blocks the workers, how often* |
//!
//! and for the whole app:
//!
//! | metric | type | how to read it |
//! |---|---|---|
//! | `taskscope_findings_total{kind, reason}` | counter | findings through the log, the report file and the viewer; `reason` is a leak's cause, or for `slow_poll` `in_progress` (a report while the poll still runs, repeated every second) or `ended` (one per poll); empty for the other kinds |
//! | `taskscope_findings_dropped_total` | counter | findings lost to a full findings queue (the app is never made to wait); should stay 0 |
//! | `taskscope_slow_poll_threshold_seconds` | gauge | the threshold in force |
//! | `taskscope_spawn_locations` | gauge | spawn locations with series of their own |
//! | `taskscope_runtime_workers` | gauge | worker threads of the app's runtime |
//! | `taskscope_runtime_worker_busy_seconds_total{worker}` | counter | time each worker spent running tasks; `rate()` is its busy ratio (1 = never idle) |
//! | `taskscope_runtime_global_queue_depth` | gauge | tasks waiting in the runtime's global queue |
//! | `taskscope_runtime_worker_local_queue_depth{worker}` | gauge | tasks waiting in each worker's local queue (`tokio_unstable`) |
//! | `taskscope_runtime_blocking_threads` | gauge | threads of the blocking pool (`tokio_unstable`) |
//! | `taskscope_runtime_blocking_queue_depth` | gauge | tasks waiting for a blocking-pool thread (`tokio_unstable`) |
//! | `taskscope_runtime_alive_tasks` | gauge | tasks alive on the runtime, as Tokio counts them |
//!
//! The runtime figures appear once taskscope has seen the app's runtime.
//!
//! **Cardinality is bounded**: at most [`DEFAULT_METRICS_MAX_LOCATIONS`]
//! (1,000) distinct `spawned_at` values, set with
//! `TASKSCOPE_METRICS_MAX_LOCATIONS` (0 to [`MAX_METRICS_LOCATIONS`],
//! 10,000); a location keeps its series from the first time taskscope sees
//! it, and the tasks of locations past the limit are summed as
//! `spawned_at="other"`. Every series of a location stays (its counters only
//! grow; `taskscope_tasks_alive` goes back to 0).
//!
//! **Histogram buckets** are dense around the slow-poll threshold `T`: `T` ×
//! 1/100, 1/10, 1/4, 1/2, 3/4, 1, 1.5, 2.5, 5, 10, 25, 50, 100 — at the
//! default 100 ms: 1, 10, 25, 50, 75, 100, 150, 250, 500 ms, 1, 2.5, 5, 10 s.
//! `_count` is exact, and so are the buckets from `T` up (each slow poll's
//! duration is known). Under `T` they come from taskscope's per-task
//! histogram of power-of-two buckets (1.024 µs × 2^k): a bound's count is
//! exact up to the power-of-two bucket it falls in, whose polls are split in
//! proportion (linear interpolation); the 50 ms bound, say, falls in
//! [33.6, 67.1) ms. With sampled poll timing ([`PollTiming::Sampled`], the
//! default) that histogram and `_sum` are estimates from one short poll in 8;
//! [`PollTiming::Every`] makes them exact.
//!
//! **Cost**: nothing per poll. While the endpoint is on, each task's end adds
//! its figures to its location's running totals (a lookup in a lock-free
//! table and a few atomic additions, no lock), and each slow poll one more.
//! A scrape runs on taskscope's metrics thread: it reads those totals and
//! scans the live tasks as the viewer server does; scrapes less than 0.5 s
//! apart get the same figures. Memory, allocated only with the endpoint on:
//! 264 bytes per location seen, a table of 56 bytes × twice the limit
//! rounded up to a power of two (112 KiB at the default limit, 1.75 MiB at
//! 10,000), and on the metrics thread about 200 bytes per series for the
//! values last reported. A task that ends between the two reads of a scrape
//! is counted at the next one: no counter ever goes down.

#![warn(missing_docs)]
// Without `--cfg tokio_unstable` the task hooks' half of the capture is not
// reached (see capture/no_hooks.rs); it still compiles, without warnings.
#![cfg_attr(not(tokio_unstable), allow(dead_code))]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]

// Top: the ways in (the builder, the one place that starts threads; the
// listing and the leak guard; tracked futures), then the capture and the
// server, which never import each other; below them the detectors, the
// session they share, the findings pipeline, the model of tasks, and the
// base modules. Imports run downwards only: see ARCHITECTURE.md.
mod async_stacks;
mod builder;
mod leak_guard;
mod listing;
mod tracked;

mod capture;
mod metrics;
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

pub use builder::{__private, Builder, FLUSH_TIMEOUT, Guard};
#[cfg(feature = "tracing-capture")]
pub use builder::{init, try_init};

pub use async_stacks::task_stacks;
#[cfg(feature = "tracing-capture")]
pub use capture::layer::{TaskFilter, TaskLayer};
pub use detect::taskdump::error::{BusyWorker, TaskDumpError};
pub use detect::taskdump::stack::{AsyncStack, TaskStack};
pub use error::Error;
pub use leak_guard::{DEFAULT_GRACE, LeakGuard, Leaks};
pub use listing::{all_tasks, dump, findings, finished_tasks, flush, format_tasks, pipeline_stats};
pub use model::task::{
    FinishedTask, POLL_HISTOGRAM_BUCKETS, SpawnLocation, TaskEnd, TaskInfo, TaskState,
    poll_histogram_bucket_limit,
};
pub use pipeline::PipelineStats;
pub use settings::MIN_TOKEN_LEN;
pub use settings::{
    DEFAULT_ADDR, DEFAULT_FINISHED_CAPACITY, DEFAULT_FINISHED_MAX_AGE, DEFAULT_SLOW_POLL,
    MAX_FINISHED_CAPACITY, PollTiming, SAMPLED_ONE_IN, ServerAddr, SettingError, Settings,
    TaskDumps,
};
pub use settings::{DEFAULT_METRICS_MAX_LOCATIONS, MAX_METRICS_LOCATIONS};
/// Text forms shared by the task table and messages (from `taskscope-api`).
#[doc(inline)]
pub use taskscope_api::format;
/// The wire protocol between the app and the viewer (from `taskscope-api`).
#[doc(inline)]
pub use taskscope_api::proto;
/// Where a task waits, as text (from `taskscope-api`).
#[doc(inline)]
pub use taskscope_api::waiting;
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
        assert_eq!(std::mem::size_of::<crate::model::task::TaskCell>(), 248);
    }
}
