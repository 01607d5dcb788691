//! Findings: what the detectors report, in the report file's schema (version 1).
//!
//! Every finding is one JSON object on one line. Common fields: `v` (schema
//! version, 1), `kind`, `time` (RFC 3339, UTC) and `task` (`{id, name,
//! spawned_at}`, or null when no task is involved). The rest depends on `kind`;
//! see [`FindingKind`]. Readers ignore fields they do not know, so later
//! versions may add fields without changing `v`.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The report schema version written in every line's `v` field.
pub const SCHEMA_VERSION: u32 = 1;

/// One finding, as written to the report file (one JSON line each).
///
/// ```
/// let line = r#"{"v":1,"kind":"slow_poll","time":"2026-11-22T10:00:00.153Z",
///   "task":{"id":17,"name":"handler","spawned_at":"src/main.rs:42:5"},
///   "duration_ms":153.2,"threshold_ms":100,"thread":"tokio-runtime-worker",
///   "stack":[],"in_progress":false,"poll":3}"#;
/// let finding: taskscope_api::Finding = serde_json::from_str(line).unwrap();
/// assert_eq!(finding.kind.name(), "slow_poll");
/// assert_eq!(finding.task.as_ref().unwrap().spawned_at, "src/main.rs:42:5");
/// assert!(finding.message().contains("took 0.153 seconds"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub v: u32,
    /// What was found, and its details.
    #[serde(flatten)]
    pub kind: FindingKind,
    /// When it was found, RFC 3339 in UTC with milliseconds.
    pub time: String,
    /// The task concerned, if any.
    pub task: Option<TaskRef>,
}

/// The task a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskRef {
    /// Tokio's task id.
    pub id: u64,
    /// The task's name, null when unnamed.
    pub name: Option<String>,
    /// `path:line:col` of the spawn.
    pub spawned_at: String,
}

/// One frame of a captured stack, innermost first.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StackFrame {
    /// Demangled function name, without the hash.
    pub function: String,
    /// Source file, when debug info has it.
    #[serde(default)]
    pub file: Option<String>,
    /// Source line, when debug info has it.
    #[serde(default)]
    pub line: Option<u32>,
}

/// Why a task is reported as leaked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakReason {
    /// Still pending when its runtime shut down.
    AliveAtShutdown,
    /// Idle, polled at least once, and no waker left: it can never run again.
    LostWaker,
    /// Idle for longer than the configured limit.
    IdleTooLong,
}

/// The kind of a finding with its own fields (`kind` in JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FindingKind {
    /// One poll of one task took longer than the threshold.
    SlowPoll {
        /// How long the poll took (or, in progress, has taken so far), in milliseconds.
        duration_ms: f64,
        /// The threshold in force, in milliseconds.
        threshold_ms: u64,
        /// Name of the worker thread that ran the poll.
        thread: String,
        /// Where the thread was blocked, innermost frame first (may be empty).
        #[serde(default)]
        stack: Vec<StackFrame>,
        /// Why `stack` is empty, when a stack could not be taken.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stack_unavailable: Option<String>,
        /// True when the thread's stack was deeper than taskscope keeps: the
        /// outermost frames of `stack` are missing (written only when true).
        #[serde(default, skip_serializing_if = "is_false")]
        stack_truncated: bool,
        /// True while the poll is still running; false for the final report.
        in_progress: bool,
        /// Which poll of the task this is (1 = first), to pair the reports of one poll.
        #[serde(default)]
        poll: u64,
    },
    /// A tracked future was dropped without ever being polled.
    NeverAwaited {
        /// The future's name.
        name: String,
        /// `path:line:col` where it was created.
        created_at: String,
    },
    /// A task that can no longer finish, or was left behind.
    LeakedTask {
        /// Why it counts as leaked.
        reason: LeakReason,
        /// Age of the task, in milliseconds.
        age_ms: u64,
        /// Time since it last ran, in milliseconds.
        idle_ms: u64,
        /// Where the task waits: its async stack from a Tokio task dump,
        /// innermost frame first, trimmed to the app's frames plus the Tokio
        /// (or `futures`) primitive the app called (see [`crate::waiting`]).
        /// Empty when unknown: then `waiting_at_note` says why.
        #[serde(default)]
        waiting_at: Vec<StackFrame>,
        /// Why `waiting_at` is empty, or what it lacks (taskscope built
        /// without its `taskdump` feature, the dump refused or timed out, no
        /// Tokio primitive on the task's stack, the app's frames lost in an
        /// optimized build, ...). Left out when there is nothing to say.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waiting_at_note: Option<String>,
    },
    /// A task panicked.
    TaskPanicked {
        /// The panic message.
        message: String,
        /// `path:line:col` of the panic, when known.
        panicked_at: Option<String>,
        /// Whether a `JoinHandle` observed the panic; null when unknown.
        joined: Option<bool>,
    },
    /// Findings were dropped because the queue to the sinks was full.
    FindingsDropped {
        /// How many were dropped since the previous such line.
        count: u64,
    },
}

