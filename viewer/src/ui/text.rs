//! Text helpers the views share: short durations, cut strings, headings,
//! stack frame lines, scroll clamping.

use std::time::Duration;

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use taskscope_api::StackFrame;

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
pub(crate) fn frame_line(index: usize, frame: &StackFrame) -> Line<'static> {
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
