//! Sorting the tasks table, and the cached order of its rows.
//!
//! Live tasks come first, in the chosen order; the finished ones (kept a
//! while, dimmed) below them, in the same order; with "live only" (`l`) the
//! finished ones are left out.
//!
//! The order is a list of task ids, rebuilt only when something changed (an
//! update, the sort, the filter, an expiry), not every frame. A rebuild walks
//! the tasks once, takes each row's sort key (numbers, or borrowed strings),
//! and sorts those pairs: no lookups while sorting and no copies of tasks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::state::entry::{Marks, TaskCounts, TaskEntry, marks_for};
use crate::state::filter;
use crate::state::model::TaskState;
use crate::state::task_map::TaskMap;

/// A column of the tasks table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    /// Task id.
    Id,
    /// Name given at spawn.
    Name,
    /// Running, scheduled, idle, or how it ended.
    State,
    /// Spawn location (by file, then line, then column).
    SpawnedAt,
    /// Number of polls.
    Polls,
    /// Time inside polls.
    Busy,
    /// Time alive and not polled.
    Idle,
    /// Time since spawn.
    Age,
    /// Longest single poll.
    LongestPoll,
    /// Warning marks (by severity).
    Warnings,
}

impl Column {
    /// Every column, left to right.
    pub const ALL: [Column; 10] = [
        Column::Id,
        Column::Name,
        Column::State,
        Column::SpawnedAt,
        Column::Polls,
        Column::Busy,
        Column::Idle,
        Column::Age,
        Column::LongestPoll,
        Column::Warnings,
    ];

    /// The column's header.
    pub fn title(self) -> &'static str {
        match self {
            Column::Id => "ID",
            Column::Name => "NAME",
            Column::State => "STATE",
            Column::SpawnedAt => "SPAWNED AT",
            Column::Polls => "POLLS",
            Column::Busy => "BUSY",
            Column::Idle => "IDLE",
            Column::Age => "AGE",
            Column::LongestPoll => "LONGEST",
            Column::Warnings => "WARN",
        }
    }

    fn index(self) -> usize {
        Column::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }

    /// The column to the right (wrapping).
    pub fn next(self) -> Column {
        Column::ALL[(self.index() + 1) % Column::ALL.len()]
    }

    /// The column to the left (wrapping).
    pub fn prev(self) -> Column {
        Column::ALL[(self.index() + Column::ALL.len() - 1) % Column::ALL.len()]
    }

    /// The direction a column starts in when chosen: text ascending, amounts
    /// descending (the biggest first, which is what one looks for).
    pub fn default_descending(self) -> bool {
        !matches!(
            self,
            Column::Id | Column::Name | Column::State | Column::SpawnedAt
        )
    }

    /// Whether a row's value in this column grows with the time the viewer
    /// extrapolates between updates (busy while running, idle while not,
    /// age): the order from the last sort may be stale by now.
    pub fn changes_with_time(self) -> bool {
        matches!(self, Column::Busy | Column::Idle | Column::Age)
    }
}

/// A sort column and direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SortSpec {
    /// The column.
    pub column: Column,
    /// Largest first.
    pub descending: bool,
}

impl Default for SortSpec {
    /// By id, ascending: the order tasks were spawned in.
    fn default() -> Self {
        SortSpec {
            column: Column::Id,
            descending: false,
        }
    }
}

impl SortSpec {
    /// Sort by `column` in its default direction.
    pub fn by(column: Column) -> SortSpec {
        SortSpec {
            column,
            descending: column.default_descending(),
        }
    }
}

