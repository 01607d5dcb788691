//! The app's Tokio runtime, for its metrics. The handle is taken where an app
//! thread is inside the runtime: `init()` and `Builder::layer()` (when called
//! inside the runtime), and else lazily at the first poll on each thread (the
//! once-per-thread registration of its watchdog slot, off the per-poll path).
//! With `install_on` the runtime does not exist yet when taskscope starts, so
//! the lazy path is the one that finds it. The first runtime seen is kept.
//!
//! [`figures`] reads its metrics for both the viewer server and the
//! Prometheus endpoint.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::Handle;

static RUNTIME: OnceLock<Handle> = OnceLock::new();

/// Keeps the runtime the calling thread is in, if none is kept yet.
/// Cheap when one is (one atomic load); never keeps taskscope's own runtime.
pub(crate) fn note_current() {
    if RUNTIME.get().is_some() || crate::internal::is_internal_thread() {
        return;
    }
    if let Ok(handle) = Handle::try_current() {
        let _ = RUNTIME.set(handle);
    }
}

/// The app's runtime, once seen.
pub(crate) fn handle() -> Option<&'static Handle> {
    RUNTIME.get()
}

/// A runtime's metrics at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RuntimeFigures {
    /// Worker threads.
    pub(crate) workers: u64,
    /// Tasks alive on the runtime, as Tokio counts them.
    pub(crate) alive_tasks: u64,
    /// Tasks waiting in the global (injection) queue.
    pub(crate) global_queue_depth: u64,
    /// Time each worker spent busy (running tasks) since the runtime started.
    pub(crate) worker_busy: Vec<Duration>,
    /// Tasks waiting in each worker's local queue (`tokio_unstable` only; empty without).
    pub(crate) local_queue_depths: Vec<u64>,
    /// Threads of the blocking pool (`tokio_unstable` only).
    pub(crate) blocking_threads: u64,
    /// Tasks waiting for a blocking-pool thread (`tokio_unstable` only).
    pub(crate) blocking_queue_depth: u64,
    /// Polls each worker has made (`tokio_unstable` and 64-bit atomics only).
    pub(crate) worker_polls: Vec<u64>,
}

/// The metrics of `handle`'s runtime. The per-worker queue depths and the
/// blocking pool's figures need `--cfg tokio_unstable` (0 and empty without).
pub(crate) fn figures(handle: &Handle) -> RuntimeFigures {
    let m = handle.metrics();
    #[allow(unused_mut)]
    let mut out = RuntimeFigures {
        workers: m.num_workers() as u64,
        alive_tasks: m.num_alive_tasks() as u64,
        global_queue_depth: m.global_queue_depth() as u64,
        worker_busy: (0..m.num_workers())
            .map(|w| m.worker_total_busy_duration(w))
            .collect(),
        ..RuntimeFigures::default()
    };
    #[cfg(tokio_unstable)]
    {
        out.local_queue_depths = (0..m.num_workers())
            .map(|w| m.worker_local_queue_depth(w) as u64)
            .collect();
        out.blocking_threads = m.num_blocking_threads() as u64;
        out.blocking_queue_depth = m.blocking_queue_depth() as u64;
        #[cfg(target_has_atomic = "64")]
        {
            out.worker_polls = (0..m.num_workers())
                .map(|w| m.worker_poll_count(w))
                .collect();
        }
    }
    out
}
