//! The model's tasks by id, stored densely: the entries side by side in one
//! `Vec`, and a map from id to position.
//!
//! A `HashMap<u64, TaskEntry>` keeps its entries in its own buckets, of which
//! it has up to twice as many as entries (2,097,152 for a million tasks), each
//! the size of an entry, and touches them all: at a million tasks it held
//! ~490 MB where the entries need ~220 MB. Here the buckets hold a 16-byte
//! `(id, position)` and the entries are contiguous, which also makes a walk
//! over every task (the filter, the sort) read memory in order.
//!
//! Removing moves the last entry into the hole (`swap_remove`): the order of
//! [`TaskMap::values`] is not the order of insertion, as a `HashMap`'s is not.

use std::collections::HashMap;

use crate::state::entry::TaskEntry;

/// Tasks by id: see the module docs.
#[derive(Clone, Debug, Default)]
pub struct TaskMap {
    entries: Vec<TaskEntry>,
    /// Position of each id's entry in `entries`.
    at: HashMap<u64, u32>,
}

impl TaskMap {
    /// An empty map.
    pub fn new() -> TaskMap {
        TaskMap::default()
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no task.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Room for `more` tasks without growing.
    pub fn reserve(&mut self, more: usize) {
        self.entries.reserve(more);
        self.at.reserve(more);
    }

    /// Forgets every task (and gives back the room they took).
    pub fn clear(&mut self) {
        self.entries = Vec::new();
        self.at = HashMap::new();
    }

    /// The task `id`.
    pub fn get(&self, id: &u64) -> Option<&TaskEntry> {
        self.at.get(id).map(|&i| &self.entries[i as usize])
    }

    /// The task `id`, to change it (its id must stay).
    pub fn get_mut(&mut self, id: &u64) -> Option<&mut TaskEntry> {
        self.at.get(id).map(|&i| &mut self.entries[i as usize])
    }

    /// Whether the task `id` is here.
    pub fn contains_key(&self, id: &u64) -> bool {
        self.at.contains_key(id)
    }

    /// Puts `entry` under its task's id; returns the entry it replaces.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// # use taskscope_viewer::state::{Task, TaskEntry, TaskMap, TaskState};
    /// let task = Task {
    ///     id: 7,
    ///     name: None,
    ///     state: TaskState::Idle,
    ///     ended: None,
    ///     spawned_at: "src/main.rs:3:5".into(),
    ///     parent: None,
    ///     age: Duration::ZERO,
    ///     polls: 0,
    ///     busy: Duration::ZERO,
    ///     idle: Duration::ZERO,
    ///     since_last_poll: None,
    ///     max_poll: Duration::ZERO,
    ///     wakes: 0,
    ///     wakers: 0,
    /// };
    /// let mut tasks = TaskMap::new();
    /// let entry = TaskEntry { task, updated_at: Instant::now(), ended_at: None };
    /// assert!(tasks.insert(entry.clone()).is_none());
    /// assert_eq!(tasks.insert(entry).map(|e| e.task.id), Some(7));
    /// assert_eq!(tasks.len(), 1);
    /// assert_eq!(tasks.remove(&7).map(|e| e.task.spawned_at), Some("src/main.rs:3:5".into()));
    /// assert!(tasks.is_empty());
    /// ```
    pub fn insert(&mut self, entry: TaskEntry) -> Option<TaskEntry> {
        let id = entry.task.id;
        match self.at.get(&id) {
            Some(&i) => Some(std::mem::replace(&mut self.entries[i as usize], entry)),
            None => {
                // Positions are `u32`: the model holds at most `MAX_TASKS`
                // (1,000,000) tasks, far below.
                let i = u32::try_from(self.entries.len()).expect("fewer than 2^32 tasks");
                self.entries.push(entry);
                self.at.insert(id, i);
                None
            }
        }
    }

    /// Takes the task `id` out.
    pub fn remove(&mut self, id: &u64) -> Option<TaskEntry> {
        let i = self.at.remove(id)? as usize;
        let entry = self.entries.swap_remove(i);
        if let Some(moved) = self.entries.get(i) {
            // The last entry moved into the hole.
            self.at.insert(moved.task.id, i as u32);
        }
        Some(entry)
    }

    /// Every task, in no particular order.
    pub fn values(&self) -> std::slice::Iter<'_, TaskEntry> {
        self.entries.iter()
    }
}

impl std::ops::Index<&u64> for TaskMap {
    type Output = TaskEntry;

    /// The task `id`, as `HashMap`'s index does.
    ///
    /// # Panics
    ///
    /// When there is no task `id`.
    fn index(&self, id: &u64) -> &TaskEntry {
        self.get(id).expect("no task with this id")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Instant;

    use super::*;

    fn entry(id: u64, polls: u64) -> TaskEntry {
        TaskEntry {
            task: crate::client::convert::task(taskscope_api::proto::Task {
                id,
                polls,
                spawned_at: format!("src/m.rs:{id}:1"),
                ..Default::default()
            }),
            updated_at: Instant::now(),
            ended_at: None,
        }
    }

    /// Random inserts, replacements and removes (of present and absent ids)
    /// agree with a `HashMap` at every step: lookups, length, the set of values.
    #[test]
    fn agrees_with_a_hash_map() {
        let mut map = TaskMap::new();
        let mut want: HashMap<u64, TaskEntry> = HashMap::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..20_000u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let id = seed % 300;
            match (seed >> 32) % 3 {
                0 | 1 => {
                    let e = entry(id, step);
                    assert_eq!(
                        map.insert(e.clone()).map(|e| e.task.polls),
                        want.insert(id, e).map(|e| e.task.polls),
                        "step {step}"
                    );
                }
                _ => assert_eq!(
                    map.remove(&id).map(|e| e.task.polls),
                    want.remove(&id).map(|e| e.task.polls),
                    "step {step}"
                ),
            }
            assert_eq!(map.len(), want.len());
            let probe = (seed >> 40) % 300;
            assert_eq!(map.get(&probe), want.get(&probe), "step {step}");
            assert_eq!(map.contains_key(&probe), want.contains_key(&probe));
            if step % 1000 == 0 {
                let mut got: Vec<(u64, u64)> =
                    map.values().map(|e| (e.task.id, e.task.polls)).collect();
                let mut all: Vec<(u64, u64)> =
                    want.values().map(|e| (e.task.id, e.task.polls)).collect();
                got.sort_unstable();
                all.sort_unstable();
                assert_eq!(got, all, "step {step}");
            }
        }
        if let Some(e) = map.get_mut(&want.keys().next().copied().unwrap()) {
            e.task.polls = u64::MAX;
        }
        assert_eq!(map.values().filter(|e| e.task.polls == u64::MAX).count(), 1);
        map.clear();
        assert!(map.is_empty());
        assert_eq!(map.get(&1), None);
    }
}
