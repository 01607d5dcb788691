//! The interface state: what is shown and how, kept apart from the model of
//! the app so keys can be tested without a terminal.

use std::collections::HashSet;

use taskscope_api::problems::ProblemKey;

use crate::state::slow_polls::{SlowOrder, SlowPollGroup};
use crate::state::sort::SortSpec;
use crate::state::view::View;

/// Interface state: what is shown and how. Kept with the model so keys can be
/// tested without a terminal.
#[derive(Clone, Debug, PartialEq)]
pub struct UiState {
    /// The view shown.
    pub view: View,
    /// Whether the help is shown (over the current view).
    pub help: bool,
    /// Sort column and direction of the tasks view.
    pub tasks_sort: SortSpec,
    /// Order of the slow-polls view.
    pub slow_order: SlowOrder,
    /// The filter of the tasks view: matches name and spawn location, ignoring ASCII case.
    pub filter: String,
    /// Whether keys are typed into the filter.
    pub filter_typing: bool,
    /// The selected task (tasks view), by id.
    pub selected: Option<u64>,
    /// Row of the selection in the table's order, remembered so that when the
    /// selected task goes away the selection stays where it was.
    pub selected_row: usize,
    /// First row drawn in the tasks table.
    pub tasks_offset: usize,
    /// Rows that fit on a page, as last drawn (for PageUp/PageDown).
    pub page: usize,
    /// Selected group in the slow-polls view, by spawn location (so that it
    /// stays selected when newer slow polls reorder the groups).
    pub slow_selected: Option<String>,
    /// The task whose detail is shown.
    pub detail_id: Option<u64>,
    /// Scroll of the detail view, in lines.
    pub detail_scroll: usize,
    /// Scroll of the problems view, in lines.
    pub problems_scroll: usize,
    /// Show only live tasks in the tasks view (`l`); finished ones are
    /// otherwise shown below the live ones.
    pub live_only: bool,
    /// Show the tasks as trees by parent (`t`): children under their parent.
    pub tree: bool,
    /// Show stacks whole (`f`) instead of with the runtime's frames folded.
    pub full_stacks: bool,
    /// The selected group of the problems view, by key (so that it stays
    /// selected when newer problems reorder the groups).
    pub problems_selected: Option<ProblemKey>,
    /// The problem groups whose occurrences are shown (Enter).
    pub problems_expanded: HashSet<ProblemKey>,
    /// Whether the problems view scrolls to show the selected group (after
    /// the selection moved; PgUp and PgDn scroll freely).
    pub problems_follow: bool,
}

impl UiState {
    /// Row of the selected slow-poll group among `groups` (the first when
    /// none is chosen, or the chosen one is not among them).
    pub fn slow_selected_row(&self, groups: &[&SlowPollGroup]) -> usize {
        self.slow_selected
            .as_deref()
            .and_then(|location| groups.iter().position(|g| g.location() == location))
            .unwrap_or(0)
    }
}

impl Default for UiState {
    fn default() -> Self {
        UiState {
            view: View::Tasks,
            help: false,
            tasks_sort: SortSpec::default(),
            slow_order: SlowOrder::Newest,
            filter: String::new(),
            filter_typing: false,
            selected: None,
            selected_row: 0,
            tasks_offset: 0,
            page: 20,
            slow_selected: None,
            detail_id: None,
            detail_scroll: 0,
            problems_scroll: 0,
            live_only: false,
            tree: false,
            full_stacks: false,
            problems_selected: None,
            problems_expanded: HashSet::new(),
            problems_follow: true,
        }
    }
}
