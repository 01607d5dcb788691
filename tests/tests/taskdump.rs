//! Where tasks wait (taskscope's `taskdump` feature), end to end: real apps
//! (`taskdump_app`) and the viewer's `dump` as processes.
//!
//! With `--features taskdump` (Linux x86_64/aarch64, `--cfg tokio_unstable`)
//! the findings name the line each task waits at; without it, the same
//! tests check that every place says in one line how to get that.

use std::io::BufReader;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use taskscope_tests::{
    Run, collect_stderr, free_port, marker_line, next_line_where, read_report, temp_dir,
};

const APP: &str = env!("CARGO_BIN_EXE_taskdump_app");
const VIEWER: &str = env!("CARGO_BIN_EXE_viewer_proc");
const SRC: &str = "src/bin/taskdump_app.rs";

/// Whether the apps were built with task dumps (this workspace sets
/// `--cfg tokio_unstable` in `.cargo/config.toml`).
const DUMPS: bool = cfg!(all(
    feature = "taskdump",
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

const NO_TOKIO_PRIMITIVE: &str = taskscope::waiting::NO_TOKIO_PRIMITIVE;

fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = temp_dir(&format!("taskdump-{}", args.join("-")));
    let report = dir.join("report.jsonl");
    let output = Command::new(APP)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TASKSCOPE_TASKDUMP")
        .env("TASKSCOPE_REPORT", &report)
        .env("TASKSCOPE_ADDR", "off")
        .envs(env.iter().copied())
        .output()
        .expect("run taskdump_app");
    let run = Run {
        output,
        findings: read_report(&report),
    };
    assert!(run.output.status.success(), "{args:?}: {}", run.stderr());
    run
}

/// Where the task named `name` was spawned (`tests/src/…:LINE:`).
fn spawned_at(name: &str) -> String {
    let marker = match name {
        "worker" => concat!("SPAWN-", "WORKER"),
        "lost" => concat!("SPAWN-", "LOST"),
        other => panic!("no task {other}"),
    };
    format!("tests/{SRC}:{}:", marker_line(SRC, marker))
}

/// The `leaked_task` finding of the task named `name` for `reason` (found
/// by where it was spawned: the hooks capture has no task names).
fn leak<'a>(run: &'a Run, name: &str, reason: &str) -> &'a Value {
    let at = spawned_at(name);
    run.of_kind("leaked_task")
        .into_iter()
        .find(|f| {
            f["reason"] == reason
                && f["task"]["spawned_at"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(&at))
        })
        .unwrap_or_else(|| {
            panic!(
                "no leaked_task for {name}: {:#?}\n{}",
                run.findings,
                run.stderr()
            )
        })
}

fn recv_line() -> u32 {
    marker_line(SRC, concat!("RECV-", "AWAIT"))
}

/// The message of the warning line on stderr about task `name` (without
/// the fields the log adds after it).
fn warning(run: &Run, name: &str, reason: &str) -> String {
    let at = format!("(spawned at {}", spawned_at(name));
    let words = match reason {
        "alive_at_shutdown" => "was destroyed but it is pending!",
        "lost_waker" => "can never be woken again",
        _ => "has been idle for",
    };
    let line = run
        .warnings()
        .into_iter()
        .find(|w| w.contains(&at) && w.contains(words))
        .unwrap_or_else(|| panic!("no warning about {name}:\n{}", run.stderr()));
    match line.split_once(" kind=") {
        Some((message, _)) => message.to_string(),
        None => line,
    }
}

/// `worker` waits at `rx.recv().await`: the finding's `waiting_at` names the
/// primitive and the line, and the warning ends with that line.
fn assert_waits_at_recv(run: &Run, reason: &str) {
    let f = leak(run, "worker", reason);
    let frames = f["waiting_at"].as_array().expect("waiting_at is an array");
    let line = recv_line();
    assert_eq!(
        frames[0]["function"], "tokio::sync::mpsc::bounded::Receiver::recv",
        "{f:#}"
    );
    assert!(
        frames
            .iter()
            .any(|fr| fr["function"] == "taskdump_app::worker"
                && fr["file"] == format!("tests/{SRC}")
                && fr["line"] == line),
        "{f:#}"
    );
    assert!(f.get("waiting_at_note").is_none(), "{f:#}");
    let w = warning(run, "worker", reason);
    assert!(
        w.ends_with(&format!("; waiting at tests/{SRC}:{line}")),
        "{w}"
    );
}

