//! One task as the viewer holds it ([`TaskEntry`]), its warning marks
//! ([`Marks`]), and the counts the tasks view shows ([`TaskCounts`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::state::model::{Task, TaskEnd, TaskState};

/// Warning marks of a task, shown in the tasks table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Marks(u8);

impl Marks {
    /// It had a slow poll (`⚠`).
    pub const SLOW: Marks = Marks(1);
    /// It panicked (`✗`).
    pub const PANICKED: Marks = Marks(2);
    /// It can never be woken again: no waker left (`↯`).
    pub const LOST_WAKER: Marks = Marks(4);
    /// Reported leaked: alive at shutdown or idle too long (`⧖`).
    pub const LEAKED: Marks = Marks(8);

    /// No mark.
    pub const NONE: Marks = Marks(0);

    /// Every mark with its symbol and meaning, most severe first.
    pub const LEGEND: [(Marks, &'static str, &'static str); 4] = [
        (Marks::PANICKED, "✗", "panicked"),
        (
            Marks::LOST_WAKER,
            "↯",
            "lost waker: can never be woken again",
        ),
        (
            Marks::LEAKED,
            "⧖",
            "leaked: alive at shutdown or idle too long",
        ),
        (Marks::SLOW, "⚠", "had a slow poll"),
    ];

    /// Whether every mark of `other` is set.
    pub fn contains(self, other: Marks) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the marks of `other`.
    pub fn insert(&mut self, other: Marks) {
        self.0 |= other.0;
    }

    /// Both sets of marks.
    pub fn union(self, other: Marks) -> Marks {
        Marks(self.0 | other.0)
    }

    /// Whether no mark is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The symbols of the marks set, most severe first (`"✗⚠"`).
    pub fn symbols(self) -> String {
        Marks::LEGEND
            .iter()
            .filter(|(m, _, _)| self.contains(*m))
            .map(|(_, s, _)| *s)
            .collect()
    }

    /// A number that orders marks by severity (panicked > lost waker > leaked > slow).
    pub fn severity(self) -> u8 {
        // The bits are laid out slow < panicked < lost waker < leaked; weigh them
        // in the order of the legend instead.
        let mut score = 0;
        for (i, (m, _, _)) in Marks::LEGEND.iter().enumerate() {
            if self.contains(*m) {
                score |= 1 << (Marks::LEGEND.len() - 1 - i);
            }
        }
        score
    }
}

/// The marks of `entry`: those from findings, plus what its record shows
/// (ended by a panic; a poll at least `slow_threshold` long, unless zero).
pub(crate) fn marks_for(
    marks: &HashMap<u64, Marks>,
    slow_threshold: Duration,
    entry: &TaskEntry,
) -> Marks {
    let mut m = marks.get(&entry.task.id).copied().unwrap_or_default();
    if entry.task.ended == Some(TaskEnd::Panicked) {
        m.insert(Marks::PANICKED);
    }
    if !slow_threshold.is_zero() && entry.task.max_poll >= slow_threshold {
        m.insert(Marks::SLOW);
    }
    m
}

/// One task in the model: the last record the app sent, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskEntry {
    /// The record as the app sent it.
    pub task: Task,
    /// When the viewer received it.
    pub updated_at: Instant,
    /// When the viewer learnt that the task ended (`None` while alive).
    pub ended_at: Option<Instant>,
}

impl TaskEntry {
    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.ended_at.is_some() || self.task.ended.is_some()
    }

    fn since_update(&self, now: Instant) -> Duration {
        if self.is_finished() {
            Duration::ZERO
        } else {
            now.saturating_duration_since(self.updated_at)
        }
    }

    /// Age at `now`: the age the app reported, plus the time since (while alive).
    pub fn age_at(&self, now: Instant) -> Duration {
        self.task.age + self.since_update(now)
    }

    /// Idle time at `now`: grows between updates while the task is not running.
    pub fn idle_at(&self, now: Instant) -> Duration {
        match self.task.state {
            TaskState::Running => self.task.idle,
            _ => self.task.idle + self.since_update(now),
        }
    }

    /// Busy time at `now`: grows between updates while the task is running.
    pub fn busy_at(&self, now: Instant) -> Duration {
        match self.task.state {
            TaskState::Running => self.task.busy + self.since_update(now),
            _ => self.task.busy,
        }
    }

    /// What to call the task's state: `running`, `idle`, ... or how it ended.
    pub fn state_text(&self) -> &'static str {
        match self.task.ended {
            Some(end) => end.as_str(),
            None if self.ended_at.is_some() => "finished",
            None => self.task.state.as_str(),
        }
    }
}

/// Task counts for the tasks view's title.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Live tasks.
    pub live: usize,
    /// Finished tasks still shown.
    pub finished: usize,
    /// Rows that pass the filter.
    pub shown: usize,
}
