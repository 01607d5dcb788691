//! The app's runtime metrics, as the protocol sends them.

use tokio::runtime::Handle;

use taskscope_api::proto;

use crate::model::app_runtime;

/// The app runtime's metrics now (`available: false` before a runtime is seen).
pub(crate) fn metrics() -> proto::RuntimeMetrics {
    match app_runtime::handle() {
        Some(handle) => metrics_of(handle),
        None => proto::RuntimeMetrics::default(),
    }
}

/// The metrics of `handle`'s runtime. The per-worker queue depths and the
/// blocking pool's figures need `--cfg tokio_unstable` (0 and empty without).
pub(crate) fn metrics_of(handle: &Handle) -> proto::RuntimeMetrics {
    let m = handle.metrics();
    #[allow(unused_mut)]
    let mut out = proto::RuntimeMetrics {
        available: true,
        workers: m.num_workers() as u64,
        alive_tasks: m.num_alive_tasks() as u64,
        global_queue_depth: m.global_queue_depth() as u64,
        ..Default::default()
    };
    #[cfg(tokio_unstable)]
    {
        out.local_queue_depths = (0..m.num_workers())
            .map(|w| m.worker_local_queue_depth(w) as u64)
            .collect();
        out.blocking_threads = m.num_blocking_threads() as u64;
        out.blocking_queue_depth = m.blocking_queue_depth() as u64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_runtime_count_its_workers_and_tasks() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let _pending = rt.spawn_blocking(move || rx.recv());
        let task = rt.spawn(std::future::pending::<()>());
        let m = metrics_of(rt.handle());
        assert!(m.available);
        assert_eq!(m.workers, 2);
        assert!(m.alive_tasks >= 1, "{m:?}");
        #[cfg(tokio_unstable)]
        {
            assert_eq!(m.local_queue_depths.len(), 2);
            assert!(m.blocking_threads >= 1, "{m:?}");
        }
        task.abort();
        drop(tx);
    }
}
