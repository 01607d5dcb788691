//! Where the tasks of new `lost_waker` and `idle_too_long` findings wait:
//! the watchdog asks for one bounded dump of the app's runtime before it
//! reports them, at most once every [`EVERY`] (never on a timer: only when
//! there is a new finding to complete).
//!
//! The dump is kept for that minute: a finding made later in it gets its
//! task's stack from the kept dump when the task has not run since (Tokio
//! re-polls every traced task once right after a dump, so "not run since"
//! is "polled at most once more"). That bounds what leak findings cost the
//! app to one dump a minute, and what taskscope keeps to one dump (about
//! 360 bytes a task).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::detect::taskdump::collect::{Waiting, path_trim, stack_at};
use crate::detect::taskdump::dump::{allowed, dump_blocking};
use crate::detect::taskdump::dumped::Dumped;
use crate::detect::taskdump::error::not_built;
use crate::detect::taskdump::request::{Gate, Options};
use crate::model::app_runtime;
use crate::model::task::TaskCell;
use crate::session::Session;
use crate::sync::lock;

/// At most one dump for leak findings in this long.
pub(crate) const EVERY: Duration = Duration::from_secs(60);

/// How long the watchdog waits for the dump (it watches slow polls too).
const TIMEOUT: Duration = Duration::from_millis(250);

/// How long it may spend resolving the stacks of one scan's findings.
const RESOLVE_FOR: Duration = Duration::from_secs(2);

/// The last dump taken for leak findings.
struct Kept {
    taken: Instant,
    dumped: Dumped,
    /// Each traced task's index in the dump, and its poll count before it.
    tasks: HashMap<u64, (usize, u64)>,
}

static KEPT: Mutex<Option<Arc<Kept>>> = Mutex::new(None);

/// After a dump for leak findings could not be taken, the next try waits this long.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// When the last try failed, and why.
static FAILED: Mutex<Option<(Instant, String)>> = Mutex::new(None);

/// Where the tasks `cells` wait: from the dump taken for leak findings in
/// the last [`EVERY`], or from a new one; unless dumps are not compiled in,
/// not allowed for the app's runtime, or it cannot be taken.
pub(crate) fn waiting(session: &Session, cells: &[Arc<TaskCell>]) -> Waiting {
    if let Some(why) = not_built() {
        return Waiting::none(why);
    }
    let Some(handle) = app_runtime::handle() else {
        return Waiting::none("no task dump: taskscope has not seen the app's runtime");
    };
    if let Err(err) = allowed(session.settings.task_dumps, handle.runtime_flavor(), false) {
        return Waiting::none(err.to_string());
    }
    let kept = {
        let mut kept = lock(&KEPT);
        if kept.as_ref().is_some_and(|k| k.taken.elapsed() >= EVERY) {
            *kept = None;
        }
        kept.clone()
    };
    let kept = match kept {
        Some(kept) => kept,
        None => {
            if let Some((at, why)) = lock(&FAILED).as_ref()
                && at.elapsed() < RETRY_AFTER
            {
                return Waiting::none(format!(
                    "{why} ({:.1} s ago; taskscope tries again {} s later)",
                    at.elapsed().as_secs_f64(),
                    RETRY_AFTER.as_secs()
                ));
            }
            let polls: HashMap<u64, u64> = session
                .registry
                .live_cells()
                .iter()
                .map(|c| (c.id, c.polls.load(Relaxed)))
                .collect();
            let opts = Options {
                timeout: TIMEOUT,
                ..Options::default()
            };
            let gate = Gate {
                session,
                caller_key: None,
                asked: false,
            };
            let dumped = match dump_blocking(handle, session.settings.task_dumps, &opts, &gate) {
                Ok(dumped) => dumped,
                Err(err) => {
                    *lock(&FAILED) = Some((Instant::now(), err.to_string()));
                    return Waiting::none(err.to_string());
                }
            };
            let tasks = dumped
                .task_ids()
                .into_iter()
                .enumerate()
                .filter_map(|(i, id)| polls.get(&id).map(|&p| (id, (i, p))))
                .collect();
            let kept = Arc::new(Kept {
                taken: Instant::now(),
                dumped,
                tasks,
            });
            *lock(&KEPT) = Some(Arc::clone(&kept));
            kept
        }
    };
    let started = Instant::now();
    let mut paths = path_trim(session);
    let mut by_task = HashMap::new();
    for cell in cells {
        let Some(&(index, polls_before)) = kept.tasks.get(&cell.id) else {
            continue;
        };
        // Polled more than twice since the dump (its trace poll, which the
        // tracing capture sees, and Tokio's wake-up right after): it ran,
        // and the kept stack may be stale.
        if cell.polls.load(Relaxed) > polls_before + 2 {
            continue;
        }
        if started.elapsed() > RESOLVE_FOR {
            break;
        }
        by_task.insert(cell.id, stack_at(&kept.dumped, index, &mut paths));
    }
    let mut waiting = Waiting::dumped(by_task);
    waiting.otherwise = format!(
        "not in the task dump taken {:.1} s ago for leak findings, or it ran since \
         (taskscope takes at most one such dump a minute)",
        kept.taken.elapsed().as_secs_f64()
    );
    waiting
}
