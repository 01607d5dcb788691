//! The detail view: everything about one task — its numbers, a histogram of
//! its poll durations, its slow polls with the stacks where it blocked, wakes
//! and wakers, parent and children, and its async stack when the app has one.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use taskscope_api::waiting;

use crate::client::stacks::AsyncStack;
use crate::dump::stacks as dump_stacks;
use crate::state::{AppSource, FindingKind, Marks, Model, StackFetch, TaskDetail};
use crate::ui::text::{clamp_scroll, dur, heading, ms, stack_hint, stack_lines};

/// Width of the longest histogram bar, in cells.
const BAR_WIDTH: usize = 50;

/// Draws the detail view into `area`.
pub fn draw(frame: &mut Frame, area: Rect, model: &mut Model) {
    let Some(id) = model.ui.detail_id else {
        let block = Block::bordered().title(" Task detail ");
        let text = "No task selected: choose one in Tasks (1) and press Enter.";
        frame.render_widget(
            Paragraph::new(text)
                .style(Style::new().add_modifier(Modifier::DIM))
                .block(block),
            area,
        );
        return;
    };
    let lines = lines(model, id);
    let block = Block::bordered().title(Line::from(Span::styled(
        format!(" Task {id} "),
        Style::new().add_modifier(Modifier::BOLD),
    )));
    let height = block.inner(area).height as usize;
    model.ui.page = height.max(1);
    clamp_scroll(&mut model.ui.detail_scroll, lines.len(), height);
    let scroll = model.ui.detail_scroll.min(u16::MAX as usize) as u16;
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), area);
}

fn lines(model: &Model, id: u64) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let dim = Style::new().add_modifier(Modifier::DIM);
    let detail = model.detail.as_ref().filter(|d| d.id == id);
    match model.tasks.get(&id) {
        Some(entry) => {
            let t = &entry.task;
            let mut first = vec![Span::styled(
                format!("Task {}", t.id),
                Style::new().add_modifier(Modifier::BOLD),
            )];
            if let Some(name) = &t.name {
                first.push(Span::styled(
                    format!(" \"{name}\""),
                    Style::new().add_modifier(Modifier::BOLD),
                ));
            }
            first.push(Span::raw(format!(
                "  {}  spawned at {}",
                entry.state_text(),
                t.spawned_at
            )));
            let marks = model.marks_of(entry);
            if !marks.is_empty() {
                let words: Vec<String> = Marks::LEGEND
                    .iter()
                    .filter(|(m, _, _)| marks.contains(*m))
                    .map(|(_, s, what)| format!("{s} {what}"))
                    .collect();
                first.push(Span::styled(
                    format!("  {}", words.join(", ")),
                    Style::new().fg(Color::Yellow),
                ));
            }
            out.push(Line::from(first));
            let now = model.now;
            out.push(Line::from(format!(
                "age {}   polls {}   busy {}   idle {}   longest poll {}   last poll {}",
                dur(entry.age_at(now)),
                t.polls,
                dur(entry.busy_at(now)),
                dur(entry.idle_at(now)),
                dur(t.max_poll),
                match t.since_last_poll {
                    Some(d) => format!("{} ago", dur(d)),
                    None => "never".into(),
                },
            )));
        }
        None => out.push(Line::styled(
            format!("Task {id} is no longer known (it ended more than a while ago)."),
            dim,
        )),
    }

    let Some(detail) = detail else {
        out.push(Line::raw(""));
        out.push(Line::styled("Asking the app for the detail…", dim));
        return out;
    };
    out.push(Line::from(format!(
        "wakes {}   wakers alive {}{}",
        detail.wakes,
        detail.wakers,
        if detail.wakers == 0 {
            "  (nothing can wake it)"
        } else {
            ""
        }
    )));
    out.push(Line::from(format!(
        "parent {}   children {}",
        detail
            .parent
            .map(|p| p.to_string())
            .unwrap_or_else(|| "none".into()),
        if detail.children.is_empty() {
            "none".to_string()
        } else {
            detail
                .children
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    )));

    out.push(Line::raw(""));
    out.push(heading("Poll durations"));
    let threshold = model.app.as_ref().map(|a| a.slow_poll_threshold);
    if model.replay.is_some() {
        out.push(Line::styled(
            "  not in a recording (the app sends a task's histogram only when asked)",
            dim,
        ));
    } else {
        if let Some(app) = model.app.as_ref().filter(|a| a.timing_sampled()) {
            out.push(Line::styled(
                format!(
                    "  estimated: polls of 10 ms or more are all timed, shorter ones 1 in {} \
                     (each counted {}×); busy time too",
                    app.poll_timing_one_in, app.poll_timing_one_in
                ),
                dim,
            ));
        }
        let sampled = model.app.as_ref().is_some_and(|a| a.timing_sampled());
        histogram(detail, threshold, sampled, &mut out);
    }

    out.push(Line::raw(""));
    let mut slow_heading = heading(format!("Slow polls ({})", detail.slow_polls.len()));
    if !detail.slow_polls.is_empty() {
        slow_heading.push_span(Span::styled(
            format!("  {}", stack_hint(model.ui.full_stacks)),
            dim,
        ));
    }
    out.push(slow_heading);
    if console_app(model) {
        out.push(Line::styled(
            "  not reported by console-subscriber (no stacks): the longest poll above says \
             whether one was slow",
            dim,
        ));
    } else if detail.slow_polls.is_empty() {
        out.push(Line::styled("  none", dim));
    }
    // Newest first.
    for finding in detail.slow_polls.iter().rev() {
        let FindingKind::SlowPoll {
            duration_ms,
            thread,
            stack,
            stack_unavailable,
            in_progress,
            poll,
            ..
        } = &finding.kind
        else {
            continue;
        };
        let state = if *in_progress { "blocked for" } else { "took" };
        out.push(Line::from(vec![
            Span::styled(
                format!("  poll {poll} {state} {}", ms(*duration_ms)),
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(" on {thread} at {}", finding.time)),
        ]));
        if stack.is_empty() {
            let why = stack_unavailable
                .as_deref()
                .unwrap_or("no stack was captured");
            out.push(Line::styled(
                format!("       stack not available: {why}"),
                dim,
            ));
        }
        out.extend(stack_lines(
            stack,
            model.ui.full_stacks,
            model.source_roots.as_slice(),
        ));
    }

    out.push(Line::raw(""));
    async_stack(model, id, &mut out);
    out
}

