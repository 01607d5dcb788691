//! `taskscope dump [ADDR] [--json] [--stacks] [--tree]`: every live task of a
//! running app, once, as an aligned table (in the spirit of `python -m
//! asyncio ps`) or a JSON array; with `--stacks`, each with where it waits
//! (its async stack, from a Tokio task dump the app takes: [`stacks`]); with
//! `--tree`, as a tree by parent (like `python -m asyncio pstree`: [`tree`]).
//! Only the app's own tasks: the app's server never lists taskscope's.
//! When it cannot (nothing listens, not gRPC, not taskscope, another protocol
//! version, a token required), one line on stderr says why, and it exits 1.
//! When the app cannot say where its tasks wait (built without taskscope's
//! `taskdump` feature, a dump refused), the tasks are printed all the same,
//! and one line on stderr says why. When the app samples poll timing (its
//! default), one line on stderr says the table's BUSY and IDLE are estimates.
//!
//! An app that embeds console-subscriber (tokio-console's protocol) is
//! listed too, from that protocol: one line on stderr says so and what it
//! lacks; the table is followed by the tasks whose longest poll reached the
//! slow-poll threshold, read from the app's poll histograms.

pub mod stacks;
pub mod tree;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use taskscope_api::ServerAddr;
use taskscope_api::format;

use crate::client::{self, ClientError, ListedTask, Listing, TaskKind};
use crate::state::model::{AppInfo, AppSource};

/// What `taskscope dump` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// JSON instead of text.
    pub json: bool,
    /// Where each task waits (the app takes a Tokio task dump).
    pub stacks: bool,
    /// The tasks as a tree by parent.
    pub tree: bool,
}

/// Runs the command: prints the tasks on stdout and exits 0, or prints one
/// line naming the address and the cause on stderr and exits 1.
pub fn main(addr: &ServerAddr, json: bool) -> ExitCode {
    main_with(
        addr,
        Options {
            json,
            ..Options::default()
        },
    )
}

/// Like [`main`], with every option of the command.
pub fn main_with(addr: &ServerAddr, options: Options) -> ExitCode {
    match run_with(addr, options) {
        Ok((text, warnings)) => {
            for warning in warnings {
                eprintln!("taskscope dump: {}", format::printable(&one_line(&warning)));
            }
            let mut out = std::io::stdout().lock();
            if out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            // What a server said is in it: printed with its control characters visible.
            eprintln!(
                "taskscope dump: {}",
                format::printable(&one_line(&err.to_string()))
            );
            ExitCode::from(1)
        }
    }
}

/// `text` on one line (a transport error may carry line breaks).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What `dump` says on stderr of a console-subscriber app at `addr`.
pub fn console_note(addr: &ServerAddr) -> String {
    format!(
        "{addr} is a console-subscriber app (tokio-console's protocol): its tasks are listed \
         from that protocol; no stacks, no findings; slow polls from its poll histograms"
    )
}

/// The text `taskscope dump` prints for the app at `addr` (sending the
/// viewer's `TASKSCOPE_TOKEN` when it is set).
pub fn run(addr: &ServerAddr, json: bool) -> Result<String, ClientError> {
    run_with(
        addr,
        Options {
            json,
            ..Options::default()
        },
    )
    .map(|(text, _)| text)
}

/// Like [`run`], with every option; also returns the lines for stderr: that
/// the app is a console-subscriber app, that the stacks asked for are not
/// available (the tasks are printed anyway).
pub fn run_with(addr: &ServerAddr, options: Options) -> Result<(String, Vec<String>), ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Lost {
            addr: addr.to_string(),
            detail: format!("cannot start a runtime to connect ({e})"),
        })?;
    let listing = if options.stacks {
        runtime.block_on(client::list_tasks_and_stacks(addr))?
    } else {
        runtime.block_on(client::list_tasks(addr))?
    };
    let (text, warning) = render(&listing, options);
    let mut warnings = Vec::new();
    if listing.app.source == AppSource::ConsoleSubscriber {
        warnings.push(console_note(addr));
    }
    warnings.extend(estimates_note(&listing.app, options));
    warnings.extend(warning);
    Ok((text, warnings))
}

