//! Text helpers the views share: short durations, cut strings, headings,
//! stacks (folded to the app's frames), scroll clamping.

use std::time::Duration;

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use taskscope_api::StackFrame;
use taskscope_api::stack::{self, FrameKind, StackLine};

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

/// A stack as lines (`  4  app::load (src/config.rs:12)`): the app's frames
/// bold, each run of the runtime's frames folded into one dim line unless
/// `full`, paths shortened (relative to one of `roots`, the app's source
/// roots, where they are inside one). See [`taskscope_api::stack`].
pub(crate) fn stack_lines<R: AsRef<str>>(
    stack: &[StackFrame],
    full: bool,
    roots: &[R],
) -> Vec<Line<'static>> {
    let dim = Style::new().add_modifier(Modifier::DIM);
    stack::fold(stack, full)
        .into_iter()
        .map(|line| match line {
            StackLine::Frame { index, frame, kind } => {
                let place = match (&frame.file, frame.line) {
                    (Some(file), Some(line)) => {
                        format!(" ({}:{line})", stack::short_path(file, roots))
                    }
                    (Some(file), None) => format!(" ({})", stack::short_path(file, roots)),
                    _ => String::new(),
                };
                let (function, place_style) = match kind {
                    FrameKind::App => (
                        Style::new().add_modifier(Modifier::BOLD),
                        Style::new().fg(Color::Cyan),
                    ),
                    FrameKind::Library => (Style::new(), Style::new().fg(Color::DarkGray)),
                    FrameKind::Runtime => (dim, dim),
                };
                Line::from(vec![
                    Span::styled(format!("  {index:>3}  "), dim),
                    Span::styled(frame.function.clone(), function),
                    Span::styled(place, place_style),
                ])
            }
            folded @ StackLine::Folded { .. } => {
                Line::from(Span::styled(format!("       {folded}"), dim))
            }
        })
        .collect()
}

/// What `f` does, for a stack's title: ` f: whole stack ` or ` f: fold `.
pub(crate) fn stack_hint(full: bool) -> &'static str {
    if full {
        "f: fold the runtime's frames"
    } else {
        "f: whole stack"
    }
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