/// For `skip_serializing_if`: leave out flags that are not set.
fn is_false(flag: &bool) -> bool {
    !flag
}

impl FindingKind {
    /// The `kind` string, e.g. `"slow_poll"`.
    pub fn name(&self) -> &'static str {
        match self {
            FindingKind::SlowPoll { .. } => "slow_poll",
            FindingKind::NeverAwaited { .. } => "never_awaited",
            FindingKind::LeakedTask { .. } => "leaked_task",
            FindingKind::TaskPanicked { .. } => "task_panicked",
            FindingKind::FindingsDropped { .. } => "findings_dropped",
        }
    }

    /// Every kind this version knows.
    pub const NAMES: [&'static str; 5] = [
        "slow_poll",
        "never_awaited",
        "leaked_task",
        "task_panicked",
        "findings_dropped",
    ];
}

impl fmt::Display for TaskRef {
    /// `task 17 "handler" (spawned at src/main.rs:42:5)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.id)?;
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        write!(f, " (spawned at {})", self.spawned_at)
    }
}

impl Finding {
    /// A finding of `kind` about `task`, timed now.
    pub fn new(kind: FindingKind, task: Option<TaskRef>) -> Finding {
        Finding::at(kind, task, SystemTime::now())
    }

    /// A finding of `kind` about `task`, timed `time`.
    pub fn at(kind: FindingKind, task: Option<TaskRef>, time: SystemTime) -> Finding {
        Finding {
            v: SCHEMA_VERSION,
            kind,
            time: humantime::format_rfc3339_millis(time).to_string(),
            task,
        }
    }

    /// The finding as a warning, in the words of asyncio's debug mode.
    pub fn message(&self) -> String {
        let task = match &self.task {
            Some(t) => t.to_string(),
            None => "task ?".to_string(),
        };
        match &self.kind {
            FindingKind::SlowPoll {
                duration_ms,
                in_progress,
                stack,
                ..
            } => {
                let secs = duration_ms / 1000.0;
                let mut text = if *in_progress {
                    format!(
                        "Executing {task} has been blocked for {secs:.3} seconds and is still running"
                    )
                } else {
                    format!("Executing {task} took {secs:.3} seconds")
                };
                if let Some(frame) = blocking_frame(stack) {
                    text.push_str(&format!("; blocked in {frame}"));
                }
                text
            }
            FindingKind::NeverAwaited { name, created_at } => {
                format!("future {name} (created at {created_at}) was never awaited")
            }
            FindingKind::LeakedTask {
                reason,
                idle_ms,
                waiting_at,
                waiting_at_note,
                ..
            } => {
                let text = match reason {
                    LeakReason::AliveAtShutdown => {
                        format!("{task} was destroyed but it is pending!")
                    }
                    LeakReason::LostWaker => format!(
                        "{task} can never be woken again: no waker is left (idle for {:.3} seconds)",
                        *idle_ms as f64 / 1000.0
                    ),
                    LeakReason::IdleTooLong => format!(
                        "{task} has been idle for {:.3} seconds",
                        *idle_ms as f64 / 1000.0
                    ),
                };
                text + &crate::waiting::warning_suffix(waiting_at, waiting_at_note.as_deref())
            }
            FindingKind::TaskPanicked {
                message,
                panicked_at,
                joined,
            } => {
                let at = panicked_at.as_deref().unwrap_or("an unknown location");
                let tail = match joined {
                    Some(false) => " and its panic was never retrieved",
                    _ => "",
                };
                format!("{task} panicked at {at}: {message}{tail}")
            }
            FindingKind::FindingsDropped { count } => {
                format!("{count} findings were dropped: the findings queue was full")
            }
        }
    }
}

