//! The runtime view: on the left the runtime now (workers, alive tasks, the
//! global queue and each worker's local queue as bars, the blocking pool); on
//! the right its last five minutes as plots, the newest at the right: how busy
//! each worker was, polls per second, slow polls per second, tasks alive and
//! the global queue's depth ([`crate::state::history`]).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::state::{HISTORY_WINDOW, Model, Sample};
use crate::ui::plot::{self, Combine};
use crate::ui::text::{dur, heading};

/// Width of the left column (the runtime now).
const NOW_WIDTH: u16 = 44;

/// Width of the figures at the right of each plot (`  now    100%  max    100%`).
const FIGURES_WIDTH: u16 = 26;

/// Width of a worker's label in front of its plot (`  worker 12 `).
const WORKER_LABEL_WIDTH: u16 = 12;

fn bar(depth: u64, max: u64, width: u64) -> String {
    let cells = if depth == 0 || width == 0 {
        0
    } else {
        (depth * width).div_ceil(max.max(1)).clamp(1, width)
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
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let dim = Style::new().add_modifier(Modifier::DIM);
    let [head, body] = Layout::vertical([Constraint::Length(3), Constraint::Min(0)]).areas(inner);
    let head_lines = match &model.app {
        Some(app) => vec![
            Line::from(format!(
                "app {} (pid {})   taskscope {}   protocol {}   slow-poll threshold {}",
                app.name,
                app.pid,
                app.version,
                app.protocol,
                dur(app.slow_poll_threshold),
            )),
            Line::styled(
                if app.timing_sampled() {
                    format!(
                        "polls timed: ≥ 10 ms all, shorter 1 in {} (busy times estimated)",
                        app.poll_timing_one_in
                    )
                } else {
                    "polls timed: every one".to_string()
                },
                dim,
            ),
        ],
        None => vec![Line::styled("No data from the app yet.", dim)],
    };
    frame.render_widget(Paragraph::new(head_lines), head);
    let [now, plots] = Layout::horizontal([Constraint::Length(NOW_WIDTH), Constraint::Min(0)])
        .spacing(2)
        .areas(body);
    draw_now(frame, now, model);
    draw_plots(frame, plots, model);
}

/// The runtime now: the numbers as last sent.
fn draw_now(frame: &mut Frame, area: Rect, model: &Model) {
    let dim = Style::new().add_modifier(Modifier::DIM);
    let m = &model.metrics;
    let mut lines = vec![heading("Scheduler")];
    lines.push(value_line("workers", m.workers));
    lines.push(value_line("alive tasks", m.alive_tasks));
    let max = m
        .local_queue_depths
        .iter()
        .copied()
        .chain([m.global_queue_depth])
        .max()
        .unwrap_or(0);
    let bar_width = u64::from(area.width.saturating_sub(30));
    let queue_line = |label: String, depth: u64| {
        Line::from(vec![
            Span::raw(format!("  {label:<20} {depth:>6} ")),
            Span::styled(bar(depth, max, bar_width), Style::new().fg(Color::Cyan)),
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
    frame.render_widget(Paragraph::new(lines), area);
}

/// How a plot's numbers read.
#[derive(Clone, Copy)]
enum Unit {
    Percent,
    PerSecond,
    Count,
}

fn figure(value: Option<f64>, unit: Unit) -> String {
    let Some(v) = value else {
        return "-".into();
    };
    match unit {
        Unit::Percent => format!("{:.0}%", v * 100.0),
        Unit::PerSecond if v != 0.0 && v < 10.0 => format!("{v:.2}/s"),
        Unit::PerSecond => format!("{v:.0}/s"),
        Unit::Count => format!("{v:.0}"),
    }
}

/// `now X  max Y`, right-aligned in `FIGURES_WIDTH`.
fn figures(values: &[Option<f64>], latest: Option<f64>, unit: Unit) -> String {
    let max = values.iter().flatten().copied().reduce(f64::max);
    let text = format!(
        "now {:>7}  max {:>7}",
        figure(latest, unit),
        figure(max, unit)
    );
    format!("{text:>w$}", w = FIGURES_WIDTH as usize)
}

/// One plot: a heading line with its figures, then the sparkline.
struct Plot<'a> {
    title: &'a str,
    value: &'a dyn Fn(&Sample) -> Option<f64>,
    combine: Combine,
    unit: Unit,
    /// The height of a full bar (the largest value when higher).
    scale: f64,
    color: Color,
    /// Said instead of the plot when no sample has a value.
    missing: &'a str,
}

/// The last five minutes: busy per worker, then the other plots, then the time axis.
fn draw_plots(frame: &mut Frame, area: Rect, model: &Model) {
    if area.width < WORKER_LABEL_WIDTH + FIGURES_WIDTH + 10 || area.height < 4 {
        return;
    }
    let dim = Style::new().add_modifier(Modifier::DIM);
    // The time on screen: the update shown (it stays put while paused).
    let Some(end) = model.last_update_at else {
        frame.render_widget(
            Paragraph::new(vec![
                heading("Last 5 minutes"),
                Line::styled("  nothing yet", dim),
            ]),
            area,
        );
        return;
    };
    let plot_width = area.width - WORKER_LABEL_WIDTH - FIGURES_WIDTH;
    let samples = model.history.window(end);
    let latest = samples.clone().next_back();
    let shown_secs = samples
        .clone()
        .next()
        .and_then(|first| end.duration_since(first.at).ok())
        .unwrap_or_default();
    let column_secs = HISTORY_WINDOW.as_secs_f64() / f64::from(plot_width);
    let mut y = area.y;
    let bottom = area.bottom();
    let line = |frame: &mut Frame, y: u16, text: Line| {
        frame.render_widget(Paragraph::new(text), Rect::new(area.x, y, area.width, 1));
    };
    let mut title = heading("Last 5 minutes");
    title.push_span(Span::styled(
        format!(
            "  (each column {column_secs:.1} s, the newest at the right; {} s so far)",
            shown_secs.as_secs()
        ),
        dim,
    ));
    line(frame, y, title);
    y += 1;

    // Busy per worker: one row each.
    let workers = latest
        .and_then(|s| s.busy.as_ref().map(Vec::len))
        .unwrap_or(
            model
                .metrics
                .worker_busy
                .len()
                .min(model.metrics.workers as usize),
        );
    let other_plots = 4u16;
    // Rows the other plots need at least (heading and one row each) and the axis.
    let reserved = other_plots * 2 + 1;
    let worker_rows = (bottom.saturating_sub(y + 1 + reserved) as usize).min(workers);
    let busy_of = |w: usize| move |s: &Sample| s.busy.as_ref()?.get(w).map(|b| f64::from(*b));
    let mut busy_heading = heading("Busy, per worker");
    if workers == 0 {
        busy_heading.push_span(Span::styled("  no busy times from the app", dim));
    }
    line(frame, y, busy_heading);
    y += 1;
    for w in 0..worker_rows {
        let values = plot::columns(
            samples.clone(),
            end,
            plot_width as usize,
            busy_of(w),
            Combine::Mean,
        );
        let now = latest.and_then(busy_of(w));
        line(
            frame,
            y,
            Line::from(vec![
                Span::raw(format!("  worker {w:<3}")),
                Span::raw(" ".repeat(plot_width as usize)),
                Span::raw(figures(&values, now, Unit::Percent)),
            ]),
        );
        plot::sparkline(
            frame,
            Rect::new(area.x + WORKER_LABEL_WIDTH, y, plot_width, 1),
            &values,
            1.0,
            Style::new().fg(Color::Green),
        );
        y += 1;
    }
    if worker_rows < workers {
        line(
            frame,
            y.min(bottom - 1),
            Line::styled(
                format!(
                    "  … {} more workers (a taller terminal shows them)",
                    workers - worker_rows
                ),
                dim,
            ),
        );
        y += 1;
    }

    let polls = |s: &Sample| s.polls_per_sec;
    let slow = |s: &Sample| s.slow_per_sec;
    let alive = |s: &Sample| Some(s.alive_tasks as f64);
    let queue = |s: &Sample| Some(s.global_queue_depth as f64);
    let plots = [
        Plot {
            title: "Polls per second",
            value: &polls,
            combine: Combine::Mean,
            unit: Unit::PerSecond,
            scale: 0.0,
            color: Color::Cyan,
            missing: "needs per-worker poll counts: the app was built without --cfg tokio_unstable",
        },
        Plot {
            title: "Slow polls per second (ended)",
            value: &slow,
            combine: Combine::Mean,
            unit: Unit::PerSecond,
            scale: 0.0,
            color: Color::Red,
            missing: "",
        },
        Plot {
            title: "Tasks alive",
            value: &alive,
            combine: Combine::Max,
            unit: Unit::Count,
            scale: 0.0,
            color: Color::Yellow,
            missing: "",
        },
        Plot {
            title: "Global queue depth",
            value: &queue,
            combine: Combine::Max,
            unit: Unit::Count,
            scale: 1.0,
            color: Color::Magenta,
            missing: "",
        },
    ];
    // What is left, shared: each plot a heading and 1 to 4 rows.
    let left = bottom.saturating_sub(y + 1);
    let rows = (left / other_plots).saturating_sub(1).clamp(1, 4);
    for p in plots {
        if y + 1 + rows > bottom.saturating_sub(1) {
            break;
        }
        let values = plot::columns(
            samples.clone(),
            end,
            plot_width as usize,
            p.value,
            p.combine,
        );
        let now = latest.and_then(p.value);
        let mut head = heading(p.title);
        let has_values = values.iter().any(Option::is_some);
        if !has_values && !p.missing.is_empty() {
            head.push_span(Span::styled(format!("  {}", p.missing), dim));
        }
        let width = (area.width - FIGURES_WIDTH) as usize;
        let title_width = head.width();
        head.push_span(Span::raw(" ".repeat(width.saturating_sub(title_width))));
        head.push_span(Span::raw(figures(&values, now, p.unit)));
        line(frame, y, head);
        plot::sparkline(
            frame,
            Rect::new(area.x + WORKER_LABEL_WIDTH, y + 1, plot_width, rows),
            &values,
            p.scale,
            Style::new().fg(p.color),
        );
        y += 1 + rows;
    }

    // The time axis under the plots.
    let axis_y = y.min(bottom - 1);
    let mut axis = " ".repeat(WORKER_LABEL_WIDTH as usize);
    let width = plot_width as usize;
    let mut marks = vec![' '; width];
    let mut put = |at: usize, text: &str| {
        for (i, c) in text.chars().enumerate() {
            if let Some(cell) = marks.get_mut(at + i) {
                *cell = c;
            }
        }
    };
    put(0, "-5m");
    if width > 30 {
        put(width / 2 - 3, "-2m30s");
    }
    put(width.saturating_sub(3), "now");
    axis.extend(marks);
    line(frame, axis_y, Line::styled(axis, dim));
}
