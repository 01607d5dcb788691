//! The stacks of the tasks a caller wants, out of a dump: resolved (reading
//! the debug info) and trimmed, with a note for each task that has none.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crate::detect::taskdump::dumped::Dumped;
use crate::detect::taskdump::frames::{PathTrim, async_stack};
use crate::detect::taskdump::stack::AsyncStack;
use crate::session::Session;

/// Note of a live task the dump did not trace.
pub(crate) const NOT_TRACED: &str =
    "not traced: it was running, or had just been woken, when the dump ran";

/// Note of a task whose stack was not resolved before the caller's deadline.
pub(crate) const NOT_RESOLVED: &str =
    "not resolved: reading the debug info for the dump's stacks took longer than allowed";

/// Paths made relative by what the session's live tasks' spawn locations say.
pub(crate) fn path_trim(session: &Session) -> PathTrim {
    let files: HashSet<&'static str> = session
        .registry
        .live_cells()
        .iter()
        .map(|c| c.spawned_at.file)
        .collect();
    PathTrim::new(files)
}

/// The stacks of the tasks in `want` (all traced tasks when `None`),
/// resolving until `deadline`; a wanted task the dump did not trace gets
/// [`NOT_TRACED`] (or the dump's own reason when it was partial), one not
/// resolved in time [`NOT_RESOLVED`].
pub(crate) fn stacks(
    dumped: &Dumped,
    want: Option<&HashSet<u64>>,
    paths: &mut PathTrim,
    deadline: Option<Instant>,
) -> HashMap<u64, AsyncStack> {
    let mut out = HashMap::new();
    for (index, id) in dumped.task_ids().into_iter().enumerate() {
        if want.is_some_and(|w| !w.contains(&id)) {
            continue;
        }
        let stack = if deadline.is_none_or(|d| Instant::now() < d) {
            stack_at(dumped, index, paths)
        } else {
            AsyncStack::missing(NOT_RESOLVED)
        };
        out.insert(id, stack);
    }
    if let Some(want) = want {
        let missing = not_traced(dumped);
        for &id in want {
            out.entry(id)
                .or_insert_with(|| AsyncStack::missing(missing.clone()));
        }
    }
    out
}

/// Where the `index`-th task of `dumped` waits (resolving its stacks).
pub(crate) fn stack_at(dumped: &Dumped, index: usize, paths: &mut PathTrim) -> AsyncStack {
    async_stack(dumped.raw_stacks(index), paths)
}

/// The note of a task a dump did not trace.
pub(crate) fn not_traced(dumped: &Dumped) -> String {
    match &dumped.partial {
        Some(why) => format!("not traced ({why})"),
        None => NOT_TRACED.to_string(),
    }
}

/// Note of a task missing from a dump that was taken.
const NOT_IN_DUMP: &str = "not in the task dump (spawned after it was taken)";

/// Where each of a set of tasks waits, or one reason for all of them.
#[derive(Debug)]
pub(crate) struct Waiting {
    /// The tasks the dump traced (and those it did not, with a note).
    pub(crate) by_task: HashMap<u64, AsyncStack>,
    /// The note of a task not in `by_task` (no dump: why).
    pub(crate) otherwise: String,
}

impl Default for Waiting {
    fn default() -> Self {
        Waiting::none(NOT_IN_DUMP)
    }
}

impl Waiting {
    /// The stacks of a dump taken.
    pub(crate) fn dumped(by_task: HashMap<u64, AsyncStack>) -> Waiting {
        Waiting {
            by_task,
            otherwise: NOT_IN_DUMP.to_string(),
        }
    }

    /// No dump, for this reason.
    pub(crate) fn none(why: impl Into<String>) -> Waiting {
        Waiting {
            by_task: HashMap::new(),
            otherwise: why.into(),
        }
    }

    /// Where task `id` waits (taken out).
    pub(crate) fn take(&mut self, id: u64) -> AsyncStack {
        self.by_task
            .remove(&id)
            .unwrap_or_else(|| AsyncStack::missing(self.otherwise.clone()))
    }
}
