//! Where each task waits: Tokio's task dumps (`Handle::dump`), bounded.
//!
//! A dump re-polls every idle task of a runtime in a tracing mode that records
//! the stack down to the Tokio primitive the task waits on; the runtime runs
//! nothing else meanwhile. taskscope takes one only when asked (the viewer's
//! `dump --stacks` and Detail view, [`crate::task_stacks`], a failing
//! [`crate::LeakGuard`]), when it reports tasks left behind at shutdown, and
//! once a minute at most for new `lost_waker` / `idle_too_long` findings;
//! never on the hot path, never on a timer.
//!
//! - [`dump`]: the policy check and the bounded dump's entry points;
//!   [`request`]: what a caller asks of it; [`dumped`]: the result; `run`
//!   (compiled only with task dumps) takes it: one at a time, gated on the
//!   threads inside a poll (from the watch slots), with a deadline, never
//!   blocking a worker;
//! - `resolve` (only with task dumps): a trace as frames;
//! - [`frames`]: from raw frames to where a task waits (trimmed, paths made
//!   relative), and [`collect`]: the stacks of the tasks a caller wants;
//! - [`stack`]: [`AsyncStack`](stack::AsyncStack) and
//!   [`TaskStack`](stack::TaskStack), as taskscope hands them out;
//! - [`error`]: why a dump was not taken ([`TaskDumpError`](error::TaskDumpError));
//! - [`shutdown`]: the dump before the runtime drops the tasks left behind;
//! - [`on_leak`]: the dump for new leak findings.

pub(crate) mod collect;
pub(crate) mod dump;
pub(crate) mod dumped;
pub(crate) mod error;
pub(crate) mod frames;
pub(crate) mod on_leak;
pub(crate) mod request;
#[cfg(taskscope_taskdump)]
mod resolve;
#[cfg(taskscope_taskdump)]
mod run;
pub(crate) mod shutdown;
pub(crate) mod stack;

#[cfg(all(test, taskscope_taskdump))]
pub(crate) mod tests;
