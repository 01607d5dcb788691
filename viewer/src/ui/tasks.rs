//! The tasks view: every live task and, below them and dimmed, the recently
//! finished ones (`l`: live ones only) as a table, sorted by the chosen
//! column, filtered by the typed text; `t` nests children under their
//! parent (siblings in the sort's order).
//!
//! Only the rows on screen are laid out; the order comes from the model's
//! cache, which is re-sorted only when something changed.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use crate::state::{Column, Marks, Model};
use crate::ui::text::{cut_left, cut_right, dur};

/// Width of each column (0 = shares the rest: name and spawn location).
fn fixed_width(column: Column) -> u16 {
    match column {
        Column::Id => 8,
        Column::Name | Column::SpawnedAt => 0,
        Column::State => 10,
        Column::Polls => 9,
        Column::Busy | Column::Idle | Column::Age | Column::LongestPoll => 9,
        Column::Warnings => 5,
    }
}

fn right_aligned(column: Column) -> bool {
    matches!(
        column,
        Column::Id
            | Column::Polls
            | Column::Busy
            | Column::Idle
            | Column::Age
            | Column::LongestPoll
    )
}

/// The table's title: `Tasks (412 live, 37 finished, 3 shown by filter)`;
/// with live tasks only, `Tasks (412 live, 37 finished hidden)`.
pub fn title(model: &mut Model) -> String {
    let counts = model.task_counts();
    let hidden = if model.ui.live_only { " hidden" } else { "" };
    let mut title = format!(
        "Tasks ({} live, {} finished{hidden}",
        counts.live, counts.finished
    );
    if !model.ui.filter.trim().is_empty() {
        title.push_str(&format!(", {} shown by filter", counts.shown));
    }
    title.push(')');
    title
}

