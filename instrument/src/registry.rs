//! The registry: every live task, and a bounded history of finished ones.
//!
//! Neither takes a lock: live tasks are the lock-free [`IdTable`] (which also
//! serves the per-poll lookup), finished ones a lock-free ring ([`History`]).
//! A spawn is one compare-and-swap (its record reused from a per-thread cache,
//! see `cell_pool`); an end, one swap in the table and one in the ring.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock;
use crate::history::History;
use crate::table::{IdTable, lock};
use crate::task::{FinishedTask, TaskCell, TaskInfo};

pub(crate) struct Registry {
    /// Live tasks by their key (Tokio's task id, or the span id for the layer).
    pub(crate) table: IdTable,
    finished: History,
    files: Mutex<HashSet<&'static str>>,
}

impl Registry {
    pub(crate) fn new(finished_capacity: usize, finished_max_age: Duration) -> Registry {
        Registry {
            table: IdTable::new(),
            finished: History::new(
                finished_capacity,
                u64::try_from(finished_max_age.as_nanos()).unwrap_or(u64::MAX),
                crate::cell_pool::recycle,
            ),
            files: Mutex::new(HashSet::new()),
        }
    }

    /// A `'static` copy of a source path, interned: there are only as many as source files.
    pub(crate) fn intern_file(&self, file: &str) -> &'static str {
        let mut files = lock(&self.files);
        if let Some(f) = files.get(file) {
            return f;
        }
        let leaked: &'static str = Box::leak(file.to_owned().into_boxed_str());
        files.insert(leaked);
        leaked
    }

    pub(crate) fn add(&self, key: u64, cell: Arc<TaskCell>) {
        self.table.insert(key, cell);
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

    pub(crate) fn live_cells(&self) -> Vec<Arc<TaskCell>> {
        self.table
            .live()
            .into_iter()
            .map(|(_, cell)| cell)
            .collect()
    }

    pub(crate) fn live_cells_with_keys(&self) -> Vec<(u64, Arc<TaskCell>)> {
        self.table.live()
    }

    pub(crate) fn snapshot(&self) -> Vec<TaskInfo> {
        let now = clock::now();
        let mut tasks: Vec<TaskInfo> = self.live_cells().iter().map(|c| c.info(now)).collect();
        tasks.sort_by_key(|t| t.id);
        tasks
    }

    pub(crate) fn finished(&self) -> Vec<FinishedTask> {
        self.finished
            .read(clock::now())
            .iter()
            .map(|cell| {
                let ended = cell.ended();
                let mut task = cell.info(ended);
                if task.state == crate::TaskState::Running {
                    task.state = crate::TaskState::Idle;
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
