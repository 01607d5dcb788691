//! Keys: what each does to the interface state, and what it asks of the
//! outside world ([`Action`]).
//!
//! | key | where | does |
//! |---|---|---|
//! | `q`, Ctrl-C | anywhere | quit |
//! | `?` | anywhere | show / hide the help |
//! | `p` | anywhere | pause / resume (updates are held meanwhile) |
//! | `1`..`5`, Tab, Shift-Tab | anywhere | switch view |
//! | ↑ ↓ `k` `j`, PgUp PgDn, Home End `g` `G` | lists | move the selection / scroll |
//! | `<` `>`, ← → | tasks | choose the sort column |
//! | `i` | tasks | invert the sort |
//! | `/` | tasks | type a filter (name or spawn location); Enter keeps it, Esc clears it |
//! | Esc | tasks | clear the filter |
//! | Enter | tasks, slow polls | open the task's detail (slow polls: the worst poll's task) |
//! | Esc, Backspace | detail | back to the tasks |
//! | `o`, `<` `>`, ← → | slow polls | newest first / worst first |
//! | `l` | tasks | live tasks only / finished ones too (below the live ones) |
//! | `t` | tasks | tree by parent (children under their parent) / flat list |
//! | `s` | detail | take the task's async stack again (a task dump) |
//! | `f` | slow polls, detail | whole stacks / the runtime's frames folded |
//! | Enter | problems | show / hide the selected group's occurrences |

use std::time::Instant;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::state::app_model::Model;
use crate::state::sort::SortSpec;
use crate::state::view::View;

/// What a key asks the outside world to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave the viewer.
    Quit,
    /// Ask the app for the detail of this task ([`crate::state::model::Request::Detail`]).
    RequestDetail(u64),
    /// Ask for the detail of this task with where it waits
    /// ([`crate::state::model::Request::DetailWithStack`]: a task dump).
    RequestDetailWithStack(u64),
}

/// Every key binding, as the help view lists them: `(keys, what they do)`.
pub const BINDINGS: &[(&str, &str)] = &[
    ("q  Ctrl-C", "quit"),
    ("?", "show / hide this help"),
    ("p", "pause / resume (updates are held while paused)"),
    (
        "1 2 3 4 5",
        "views: tasks, detail, slow polls, problems, runtime",
    ),
    ("Tab  Shift-Tab", "next / previous view"),
    ("↑ ↓  k j", "move the selection, scroll"),
    (
        "PgUp PgDn  Home End  g G",
        "move by a page, to the top, to the bottom",
    ),
    (
        "< >  ← →",
        "tasks: choose the sort column; slow polls: newest / worst first",
    ),
    ("i", "tasks: invert the sort"),
    (
        "/",
        "tasks: filter by name or spawn location (Enter keeps, Esc clears)",
    ),
    ("Esc", "tasks: clear the filter; detail: back to the tasks"),
    (
        "Enter",
        "open the detail of the selected task (slow polls: its worst poll's task)",
    ),
    ("o", "slow polls: newest first / worst first"),
    (
        "l",
        "tasks: live tasks only / finished ones too (below the live ones)",
    ),
    (
        "t",
        "tasks: tree by parent (children under their parent) / flat list",
    ),
    (
        "s",
        "detail: take the async stack again (a task dump: pauses the app's runtime)",
    ),
    (
        "f",
        "slow polls, detail: whole stacks / the runtime's frames folded",
    ),
    (
        "Enter",
        "problems: show / hide the selected group's occurrences",
    ),
];

/// The keys of `taskscope replay`, as the help lists them first in a replay:
/// they take the place of the live view's `p`, and of ← → `g` `G` (the sort
/// column stays on `<` `>`, the top and bottom of lists on Home End).
pub const REPLAY_BINDINGS: &[(&str, &str)] = &[
    ("space  p", "replay: play / pause"),
    ("← →", "replay: 10 s back / forward"),
    ("g G", "replay: to the start / the end of the recording"),
    ("+ -", "replay: play faster / slower (1× to 64×)"),
];

