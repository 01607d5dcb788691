//! Folding [`Update`]s into the [`Model`]: a snapshot replaces, a delta merges.
//! While paused, updates are held coalesced (see the module docs of
//! [`crate::state`]).

use std::time::Instant;

use taskscope_api::LeakReason;
use taskscope_api::problems::ProblemGroups;

use crate::state::app_model::{MAX_PROBLEM_GROUPS, MAX_PROBLEMS, Model};
use crate::state::entry::{Marks, TaskEntry};
use crate::state::history;
use crate::state::model::{Finding, FindingKind, Task, Update};

/// A snapshot's task list is shrunk to what is left of it every this many
/// tasks taken out (its memory given back to the system as it empties).
const GIVE_BACK_EVERY: usize = 1 << 16;

impl Model {
    /// Folds `update` in, as received at `now`.
    ///
    /// - `Snapshot` replaces the tasks, findings, metrics and counters.
    /// - `Delta` merges: changed tasks are replaced whole, finished ones are
    ///   kept (dimmed) for [`Model::keep_finished`], findings are added.
    /// - `Detail` is kept for the detail view.
    /// - `Connection` replaces the connection state.
    ///
    /// While paused, snapshots and deltas are held (coalesced) and applied on
    /// resume; details and connection changes are applied at once.
    ///
    /// Snapshots and deltas also add a sample to the runtime's history
    /// ([`Model::history`]), paused or not: the runtime view shows the samples
    /// up to the update on screen.
    pub fn apply(&mut self, update: Update, now: Instant) {
        self.clock = self.clock.max(now);
        self.record_sample(&update);
        self.fold(update, now);
    }

    /// Adds the runtime sample of a snapshot or delta to the history.
    fn record_sample(&mut self, update: &Update) {
        let at = match update {
            Update::Snapshot { metrics, at, .. } => {
                // Its findings are the app's recent past, not news.
                self.history.record(*at, metrics, 0);
                *at
            }
            Update::Delta {
                metrics,
                findings,
                at,
                ..
            } => {
                self.history
                    .record(*at, metrics, history::slow_polls_ended(findings));
                *at
            }
            Update::Detail(_) | Update::Connection(_) => return,
        };
        // The window on screen ends at the update on screen.
        let end = if self.paused {
            self.last_update_at
        } else {
            None
        };
        self.history.prune(end.unwrap_or(at));
    }

    /// [`Model::apply`] without the history: folds `update` in, or holds it while paused.
    pub(super) fn fold(&mut self, update: Update, now: Instant) {
        match update {
            Update::Connection(connection) => {
                self.connection = connection;
                self.connection_since = now;
            }
            Update::Detail(detail) => {
                self.async_stack.receive(&detail, now);
                self.detail = Some(detail);
            }
            update if self.paused => self.held.hold(update),
            Update::Snapshot {
                app,
                tasks,
                finished,
                findings,
                metrics,
                dropped,
                at,
            } => {
                self.now = self.now.max(now);
                self.app = Some(app);
                self.tasks.clear();
                self.tasks_refused = 0;
                self.finished_count = 0;
                self.tasks.reserve(tasks.len() + finished.len());
                self.finish_queue.clear();
                self.marks.clear();
                self.slow.clear();
                self.problems.clear();
                self.problem_groups = ProblemGroups::with_max_groups(MAX_PROBLEM_GROUPS);
                self.problems_overflow = 0;
                self.findings_dropped_reported = 0;
                // Taken from the back (reversed first, so in the order sent),
                // the list given back as it empties: at a million tasks it is
                // ~190 MB that would otherwise sit next to the model being built.
                let mut tasks = tasks;
                tasks.reverse();
                while let Some(task) = tasks.pop() {
                    if tasks.len().is_multiple_of(GIVE_BACK_EVERY) {
                        tasks.shrink_to_fit();
                    }
                    self.upsert_live(task, now);
                }
                for task in finished {
                    self.insert_finished(task, now);
                }
                for finding in findings {
                    self.ingest(finding);
                }
                self.metrics = metrics;
                self.dropped = dropped;
                self.last_update_at = Some(at);
                self.invalidate_order();
            }
            Update::Delta {
                changed,
                finished,
                findings,
                metrics,
                dropped,
                at,
            } => {
                self.now = self.now.max(now);
                // New rows and rows that ended change what the table holds:
                // re-sort now. Changed values of known rows only change the
                // order: see `Model::task_order` for when that is redone.
                let ended = !finished.is_empty();
                let mut rows_changed = ended;
                let values_changed = !changed.is_empty() || !findings.is_empty();
                for task in changed {
                    rows_changed |= self.upsert_live(task, now);
                }
                for task in finished {
                    self.insert_finished(task, now);
                }
                // New rows were noted one by one (`TaskOrder::row_added`).
                for finding in findings {
                    self.ingest(finding);
                }
                self.metrics = metrics;
                self.dropped = dropped;
                self.last_update_at = Some(at);
                if rows_changed {
                    self.order.dirty = true;
                }
                if values_changed || ended {
                    // Values moved (an end moves a row when sorted by state).
                    self.invalidate_order_values();
                }
            }
        }
    }

