//! The runtime view: the app, its workers, alive tasks, the global queue and
//! each worker's local queue (as bars), and the blocking pool.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::state::Model;
use crate::ui::text::{dur, heading};

/// Width of the longest queue bar, in cells.
const BAR_WIDTH: u64 = 40;

fn bar(depth: u64, max: u64) -> String {
    let cells = if depth == 0 {
        0
    } else {
        (depth * BAR_WIDTH).div_ceil(max.max(1)).max(1)
    };
    "█".repeat(cells as usize)
}

/// `  label                 value`, numbers aligned under each other.
fn value_line(label: &str, value: u64) -> Line<'static> {
    Line::from(format!("  {label:<20} {value:>6}"))
}

/// Draws the runtime view into `area`.
pub fn draw(frame: &mut Frame, area: Rect, model: &Model) {
    let block = Block::bordered().title(Line::from(Span::styled(
        " Runtime ",
        Style::new().add_modifier(Modifier::BOLD),
    )));
    let dim = Style::new().add_modifier(Modifier::DIM);
    let mut lines = Vec::new();
    match &model.app {
        Some(app) => lines.push(Line::from(format!(
            "app {} (pid {})   taskscope {}   protocol {}   slow-poll threshold {}",
            app.name,
            app.pid,
            app.version,
            app.protocol,
            dur(app.slow_poll_threshold)
        ))),
        None => lines.push(Line::styled("No data from the app yet.", dim)),
    }
    let m = &model.metrics;
    lines.push(Line::raw(""));
    lines.push(heading("Scheduler"));
    lines.push(value_line("workers", m.workers));
    lines.push(value_line("alive tasks", m.alive_tasks));
    let max = m
        .local_queue_depths
        .iter()
        .copied()
        .chain([m.global_queue_depth])
        .max()
        .unwrap_or(0);
    let queue_line = |label: String, depth: u64| {
        Line::from(vec![
            Span::raw(format!("  {label:<20} {depth:>6} ")),
            Span::styled(bar(depth, max), Style::new().fg(Color::Cyan)),
        ])
    };
    lines.push(queue_line("global queue".into(), m.global_queue_depth));
    if m.local_queue_depths.is_empty() {
        lines.push(Line::styled("  (no per-worker queue depths)", dim));
    }
    for (i, depth) in m.local_queue_depths.iter().enumerate() {
        lines.push(queue_line(format!("worker {i} queue"), *depth));
    }
    lines.push(Line::raw(""));
    lines.push(heading("Blocking pool"));
    lines.push(value_line("threads", m.blocking_threads));
    lines.push(value_line("waiting for a thread", m.blocking_queue_depth));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