/// `lost` waits in a hand-written future that forgot its waker: Tokio's dump
/// cannot see into it, and the finding says so (it cannot name the future).
fn assert_lost_has_no_primitive(run: &Run, reason: &str) {
    let f = leak(run, "lost", reason);
    assert_eq!(f["waiting_at"], serde_json::json!([]), "{f:#}");
    assert_eq!(f["waiting_at_note"], NO_TOKIO_PRIMITIVE, "{f:#}");
    let w = warning(run, "lost", reason);
    assert!(
        w.ends_with("; waiting in a non-Tokio future (no Tokio primitive on its stack)"),
        "{w}"
    );
}

/// Without task dumps: no stack, and the note says how to get one.
fn assert_says_how_to_get_it(run: &Run, name: &str, reason: &str) {
    let f = leak(run, name, reason);
    assert_eq!(f["waiting_at"], serde_json::json!([]), "{f:#}");
    let note = f["waiting_at_note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with(
            "taskscope was built without its `taskdump` feature: add `features = [\"taskdump\"]`"
        ),
        "{note}"
    );
}

#[test]
fn tasks_left_at_shutdown_say_where_they_wait() {
    let run = run(&["shutdown", "current"], &[]);
    if DUMPS {
        assert_waits_at_recv(&run, "alive_at_shutdown");
        assert_lost_has_no_primitive(&run, "alive_at_shutdown");
    } else {
        assert_says_how_to_get_it(&run, "worker", "alive_at_shutdown");
    }
}

#[test]
fn tasks_left_at_shutdown_under_the_macro_say_where_they_wait() {
    let run = run(&["macro"], &[]);
    if DUMPS {
        assert_waits_at_recv(&run, "alive_at_shutdown");
        assert_lost_has_no_primitive(&run, "alive_at_shutdown");
    } else {
        assert_says_how_to_get_it(&run, "worker", "alive_at_shutdown");
    }
}

