//! One end-to-end test per detector, each asserting the exact source line.

use std::time::{Duration, Instant};

use taskscope_tests::{Run, location_prefix, marker_line, read_report, temp_dir};

const APP: &str = env!("CARGO_BIN_EXE_detect_app");
const SRC: &str = "src/bin/detect_app.rs";

fn run(name: &str) -> Run {
    let dir = temp_dir(name);
    let report = dir.join("report.jsonl");
    let output = std::process::Command::new(APP)
        .arg(name)
        .env_remove("RUST_LOG")
        .env("TASKSCOPE_REPORT", &report)
        .env("TASKSCOPE_ADDR", "off")
        .output()
        .expect("run detect_app");
    let run = Run {
        output,
        findings: read_report(&report),
    };
    assert!(run.output.status.success(), "{name}: {}", run.stderr());
    run
}

fn spawned_at(f: &serde_json::Value) -> &str {
    f["task"]["spawned_at"].as_str().unwrap_or("")
}

#[test]
fn tracked_future_dropped_unpolled_is_reported_and_awaited_or_cancelled_ones_are_not() {
    let run = run("never_awaited");
    let found = run.of_kind("never_awaited");
    assert_eq!(found.len(), 1, "{:#?}", run.findings);
    let f = found[0];
    let line = marker_line(SRC, concat!("TRACK-", "DROPPED"));
    assert!(
        f["created_at"]
            .as_str()
            .unwrap()
            .starts_with(&format!("tests/{SRC}:{line}:")),
        "{f}"
    );
    assert_eq!(f["name"], "fetch_user");
    assert!(run.stderr().contains(&format!(
        "future fetch_user (created at tests/{SRC}:{line}:"
    )));
    assert!(run.stderr().contains("was never awaited"));
    assert!(run.stdout().contains("awaited 2, cancelled true"));
}

#[test]
fn task_pending_when_main_returns_is_alive_at_shutdown() {
    let run = run("leak_shutdown");
    let leaks = run.of_kind("leaked_task");
    assert_eq!(leaks.len(), 1, "{:#?}", run.findings);
    let f = leaks[0];
    assert_eq!(f["reason"], "alive_at_shutdown");
    assert!(
        spawned_at(f).starts_with(&location_prefix(SRC, concat!("SPAWN-", "LEAK"))),
        "{f}"
    );
    assert!(f["age_ms"].as_u64().unwrap() >= 40);
    assert!(
        run.stderr().contains("was destroyed but it is pending!"),
        "{}",
        run.stderr()
    );
}

#[test]
fn future_that_drops_its_waker_is_a_lost_waker_while_the_app_runs() {
    let run = run("lost_waker");
    assert!(
        run.stdout().contains("lost_waker seen while running: true"),
        "{}",
        run.stdout()
    );
    let lost: Vec<_> = run
        .of_kind("leaked_task")
        .into_iter()
        .filter(|f| f["reason"] == "lost_waker")
        .collect();
    assert_eq!(lost.len(), 1, "{:#?}", run.findings);
    assert!(spawned_at(lost[0]).starts_with(&location_prefix(SRC, concat!("SPAWN-", "LOST"))));
    // Reported while running, before the shutdown report of the same task.
    let first = run
        .findings
        .iter()
        .position(|f| f["reason"] == "lost_waker")
        .unwrap();
    let at_shutdown = run
        .findings
        .iter()
        .position(|f| f["reason"] == "alive_at_shutdown");
    assert!(at_shutdown.is_none_or(|s| s > first));
}

#[test]
fn panicking_task_with_dropped_handle_is_reported_with_the_panic_line() {
    let run = run("panic");
    let panics = run.of_kind("task_panicked");
    assert_eq!(panics.len(), 1, "{:#?}", run.findings);
    let f = panics[0];
    assert_eq!(f["message"], "config file missing");
    let line = marker_line(SRC, concat!("PANIC-", "HERE"));
    assert!(
        f["panicked_at"]
            .as_str()
            .unwrap()
            .starts_with(&format!("tests/{SRC}:{line}:")),
        "{f}"
    );
    assert!(spawned_at(f).starts_with(&location_prefix(SRC, concat!("SPAWN-", "PANIC"))));
    assert!(
        f.get("joined").is_some(),
        "joined is present (null = unknown)"
    );
}

