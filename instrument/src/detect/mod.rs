//! The detectors: what turns tasks' records into findings.
//!
//! - [`events`]: what a task's end means (a panic, a task dropped at
//!   shutdown), and the app's shutdown;
//! - [`slow_poll`]: the final report of a poll longer than the threshold;
//! - [`watchdog`] and [`watch_slot`]: polls still running past the threshold,
//!   seen from a thread of their own through each worker's slot;
//! - [`stack_capture`] and [`symbolize`]: the stack of a blocked thread, taken
//!   while it is blocked, then turned into frames off that thread;
//! - [`leaks`]: tasks alive at shutdown, with a lost waker, or idle too long;
//! - [`never_awaited`]: tracked futures dropped before their first poll;
//! - [`panics`]: tasks that panicked;
//! - [`taskdump`]: where each task waits, from Tokio's task dumps (bounded).
//!
//! Detectors read the session and submit findings to it; they never reach
//! up into the capture or the server: what they need from there (the
//! current task, the worker's slot) is passed in.

pub(crate) mod events;
pub(crate) mod leaks;
pub(crate) mod never_awaited;
pub(crate) mod panics;
pub(crate) mod slow_poll;
pub(crate) mod stack_capture;
pub(crate) mod symbolize;
pub(crate) mod taskdump;
pub(crate) mod watch_slot;
pub(crate) mod watchdog;

#[cfg(test)]
mod tests;
