//! Capture: how taskscope sees every task. Three front ends feed the same registry:
//!
//! - [`subscriber`]: what [`crate::init`] installs, a `tracing` subscriber that
//!   reads Tokio's own instrumentation (`runtime.spawn` spans and waker events,
//!   see [`tokio_spans`]) directly; works with `#[tokio::main]`, sees names and wakes;
//! - [`layer`]: the same as a layer for an app's own `tracing_subscriber::registry()`
//!   (costlier: the registry's bookkeeping runs for every poll and wake);
//! - [`hooks`]: Tokio's runtime task hooks, installed on a `tokio::runtime::Builder`,
//!   cheaper but without task names or wakes.
//!
//! All call [`poll::begin`] and [`poll::end`] around every poll: the hot path.
//! The first two come with the default cargo feature `tracing-capture`. One
//! of them per process ([`mode`]).

#[cfg(tokio_unstable)]
pub(crate) mod hooks;
// Without `--cfg tokio_unstable` Tokio has no task hooks: the same `install`,
// which installs nothing (taskscope then sees no task; the builder says so).
#[cfg(not(tokio_unstable))]
#[path = "no_hooks.rs"]
pub(crate) mod hooks;
#[cfg(feature = "tracing-capture")]
pub(crate) mod layer;
pub(crate) mod mode;
pub(crate) mod panics;
pub(crate) mod poll;
#[cfg(feature = "tracing-capture")]
pub(crate) mod subscriber;
#[cfg(feature = "tracing-capture")]
pub(crate) mod tokio_spans;
