//! A task dump as the rest of taskscope asks for one: the policy check, the
//! bounded dump (see `run.rs`, compiled only with task dumps), and the
//! result, [`Dumped`], whose tasks' stacks are resolved on demand (resolving
//! reads the binary's debug info: about 100 ms the first time in a process).

use std::time::{Duration, SystemTime};

use taskscope_api::StackFrame;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::detect::taskdump::error::{TaskDumpError, not_built};
use crate::session::Session;
use crate::settings::TaskDumps;

/// How a dump is bounded.
#[derive(Clone, Debug)]
#[cfg_attr(not(taskscope_taskdump), allow(dead_code))]
pub(crate) struct Options {
    /// How long the caller waits for the result.
    pub(crate) timeout: Duration,
    /// Refuse to start while a thread has been inside one poll for longer
    /// than this: it would not stop for the dump (Tokio's workers wait for
    /// each other 250 ms at most, then go on with a broken barrier).
    pub(crate) max_busy: Duration,
    /// Multi-thread: refuse while the workers' local queues hold more tasks
    /// than this in all (Tokio 1.54's dump gathers them into one queue of
    /// half capacity, 128, and spins forever when they do not fit).
    pub(crate) max_queued: usize,
}

/// How long a caller waits for a dump by default.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: DEFAULT_TIMEOUT,
            max_busy: Duration::from_millis(20),
            max_queued: 64,
        }
    }
}

/// Who asks for a dump: what the gate needs to know of the caller.
#[cfg_attr(not(taskscope_taskdump), allow(dead_code))]
pub(crate) struct Gate<'a> {
    /// The session (its registry says which task is a `block_on` future).
    pub(crate) session: &'a Session,
    /// The task the caller is polling, if any (its own poll is no obstacle).
    pub(crate) caller_key: Option<u64>,
    /// A person asked for this dump (the viewer, `task_stacks()`, a failing
    /// `LeakGuard`); false when taskscope takes it on its own (shutdown, leak
    /// findings), which it never does of a multi-thread runtime.
    pub(crate) asked: bool,
}

/// Whether `policy` allows a dump of a runtime of this flavor, `asked` for
/// by a person or not.
pub(crate) fn allowed(
    policy: TaskDumps,
    flavor: RuntimeFlavor,
    asked: bool,
) -> Result<(), TaskDumpError> {
    if not_built().is_some() {
        return Err(TaskDumpError::NotBuilt);
    }
    match (policy, flavor) {
        (TaskDumps::Off, _) => Err(TaskDumpError::Off),
        (_, RuntimeFlavor::CurrentThread) => Ok(()),
        (TaskDumps::CurrentThread, _) => Err(TaskDumpError::MultiThreadNotAllowed),
        (TaskDumps::AlsoMultiThread, _) if asked => Ok(()),
        (TaskDumps::AlsoMultiThread, _) => Err(TaskDumpError::MultiThreadOnlyWhenAsked),
    }
}

/// A dump taken: the tasks it traced, and what it says about itself.
pub(crate) struct Dumped {
    #[cfg(taskscope_taskdump)]
    dump: tokio::runtime::Dump,
    /// How long the dump took (the runtime's pause is at most this).
    pub(crate) took: Duration,
    /// Why some tasks are missing, when they are.
    pub(crate) partial: Option<String>,
    /// When it was taken.
    pub(crate) at: SystemTime,
}

impl std::fmt::Debug for Dumped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dumped")
            .field("tasks", &self.task_ids().len())
            .field("took", &self.took)
            .field("partial", &self.partial)
            .finish()
    }
}

impl Dumped {
    #[cfg(taskscope_taskdump)]
    pub(crate) fn new(
        dump: tokio::runtime::Dump,
        took: Duration,
        partial: Option<String>,
        at: SystemTime,
    ) -> Dumped {
        Dumped {
            dump,
            took,
            partial,
            at,
        }
    }

    /// The ids of the traced tasks, in the dump's order.
    pub(crate) fn task_ids(&self) -> Vec<u64> {
        #[cfg(taskscope_taskdump)]
        return self
            .dump
            .tasks()
            .iter()
            .map(|t| crate::model::task::tokio_task_id(t.id()))
            .collect();
        #[cfg(not(taskscope_taskdump))]
        Vec::new()
    }

    /// The raw stacks of the `index`-th traced task (innermost frame first,
    /// names as the debug info has them): resolving them reads the debug info.
    pub(crate) fn raw_stacks(&self, index: usize) -> Vec<Vec<StackFrame>> {
        #[cfg(taskscope_taskdump)]
        return self
            .dump
            .tasks()
            .iter()
            .nth(index)
            .map(|t| crate::detect::taskdump::resolve::raw_stacks(t.trace()))
            .unwrap_or_default();
        #[cfg(not(taskscope_taskdump))]
        {
            let _ = index;
            Vec::new()
        }
    }
}

/// Dumps `handle`'s runtime if `policy` allows it, blocking this thread at
/// most `opts.timeout` (the guard's drop, `LeakGuard::check_blocking`, the
/// watchdog).
pub(crate) fn dump_blocking(
    handle: &Handle,
    policy: TaskDumps,
    opts: &Options,
    gate: &Gate<'_>,
) -> Result<Dumped, TaskDumpError> {
    allowed(policy, handle.runtime_flavor(), gate.asked)?;
    #[cfg(taskscope_taskdump)]
    return crate::detect::taskdump::run::dump_blocking(handle, opts, gate);
    #[cfg(not(taskscope_taskdump))]
    {
        let _ = (opts, gate);
        Err(TaskDumpError::NotBuilt)
    }
}

/// Like [`dump_blocking`], without blocking: for the app's tasks and
/// taskscope's server (any runtime; no timer needed).
pub(crate) async fn dump_async(
    handle: &Handle,
    policy: TaskDumps,
    opts: &Options,
    gate: &Gate<'_>,
) -> Result<Dumped, TaskDumpError> {
    allowed(policy, handle.runtime_flavor(), gate.asked)?;
    #[cfg(taskscope_taskdump)]
    return crate::detect::taskdump::run::dump_async(handle, opts, gate).await;
    #[cfg(not(taskscope_taskdump))]
    {
        let _ = (opts, gate);
        Err(TaskDumpError::NotBuilt)
    }
}

/// Called by the watchdog every few milliseconds: enforces async callers'
/// deadlines, and lets a dump whose caller gave up finish.
pub(crate) fn tick() {
    #[cfg(taskscope_taskdump)]
    crate::detect::taskdump::run::tick();
}

/// Whether a dump is under way (also one whose caller gave up waiting).
#[cfg(all(test, taskscope_taskdump))]
pub(crate) fn in_flight() -> bool {
    crate::detect::taskdump::run::in_flight()
}
