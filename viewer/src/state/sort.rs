//! Sorting the tasks table, and the cached order of its rows.
//!
//! The order is a list of task ids, rebuilt only when something changed (an
//! update, the sort, the filter, an expiry), not every frame. A rebuild walks
//! the tasks once, takes each row's sort key (numbers, or borrowed strings),
//! and sorts those pairs: no lookups while sorting and no copies of tasks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Marks, TaskCounts, TaskEntry, TaskState, filter};

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
    /// Counts as of the last rebuild.
    pub counts: TaskCounts,
    /// Whether it must be rebuilt before use (rows, sort or filter changed).
    pub dirty: bool,
    /// Whether values of rows changed since the last rebuild.
    pub values_dirty: bool,
    /// When it was last rebuilt (the model's time).
    pub rebuilt_at: Option<Instant>,
}

impl Default for TaskOrder {
    fn default() -> Self {
        TaskOrder {
            ids: Vec::new(),
            counts: TaskCounts::default(),
            dirty: true,
            values_dirty: false,
            rebuilt_at: None,
        }
    }
}

impl TaskOrder {
    /// Filters and sorts `tasks` into `self.ids`.
    pub fn rebuild(
        &mut self,
        tasks: &HashMap<u64, TaskEntry>,
        marks: &HashMap<u64, Marks>,
        slow_threshold: Duration,
        spec: SortSpec,
        filter_text: &str,
        now: Instant,
    ) {
        let mut counts = TaskCounts::default();
        let mut rows: Vec<&TaskEntry> = Vec::with_capacity(tasks.len());
        for entry in tasks.values() {
            if entry.is_finished() {
                counts.finished += 1;
            } else {
                counts.live += 1;
            }
            if filter::matches(&entry.task, filter_text) {
                rows.push(entry);
            }
        }
        counts.shown = rows.len();
        let desc = spec.descending;
        let ids = match spec.column {
            Column::Id => sorted(&rows, desc, |_| 0u8),
            Column::Name => sorted(&rows, desc, |e| {
                // Unnamed tasks after the named ones.
                let name = e.task.name.as_deref();
                (name.is_none(), name)
            }),
            Column::State => sorted(&rows, desc, state_rank),
            Column::SpawnedAt => sorted(&rows, desc, |e| location_key(&e.task.spawned_at)),
            Column::Polls => sorted(&rows, desc, |e| e.task.polls),
            Column::Busy => sorted(&rows, desc, |e| e.busy_at(now)),
            Column::Idle => sorted(&rows, desc, |e| e.idle_at(now)),
            Column::Age => sorted(&rows, desc, |e| e.age_at(now)),
            Column::LongestPoll => sorted(&rows, desc, |e| e.task.max_poll),
            Column::Warnings => sorted(&rows, desc, |e| {
                super::marks_for(marks, slow_threshold, e).severity()
            }),
        };
        self.ids = ids;
        self.counts = counts;
        self.dirty = false;
        self.values_dirty = false;
    }
}

/// Sorts `rows` by `key` (ties by id, ascending) and returns their ids.
fn sorted<'a, K: Ord>(
    rows: &[&'a TaskEntry],
    descending: bool,
    key: impl Fn(&'a TaskEntry) -> K,
) -> Vec<u64> {
    let mut keyed: Vec<(K, u64)> = rows.iter().map(|e| (key(e), e.task.id)).collect();
    keyed.sort_unstable_by(|a, b| {
        let by_key = if descending {
            b.0.cmp(&a.0)
        } else {
            a.0.cmp(&b.0)
        };
        by_key.then(a.1.cmp(&b.1))
    });
    keyed.into_iter().map(|(_, id)| id).collect()
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