/// What `dump` says on stderr when the table it prints has busy and idle
/// times estimated from sampled polls (`dump --json` says it in each task's
/// `busy_estimated`; the tree and the stacks show no times).
pub fn estimates_note(app: &AppInfo, options: Options) -> Option<String> {
    let table = !options.json && !options.tree && !options.stacks;
    (table && app.timing_sampled()).then(|| {
        format!(
            "BUSY and IDLE are estimates: the app times every poll of 10 ms or more and 1 in {} \
             shorter ones (TASKSCOPE_POLL_TIMING=every in the app times them all)",
            app.poll_timing_one_in
        )
    })
}

/// What `taskscope dump` prints for `listing`, and the line for stderr
/// when the stacks asked for are not available.
pub fn render(listing: &Listing, options: Options) -> (String, Option<String>) {
    let warning = listing
        .stacks
        .as_ref()
        .and_then(|s| s.unavailable.as_ref())
        .map(|why| format!("no async stacks: {why}"));
    let text = match (options.tree, options.json, options.stacks) {
        (true, true, _) => tree::to_json(listing),
        (true, false, _) => tree::to_text(listing),
        (false, true, _) => to_json(listing),
        (false, false, true) => stacks::to_text(listing),
        (false, false, false) => to_table(listing),
    };
    (text, warning)
}

/// The live tasks of the app at `addr`, once.
pub fn listing(addr: &ServerAddr) -> Result<Listing, ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Lost {
            addr: addr.to_string(),
            detail: format!("cannot start a runtime to connect ({e})"),
        })?;
    runtime.block_on(client::list_tasks(addr))
}

/// Whether a listed task had a poll of at least the app's slow-poll
/// threshold (a thread of `spawn_blocking` never does).
pub fn is_slow(listing: &Listing, task: &ListedTask) -> bool {
    let threshold = listing.app.slow_poll_threshold;
    task.kind != TaskKind::Blocking && !threshold.is_zero() && task.task.max_poll >= threshold
}

/// The listing as a table, one row a task, with a header; for a
/// console-subscriber app, followed by its tasks that had a slow poll. Task
/// names and spawn locations have their control characters made visible
/// ([`format::table`]).
pub fn to_table(listing: &Listing) -> String {
    let mut text = tasks_table(listing);
    if listing.app.source == AppSource::ConsoleSubscriber {
        text.push('\n');
        text.push_str(&slow_table(listing));
    }
    text
}

/// The tasks whose longest poll reached the threshold, with it.
fn slow_table(listing: &Listing) -> String {
    let threshold = format::duration(listing.app.slow_poll_threshold);
    let rows: Vec<Vec<String>> = listing
        .tasks
        .iter()
        .filter(|t| is_slow(listing, t))
        .map(|t| {
            vec![
                t.task.id.to_string(),
                name(t).to_string(),
                t.task.spawned_at.clone(),
                format::duration(t.task.max_poll),
            ]
        })
        .collect();
    if rows.is_empty() {
        return format!("No task had a poll of {threshold} or more (slow polls).\n");
    }
    format!(
        "Slow polls: tasks with a poll of {threshold} or more (from the app's poll histograms)\n{}",
        format::table(
            &["ID", "NAME", "SPAWNED AT", "LONGEST POLL"],
            &rows,
            &[0, 3]
        )
    )
}

fn name(t: &ListedTask) -> &str {
    match (&t.task.name, t.kind) {
        (Some(name), _) => name.as_str(),
        (None, TaskKind::BlockOn) => "(block_on)",
        (None, TaskKind::Blocking) => "(blocking)",
        (None, TaskKind::Task) => "-",
    }
}