/// The rows of the tasks table, cached.
#[derive(Debug)]
pub(crate) struct TaskOrder {
    /// Task ids in display order (filtered).
    pub ids: Vec<u64>,
    /// In tree mode, each row's tree lines (`│ ├─`), by row; empty otherwise.
    pub prefixes: Vec<String>,
    /// Counts as of the last rebuild.
    pub counts: TaskCounts,
    /// Whether it must be brought up to date before use (rows, sort or filter changed).
    pub dirty: bool,
    /// Whether that takes a full rebuild (sort, filter or snapshot), not just
    /// the rows in `added` and `removed`.
    pub full: bool,
    /// Rows added since the last update (new tasks).
    added: Vec<u64>,
    /// Rows removed since the last update (finished tasks expired).
    removed: Vec<u64>,
    /// Full rebuilds so far (for tests: the merge must be the common case).
    pub(crate) full_rebuilds: u64,
    /// Whether values of rows changed since the last rebuild.
    pub values_dirty: bool,
    /// When it was last rebuilt (the model's time).
    pub rebuilt_at: Option<Instant>,
    /// The filter the rows in `ids` passed (as typed).
    filtered_by: String,
    /// The filter was made narrower since (it contains `filtered_by`): the
    /// rows to keep are among those in `ids`, in the same order.
    narrowed: bool,
    /// The rows of the wider filters this one was narrowed from, widest
    /// first: a Backspace goes back to the last one while no row came or
    /// went since it was saved. At most [`MAX_SAVED_ROWS`] rows in all.
    wider: Vec<SavedRows>,
    /// Rows added or removed so far (what makes a saved order stale).
    changes: u64,
}

/// The rows a filter showed, saved when it was narrowed.
#[derive(Debug)]
struct SavedRows {
    filter: String,
    ids: Vec<u64>,
    /// [`TaskOrder::changes`] when saved.
    changes: u64,
}

/// Rows kept for Backspace at most (8 bytes each: 16 MB).
const MAX_SAVED_ROWS: usize = 2_000_000;

impl Default for TaskOrder {
    fn default() -> Self {
        TaskOrder {
            ids: Vec::new(),
            prefixes: Vec::new(),
            counts: TaskCounts::default(),
            dirty: true,
            full: true,
            added: Vec::new(),
            removed: Vec::new(),
            full_rebuilds: 0,
            values_dirty: false,
            rebuilt_at: None,
            filtered_by: String::new(),
            narrowed: false,
            wider: Vec::new(),
            changes: 0,
        }
    }
}

/// A narrower filter keeps the rows that still pass by looking each up
/// when they are at most one task in this many; above, a full rebuild is
/// faster: it walks the tasks in memory order, ~35 ns a task at a million,
/// where a lookup reads scattered memory, ~800 ns a row (`benches/frame.rs`).
pub(crate) const NARROW_BY_LOOKUP_UP_TO: usize = 32;

/// Pending row changes beyond this many: a full rebuild is as cheap (and the
/// lists stay bounded while the tasks view is not drawn).
const MAX_PENDING: usize = 50_000;

impl TaskOrder {
    /// The filter is now `filter`. A filter that contains the one the rows
    /// passed (a key typed at its end, or anywhere) can only take rows out,
    /// never reorder them: when few rows are shown, the next update keeps
    /// those that still pass (at a million tasks, a lookup of each row shown
    /// instead of a walk of every task and a sort). Any other change, or
    /// many rows shown, takes a full rebuild.
    ///
    /// `keep_rows` false (tree mode, whose layout is made whole and may be
    /// held back for a while at many tasks; or a sort by a value that grows
    /// with time, which a filter key has always re-sorted): always a full
    /// rebuild, at once.
    pub fn filter_changed(&mut self, filter: &str, keep_rows: bool) {
        let (old, new) = (self.filtered_by.trim(), filter.trim());
        if old == new {
            return;
        }
        self.dirty = true;
        if !keep_rows {
            self.full = true;
        } else if filter::contains_ignore_ascii_case(new, old) {
            self.narrowed = true;
        } else if let Some(saved) = self.wider.pop_if(|saved| {
            saved.filter.trim() == new && saved.changes == self.changes && !self.full
        }) {
            // Back to a wider filter (Backspace) whose rows are still those.
            self.ids = saved.ids;
            self.filtered_by = saved.filter;
            self.narrowed = false;
        } else {
            self.full = true;
        }
    }

