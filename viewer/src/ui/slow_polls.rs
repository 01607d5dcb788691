//! The slow-polls view: slow polls grouped by the spawn location of their
//! task (count, longest, 99th percentile, polls still blocked), and below, the
//! selected group's worst poll with its stack (the runtime's frames folded;
//! `f` shows them all). The figures are those of
//! `taskscope report` ([`taskscope_api::slow_polls`]).

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use taskscope_api::stack;

use crate::state::Model;
use crate::ui::text::{cut_left, cut_right, ms, plural, stack_hint, stack_lines};

/// Draws the slow-polls view into `area`.
pub fn draw(frame: &mut Frame, area: Rect, model: &mut Model) {
    let order = model.ui.slow_order;
    let polls = model.slow.total();
    let groups = model.slow.sorted(order);
    let selected = model.ui.slow_selected_row(&groups);
    let title = Line::from(vec![
        Span::styled(
            format!(
                " Slow polls by spawn location ({}, {}) ",
                plural(groups.len(), "location"),
                plural(polls, "poll")
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
            let names = g.task_names[..g.task_names.len().min(3)].join(", ");
            let blocked = if g.unfinished > 0 {
                g.unfinished.to_string()
            } else {
                String::new()
            };
            let mut style = Style::new();
            if i == selected {
                style = style.add_modifier(Modifier::REVERSED);
            }
            Row::new(vec![
                Cell::from(cut_left(g.location(), location_width as usize)),
                right(g.count.to_string()),
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
    let worst = &group.worst;
    let task = worst
        .task
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_else(|| "task ?".into());
    let so_far = if worst.unfinished {
        " so far (still blocked)"
    } else {
        ""
    };
    // Where the group's polls blocked most often (the report's TOP FRAME):
    // said even when the worst poll has no stack.
    if let Some(top) = &group.top_frame {
        lines.push(Line::from(vec![
            Span::raw("most often blocked in "),
            Span::styled(
                stack::frame_text(top, model.source_roots.as_slice()),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                " ({} of {})",
                group.top_frame_polls,
                plural(group.count as usize, "poll")
            )),
        ]));
    }
    lines.push(Line::from(format!(
        "worst: {task}, poll {}: {}{so_far} on {}",
        worst.poll,
        ms(worst.duration_ms),
        worst.thread
    )));
    let full = model.ui.full_stacks;
    lines.extend(stack_lines(
        &worst.stack,
        full,
        model.source_roots.as_slice(),
    ));
    if worst.stack.is_empty() {
        let why = worst
            .stack_unavailable
            .as_deref()
            .unwrap_or("none was captured for this poll");
        lines.push(Line::styled(format!("Stack not available: {why}"), dim));
    }
    let block = Block::bordered().title(Line::from(vec![
        Span::styled(
            format!(" Worst stack: {} ", group.location()),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::styled(format!(" {} ", stack_hint(full)), dim),
    ]));
    frame.render_widget(Paragraph::new(lines).block(block), bottom);
}
