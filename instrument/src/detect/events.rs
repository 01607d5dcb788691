//! What the capture reports to the detectors: a task's end, and the app's
//! shutdown.

use std::sync::atomic::Ordering::Acquire;
use std::time::{Duration, Instant};

use crate::clock;
use crate::detect::{leaks, panics, taskdump, watch_slot};
use crate::model::task::TaskEnd;
use crate::session::Session;

/// A task ended: move it to the history and report what its end means.
/// `at_shutdown`: the runtime dropped it while pending (runtime hooks path).
pub(crate) fn task_ended(session: &Session, key: u64, end: TaskEnd, at_shutdown: bool) {
    let Some(cell) = session.registry.remove(key) else {
        return;
    };
    let panic = if cell.panicked.load(Acquire) {
        cell.take_panic()
    } else {
        None
    };
    let end = if panic.is_some() {
        TaskEnd::Panicked
    } else {
        end
    };
    cell.set_end(end, clock::now());
    if let Some(locations) = &session.locations {
        // After the removal above: see `Totals::now`.
        locations.task_ended(&cell);
    }
    if at_shutdown {
        leaks::dropped_at_shutdown(session, &cell);
    }
    if let Some(panic) = panic {
        session.submit(panics::finding(&cell, panic));
    }
    session.registry.retire(cell);
}

/// The app is shutting down (its guard is dropped): reports the tasks left
/// behind (but `current`, the task dropping the guard, if any), each with
/// where it waits (a task dump of the runtime the guard is dropped in, taken
/// and resolved until `stacks_by`), and the final slow-poll reports still
/// waiting for their stack, waiting for those at most until `deadline`.
pub(crate) fn shutting_down(
    session: &Session,
    current: Option<u64>,
    stacks_by: Instant,
    deadline: Instant,
) {
    leaks::report_alive_at_shutdown(session, current, || {
        taskdump::shutdown::at_guard_drop(session, current, stacks_by)
    });
    while watch_slot::any_pending_final() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Still waiting (the first symbolization can be slow in a debug build
    // under load): report them now, without the stack, rather than lose them.
    for finding in watch_slot::take_pending_finals() {
        session.submit(finding);
    }
}
