//! [`task_stacks`]: every live task with where it waits, like asyncio's
//! `Task.print_stack()` for all tasks at once.

use std::collections::HashSet;

use tokio::runtime::Handle;

use crate::capture::poll;
use crate::detect::taskdump::collect::{path_trim, stacks};
use crate::detect::taskdump::dump::{Gate, Options, dump_async};
use crate::detect::taskdump::error::TaskDumpError;
use crate::detect::taskdump::stack::{AsyncStack, TaskStack};
use crate::session;

/// The note of the task that called [`task_stacks`].
const CALLER: &str = "the task that took the dump: a dump does not trace the task taking it";

/// The note of a `block_on` future.
const BLOCK_ON: &str = "a runtime's block_on future: Tokio's task dump traces spawned tasks only";

/// Every live task of the app, with where it waits (its async stack), from
/// one Tokio task dump of the runtime this is called in.
///
/// Needs the crate's `taskdump` feature (Linux x86_64 or aarch64, with
/// `--cfg tokio_unstable`), and a runtime the policy lets taskscope dump
/// (`TASKSCOPE_TASKDUMP`: current-thread runtimes by default; see
/// [`TaskDumps`](crate::TaskDumps)). The dump pauses the runtime while it
/// re-polls every idle task in Tokio's tracing mode (about 4 µs a task in a
/// release build, 11 µs in a debug one; see `BENCHMARKS.md`), and is bounded:
/// one at a time, refused while a worker is stuck in a poll, at most 2 s. The
/// stacks are then resolved on the runtime's blocking pool (reading the
/// binary's debug info: about 100 ms the first time in a process).
///
/// Tasks the dump did not trace (the caller, tasks of other runtimes, tasks
/// running while it ran) are listed with an empty stack and a note saying why.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let _ts = taskscope::Builder::new().server_addr(taskscope::ServerAddr::Off).try_init();
/// let (_tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
/// tokio::spawn(async move { rx.recv().await });
/// tokio::task::yield_now().await;
/// match taskscope::task_stacks().await {
///     Ok(tasks) => {
///         for t in tasks {
///             println!("task {} spawned at {}\n{}", t.task.id, t.task.spawned_at, t.stack);
///         }
///     }
///     // Without the `taskdump` feature: says how to get it.
///     Err(why) => println!("{why}"),
/// }
/// # }
/// ```
pub async fn task_stacks() -> Result<Vec<TaskStack>, TaskDumpError> {
    let session = session::global().ok_or(TaskDumpError::NoRuntime("taskscope is not started"))?;
    let handle = Handle::try_current().map_err(|_| {
        TaskDumpError::NoRuntime("task_stacks() was called outside a Tokio runtime")
    })?;
    let caller = poll::current_key();
    let gate = Gate {
        session,
        caller_key: caller,
    };
    let dumped = dump_async(
        &handle,
        session.settings.task_dumps,
        &Options::default(),
        &gate,
    )
    .await?;
    let cells = session.registry.live_cells_with_keys();
    let block_on: HashSet<u64> = cells
        .iter()
        .filter(|(_, c)| c.is_block_on)
        .map(|(_, c)| c.id)
        .collect();
    let want: HashSet<u64> = cells
        .iter()
        .filter(|(key, c)| !c.is_block_on && Some(*key) != caller)
        .map(|(_, c)| c.id)
        .collect();
    let mut paths = path_trim(session);
    let resolve = move || stacks(&dumped, Some(&want), &mut paths, None);
    let mut by_task = match tokio::task::spawn_blocking(resolve).await {
        Ok(by_task) => by_task,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    };
    let tasks = session.registry.snapshot();
    Ok(tasks
        .into_iter()
        .map(|task| {
            let stack = by_task.remove(&task.id).unwrap_or_else(|| {
                if block_on.contains(&task.id) {
                    AsyncStack::missing(BLOCK_ON)
                } else if caller.is_some_and(|key| key == task.id) {
                    AsyncStack::missing(CALLER)
                } else {
                    AsyncStack::missing("spawned after the dump was taken")
                }
            });
            TaskStack { task, stack }
        })
        .collect())
}