    /// Saves the rows in `ids` (those `filtered_by` shows) before a narrower
    /// filter takes rows out, if they are up to date.
    fn save_wider(&mut self) {
        if self.full || !self.added.is_empty() || !self.removed.is_empty() {
            return;
        }
        self.wider.push(SavedRows {
            filter: self.filtered_by.clone(),
            ids: self.ids.clone(),
            changes: self.changes,
        });
        let mut saved: usize = self.wider.iter().map(|s| s.ids.len()).sum();
        while saved > MAX_SAVED_ROWS {
            // The widest (the first) goes: it is the largest.
            saved -= self.wider.remove(0).ids.len();
        }
    }

    /// A new row: kept to be merged in at the next update.
    pub fn row_added(&mut self, id: u64) {
        self.dirty = true;
        self.changes += 1;
        if !self.full {
            self.added.push(id);
            self.check_pending();
        }
    }

    /// A row gone: kept to be taken out at the next update.
    pub fn row_removed(&mut self, id: u64) {
        self.dirty = true;
        self.changes += 1;
        if !self.full {
            self.removed.push(id);
            self.check_pending();
        }
    }

    fn check_pending(&mut self) {
        if self.added.len() + self.removed.len() > MAX_PENDING {
            self.full = true;
            self.added = Vec::new();
            self.removed = Vec::new();
        }
    }

    /// Brings the order up to date from the rows added and removed, without
    /// looking at every task: rows gone are taken out, and each new row that
    /// passes the filter is placed by a binary search of the current order,
    /// all in one pass over the row list. Values of the other rows are not
    /// looked at (they move at the next full rebuild, see `Model::task_order`).
    /// Returns false when a full rebuild is needed (sort, filter or snapshot).
    pub fn update_incrementally(&mut self, ctx: &SortContext<'_>, mut counts: TaskCounts) -> bool {
        // A tree is laid out whole (a new child goes under its parent).
        if self.full || ctx.tree {
            return false;
        }
        if self.narrowed {
            self.save_wider();
            if self.ids.len() > ctx.tasks.len() / NARROW_BY_LOOKUP_UP_TO {
                // Looking each row up costs more than the walk of every task
                // and the sort (see `NARROW_BY_LOOKUP_UP_TO`).
                return false;
            }
            self.ids
                .retain(|id| ctx.tasks.get(id).is_some_and(|e| ctx.shows(e)));
            ctx.filter_text.clone_into(&mut self.filtered_by);
            self.narrowed = false;
        }
        if !self.removed.is_empty() {
            let removed: std::collections::HashSet<u64> = self.removed.drain(..).collect();
            self.ids.retain(|id| !removed.contains(id));
        }
        if !self.added.is_empty() {
            let mut added = std::mem::take(&mut self.added);
            added.sort_unstable();
            added.dedup();
            // A row added and removed again before this update is not a row.
            let mut placed: Vec<(usize, &TaskEntry)> = added
                .iter()
                .filter_map(|id| ctx.tasks.get(id))
                .filter(|entry| ctx.shows(entry))
                .map(|entry| {
                    let at = self.ids.partition_point(|old| {
                        ctx.tasks
                            .get(old)
                            .is_some_and(|old| ctx.compare(old, entry).is_lt())
                    });
                    (at, entry)
                })
                .collect();
            placed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| ctx.compare(a.1, b.1)));
            let old = std::mem::take(&mut self.ids);
            let mut merged = Vec::with_capacity(old.len() + placed.len());
            let mut from = 0;
            for (at, entry) in placed {
                merged.extend_from_slice(&old[from..at]);
                merged.push(entry.task.id);
                from = at;
            }
            merged.extend_from_slice(&old[from..]);
            self.ids = merged;
        }
        counts.shown = self.ids.len();
        self.counts = counts;
        self.dirty = false;
        true
    }

    /// Filters and sorts `tasks` into `self.ids`.
    pub fn rebuild(&mut self, ctx: &SortContext<'_>) {
        if !self.narrowed || self.full || (self.values_dirty && ctx.spec.column != Column::Id) {
            // Not rows the saved ones were narrowed to: they may be sorted,
            // or filtered as shown, otherwise (or the values moved rows).
            self.wider.clear();
        }
        let mut counts = TaskCounts::default();
        let mut rows: Vec<&TaskEntry> = Vec::with_capacity(ctx.tasks.len());
        for entry in ctx.tasks.values() {
            if entry.is_finished() {
                counts.finished += 1;
            } else {
                counts.live += 1;
            }
            if ctx.shows(entry) {
                rows.push(entry);
            }
        }
        counts.shown = rows.len();
        self.ids = if ctx.spec.column == Column::Id {
            // Plain numbers: the fastest sort there is (and the default view).
            let mut ids: Vec<(bool, u64)> =
                rows.iter().map(|e| (e.is_finished(), e.task.id)).collect();
            ids.sort_unstable();
            if ctx.spec.descending {
                // Live first still: each part reversed on its own.
                let live = ids.partition_point(|(finished, _)| !finished);
                ids[..live].reverse();
                ids[live..].reverse();
            }
            ids.into_iter().map(|(_, id)| id).collect()
        } else {
            // Each row's key taken once: no lookups while sorting.
            let mut keyed: Vec<(bool, SortKey<'_>, u64)> = rows
                .iter()
                .map(|e| (e.is_finished(), ctx.key(e), e.task.id))
                .collect();
            keyed.sort_unstable_by(|a, b| {
                a.0.cmp(&b.0).then_with(|| ctx.order(&a.1, a.2, &b.1, b.2))
            });
            keyed.into_iter().map(|(_, _, id)| id).collect()
        };
        self.prefixes.clear();
        if ctx.tree {
            self.nest(ctx);
        }
        self.counts = counts;
        self.full_rebuilds += 1;
        self.dirty = false;
        self.full = false;
        ctx.filter_text.clone_into(&mut self.filtered_by);
        self.narrowed = false;
        self.added.clear();
        self.removed.clear();
        self.values_dirty = false;
    }
}

