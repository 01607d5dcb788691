//! `taskscope report FILE...`: offline review of report files.
//!
//! Reads the JSON-lines report files the instrumented app wrote
//! ([`taskscope_api::Finding`], one a line), and shows which spawn locations block
//! the runtime (slow polls: how often, how long, where they blocked) and the
//! other findings by kind and location (how many, first and last seen, the
//! newest message), with the models of the live view
//! ([`taskscope_api::slow_polls`], [`taskscope_api::problems`]).
//!
//! In text, the worst stacks show the app's frames, each run of the
//! runtime's frames folded into one line and paths shortened
//! ([`taskscope_api::stack`]); `--full-stacks` shows every frame. The JSON
//! has every frame with its full path.
//!
//! Malformed lines are named on stderr as `FILE:LINE: reason` and skipped; a
//! file that can't be read is named on stderr and the others are still read.
//!
//! Exit status: 0, or 1 when a file could not be read.
//!
//! `--json` prints one object:
//! `{"slow_polls": [{"spawned_at", "count", "unfinished", "total_ms", "max_ms",
//! "p50_ms", "p99_ms", "top_frame", "top_frame_polls", "worst_stack",
//! "worst_task", "task_names"}], "other": [{"kind", "location", "count",
//! "reason"?, "example_task"?, "example"?, "first_seen", "last_seen",
//! "newest"}], "lines": {"valid", "malformed",
//! "outside_window"}, "files": [..], "unreadable": [..]}`.
//! `spawned_at` and `location` are null when unknown (and `location` for
//! `findings_dropped`); `example_task` is a [`taskscope_api::TaskRef`];
//! `first_seen` and `last_seen` are the group's earliest and latest `time` as
//! written, `newest` the message of its newest finding.

mod group;
mod parse;
mod render;
mod window;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use taskscope_api::format::printable;
use taskscope_viewer::progress::{Bar, REPORT_MIN_BYTES};

pub use window::{Window, parse_time};

/// What `taskscope report` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The report files, in order; `-` is standard input.
    pub files: Vec<PathBuf>,
    /// Print one JSON object instead of text.
    pub json: bool,
    /// Keep only the findings in this time window.
    pub window: Window,
    /// Show every frame of the worst stacks in text (by default the
    /// runtime's frames are folded).
    pub full_stacks: bool,
}

/// Findings to the aggregator, problems to stderr (buffered: a file of garbage
/// is reported quickly).
struct Collect<W: Write> {
    aggregator: group::Aggregator,
    stderr: W,
    /// The progress bar (on big files, when stderr is a terminal), taken off
    /// the screen while a line goes to stderr.
    bar: Bar,
}

impl<W: Write> Collect<W> {
    /// One line on stderr, written at once when a bar is on the screen.
    fn line(&mut self, text: std::fmt::Arguments<'_>) {
        let Collect { stderr, bar, .. } = self;
        bar.suspend(|| {
            let _ = stderr.write_fmt(text);
            let _ = stderr.write_all(b"\n");
            if bar.is_shown() {
                let _ = stderr.flush();
            }
        });
    }
}

impl<W: Write> parse::Sink for Collect<W> {
    fn finding(&mut self, entry: parse::Entry) {
        self.aggregator.add(entry);
    }

    fn problem(&mut self, problem: &parse::Problem) {
        self.line(format_args!("{problem}"));
    }

    fn unreadable(&mut self, error: &anyhow::Error) {
        let text = format!("{error:#}");
        self.line(format_args!("taskscope report: {}", printable(&text)));
    }
}

/// Runs the report: output on stdout, problems on stderr.
pub fn run(options: &Options) -> ExitCode {
    // The named files' sizes (standard input's is unknown), for the bar.
    let total: u64 = options
        .files
        .iter()
        .filter(|path| path.as_os_str() != "-")
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum();
    let bar = Bar::on_stderr("reading", total, REPORT_MIN_BYTES);
    let mut progress = |done: u64| bar.set(done);
    let mut sink = Collect {
        aggregator: group::Aggregator::new(),
        stderr: io::BufWriter::new(io::stderr().lock()),
        bar: bar.clone(),
    };
    let reading =
        parse::read_files_with_progress(&options.files, &options.window, &mut sink, &mut progress);
    bar.finish();
    let Collect {
        aggregator,
        mut stderr,
        ..
    } = sink;
    if reading.malformed > 0 {
        let _ = writeln!(
            stderr,
            "taskscope report: {}",
            render::malformed_text(reading.malformed)
        );
    }
    let _ = stderr.flush();
    drop(stderr);

    let summary = aggregator.finish();
    let mut output = if options.json {
        render::json(&summary, &reading)
    } else {
        render::text(&summary, &reading, options.full_stacks)
    };
    if !output.ends_with('\n') {
        output.push('\n');
    }
    let mut stdout = io::stdout().lock();
    if let Err(error) = stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
        && error.kind() != io::ErrorKind::BrokenPipe
    {
        eprintln!("taskscope report: cannot write the report: {error}");
        return ExitCode::FAILURE;
    }
    if reading.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