    /// Adds or replaces a live task; returns whether it is a new row.
    fn upsert_live(&mut self, task: Task, now: Instant) -> bool {
        if task.ended.is_some() {
            self.insert_finished(task, now);
            return true;
        }
        let full = self.tasks.len() >= self.max_tasks;
        match self.tasks.get_mut(&task.id) {
            // A late change of a task already known to have ended: its end wins.
            Some(entry) if entry.is_finished() => false,
            Some(entry) => {
                entry.task = task;
                entry.updated_at = now;
                false
            }
            None if full => {
                self.tasks_refused += 1;
                false
            }
            None => {
                self.order.row_added(task.id);
                self.tasks.insert(TaskEntry {
                    task,
                    updated_at: now,
                    ended_at: None,
                });
                true
            }
        }
    }

    fn insert_finished(&mut self, task: Task, now: Instant) {
        let id = task.id;
        let known = self.tasks.get(&id);
        match known {
            None if self.tasks.len() >= self.max_tasks => {
                self.tasks_refused += 1;
                return;
            }
            None => self.order.row_added(id),
            // It moves from the live rows to the finished ones (or, live
            // only, out of the table): taken out and placed again.
            Some(entry) if entry.ended_at.is_none() => {
                self.order.row_removed(id);
                self.order.row_added(id);
            }
            Some(_) => {}
        }
        let ended_at = match known.and_then(|e| e.ended_at) {
            Some(earlier) => earlier,
            None => {
                self.finished_count += 1;
                self.finish_queue.push_back((now, id));
                now
            }
        };
        self.tasks.insert(TaskEntry {
            task,
            updated_at: now,
            ended_at: Some(ended_at),
        });
    }

    fn mark(&mut self, finding: &Finding, marks: Marks) {
        if let Some(task) = &finding.task {
            self.marks.entry(task.id).or_default().insert(marks);
        }
    }

    fn ingest(&mut self, finding: Finding) {
        match &finding.kind {
            FindingKind::SlowPoll { stack, .. } => {
                if let Some(task) = &finding.task {
                    self.source_roots.learn(stack, &task.spawned_at);
                }
                self.slow.ingest(&finding);
                self.mark(&finding, Marks::SLOW);
                return;
            }
            FindingKind::FindingsDropped { count } => {
                self.findings_dropped_reported += count;
                return;
            }
            FindingKind::NeverAwaited { .. } => {}
            FindingKind::LeakedTask { reason, .. } => {
                let marks = match reason {
                    LeakReason::LostWaker => Marks::LOST_WAKER,
                    LeakReason::AliveAtShutdown | LeakReason::IdleTooLong => Marks::LEAKED,
                };
                self.mark(&finding, marks);
            }
            FindingKind::TaskPanicked { .. } => self.mark(&finding, Marks::PANICKED),
        }
        self.problem_groups.ingest(&finding);
        if self.problems.len() == MAX_PROBLEMS {
            self.problems.pop_front();
            self.problems_overflow += 1;
        }
        self.problems.push_back(finding);
    }
}