impl TaskOrder {
    /// Rearranges the sorted rows as trees by parent ([`crate::tree`]'s
    /// rules): the live ones first, then the finished ones, each part a
    /// forest of its own (a task nests under a shown parent of its part;
    /// one whose parent is finished, gone or filtered out is a root);
    /// siblings stay in the sort's order.
    fn nest(&mut self, ctx: &SortContext<'_>) {
        let finished = |id: &u64| ctx.tasks.get(id).is_none_or(TaskEntry::is_finished);
        let live = self.ids.partition_point(|id| !finished(id));
        let parent = |id: &u64| ctx.tasks.get(id).and_then(|e| e.task.parent);
        let mut ids = Vec::with_capacity(self.ids.len());
        let mut prefixes = Vec::with_capacity(self.ids.len());
        for part in [&self.ids[..live], &self.ids[live..]] {
            for step in crate::tree::walk(part, |id| *id, parent) {
                if let crate::tree::Step::Node { item, guides } = step {
                    ids.push(*item);
                    prefixes.push(guides.prefix(false));
                }
            }
        }
        self.ids = ids;
        self.prefixes = prefixes;
    }
}

/// What a row is sorted by, in the sort's column.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortKey<'a> {
    /// Id, polls, state rank, warning severity.
    Number(u64),
    /// Busy, idle, age, longest poll.
    Time(Duration),
    /// Named first, then by name.
    Name(bool, Option<&'a str>),
    /// Path, then line and column as numbers.
    Location(&'a str, u32, u32),
}

/// What ordering two rows needs besides the rows themselves.
pub struct SortContext<'a> {
    /// Every task, by id.
    pub tasks: &'a TaskMap,
    /// Warning marks, by id.
    pub marks: &'a HashMap<u64, Marks>,
    /// The app's slow-poll threshold (for marks).
    pub slow_threshold: Duration,
    /// The sort.
    pub spec: SortSpec,
    /// The filter text.
    pub filter_text: &'a str,
    /// Leave finished tasks out.
    pub live_only: bool,
    /// Lay the rows out as trees by parent (`t`).
    pub tree: bool,
    /// The model's time.
    pub now: Instant,
}

