//! The states of a task, as the app reports them and the viewer shows them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a live task is doing right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Being polled on a worker thread.
    Running,
    /// Woken and waiting for a worker to poll it.
    Scheduled,
    /// Waiting for a wake-up.
    Idle,
}

impl TaskState {
    /// The lower-case name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "running",
            TaskState::Scheduled => "scheduled",
            TaskState::Idle => "idle",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEnd {
    /// Its future returned `Ready`.
    Completed,
    /// It was aborted, or dropped while pending (for instance at runtime shutdown).
    Cancelled,
    /// Its future panicked.
    Panicked,
}

impl TaskEnd {
    /// The lower-case name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskEnd::Completed => "completed",
            TaskEnd::Cancelled => "cancelled",
            TaskEnd::Panicked => "panicked",
        }
    }
}

impl fmt::Display for TaskEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