impl Model {
    /// Handles one key pressed at `now`; returns what the outside world must do, if anything.
    pub fn handle_key(&mut self, key: KeyEvent, now: Instant) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c')) {
            return Some(Action::Quit);
        }
        if self.ui.filter_typing {
            self.type_filter(key);
            return None;
        }
        if self.ui.help {
            // Any of these closes the help; quit still quits.
            match key.code {
                KeyCode::Char('q') => return Some(Action::Quit),
                KeyCode::Char('?') | KeyCode::Esc | KeyCode::Enter => self.ui.help = false,
                _ => {}
            }
            return None;
        }
        match key.code {
            KeyCode::Char('q') => return Some(Action::Quit),
            KeyCode::Char('?') => self.ui.help = true,
            KeyCode::Char('p') => self.set_paused(!self.paused, now),
            KeyCode::Char(c @ '1'..='5') => {
                let index = (c as u8 - b'1') as usize;
                return self.switch_view(View::ALL[index]);
            }
            KeyCode::Tab => return self.switch_view(self.ui.view.next()),
            KeyCode::BackTab => return self.switch_view(self.ui.view.prev()),
            _ => {
                return match self.ui.view {
                    View::Tasks => self.tasks_key(key),
                    View::Detail => self.detail_key(key),
                    View::SlowPolls => self.slow_polls_key(key),
                    View::Problems => self.problems_key(key),
                    View::Runtime => None,
                };
            }
        }
        None
    }

    fn switch_view(&mut self, view: View) -> Option<Action> {
        let was = self.ui.view;
        self.ui.view = view;
        if view == View::Detail && self.ui.detail_id.is_none() {
            // Open the selected task, if there is one.
            let id = self.selected_task()?;
            self.ui.detail_id = Some(id);
            self.ui.detail_scroll = 0;
            return Some(self.ask_stack(id));
        }
        match (view, self.ui.detail_id) {
            (View::Detail, Some(id)) if was != View::Detail => Some(self.ask_stack(id)),
            (View::Detail, Some(id)) => Some(Action::RequestDetail(id)),
            _ => None,
        }
    }

    /// Opens the detail view of task `id` (and asks where it waits, once).
    pub fn open_detail(&mut self, id: u64) -> Option<Action> {
        if self.ui.detail_id != Some(id) {
            self.ui.detail_scroll = 0;
        }
        self.ui.detail_id = Some(id);
        self.ui.view = View::Detail;
        Some(self.ask_stack(id))
    }

    /// The detail of task `id` with its async stack, noted as asked for.
    fn ask_stack(&mut self, id: u64) -> Action {
        self.async_stack.ask(id);
        Action::RequestDetailWithStack(id)
    }

    fn type_filter(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Enter => self.ui.filter_typing = false,
            KeyCode::Esc => {
                self.ui.filter_typing = false;
                self.ui.filter.clear();
            }
            KeyCode::Backspace => {
                self.ui.filter.pop();
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.ui.filter.push(c);
            }
            _ => return,
        }
        self.ui.tasks_offset = 0;
        let keep_rows = !self.ui.tree && !self.ui.tasks_sort.column.changes_with_time();
        self.order.filter_changed(&self.ui.filter, keep_rows);
    }

    fn set_sort(&mut self, sort: SortSpec) {
        self.ui.tasks_sort = sort;
        self.invalidate_order();
    }

    fn tasks_key(&mut self, key: KeyEvent) -> Option<Action> {
        let sort = self.ui.tasks_sort;
        match key.code {
            KeyCode::Char('/') => {
                self.ui.filter_typing = true;
            }
            KeyCode::Esc if !self.ui.filter.is_empty() => {
                self.ui.filter.clear();
                self.invalidate_order();
            }
            KeyCode::Char('>') | KeyCode::Right => self.set_sort(SortSpec::by(sort.column.next())),
            KeyCode::Char('<') | KeyCode::Left => self.set_sort(SortSpec::by(sort.column.prev())),
            KeyCode::Char('i') => self.set_sort(SortSpec {
                column: sort.column,
                descending: !sort.descending,
            }),
            KeyCode::Enter => {
                let id = self.selected_task()?;
                return self.open_detail(id);
            }
            KeyCode::Char('l') => {
                self.ui.live_only = !self.ui.live_only;
                self.invalidate_order();
            }
            KeyCode::Char('t') => {
                self.ui.tree = !self.ui.tree;
                self.invalidate_order();
            }
            _ => {
                let len = self.task_order().len();
                if len == 0 {
                    return None;
                }
                let current = self.selected_row().unwrap_or(0);
                let page = self.ui.page.max(1);
                let row = match key.code {
                    KeyCode::Down | KeyCode::Char('j') if self.ui.selected.is_none() => 0,
                    KeyCode::Down | KeyCode::Char('j') => current + 1,
                    KeyCode::Up | KeyCode::Char('k') => current.saturating_sub(1),
                    KeyCode::PageDown => current + page,
                    KeyCode::PageUp => current.saturating_sub(page),
                    KeyCode::Home | KeyCode::Char('g') => 0,
                    KeyCode::End | KeyCode::Char('G') => len - 1,
                    _ => return None,
                };
                self.select_row(row);
            }
        }
        None
    }

    fn detail_key(&mut self, key: KeyEvent) -> Option<Action> {
        match key.code {
            KeyCode::Esc | KeyCode::Backspace => self.ui.view = View::Tasks,
            KeyCode::Enter => return self.ui.detail_id.map(Action::RequestDetail),
            KeyCode::Char('s') => return self.ui.detail_id.map(|id| self.ask_stack(id)),
            KeyCode::Char('f') => self.ui.full_stacks = !self.ui.full_stacks,
            _ => scroll(&mut self.ui.detail_scroll, key, self.ui.page),
        }
        None
    }

    fn slow_polls_key(&mut self, key: KeyEvent) -> Option<Action> {
        match key.code {
            KeyCode::Char('o' | '<' | '>') | KeyCode::Left | KeyCode::Right => {
                self.ui.slow_order = self.ui.slow_order.toggled();
                // The top row of the new order.
                self.ui.slow_selected = None;
            }
            KeyCode::Enter => {
                let groups = self.slow.sorted(self.ui.slow_order);
                let group = groups.get(self.ui.slow_selected_row(&groups))?;
                let id = group.worst.task.as_ref()?.id;
                return self.open_detail(id);
            }
            KeyCode::Char('f') => self.ui.full_stacks = !self.ui.full_stacks,
            _ => {
                let groups = self.slow.sorted(self.ui.slow_order);
                let mut row = self.ui.slow_selected_row(&groups);
                scroll(&mut row, key, self.ui.page);
                let location = groups
                    .get(row.min(groups.len().saturating_sub(1)))
                    .map(|g| g.location().to_owned());
                if location.is_some() {
                    self.ui.slow_selected = location;
                }
            }
        }
        None
    }
}