fn tasks_table(listing: &Listing) -> String {
    format::task_table(listing.tasks.iter().map(|listed| {
        let t = &listed.task;
        let name = name(listed);
        format::TaskRow {
            id: t.id,
            name,
            state: t.state.as_str(),
            spawned_at: &t.spawned_at,
            parent: t.parent,
            age: t.age,
            polls: t.polls,
            busy: t.busy,
            idle: t.idle,
            since_last_poll: t.since_last_poll,
            wakes: t.wakes,
        }
    }))
}

/// One task of `dump --json`, fields in this order.
#[derive(serde::Serialize)]
struct JsonTask<'a> {
    id: u64,
    name: Option<&'a str>,
    kind: &'static str,
    state: &'static str,
    spawned_at: &'a str,
    parent: Option<u64>,
    polls: u64,
    busy_ms: f64,
    idle_ms: f64,
    age_ms: f64,
    since_last_poll_ms: Option<f64>,
    max_poll_ms: f64,
    wakes: u64,
    wakers: i64,
    /// `busy_ms` and `idle_ms` are estimates from sampled polls.
    busy_estimated: bool,
    /// With `--stacks`: where it waits (frames, innermost first).
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_at: Option<Vec<taskscope_api::StackFrame>>,
    /// With `--stacks`: why `waiting_at` is empty or what it lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_at_note: Option<String>,
    /// With `--stacks`: the other places it waits at once (a `select!`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    waiting_also: Vec<Vec<taskscope_api::StackFrame>>,
    slow: bool,
    source: &'static str,
}

fn ms(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

/// The listing as a JSON array, one object a task: `id`, `name`, `kind`
/// (`task`, `block_on`, or for a console-subscriber app `blocking`),
/// `state` (`running`, `scheduled`, `idle`), `spawned_at`, `parent`,
/// `polls`, `busy_ms`, `idle_ms`, `age_ms`, `since_last_poll_ms`,
/// `max_poll_ms`, `wakes`, `wakers`, `busy_estimated` (`busy_ms` and
/// `idle_ms` are estimated from sampled polls: the app times every poll of
/// 10 ms or more and one in N shorter ones), `slow` (a poll reached the app's
/// slow-poll threshold), `source` (`taskscope`, or `console-subscriber` for
/// an app read through tokio-console's protocol); with stacks also
/// `waiting_at` (frames `{"function", "file", "line"}`, innermost first),
/// `waiting_at_note` (why it is empty or what it lacks, when something is)
/// and `waiting_also` (the other places it waits at once, when there are).
/// Control characters in strings are escaped, C1 ones too ([`crate::json`]).
pub fn to_json(listing: &Listing) -> String {
    let source = match listing.app.source {
        AppSource::Taskscope => "taskscope",
        AppSource::ConsoleSubscriber => "console-subscriber",
    };
    let mut text = crate::json::pretty(&JsonTasks { listing, source });
    text.push('\n');
    text
}

/// The tasks of `dump --json`, each made as it is written (a million tasks
/// are not held twice, once as `JsonTask`s).
struct JsonTasks<'a> {
    listing: &'a Listing,
    source: &'static str,
}

impl serde::Serialize for JsonTasks<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.listing
                .tasks
                .iter()
                .map(|t| json_task(self.listing, t, self.source)),
        )
    }
}

