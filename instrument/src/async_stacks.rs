//! [`task_stacks`]: every live task with where it waits, like asyncio's
//! `Task.print_stack()` for all tasks at once.

use std::collections::HashSet;

use tokio::runtime::Handle;

use crate::capture::poll;
use crate::detect::taskdump::collect::{path_trim, stacks};
use crate::detect::taskdump::dump::dump_async;
use crate::detect::taskdump::error::TaskDumpError;
use crate::detect::taskdump::request::{Gate, Options};
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
        asked: true,
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

#[cfg(all(test, taskscope_taskdump))]
mod tests {
    use std::time::{Duration, Instant};

    use crate::detect::taskdump::dump::dump_blocking;

    use crate::detect::taskdump::error::TaskDumpError;
    use crate::detect::taskdump::request::{Gate, Options};
    use crate::detect::taskdump::tests::serial;
    use crate::settings::{ServerAddr, TaskDumps};

    /// A runtime with taskscope's hooks (they feed the watch slots the gate
    /// reads), one of whose tasks blocks its thread for `block`; returns the
    /// runtime's handle once that poll is under way, the task's id, and the
    /// thread running the runtime.
    /// The runtime's thread ends its `block_on` once the stuck task is done,
    /// then waits for `release` before the runtime is dropped (a runtime
    /// dropped during a multi-thread dump would leave Tokio's dump thread,
    /// and the flight, waiting for ever).
    fn stuck_runtime(
        multi_thread: bool,
        block: Duration,
    ) -> (
        tokio::runtime::Handle,
        u64,
        std::thread::JoinHandle<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let mut builder = if multi_thread {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2).thread_name("dump-test-worker");
            b
        } else {
            tokio::runtime::Builder::new_current_thread()
        };
        builder.enable_all();
        let guard = crate::Builder::new()
            .server_addr(ServerAddr::Off)
            .install_on(&mut builder);
        std::mem::forget(guard);
        let runtime = builder.build().unwrap();
        let handle = runtime.handle().clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let app = std::thread::Builder::new()
            .name("dump-test-app".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let stuck = tokio::spawn(async move { std::thread::sleep(block) });
                    tx.send(stuck.id().to_string().parse::<u64>().unwrap())
                        .unwrap();
                    let _ = stuck.await;
                });
                let _ = released.recv();
                if multi_thread {
                    // Tokio 1.54 leaves a worker waiting after a partial dump.
                    runtime.shutdown_background();
                }
            })
            .unwrap();
        let id = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        (handle, id, app, release)
    }

    #[test]
    fn a_thread_stuck_in_a_poll_is_named_when_the_dump_is_refused_or_times_out() {
        let _serial = serial();
        let session = crate::session::global().cloned();
        let (handle, id, app, release) = stuck_runtime(false, Duration::from_millis(1500));
        let session = session
            .or_else(|| crate::session::global().cloned())
            .unwrap();
        let gate = Gate {
            session: &session,
            caller_key: None,
            asked: true,
        };
        // The gate: refused at once, naming the thread and the task.
        let t = Instant::now();
        let refused = dump_blocking(
            &handle,
            TaskDumps::CurrentThread,
            &Options::default(),
            &gate,
        )
        .unwrap_err();
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        let text = refused.to_string();
        assert!(
            text.starts_with(&format!(
                "task dump not started: worker dump-test-app has been in a poll of task {id} for 0."
            )),
            "{text}"
        );
        // Past the gate (a poll that began just before the dump): the
        // caller's deadline answers, naming the thread that did not.
        let opts = Options {
            timeout: Duration::from_millis(300),
            max_busy: Duration::from_secs(60),
            ..Options::default()
        };
        let t = Instant::now();
        let err = dump_blocking(&handle, TaskDumps::CurrentThread, &opts, &gate).unwrap_err();
        assert!(
            t.elapsed() < Duration::from_millis(800),
            "{:?}",
            t.elapsed()
        );
        let TaskDumpError::TimedOut { unanswered, .. } = &err else {
            panic!("{err}");
        };
        assert!(
            unanswered
                .iter()
                .any(|w| w.thread == "dump-test-app" && w.task == id),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("; not answering: worker dump-test-app"),
            "{err}"
        );
        // The dump task never started: it holds nothing, the next dump may start.
        assert!(!crate::detect::taskdump::dump::in_flight());
        release.send(()).unwrap();
        app.join().unwrap();
    }

    #[test]
    fn a_multi_thread_dump_with_a_stuck_worker_names_it() {
        let _serial = serial();
        let (handle, id, app, release) = stuck_runtime(true, Duration::from_millis(3000));
        let session = crate::session::global().cloned().unwrap();
        let gate = Gate {
            session: &session,
            caller_key: None,
            asked: true,
        };
        let opts = Options {
            max_busy: Duration::from_secs(60),
            ..Options::default()
        };
        let t = Instant::now();
        let dumped = dump_blocking(&handle, TaskDumps::AlsoMultiThread, &opts, &gate);
        assert!(
            t.elapsed() < Duration::from_millis(2500),
            "{:?}",
            t.elapsed()
        );
        // Tokio's workers wait 250 ms for each other; the dump then goes on
        // without the stuck one (partial), or waits for it past the caller's
        // deadline: either way the stuck worker is named.
        let named = format!("worker dump-test-worker has been in a poll of task {id} for");
        match dumped {
            Ok(dumped) => {
                let partial = dumped.partial.expect("partial");
                assert!(
                    partial.contains(&named) && partial.ends_with("and did not stop for the dump"),
                    "{partial}"
                );
            }
            Err(err @ TaskDumpError::TimedOut { .. }) => {
                assert!(err.to_string().contains(&named), "{err}");
            }
            Err(err) => panic!("{err}"),
        }
        // Once the stuck poll is over, Tokio's dump ends and frees the next one.
        let until = Instant::now() + Duration::from_secs(10);
        while crate::detect::taskdump::dump::in_flight() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let freed = !crate::detect::taskdump::dump::in_flight();
        release.send(()).unwrap();
        app.join().unwrap();
        assert!(freed, "Tokio's dump never ended after the stuck poll did");
    }
}
