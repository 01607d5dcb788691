//! Leaked tasks: alive when the app shuts down, idle with no waker left (lost
//! waker), or idle for longer than the configured limit.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use taskscope_api::{Finding, FindingKind, LeakReason};

use crate::clock;
use crate::model::table::Cursor;
use crate::model::task::{REPORTED_LOST, REPORTED_SHUTDOWN, TaskCell, TaskState};
use crate::session::Session;

/// A task must look lost for this long before it is reported (wakers move
/// between owners in steps; a glimpse of zero is not a leak).
const LOST_AFTER_NS: u64 = 300_000_000;

/// The `leaked_task` finding of `cell`, for `reason`, at clock time `now`.
pub(crate) fn finding(cell: &TaskCell, reason: LeakReason, now: u64) -> Finding {
    let info = cell.info(now);
    Finding::new(
        FindingKind::LeakedTask {
            reason,
            age_ms: info.age.as_millis() as u64,
            idle_ms: info.since_last_poll.unwrap_or(info.age).as_millis() as u64,
        },
        Some(cell.task_ref()),
    )
}

/// Marks `flag` on `cell`; true the first time.
fn first_time(cell: &TaskCell, flag: u8) -> bool {
    cell.reported.fetch_or(flag, Relaxed) & flag == 0
}

/// Windows of the task table (8 slots each) one step of the leak scan
/// visits: at most 2,048 records a step (a fraction of a millisecond), so the
/// watchdog's look at the workers' slots is never held up, and the scan takes
/// about 1% of a core however many tasks there are. A pass over a million
/// live tasks takes ~600 steps (one per watchdog tick: ~6 s, which is then
/// how late a lost waker can be reported); the table's first level (16,384
/// slots, enough for ~14,000 tasks) takes 8 steps.
pub(crate) const SCAN_WINDOWS: usize = 256;

/// The leak scan (lost wakers, idle limits) in steps: the watchdog starts a
/// pass every few hundred ms and takes one step per tick until it is done.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Where the pass under way goes on; `None` between passes.
    at: Option<Cursor>,
}

impl Scan {
    /// Starts a pass, unless one is under way.
    pub(crate) fn start(&mut self) {
        self.at.get_or_insert(Cursor::START);
    }

    /// Whether a pass is under way.
    pub(crate) fn running(&self) -> bool {
        self.at.is_some()
    }

    /// One step of the pass under way: checks the next tasks of the table
    /// and submits what it finds (after the walk: the walk itself only looks).
    pub(crate) fn step(&mut self, session: &Session) {
        let Some(from) = self.at else {
            return;
        };
        let lost_waker = session.wakes_known.load(Relaxed);
        let idle_limit = session
            .settings
            .idle_limit
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        if !lost_waker && idle_limit.is_none() {
            self.at = None;
            return;
        }
        let now = clock::now();
        let mut found: Vec<(Arc<TaskCell>, LeakReason)> = Vec::new();
        self.at = session
            .registry
            .for_each_live_from(from, SCAN_WINDOWS, |_, cell| {
                check(cell, lost_waker, idle_limit, now, &mut found)
            });
        for (cell, reason) in found {
            session.submit(finding(&cell, reason, now));
        }
    }
}

/// Lost wakers and idle limits of one live task: what to report, noted in `found`.
fn check(
    cell: &Arc<TaskCell>,
    lost_waker: bool,
    idle_limit: Option<u64>,
    now: u64,
    found: &mut Vec<(Arc<TaskCell>, LeakReason)>,
) {
    if cell.is_block_on || cell.state() != TaskState::Idle {
        return;
    }
    let last_end = cell.last_poll_end.load(Relaxed);
    if last_end == 0 {
        return;
    }
    let idle = clock::since(last_end, now);
    if lost_waker
        && idle >= LOST_AFTER_NS
        && cell.wakers.load(Relaxed) == 0
        && first_time(cell, REPORTED_LOST)
    {
        found.push((Arc::clone(cell), LeakReason::LostWaker));
    }
    if let Some(limit) = idle_limit
        && idle >= limit
        && cell.idle_reported_at.swap(last_end, Relaxed) != last_end
    {
        found.push((Arc::clone(cell), LeakReason::IdleTooLong));
    }
}

/// Every task still alive as the app shuts down (the guard is dropped), but
/// the `block_on` future itself and `current`, the task dropping the guard.
pub(crate) fn report_alive_at_shutdown(session: &Session, current: Option<u64>) {
    let now = clock::now();
    let mut cells = session.registry.live_cells_with_keys();
    cells.sort_by_key(|(_, c)| c.id);
    for (key, cell) in cells {
        if cell.is_block_on || Some(key) == current {
            continue;
        }
        if first_time(&cell, REPORTED_SHUTDOWN) {
            session.submit(finding(&cell, LeakReason::AliveAtShutdown, now));
        }
    }
}

/// A task dropped by its runtime's shutdown while pending (runtime hooks path).
pub(crate) fn dropped_at_shutdown(session: &Session, cell: &TaskCell) {
    if !cell.is_block_on && first_time(cell, REPORTED_SHUTDOWN) {
        session.submit(finding(cell, LeakReason::AliveAtShutdown, clock::now()));
    }
}