/// The "Async stack" section: where the task waits, from a task dump taken
/// when the view was opened (or on `s`), innermost frame first.
fn async_stack(model: &Model, id: u64, out: &mut Vec<Line<'static>>) {
    let dim = Style::new().add_modifier(Modifier::DIM);
    let mut title = heading("Async stack");
    if model.replay.is_some() {
        out.push(title);
        out.push(Line::styled("  not in a recording", dim));
        return;
    }
    if console_app(model) {
        out.push(title);
        out.push(Line::styled("  not available from console-subscriber", dim));
        return;
    }
    let again = "s: take it again (a task dump pauses the app's runtime)";
    match model.async_stack.of(id) {
        StackFetch::NotAsked => {
            out.push(title);
            out.push(Line::styled(
                "  not taken: s takes a task dump (it pauses the app's runtime briefly)",
                dim,
            ));
        }
        StackFetch::Asked { .. } => {
            out.push(title);
            out.push(Line::styled(
                "  taking a task dump (the app's runtime pauses while it traces)…",
                dim,
            ));
        }
        StackFetch::Got { stack, at, .. } => {
            let age = model.now.saturating_duration_since(*at);
            title.push_span(Span::styled(
                format!("  taken {} ago; {again}", dur(age)),
                dim,
            ));
            if !stack.waiting_at.is_empty() || !stack.also.is_empty() {
                title.push_span(Span::styled(
                    format!("; {}", stack_hint(model.ui.full_stacks)),
                    dim,
                ));
            }
            out.push(title);
            stack_section(model, stack, out);
        }
    }
}

