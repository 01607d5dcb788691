//! The viewer's picture of the remote app ([`Model`]): what it holds, and the
//! operations the views read. [`Model::apply`] (in `apply.rs`) folds updates
//! in; [`Model::handle_key`] (in `keys.rs`) turns keys into changes.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use crate::state::entry::{Marks, TaskCounts, TaskEntry, marks_for};
use crate::state::held::Held;
use crate::state::history::RuntimeHistory;
use crate::state::model::{AppInfo, Connection, Dropped, Finding, RuntimeMetrics, TaskDetail};
use crate::state::replay_status::ReplayStatus;
use crate::state::slow_polls::{SlowPollGroup, SlowPolls};
use crate::state::sort::{self, Column, TaskOrder};
use crate::state::stack_fetch::StackFetch;
use crate::state::task_map::TaskMap;
use crate::state::ui_state::UiState;
use taskscope_api::problems::ProblemGroups;
use taskscope_api::stack::SourceRoots;

/// How long a finished task stays in the table after the viewer learnt it ended.
pub const KEEP_FINISHED: Duration = Duration::from_secs(10);

/// The most findings other than slow polls kept for the problems view (the oldest go first).
pub const MAX_PROBLEMS: usize = 5_000;

/// The most tasks (live and recently finished) the model holds by default
/// ([`Model::max_tasks`]): a server that sends more (a million tasks is far
/// past what one app runs) cannot make the viewer grow; the tasks past it are
/// counted ([`Model::tasks_refused`]) and the status line says so.
pub const MAX_TASKS: usize = 1_000_000;

/// The most (kind, location) groups of problems kept; findings at further
/// locations are counted, not grouped.
pub const MAX_PROBLEM_GROUPS: usize = 1_000;

/// Up to this many tasks, the table is re-sorted whenever a value changes.
pub const RESORT_AT_ONCE_UP_TO: usize = 10_000;

/// Above [`RESORT_AT_ONCE_UP_TO`] tasks, the longest a changed value waits to move its row.
pub const RESORT_EVERY: Duration = Duration::from_secs(1);

/// The viewer's picture of the remote app, plus the interface state.
#[derive(Debug)]
pub struct Model {
    /// The address the viewer attaches to, as the user gave it.
    pub addr: String,
    /// The connection state, always shown.
    pub connection: Connection,
    /// When the connection state last changed (for "retrying in 2s").
    pub connection_since: Instant,
    /// Who the app is, once a snapshot came.
    pub app: Option<AppInfo>,
    /// Live and recently finished tasks, by id.
    pub tasks: TaskMap,
    /// The most tasks held ([`MAX_TASKS`] unless set otherwise).
    pub max_tasks: usize,
    /// New tasks left out because the model held [`Model::max_tasks`]
    /// already (since the last snapshot).
    pub tasks_refused: u64,
    /// Finished tasks in the order they ended, to expire them.
    pub(super) finish_queue: VecDeque<(Instant, u64)>,
    /// How many of `tasks` have ended.
    pub(super) finished_count: usize,
    /// Warning marks by task id.
    pub marks: HashMap<u64, Marks>,
    /// Slow polls grouped by spawn location.
    pub slow: SlowPolls,
    /// Never-awaited, leaked and panicked findings, oldest first, at most [`MAX_PROBLEMS`].
    pub problems: VecDeque<Finding>,
    /// Problems dropped from [`Model::problems`] because it was full.
    pub problems_overflow: u64,
    /// Every problem received, grouped by kind and location (the model
    /// `taskscope report` groups them with), at most [`MAX_PROBLEM_GROUPS`].
    pub problem_groups: ProblemGroups,
    /// The app's source roots, learnt from slow polls' stacks, to show
    /// paths relative to them.
    pub source_roots: SourceRoots,
    /// Sum of the counts of `findings_dropped` findings received.
    pub findings_dropped_reported: u64,
    /// Runtime metrics, as last sent.
    pub metrics: RuntimeMetrics,
    /// The runtime's recent past, for the runtime view's plots.
    pub history: RuntimeHistory,
    /// Drop counters, as last sent.
    pub dropped: Dropped,
    /// The app's time of the last update applied.
    pub last_update_at: Option<SystemTime>,
    /// The time the screen shows: the last `now` given, frozen while paused.
    pub now: Instant,
    /// The last `now` given, even while paused (for the connection's countdown).
    pub clock: Instant,
    /// How long finished tasks stay ([`KEEP_FINISHED`]).
    pub keep_finished: Duration,
    /// Whether updates are held instead of applied.
    pub paused: bool,
    /// Updates held while paused.
    pub(super) held: Held,
    /// The last task detail received.
    pub detail: Option<TaskDetail>,
    /// The async stack of the task in the Detail view, taken on demand.
    pub async_stack: StackFetch,
    /// Interface state.
    pub ui: UiState,
    /// Cached table order of the tasks view.
    pub(super) order: TaskOrder,
    /// Set during `taskscope replay`: the replay's cursor, for the status line.
    pub replay: Option<ReplayStatus>,
}

