//! The `Update`s of one `WatchUpdates` stream: the first holds every task
//! taskscope keeps (live ones, and the finished history with `dropped_at`),
//! each with its stats, and the metadata they refer to; each later one holds
//! the tasks spawned since (with their stats) and the stats that changed, or
//! nothing (it still tells the client the app's time). A state bigger than
//! [`MAX_UPDATE_BYTES`] is cut into several updates (tonic clients, such as
//! tokio-console, refuse messages over 4 MiB by default).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use console_api::RegisterMetadata;
use console_api::async_ops::AsyncOpUpdate;
use console_api::instrument::Update;
use console_api::resources::ResourceUpdate;
use console_api::tasks::{Stats, Task, TaskUpdate};
use prost::Message;

use crate::clock;
use crate::model::task::TaskCell;
use crate::server::console::convert;
use crate::session::Session;

/// The largest update sent, encoded, about (a bigger state is cut).
pub(crate) const MAX_UPDATE_BYTES: usize = 1024 * 1024;

/// Bytes a task's entry costs on the wire beyond its messages (map entry,
/// tags, lengths), at most.
const ENTRY_OVERHEAD: usize = 24;

/// The tasks taskscope keeps: the live ones, then the finished history, each
/// once (a task that ends between the two reads counts as finished).
pub(crate) fn kept(session: &Session) -> Vec<Arc<TaskCell>> {
    let finished = session.registry.finished_cells();
    let ended: HashSet<u64> = finished.iter().map(|c| c.id).collect();
    let mut cells: Vec<Arc<TaskCell>> = session
        .registry
        .live_cells()
        .into_iter()
        .filter(|c| !ended.contains(&c.id))
        .collect();
    cells.sort_unstable_by_key(|c| c.id);
    cells.extend(finished);
    cells
}

/// What one stream told its client about a task.
struct Told {
    /// The stats' [`convert::signature`] sent last.
    signature: u64,
    /// The record, while its end has not been sent: if it leaves the history
    /// unseen (more tasks ended between two updates than the history keeps),
    /// its end is still sent, from it.
    pending: Option<Arc<TaskCell>>,
}

/// What one `WatchUpdates` stream told its client.
#[derive(Default)]
pub(crate) struct Stream {
    told: HashMap<u64, Told>,
    started: bool,
}

impl Stream {
    /// The next updates, from `cells` (as [`kept`] reads them), each at most
    /// about `max_bytes` encoded; `wakes_known`: the capture sees waker events.
    pub(crate) fn next(
        &mut self,
        cells: &[Arc<TaskCell>],
        wakes_known: bool,
        max_bytes: usize,
    ) -> Vec<TaskUpdate> {
        let mut out = Vec::new();
        let mut current = TaskUpdate::default();
        let mut size = 0;
        let mut push = |current: &mut TaskUpdate, id: u64, task: Option<Task>, stats: Stats| {
            let len =
                stats.encoded_len() + task.as_ref().map_or(0, Task::encoded_len) + ENTRY_OVERHEAD;
            if size + len > max_bytes && size > 0 {
                out.push(std::mem::take(current));
                size = 0;
            }
            size += len;
            if let Some(task) = task {
                current.new_tasks.push(task);
            }
            current.stats_update.insert(id, stats);
        };

        let mut told = HashMap::with_capacity(cells.len());
        for cell in cells {
            let signature = convert::signature(cell);
            let before = self.told.remove(&cell.id);
            let pending = (cell.ended() == 0).then(|| Arc::clone(cell));
            told.insert(cell.id, Told { signature, pending });
            match before {
                Some(b) if b.signature == signature => continue,
                Some(_) => push(
                    &mut current,
                    cell.id,
                    None,
                    convert::stats(cell, wakes_known),
                ),
                None => push(
                    &mut current,
                    cell.id,
                    Some(convert::task(cell, wakes_known)),
                    convert::stats(cell, wakes_known),
                ),
            }
        }
        // Gone unseen from the history after their end: the end, once.
        let now = clock::now();
        for (id, gone) in self.told.drain() {
            if let Some(cell) = gone.pending {
                let mut stats = convert::stats(&cell, wakes_known);
                if stats.dropped_at.is_none() {
                    stats.dropped_at = Some(convert::now(now));
                }
                push(&mut current, id, None, stats);
            }
        }
        self.told = told;
        if !current.new_tasks.is_empty() || !current.stats_update.is_empty() || out.is_empty() {
            out.push(current);
        }
        out
    }

