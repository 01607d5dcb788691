//! Delta computation: which tasks changed since the previous publish, which
//! are new, which ended. One tracker serves every viewer (they all get the
//! same delta; a new viewer gets a snapshot of the very state the tracker
//! holds after that publish, so the next delta follows it exactly).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use crate::model::task::{FinishedTask, ST_RUNNING, ST_RUNNING_WOKEN, TaskCell};
use crate::server::convert;
use taskscope_api::proto;

/// What a viewer was told about a live task: when any of it changes, the
/// whole record is sent again. Age and idle time are not in it (they grow
/// with the clock alone; the viewer ages records by itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sig {
    polls: u64,
    state: u8,
    busy_ns: u64,
    wakes: u64,
    wakers: u64,
}

impl Sig {
    pub(crate) fn of(cell: &TaskCell) -> Sig {
        let state = match cell.state.load(Relaxed) {
            ST_RUNNING_WOKEN => ST_RUNNING,
            other => other,
        };
        Sig {
            polls: cell.polls.load(Relaxed),
            state,
            busy_ns: cell.busy_ns.load(Relaxed),
            wakes: cell.wakes.load(Relaxed),
            wakers: cell.wakers(),
        }
    }

    /// A task inside a poll: its busy time grows with every look.
    fn running(&self) -> bool {
        self.state == ST_RUNNING
    }
}

/// The changes of one publish.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// New live tasks and live tasks that changed (whole records), by id.
    pub(crate) changed: Vec<proto::Task>,
    /// Tasks that ended since the previous publish, by id.
    pub(crate) finished: Vec<proto::Task>,
}

/// The state the viewers were last sent.
#[derive(Default)]
pub(crate) struct Tracker {
    /// Live tasks by id, with what was sent and the record (kept for the
    /// last word on a task whose end the history no longer has).
    last: HashMap<u64, (Sig, Arc<TaskCell>)>,
    /// Ids of the finished history already sent.
    finished_sent: HashSet<u64>,
}

/// The live records that are not in the finished history (a task can end
/// between the two reads; then it counts as finished).
pub(crate) fn alive(cells: Vec<Arc<TaskCell>>, finished: &[FinishedTask]) -> Vec<Arc<TaskCell>> {
    let ended: HashSet<u64> = finished.iter().map(|f| f.task.id).collect();
    let mut live: Vec<Arc<TaskCell>> = cells
        .into_iter()
        .filter(|c| !ended.contains(&c.id))
        .collect();
    live.sort_unstable_by_key(|c| c.id);
    live
}

impl Tracker {
    /// Forgets everything (nobody watches).
    pub(crate) fn clear(&mut self) {
        self.last = HashMap::new();
        self.finished_sent = HashSet::new();
    }

    /// Starts over from this state, reporting nothing: a snapshot of exactly
    /// this state is what the viewers have.
    pub(crate) fn rebase(&mut self, live: &[Arc<TaskCell>], finished: &[FinishedTask]) {
        self.last = live
            .iter()
            .map(|c| (c.id, (Sig::of(c), Arc::clone(c))))
            .collect();
        self.finished_sent = finished.iter().map(|f| f.task.id).collect();
    }

    /// The changes from the state last sent to this one (`live` from
    /// [`alive`], `finished` the history, both read at clock time `now` =
    /// wall time `at`), which then becomes the state last sent.
    pub(crate) fn delta(
        &mut self,
        live: &[Arc<TaskCell>],
        finished: &[FinishedTask],
        now: u64,
        at: SystemTime,
    ) -> Changes {
        let mut changes = Changes::default();
        let mut next = HashMap::with_capacity(live.len());
        for cell in live {
            let sig = Sig::of(cell);
            let changed = match self.last.remove(&cell.id) {
                Some((old, _)) => old != sig || sig.running(),
                None => true,
            };
            if changed {
                changes.changed.push(convert::live(cell, now));
            }
            next.insert(cell.id, (sig, Arc::clone(cell)));
        }
        // What is left of the previous state ended since. Tasks in the history
        // not sent yet: those, and the short-lived ones spawned and ended
        // between two publishes.
        let mut finished_now = HashSet::with_capacity(finished.len());
        for f in finished {
            finished_now.insert(f.task.id);
            if !self.finished_sent.contains(&f.task.id) {
                self.last.remove(&f.task.id);
                changes.finished.push(convert::finished(f));
            }
        }
        // Ended, and already gone from the history (more ends per publish than
        // it keeps, or a history of 0): the last record, end unknown.
        for (_, (_, cell)) in self.last.drain() {
            changes.finished.push(convert::gone(&cell, now, at));
        }
        changes.changed.sort_unstable_by_key(|t| t.id);
        changes.finished.sort_unstable_by_key(|t| t.id);
        self.last = next;
        self.finished_sent = finished_now;
        changes
    }

    /// Live tasks tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;
    use crate::model::task::{ST_IDLE, ST_SCHEDULED, SpawnLocation, TaskEnd};

