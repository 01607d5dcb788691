//! `taskscope dump [ADDR] [--json]`: every live task of a running app, once,
//! as an aligned table (in the spirit of `python -m asyncio ps`) or a JSON
//! array. Only the app's own tasks: the app's server never lists taskscope's.
//! When it cannot (nothing listens, not gRPC, not taskscope, another protocol
//! version, a token required), one line on stderr says why, and it exits 1.
//!
//! An app that embeds console-subscriber (tokio-console's protocol) is
//! listed too, from that protocol: one line on stderr says so and what it
//! lacks; the table is followed by the tasks whose longest poll reached the
//! slow-poll threshold, read from the app's poll histograms.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use taskscope_api::ServerAddr;
use taskscope_api::format;

use crate::client::{self, ClientError, ListedTask, Listing, TaskKind};
use crate::state::model::AppSource;

/// Runs the command: prints the tasks on stdout and exits 0, or prints one
/// line naming the address and the cause on stderr and exits 1.
pub fn main(addr: &ServerAddr, json: bool) -> ExitCode {
    match listing(addr) {
        Ok(listing) => {
            if listing.app.source == AppSource::ConsoleSubscriber {
                eprintln!("taskscope dump: {}", console_note(addr));
            }
            let text = if json {
                to_json(&listing)
            } else {
                to_table(&listing)
            };
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
    let listing = listing(addr)?;
    Ok(if json {
        to_json(&listing)
    } else {
        to_table(&listing)
    })
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
/// `max_poll_ms`, `wakes`, `wakers`, `slow` (a poll reached the app's
/// slow-poll threshold), `source` (`taskscope`, or `console-subscriber` for
/// an app read through tokio-console's protocol). Control characters in
/// strings are escaped, C1 ones too ([`crate::json`]).
pub fn to_json(listing: &Listing) -> String {
    let source = match listing.app.source {
        AppSource::Taskscope => "taskscope",
        AppSource::ConsoleSubscriber => "console-subscriber",
    };
    let tasks: Vec<JsonTask<'_>> = listing
        .tasks
        .iter()
        .map(|listed| (listed, &listed.task, listed.kind))
        .map(|(listed, t, kind)| JsonTask {
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
            slow: is_slow(listing, listed),
            source,
        })
        .collect();
    let mut text = crate::json::pretty(&tasks);
    text.push('\n');
    text
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
    }
}
