//! # taskscope-api
//!
//! What an app instrumented with [`taskscope`](https://docs.rs/taskscope)
//! and the `taskscope` viewer share, the way `console-api` serves
//! tokio-console: the wire protocol `taskscope.v1` ([`proto`], generated at
//! build time with a vendored protoc), the report file's schema ([`Finding`]
//! and its kinds, one JSON line each), the states of a task, the addresses
//! both sides accept ([`ServerAddr`]), the text forms both print
//! ([`format`](mod@format)), RFC 3339 times read back ([`time`]), where a
//! task waits as text ([`waiting`]), and the
//! one model of slow polls by spawn location that the live view and
//! `taskscope report` share ([`slow_polls`]), likewise for the other findings
//! grouped by kind and location ([`problems`]), and stacks as both show them,
//! the runtime's frames folded ([`stack`]). It also holds the per-task poll
//! histogram's buckets ([`histogram`]), what both sides need of
//! tokio-console's protocol, which the app serves too and the viewer reads
//! from apps that embed console-subscriber ([`console`]), and the format of
//! recordings (`TASKSCOPE_RECORD`, read by `taskscope replay`: [`recording`]).
//!
//! It starts nothing and captures nothing: a viewer, a script reading report
//! files or a test can depend on it without compiling the capture, the
//! server or `--cfg tokio_unstable` questions.
//!
//! ```
//! use taskscope_api::{Finding, FindingKind};
//!
//! let line = r#"{"v":1,"kind":"never_awaited","name":"fetch_user","created_at":"src/main.rs:10:5","time":"2026-11-22T10:00:00.000Z","task":null}"#;
//! let finding: Finding = serde_json::from_str(line).unwrap();
//! assert!(matches!(finding.kind, FindingKind::NeverAwaited { .. }));
//! assert_eq!(finding.message(), "future fetch_user (created at src/main.rs:10:5) was never awaited");
//! ```

#![warn(missing_docs)]

mod addr;
pub mod console;
mod findings;
pub mod format;
pub mod histogram;
pub mod problems;
pub mod proto;
pub mod recording;
pub mod slow_polls;
pub mod stack;
mod task;
pub mod time;
pub mod waiting;

pub use addr::{DEFAULT_ADDR, ServerAddr};
pub use findings::{
    Finding, FindingKind, LeakReason, SCHEMA_VERSION, StackFrame, TaskRef, blocking_frame,
};
pub use proto::PROTOCOL_VERSION;
pub use task::{TaskEnd, TaskState};
