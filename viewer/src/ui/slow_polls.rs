//! The slow-polls view: slow polls grouped by the spawn location of their
//! task (count, longest, 99th percentile, polls still blocked), and below, the
//! stack of the selected group's worst poll.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use super::{cut_left, cut_right, frame_line, ms, plural};
use crate::state::Model;

/// Draws the slow-polls view into `area`.
pub fn draw(frame: &mut Frame, area: Rect, model: &Model) {
    let order = model.ui.slow_order;
    let groups = model.slow_groups();
    let selected = model.slow_selected_row(&groups);
    let title = Line::from(vec![
        Span::styled(
            format!(
                " Slow polls by spawn location ({}, {}) ",
                plural(groups.len(), "location"),
                plural(model.slow.total(), "poll")
            ),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            " {}  (o: {}) ",
            order.describe(),
            order.toggled().describe()
        )),
    ]);

    // Header, rows and borders, within half the height; the stack gets the rest.
    let table_height = (groups.len() as u16 + 3)
        .min(area.height / 2)
        .max(4.min(area.height));
    let [top, bottom] =
        Layout::vertical([Constraint::Length(table_height), Constraint::Min(3)]).areas(area);

    let block = Block::bordered().title(title);
    let inner = block.inner(top);
    frame.render_widget(block, top);

    if groups.is_empty() {
        frame.render_widget(
            Paragraph::new("No slow poll so far: no poll took longer than the threshold.")
                .style(Style::new().add_modifier(Modifier::DIM)),
            inner,
        );
        frame.render_widget(Block::bordered().title(" Worst stack "), bottom);
        return;
    }

    let rows_fit = inner.height.saturating_sub(1) as usize;
    let offset = if rows_fit == 0 {
        0
    } else {
        selected.saturating_sub(rows_fit - 1)
    };
    // SPAWNED AT, COUNT, BLOCKED, MAX, P99, TASKS
    let fixed = 7 + 8 + 9 + 9 + 5;
    let rest = inner.width.saturating_sub(fixed);
    let location_width = (rest * 3 / 5).max(12);
    let names_width = rest.saturating_sub(location_width);
    let right = |text: String| Cell::from(Line::from(text).alignment(Alignment::Right));
    let header = Row::new(vec![
        Cell::from("SPAWNED AT"),
        right("COUNT".into()),
        right("BLOCKED".into()),
        right("MAX".into()),
        right("P99".into()),
        Cell::from("TASKS"),
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let rows: Vec<Row> = groups
        .iter()
        .enumerate()
        .skip(offset)
        .take(rows_fit)
        .map(|(i, g)| {
            let names = g.task_names(3).join(", ");
            let blocked = if g.in_progress > 0 {
                g.in_progress.to_string()
            } else {
                String::new()
            };
            let mut style = Style::new();
            if i == selected {
                style = style.add_modifier(Modifier::REVERSED);
            }
            Row::new(vec![
                Cell::from(cut_left(&g.location, location_width as usize)),
                right(g.count().to_string()),
                Cell::from(Line::from(blocked).alignment(Alignment::Right))
                    .style(Style::new().fg(Color::Red)),
                right(ms(g.max_ms)),
                right(ms(g.p99_ms)),
                Cell::from(cut_right(&names, names_width as usize)),
            ])
            .style(style)
        })
        .collect();
    let widths = [
        Constraint::Length(location_width),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(names_width),
    ];
    frame.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        inner,
    );

    // The worst stack of the selected group.
    let group = groups[selected];
    let mut lines = Vec::new();
    let dim = Style::new().add_modifier(Modifier::DIM);
    match &group.worst_stack {
        Some(worst) => {
            let task = worst
                .task
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_else(|| "task ?".into());
            lines.push(Line::from(format!(
                "{task}, poll {}: {} on {}",
                worst.poll,
                ms(worst.duration_ms),
                worst.thread
            )));
            for (i, f) in worst.frames.iter().enumerate() {
                lines.push(frame_line(i, f));
            }
        }
        None => {
            let why = group
                .stack_unavailable
                .as_deref()
                .unwrap_or("no stack was captured for these polls");
            lines.push(Line::styled(format!("Stack not available: {why}"), dim));
        }
    }
    if let Some(worst) = group.worst_poll()
        && group.worst_stack.as_ref().map(|w| w.duration_ms) != Some(worst.duration_ms)
    {
        lines.push(Line::styled(
            format!(
                "(the longest poll, {}, came without a stack)",
                ms(worst.duration_ms)
            ),
            dim,
        ));
    }
    let block = Block::bordered().title(Line::from(vec![Span::styled(
        format!(" Worst stack: {} ", group.location),
        Style::new().add_modifier(Modifier::BOLD),
    )]));
    frame.render_widget(Paragraph::new(lines).block(block), bottom);
}
