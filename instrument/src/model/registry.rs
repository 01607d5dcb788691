//! The registry: every live task, and a bounded history of finished ones.
//!
//! Neither takes a lock: live tasks are the lock-free [`IdTable`] (which also
//! serves the per-poll lookup, and grows with the number of live tasks),
//! finished ones a lock-free ring ([`History`]). A spawn is one
//! compare-and-swap (its record reused from a per-thread cache, see
//! `record_pool`); an end, one swap in the table and one in the ring. Readers
//! of every live task ([`Registry::for_each_live`]: the leak scan, the
//! publisher, the listing) take no lock and clone nothing.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock;
use crate::model::history::History;
use crate::model::table::{Cursor, IdTable};
use crate::model::task::{FinishedTask, TaskCell, TaskInfo, TaskState};
use crate::sync::lock;

pub(crate) struct Registry {
    /// Live tasks by their key (Tokio's task id, or the span id for the layer).
    table: IdTable<TaskCell>,
    finished: History,
    #[cfg_attr(not(feature = "tracing-capture"), allow(dead_code))]
    files: Mutex<HashSet<&'static str>>,
}

impl Registry {
    pub(crate) fn new(finished_capacity: usize, finished_max_age: Duration) -> Registry {
        Registry {
            table: IdTable::new(),
            finished: History::new(
                finished_capacity,
                u64::try_from(finished_max_age.as_nanos()).unwrap_or(u64::MAX),
                crate::model::record_pool::recycle,
            ),
            files: Mutex::new(HashSet::new()),
        }
    }

    /// A `'static` copy of a source path, interned: there are only as many as source files.
    #[cfg_attr(not(feature = "tracing-capture"), allow(dead_code))]
    pub(crate) fn intern_file(&self, file: &str) -> &'static str {
        let mut files = lock(&self.files);
        if let Some(f) = files.get(file) {
            return f;
        }
        let leaked: &'static str = Box::leak(file.to_owned().into_boxed_str());
        files.insert(leaked);
        leaked
    }

    /// Registers a new task's record under `key` (its record taken from the
    /// pool of reused records).
    pub(crate) fn add(&self, key: u64, cell: TaskCell) {
        self.add_shared(key, crate::model::record_pool::new_cell(cell));
    }

    /// Registers a record already shared elsewhere (the layer keeps a
    /// reference in the span's extensions).
    pub(crate) fn add_shared(&self, key: u64, cell: Arc<TaskCell>) {
        // Refused only when all the table's levels are full (over a billion
        // live tasks): the task is then not tracked, and its record goes.
        if let Err(cell) = self.table.insert(key, cell) {
            drop(cell);
        }
    }

    /// Runs `f` on the live record under `key`: the per-poll lookup.
    ///
    /// # Safety
    ///
    /// As [`IdTable::with`]: the task under `key` must not end before this
    /// returns (call it from the task's own poll or spawn, or from the thread
    /// that will end it); otherwise use [`Registry::with_pinned`].
    #[inline]
    pub(crate) unsafe fn with<R>(&self, key: u64, f: impl FnOnce(&TaskCell) -> R) -> Option<R> {
        // SAFETY: the caller upholds the same contract.
        unsafe { self.table.with(key, f) }
    }

    /// Runs `f` on the live record under `key` from any thread, while the
    /// task may end concurrently (its release waits for `f`).
    #[inline]
    #[cfg_attr(not(feature = "tracing-capture"), allow(dead_code))]
    pub(crate) fn with_pinned<R>(&self, key: u64, f: impl FnOnce(&TaskCell) -> R) -> Option<R> {
        self.table.with_pinned(key, f)
    }

    /// The record under `key`, if live.
    pub(crate) fn get(&self, key: u64) -> Option<Arc<TaskCell>> {
        self.table.get(key)
    }

    /// Takes the task under `key` out of the live set; [`Registry::retire`]
    /// puts it into the finished history once its end is noted on it.
    pub(crate) fn remove(&self, key: u64) -> Option<Arc<TaskCell>> {
        self.table.remove(key)
    }

    /// Keeps a finished task (its end set) in the bounded history.
    pub(crate) fn retire(&self, cell: Arc<TaskCell>) {
        self.finished.push(cell);
    }

    /// Releases finished records past the history's age limit.
    pub(crate) fn prune(&self) {
        self.finished.prune(clock::now());
    }

    /// Calls `f` with every live task's key and record, without a lock and
    /// without cloning (`Arc::clone` the record to keep it). Keep `f` short:
    /// no blocking, no findings submitted (ends of tasks near the one
    /// visited wait for `f`); note what to act on and act after the walk.
    pub(crate) fn for_each_live(&self, f: impl FnMut(u64, &Arc<TaskCell>)) {
        self.table.for_each_live(f);
    }

    /// [`Registry::for_each_live`] in steps of at most `windows` windows of
    /// the table (8 slots each) from `from`: where to go on, or `None` at the end.
    pub(crate) fn for_each_live_from(
        &self,
        from: Cursor,
        windows: usize,
        f: impl FnMut(u64, &Arc<TaskCell>),
    ) -> Option<Cursor> {
        self.table.for_each_live_from(from, windows, f)
    }

    /// Live tasks (exact when none starts or ends meanwhile).
    pub(crate) fn live_count(&self) -> usize {
        self.table.len()
    }

    /// Every live record, each a new reference (no lock).
    pub(crate) fn live_cells(&self) -> Vec<Arc<TaskCell>> {
        let mut cells = Vec::with_capacity(self.live_count() + 64);
        self.for_each_live(|_, cell| cells.push(Arc::clone(cell)));
        cells
    }

    /// Every live record with its key, each a new reference (no lock).
    pub(crate) fn live_cells_with_keys(&self) -> Vec<(u64, Arc<TaskCell>)> {
        self.table.live()
    }

    pub(crate) fn snapshot(&self) -> Vec<TaskInfo> {
        let now = clock::now();
        let mut tasks: Vec<TaskInfo> = Vec::with_capacity(self.live_count() + 64);
        self.for_each_live(|_, cell| tasks.push(cell.info(now)));
        tasks.sort_by_key(|t| t.id);
        tasks
    }

    /// The records of the finished history (younger than its age limit),
    /// oldest end first.
    pub(crate) fn finished_cells(&self) -> Vec<Arc<TaskCell>> {
        self.finished.read(clock::now())
    }

    pub(crate) fn finished(&self) -> Vec<FinishedTask> {
        self.finished
            .read(clock::now())
            .iter()
            .map(|cell| {
                let ended = cell.ended();
                let mut task = cell.info(ended);
                if task.state == TaskState::Running {
                    task.state = TaskState::Idle;
                }
                FinishedTask {
                    task,
                    end: cell.end(),
                    ended_at: clock::to_system_time(ended),
                }
            })
            .collect()
    }
}
