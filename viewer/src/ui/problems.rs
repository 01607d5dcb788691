//! The problems view: futures that were never awaited, leaked and lost tasks,
//! panics (newest first, in the words of the app's warnings), and what was
//! dropped on the way (findings the app could not queue, updates this viewer
//! missed).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::state::{Finding, FindingKind, MAX_PROBLEMS, Model};
use crate::ui::text::{clamp_scroll, heading};
use taskscope_api::LeakReason;

/// Draws the problems view into `area`.
pub fn draw(frame: &mut Frame, area: Rect, model: &mut Model) {
    let lines = lines(model);
    let block = Block::bordered().title(Line::from(Span::styled(
        format!(" Problems ({}) ", model.problems.len()),
        Style::new().add_modifier(Modifier::BOLD),
    )));
    let height = block.inner(area).height as usize;
    model.ui.page = height.max(1);
    clamp_scroll(&mut model.ui.problems_scroll, lines.len(), height);
    let scroll = model.ui.problems_scroll.min(u16::MAX as usize) as u16;
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), area);
}

/// `HH:MM:SS` of an RFC 3339 time, or the text as it is.
fn clock(time: &str) -> &str {
    time.get(11..19).unwrap_or(time)
}

fn section<'a>(
    out: &mut Vec<Line<'static>>,
    title: &str,
    findings: impl DoubleEndedIterator<Item = &'a Finding> + Clone,
    label: impl Fn(&Finding) -> Option<(&'static str, Color)>,
) {
    let count = findings.clone().filter(|f| label(f).is_some()).count();
    out.push(heading(format!("{title} ({count})")));
    if count == 0 {
        out.push(Line::styled(
            "  none",
            Style::new().add_modifier(Modifier::DIM),
        ));
    }
    for finding in findings.rev() {
        let Some((tag, color)) = label(finding) else {
            continue;
        };
        let mut spans = vec![
            Span::styled(
                format!("  {}  ", clock(&finding.time)),
                Style::new().add_modifier(Modifier::DIM),
            ),
            Span::styled(format!("{tag:<12}"), Style::new().fg(color)),
            Span::raw(finding.message()),
        ];
        if let FindingKind::NeverAwaited { .. } = finding.kind
            && let Some(task) = &finding.task
        {
            spans.push(Span::styled(
                format!(", dropped by {task}"),
                Style::new().fg(Color::DarkGray),
            ));
        }
        out.push(Line::from(spans));
    }
    out.push(Line::raw(""));
}

fn lines(model: &Model) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let all = model.problems.iter();
    section(&mut out, "Never awaited", all.clone(), |f| match f.kind {
        FindingKind::NeverAwaited { .. } => Some(("never awaited", Color::Yellow)),
        _ => None,
    });
    section(
        &mut out,
        "Leaked and lost tasks",
        all.clone(),
        |f| match f.kind {
            FindingKind::LeakedTask { reason, .. } => Some(match reason {
                LeakReason::LostWaker => ("lost waker", Color::Red),
                LeakReason::AliveAtShutdown => ("at shutdown", Color::Yellow),
                LeakReason::IdleTooLong => ("idle too long", Color::Yellow),
            }),
            _ => None,
        },
    );
    section(&mut out, "Panics", all, |f| match f.kind {
        FindingKind::TaskPanicked { .. } => Some(("panicked", Color::Red)),
        _ => None,
    });

    out.push(heading("Dropped"));
    let count_line = |what: &str, n: u64| {
        let style = if n > 0 {
            Style::new().fg(Color::Red)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        };
        Line::from(vec![
            Span::raw(format!("  {what}: ")),
            Span::styled(n.to_string(), style),
        ])
    };
    out.push(count_line(
        "findings dropped by the app (its findings queue was full)",
        model.dropped.findings.max(model.findings_dropped_reported),
    ));
    out.push(count_line(
        "updates this viewer missed (its queue in the app was full)",
        model.dropped.updates,
    ));
    if model.held_findings_dropped() > 0 {
        out.push(count_line(
            "findings dropped while paused",
            model.held_findings_dropped(),
        ));
    }
    if model.problems_overflow > 0 {
        out.push(count_line(
            &format!("older problems no longer shown (only the newest {MAX_PROBLEMS} are kept)"),
            model.problems_overflow,
        ));
    }
    out
}