impl Model {
    /// An empty model, connecting to `addr`.
    pub fn new(addr: impl Into<String>, now: Instant) -> Model {
        let addr = addr.into();
        Model {
            connection: Connection::Connecting {
                addr: addr.clone(),
                attempt: 1,
            },
            addr,
            connection_since: now,
            app: None,
            tasks: TaskMap::new(),
            max_tasks: MAX_TASKS,
            tasks_refused: 0,
            finish_queue: VecDeque::new(),
            finished_count: 0,
            marks: HashMap::new(),
            slow: SlowPolls::default(),
            problems: VecDeque::new(),
            problems_overflow: 0,
            problem_groups: ProblemGroups::with_max_groups(MAX_PROBLEM_GROUPS),
            source_roots: SourceRoots::default(),
            findings_dropped_reported: 0,
            metrics: RuntimeMetrics::default(),
            history: RuntimeHistory::default(),
            dropped: Dropped::default(),
            last_update_at: None,
            now,
            clock: now,
            keep_finished: KEEP_FINISHED,
            paused: false,
            held: Held::default(),
            detail: None,
            async_stack: StackFetch::default(),
            ui: UiState::default(),
            order: TaskOrder::default(),
            replay: None,
        }
    }

    /// Advances the clock: expires finished tasks past their keep time.
    /// Does nothing while paused (the picture is frozen).
    pub fn tick(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        if self.paused {
            return;
        }
        self.now = self.now.max(now);
        self.expire_finished();
    }

    fn expire_finished(&mut self) {
        let now = self.now;
        while let Some(&(ended_at, id)) = self.finish_queue.front() {
            if now.saturating_duration_since(ended_at) < self.keep_finished {
                break;
            }
            self.finish_queue.pop_front();
            if self.tasks.get(&id).and_then(|e| e.ended_at) == Some(ended_at) {
                self.tasks.remove(&id);
                self.marks.remove(&id);
                self.finished_count -= 1;
                self.order.row_removed(id);
            }
        }
        // Marks of tasks the viewer never saw (findings about tasks that ended
        // long ago) would otherwise pile up.
        if self.marks.len() > 2 * self.tasks.len() + 1024 {
            let tasks = &self.tasks;
            self.marks.retain(|id, _| tasks.contains_key(id));
        }
    }

    /// Pauses or resumes. Resuming applies the updates held meanwhile, at `now`.
    pub fn set_paused(&mut self, paused: bool, now: Instant) {
        if paused == self.paused {
            return;
        }
        self.paused = paused;
        if !paused {
            let held = std::mem::take(&mut self.held);
            for update in held.into_updates() {
                // Its runtime samples were taken as it came.
                self.fold(update, now);
            }
            self.tick(now);
        }
    }

    /// Updates held while paused (each counted once as it came).
    pub fn held_updates(&self) -> u64 {
        self.held.count
    }

    /// Findings dropped because too many were held while paused.
    pub fn held_findings_dropped(&self) -> u64 {
        self.held.findings_dropped
    }

    /// The warning marks of a task, including what its record shows
    /// (ended by a panic, a poll longer than the app's threshold).
    pub fn marks_of(&self, entry: &TaskEntry) -> Marks {
        let threshold = self
            .app
            .as_ref()
            .map(|a| a.slow_poll_threshold)
            .unwrap_or_default();
        marks_for(&self.marks, threshold, entry)
    }

