//! `taskscope`: attach to a running app instrumented with the `taskscope` crate,
//! dump its tasks, review saved report files, or run a demo app.
//!
//! ```text
//! taskscope [attach [ADDR]]      live view (the default)
//! taskscope dump [ADDR] [--json] [--stacks] [--tree]
//!                                 list the tasks once (with where each waits,
//!                                 as a tree by parent)
//! taskscope report FILE... [--json] [--since T] [--until T] [--full-stacks]
//! taskscope demo                  run a misbehaving app to look at
//! taskscope replay FILE           the live view on a recording (TASKSCOPE_RECORD)
//! ```
//!
//! `ADDR` is `host:port` (default `127.0.0.1:6670`), `http://host:port` or
//! `unix:/path`. When the app requires a token, the viewer sends its own
//! `TASKSCOPE_TOKEN` (from the environment, never from the command line,
//! where other users could read it in the process list).

mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};
use taskscope_api::ServerAddr;

/// Tokio task debugger: asyncio's debug mode and all_tasks() for Tokio.
#[derive(Debug, Parser)]
#[command(
    name = "taskscope",
    version,
    after_help = "Environment:\n  TASKSCOPE_TOKEN  the app's token, sent with every call \
                  (when the app was started with one)"
)]
struct Cli {
    /// What to do; `attach` when none is given.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach to a running app and show its tasks live (the default).
    Attach(Target),
    /// List the tasks of a running app once.
    Dump {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also show where each task waits (its async stack): the app takes a
        /// Tokio task dump, which pauses its runtime while it traces the tasks.
        /// Needs the app built with taskscope's `taskdump` feature.
        #[arg(long)]
        stacks: bool,
        /// Show the tasks as a tree by parent, like `python -m asyncio pstree`.
        #[arg(long)]
        tree: bool,
    },
    /// Review report files: slow polls by spawn location, and the other findings.
    Report(ReportArgs),
    /// Run a built-in misbehaving app, to see taskscope at work.
    Demo,
    /// Replay a recording (an app's TASKSCOPE_RECORD) in the live view, under
    /// a time cursor: space pauses, ←/→ step 10 s, g/G jump to start/end.
    Replay {
        /// The recording: the path the app was given in TASKSCOPE_RECORD (its
        /// older segments beside it, FILE.000001 …, are read too).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// The app to talk to.
#[derive(Debug, Args)]
struct Target {
    /// The app's address: host:port, http://host:port or unix:/path.
    #[arg(value_name = "ADDR", default_value = taskscope_api::DEFAULT_ADDR, value_parser = parse_addr)]
    addr: ServerAddr,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Report files (JSON lines) written by the app; `-` reads standard input.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Only findings at or after this time (RFC 3339, e.g. 2026-11-22T10:00:00Z).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    since: Option<SystemTime>,
    /// Only findings at or before this time (RFC 3339).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    until: Option<SystemTime>,
    /// Show every frame of the stacks (by default the runtime's frames are folded).
    #[arg(long)]
    full_stacks: bool,
}

fn parse_addr(text: &str) -> Result<ServerAddr, String> {
    match ServerAddr::parse(text)? {
        ServerAddr::Off => Err("`off` is not an address to connect to".into()),
        addr => Ok(addr),
    }
}

fn parse_time(text: &str) -> Result<SystemTime, String> {
    report::parse_time(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => attach(ServerAddr::parse(taskscope_api::DEFAULT_ADDR).expect("default address")),
        Some(Command::Attach(target)) => attach(target.addr),
        Some(Command::Dump {
            target,
            json,
            stacks,
            tree,
        }) => taskscope_viewer::dump::main_with(
            &target.addr,
            taskscope_viewer::dump::Options { json, stacks, tree },
        ),
        Some(Command::Demo) => demo(),
        Some(Command::Replay { file }) => replay(&file),
        Some(Command::Report(args)) => {
            let window = report::Window {
                since: args.since,
                until: args.until,
            };
            if let (Some(since), Some(until)) = (window.since, window.until)
                && since > until
            {
                eprintln!("taskscope report: --since is after --until: no finding can match");
                return ExitCode::from(2);
            }
            report::run(&report::Options {
                files: args.files,
                json: args.json,
                window,
                full_stacks: args.full_stacks,
            })
        }
    }
}

/// `taskscope attach`: the live view, until the user quits.
fn attach(addr: ServerAddr) -> ExitCode {
    match live_view(addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let text = format!("{err:#}");
            eprintln!(
                "taskscope attach: {}",
                taskscope_api::format::printable(&text)
            );
            ExitCode::FAILURE
        }
    }
}

fn live_view(addr: ServerAddr) -> anyhow::Result<()> {
    use anyhow::Context as _;
    // The viewer's own tasks are not the app's (this matters for `demo`, where
    // the app is this process).
    #[cfg(feature = "demo")]
    taskscope::__private::mark_internal_thread();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the viewer's runtime")?;
    runtime.block_on(async move {
        let (updates_tx, updates_rx) = tokio::sync::mpsc::channel(1024);
        let (requests_tx, requests_rx) = tokio::sync::mpsc::channel(16);
        let text = addr.to_string();
        tokio::spawn(taskscope_viewer::client::watch(
            addr,
            updates_tx,
            requests_rx,
        ));
        taskscope_viewer::tui::run(text, updates_rx, requests_tx).await
    })
}

/// `taskscope replay FILE`: the live view on a recording, then what could
/// not be read (it is also counted in the status line meanwhile).
fn replay(file: &std::path::Path) -> ExitCode {
    // Loading reports its progress (bytes read of the total): a bar on
    // stderr when it is a terminal, made once the total is known and taken
    // off before the live view starts.
    use taskscope_viewer::progress::{Bar, REPLAY_MIN_BYTES};
    let mut bar: Option<Bar> = None;
    let mut progress = |p: &taskscope_viewer::replay::Progress| {
        let bar = bar.get_or_insert_with(|| Bar::on_stderr("loading", p.total, REPLAY_MIN_BYTES));
        bar.set(p.read);
        if p.read >= p.total {
            bar.finish();
        }
    };
    match replay_view(file, &mut progress) {
        Ok(problems) => {
            for problem in problems {
                eprintln!("taskscope replay: {problem}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("taskscope replay: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the recording (calling `progress` as it reads) and runs the live
/// view on it until the user quits; returns what could not be read.
fn replay_view(
    file: &std::path::Path,
    progress: &mut dyn FnMut(&taskscope_viewer::replay::Progress),
) -> anyhow::Result<Vec<String>> {
    use anyhow::Context as _;
    let recording = taskscope_viewer::replay::load(file, progress)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the viewer's runtime")?;
    let label = file.display().to_string();
    runtime.block_on(async move {
        let now = std::time::Instant::now();
        let (player, model) = taskscope_viewer::replay::Player::new(recording, label, now);
        let player = taskscope_viewer::tui::run_replay(player, model).await?;
        Ok(player.problems().to_vec())
    })
}

/// `taskscope demo`: the misbehaving sample app in this process, and the live view on it.
#[cfg(feature = "demo")]
fn demo() -> ExitCode {
    match taskscope_viewer::demo::start_app() {
        Ok(addr) => attach(addr),
        Err(err) => {
            eprintln!("taskscope demo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `taskscope demo` in a build without the `demo` feature: say how to get it.
#[cfg(not(feature = "demo"))]
fn demo() -> ExitCode {
    eprintln!(
        "taskscope demo: this taskscope was built without its demo app \
         (cargo feature `demo`, on by default); reinstall it with default features"
    );
    ExitCode::from(2)
}