/// One task as `dump --json` prints it.
fn json_task<'a>(
    listing: &'a Listing,
    listed: &'a ListedTask,
    source: &'static str,
) -> JsonTask<'a> {
    let ListedTask { task: t, kind } = listed;
    let stack = listing.stacks.as_ref().map(|s| stacks::of(s, listed));
    let (waiting_at, waiting_at_note, waiting_also) = match stack {
        Some(s) => (Some(s.waiting_at), s.note, s.also),
        None => (None, None, Vec::new()),
    };
    JsonTask {
        id: t.id,
        name: t.name.as_deref(),
        kind: kind.as_str(),
        state: t.state.as_str(),
        spawned_at: &t.spawned_at,
        parent: t.parent,
        polls: t.polls,
        busy_ms: ms(t.busy),
        idle_ms: ms(t.idle),
        age_ms: ms(t.age),
        since_last_poll_ms: t.since_last_poll.map(ms),
        max_poll_ms: ms(t.max_poll),
        wakes: t.wakes,
        wakers: t.wakers,
        busy_estimated: listing.app.timing_sampled(),
        slow: is_slow(listing, listed),
        source,
        waiting_at,
        waiting_at_note,
        waiting_also,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::model::{AppInfo, Task, TaskState};

    fn listing() -> Listing {
        let task = |id: u64, name: Option<&str>, kind| ListedTask {
            task: Task {
                id,
                name: name.map(str::to_owned),
                state: TaskState::Idle,
                ended: None,
                spawned_at: format!("src/main.rs:{id}:5"),
                parent: (id > 1).then_some(1),
                age: Duration::from_millis(1_500),
                polls: 3,
                busy: Duration::from_micros(250),
                idle: Duration::from_micros(1_499_750),
                since_last_poll: Some(Duration::from_millis(2)),
                max_poll: Duration::from_micros(200),
                wakes: 2,
                wakers: 1,
            },
            kind,
        };
        Listing {
            app: AppInfo::default(),
            tasks: vec![
                task(1, None, TaskKind::BlockOn),
                task(12, Some("waiter-7"), TaskKind::Task),
            ],
            at: std::time::SystemTime::UNIX_EPOCH,
            stacks: None,
        }
    }

    #[test]
    fn table_is_aligned_with_a_header() {
        let text = to_table(&listing());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID  NAME"), "{text}");
        assert!(lines[1].contains("(block_on)") && lines[1].contains("src/main.rs:1:5"));
        assert!(
            lines[2].contains("waiter-7") && lines[2].contains("1.50s"),
            "{text}"
        );
        let col = |l: &str| l.find("src/main.rs").unwrap();
        assert_eq!(col(lines[1]), col(lines[2]), "aligned:\n{text}");
    }

    #[test]
    fn an_error_is_one_line() {
        assert_eq!(one_line("lost: broken\n  pipe\r\n"), "lost: broken pipe");
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v: serde_json::Value = serde_json::from_str(&to_json(&listing())).unwrap();
        let t = &v[1];
        assert_eq!(t["id"], 12);
        assert_eq!(t["name"], "waiter-7");
        assert_eq!(t["kind"], "task");
        assert_eq!(t["state"], "idle");
        assert_eq!(t["spawned_at"], "src/main.rs:12:5");
        assert_eq!(t["polls"], 3);
        assert_eq!(t["busy_ms"], 0.25);
        assert_eq!(t["age_ms"], 1500.0);
        assert_eq!(v[0]["kind"], "block_on");
        assert!(v[0]["name"].is_null());
        assert_eq!(t["busy_estimated"], false);
    }

    #[test]
    fn sampled_timing_is_said_for_the_table_and_in_the_json() {
        let mut sampled = listing();
        sampled.app.poll_timing_one_in = 8;
        let v: serde_json::Value = serde_json::from_str(&to_json(&sampled)).unwrap();
        assert_eq!(v[1]["busy_estimated"], true);
        let note = estimates_note(&sampled.app, Options::default()).expect("a note");
        assert!(note.contains("1 in 8"), "{note}");
        assert!(note.contains("TASKSCOPE_POLL_TIMING=every"), "{note}");
        // Only the table shows busy times; every poll timed: nothing to say.
        for options in [
            Options {
                json: true,
                ..Options::default()
            },
            Options {
                tree: true,
                ..Options::default()
            },
            Options {
                stacks: true,
                ..Options::default()
            },
        ] {
            assert_eq!(estimates_note(&sampled.app, options), None);
        }
        assert_eq!(estimates_note(&listing().app, Options::default()), None);
    }
}