#[test]
fn healthy_workload_with_cancellations_and_shutdown_gives_zero_findings() {
    let run = run("healthy");
    assert!(
        run.stdout().contains("healthy done: 1225"),
        "{}",
        run.stdout()
    );
    assert!(run.findings.is_empty(), "{:#?}", run.findings);
}

#[test]
fn blocked_poll_is_reported_in_progress_while_still_blocked() {
    let dir = temp_dir("stuck");
    let report = dir.join("report.jsonl");
    let mut child = std::process::Command::new(APP)
        .arg("stuck")
        .env("TASKSCOPE_REPORT", &report)
        .env("TASKSCOPE_ADDR", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut in_progress = None;
    while started.elapsed() < Duration::from_secs(4) {
        if let Some(f) = read_report(&report)
            .into_iter()
            .find(|f| f["kind"] == "slow_poll" && f["in_progress"] == true)
        {
            in_progress = Some(f);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let still_running = child.try_wait().unwrap().is_none();
    let f = in_progress.expect("an in_progress slow_poll in the report while the poll is blocked");
    assert!(
        still_running,
        "the app was still blocked when the finding was read"
    );
    assert!(spawned_at(&f).starts_with(&location_prefix(SRC, concat!("SPAWN-", "STUCK"))));
    assert_stack_names(&f, "stuck_for_five_seconds");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let all = read_report(&report);
    let finals: Vec<_> = all
        .iter()
        .filter(|f| f["kind"] == "slow_poll" && f["in_progress"] == false)
        .collect();
    assert_eq!(finals.len(), 1, "{all:#?}");
    assert!(finals[0]["duration_ms"].as_f64().unwrap() >= 5000.0);
    assert_eq!(finals[0]["poll"], f["poll"], "same poll");
    // Repeated while blocked, about once a second, not every tick.
    let repeats = all
        .iter()
        .filter(|f| f["kind"] == "slow_poll" && f["in_progress"] == true)
        .count();
    assert!(
        (3..=7).contains(&repeats),
        "{repeats} in_progress reports for a 5 s poll"
    );
}

fn frames(f: &serde_json::Value) -> Vec<String> {
    f["stack"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|fr| {
                    format!(
                        "{} {}:{}",
                        fr["function"].as_str().unwrap_or(""),
                        fr["file"].as_str().unwrap_or(""),
                        fr["line"]
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn assert_stack_names(f: &serde_json::Value, function: &str) {
    let frames = frames(f);
    let at = frames
        .iter()
        .position(|fr| fr.contains(function))
        .unwrap_or_else(|| panic!("no frame {function} in {frames:#?} ({f})"));
    assert!(frames[at].contains("detect_app.rs:"), "{}", frames[at]);
    assert!(
        !frames.iter().any(|fr| fr.starts_with("taskscope::")),
        "taskscope's own frames are trimmed: {frames:#?}"
    );
}

#[test]
fn sleeping_task_is_reported_with_the_sleeping_function_on_its_stack() {
    let run = run("sleep");
    let slow: Vec<_> = run
        .of_kind("slow_poll")
        .into_iter()
        .filter(|f| f["in_progress"] == false)
        .collect();
    assert_eq!(slow.len(), 1, "{:#?}", run.findings);
    assert!(spawned_at(slow[0]).starts_with(&location_prefix(SRC, concat!("SPAWN-", "SLEEP"))));
    assert_stack_names(slow[0], "sleepy_handler");
    let sleep_line = marker_line(SRC, concat!("BLOCK-", "SLEEP"));
    assert!(
        frames(slow[0])
            .iter()
            .any(|f| f.contains("sleepy_handler")
                && f.ends_with(&format!("detect_app.rs:{sleep_line}"))),
        "the frame names the line of the sleep: {:#?}",
        frames(slow[0])
    );
    assert!(run.stderr().contains("blocked in "), "{}", run.stderr());
}

#[test]
fn cpu_loop_in_a_named_task_is_reported_with_its_function() {
    let run = run("spin");
    let slow: Vec<_> = run
        .of_kind("slow_poll")
        .into_iter()
        .filter(|f| f["in_progress"] == false)
        .collect();
    assert_eq!(slow.len(), 1, "{:#?}", run.findings);
    assert_eq!(slow[0]["task"]["name"], "spinner");
    assert!(spawned_at(slow[0]).starts_with(&location_prefix(SRC, concat!("SPAWN-", "SPIN"))));
    assert_stack_names(slow[0], "spin_for_a_while");
}
