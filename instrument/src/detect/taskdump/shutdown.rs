//! Where the tasks left behind at shutdown wait: dumped before the runtime
//! drops them (once it has, nothing can be polled any more).
//!
//! - `init()` / `Builder::layer()`: the guard is dropped at the end of
//!   `main`'s body, inside `block_on`, while the runtime still holds every
//!   task: [`at_guard_drop`] dumps the runtime it is in (a current-thread
//!   runtime from its own thread, at once; a multi-thread one from its
//!   `block_on` thread, which is no worker).
//! - `#[taskscope::main]` / `Builder::install_on`: Tokio's hooks see the
//!   tasks left behind only while the runtime drops them. The macro calls
//!   [`before_runtime_drop`] between `block_on` and the runtime's drop (as
//!   `Guard::before_runtime_drop` lets `install_on` users do); the stacks
//!   wait in a cache for the hooks' reports ([`take`]).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};

use crate::detect::taskdump::collect::{Waiting, path_trim, stacks};
use crate::detect::taskdump::dump::{dump_async, dump_blocking};
use crate::detect::taskdump::error::not_built;
use crate::detect::taskdump::request::{Gate, Options};
use crate::detect::taskdump::stack::AsyncStack;
use crate::session::Session;
use crate::sync::lock;

/// The longest a shutdown dump may take (the rest of the deadline is for
/// resolving its stacks).
const SHUTDOWN_DUMP_TIMEOUT: Duration = Duration::from_secs(1);

/// How long [`before_runtime_drop`] may take in all.
pub(crate) const BEFORE_DROP_TIMEOUT: Duration = Duration::from_secs(3);

/// The note of a task dropped by a runtime taskscope did not dump first.
const NOT_DUMPED_BEFORE_DROP: &str = "the runtime dropped it before taskscope could dump it \
     (with Builder::install_on, call Guard::before_runtime_drop(&runtime) before dropping the runtime)";

/// The live tasks that will be reported as left behind: all but the
/// `block_on` futures and the caller's task.
fn left_behind(session: &Session, caller_key: Option<u64>) -> HashSet<u64> {
    session
        .registry
        .live_cells_with_keys()
        .into_iter()
        .filter(|(key, cell)| !cell.is_block_on && Some(*key) != caller_key)
        .map(|(_, cell)| cell.id)
        .collect()
}

/// The guard's drop (`init()`, `Builder::layer()`): dumps the runtime the
/// calling thread is in, and resolves the stacks of the tasks left behind
/// until `deadline`.
pub(crate) fn at_guard_drop(
    session: &Session,
    caller_key: Option<u64>,
    deadline: Instant,
) -> Waiting {
    let want = left_behind(session, caller_key);
    if want.is_empty() {
        return Waiting::default();
    }
    let Ok(handle) = Handle::try_current() else {
        return Waiting::none(
            "no task dump: taskscope's guard was dropped outside the app's runtime",
        );
    };
    let opts = Options {
        timeout: SHUTDOWN_DUMP_TIMEOUT.min(deadline.saturating_duration_since(Instant::now())),
        ..Options::default()
    };
    let gate = Gate {
        session,
        caller_key,
        asked: false,
    };
    match dump_blocking(&handle, session.settings.task_dumps, &opts, &gate) {
        Ok(dumped) => Waiting::dumped(stacks(
            &dumped,
            Some(&want),
            &mut path_trim(session),
            Some(deadline),
        )),
        Err(err) => Waiting::none(err.to_string()),
    }
}

/// Stacks of the tasks a runtime is about to drop (hooks path), read by [`take`].
static CACHE: Mutex<Option<Waiting>> = Mutex::new(None);

/// Dumps `runtime` after its `block_on` returned and before it is dropped,
/// and keeps the stacks for the reports of the tasks it will drop. Takes at
/// most [`BEFORE_DROP_TIMEOUT`].
pub(crate) fn before_runtime_drop(session: &Session, runtime: &Runtime) {
    let start = Instant::now();
    let want = left_behind(session, None);
    let waiting = if want.is_empty() {
        Waiting::default()
    } else {
        let handle = runtime.handle().clone();
        let opts = Options {
            timeout: SHUTDOWN_DUMP_TIMEOUT,
            ..Options::default()
        };
        let gate = Gate {
            session,
            caller_key: None,
            asked: false,
        };
        // A new `block_on` gives a current-thread runtime's thread back its
        // core: the dump is then taken at once, on this thread.
        let dumped = runtime.block_on(dump_async(
            &handle,
            session.settings.task_dumps,
            &opts,
            &gate,
        ));
        match dumped {
            Ok(dumped) => Waiting::dumped(stacks(
                &dumped,
                Some(&want),
                &mut path_trim(session),
                Some(start + BEFORE_DROP_TIMEOUT),
            )),
            Err(err) => Waiting::none(err.to_string()),
        }
    };
    *lock(&CACHE) = Some(waiting);
}

/// Where task `id`, dropped by its runtime at shutdown, waited (from
/// [`before_runtime_drop`]), or why that is not known.
pub(crate) fn take(id: u64) -> AsyncStack {
    match lock(&CACHE).as_mut() {
        Some(waiting) => waiting.take(id),
        None => AsyncStack::missing(not_built().unwrap_or(NOT_DUMPED_BEFORE_DROP)),
    }
}
