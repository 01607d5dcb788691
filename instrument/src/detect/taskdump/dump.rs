//! A task dump as the rest of taskscope asks for one: the policy check and
//! the bounded dump (see `run.rs`, compiled only with task dumps).

use tokio::runtime::{Handle, RuntimeFlavor};

use crate::detect::taskdump::dumped::Dumped;
use crate::detect::taskdump::error::{TaskDumpError, not_built};
use crate::detect::taskdump::request::{Gate, Options};
use crate::settings::TaskDumps;

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
