//! The registry: every live task, and a bounded history of finished ones.
//!
//! Spawn and end take a short lock on one of 32 shards; polls never touch the
//! registry (they find their record through the lock-free [`IdTable`]).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock;
use crate::table::{IdMap, IdTable, lock};
use crate::task::{FinishedTask, TaskCell, TaskEnd, TaskInfo};

const SHARDS: usize = 32;

type Shard = Mutex<IdMap<Arc<TaskCell>>>;

pub(crate) struct Registry {
    /// Live tasks by their table key (task id or span id).
    live: Box<[Shard]>,
    pub(crate) table: IdTable,
    /// Finished tasks: (end timestamp, record, how it ended), oldest first.
    finished: Mutex<VecDeque<(u64, Arc<TaskCell>, TaskEnd)>>,
    finished_capacity: usize,
    finished_max_age: Duration,
    files: Mutex<HashSet<&'static str>>,
}

impl Registry {
    pub(crate) fn new(finished_capacity: usize, finished_max_age: Duration) -> Registry {
        Registry {
            live: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect(),
            table: IdTable::new(),
            finished: Mutex::new(VecDeque::new()),
            finished_capacity,
            finished_max_age,
            files: Mutex::new(HashSet::new()),
        }
    }

    fn shard(&self, key: u64) -> &Shard {
        &self.live[(key as usize).wrapping_mul(0x9E37_79B9) % SHARDS]
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
        self.table.insert(key, &cell);
        lock(self.shard(key)).insert(key, cell);
    }

    /// The record under `key`, if live. Takes the shard lock: not for the hot path.
    pub(crate) fn get(&self, key: u64) -> Option<Arc<TaskCell>> {
        lock(self.shard(key)).get(&key).cloned()
    }

    /// Takes the task under `key` out of the live set and into the finished
    /// history (one shard lock, one history lock); returns its record.
    /// `end` decides how it ended from the record (e.g. a panic noted on it).
    pub(crate) fn finish(
        &self,
        key: u64,
        end: impl FnOnce(&TaskCell) -> TaskEnd,
    ) -> Option<(Arc<TaskCell>, TaskEnd)> {
        self.table.remove(key);
        let cell = lock(self.shard(key)).remove(&key)?;
        let end = end(&cell);
        if self.finished_capacity > 0 {
            let now = clock::now();
            let mut history = lock(&self.finished);
            history.push_back((now, Arc::clone(&cell), end));
            self.prune(&mut history, now);
        }
        Some((cell, end))
    }

    fn prune(&self, history: &mut VecDeque<(u64, Arc<TaskCell>, TaskEnd)>, now: u64) {
        while history.len() > self.finished_capacity {
            history.pop_front();
        }
        let max_age = u64::try_from(self.finished_max_age.as_nanos()).unwrap_or(u64::MAX);
        while let Some((ended, _, _)) = history.front() {
            if clock::since(*ended, now) > max_age {
                history.pop_front();
            } else {
                break;
            }
        }
    }

    pub(crate) fn live_cells(&self) -> Vec<Arc<TaskCell>> {
        let mut all = Vec::new();
        for shard in self.live.iter() {
            all.extend(lock(shard).values().cloned());
        }
        all
    }

    pub(crate) fn live_cells_with_keys(&self) -> Vec<(u64, Arc<TaskCell>)> {
        let mut all = Vec::new();
        for shard in self.live.iter() {
            all.extend(lock(shard).iter().map(|(k, c)| (*k, Arc::clone(c))));
        }
        all
    }

    pub(crate) fn snapshot(&self) -> Vec<TaskInfo> {
        let now = clock::now();
        let mut tasks: Vec<TaskInfo> = self.live_cells().iter().map(|c| c.info(now)).collect();
        tasks.sort_by_key(|t| t.id);
        tasks
    }

    pub(crate) fn finished(&self) -> Vec<FinishedTask> {
        let mut history = lock(&self.finished);
        self.prune(&mut history, clock::now());
        history
            .iter()
            .map(|(ended, cell, end)| {
                let mut task = cell.info(*ended);
                if task.state == crate::TaskState::Running {
                    task.state = crate::TaskState::Idle;
                }
                FinishedTask {
                    task,
                    end: *end,
                    ended_at: clock::to_system_time(*ended),
                }
            })
            .collect()
    }
}
