//! The problems view: futures that were never awaited, leaked and lost tasks,
//! panics, one row per kind and location (how many, first and last seen, the
//! location, and under it the newest message; Enter shows the occurrences),
//! and what was dropped on the way (findings the app could not queue, updates
//! this viewer missed).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use taskscope_api::LeakReason;
use taskscope_api::problems::ProblemGroup;

use crate::state::problems::{SECTIONS, tag};
use crate::state::{Finding, FindingKind, MAX_PROBLEM_GROUPS, MAX_PROBLEMS, Model};
use crate::ui::text::{clamp_scroll, heading, plural};

/// The most occurrences shown under an expanded group.
pub const OCCURRENCES_SHOWN: usize = 200;

/// Width of the kind's tag column (the longest tag, `idle too long`, and two spaces).
const TAG_WIDTH: usize = 15;

/// Draws the problems view into `area`.
pub fn draw(frame: &mut Frame, area: Rect, model: &mut Model) {
    let (lines, selected_line) = lines(model);
    let block = Block::bordered().title(Line::from(vec![
        Span::styled(
            format!(" Problems ({}) ", model.problems.len()),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            " one row per kind and location; Enter: occurrences ",
            Style::new().add_modifier(Modifier::DIM),
        ),
    ]));
    let height = block.inner(area).height as usize;
    model.ui.page = height.max(1);
    if model.ui.problems_follow
        && let Some(line) = selected_line
    {
        // Keep the selected row and its newest message (the line under it) on screen.
        let scroll = &mut model.ui.problems_scroll;
        if height > 0 && line + 1 >= *scroll + height {
            *scroll = line + 2 - height;
        }
        *scroll = (*scroll).min(line);
    }
    clamp_scroll(&mut model.ui.problems_scroll, lines.len(), height);
    let scroll = model.ui.problems_scroll.min(u16::MAX as usize) as u16;
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), area);
}

/// `HH:MM:SS` of an RFC 3339 time, or the text as it is.
fn clock(time: &str) -> &str {
    time.get(11..19).unwrap_or(time)
}

fn tag_color(group: &ProblemGroup) -> Color {
    match (group.kind, group.reason) {
        ("task_panicked", _) | (_, Some(LeakReason::LostWaker)) => Color::Red,
        _ => Color::Yellow,
    }
}

/// The message of a finding, with the task that dropped a never-awaited future.
fn message_spans(finding: &Finding) -> Vec<Span<'static>> {
    let mut spans = vec![Span::raw(finding.message())];
    if let FindingKind::NeverAwaited { .. } = finding.kind
        && let Some(task) = &finding.task
    {
        spans.push(Span::styled(
            format!(", dropped by {task}"),
            Style::new().fg(Color::DarkGray),
        ));
    }
    spans
}

/// The view's lines, and the line of the selected group's row.
fn lines(model: &Model) -> (Vec<Line<'static>>, Option<usize>) {
    let mut out = Vec::new();
    let dim = Style::new().add_modifier(Modifier::DIM);
    let rows = model.problem_rows();
    let selected = rows.get(model.problem_selected_row(&rows)).map(|g| g.key());
    let mut selected_line = None;
    for (section, (title, _)) in SECTIONS.iter().enumerate() {
        let groups = model.problem_section(section);
        let findings: u64 = groups.iter().map(|g| g.count).sum();
        out.push(heading(format!(
            "{title} ({findings} at {})",
            plural(groups.len(), "location")
        )));
        if groups.is_empty() {
            out.push(Line::styled("  none", dim));
        } else {
            out.push(Line::styled(
                format!(
                    "    {:<TAG_WIDTH$}{:>7}  {:<8}  {:<8}  LOCATION, then the newest message",
                    "KIND", "COUNT", "FIRST", "LAST"
                ),
                Style::new().add_modifier(Modifier::BOLD | Modifier::DIM),
            ));
        }
        for group in groups {
            let key = group.key();
            let is_selected = selected.as_ref() == Some(&key);
            let expanded = model.ui.problems_expanded.contains(&key);
            if is_selected {
                selected_line = Some(out.len());
            }
            let spans = vec![
                Span::raw(if expanded { "  ▾ " } else { "  ▸ " }),
                Span::styled(
                    format!("{:<TAG_WIDTH$}", tag(group)),
                    Style::new().fg(tag_color(group)),
                ),
                Span::styled(
                    format!("{:>7}", group.count),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::styled(
                    format!(
                        "  {:<8}  {:<8}  ",
                        clock(&group.first_seen),
                        clock(&group.last_seen)
                    ),
                    dim,
                ),
                Span::raw(group.location.clone().unwrap_or_else(|| "unknown".into())),
            ];
            let mut line = Line::from(spans);
            if is_selected {
                line = line.style(Style::new().add_modifier(Modifier::REVERSED));
            }
            out.push(line);
            // The newest message on a line of its own, so that it fits.
            let mut spans = vec![Span::styled("      newest: ", dim)];
            spans.extend(message_spans(&group.newest));
            out.push(Line::from(spans));
            if expanded {
                let mut shown = 0u64;
                for finding in model.occurrences(&key).take(OCCURRENCES_SHOWN) {
                    let mut spans = vec![Span::styled(
                        format!("        {}  ", clock(&finding.time)),
                        dim,
                    )];
                    spans.extend(message_spans(finding));
                    out.push(Line::from(spans));
                    shown += 1;
                }
                if group.count > shown {
                    let more = group.count - shown;
                    let why = if shown == OCCURRENCES_SHOWN as u64 {
                        format!("the newest {OCCURRENCES_SHOWN} are shown")
                    } else {
                        format!("the viewer keeps the newest {MAX_PROBLEMS} problems")
                    };
                    out.push(Line::styled(format!("        … {more} older ({why})"), dim));
                }
            }
        }
        out.push(Line::raw(""));
    }

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
            &format!("older problems no longer listed (only the newest {MAX_PROBLEMS} are kept)"),
            model.problems_overflow,
        ));
    }
    if model.problem_groups.ungrouped() > 0 {
        out.push(count_line(
            &format!("problems at further locations, not grouped (at most {MAX_PROBLEM_GROUPS} locations)"),
            model.problem_groups.ungrouped(),
        ));
    }
    (out, selected_line)
}
