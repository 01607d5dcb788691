//! The core: the one registry and findings pipeline of the process, and what
//! the capture front ends call when a task is spawned, polled slowly or ends.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::capture::poll;
use crate::pipeline::Pipeline;
use crate::registry::Registry;
use crate::report::ReportFile;
use crate::settings::Settings;
use crate::task::{TaskCell, TaskEnd};
use taskscope_api::{Finding, FindingKind};

pub(crate) struct Core {
    pub(crate) settings: Settings,
    pub(crate) slow_poll_ns: u64,
    pub(crate) registry: Registry,
    pub(crate) pipeline: Pipeline,
    /// The tracing capture is installed: wakes and wakers are known.
    pub(crate) wakes_known: AtomicBool,
}

static CORE: OnceLock<Arc<Core>> = OnceLock::new();

/// The process's core, started with `settings` if none runs yet. The second
/// caller gets the running core (its settings win); returns whether it was new.
pub(crate) fn start(settings: Settings) -> (Arc<Core>, bool) {
    let mut created = false;
    let core = CORE.get_or_init(|| {
        created = true;
        crate::clock::init();
        let report = settings.report_path.clone().map(ReportFile::new);
        let core = Arc::new(Core {
            slow_poll_ns: settings
                .slow_poll_threshold
                .as_nanos()
                .min(u64::MAX as u128) as u64,
            registry: Registry::new(settings.finished_capacity, settings.finished_max_age),
            pipeline: Pipeline::start(report),
            wakes_known: AtomicBool::new(false),
            settings,
        });
        crate::capture::panics::install();
        crate::watchdog::start(&core);
        crate::server::start(&core);
        core
    });
    (Arc::clone(core), created)
}

/// The running core, if taskscope was started.
pub(crate) fn get() -> Option<&'static Arc<Core>> {
    CORE.get()
}

impl Core {
    /// A task was spawned: register it under `key`.
    pub(crate) fn task_spawned(&self, key: u64, cell: TaskCell) {
        self.registry.add(key, crate::cell_pool::new_cell(cell));
    }

    /// A task ended: move it to the history and report what its end means.
    /// `at_shutdown`: the runtime dropped it while pending (runtime hooks path).
    pub(crate) fn task_ended(&self, key: u64, end: TaskEnd, at_shutdown: bool) {
        let Some(cell) = self.registry.remove(key) else {
            return;
        };
        let panic = if cell.panicked.load(std::sync::atomic::Ordering::Acquire) {
            cell.take_panic()
        } else {
            None
        };
        let end = if panic.is_some() {
            TaskEnd::Panicked
        } else {
            end
        };
        cell.set_end(end, crate::clock::now());
        if at_shutdown {
            crate::leaks::dropped_at_shutdown(self, &cell);
        }
        if let Some(panic) = panic {
            self.submit(Finding::new(
                FindingKind::TaskPanicked {
                    message: panic.message,
                    panicked_at: panic.location,
                    joined: None,
                },
                Some(cell.task_ref()),
            ));
        }
        self.registry.retire(cell);
    }

    /// A poll of `cell` took `took_ns`, more than the threshold (cold path).
    #[cold]
    #[inline(never)]
    pub(crate) fn slow_poll_ended(&self, cell: &TaskCell, took_ns: u64, seq: u64) {
        let thread = std::thread::current();
        let finding = Finding::new(
            FindingKind::SlowPoll {
                duration_ms: took_ns as f64 / 1e6,
                threshold_ms: self.settings.slow_poll_threshold.as_millis() as u64,
                thread: thread.name().unwrap_or("<unnamed>").to_string(),
                stack: Vec::new(),
                stack_unavailable: None,
                in_progress: false,
                poll: cell.polls.load(std::sync::atomic::Ordering::Relaxed),
            },
            Some(cell.task_ref()),
        );
        match poll::current_watch_slot() {
            Some(slot) if seq != 0 => slot.finish_slow_poll(seq, finding, |f| self.submit(f)),
            _ => self.submit(finding),
        }
    }

    pub(crate) fn submit(&self, finding: Finding) {
        self.pipeline.submit(finding);
    }

    /// The app is shutting down (its guard is dropped): report what is left behind.
    pub(crate) fn shutting_down(&self) {
        crate::leaks::report_alive_at_shutdown(self);
        // Final slow-poll reports waiting for the watchdog's stack.
        let deadline = std::time::Instant::now() + crate::FLUSH_TIMEOUT;
        while crate::watch_slot::any_pending_final() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Still waiting (the first symbolization can be slow in a debug build
        // under load): report them now, without the stack, rather than lose them.
        for finding in crate::watch_slot::take_pending_finals() {
            self.submit(finding);
        }
    }

    /// Flushes every accepted finding to the sinks, waiting at most `timeout`.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        self.pipeline.flush(timeout)
    }

    /// The task being polled on this thread, as its parent-to-be.
    pub(crate) fn current_task_id() -> Option<u64> {
        poll::with_current(|_, cell| cell.id)
    }
}