impl StackFrame {
    /// True for frames of the runtime under the app's code rather than the
    /// app's own: the standard library (`std`, `core`, `alloc`), the C
    /// library, Tokio, `tracing`, `futures` and taskscope itself
    /// ([`StackFrame::runtime_crate`] says which). Not where the app's own
    /// code blocked; the frames a folded stack hides.
    ///
    /// ```
    /// use taskscope_api::StackFrame;
    /// let frame = |f: &str, file: Option<&str>| StackFrame { function: f.into(), file: file.map(Into::into), line: None };
    /// assert!(frame("<tracing::instrument::Instrumented<T> as core::future::future::Future>::poll", None).is_runtime_plumbing());
    /// assert!(frame("__GI___clock_nanosleep", Some("./time/../sysdeps/unix/sysv/linux/clock_nanosleep.c")).is_runtime_plumbing());
    /// assert!(!frame("app::load_config", Some("/src/app/src/config.rs")).is_runtime_plumbing());
    /// ```
    pub fn is_runtime_plumbing(&self) -> bool {
        self.runtime_crate().is_some()
    }

    /// The part of the runtime a frame belongs to: `"std"` (also `core`,
    /// `alloc` and the standard library's own sources), `"libc"` (C frames),
    /// `"tokio"`, `"tracing"`, `"futures"` or `"taskscope"`, or `"unknown"`
    /// for a bare address that could not be named (it is not the app's code
    /// that can be shown either); `None` for the app's frames and those of the
    /// other crates it uses.
    ///
    /// Told by the crate that owns the function (the self type's, or for a
    /// generic `<F as core::future::Future>::poll` the trait's), else by the
    /// source file (`/rustc/…` is the standard library's, `./…` the C
    /// library's build tree, `…/registry/src/*/tokio-1.54.1/…` Tokio's), else,
    /// for a name without a path and no source file, the C library.
    ///
    /// ```
    /// use taskscope_api::StackFrame;
    /// let frame = |f: &str| StackFrame { function: f.into(), file: None, line: None };
    /// assert_eq!(frame("std::thread::sleep").runtime_crate(), Some("std"));
    /// assert_eq!(frame("<alloc::boxed::Box<F,A> as core::future::future::Future>::poll").runtime_crate(), Some("std"));
    /// assert_eq!(frame("futures_util::future::join_all::JoinAll<F>::poll").runtime_crate(), Some("futures"));
    /// assert_eq!(frame("start_thread").runtime_crate(), Some("libc"));
    /// assert_eq!(frame("0x7f58e94c3b46").runtime_crate(), Some("unknown"));
    /// assert_eq!(frame("app::handler::{{closure}}").runtime_crate(), None);
    /// ```
    pub fn runtime_crate(&self) -> Option<&'static str> {
        let function = self.function.as_str();
        if function
            .strip_prefix("0x")
            .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Some("unknown");
        }
        match function_crate(function) {
            Some(name) => {
                if let Some(part) = runtime_part(name) {
                    return Some(part);
                }
            }
            None if function.starts_with("__rust") => return Some("std"),
            None if function.starts_with("__") => return Some("libc"),
            None => {}
        }
        match self.file.as_deref() {
            Some(file) => file_runtime_part(file),
            None if !function.contains("::") => Some("libc"),
            None => None,
        }
    }
}

/// The runtime part a crate belongs to, if it is one of the runtime's.
fn runtime_part(krate: &str) -> Option<&'static str> {
    Some(match krate {
        "std" | "core" | "alloc" | "panic_unwind" | "panic_abort" | "std_detect" => "std",
        "libc" => "libc",
        "tokio" | "tokio_util" | "tokio_stream" => "tokio",
        "tracing" | "tracing_core" | "tracing_subscriber" | "tracing_futures" => "tracing",
        "futures" | "futures_util" | "futures_core" | "futures_executor" | "futures_task"
        | "futures_channel" | "futures_io" | "futures_sink" => "futures",
        "taskscope" | "taskscope_api" => "taskscope",
        _ => return None,
    })
}

