//! Leaked tasks: alive when the app shuts down, idle with no waker left (lost
//! waker), or idle for longer than the configured limit.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use taskscope_api::{Finding, FindingKind, LeakReason};

use crate::clock;
use crate::detect::taskdump::collect::Waiting;
use crate::detect::taskdump::stack::AsyncStack;
use crate::detect::taskdump::{on_leak, shutdown};
use crate::model::table::Cursor;
use crate::model::task::{REPORTED_LOST, REPORTED_SHUTDOWN, TaskCell, TaskState};
use crate::session::Session;

/// A task must look lost for this long before it is reported (wakers move
/// between owners in steps; a glimpse of zero is not a leak).
const LOST_AFTER_NS: u64 = 300_000_000;

/// The `leaked_task` finding of `cell`, for `reason`, at clock time `now`
/// (where it waits is filled in later: [`set_waiting`]).
pub(crate) fn finding(cell: &TaskCell, reason: LeakReason, now: u64) -> Finding {
    let info = cell.info(now);
    Finding::new(
        FindingKind::LeakedTask {
            reason,
            age_ms: info.age.as_millis() as u64,
            idle_ms: info.since_last_poll.unwrap_or(info.age).as_millis() as u64,
            waiting_at: Vec::new(),
            waiting_at_note: None,
        },
        Some(cell.task_ref()),
    )
}

/// Fills where the task of a `leaked_task` finding waits.
fn set_waiting(finding: &mut Finding, stack: AsyncStack) {
    if let FindingKind::LeakedTask {
        waiting_at,
        waiting_at_note,
        ..
    } = &mut finding.kind
    {
        *waiting_at = stack.waiting_at;
        *waiting_at_note = stack.note;
    }
}

/// Submits `found` with where each task waits. The findings are made before
/// the dump: Tokio polls every task it traced once more right after it,
/// which would make them all look as if they had just run.
fn submit_with_stacks(
    session: &Session,
    found: Vec<(Arc<TaskCell>, Finding)>,
    waiting: impl FnOnce(&[Arc<TaskCell>]) -> Waiting,
) {
    if found.is_empty() {
        return;
    }
    let cells: Vec<Arc<TaskCell>> = found.iter().map(|(cell, _)| Arc::clone(cell)).collect();
    let mut waiting = waiting(&cells);
    let mut stacks = std::collections::HashMap::new();
    for (cell, mut finding) in found {
        let stack = stacks
            .entry(cell.id)
            .or_insert_with(|| waiting.take(cell.id))
            .clone();
        set_waiting(&mut finding, stack);
        session.submit(finding);
    }
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
    /// and submits what it finds after the walk (the walk itself only
    /// looks), completed with where their tasks wait (one bounded task dump,
    /// at most once a minute: [`on_leak`]).
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
        let mut found: Vec<(Arc<TaskCell>, Finding)> = Vec::new();
        self.at = session
            .registry
            .for_each_live_from(from, SCAN_WINDOWS, |_, cell| {
                check(cell, lost_waker, idle_limit, now, &mut found)
            });
        submit_with_stacks(session, found, |cells| on_leak::waiting(session, cells));
    }
}

/// Lost wakers and idle limits of one live task: its findings, noted in
/// `found` (made before any dump: see [`submit_with_stacks`]).
fn check(
    cell: &Arc<TaskCell>,
    lost_waker: bool,
    idle_limit: Option<u64>,
    now: u64,
    found: &mut Vec<(Arc<TaskCell>, Finding)>,
) {
    if cell.is_block_on || cell.state() != TaskState::Idle {
        return;
    }
    let last_end = cell.last_poll_end.load(Relaxed);
    if last_end == 0 {
        return;
    }
    let idle = clock::since(last_end, now);
    if lost_waker && idle >= LOST_AFTER_NS && cell.wakers() == 0 && first_time(cell, REPORTED_LOST)
    {
        found.push((Arc::clone(cell), finding(cell, LeakReason::LostWaker, now)));
    }
    if let Some(limit) = idle_limit
        && idle >= limit
        && cell.idle_reported_at.swap(last_end, Relaxed) != last_end
    {
        found.push((
            Arc::clone(cell),
            finding(cell, LeakReason::IdleTooLong, now),
        ));
    }
}

/// Every task still alive as the app shuts down (the guard is dropped), but
/// the `block_on` future itself and `current`, the task dropping the guard,
/// each with where it waits.
pub(crate) fn report_alive_at_shutdown(
    session: &Session,
    current: Option<u64>,
    waiting: impl FnOnce() -> Waiting,
) {
    let now = clock::now();
    let mut cells = session.registry.live_cells_with_keys();
    cells.sort_by_key(|(_, c)| c.id);
    let mut found = Vec::new();
    for (key, cell) in cells {
        if cell.is_block_on || Some(key) == current {
            continue;
        }
        if first_time(&cell, REPORTED_SHUTDOWN) {
            let finding = finding(&cell, LeakReason::AliveAtShutdown, now);
            found.push((cell, finding));
        }
    }
    submit_with_stacks(session, found, |_| waiting());
}

/// A task dropped by its runtime's shutdown while pending (runtime hooks
/// path), with where it waited if the runtime was dumped before its drop.
pub(crate) fn dropped_at_shutdown(session: &Session, cell: &TaskCell) {
    if !cell.is_block_on && first_time(cell, REPORTED_SHUTDOWN) {
        let mut finding = finding(cell, LeakReason::AliveAtShutdown, clock::now());
        set_waiting(&mut finding, shutdown::take(cell.id));
        session.submit(finding);
    }
}