/// Draws the tasks view into `area`.
pub fn draw(frame: &mut Frame, area: Rect, model: &mut Model) {
    let sort = model.ui.tasks_sort;
    let mut title_spans = vec![Span::styled(
        format!(" {} ", title(model)),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    title_spans.push(Span::raw(format!(
        " sorted by {} {}, {} ",
        sort.column.title(),
        if sort.descending { "▼" } else { "▲" },
        if model.ui.live_only {
            "live only (l: finished too)"
        } else {
            "live first (l: live only)"
        }
    )));
    title_spans.push(Span::raw(if model.ui.tree {
        " tree by parent (t: flat) "
    } else {
        " (t: tree) "
    }));
    if model.ui.filter_typing || !model.ui.filter.is_empty() {
        let cursor = if model.ui.filter_typing { "▏" } else { "" };
        title_spans.push(Span::styled(
            format!(" filter: {}{cursor} ", model.ui.filter),
            Style::new().fg(Color::Yellow),
        ));
    }
    // One short poll in this many is timed, when the app samples poll timing.
    let sampled_one_in = model
        .app
        .as_ref()
        .filter(|a| a.timing_sampled())
        .map(|a| a.poll_timing_one_in);
    let mut block = Block::bordered().title(Line::from(title_spans));
    if let Some(one_in) = sampled_one_in {
        block = block.title_bottom(
            Line::from(Span::styled(
                format!(
                    " ~ estimated: polls under {} timed 1 in {} ",
                    dur(ALWAYS_TIMED),
                    one_in
                ),
                Style::new().add_modifier(Modifier::DIM),
            ))
            .alignment(Alignment::Right),
        );
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);

    // Column widths: fixed ones, then name and location share the rest (2:3).
    let spacing: u16 = 1;
    let fixed: u16 = Column::ALL.iter().map(|c| fixed_width(*c)).sum::<u16>()
        + spacing * (Column::ALL.len() as u16 - 1);
    let rest = inner.width.saturating_sub(fixed);
    let name_width = (rest * 2 / 5).max(6);
    let location_width = rest.saturating_sub(name_width).max(10);
    let width_of = |c: Column| match c {
        Column::Name => name_width,
        Column::SpawnedAt => location_width,
        c => fixed_width(c),
    };

    let height = inner.height.saturating_sub(1) as usize;
    model.ui.page = height.max(1);
    let len = model.task_order().len();
    let selected = model.selected_row();
    let mut offset = model.ui.tasks_offset.min(len.saturating_sub(height));
    if let Some(row) = selected {
        if row < offset {
            offset = row;
        } else if height > 0 && row >= offset + height {
            offset = row + 1 - height;
        }
    }
    model.ui.tasks_offset = offset;

    let header = Row::new(Column::ALL.iter().map(|c| {
        let mut text = c.title().to_string();
        let mut style = Style::new().add_modifier(Modifier::BOLD);
        if *c == sort.column {
            text.push(if sort.descending { '▼' } else { '▲' });
            style = style.add_modifier(Modifier::UNDERLINED).fg(Color::Yellow);
        }
        let line = Line::from(text);
        let line = if right_aligned(*c) {
            line.alignment(Alignment::Right)
        } else {
            line
        };
        Cell::from(line).style(style)
    }));

    if len == 0 {
        let text = if model.tasks.is_empty() {
            "No tasks yet.".to_string()
        } else if model.ui.filter.trim().is_empty() {
            "No live task (l shows the finished ones too).".to_string()
        } else {
            format!("No task matches the filter \"{}\".", model.ui.filter)
        };
        let [head, rest] =
            ratatui::layout::Layout::vertical([Constraint::Length(1), Constraint::Min(0)])
                .areas(inner);
        let widths: Vec<Constraint> = Column::ALL
            .iter()
            .map(|c| Constraint::Length(width_of(*c)))
            .collect();
        frame.render_widget(
            Table::new(Vec::<Row>::new(), widths)
                .header(header)
                .column_spacing(spacing),
            head,
        );
        frame.render_widget(
            Paragraph::new(text).style(Style::new().add_modifier(Modifier::DIM)),
            rest,
        );
        return;
    }

    let now = model.now;
    let sampled = sampled_one_in.is_some();
    let end = (offset + height).min(len);
    let ids: Vec<u64> = model.task_order()[offset..end].to_vec();
    let mut rows = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let Some(entry) = model.tasks.get(id) else {
            continue;
        };
        let prefix = model.tree_prefix(offset + i);
        let marks = model.marks_of(entry);
        let t = &entry.task;
        let cells = Column::ALL.iter().map(|c| {
            let w = width_of(*c) as usize;
            let text = match c {
                Column::Id => t.id.to_string(),
                Column::Name => {
                    cut_right(&format!("{prefix}{}", t.name.as_deref().unwrap_or("—")), w)
                }
                Column::State => entry.state_text().to_string(),
                Column::SpawnedAt => cut_left(&t.spawned_at, w),
                Column::Polls => t.polls.to_string(),
                Column::Busy => estimate(entry.busy_at(now), sampled),
                Column::Idle => estimate(entry.idle_at(now), sampled),
                Column::Age => dur(entry.age_at(now)),
                Column::LongestPoll => longest_poll(t.max_poll, t.polls, sampled),
                Column::Warnings => marks.symbols(),
            };
            let line = Line::from(text);
            let line = if right_aligned(*c) {
                line.alignment(Alignment::Right)
            } else {
                line
            };
            let mut cell = Cell::from(line);
            if *c == Column::Warnings {
                cell = cell.style(marks_style(marks));
            } else if *c == Column::State && !entry.is_finished() {
                cell = cell.style(Style::new().fg(match t.state {
                    crate::state::TaskState::Running => Color::Green,
                    crate::state::TaskState::Scheduled => Color::Yellow,
                    crate::state::TaskState::Idle => Color::Reset,
                }));
            }
            cell
        });
        let mut style = Style::new();
        if entry.is_finished() {
            style = style.add_modifier(Modifier::DIM);
        }
        if selected == Some(offset + i) {
            style = style.add_modifier(Modifier::REVERSED);
        }
        rows.push(Row::new(cells).style(style));
    }
    let widths: Vec<Constraint> = Column::ALL
        .iter()
        .map(|c| Constraint::Length(width_of(*c)))
        .collect();
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(spacing);
    frame.render_widget(table, inner);
}

/// Polls this long or longer are all timed when the app samples poll timing
/// (its watchdog's tick; README, "Which polls are timed").
const ALWAYS_TIMED: Duration = Duration::from_millis(10);

/// A busy or idle time: `~1.52ms` when the app samples poll timing (an
/// estimate from one short poll in N, counted N times), else exact.
fn estimate(d: Duration, sampled: bool) -> String {
    if sampled {
        format!("~{}", dur(d))
    } else {
        dur(d)
    }
}

/// A task's longest poll. When the app samples poll timing, every poll of
/// 10 ms or more is timed, so a longest poll that long is exact; a shorter
/// one is the longest *timed* poll (`~`), and a task none of whose polls was
/// timed shows `<10.0ms` (each of its polls ended within one tick). A task
/// no poll of which has ended yet (its first poll may be running) shows `—`.
fn longest_poll(max: Duration, polls: u64, sampled: bool) -> String {
    if polls == 0 && max.is_zero() {
        "—".to_owned()
    } else if !sampled || max >= ALWAYS_TIMED {
        dur(max)
    } else if max.is_zero() && polls > 0 {
        format!("<{}", dur(ALWAYS_TIMED))
    } else {
        format!("~{}", dur(max))
    }
}

fn marks_style(marks: Marks) -> Style {
    if marks.contains(Marks::PANICKED) || marks.contains(Marks::LOST_WAKER) {
        Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
    } else if !marks.is_empty() {
        Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    }
}