    /// Re-sorts and re-filters the tasks table if anything changed since the
    /// last time; returns the table's rows (task ids) in order.
    ///
    /// A new sort or filter, or a snapshot: re-sorted at once. Rows added or
    /// removed: merged into the current order (binary search per new row,
    /// one pass over the list; 2 ms a frame at 100,000 tasks instead of a
    /// 20 ms re-sort). Values of known rows changed (or tasks ended): re-sorted at once up to
    /// [`RESORT_AT_ONCE_UP_TO`] tasks (never when sorted by id, where values
    /// do not move rows); above that, at most every [`RESORT_EVERY`], so that
    /// a big app sending deltas ten times a second is not re-sorted ten
    /// times a second (its rows are then up to that long in a stale order).
    pub fn task_order(&mut self) -> &[u64] {
        let values_due = self.order.values_dirty
            && self.ui.tasks_sort.column != Column::Id
            && (self.tasks.len() <= RESORT_AT_ONCE_UP_TO
                || self
                    .order
                    .rebuilt_at
                    .is_none_or(|at| self.now.saturating_duration_since(at) >= RESORT_EVERY));
        // In tree mode rows added or removed take a full layout (a new child
        // goes under its parent): above RESORT_AT_ONCE_UP_TO tasks, at most
        // every RESORT_EVERY (70 ms a layout at 100,000 tasks); rows of tasks
        // gone meanwhile are skipped when drawn.
        let tree_waits = self.ui.tree
            && !self.order.full
            && self.tasks.len() > RESORT_AT_ONCE_UP_TO
            && self
                .order
                .rebuilt_at
                .is_some_and(|at| self.now.saturating_duration_since(at) < RESORT_EVERY);
        if (self.order.dirty && !tree_waits) || values_due {
            let counts = TaskCounts {
                live: self.tasks.len() - self.finished_count,
                finished: self.finished_count,
                shown: 0,
            };
            let ctx = sort::SortContext {
                tasks: &self.tasks,
                marks: &self.marks,
                slow_threshold: self
                    .app
                    .as_ref()
                    .map(|a| a.slow_poll_threshold)
                    .unwrap_or_default(),
                spec: self.ui.tasks_sort,
                filter_text: &self.ui.filter,
                live_only: self.ui.live_only,
                tree: self.ui.tree,
                now: self.now,
            };
            if values_due || !self.order.update_incrementally(&ctx, counts) {
                self.order.rebuild(&ctx);
                self.order.rebuilt_at = Some(self.now);
            }
            self.sync_selection();
        }
        &self.order.ids
    }

    /// In tree mode (`t`), the tree lines drawn before the name of row `row`
    /// of the last [`Model::task_order`] (`│ └─`; empty for a root, and
    /// outside tree mode).
    pub fn tree_prefix(&self, row: usize) -> &str {
        self.order.prefixes.get(row).map_or("", String::as_str)
    }

    /// Counts for the tasks view's title (as of the last [`Model::task_order`]).
    pub fn task_counts(&mut self) -> TaskCounts {
        self.task_order();
        self.order.counts
    }

    /// Marks the table order stale (after a change of sort or filter).
    pub(crate) fn invalidate_order(&mut self) {
        self.order.dirty = true;
        self.order.full = true;
    }

    /// Marks the table order possibly stale because values of known rows changed.
    pub(crate) fn invalidate_order_values(&mut self) {
        self.order.values_dirty = true;
    }

    /// Row of the selected task in the table order, if it is in it.
    pub fn selected_row(&mut self) -> Option<usize> {
        self.task_order();
        let selected = self.ui.selected?;
        if self.order.ids.get(self.ui.selected_row) == Some(&selected) {
            return Some(self.ui.selected_row);
        }
        self.order.ids.iter().position(|id| *id == selected)
    }

    /// After a re-sort: keep the selected task selected; if it is gone, select
    /// the row where it was.
    fn sync_selection(&mut self) {
        let ids = &self.order.ids;
        if ids.is_empty() {
            self.ui.selected_row = 0;
            return;
        }
        let found = self
            .ui
            .selected
            .and_then(|sel| ids.iter().position(|id| *id == sel));
        match found {
            Some(row) => self.ui.selected_row = row,
            None => {
                let row = self.ui.selected_row.min(ids.len() - 1);
                self.ui.selected_row = row;
                if self.ui.selected.is_some() {
                    self.ui.selected = Some(ids[row]);
                }
            }
        }
    }

