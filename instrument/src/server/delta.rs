//! Delta computation: which tasks changed since the previous publish, which
//! are new, which ended. One tracker serves every viewer (they all get the
//! same delta; a new viewer gets a snapshot of the very state the tracker
//! holds after that publish, so the next delta follows it exactly).
//!
//! The tracker walks the live tasks once per publish without a lock
//! ([`crate::model::registry::Registry::for_each_live`]): for each it
//! compares a 64-bit fingerprint of what the viewers were sent with the
//! record's figures now, in place, and takes a reference only to the records
//! that changed or are new. A publish at a million quiet tasks thus clones
//! nothing and allocates nothing per task; the tracker holds 24 bytes per live
//! task (its id, the fingerprint, a reference to the record) while a viewer
//! watches, and nothing when none does.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
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

    /// The signature as 64 bits, the lowest one clear (it holds the
    /// tracker's round mark). Two different signatures give the same
    /// fingerprint with a chance of about 2^-63: a change then waits for the
    /// task's next one.
    fn fingerprint(&self) -> u64 {
        let mut h = u64::from(self.state);
        for v in [self.polls, self.busy_ns, self.wakes, self.wakers] {
            h = (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            h ^= h >> 29;
        }
        h & !1
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

/// One multiplication for a task id (ids are unique numbers from Tokio or
/// `tracing`, not outside input): SipHash would cost more than the rest of a
/// look-up, a million times a publish.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// What the tracker knows of one live task the viewers were sent.
struct Known {
    /// [`Sig::fingerprint`] of what was sent, with the round that last saw
    /// the task alive in its lowest bit.
    mark: u64,
    /// The record (kept for the last word on a task whose end the history
    /// no longer has).
    cell: Arc<TaskCell>,
}

/// Records noted during a walk, in blocks that never move: a walk must not
/// copy a large `Vec` while it holds a window of the task table.
#[derive(Default)]
struct Noted(Vec<Vec<Arc<TaskCell>>>);

impl Noted {
    const BLOCK: usize = 1_024;

    fn push(&mut self, cell: &Arc<TaskCell>) {
        match self.0.last_mut() {
            Some(block) if block.len() < Self::BLOCK => block.push(Arc::clone(cell)),
            _ => {
                let mut block = Vec::with_capacity(Self::BLOCK);
                block.push(Arc::clone(cell));
                self.0.push(block);
            }
        }
    }

    fn into_iter(self) -> impl Iterator<Item = Arc<TaskCell>> {
        self.0.into_iter().flatten()
    }
}

/// What one walk found: the records that changed, and the new ones.
#[derive(Default)]
pub(crate) struct Pass {
    changed: Noted,
    new: Noted,
}

/// The state the viewers were last sent.
#[derive(Default)]
pub(crate) struct Tracker {
    /// Live tasks by id.
    last: HashMap<u64, Known, BuildHasherDefault<IdHasher>>,
    /// Ids of the finished history already sent.
    finished_sent: HashSet<u64>,
    /// This round's mark (0 or 1), flipped every round.
    round: u64,
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
        self.last = HashMap::default();
        self.finished_sent = HashSet::new();
    }

    /// Walks the live tasks (`walk`: the registry's walk, or a list in the
    /// tests), comparing each with what was sent, in place: notes the new and
    /// the changed records for [`Tracker::delta`] or [`Tracker::rebase`],
    /// which take the finished history read after the walk (a task ending
    /// between the two reads then counts as finished).
    pub(crate) fn walk(&mut self, walk: impl FnOnce(&mut dyn FnMut(&Arc<TaskCell>))) -> Pass {
        self.round ^= 1;
        let round = self.round;
        let mut pass = Pass::default();
        let last = &mut self.last;
        walk(&mut |cell| match last.get_mut(&cell.id) {
            Some(known) => {
                let sig = Sig::of(cell);
                let fingerprint = sig.fingerprint();
                if known.mark & !1 != fingerprint || sig.running() {
                    pass.changed.push(cell);
                }
                known.mark = fingerprint | round;
            }
            None => pass.new.push(cell),
        });
        pass
    }

    /// Starts over from the tasks of `pass` (walked after [`Tracker::clear`])
    /// and the history `finished`, reporting nothing: a snapshot of exactly
    /// this state ([`Tracker::live`]) is what the viewers get.
    pub(crate) fn rebase(&mut self, pass: Pass, finished: &[FinishedTask]) {
        let ended: HashSet<u64> = finished.iter().map(|f| f.task.id).collect();
        self.settle(pass, &ended, |_| {});
        self.last.retain(|_, known| known.mark & 1 == self.round);
        self.finished_sent = ended;
    }

    /// The changes from the state last sent to the live tasks of `pass` and
    /// the history `finished`, at clock time `now` = wall time `at`; this
    /// state then becomes the state last sent.
    pub(crate) fn delta(
        &mut self,
        pass: Pass,
        finished: &[FinishedTask],
        now: u64,
        at: SystemTime,
    ) -> Changes {
        let mut changes = Changes::default();
        let ended: HashSet<u64> = finished.iter().map(|f| f.task.id).collect();
        self.settle(pass, &ended, |cell| {
            changes.changed.push(convert::live(cell, now))
        });
        // Tasks in the history not sent yet: those that ended since (also
        // the ones the walk still saw), and the short-lived ones spawned and
        // ended between two publishes.
        for f in finished {
            if !self.finished_sent.contains(&f.task.id) {
                self.last.remove(&f.task.id);
                changes.finished.push(convert::finished(f));
            }
        }
        // Not seen this round, and not in the history: ended, and already gone
        // from the history (more ends per publish than it keeps, or a
        // history of 0): the last record, end unknown.
        let round = self.round;
        self.last.retain(|_, known| {
            let seen = known.mark & 1 == round;
            if !seen {
                changes.finished.push(convert::gone(&known.cell, now, at));
            }
            seen
        });
        changes.changed.sort_unstable_by_key(|t| t.id);
        changes.finished.sort_unstable_by_key(|t| t.id);
        self.finished_sent = ended;
        changes
    }

    /// Takes in the new records of `pass` and hands `report` every new or
    /// changed one that has not ended.
    fn settle(&mut self, pass: Pass, ended: &HashSet<u64>, mut report: impl FnMut(&TaskCell)) {
        for cell in pass.changed.into_iter() {
            if !ended.contains(&cell.id) {
                report(&cell);
            }
        }
        for cell in pass.new.into_iter() {
            if !ended.contains(&cell.id) {
                report(&cell);
                let mark = Sig::of(&cell).fingerprint() | self.round;
                self.last.insert(cell.id, Known { mark, cell });
            }
        }
    }

    /// The live tasks of the state last sent, by id: what a new viewer's
    /// snapshot holds.
    pub(crate) fn live(&self) -> Vec<&Arc<TaskCell>> {
        let mut live: Vec<&Arc<TaskCell>> = self.last.values().map(|k| &k.cell).collect();
        live.sort_unstable_by_key(|c| c.id);
        live
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

    /// A walk over a list of records (as the registry's walk), then the rebase.
    fn rebase(tracker: &mut Tracker, cells: &[Arc<TaskCell>], finished: &[FinishedTask]) {
        tracker.clear();
        let pass = tracker.walk(|f| cells.iter().for_each(f));
        tracker.rebase(pass, finished);
    }

    /// A walk over a list of records, then the delta.
    fn delta(
        tracker: &mut Tracker,
        cells: &[Arc<TaskCell>],
        finished: &[FinishedTask],
        now: u64,
        at: SystemTime,
    ) -> Changes {
        let pass = tracker.walk(|f| cells.iter().for_each(f));
        tracker.delta(pass, finished, now, at)
    }

    fn ids(tasks: &[proto::Task]) -> Vec<u64> {
        tasks.iter().map(|t| t.id).collect()
    }

    #[test]
    fn only_new_changed_and_ended_tasks_are_sent() {
        let cells: Vec<_> = (1..=5).map(cell).collect();
        cells.iter().for_each(|c| idle(c));
        let mut tracker = Tracker::default();
        rebase(&mut tracker, &cells, &[]);
        let now = clock::now();

        // Nothing happened: nothing is sent.
        let d = delta(&mut tracker, &cells, &[], now, SystemTime::now());
        assert!(d.changed.is_empty() && d.finished.is_empty(), "{d:?}");

        // Task 2 was polled, task 3 woken (scheduled), task 4 lost a waker.
        TaskCell::bump(&cells[1].polls, 1);
        TaskCell::bump(&cells[1].busy_ns, 1_000);
        cells[2].state.store(ST_SCHEDULED, Relaxed);
        cells[3].waker_clones.store(1, Relaxed);
        let d = delta(&mut tracker, &cells, &[], now, SystemTime::now());
        assert_eq!(ids(&d.changed), [2, 3, 4]);
        assert_eq!(d.changed[0].polls, 1);
        assert!(d.finished.is_empty());

        // And once sent, not again.
        let d = delta(&mut tracker, &cells, &[], now, SystemTime::now());
        assert!(d.changed.is_empty(), "{d:?}");

        // A new task appears; task 5 ends (in the history); task 1 ends and
        // the history has already let it go.
        let mut live: Vec<_> = cells[1..4].to_vec();
        let six = cell(6);
        live.push(Arc::clone(&six));
        let history = vec![ended(&cells[4], TaskEnd::Completed)];
        let d = delta(&mut tracker, &live, &history, now, SystemTime::now());
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
        let d = delta(&mut tracker, &live, &history, now, SystemTime::now());
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
        rebase(&mut tracker, &live, &[]);
        for _ in 0..2 {
            let d = delta(&mut tracker, &live, &[], clock::now(), SystemTime::now());
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
    fn a_task_the_walk_saw_that_is_in_the_history_counts_as_finished() {
        let cells: Vec<_> = (1..=3).map(cell).collect();
        cells.iter().for_each(|c| idle(c));
        let mut tracker = Tracker::default();
        rebase(&mut tracker, &cells, &[]);
        // Task 2 ends after the walk saw it, before the history is read.
        TaskCell::bump(&cells[1].polls, 1);
        let history = vec![ended(&cells[1], TaskEnd::Completed)];
        let d = delta(
            &mut tracker,
            &cells,
            &history,
            clock::now(),
            SystemTime::now(),
        );
        assert!(d.changed.is_empty(), "{d:?}");
        assert_eq!(ids(&d.finished), [2]);
        assert_eq!(d.finished[0].end(), proto::TaskEnd::Completed);
        assert_eq!(tracker.len(), 2);
        let live: Vec<u64> = tracker.live().iter().map(|c| c.id).collect();
        assert_eq!(live, [1, 3]);
    }

    #[test]
    fn quiet_tasks_are_compared_in_place_without_a_reference_taken() {
        let cells: Vec<_> = (1..=1_000).map(cell).collect();
        cells.iter().for_each(|c| idle(c));
        let mut tracker = Tracker::default();
        rebase(&mut tracker, &cells, &[]);
        let mut during = Vec::new();
        let pass = tracker.walk(|f| {
            for c in &cells {
                f(c);
                // The test's reference and the tracker's: none taken by the walk.
                during.push(Arc::strong_count(c));
            }
        });
        assert!(during.iter().all(|&n| n == 2), "{:?}", &during[..4]);
        let d = tracker.delta(pass, &[], clock::now(), SystemTime::now());
        assert!(d.changed.is_empty() && d.finished.is_empty());
    }

    #[test]
    fn a_hundred_thousand_quiet_tasks_make_an_empty_delta() {
        let cells: Vec<_> = (0..100_000).map(cell).collect();
        cells.iter().for_each(|c| idle(c));
        let mut tracker = Tracker::default();
        let d = delta(&mut tracker, &cells, &[], clock::now(), SystemTime::now());
        assert_eq!(d.changed.len(), 100_000, "all new the first time");
        let d = delta(&mut tracker, &cells, &[], clock::now(), SystemTime::now());
        assert!(d.changed.is_empty() && d.finished.is_empty());
        cells[99_999].wakes.store(1, Relaxed);
        let d = delta(&mut tracker, &cells, &[], clock::now(), SystemTime::now());
        assert_eq!(ids(&d.changed), [99_999]);
    }
}
