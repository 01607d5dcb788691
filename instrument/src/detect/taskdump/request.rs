//! What a caller asks of a dump: its bounds ([`Options`]) and who asks ([`Gate`]).

use std::time::Duration;

use crate::session::Session;

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