impl Model {
    /// Problems: ↑ ↓ Home End move the selection over the groups, PgUp PgDn
    /// scroll, Enter shows or hides the selected group's occurrences.
    fn problems_key(&mut self, key: KeyEvent) -> Option<Action> {
        let rows = self.problem_rows();
        let selected = self.problem_selected_row(&rows);
        let row = match key.code {
            KeyCode::Enter => {
                let group = rows.get(selected)?.key();
                if !self.ui.problems_expanded.remove(&group) {
                    self.ui.problems_expanded.insert(group.clone());
                }
                self.ui.problems_selected = Some(group);
                self.ui.problems_follow = true;
                return None;
            }
            KeyCode::PageUp | KeyCode::PageDown => {
                scroll(&mut self.ui.problems_scroll, key, self.ui.page);
                self.ui.problems_follow = false;
                return None;
            }
            KeyCode::Down | KeyCode::Char('j') => selected + 1,
            KeyCode::Up | KeyCode::Char('k') => selected.saturating_sub(1),
            KeyCode::Home | KeyCode::Char('g') => 0,
            KeyCode::End | KeyCode::Char('G') => rows.len().saturating_sub(1),
            _ => return None,
        };
        let group = rows.get(row.min(rows.len().saturating_sub(1)))?.key();
        self.ui.problems_selected = Some(group);
        self.ui.problems_follow = true;
        None
    }
}

