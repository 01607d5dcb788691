//! The app's runtime metrics, as the protocol sends them.

use std::sync::Mutex;

use tokio::runtime::Handle;

use taskscope_api::proto;

use crate::model::app_runtime;
use crate::sync::lock;

/// The busy times last sent, by worker: what is sent never goes below them.
static BUSY_SENT: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// The app runtime's metrics now (`available: false` before a runtime is seen).
pub(crate) fn metrics() -> proto::RuntimeMetrics {
    match app_runtime::handle() {
        Some(handle) => {
            let mut m = metrics_of(handle);
            never_less(&mut m.worker_busy_ns, &mut lock(&BUSY_SENT));
            m
        }
        None => proto::RuntimeMetrics::default(),
    }
}

/// Raises each of `busy` to at least what was sent before, and remembers it.
///
/// Tokio counts a worker's busy time when the worker finishes a batch of
/// polls; [`metrics_of`] adds the time so far of a poll still running. When
/// that poll ends, the worker may run more of its batch before Tokio counts
/// it: until then Tokio's figure alone is lower than the one sent while the
/// poll ran, and a viewer would see the worker go back in time.
fn never_less(busy: &mut [u64], sent: &mut Vec<u64>) {
    sent.resize(busy.len().max(sent.len()), 0);
    for (now, before) in busy.iter_mut().zip(sent.iter_mut()) {
        *now = (*now).max(*before);
        *before = *now;
    }
}

/// The metrics of `handle`'s runtime (read by [`app_runtime::figures`]), each
/// worker's busy time with the poll running on it so far. The per-worker
/// queue depths, poll counts and the blocking pool's figures need
/// `--cfg tokio_unstable` (0 and empty without).
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
        worker_polls: f.worker_polls,
        worker_busy_ns: {
            #[allow(unused_mut)]
            let mut busy: Vec<u64> = f
                .worker_busy
                .iter()
                .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
                .collect();
            #[cfg(all(tokio_unstable, target_has_atomic = "64"))]
            add_polls_in_progress(&handle.metrics(), &mut busy);
            busy
        },
    }
}

/// Adds to each worker's busy time the time so far of the poll running on
/// it, if one is (from the worker thread's watch slot): Tokio counts that
/// poll only once the worker's batch of polls ends.
#[cfg(all(tokio_unstable, target_has_atomic = "64"))]
fn add_polls_in_progress(m: &tokio::runtime::RuntimeMetrics, busy: &mut [u64]) {
    use std::sync::atomic::Ordering;

    use crate::clock;
    use crate::detect::watch_slot;

    let slots = watch_slot::all();
    let now = clock::now();
    for (worker, busy) in busy.iter_mut().enumerate() {
        let Some(thread) = m.worker_thread_id(worker) else {
            continue;
        };
        let Some(slot) = slots.iter().find(|s| s.thread_id == thread) else {
            continue;
        };
        let start = slot.start.load(Ordering::Acquire);
        if start != 0 {
            *busy = busy.saturating_add(clock::since(start, now));
        }
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
            assert_eq!(m.worker_polls.len(), 2);
        }
        assert_eq!(m.worker_busy_ns.len(), 2);
        task.abort();
        drop(tx);
    }

    /// Tokio counts a poll's time when its worker's batch ends: without the
    /// poll in progress, a worker blocked in one poll reads as idle.
    #[cfg(all(tokio_unstable, target_has_atomic = "64"))]
    #[test]
    fn a_worker_blocked_in_one_poll_reads_as_busy_while_it_is() {
        use crate::clock;
        use crate::detect::watch_slot;
        use std::time::Duration;

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        rt.spawn(async move {
            // The worker's slot, marked as the capture marks a poll.
            let _ = watch_slot::current();
            let me = std::thread::current().id();
            let slot = watch_slot::all()
                .into_iter()
                .find(|s| s.thread_id == me)
                .expect("this thread's slot");
            slot.begin(1, 1, clock::now());
            started_tx.send(()).unwrap();
            let _ = released.recv();
            slot.end();
        });
        started.recv().unwrap();
        let before = metrics_of(rt.handle()).worker_busy_ns[0];
        std::thread::sleep(Duration::from_millis(300));
        let after = metrics_of(rt.handle()).worker_busy_ns[0];
        release.send(()).unwrap();
        assert!(
            after.saturating_sub(before) >= 250_000_000,
            "busy went from {before} to {after} ns while the poll was blocked 300 ms"
        );
    }

    #[test]
    fn busy_times_sent_never_go_back() {
        let mut sent = Vec::new();
        let mut first = vec![100, 5_000];
        never_less(&mut first, &mut sent);
        assert_eq!(first, [100, 5_000]);
        // Worker 1's long poll ended; Tokio has not counted it yet.
        let mut second = vec![150, 1_000, 7];
        never_less(&mut second, &mut sent);
        assert_eq!(second, [150, 5_000, 7]);
        let mut third = vec![150, 9_000, 8];
        never_less(&mut third, &mut sent);
        assert_eq!(third, [150, 9_000, 8]);
    }
}
