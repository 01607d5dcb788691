//! The problems view's rows: the groups of [`Model::problem_groups`] by
//! section, newest first in each, and the occurrences of a group.

use taskscope_api::LeakReason;
use taskscope_api::problems::{ProblemGroup, ProblemKey};

use crate::state::app_model::Model;
use crate::state::model::Finding;

/// The problems view's sections, in order: title and the finding kind each holds.
pub const SECTIONS: [(&str, &str); 3] = [
    ("Never awaited", "never_awaited"),
    ("Leaked and lost tasks", "leaked_task"),
    ("Panics", "task_panicked"),
];

/// How a group is tagged in the problems view: its kind in a few words.
pub fn tag(group: &ProblemGroup) -> &'static str {
    match (group.kind, group.reason) {
        ("never_awaited", _) => "never awaited",
        (_, Some(LeakReason::LostWaker)) => "lost waker",
        (_, Some(LeakReason::AliveAtShutdown)) => "at shutdown",
        (_, Some(LeakReason::IdleTooLong)) => "idle too long",
        ("task_panicked", _) => "panicked",
        _ => "other",
    }
}

impl Model {
    /// The groups of section `section` ([`SECTIONS`]), the newest first.
    pub fn problem_section(&self, section: usize) -> Vec<&ProblemGroup> {
        let Some((_, kind)) = SECTIONS.get(section) else {
            return Vec::new();
        };
        let mut groups: Vec<&ProblemGroup> = self
            .problem_groups
            .groups()
            .iter()
            .filter(|g| g.kind == *kind)
            .collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.last_taken));
        groups
    }

    /// Every group, in the order of the problems view.
    pub fn problem_rows(&self) -> Vec<&ProblemGroup> {
        (0..SECTIONS.len())
            .flat_map(|s| self.problem_section(s))
            .collect()
    }

    /// Row of the selected group among `rows` (the first when none is
    /// chosen, or the chosen one is gone).
    pub fn problem_selected_row(&self, rows: &[&ProblemGroup]) -> usize {
        self.ui
            .problems_selected
            .as_ref()
            .and_then(|key| rows.iter().position(|g| g.has_key(key)))
            .unwrap_or(0)
    }

    /// The findings of the group `key` still kept ([`Model::problems`]),
    /// the newest first.
    pub fn occurrences<'a>(&'a self, key: &'a ProblemKey) -> impl Iterator<Item = &'a Finding> {
        self.problems.iter().rev().filter(move |f| key.matches(f))
    }
}
