//! Where an app's tasks wait, as the client hands it over: [`Stacks`] (one
//! task dump) and [`AsyncStack`] (one task's).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use taskscope_api::StackFrame;

/// Where an app's tasks wait: one Tokio task dump, taken by the app when
/// asked for ([`list_tasks_and_stacks`](crate::client::list_tasks_and_stacks)).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stacks {
    /// Each live task's async stack, by task id.
    pub by_task: HashMap<u64, AsyncStack>,
    /// Why there are none (the app has no task dumps, refused one, ...).
    pub unavailable: Option<String>,
    /// Why some tasks have none although the dump was taken.
    pub partial: Option<String>,
    /// How long the dump paused the app's runtime.
    pub pause: Duration,
    /// When the dump was taken.
    pub at: Option<SystemTime>,
}

/// Where one task waits (see `taskscope::AsyncStack`, which this mirrors).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AsyncStack {
    /// Its async stack, innermost frame first; empty when unknown.
    pub waiting_at: Vec<StackFrame>,
    /// The other places it waits at once (other branches of a `select!`).
    pub also: Vec<Vec<StackFrame>>,
    /// Why `waiting_at` is empty, or what it lacks.
    pub note: Option<String>,
}
