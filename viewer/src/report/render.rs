//! Output: the text tables, and the `--json` object.

use std::time::Duration;

use serde::Serialize;
use taskscope_api::format::{duration, printable, table};
use taskscope_api::problems::ProblemGroup;
use taskscope_api::slow_polls::{SlowPollGroup, WorstPoll};
use taskscope_api::stack::{self, SourceRoots};
use taskscope_api::time::parse_time;
use taskscope_api::{LeakReason, StackFrame, TaskRef};

use super::group::Summary;
use super::parse::Reading;

/// Lines of a worst stack shown in text, the runtime's frames folded;
/// `--full-stacks` shows every frame, `--json` has them all.
pub const STACK_FRAMES_SHOWN: usize = 16;
/// Task names shown in text per group.
const NAMES_SHOWN: usize = 5;

/// The report as text: a section of slow polls (each with its worst stack, the
/// runtime's frames folded unless `full_stacks`), one of other findings, and a
/// line about what was read.
pub fn text(summary: &Summary, reading: &Reading, full_stacks: bool) -> String {
    let mut out = String::new();
    slow_polls_text(&summary.slow_polls, &summary.roots, full_stacks, &mut out);
    out.push('\n');
    other_text(&summary.other, &mut out);
    out.push('\n');
    out.push_str(&lines_text(reading));
    out.push('\n');
    out
}

fn slow_polls_text(groups: &[SlowPollGroup], roots: &SourceRoots, full: bool, out: &mut String) {
    if groups.is_empty() {
        out.push_str("Slow polls: none\n");
        return;
    }
    let roots = roots.as_slice();
    let polls: u64 = groups.iter().map(|g| g.count).sum();
    out.push_str(&format!(
        "Slow polls: {polls} {} at {} spawn {}, longest total first\n",
        plural(polls, "poll", "polls"),
        groups.len(),
        plural(groups.len() as u64, "location", "locations"),
    ));
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.location().to_string(),
                g.count.to_string(),
                ms(g.total_ms),
                ms(g.max_ms),
                ms(g.p50_ms),
                ms(g.p99_ms),
                g.top_frame
                    .as_ref()
                    .map_or_else(|| "-".into(), |f| stack::frame_text(f, roots)),
            ]
        })
        .collect();
    let header = [
        "SPAWNED AT",
        "POLLS",
        "TOTAL",
        "MAX",
        "P50",
        "P99",
        "TOP FRAME",
    ];
    let laid_out = table(&header, &rows, &[1, 2, 3, 4, 5]);
    let mut lines = laid_out.lines();
    if let Some(head) = lines.next() {
        out.push_str(head);
        out.push('\n');
    }
    for (group, line) in groups.iter().zip(lines) {
        out.push_str(line);
        out.push('\n');
        if group.unfinished > 0 {
            out.push_str(&format!(
                "    {} still running at the last report\n",
                plural(
                    group.unfinished,
                    "1 poll",
                    &format!("{} polls", group.unfinished)
                )
            ));
        }
        if !group.task_names.is_empty() {
            let shown = &group.task_names[..group.task_names.len().min(NAMES_SHOWN)];
            let mut names = shown
                .iter()
                .map(|n| printable(n))
                .collect::<Vec<_>>()
                .join(", ");
            if group.task_names.len() > NAMES_SHOWN {
                names.push_str(&format!(", … ({} names)", group.task_names.len()));
            }
            out.push_str(&format!("    tasks: {names}\n"));
        }
        worst_text(&group.worst, roots, full, out);
    }
}