impl SortContext<'_> {
    /// The key `entry` sorts by in the sort's column.
    pub fn key<'e>(&self, entry: &'e TaskEntry) -> SortKey<'e> {
        let now = self.now;
        match self.spec.column {
            Column::Id => SortKey::Number(entry.task.id),
            Column::Name => {
                // Unnamed tasks after the named ones.
                let name = entry.task.name.as_deref();
                SortKey::Name(name.is_none(), name)
            }
            Column::State => SortKey::Number(state_rank(entry).into()),
            Column::SpawnedAt => {
                let (path, line, col) = location_key(&entry.task.spawned_at);
                SortKey::Location(path, line, col)
            }
            Column::Polls => SortKey::Number(entry.task.polls),
            Column::Busy => SortKey::Time(entry.busy_at(now)),
            Column::Idle => SortKey::Time(entry.idle_at(now)),
            Column::Age => SortKey::Time(entry.age_at(now)),
            Column::LongestPoll => SortKey::Time(entry.task.max_poll),
            Column::Warnings => SortKey::Number(
                marks_for(self.marks, self.slow_threshold, entry)
                    .severity()
                    .into(),
            ),
        }
    }

    /// The order of two rows given their keys and ids: by key in the sort's
    /// direction, ties by id ascending.
    fn order(&self, a: &SortKey<'_>, a_id: u64, b: &SortKey<'_>, b_id: u64) -> std::cmp::Ordering {
        let by_key = if self.spec.descending {
            b.cmp(a)
        } else {
            a.cmp(b)
        };
        by_key.then(a_id.cmp(&b_id))
    }

    /// The order of two rows, as the full rebuild of the task order sorts
    /// them: live before finished, then by key.
    pub fn compare(&self, a: &TaskEntry, b: &TaskEntry) -> std::cmp::Ordering {
        a.is_finished()
            .cmp(&b.is_finished())
            .then_with(|| self.order(&self.key(a), a.task.id, &self.key(b), b.task.id))
    }

    /// Whether `entry` is a row: it passes the filter, and is alive when
    /// only live tasks are shown.
    pub fn shows(&self, entry: &TaskEntry) -> bool {
        !(self.live_only && entry.is_finished()) && filter::matches(&entry.task, self.filter_text)
    }
}

fn state_rank(e: &TaskEntry) -> u8 {
    if e.is_finished() {
        return 3;
    }
    match e.task.state {
        TaskState::Running => 0,
        TaskState::Scheduled => 1,
        TaskState::Idle => 2,
    }
}

/// `path:line:col` as `(path, line, col)`, so that line 9 sorts before line 10.
fn location_key(at: &str) -> (&str, u32, u32) {
    let mut parts = at.rsplitn(3, ':');
    let col = parts.next();
    let line = parts.next();
    let path = parts.next();
    match (
        path,
        line.and_then(|l| l.parse().ok()),
        col.and_then(|c| c.parse().ok()),
    ) {
        (Some(path), Some(line), Some(col)) => (path, line, col),
        _ => (at, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_sort_by_line_number_not_text() {
        assert!(location_key("src/a.rs:9:5") < location_key("src/a.rs:10:5"));
        assert!(location_key("src/a.rs:10:5") < location_key("src/b.rs:1:1"));
        assert_eq!(location_key("<unknown>"), ("<unknown>", 0, 0));
    }

    #[test]
    fn columns_wrap_both_ways() {
        assert_eq!(Column::Warnings.next(), Column::Id);
        assert_eq!(Column::Id.prev(), Column::Warnings);
        assert!(SortSpec::by(Column::Polls).descending);
        assert!(!SortSpec::by(Column::Name).descending);
    }
}