/// The crate a demangled function name belongs to: the first path segment
/// (`tokio` in `tokio::spawn`), for a trait method the self type's
/// (`<tokio::task::JoinHandle<T> as core::future::Future>::poll`), or the
/// trait's when the self type is a bare generic parameter (`<F as
/// core::future::Future>::poll`, `<&mut F as …>`). `None` for a name that is
/// not a path (a C function).
fn function_crate(function: &str) -> Option<&str> {
    let mut rest = function.trim_start_matches('<');
    for prefix in ["&mut ", "&", "*const ", "*mut ", "dyn "] {
        if let Some(r) = rest.strip_prefix(prefix) {
            rest = r;
        }
    }
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let (head, after) = rest.split_at(end);
    if after.starts_with("::") {
        return Some(head);
    }
    // `<F as core::future::future::Future>::poll`: a blanket impl, the trait's.
    let trait_path = after.strip_prefix(" as ")?;
    let end = trait_path.find("::")?;
    Some(&trait_path[..end])
}

/// The runtime part a source file belongs to, if it is one of the runtime's.
fn file_runtime_part(file: &str) -> Option<&'static str> {
    if file.starts_with("/rustc/") {
        return Some("std");
    }
    if file.starts_with("./") {
        return Some("libc");
    }
    let (_, in_registry) = file.split_once("/registry/src/")?;
    // `index.crates.io-…/tokio-1.54.1/src/…`: the crate's directory, less its version.
    let dir = in_registry.split('/').nth(1)?;
    let name = match dir.rfind('-') {
        Some(dash) if dir[dash + 1..].starts_with(|c: char| c.is_ascii_digit()) => &dir[..dash],
        _ => dir,
    };
    runtime_part(&name.replace('-', "_"))
}

impl fmt::Display for StackFrame {
    /// `function (file:line)`, `function (file)` without a line, or `function`
    /// when the debug info had no file.
    ///
    /// ```
    /// use taskscope_api::StackFrame;
    /// let frame = StackFrame { function: "app::load_config".into(), file: Some("src/config.rs".into()), line: Some(12) };
    /// assert_eq!(frame.to_string(), "app::load_config (src/config.rs:12)");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.function)?;
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, " ({file}:{line})"),
            (Some(file), None) => write!(f, " ({file})"),
            _ => Ok(()),
        }
    }
}

/// The frame to name as "where it blocked": the innermost frame of the app's
/// own code, or the innermost frame when every frame is runtime plumbing.
///
/// ```
/// use taskscope_api::{StackFrame, blocking_frame};
/// let frame = |f: &str| StackFrame { function: f.into(), file: None, line: None };
/// let stack = [frame("__GI___clock_nanosleep"), frame("std::thread::sleep"), frame("app::load_config")];
/// assert_eq!(blocking_frame(&stack).unwrap().function, "app::load_config");
/// ```
pub fn blocking_frame(stack: &[StackFrame]) -> Option<&StackFrame> {
    stack
        .iter()
        .find(|f| !f.is_runtime_plumbing())
        .or_else(|| stack.first())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_poll_line_round_trips_with_the_documented_fields() {
        let f = Finding::new(
            FindingKind::SlowPoll {
                duration_ms: 253.4,
                threshold_ms: 100,
                thread: "tokio-runtime-worker".into(),
                stack: vec![],
                stack_unavailable: None,
                stack_truncated: false,
                in_progress: false,
                poll: 1,
            },
            Some(TaskRef {
                id: 17,
                name: Some("handler".into()),
                spawned_at: "src/main.rs:42:5".into(),
            }),
        );
        let line = serde_json::to_string(&f).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], "slow_poll");
        assert_eq!(v["v"], 1);
        assert_eq!(v["task"]["spawned_at"], "src/main.rs:42:5");
        assert_eq!(v["in_progress"], false);
        assert!(v["stack"].as_array().unwrap().is_empty());
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(serde_json::from_str::<Finding>(&line).unwrap(), f);
        assert_eq!(
            f.message(),
            "Executing task 17 \"handler\" (spawned at src/main.rs:42:5) took 0.253 seconds"
        );
    }

    #[test]
    fn unknown_kind_is_an_error_and_unknown_fields_are_ignored() {
        assert!(
            serde_json::from_str::<Finding>(r#"{"v":1,"kind":"mystery","time":"x","task":null}"#)
                .is_err()
        );
        let f: Finding = serde_json::from_str(
            r#"{"v":1,"kind":"never_awaited","name":"fetch_user","created_at":"src/main.rs:10:5","time":"x","task":null,"extra":1}"#,
        )
        .unwrap();
        assert_eq!(
            f.message(),
            "future fetch_user (created at src/main.rs:10:5) was never awaited"
        );
    }
}
