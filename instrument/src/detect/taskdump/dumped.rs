//! A dump taken ([`Dumped`]): the tasks it traced, whose stacks are resolved
//! on demand (resolving reads the binary's debug info: about 100 ms the first
//! time in a process).

use std::time::{Duration, SystemTime};

use taskscope_api::StackFrame;

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