    /// Selects the row `row` of the tasks table (clamped).
    pub fn select_row(&mut self, row: usize) {
        let ids = self.task_order();
        if ids.is_empty() {
            return;
        }
        let row = row.min(ids.len() - 1);
        let id = ids[row];
        self.ui.selected = Some(id);
        self.ui.selected_row = row;
    }

    /// The selected task's id: the one chosen, or the first row when none was.
    pub fn selected_task(&mut self) -> Option<u64> {
        match self.selected_row() {
            Some(row) => self.order.ids.get(row).copied(),
            None => self.task_order().first().copied(),
        }
    }

    /// The slow-poll groups in the order of the slow-polls view.
    pub fn slow_groups(&mut self) -> Vec<&SlowPollGroup> {
        self.slow.sorted(self.ui.slow_order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::model::{AppInfo, Dropped, Task, TaskState, Update};
    use crate::state::sort::SortSpec;
    use crate::state::view::View;

    #[test]
    fn marks_symbols_and_severity_follow_the_legend() {
        let mut m = Marks::NONE;
        m.insert(Marks::SLOW);
        m.insert(Marks::PANICKED);
        assert_eq!(m.symbols(), "✗⚠");
        assert!(Marks::PANICKED.severity() > Marks::LOST_WAKER.severity());
        assert!(Marks::LOST_WAKER.severity() > Marks::LEAKED.severity());
        assert!(Marks::LEAKED.severity() > Marks::SLOW.severity());
        assert!(Marks::SLOW.severity() > Marks::NONE.severity());
    }

    #[test]
    fn mark_symbols_are_one_cell_wide() {
        // A wide symbol would shift every column right of the marks.
        for (_, symbol, _) in Marks::LEGEND {
            assert_eq!(ratatui::text::Span::raw(symbol).width(), 1, "{symbol}");
        }
    }

    /// Values that vary with the id (so every column sorts differently) and
    /// do not change with time.
    fn task(id: u64, ended: bool) -> Task {
        Task {
            id,
            name: (!id.is_multiple_of(3)).then(|| format!("worker-{}", id % 17)),
            state: TaskState::Idle,
            ended: ended.then_some(taskscope_api::TaskEnd::Completed),
            spawned_at: format!("src/m{}.rs:{}:1", id % 5, id % 23),
            parent: None,
            age: Duration::from_secs(1),
            polls: id % 11,
            busy: Duration::ZERO,
            idle: Duration::from_secs(1),
            since_last_poll: None,
            max_poll: Duration::from_micros(id % 13),
            wakes: 0,
            wakers: 0,
        }
    }

    fn delta(changed: Vec<Task>, finished: Vec<Task>) -> Update {
        Update::Delta {
            changed,
            finished,
            findings: vec![],
            metrics: RuntimeMetrics::default(),
            dropped: Dropped::default(),
            at: std::time::SystemTime::now(),
        }
    }

    /// Tree mode in a big app: a new child is laid out under its parent, at
    /// once up to RESORT_AT_ONCE_UP_TO tasks, above that within RESORT_EVERY.
    #[test]
    fn tree_mode_places_a_new_child_under_its_parent_at_most_a_second_late() {
        let now = Instant::now();
        for count in [100u64, RESORT_AT_ONCE_UP_TO as u64 + 1] {
            let mut model = Model::new("x", now);
            model.apply(
                delta((1..=count).map(|id| task(id, false)).collect(), vec![]),
                now,
            );
            // As `t` does.
            model.ui.tree = true;
            model.invalidate_order();
            model.task_order();
            let mut child = task(count + 1, false);
            child.parent = Some(1);
            model.apply(delta(vec![child], vec![]), now);
            let at_once = count as usize <= RESORT_AT_ONCE_UP_TO;
            let placed = |m: &mut Model| m.task_order().get(1) == Some(&(count + 1));
            assert_eq!(placed(&mut model), at_once, "{count} tasks");
            model.tick(now + RESORT_EVERY);
            assert!(placed(&mut model), "{count} tasks");
            assert_eq!(model.tree_prefix(1), "└─");
        }
    }

    /// The rows kept up to date by merging are the rows a full rebuild gives,
    /// through new, finished and expired tasks and tasks that end before they
    /// were seen, for every column whose values do not change with time, both
    /// directions, with and without a filter.
    #[test]
    fn incremental_order_matches_a_full_rebuild() {
        for column in [
            Column::Id,
            Column::Name,
            Column::SpawnedAt,
            Column::Polls,
            Column::LongestPoll,
        ] {
            for filter in ["", "m3"] {
                incremental_order_matches_a_full_rebuild_for(column, filter);
            }
        }
    }

    fn incremental_order_matches_a_full_rebuild_for(column: Column, filter: &str) {
        let start = Instant::now();
        let mut model = Model::new("x", start);
        model.apply(
            Update::Snapshot {
                app: AppInfo {
                    name: "t".into(),
                    pid: 1,
                    version: "0".into(),
                    protocol: 1,
                    slow_poll_threshold: Duration::from_millis(100),
                    source: Default::default(),
                    poll_timing_one_in: 1,
                },
                tasks: (1..=50).map(|id| task(id, false)).collect(),
                finished: vec![],
                findings: vec![],
                metrics: RuntimeMetrics::default(),
                dropped: Dropped::default(),
                at: std::time::SystemTime::now(),
            },
            start,
        );
        model.ui.tasks_sort = SortSpec::by(column);
        model.ui.filter = filter.into();
        model.invalidate_order();
        let mut seed = 7u64;
        let mut next_id = 51;
        for step in 0..300u64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let now = start + Duration::from_secs(step);
            let live: Vec<u64> = model
                .tasks
                .values()
                .filter(|e| !e.is_finished())
                .map(|e| e.task.id)
                .collect();
            let new: Vec<Task> = (0..(seed >> 20) % 4)
                .map(|_| {
                    next_id += 1 + (seed >> 30) % 3;
                    task(next_id, false)
                })
                .collect();
            let mut finished: Vec<Task> = live
                .iter()
                .filter(|id| (*id ^ (seed >> 40)).is_multiple_of(7))
                .map(|id| task(*id, true))
                .collect();
            if (seed >> 50).is_multiple_of(5) {
                // Seen only as finished.
                next_id += 1;
                finished.push(task(next_id, true));
            }
            model.apply(delta(new, finished), now);
            model.tick(now);
            if step == 150 {
                model.ui.tasks_sort.descending = !model.ui.tasks_sort.descending;
                model.invalidate_order();
            }
            // Only the snapshot's and the change of direction's rebuilds: the
            // rest must have been merges (values are re-sorted at once only up
            // to RESORT_AT_ONCE_UP_TO tasks, and these never change).
            model.order.values_dirty = false;
            let got = model.task_order().to_vec();
            let rebuilds = if step < 150 { 1 } else { 2 };
            assert_eq!(
                model.order.full_rebuilds, rebuilds,
                "{column:?} step {step}"
            );
            assert_eq!((model.now, model.ui.filter.as_str()), (now, filter));
            let (want, counts) = rebuilt(&model);
            assert_eq!(got, want, "{column:?} {filter:?} step {step}");
            assert_eq!(model.task_counts(), counts, "{column:?} step {step}");
        }
    }

    /// A key pressed (as `keys::press`, which this module does not import:
    /// `keys` imports the model).
    fn press(code: ratatui::crossterm::event::KeyCode) -> ratatui::crossterm::event::KeyEvent {
        ratatui::crossterm::event::KeyEvent::new(
            code,
            ratatui::crossterm::event::KeyModifiers::NONE,
        )
    }

    /// A filter typed key by key narrows the rows it has (no walk of every
    /// task, no sort) and gives the rows a full rebuild gives, with tasks
    /// starting and ending between keys; a key that widens it (Backspace)
    /// rebuilds, as Esc does; Enter changes nothing.
    #[test]
    fn a_narrower_filter_keeps_the_rows_a_full_rebuild_gives() {
        use ratatui::crossterm::event::KeyCode;
        for column in [Column::Id, Column::Name, Column::Polls] {
            let start = Instant::now();
            let mut model = Model::new("x", start);
            model.apply(
                delta((1..=4000).map(|id| task(id, false)).collect(), vec![]),
                start,
            );
            model.ui.tasks_sort = SortSpec::by(column);
            model.invalidate_order();
            model.task_order();
            model.handle_key(press(KeyCode::Char('/')), start);
            let mut next_id = 4000;
            let mut narrowed = 0;
            // Spawn locations are `src/m{id % 5}.rs:{id % 23}:1`:
            // "src/m1.rs:13" shows one task in 115, few enough to narrow by
            // lookup (`NARROW_BY_LOOKUP_UP_TO`); "src/m1.rs:1" one in 10.
            let keys = [
                (KeyCode::Char('s'), false),
                (KeyCode::Char('r'), false),
                (KeyCode::Char('c'), false),
                (KeyCode::Char('/'), false),
                (KeyCode::Char('M'), false),
                (KeyCode::Char('1'), false),
                (KeyCode::Char('.'), false),
                (KeyCode::Char('R'), false),
                (KeyCode::Char('s'), false),
                (KeyCode::Char(':'), false),
                (KeyCode::Char('1'), false),
                (KeyCode::Char('3'), false),
                (KeyCode::Char(':'), false),
                (KeyCode::Char('1'), false),
                (KeyCode::Backspace, true),
                (KeyCode::Char('1'), false),
                (KeyCode::Enter, false),
                (KeyCode::Esc, true),
            ];
            for (step, (key, rebuilds)) in keys.into_iter().enumerate() {
                let now = start + Duration::from_secs(step as u64);
                // Between keys: two tasks start, every 9th live one ends.
                let ending: Vec<Task> = model
                    .tasks
                    .values()
                    .filter(|e| !e.is_finished() && (e.task.id + step as u64).is_multiple_of(9))
                    .map(|e| task(e.task.id, true))
                    .collect();
                let new = vec![task(next_id + 1, false), task(next_id + 2, false)];
                next_id += 2;
                model.apply(delta(new, ending), now);
                let shown = model.task_order().len();
                let before = model.order.full_rebuilds;
                model.handle_key(press(key), now);
                model.order.values_dirty = false;
                let got = model.task_order().to_vec();
                let what = format!("{column:?} step {step} filter {:?}", model.ui.filter);
                // Narrowing many rows is a rebuild too (`NARROW_BY_LOOKUP_UP_TO`).
                let many = shown * sort::NARROW_BY_LOOKUP_UP_TO > model.tasks.len();
                assert_eq!(
                    model.order.full_rebuilds - before,
                    u64::from(rebuilds || (many && key != KeyCode::Enter)),
                    "rebuilds: {what}"
                );
                narrowed += u64::from(!rebuilds && !many && key != KeyCode::Enter);
                assert_eq!(model.now, now);
                let (want, counts) = rebuilt(&model);
                assert_eq!(got, want, "{what}");
                assert_eq!(model.task_counts(), counts, "{what}");
            }
            assert_eq!(model.ui.filter, "");
            assert!(
                narrowed >= 3,
                "{column:?}: {narrowed} keys narrowed the rows"
            );
        }
    }

    /// Backspace goes back to the rows the wider filter showed, without a
    /// rebuild, while no row came or went; once one did, it rebuilds. Each
    /// time the rows are those a full rebuild gives.
    #[test]
    fn backspace_restores_the_wider_filters_rows_while_no_row_changed() {
        use ratatui::crossterm::event::KeyCode;
        let start = Instant::now();
        let mut model = Model::new("x", start);
        model.apply(
            delta((1..=400).map(|id| task(id, false)).collect(), vec![]),
            start,
        );
        model.ui.tasks_sort = SortSpec::by(Column::Polls);
        model.invalidate_order();
        model.task_order();
        model.handle_key(press(KeyCode::Char('/')), start);
        let check = |model: &mut Model| {
            let what = model.ui.filter.clone();
            model.order.values_dirty = false;
            let got = model.task_order().to_vec();
            let (want, counts) = rebuilt(model);
            assert_eq!(got, want, "{what}");
            assert_eq!(model.task_counts(), counts, "{what}");
        };
        for c in "src/m1.rs:1".chars() {
            model.handle_key(press(KeyCode::Char(c)), start);
            check(&mut model);
        }
        let rebuilds = model.order.full_rebuilds;
        for _ in 0..3 {
            model.handle_key(press(KeyCode::Backspace), start);
            check(&mut model);
        }
        assert_eq!(model.ui.filter, "src/m1.r");
        assert_eq!(model.order.full_rebuilds, rebuilds, "Backspace rebuilt");
        // A task ends: the saved rows are stale, Backspace rebuilds.
        model.apply(delta(vec![], vec![task(6, true)]), start);
        model.handle_key(press(KeyCode::Backspace), start);
        check(&mut model);
        assert_eq!(model.order.full_rebuilds, rebuilds + 1);
    }

    /// The rows and counts a full rebuild gives for the model as it is.
    fn rebuilt(model: &Model) -> (Vec<u64>, TaskCounts) {
        let mut want = sort::TaskOrder::default();
        want.rebuild(&sort::SortContext {
            tasks: &model.tasks,
            marks: &model.marks,
            slow_threshold: Duration::from_millis(100),
            spec: model.ui.tasks_sort,
            filter_text: &model.ui.filter,
            live_only: model.ui.live_only,
            tree: model.ui.tree,
            now: model.now,
        });
        (want.ids, want.counts)
    }

    /// Tree mode in a big app (its layouts may be held back, see
    /// `task_order`): each filter key, narrowing ones too, shows its rows at
    /// once, also while paused.
    #[test]
    fn in_tree_mode_each_filter_key_shows_its_rows_at_once() {
        use ratatui::crossterm::event::KeyCode;
        for paused in [false, true] {
            let start = Instant::now();
            let mut model = Model::new("x", start);
            let n = RESORT_AT_ONCE_UP_TO as u64 + 1;
            model.apply(
                delta((1..=n).map(|id| task(id, false)).collect(), vec![]),
                start,
            );
            model.handle_key(press(KeyCode::Char('t')), start);
            model.task_order();
            if paused {
                model.handle_key(press(KeyCode::Char('p')), start);
            }
            model.handle_key(press(KeyCode::Char('/')), start);
            for c in "src/m1.rs:13".chars() {
                model.handle_key(press(KeyCode::Char(c)), start);
                let got = model.task_order().to_vec();
                let (want, counts) = rebuilt(&model);
                let what = format!("paused {paused}, filter {:?}", model.ui.filter);
                assert_eq!(got, want, "{what}");
                assert_eq!(model.task_counts(), counts, "{what}");
            }
        }
    }

    /// Sorted by a value that grows with time (busy while running), a
    /// filter key re-sorts at the current time, as a full rebuild does.
    #[test]
    fn a_filter_key_resorts_a_column_that_grows_with_time() {
        use ratatui::crossterm::event::KeyCode;
        let start = Instant::now();
        let mut model = Model::new("x", start);
        let mut tasks: Vec<Task> = (1..=200).map(|id| task(id, false)).collect();
        for t in &mut tasks {
            t.spawned_at = "src/main.rs:1:1".into();
        }
        tasks[0].spawned_at = "src/foo.rs:1:1".into();
        tasks[0].state = TaskState::Running;
        tasks[0].busy = Duration::from_secs(1);
        tasks[1].spawned_at = "src/foo.rs:2:1".into();
        tasks[1].busy = Duration::from_secs(2);
        model.apply(delta(tasks, vec![]), start);
        model.ui.tasks_sort = SortSpec::by(Column::Busy);
        model.invalidate_order();
        model.task_order();
        model.handle_key(press(KeyCode::Char('/')), start);
        model.handle_key(press(KeyCode::Char('f')), start);
        assert_eq!(model.task_order(), &[2, 1]);
        // Task 1 has been running 5 s more: busy 6 s, now first.
        model.tick(start + Duration::from_secs(5));
        model.handle_key(press(KeyCode::Char('o')), start);
        assert_eq!(model.task_order(), &[1, 2]);
        let got = model.task_order().to_vec();
        assert_eq!(got, rebuilt(&model).0);
    }

    #[test]
    fn views_cycle_in_tab_order() {
        assert_eq!(View::Runtime.next(), View::Tasks);
        assert_eq!(View::Tasks.prev(), View::Runtime);
        assert_eq!(View::SlowPolls.index(), 2);
    }
}
