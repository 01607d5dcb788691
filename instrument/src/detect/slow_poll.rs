//! The final report of a slow poll: made on the worker thread as the poll
//! ends (the cold path of the per-poll hot path), completed with the stack
//! the watchdog took while the poll was still blocked.

use std::sync::atomic::Ordering::Relaxed;

use taskscope_api::{Finding, FindingKind};

use crate::detect::watch_slot::WatchSlot;
use crate::model::task::TaskCell;
use crate::session::Session;

/// A poll of `cell` took `took_ns`, more than the threshold. `watched`: this
/// thread's watchdog slot and the poll's sequence number in it, when the
/// poll was the thread's outermost (the watchdog may have its stack).
#[cold]
#[inline(never)]
pub(crate) fn ended(
    session: &Session,
    cell: &TaskCell,
    took_ns: u64,
    watched: Option<(&WatchSlot, u64)>,
) {
    if let Some(locations) = &session.locations {
        // Counted here, where the poll's final report is made (once per
        // poll, whatever the findings queue does with the reports).
        locations.slow_poll(&cell.spawned_at, took_ns);
    }
    let thread = std::thread::current();
    let finding = Finding::new(
        FindingKind::SlowPoll {
            duration_ms: took_ns as f64 / 1e6,
            threshold_ms: session.settings.slow_poll_threshold.as_millis() as u64,
            thread: thread.name().unwrap_or("<unnamed>").to_string(),
            stack: Vec::new(),
            stack_unavailable: None,
            stack_truncated: false,
            in_progress: false,
            poll: cell.polls.load(Relaxed),
        },
        Some(cell.task_ref()),
    );
    match watched {
        Some((slot, seq)) if seq != 0 => slot.finish_slow_poll(seq, finding, |f| session.submit(f)),
        _ => session.submit(finding),
    }
}