/// Moves a line or row position by the usual keys.
fn scroll(position: &mut usize, key: KeyEvent, page: usize) {
    let page = page.max(1);
    *position = match key.code {
        KeyCode::Down | KeyCode::Char('j') => position.saturating_add(1),
        KeyCode::Up | KeyCode::Char('k') => position.saturating_sub(1),
        KeyCode::PageDown => position.saturating_add(page),
        KeyCode::PageUp => position.saturating_sub(page),
        KeyCode::Home | KeyCode::Char('g') => 0,
        KeyCode::End | KeyCode::Char('G') => usize::MAX / 2,
        _ => *position,
    };
}

/// Helper for tests and callers: a plain key press.
pub fn press(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::sort::Column;

    #[test]
    fn filter_typing_takes_every_character_until_enter() {
        let now = Instant::now();
        let mut m = Model::new("x", now);
        m.handle_key(press(KeyCode::Char('/')), now);
        for c in "q1p".chars() {
            assert_eq!(m.handle_key(press(KeyCode::Char(c)), now), None);
        }
        assert_eq!(m.ui.filter, "q1p");
        assert!(!m.paused);
        assert_eq!(m.ui.view, View::Tasks);
        m.handle_key(press(KeyCode::Backspace), now);
        m.handle_key(press(KeyCode::Enter), now);
        assert_eq!(m.ui.filter, "q1");
        assert!(!m.ui.filter_typing);
        m.handle_key(press(KeyCode::Esc), now);
        assert_eq!(m.ui.filter, "");
        assert_eq!(
            m.handle_key(press(KeyCode::Char('q')), now),
            Some(Action::Quit)
        );
    }

    #[test]
    fn sort_keys_choose_columns_and_invert() {
        let now = Instant::now();
        let mut m = Model::new("x", now);
        m.handle_key(press(KeyCode::Char('>')), now);
        assert_eq!(m.ui.tasks_sort, SortSpec::by(Column::Name));
        m.handle_key(press(KeyCode::Left), now);
        m.handle_key(press(KeyCode::Left), now);
        assert_eq!(m.ui.tasks_sort.column, Column::Warnings);
        assert!(m.ui.tasks_sort.descending);
        m.handle_key(press(KeyCode::Char('i')), now);
        assert!(!m.ui.tasks_sort.descending);
    }

    #[test]
    fn views_switch_by_number_and_tab_and_help_toggles() {
        let now = Instant::now();
        let mut m = Model::new("x", now);
        m.handle_key(press(KeyCode::Char('4')), now);
        assert_eq!(m.ui.view, View::Problems);
        m.handle_key(press(KeyCode::Tab), now);
        assert_eq!(m.ui.view, View::Runtime);
        m.handle_key(press(KeyCode::BackTab), now);
        assert_eq!(m.ui.view, View::Problems);
        m.handle_key(press(KeyCode::Char('?')), now);
        assert!(m.ui.help);
        m.handle_key(press(KeyCode::Char('1')), now);
        assert!(
            m.ui.help,
            "keys other than ?/Esc/Enter/q leave the help open"
        );
        assert_eq!(m.ui.view, View::Problems);
        m.handle_key(press(KeyCode::Esc), now);
        assert!(!m.ui.help);
        m.handle_key(press(KeyCode::Char('p')), now);
        assert!(m.paused);
    }
}
