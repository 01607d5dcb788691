//! Where a task waits, as taskscope hands it out: [`AsyncStack`], and
//! [`TaskStack`] for a live task with its stack.

use std::fmt;

use taskscope_api::StackFrame;
use taskscope_api::waiting;

use crate::model::task::TaskInfo;

/// Where one task waits: its async stack, from a Tokio task dump.
///
/// `waiting_at` runs from the Tokio (or `futures`) primitive the task waits
/// on, as the app called it (`tokio::sync::mpsc::bounded::Receiver::recv`),
/// out through the app's own async functions, innermost first; the app's
/// files are relative to its workspace, like spawn locations. It is empty
/// when taskscope could not tell, and `note` then says why.
///
/// ```
/// let stack = taskscope::AsyncStack::default();
/// assert!(stack.waiting_at.is_empty());
/// assert_eq!(stack.warning_suffix(), "");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AsyncStack {
    /// The task's async stack, innermost frame first, trimmed to the app's
    /// frames plus the primitive the app called. Empty when unknown.
    pub waiting_at: Vec<StackFrame>,
    /// The other places it waits at the same time (the other branches of a
    /// `select!` or `join!`), trimmed the same way.
    pub also: Vec<Vec<StackFrame>>,
    /// Why `waiting_at` is empty, or what it lacks (no Tokio primitive on the
    /// stack, the app's frames lost in an optimized build, no dump taken and
    /// why); `None` when nothing is missing.
    pub note: Option<String>,
}

impl AsyncStack {
    /// No stack, for this reason.
    pub(crate) fn missing(why: impl Into<String>) -> AsyncStack {
        AsyncStack {
            note: Some(why.into()),
            ..AsyncStack::default()
        }
    }

    /// The end of a leak warning: `; waiting at src/worker.rs:41` (see
    /// [`taskscope_api::waiting::warning_suffix`]).
    pub fn warning_suffix(&self) -> String {
        waiting::warning_suffix(&self.waiting_at, self.note.as_deref())
    }

    /// The stack as lines of text, innermost frame first (see
    /// [`taskscope_api::waiting::stack_lines`]).
    pub fn lines(&self) -> Vec<String> {
        waiting::stack_lines(&self.waiting_at, &self.also, self.note.as_deref())
    }
}

impl fmt::Display for AsyncStack {
    /// [`AsyncStack::lines`], one a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines().iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(line)?;
        }
        Ok(())
    }
}

/// A live task and where it waits, as [`crate::task_stacks`] returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskStack {
    /// The task, as [`crate::all_tasks`] shows it.
    pub task: TaskInfo,
    /// Where it waits.
    pub stack: AsyncStack,
}