fn worst_text(worst: &WorstPoll, roots: &[String], full: bool, out: &mut String) {
    let mut head = format!("    worst poll: {}", ms(worst.duration_ms));
    if worst.unfinished {
        head.push_str(" so far");
    }
    if let Some(task) = &worst.task {
        head.push_str(&format!(", task {}", task_text(task)));
    }
    if !worst.thread.is_empty() {
        head.push_str(&format!(", thread {}", printable(&worst.thread)));
    }
    out.push_str(&head);
    out.push('\n');
    if worst.stack.is_empty() {
        let why = worst
            .stack_unavailable
            .as_deref()
            .unwrap_or("none was captured");
        out.push_str(&format!("      (no stack: {})\n", printable(why)));
    }
    let lines = stack::fold(&worst.stack, full);
    let shown = if full {
        lines.len()
    } else {
        STACK_FRAMES_SHOWN
    };
    for line in lines.iter().take(shown) {
        match line {
            stack::StackLine::Frame { frame, .. } => {
                let text = stack::frame_text(frame, roots);
                out.push_str(&format!("      {}\n", printable(&text)));
            }
            folded @ stack::StackLine::Folded { .. } => {
                out.push_str(&format!("      {}\n", printable(&folded.to_string())));
            }
        }
    }
    if let Some(next) = lines.get(shown) {
        let first = match next {
            stack::StackLine::Frame { index, .. } => *index,
            stack::StackLine::Folded { first, .. } => *first,
        };
        out.push_str(&format!(
            "      … {} more frames (--full-stacks or --json has them all)\n",
            worst.stack.len() - first
        ));
    }
}

/// A finding's time, to the second in UTC (`2026-11-22T10:00:05Z`), or as
/// written when it cannot be read.
fn seen(time: &str) -> String {
    match parse_time(time) {
        Ok(t) => humantime::format_rfc3339_seconds(t).to_string(),
        Err(_) => time.to_string(),
    }
}

fn other_text(groups: &[ProblemGroup], out: &mut String) {
    if groups.is_empty() {
        out.push_str("Other findings: none\n");
        return;
    }
    let findings: u64 = groups
        .iter()
        .filter(|g| g.kind != "findings_dropped")
        .map(|g| g.count)
        .sum();
    out.push_str(&format!(
        "Other findings: {findings} in {} {} by kind and location, each with its newest message\n",
        groups.len(),
        plural(groups.len() as u64, "group", "groups"),
    ));
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let detail = match (g.reason, &g.example) {
                (Some(reason), _) => reason_name(reason).to_string(),
                (None, Some(example)) if g.kind == "task_panicked" => format!("{example:?}"),
                (None, Some(example)) => example.clone(),
                (None, None) => "-".into(),
            };
            vec![
                g.kind.to_string(),
                location(g.location.as_deref(), "-"),
                g.count.to_string(),
                seen(&g.first_seen),
                seen(&g.last_seen),
                detail,
                g.example_task
                    .as_ref()
                    .map_or_else(|| "-".into(), task_text),
            ]
        })
        .collect();
    let laid_out = table(
        &[
            "KIND",
            "LOCATION",
            "COUNT",
            "FIRST SEEN",
            "LAST SEEN",
            "DETAIL",
            "EXAMPLE TASK",
        ],
        &rows,
        &[2],
    );
    let mut lines = laid_out.lines();
    if let Some(head) = lines.next() {
        out.push_str(head);
        out.push('\n');
    }
    for (group, line) in groups.iter().zip(lines) {
        out.push_str(line);
        out.push('\n');
        let newest = group.newest.message();
        out.push_str(&format!("    newest: {}\n", printable(&newest)));
    }
}

fn lines_text(reading: &Reading) -> String {
    let read = reading.files.len() - reading.unreadable.len();
    let mut text = format!(
        "Read {read} {}: {} valid {}",
        plural(read as u64, "file", "files"),
        reading.valid,
        plural(reading.valid, "line", "lines"),
    );
    if reading.outside_window > 0 {
        text.push_str(&format!(
            ", {} outside the time window",
            reading.outside_window
        ));
    }
    if reading.malformed > 0 {
        text.push_str(&format!("; {}", malformed_text(reading.malformed)));
    }
    if !reading.unreadable.is_empty() {
        let names: Vec<_> = reading
            .unreadable
            .iter()
            .map(|&i| printable(&reading.files[i]))
            .collect();
        text.push_str(&format!("; could not read {}", names.join(", ")));
    }
    text
}

/// `N malformed lines skipped`.
pub fn malformed_text(n: u64) -> String {
    format!("{n} malformed {} skipped", plural(n, "line", "lines"))
}

