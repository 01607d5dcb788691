//! `taskscope dump --stacks`: every task with where it waits, in the spirit
//! of asyncio's `Task.print_stack()` for each task:
//!
//! ```text
//! task dump: the app's runtime paused 0.412 ms
//!
//! task 12 "waiter-7" idle, spawned at src/main.rs:31:18
//!   waiting at src/worker.rs:41:
//!     tokio::sync::mpsc::bounded::Receiver::recv (tokio-1.54.1/src/sync/mpsc/bounded.rs:245)
//!     app::worker (src/worker.rs:41)
//! ```

use std::fmt::Write as _;

use taskscope_api::waiting;

use crate::client::{AsyncStack, ListedTask, Listing, Stacks, TaskKind};

/// The note of a runtime's `block_on` future (the app sends no stack for it).
const BLOCK_ON: &str = "a runtime's block_on future: Tokio's task dump traces spawned tasks only";

/// Where `task` waits, as far as `stacks` says.
pub fn of(stacks: &Stacks, task: &ListedTask) -> AsyncStack {
    if let Some(why) = &stacks.unavailable {
        return AsyncStack {
            note: Some(why.clone()),
            ..AsyncStack::default()
        };
    }
    match stacks.by_task.get(&task.task.id) {
        Some(stack) => stack.clone(),
        None => AsyncStack {
            note: Some(match task.kind {
                TaskKind::BlockOn => BLOCK_ON.to_string(),
                TaskKind::Blocking => {
                    "a spawn_blocking thread: Tokio's task dump traces async tasks only".to_string()
                }
                TaskKind::Task => "not in the task dump (spawned after it was taken)".to_string(),
            }),
            ..AsyncStack::default()
        },
    }
}

/// `s` with control characters made visible (strings from the app are
/// printed to a terminal), as everywhere else ([`format::printable`](taskscope_api::format::printable)).
pub fn visible(s: &str) -> String {
    taskscope_api::format::printable(s).into_owned()
}

/// `waiting at src/worker.rs:41` (what the task's line ends with), or what
/// is known instead.
pub fn headline(stack: &AsyncStack) -> String {
    let suffix = waiting::warning_suffix(&stack.waiting_at, stack.note.as_deref());
    match suffix.strip_prefix("; ") {
        Some(head) => visible(head),
        None => "where it waits is not known".to_string(),
    }
}

/// The lines under a task: its frames, innermost first, and the note (but
/// when the headline already says it all: no Tokio primitive on the stack).
pub fn lines(stack: &AsyncStack) -> Vec<String> {
    if stack.waiting_at.is_empty() && stack.note.as_deref() == Some(waiting::NO_TOKIO_PRIMITIVE) {
        return Vec::new();
    }
    waiting::stack_lines(&stack.waiting_at, &stack.also, stack.note.as_deref())
        .iter()
        .map(|l| visible(l))
        .collect()
}

/// The first line of `dump --stacks`: what the dump was.
pub fn summary(stacks: &Stacks, listed_at: std::time::SystemTime) -> String {
    if let Some(why) = &stacks.unavailable {
        return format!("no task dump: {}", visible(why));
    }
    let mut text = format!(
        "task dump: the app's runtime paused {:.3} ms",
        stacks.pause.as_secs_f64() * 1e3
    );
    if let Some(age) = stacks
        .at
        .and_then(|at| listed_at.duration_since(at).ok())
        .filter(|age| age.as_millis() >= 100)
    {
        let _ = write!(
            text,
            ", taken {:.1} s before this listing (dumps are reused for a while)",
            age.as_secs_f64()
        );
    }
    if let Some(partial) = &stacks.partial {
        let _ = write!(text, "; {}", visible(partial));
    }
    text
}

/// `dump --stacks` as text: a summary line, then each task with where it waits.
pub fn to_text(listing: &Listing) -> String {
    let default = Stacks::default();
    let stacks = listing.stacks.as_ref().unwrap_or(&default);
    let mut out = summary(stacks, listing.at);
    out.push('\n');
    for listed in &listing.tasks {
        let t = &listed.task;
        let name = match (&t.name, listed.kind) {
            (Some(name), _) => format!("\"{}\"", visible(name)),
            (None, TaskKind::BlockOn) => "(block_on)".into(),
            (None, TaskKind::Blocking) => "(blocking)".into(),
            (None, TaskKind::Task) => "(unnamed)".into(),
        };
        let _ = write!(
            out,
            "\ntask {} {name} {}, spawned at {}\n",
            t.id,
            t.state.as_str(),
            visible(&t.spawned_at)
        );
        let stack = of(stacks, listed);
        let _ = writeln!(out, "  {}:", headline(&stack));
        for line in lines(&stack) {
            let _ = writeln!(out, "    {line}");
        }
    }
    out
}