    fn cell(id: u64) -> Arc<TaskCell> {
        Arc::new(TaskCell::new(
            id,
            Some(format!("t{id}").into()),
            SpawnLocation {
                file: "src/main.rs",
                line: id as u32,
                col: 1,
            },
            None,
        ))
    }

    fn idle(c: &TaskCell) {
        c.state.store(ST_IDLE, Relaxed);
    }

    fn ended(c: &TaskCell, end: TaskEnd) -> FinishedTask {
        FinishedTask {
            task: c.info(clock::now()),
            end,
            ended_at: SystemTime::now(),
        }
    }

    fn ids(tasks: &[proto::Task]) -> Vec<u64> {
        tasks.iter().map(|t| t.id).collect()
    }

    #[test]
    fn only_new_changed_and_ended_tasks_are_sent() {
        let cells: Vec<_> = (1..=5).map(cell).collect();
        cells.iter().for_each(|c| idle(c));
        let mut tracker = Tracker::default();
        tracker.rebase(&cells, &[]);
        let now = clock::now();

        // Nothing happened: nothing is sent.
        let d = tracker.delta(&cells, &[], now, SystemTime::now());
        assert!(d.changed.is_empty() && d.finished.is_empty(), "{d:?}");

        // Task 2 was polled, task 3 woken (scheduled), task 4 lost a waker.
        TaskCell::bump(&cells[1].polls, 1);
        TaskCell::bump(&cells[1].busy_ns, 1_000);
        cells[2].state.store(ST_SCHEDULED, Relaxed);
        cells[3].waker_clones.store(1, Relaxed);
        let d = tracker.delta(&cells, &[], now, SystemTime::now());
        assert_eq!(ids(&d.changed), [2, 3, 4]);
        assert_eq!(d.changed[0].polls, 1);
        assert!(d.finished.is_empty());

        // And once sent, not again.
        let d = tracker.delta(&cells, &[], now, SystemTime::now());
        assert!(d.changed.is_empty(), "{d:?}");

        // A new task appears; task 5 ends (in the history); task 1 ends and
        // the history has already let it go.
        let mut live: Vec<_> = cells[1..4].to_vec();
        let six = cell(6);
        live.push(Arc::clone(&six));
        let history = vec![ended(&cells[4], TaskEnd::Completed)];
        let d = tracker.delta(&live, &history, now, SystemTime::now());
        assert_eq!(ids(&d.changed), [6]);
        assert_eq!(ids(&d.finished), [1, 5]);
        assert_eq!(d.finished[0].end(), proto::TaskEnd::Unknown);
        assert_eq!(d.finished[1].end(), proto::TaskEnd::Completed);
        assert_eq!(tracker.len(), 4);

        // The history still holds task 5: it is not sent twice. A task spawned
        // and ended between two publishes is sent as finished.
        idle(&six);
        let short = cell(7);
        let history = vec![
            ended(&cells[4], TaskEnd::Completed),
            ended(&short, TaskEnd::Panicked),
        ];
        let d = tracker.delta(&live, &history, now, SystemTime::now());
        assert_eq!(ids(&d.changed), [6], "state changed to idle");
        assert_eq!(ids(&d.finished), [7]);
        assert_eq!(d.finished[0].end(), proto::TaskEnd::Panicked);
    }

    #[test]
    fn a_running_task_is_sent_every_time_its_busy_time_grows() {
        let c = cell(1);
        c.state.store(ST_RUNNING, Relaxed);
        c.last_poll_start.store(clock::now(), Relaxed);
        let live = vec![Arc::clone(&c)];
        let mut tracker = Tracker::default();
        tracker.rebase(&live, &[]);
        for _ in 0..2 {
            let d = tracker.delta(&live, &[], clock::now(), SystemTime::now());
            assert_eq!(ids(&d.changed), [1]);
            assert_eq!(d.changed[0].state(), proto::TaskState::Running);
        }
    }

    #[test]
    fn a_task_that_ends_between_two_reads_counts_as_finished() {
        let (a, b) = (cell(1), cell(2));
        let history = vec![ended(&b, TaskEnd::Cancelled)];
        let live = alive(vec![Arc::clone(&b), Arc::clone(&a)], &history);
        assert_eq!(live.iter().map(|c| c.id).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_hundred_thousand_quiet_tasks_make_an_empty_delta() {
        let cells: Vec<_> = (0..100_000).map(cell).collect();
        cells.iter().for_each(|c| idle(c));
        let mut tracker = Tracker::default();
        let d = tracker.delta(&cells, &[], clock::now(), SystemTime::now());
        assert_eq!(d.changed.len(), 100_000, "all new the first time");
        let d = tracker.delta(&cells, &[], clock::now(), SystemTime::now());
        assert!(d.changed.is_empty() && d.finished.is_empty());
        cells[99_999].wakes.store(1, Relaxed);
        let d = tracker.delta(&cells, &[], clock::now(), SystemTime::now());
        assert_eq!(ids(&d.changed), [99_999]);
    }
}
