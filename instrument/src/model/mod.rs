//! The model: what taskscope knows about the app's tasks, with no thread and
//! no policy of its own.
//!
//! - [`task`]: one task's live record ([`task::TaskCell`], written by the hot
//!   path) and the snapshots handed out ([`task::TaskInfo`], [`task::FinishedTask`]);
//! - [`table`]: the lock-free table from a task's key to its live record;
//! - [`history`]: the bounded, lock-free ring of finished tasks;
//! - [`record_pool`]: records reused instead of freed and allocated again;
//! - [`registry`]: the three together, the registry of live and finished tasks;
//! - [`app_runtime`]: the app's Tokio runtime, noted where an app thread is inside it;
//! - [`locations`]: running totals by spawn location, for the metrics.

pub(crate) mod app_runtime;
pub(crate) mod history;
pub(crate) mod locations;
pub(crate) mod record_pool;
pub(crate) mod registry;
pub(crate) mod table;
pub(crate) mod task;