#[test]
fn multi_thread_runtimes_are_dumped_only_when_told_to_and_asked() {
    let note_of = |run: &Run| {
        leak(run, "worker", "alive_at_shutdown")["waiting_at_note"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let default = run(&["shutdown", "multi"], &[]);
    let told = run(
        &["shutdown", "multi"],
        &[("TASKSCOPE_TASKDUMP", "multi_thread")],
    );
    if !DUMPS {
        assert!(
            note_of(&default).contains("`taskdump` feature"),
            "{}",
            note_of(&default)
        );
        return;
    }
    let note = note_of(&default);
    assert!(
        note.starts_with("no task dump of a multi-thread runtime: ")
            && note.contains("TASKSCOPE_TASKDUMP=multi_thread"),
        "{note}"
    );
    // Told to: still not at shutdown (where a stuck worker would keep the
    // app from exiting)...
    let note = note_of(&told);
    assert!(
        note.starts_with("no task dump of a multi-thread runtime unless a person asks for one"),
        "{note}"
    );
    // ... but when asked.
    let asked = run(
        &["task_stacks", "multi"],
        &[("TASKSCOPE_TASKDUMP", "multi_thread")],
    );
    let line = recv_line();
    let out = asked.stdout();
    assert!(
        out.lines()
            .any(|l| l.ends_with(&format!("\"worker\"; waiting at tests/{SRC}:{line}"))),
        "{out}"
    );
}

#[test]
fn a_lost_waker_finding_says_no_tokio_primitive_is_on_its_stack() {
    // The issue asked for a `waiting_at` naming the hand-written future; a
    // Tokio task dump only records stacks that reach a Tokio primitive, and a
    // future that forgot its waker reaches none, so the finding says that.
    let run = run(&["lost_waker", "current"], &[]);
    assert!(
        run.stdout().contains("lost_waker seen: true"),
        "{}",
        run.stderr()
    );
    if DUMPS {
        assert_lost_has_no_primitive(&run, "lost_waker");
    } else {
        assert_says_how_to_get_it(&run, "lost", "lost_waker");
    }
}

#[test]
fn an_idle_too_long_finding_names_the_line_it_waits_at() {
    let run = run(&["idle", "current"], &[("TASKSCOPE_IDLE_LIMIT_S", "1")]);
    assert!(run.stdout().contains("idle seen: true"), "{}", run.stderr());
    if DUMPS {
        assert_waits_at_recv(&run, "idle_too_long");
    } else {
        assert_says_how_to_get_it(&run, "worker", "idle_too_long");
    }
}

#[test]
fn task_stacks_lists_every_task_with_where_it_waits() {
    let run = run(&["task_stacks", "current"], &[]);
    let out = run.stdout();
    if DUMPS {
        let line = recv_line();
        assert!(
            out.lines()
                .any(|l| l.ends_with(&format!("\"worker\"; waiting at tests/{SRC}:{line}"))),
            "{out}"
        );
        assert!(
            out.lines().any(|l| l.ends_with(
                "\"lost\"; waiting in a non-Tokio future (no Tokio primitive on its stack)"
            )),
            "{out}"
        );
    } else {
        assert!(
            out.starts_with("no stacks: taskscope was built without its `taskdump` feature"),
            "{out}"
        );
    }
}

/// A task blocks the app's thread for 5 s; `dump --stacks` asked meanwhile
/// answers at once (the dump is refused: the thread would not stop for it),
/// names the thread and the task, and still lists the tasks; the app runs
/// on afterwards.
fn stuck(flavor: &str, env: &[(&str, &str)], thread: &str) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut app = Command::new(APP)
        .args(["stuck", flavor])
        .env_remove("RUST_LOG")
        .env_remove("TASKSCOPE_TASKDUMP")
        .env("TASKSCOPE_ADDR", &addr)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start taskdump_app");
    let (stderr, _reader) = collect_stderr(app.stderr.take().unwrap());
    let mut out = BufReader::new(app.stdout.take().unwrap());
    let app_stderr = || stderr.lock().unwrap().clone();
    next_line_where(&mut out, "taskdump_app", app_stderr, |l| {
        (l == "ready").then_some(())
    });
    std::thread::sleep(Duration::from_millis(200));

    let started = Instant::now();
    let dump = Command::new(VIEWER)
        .args(["dump", &addr, "--stacks"])
        .env_remove("TASKSCOPE_TOKEN")
        .output()
        .expect("run viewer_proc");
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&dump.stdout).into_owned();
    let err = String::from_utf8_lossy(&dump.stderr).into_owned();
    assert!(dump.status.success(), "{err}");
    // The bound: the refusal itself takes microseconds; 2 s is the dump's
    // deadline, and covers starting the viewer on a loaded machine.
    assert!(took < Duration::from_secs(2), "dump --stacks took {took:?}");
    assert!(text.contains("\"stuck\" running"), "{text}");
    if DUMPS && !err.contains("no task dump of a multi-thread runtime") {
        assert!(
            err.contains(&format!(
                "no async stacks: task dump not started: worker {thread} has been in a poll of task"
            )),
            "{err}"
        );
    } else if !DUMPS {
        assert!(err.contains("`taskdump` feature"), "{err}");
    }
    // The app goes on: its ticker ticks after the stuck poll, and it ends.
    let ticked: u32 = next_line_where(&mut out, "taskdump_app", app_stderr, |l| {
        l.strip_prefix("ticked ").map(|n| n.parse().unwrap())
    });
    assert!(
        ticked > 10,
        "the runtime ran its ticker {ticked} times in 600 ms"
    );
    assert!(app.wait().unwrap().success(), "{}", app_stderr());
}

#[test]
fn a_dump_asked_while_the_thread_is_stuck_answers_at_once_and_names_it() {
    stuck("current", &[], "main");
}

#[test]
fn a_dump_asked_while_a_worker_is_stuck_answers_at_once_and_names_it() {
    stuck(
        "multi",
        &[("TASKSCOPE_TASKDUMP", "multi_thread")],
        "tokio-rt-worker",
    );
}
