//! The views: each draws the [`Model`] and nothing else (one file a view).
//!
//! [`draw`] lays out a frame: the tab bar on top, the current view (or the
//! help), and a status line at the bottom that always says how the connection
//! is, and `PAUSED` while paused (in a replay: `REPLAY`, the recorded time at
//! the cursor and where it is in the recording).

pub mod detail;
pub mod help;
pub mod plot;
pub mod problems;
pub mod runtime;
pub mod slow_polls;
pub mod tasks;
mod text;

pub use text::{cut_left, cut_right, dur, ms, plural};

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::state::{AppSource, Connection, Model, ReplayStatus, View};

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, model: &mut Model) {
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_tabs(frame, tabs, model);
    if model.ui.help {
        help::draw(frame, body, model);
    } else {
        match model.ui.view {
            View::Tasks => tasks::draw(frame, body, model),
            View::Detail => detail::draw(frame, body, model),
            View::SlowPolls => slow_polls::draw(frame, body, model),
            View::Problems => problems::draw(frame, body, model),
            View::Runtime => runtime::draw(frame, body, model),
        }
    }
    draw_status(frame, status, model);
}

fn draw_tabs(frame: &mut Frame, area: Rect, model: &Model) {
    let mut spans = vec![Span::styled(
        " taskscope ",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    for view in View::ALL {
        let mut title = format!(" {} {} ", view.index() + 1, view.title());
        match view {
            View::SlowPolls if model.slow.total() > 0 => {
                title = format!(
                    " {} {} ({}) ",
                    view.index() + 1,
                    view.title(),
                    model.slow.total()
                );
            }
            View::Problems if !model.problems.is_empty() => {
                title = format!(
                    " {} {} ({}) ",
                    view.index() + 1,
                    view.title(),
                    model.problems.len()
                );
            }
            _ => {}
        }
        let style = if view == model.ui.view && !model.ui.help {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::new()
        };
        spans.push(Span::styled(title, style));
        spans.push(Span::raw("│"));
    }
    spans.pop();
    if let Some(app) = &model.app {
        let who = match app.source {
            AppSource::Taskscope => format!("  {} (pid {})", app.name, app.pid),
            AppSource::ConsoleSubscriber => format!("  {}", app.name),
        };
        spans.push(Span::styled(who, Style::new().fg(Color::Cyan)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The connection state in words: `Connected to ADDR`, `Connecting to ADDR
/// (attempt 3)`, `Disconnected: REASON, retrying in 2s`, `Incompatible: REASON`.
pub fn connection_text(model: &Model) -> String {
    match &model.connection {
        Connection::Connected { addr } => format!("Connected to {addr}"),
        Connection::Connecting { addr, attempt } => {
            format!("Connecting to {addr} (attempt {attempt})")
        }
        Connection::Disconnected {
            reason, retry_in, ..
        } => {
            let waited = model
                .clock
                .saturating_duration_since(model.connection_since);
            let left = retry_in.saturating_sub(waited);
            if left.is_zero() {
                format!("Disconnected: {reason}, retrying now")
            } else {
                // Round up: "retrying in 0s" would read as a lie.
                let secs = left.as_millis().div_ceil(1000);
                format!("Disconnected: {reason}, retrying in {secs}s")
            }
        }
        Connection::Incompatible { reason, .. } => format!("Incompatible: {reason}"),
    }
}

/// What the status line says of an app that embeds console-subscriber: that
/// it is one, and what is not available there (`None` for taskscope's).
pub fn console_text(model: &Model) -> Option<String> {
    let app = model.app.as_ref()?;
    if app.source != AppSource::ConsoleSubscriber {
        return None;
    }
    let mut text = String::from(
        " console-subscriber app (tokio-console's protocol): no stacks, no findings; \
         slow polls from its poll histograms",
    );
    if model.tasks.is_empty() && matches!(model.connection, Connection::Connected { .. }) {
        text.push_str("; no tasks: is it built with --cfg tokio_unstable?");
    }
    Some(text)
}

fn draw_status(frame: &mut Frame, area: Rect, model: &Model) {
    if let Some(replay) = &model.replay {
        draw_replay_status(frame, area, model, replay);
        return;
    }
    let color = match model.connection {
        Connection::Connected { .. } => Color::Green,
        Connection::Connecting { .. } => Color::Yellow,
        Connection::Disconnected { .. } | Connection::Incompatible { .. } => Color::Red,
    };
    let mut left = vec![Span::styled(
        format!(" {} ", connection_text(model)),
        Style::new().fg(color).add_modifier(Modifier::BOLD),
    )];
    if model.paused {
        left.push(Span::styled(
            " PAUSED ",
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        ));
        let mut held = format!(" {} updates held", model.held_updates());
        if model.held_findings_dropped() > 0 {
            held.push_str(&format!(
                ", {} findings dropped",
                model.held_findings_dropped()
            ));
        }
        left.push(Span::raw(held));
    }
    if let Some(text) = console_text(model) {
        left.push(Span::styled(text, Style::new().fg(Color::Cyan)));
    }
    if model.dropped.app_events > 0 {
        left.push(Span::styled(
            format!("  {} events lost by the app", model.dropped.app_events),
            Style::new().fg(Color::Red),
        ));
    }
    if model.dropped.updates > 0 {
        left.push(Span::styled(
            format!("  missed {} updates", model.dropped.updates),
            Style::new().fg(Color::Red),
        ));
    }
    if model.tasks_refused > 0 {
        left.push(Span::styled(
            format!(
                "  {} tasks not shown: the app sent more than {}",
                model.tasks_refused, model.max_tasks
            ),
            Style::new().fg(Color::Red),
        ));
    }
    draw_status_row(frame, area, model, left, "? help  p pause  q quit ");
}

/// The status line of `taskscope replay`: that it is a replay, the recorded
/// time at the cursor and where it is in the recording, playing or paused.
fn draw_replay_status(frame: &mut Frame, area: Rect, model: &Model, replay: &ReplayStatus) {
    let mut left = vec![
        Span::styled(
            " REPLAY ",
            Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            format!(" {} ", replay_time_text(replay)),
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ),
    ];
    let state = if replay.at_end {
        Span::styled(" END ", Style::new().add_modifier(Modifier::BOLD))
    } else if replay.playing {
        Span::raw(format!(" ▶ {}× ", replay.speed))
    } else {
        Span::styled(
            " PAUSED ",
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        )
    };
    left.push(state);
    left.push(Span::styled(
        format!(" {}", replay.file),
        Style::new().add_modifier(Modifier::DIM),
    ));
    if replay.missing > 0 {
        left.push(Span::styled(
            format!(
                "  {} updates missing (the app dropped them)",
                replay.missing
            ),
            Style::new().fg(Color::Red),
        ));
    }
    if replay.problems > 0 {
        left.push(Span::styled(
            format!(
                "  ⚠ {} reading the recording (listed on exit)",
                plural(replay.problems, "problem")
            ),
            Style::new().fg(Color::Red),
        ));
    }
    if model.dropped.updates > 0 {
        left.push(Span::styled(
            format!("  missed {} updates", model.dropped.updates),
            Style::new().fg(Color::Red),
        ));
    }
    draw_status_row(
        frame,
        area,
        model,
        left,
        "space pause  ←→ 10s  g G start/end  ? help  q quit ",
    );
}

/// The status line's row: `left` from the left, the key hints (`hints`, or
/// the filter's while one is typed) dim at the right.
fn draw_status_row(
    frame: &mut Frame,
    area: Rect,
    model: &Model,
    left: Vec<Span<'static>>,
    hints: &'static str,
) {
    let hints = if model.ui.filter_typing {
        "filter: Enter keeps, Esc clears "
    } else {
        hints
    };
    let [left_area, right_area] = Layout::horizontal([
        Constraint::Min(1),
        Constraint::Length(hints.chars().count() as u16),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(Line::from(left)), left_area);
    frame.render_widget(
        Paragraph::new(Line::from(Span::styled(
            hints,
            Style::new().add_modifier(Modifier::DIM),
        ))),
        right_area,
    );
}

/// The recorded time at the replay's cursor and where it is in the
/// recording: `2026-11-22 10:00:42.5 UTC  0:42 / 5:00`.
pub fn replay_time_text(replay: &ReplayStatus) -> String {
    // 2026-11-22T10:00:42.537Z -> 2026-11-22 10:00:42.5 (tenths, cut, not rounded)
    let at = humantime::format_rfc3339_millis(replay.at)
        .to_string()
        .replacen('T', " ", 1);
    let at = at.get(..21).unwrap_or(&at);
    format!(
        "{at} UTC  {} / {}",
        clock(replay.elapsed),
        clock(replay.length)
    )
}

/// `m:ss`, or `h:mm:ss` from an hour on.
fn clock(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}
