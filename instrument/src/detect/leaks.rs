//! Leaked tasks: alive when the app shuts down, idle with no waker left (lost
//! waker), or idle for longer than the configured limit.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use taskscope_api::{Finding, FindingKind, LeakReason};

use crate::clock;
use crate::detect::taskdump::collect::Waiting;
use crate::detect::taskdump::stack::AsyncStack;
use crate::detect::taskdump::{on_leak, shutdown};
use crate::model::task::{REPORTED_LOST, REPORTED_SHUTDOWN, TaskCell, TaskState};
use crate::session::Session;

/// A task must look lost for this long before it is reported (wakers move
/// between owners in steps; a glimpse of zero is not a leak).
const LOST_AFTER_NS: u64 = 300_000_000;

/// The `leaked_task` finding of `cell`, for `reason`, at clock time `now`,
/// waiting at `stack`.
pub(crate) fn finding(cell: &TaskCell, reason: LeakReason, now: u64, stack: AsyncStack) -> Finding {
    let info = cell.info(now);
    Finding::new(
        FindingKind::LeakedTask {
            reason,
            age_ms: info.age.as_millis() as u64,
            idle_ms: info.since_last_poll.unwrap_or(info.age).as_millis() as u64,
            waiting_at: stack.waiting_at,
            waiting_at_note: stack.note,
        },
        Some(cell.task_ref()),
    )
}

/// Marks `flag` on `cell`; true the first time.
fn first_time(cell: &TaskCell, flag: u8) -> bool {
    cell.reported.fetch_or(flag, Relaxed) & flag == 0
}

/// Lost wakers and idle limits: run by the watchdog every few hundred ms.
/// New findings are completed with where their tasks wait (one bounded task
/// dump, at most once a minute: [`on_leak`]) before they are submitted.
pub(crate) fn scan(session: &Session) {
    let lost_waker = session.wakes_known.load(Relaxed);
    let idle_limit = session
        .settings
        .idle_limit
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    if !lost_waker && idle_limit.is_none() {
        return;
    }
    let now = clock::now();
    let mut found: Vec<(Arc<TaskCell>, LeakReason)> = Vec::new();
    for cell in session.registry.live_cells() {
        if cell.is_block_on || cell.state() != TaskState::Idle {
            continue;
        }
        let last_end = cell.last_poll_end.load(Relaxed);
        if last_end == 0 {
            continue;
        }
        let idle = clock::since(last_end, now);
        if lost_waker
            && idle >= LOST_AFTER_NS
            && cell.wakers.load(Relaxed) == 0
            && first_time(&cell, REPORTED_LOST)
        {
            found.push((Arc::clone(&cell), LeakReason::LostWaker));
        }
        if let Some(limit) = idle_limit
            && idle >= limit
            && cell.idle_reported_at.swap(last_end, Relaxed) != last_end
        {
            found.push((cell, LeakReason::IdleTooLong));
        }
    }
    if found.is_empty() {
        return;
    }
    let cells: Vec<Arc<TaskCell>> = found.iter().map(|(cell, _)| Arc::clone(cell)).collect();
    let mut waiting = on_leak::waiting(session, &cells);
    let mut stacks = std::collections::HashMap::new();
    for (cell, reason) in found {
        let stack = stacks
            .entry(cell.id)
            .or_insert_with(|| waiting.take(cell.id))
            .clone();
        session.submit(finding(&cell, reason, now, stack));
    }
}

/// Every task still alive as the app shuts down (the guard is dropped), but
/// the `block_on` future itself and `current`, the task dropping the guard,
/// each with where it waits.
pub(crate) fn report_alive_at_shutdown(
    session: &Session,
    current: Option<u64>,
    waiting: &mut Waiting,
) {
    let now = clock::now();
    let mut cells = session.registry.live_cells_with_keys();
    cells.sort_by_key(|(_, c)| c.id);
    for (key, cell) in cells {
        if cell.is_block_on || Some(key) == current {
            continue;
        }
        if first_time(&cell, REPORTED_SHUTDOWN) {
            let stack = waiting.take(cell.id);
            session.submit(finding(&cell, LeakReason::AliveAtShutdown, now, stack));
        }
    }
}

/// A task dropped by its runtime's shutdown while pending (runtime hooks
/// path), with where it waited if the runtime was dumped before its drop.
pub(crate) fn dropped_at_shutdown(session: &Session, cell: &TaskCell) {
    if !cell.is_block_on && first_time(cell, REPORTED_SHUTDOWN) {
        let stack = shutdown::take(cell.id);
        session.submit(finding(
            cell,
            LeakReason::AliveAtShutdown,
            clock::now(),
            stack,
        ));
    }
}