/// A task's async stack: where it waits, its frames (innermost first, the
/// app's standing out, the runtime's folded as in the slow-poll stacks), the
/// other branches it waits on at once (`select!`), and the note.
fn stack_section(model: &Model, stack: &AsyncStack, out: &mut Vec<Line<'static>>) {
    let dim = Style::new().add_modifier(Modifier::DIM);
    let roots = model.source_roots.as_slice();
    let full = model.ui.full_stacks;
    if stack.waiting_at.is_empty() && stack.also.is_empty() {
        let why = stack
            .note
            .as_deref()
            .map(dump_stacks::visible)
            .unwrap_or_else(|| "the app did not say why".into());
        let head = waiting::warning_suffix(&[], stack.note.as_deref());
        match head.strip_prefix("; ") {
            // Known to wait in something a task dump cannot see into.
            Some(head) => {
                out.push(Line::styled(
                    format!("  {head}"),
                    Style::new().fg(Color::Yellow),
                ));
                out.push(Line::styled(format!("  ({why})"), dim));
            }
            None => out.push(Line::styled(format!("  not available: {why}"), dim)),
        }
        return;
    }
    out.push(Line::styled(
        format!("  {}", dump_stacks::headline(stack)),
        Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
    ));
    out.extend(stack_lines(&stack.waiting_at, full, roots));
    for (i, branch) in stack.also.iter().enumerate() {
        let place = waiting::warning_suffix(branch, None);
        let place = place.strip_prefix("; ").unwrap_or("somewhere not known");
        out.push(Line::styled(
            format!(
                "  and at the same time (branch {} of a select!/join!): {}",
                i + 2,
                dump_stacks::visible(place)
            ),
            Style::new().fg(Color::Yellow),
        ));
        out.extend(stack_lines(branch, full, roots));
    }
    if let Some(note) = &stack.note {
        out.push(Line::styled(
            format!("  ({})", dump_stacks::visible(note)),
            dim,
        ));
    }
}

fn console_app(model: &Model) -> bool {
    model
        .app
        .as_ref()
        .is_some_and(|a| a.source == AppSource::ConsoleSubscriber)
}

fn bound_text(bound: Option<Duration>, previous: Option<Duration>) -> String {
    match (bound, previous) {
        (Some(b), _) => format!("≤ {}", dur(b)),
        (None, Some(p)) => format!("> {}", dur(p)),
        (None, None) => "all".into(),
    }
}

/// The poll-duration histogram, one bar a bucket, with the slow-poll
/// `threshold` marked: a line where it falls between buckets, and the bars of
/// the buckets of slow polls in red (yellow for the bucket it falls inside:
/// part of it is slow).
fn histogram(
    detail: &TaskDetail,
    threshold: Option<Duration>,
    sampled: bool,
    out: &mut Vec<Line<'static>>,
) {
    if detail.histogram.iter().all(|(_, n)| *n == 0) {
        out.push(Line::styled(
            if sampled {
                "  no poll timed yet"
            } else {
                "  no polls yet"
            },
            Style::new().add_modifier(Modifier::DIM),
        ));
        return;
    }
    let max = detail
        .histogram
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut previous = None;
    let labels: Vec<String> = detail
        .histogram
        .iter()
        .map(|(bound, _)| {
            let text = bound_text(*bound, previous);
            previous = bound.or(previous);
            text
        })
        .collect();
    let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let threshold = threshold.filter(|t| !t.is_zero());
    let mut marked = threshold.is_none();
    let mut lower: Option<Duration> = None;
    for ((bound, count), label) in detail.histogram.iter().zip(labels) {
        // Where the bucket's polls stand against the threshold.
        let (slow, straddles) = match threshold {
            Some(t) => {
                let above = lower.is_some_and(|l| l >= t);
                let inside = !above && bound.is_none_or(|b| b > t);
                (above, inside)
            }
            None => (false, false),
        };
        if !marked && (slow || straddles) {
            marked = true;
            let t = threshold.unwrap_or_default();
            let text = if straddles {
                format!(
                    "slow-poll threshold {} (inside the next bucket; slower ones below)",
                    dur(t)
                )
            } else {
                format!("slow-poll threshold {} (slower polls below)", dur(t))
            };
            out.push(Line::from(vec![
                Span::raw(format!("  {:>label_width$} ", "")),
                Span::styled(format!("╌╌╌ {text} ╌╌╌"), Style::new().fg(Color::Red)),
            ]));
        }
        lower = bound.or(lower);
        // At least one cell for any non-zero count, so a rare bucket is seen.
        let cells = if *count == 0 {
            0
        } else {
            ((*count as u128 * BAR_WIDTH as u128).div_ceil(max as u128) as usize).max(1)
        };
        let color = if slow {
            Color::Red
        } else if straddles {
            Color::Yellow
        } else {
            Color::Cyan
        };
        out.push(Line::from(vec![
            Span::raw(format!("  {label:>label_width$} ")),
            Span::styled("█".repeat(cells), Style::new().fg(color)),
            Span::raw(format!(
                "{} {count}",
                " ".repeat(BAR_WIDTH - cells.min(BAR_WIDTH))
            )),
        ]));
    }
}
