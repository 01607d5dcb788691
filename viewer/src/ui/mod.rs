//! The views: each draws the [`Model`] and nothing else (one file a view).
//!
//! [`draw`] lays out a frame: the tab bar on top, the current view (or the
//! help), and a status line at the bottom that always says how the connection
//! is, and `PAUSED` while paused.

pub mod detail;
pub mod help;
pub mod problems;
pub mod runtime;
pub mod slow_polls;
pub mod tasks;

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::state::{Connection, Model, View};

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
        spans.push(Span::styled(
            format!("  {} (pid {})", app.name, app.pid),
            Style::new().fg(Color::Cyan),
        ));
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

fn draw_status(frame: &mut Frame, area: Rect, model: &Model) {
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
    if model.dropped.updates > 0 {
        left.push(Span::styled(
            format!("  missed {} updates", model.dropped.updates),
            Style::new().fg(Color::Red),
        ));
    }
    let hints = if model.ui.filter_typing {
        "filter: Enter keeps, Esc clears "
    } else {
        "? help  p pause  q quit "
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

/// A duration, short: `850µs`, `12.3ms`, `1.53s`.
pub fn dur(d: Duration) -> String {
    taskscope_api::format::duration(d)
}

/// Milliseconds as a short duration.
pub fn ms(value: f64) -> String {
    dur(Duration::from_secs_f64(value.max(0.0) / 1000.0))
}

/// `text` cut to `width` characters, losing the start (`…rs/handlers.rs:42:5`):
/// for paths, the end is what tells them apart.
pub fn cut_left(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let skip = count - (width - 1);
    let mut out = String::from("…");
    out.extend(text.chars().skip(skip));
    out
}

/// `text` cut to `width` characters, losing the end.
pub fn cut_right(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// `1 poll`, `3 polls`.
pub fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// A section heading inside a view.
pub(crate) fn heading(text: impl Into<String>) -> Line<'static> {
    Line::from(Span::styled(
        text.into(),
        Style::new()
            .add_modifier(Modifier::BOLD)
            .fg(Color::LightBlue),
    ))
}

/// One frame of a stack: `  0  app::load (src/config.rs:12)`.
pub(crate) fn frame_line(index: usize, frame: &taskscope_api::StackFrame) -> Line<'static> {
    let place = match (&frame.file, frame.line) {
        (Some(file), Some(line)) => format!(" ({file}:{line})"),
        (Some(file), None) => format!(" ({file})"),
        _ => String::new(),
    };
    Line::from(vec![
        Span::styled(
            format!("  {index:>3}  "),
            Style::new().add_modifier(Modifier::DIM),
        ),
        Span::raw(frame.function.clone()),
        Span::styled(place, Style::new().fg(Color::DarkGray)),
    ])
}

/// Keeps a scroll position within `lines` for an area `height` high.
pub(crate) fn clamp_scroll(scroll: &mut usize, lines: usize, height: usize) {
    *scroll = (*scroll).min(lines.saturating_sub(height));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutting_keeps_the_telling_end() {
        assert_eq!(cut_left("src/handlers.rs:42:5", 10), "…s.rs:42:5");
        assert_eq!(cut_left("short", 10), "short");
        assert_eq!(cut_right("handler-number-7", 8), "handler…");
        assert_eq!(cut_right("x", 0), "");
        assert_eq!(plural(1, "poll"), "1 poll");
        assert_eq!(plural(2, "location"), "2 locations");
    }

    #[test]
    fn durations_in_milliseconds_read_short() {
        assert_eq!(ms(253.4), "253.4ms");
        assert_eq!(ms(2500.0), "2.50s");
    }
}
