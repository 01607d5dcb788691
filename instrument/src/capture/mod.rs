//! Capture: how taskscope sees every task. Two front ends feed the same registry:
//!
//! - [`layer`]: a `tracing` layer over Tokio's own instrumentation (`runtime.spawn`
//!   spans and waker events), which works with `#[tokio::main]` and sees names and wakes;
//! - [`hooks`]: Tokio's runtime task hooks, installed on a `tokio::runtime::Builder`,
//!   cheaper but without task names or wakes.
//!
//! Both call [`poll::begin`] and [`poll::end`] around every poll: the hot path.

pub(crate) mod hooks;
pub(crate) mod layer;
pub(crate) mod panics;
pub(crate) mod poll;
