//! Where the tasks of new `lost_waker` and `idle_too_long` findings wait:
//! the watchdog asks for one bounded dump of the app's runtime before it
//! reports them, at most once every [`EVERY`] (never on a timer: only when
//! there is a new finding to complete).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::detect::taskdump::collect::{Waiting, path_trim, stacks};
use crate::detect::taskdump::dump::{Gate, Options, allowed, dump_blocking};
use crate::detect::taskdump::error::not_built;
use crate::model::app_runtime;
use crate::session::Session;
use crate::sync::lock;

/// At most one dump for leak findings in this long.
pub(crate) const EVERY: Duration = Duration::from_secs(60);

/// How long the watchdog waits for the dump (it watches slow polls too).
const TIMEOUT: Duration = Duration::from_millis(250);

/// How long it may spend resolving the stacks.
const RESOLVE_FOR: Duration = Duration::from_secs(2);

/// When the last one was taken.
static LAST: Mutex<Option<Instant>> = Mutex::new(None);

/// Where the tasks `ids` wait: one bounded dump of the app's runtime, unless
/// one was taken less than [`EVERY`] ago, dumps are not compiled in or off.
pub(crate) fn waiting(session: &Session, ids: &HashSet<u64>) -> Waiting {
    if let Some(why) = not_built() {
        return Waiting::none(why);
    }
    let Some(handle) = app_runtime::handle() else {
        return Waiting::none("no task dump: taskscope has not seen the app's runtime");
    };
    if let Err(err) = allowed(session.settings.task_dumps, handle.runtime_flavor()) {
        return Waiting::none(err.to_string());
    }
    {
        let mut last = lock(&LAST);
        if let Some(at) = *last
            && at.elapsed() < EVERY
        {
            return Waiting::none(format!(
                "no task dump: taskscope takes at most one a minute for leak findings (the last {} s ago)",
                at.elapsed().as_secs()
            ));
        }
        *last = Some(Instant::now());
    }
    let opts = Options {
        timeout: TIMEOUT,
        ..Options::default()
    };
    let gate = Gate {
        session,
        caller_key: None,
    };
    let started = Instant::now();
    match dump_blocking(handle, session.settings.task_dumps, &opts, &gate) {
        Ok(dumped) => Waiting::dumped(stacks(
            &dumped,
            Some(ids),
            &mut path_trim(session),
            Some(started + RESOLVE_FOR),
        )),
        Err(err) => Waiting::none(err.to_string()),
    }
}
