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

/// The metrics of `handle`'s runtime (read by [`app_runtime::figures`]).
pub(crate) fn metrics_of(handle: &Handle) -> proto::RuntimeMetrics {
    let f = app_runtime::figures(handle);
    proto::RuntimeMetrics {
        available: true,
        workers: f.workers,
        alive_tasks: f.alive_tasks,
        global_queue_depth: f.global_queue_depth,
        local_queue_depths: f.local_queue_depths,
        blocking_threads: f.blocking_threads,
        blocking_queue_depth: f.blocking_queue_depth,
    }
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