/// The report as one JSON object (see the crate docs for its fields).
pub fn json(summary: &Summary, reading: &Reading) -> String {
    let report = JsonReport {
        slow_polls: summary.slow_polls.iter().map(JsonSlowPoll::from).collect(),
        other: summary.other.iter().map(JsonOther::from).collect(),
        lines: JsonLines {
            valid: reading.valid,
            malformed: reading.malformed,
            outside_window: reading.outside_window,
        },
        files: reading
            .files
            .iter()
            .enumerate()
            .filter(|(i, _)| !reading.unreadable.contains(i))
            .map(|(_, name)| name.as_str())
            .collect(),
        unreadable: reading
            .unreadable
            .iter()
            .map(|&i| reading.files[i].as_str())
            .collect(),
    };
    taskscope_viewer::json::pretty(&report)
}

#[derive(Serialize)]
struct JsonReport<'a> {
    slow_polls: Vec<JsonSlowPoll<'a>>,
    other: Vec<JsonOther<'a>>,
    lines: JsonLines,
    /// The files read.
    files: Vec<&'a str>,
    /// The files that could not be read (to the end).
    unreadable: Vec<&'a str>,
}

#[derive(Serialize)]
struct JsonSlowPoll<'a> {
    spawned_at: Option<&'a str>,
    count: u64,
    unfinished: u64,
    total_ms: f64,
    max_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    top_frame: Option<String>,
    top_frame_polls: u64,
    worst_stack: &'a [StackFrame],
    worst_task: Option<&'a TaskRef>,
    task_names: &'a [String],
}

impl<'a> From<&'a SlowPollGroup> for JsonSlowPoll<'a> {
    fn from(g: &'a SlowPollGroup) -> Self {
        JsonSlowPoll {
            spawned_at: g.spawned_at.as_deref(),
            count: g.count,
            unfinished: g.unfinished,
            total_ms: g.total_ms,
            max_ms: g.max_ms,
            p50_ms: g.p50_ms,
            p99_ms: g.p99_ms,
            top_frame: g.top_frame.as_ref().map(StackFrame::to_string),
            top_frame_polls: g.top_frame_polls,
            worst_stack: &g.worst.stack,
            worst_task: g.worst.task.as_ref(),
            task_names: &g.task_names,
        }
    }
}

#[derive(Serialize)]
struct JsonOther<'a> {
    kind: &'static str,
    location: Option<&'a str>,
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<LeakReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    example_task: Option<&'a TaskRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    example: Option<&'a str>,
    first_seen: &'a str,
    last_seen: &'a str,
    newest: String,
}

impl<'a> From<&'a ProblemGroup> for JsonOther<'a> {
    fn from(g: &'a ProblemGroup) -> Self {
        JsonOther {
            kind: g.kind,
            location: g.location.as_deref(),
            count: g.count,
            reason: g.reason,
            example_task: g.example_task.as_ref(),
            example: g.example.as_deref(),
            first_seen: &g.first_seen,
            last_seen: &g.last_seen,
            newest: g.newest.message(),
        }
    }
}

#[derive(Serialize)]
struct JsonLines {
    valid: u64,
    malformed: u64,
    outside_window: u64,
}

/// Milliseconds in the unit that keeps them short (`153.2ms`, `1.53s`).
fn ms(value: f64) -> String {
    match Duration::try_from_secs_f64(value / 1000.0) {
        Ok(d) => duration(d),
        Err(_) => format!("{value}ms"),
    }
}

fn location(at: Option<&str>, none: &str) -> String {
    at.unwrap_or(none).to_string()
}

/// `17 "handler"`, or `17` for an unnamed task (the name as a quoted
/// string: its control characters escaped).
fn task_text(task: &TaskRef) -> String {
    match &task.name {
        Some(name) => format!("{} {}", task.id, printable(&format!("{name:?}"))),
        None => task.id.to_string(),
    }
}

fn reason_name(reason: LeakReason) -> &'static str {
    match reason {
        LeakReason::AliveAtShutdown => "alive_at_shutdown",
        LeakReason::LostWaker => "lost_waker",
        LeakReason::IdleTooLong => "idle_too_long",
    }
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}
