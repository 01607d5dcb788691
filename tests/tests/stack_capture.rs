//! The stack capture through a real instrumented app (`syscall_app`,
//! `taskscope::init()`, the default 100 ms threshold): tasks blocked 400 ms in
//! system calls that Linux never restarts after a signal handler get what
//! they get without taskscope (never EINTR), and their slow polls are
//! reported with a stack naming the function that blocked; an app that
//! blocks every signal and reads them through signalfd gets no signal of
//! taskscope's, none pending, and the finding says why a stack is missing;
//! `TASKSCOPE_STACKS=off` keeps the findings, without stacks.

use std::process::{Command, Output};

use serde_json::Value;
use taskscope_tests::{read_report, temp_dir};

const APP: &str = env!("CARGO_BIN_EXE_syscall_app");

/// Each call of the `syscalls` scenario: the task's name and its marker function.
const CALLS: [(&str, &str); 5] = [
    ("poll", "blocked_in_poll_marker"),
    ("nanosleep", "blocked_in_nanosleep_marker"),
    ("tcp_read", "blocked_in_read_marker"),
    ("epoll_wait", "blocked_in_epoll_marker"),
    ("timed_sleep", "timed_sleep_marker"),
];

struct Run {
    output: Output,
    findings: Vec<Value>,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// The slow_poll findings about the task named `name`.
    fn slow_polls_of(&self, name: &str) -> Vec<&Value> {
        self.findings
            .iter()
            .filter(|f| f["kind"] == "slow_poll" && f["task"]["name"] == name)
            .collect()
    }
    /// The value after `key ` on stdout.
    fn said(&self, key: &str) -> String {
        self.stdout()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")).map(str::to_owned))
            .unwrap_or_else(|| panic!("no `{key}` line:\n{}\n{}", self.stdout(), self.stderr()))
    }
}

fn run(scenario: &str, env: &[(&str, &str)]) -> Run {
    let dir = temp_dir(&format!("stacks-{scenario}"));
    let report = dir.join("report.jsonl");
    let mut cmd = Command::new(APP);
    cmd.arg(scenario)
        .env_remove("RUST_LOG")
        .env_remove("TASKSCOPE_SLOW_POLL_MS")
        .env_remove("TASKSCOPE_STACKS")
        .env("TASKSCOPE_REPORT", &report)
        .env("TASKSCOPE_ADDR", "off");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().expect("run syscall_app");
    let run = Run {
        output,
        findings: read_report(&report),
    };
    assert!(
        run.output.status.success(),
        "syscall_app {scenario} failed:\n{}\n{}",
        run.stdout(),
        run.stderr()
    );
    run
}

/// The function names of a finding's stack.
fn functions(finding: &Value) -> Vec<&str> {
    finding["stack"]
        .as_array()
        .map(|frames| {
            frames
                .iter()
                .filter_map(|f| f["function"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn blocked_system_calls_return_what_they_return_and_are_reported_with_their_stack() {
    let run = run("syscalls", &[]);
    for (name, marker) in CALLS {
        assert_eq!(
            run.said(&format!("call {name}")),
            "ok",
            "{name} must return what it returns without taskscope:\n{}",
            run.stdout()
        );
        let slow = run.slow_polls_of(name);
        assert!(
            slow.iter().any(|f| f["in_progress"] == true),
            "{name}: an in_progress slow poll while it was blocked: {:#?}",
            run.findings
        );
        let last = slow
            .iter()
            .find(|f| f["in_progress"] == false)
            .unwrap_or_else(|| panic!("{name}: no final slow poll: {:#?}", run.findings));
        assert!(last["duration_ms"].as_f64().unwrap() >= 400.0, "{last}");
        for finding in &slow {
            assert!(
                functions(finding).iter().any(|f| f.contains(marker)),
                "{name}: the stack names {marker}: {finding:#}"
            );
            // Blocked in a system call, the thread is not reading the clock: such a
            // frame is a stale return address taken for a caller.
            assert!(
                !functions(finding)
                    .iter()
                    .any(|f| f.contains("clock_gettime")),
                "{name}: a stale frame in the stack: {finding:#}"
            );
            assert!(finding.get("stack_unavailable").is_none(), "{finding}");
        }
    }
}

#[test]
fn stacks_off_keeps_every_finding_without_its_stack_and_installs_nothing() {
    let run = run("syscalls", &[("TASKSCOPE_STACKS", "off")]);
    for (name, _) in CALLS {
        assert_eq!(run.said(&format!("call {name}")), "ok");
        let slow = run.slow_polls_of(name);
        assert!(
            slow.iter().any(|f| f["in_progress"] == false)
                && slow.iter().any(|f| f["in_progress"] == true),
            "{name}: both reports: {:#?}",
            run.findings
        );
        for finding in slow {
            assert_eq!(finding["stack_unavailable"], "disabled", "{finding}");
            assert_eq!(finding["stack"], serde_json::json!([]), "{finding}");
            assert!(finding["duration_ms"].as_f64().unwrap() > 100.0);
            assert!(finding["task"]["spawned_at"].as_str().is_some());
            assert!(finding["thread"].as_str().is_some());
        }
    }
    assert_eq!(
        run.said("sigcgt"),
        "0",
        "no real-time signal handler installed"
    );
}

#[test]
fn an_app_reading_signals_through_signalfd_gets_none_and_the_finding_says_why() {
    let run = run("signalfd", &[]);
    assert_eq!(run.said("call poll"), "ok");
    assert_eq!(
        run.said("pending"),
        "0",
        "real-time signals left pending in the app"
    );
    assert_eq!(
        run.said("signalfd"),
        "0",
        "the app's signalfd read a signal of taskscope's"
    );
    // The spinning task could only be captured by signal: it was not, and
    // the finding says why.
    let spinner = run.slow_polls_of("spinner");
    assert!(!spinner.is_empty(), "{:#?}", run.findings);
    for finding in &spinner {
        let why = finding["stack_unavailable"].as_str().unwrap_or("");
        assert!(
            why.contains("blocked") && why.contains("signalfd"),
            "the reason: {finding:#}"
        );
    }
    // The one blocked in a system call needs no signal: its stack is there.
    let poll = run.slow_polls_of("poll");
    assert!(!poll.is_empty(), "{:#?}", run.findings);
    for finding in &poll {
        assert!(
            functions(finding)
                .iter()
                .any(|f| f.contains("blocked_in_poll_marker")),
            "{finding:#}"
        );
    }
}