    /// The next updates for the client, read from `session` now: see [`Stream::next`].
    pub(crate) fn updates(&mut self, session: &Session, max_bytes: usize) -> Vec<Update> {
        let wakes_known = session
            .wakes_known
            .load(std::sync::atomic::Ordering::Relaxed);
        let tasks = self.next(&kept(session), wakes_known, max_bytes);
        // Read after every record: no timestamp sent is later than `now`.
        let now = Some(convert::now(clock::now()));
        let first = !self.started;
        self.started = true;
        tasks
            .into_iter()
            .enumerate()
            .map(|(i, task_update)| Update {
                now,
                task_update: Some(task_update),
                // Not reported: empty, as an app without any would send.
                resource_update: Some(ResourceUpdate::default()),
                async_op_update: Some(AsyncOpUpdate::default()),
                new_metadata: (first && i == 0).then(|| RegisterMetadata {
                    metadata: vec![convert::metadata()],
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::{SpawnLocation, TaskEnd};
    use std::sync::atomic::Ordering::Relaxed;

    fn cell(id: u64) -> Arc<TaskCell> {
        Arc::new(TaskCell::new(
            id,
            Some(format!("task-{id}").into()),
            SpawnLocation {
                file: "src/updates_test.rs",
                line: 3,
                col: 9,
            },
            None,
        ))
    }

    fn ids(update: &TaskUpdate) -> (Vec<u64>, Vec<u64>) {
        let mut new: Vec<u64> = update.new_tasks.iter().map(|t| t.id.unwrap().id).collect();
        let mut stats: Vec<u64> = update.stats_update.keys().copied().collect();
        new.sort_unstable();
        stats.sort_unstable();
        (new, stats)
    }

    #[test]
    fn everything_first_then_what_changed() {
        let cells: Vec<_> = (1..=3).map(cell).collect();
        let mut stream = Stream::default();
        let first = stream.next(&cells, true, MAX_UPDATE_BYTES);
        assert_eq!(first.len(), 1);
        assert_eq!(ids(&first[0]), (vec![1, 2, 3], vec![1, 2, 3]));

        // Nothing changed: an empty update.
        let next = stream.next(&cells, true, MAX_UPDATE_BYTES);
        assert_eq!(next.len(), 1);
        assert_eq!(ids(&next[0]), (vec![], vec![]));

        // A poll of task 2, a new task 4: 2's stats, 4 with its stats.
        TaskCell::bump(&cells[1].polls, 1);
        let mut cells = cells;
        cells.push(cell(4));
        let next = stream.next(&cells, true, MAX_UPDATE_BYTES);
        assert_eq!(ids(&next[0]), (vec![4], vec![2, 4]));
        assert_eq!(
            next[0].stats_update[&2].poll_stats.unwrap().polls,
            1,
            "the new count"
        );

        // Task 3 ends: its stats, with dropped_at.
        cells[2].set_end(TaskEnd::Completed, clock::now());
        let next = stream.next(&cells, true, MAX_UPDATE_BYTES);
        assert_eq!(ids(&next[0]), (vec![], vec![3]));
        assert!(next[0].stats_update[&3].dropped_at.is_some());

        // Task 3 leaves the history: nothing more to say about it. Task 1
        // vanishes without its end seen: its end is sent, once.
        let left = vec![Arc::clone(&cells[1]), Arc::clone(&cells[3])];
        let next = stream.next(&left, true, MAX_UPDATE_BYTES);
        assert_eq!(ids(&next[0]), (vec![], vec![1]));
        assert!(next[0].stats_update[&1].dropped_at.is_some());
        let next = stream.next(&left, true, MAX_UPDATE_BYTES);
        assert_eq!(ids(&next[0]), (vec![], vec![]));
    }

    #[test]
    fn a_big_state_is_cut_under_the_limit_with_each_task_beside_its_stats() {
        let cells: Vec<_> = (1..=2000).map(cell).collect();
        let limit = 64 * 1024;
        let mut stream = Stream::default();
        let updates = stream.next(&cells, true, limit);
        assert!(updates.len() > 2, "{} updates", updates.len());
        let mut all = Vec::new();
        for u in &updates {
            assert!(u.encoded_len() <= limit, "{} bytes", u.encoded_len());
            let (new, stats) = ids(u);
            assert_eq!(new, stats, "a new task travels with its stats");
            all.extend(new);
        }
        all.sort_unstable();
        assert_eq!(all, (1..=2000).collect::<Vec<u64>>());
    }

    #[test]
    fn waker_counts_are_never_unknown_as_zero() {
        let c = cell(1);
        c.waker_clones.store(0, Relaxed);
        let mut stream = Stream::default();
        let known = stream.next(&[Arc::clone(&c)], true, MAX_UPDATE_BYTES);
        assert_eq!(known[0].stats_update[&1].waker_clones, 0);
        let mut stream = Stream::default();
        let unknown = stream.next(&[c], false, MAX_UPDATE_BYTES);
        assert_eq!(unknown[0].stats_update[&1].waker_clones, 1);
    }
}
