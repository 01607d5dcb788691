//! "Slow polls by spawn location" is one model (`taskscope_api::slow_polls`):
//! the same findings, written to a report file read by the real
//! `taskscope report --json` and fed to the live view's state as the client
//! would hand them over, give the same groups with the same figures.
//!
//! The findings have what makes pairing hard: in-progress reports followed
//! by the final one, a poll still in progress, a second run appended to the
//! same file reusing task ids and poll numbers, stacks only on in-progress
//! reports, `poll: 0` reports, and a report without a task.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime};

use serde_json::Value;
use taskscope_api::slow_polls::SlowPollGroup;
use taskscope_api::{Finding, FindingKind, StackFrame, TaskRef};
use taskscope_viewer::state::{AppInfo, Dropped, Model, RuntimeMetrics, Update};

const HANDLER_AT: &str = "src/server.rs:42:5";
const WORKER_AT: &str = "src/worker.rs:10:1";
const STUCK_AT: &str = "src/stuck.rs:7:3";

/// A report file in the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(content: &[u8]) -> TempFile {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "taskscope-slow-polls-agree-{}-{}.jsonl",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, content).expect("write the temp report file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn task(id: u64, name: Option<&str>, spawned_at: &str) -> Option<TaskRef> {
    Some(TaskRef {
        id,
        name: name.map(str::to_owned),
        spawned_at: spawned_at.into(),
    })
}

fn frame(function: &str, file: &str, line: u32) -> StackFrame {
    StackFrame {
        function: function.into(),
        file: Some(file.into()),
        line: Some(line),
    }
}

/// The findings, in the order they were written. `minute`/`second` time them
/// (10:MM:SS), so the appended run comes later than the first.
struct Script {
    findings: Vec<Finding>,
    minute: u32,
}

impl Script {
    #[allow(clippy::too_many_arguments)]
    fn slow(
        &mut self,
        task: Option<TaskRef>,
        poll: u64,
        ms: f64,
        in_progress: bool,
        stack: &[StackFrame],
        second: u32,
    ) {
        self.findings.push(Finding {
            v: taskscope_api::SCHEMA_VERSION,
            kind: FindingKind::SlowPoll {
                duration_ms: ms,
                threshold_ms: 100,
                thread: format!("worker-{}", second % 3),
                stack: stack.to_vec(),
                stack_unavailable: None,
                stack_truncated: false,
                in_progress,
                poll,
            },
            time: format!("2026-11-22T10:{:02}:{second:02}.000Z", self.minute),
            task,
        });
    }

    fn no_stack_because(&mut self, why: &str) {
        if let Some(Finding {
            kind: FindingKind::SlowPoll {
                stack_unavailable, ..
            },
            ..
        }) = self.findings.last_mut()
        {
            *stack_unavailable = Some(why.into());
        }
    }
}

fn findings() -> Vec<Finding> {
    let sleep = frame("std::thread::sleep", "library/std/src/thread/mod.rs", 123);
    let handler = frame("app::handler", "src/server.rs", 57);
    let read = frame("std::fs::read", "library/std/src/fs.rs", 300);
    let config = frame("app::load_config", "src/config.rs", 12);
    let query = frame("app::db::query", "src/db.rs", 30);
    let crunch = frame("app::worker::crunch", "src/worker.rs", 40);
    let h = |id| task(id, Some("handler"), HANDLER_AT);
    let mut s = Script {
        findings: Vec::new(),
        minute: 0,
    };

    // ---- Run 1.
    // Task 1, poll 3: warned about while blocked (the stack only then), then ended.
    s.slow(h(1), 3, 100.0, true, &[sleep.clone(), handler.clone()], 1);
    s.slow(h(1), 3, 1100.0, true, &[], 2);
    s.slow(h(1), 3, 1250.0, false, &[], 2);
    // Task 1, poll 4: the longest poll of its group; its final report has no
    // stack, the longest in-progress one has.
    s.slow(h(1), 4, 1100.0, true, &[read.clone(), config.clone()], 4);
    s.slow(h(1), 4, 2100.0, true, &[sleep.clone(), handler.clone()], 5);
    s.slow(h(1), 4, 6000.0, false, &[], 9);
    // Task 2: poll 1 ends without a warning; unnumbered polls pair in order.
    s.slow(h(2), 1, 150.0, false, &[sleep.clone(), handler.clone()], 10);
    s.slow(h(2), 0, 300.0, true, std::slice::from_ref(&query), 11);
    s.slow(h(2), 0, 320.0, false, &[], 11);
    s.slow(h(2), 0, 130.0, false, &[], 12);
    // Task 3, poll 2: still blocked when run 1 ended.
    s.slow(h(3), 2, 900.0, true, &[], 13);
    s.no_stack_because("the worker thread could not be signalled");
    // A task stuck elsewhere, never finished, without a stack.
    s.slow(task(5, None, STUCK_AT), 1, 400.0, true, &[], 14);
    s.no_stack_because("stack capture is off");
    s.slow(task(5, None, STUCK_AT), 1, 1400.0, true, &[], 15);
    // Without a task: each report its own poll.
    s.slow(None, 0, 110.0, true, &[], 16);
    s.slow(None, 0, 115.0, false, &[], 16);
    // Many polls of workers, so that p50 and p99 are not max: some warned
    // about first, stacks on two thirds of them.
    for i in 0..150u32 {
        let id = 100 + u64::from(i % 40);
        let poll = u64::from(i / 40) + 1;
        let ms = 100.0 + f64::from((i * 37) % 150) * 3.7;
        let stack = match i % 3 {
            0 => vec![crunch.clone()],
            1 => vec![sleep.clone(), query.clone()],
            _ => vec![],
        };
        let worker = task(id, Some(["w-even", "w-odd"][(id % 2) as usize]), WORKER_AT);
        if i % 5 == 0 {
            s.slow(worker.clone(), poll, ms * 0.6, true, &stack, 20 + i / 10);
            s.slow(worker, poll, ms, false, &[], 20 + i / 10);
        } else {
            s.slow(worker, poll, ms, false, &stack, 20 + i / 10);
        }
    }

    // ---- Run 2, appended to the same file: the same app again, so the same
    // task ids and poll numbers, later.
    s.minute = 5;
    s.slow(h(1), 3, 400.0, true, &[sleep.clone(), handler.clone()], 1);
    s.slow(h(1), 3, 450.0, false, &[], 1);
    s.slow(h(1), 4, 700.0, false, &[read.clone(), config.clone()], 3);
    s.slow(h(2), 0, 140.0, false, &[], 4);
    s.slow(h(3), 2, 160.0, false, &[], 5);
    s.slow(
        task(100, Some("w-even"), WORKER_AT),
        1,
        333.0,
        false,
        &[crunch],
        6,
    );
    s.findings
}

fn report_json(findings: &[Finding]) -> Value {
    let mut content = Vec::new();
    for finding in findings {
        serde_json::to_writer(&mut content, finding).expect("serialize a finding");
        content.push(b'\n');
    }
    let file = TempFile::new(&content);
    let out = Command::new(env!("CARGO_BIN_EXE_taskscope"))
        .arg("report")
        .arg("--json")
        .arg(&file.0)
        .output()
        .expect("run taskscope report");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// The live view's state fed `findings` as the client hands them over: a
/// snapshot, then deltas of varying sizes, with the view read in between.
fn live_groups(findings: &[Finding]) -> Vec<SlowPollGroup> {
    let now = Instant::now();
    let mut model = Model::new("x", now);
    let (first, mut rest) = findings.split_at(5);
    model.apply(
        Update::Snapshot {
            app: AppInfo {
                name: "app".into(),
                pid: 1,
                version: "0.1.0".into(),
                protocol: 1,
                slow_poll_threshold: std::time::Duration::from_millis(100),
                source: Default::default(),
                poll_timing_one_in: 1,
            },
            tasks: vec![],
            finished: vec![],
            findings: first.to_vec(),
            metrics: RuntimeMetrics::default(),
            dropped: Dropped::default(),
            at: SystemTime::now(),
        },
        now,
    );
    let mut size = 1;
    while !rest.is_empty() {
        let (batch, after) = rest.split_at(size.min(rest.len()));
        model.apply(
            Update::Delta {
                changed: vec![],
                finished: vec![],
                findings: batch.to_vec(),
                metrics: RuntimeMetrics::default(),
                dropped: Dropped::default(),
                at: SystemTime::now(),
            },
            now,
        );
        // Read as a drawn frame would (the figures are refreshed then).
        assert!(!model.slow_groups().is_empty());
        rest = after;
        size = size % 7 + 1;
    }
    model.slow.groups().to_vec()
}

/// One group as both sides can say it.
#[derive(Debug, PartialEq)]
struct Figures {
    count: u64,
    unfinished: u64,
    total_ms: f64,
    max_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    top_frame: Option<String>,
    top_frame_polls: u64,
    worst_stack: Vec<StackFrame>,
    worst_task: Option<TaskRef>,
    task_names: Vec<String>,
}

fn from_report(group: &Value) -> Figures {
    let number = |field: &str| {
        group[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} in {group}"))
    };
    let count = |field: &str| {
        group[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} in {group}"))
    };
    Figures {
        count: count("count"),
        unfinished: count("unfinished"),
        total_ms: number("total_ms"),
        max_ms: number("max_ms"),
        p50_ms: number("p50_ms"),
        p99_ms: number("p99_ms"),
        top_frame: group["top_frame"].as_str().map(str::to_owned),
        top_frame_polls: count("top_frame_polls"),
        worst_stack: serde_json::from_value(group["worst_stack"].clone()).unwrap(),
        worst_task: serde_json::from_value(group["worst_task"].clone()).unwrap(),
        task_names: serde_json::from_value(group["task_names"].clone()).unwrap(),
    }
}

fn from_live(group: &SlowPollGroup) -> Figures {
    Figures {
        count: group.count,
        unfinished: group.unfinished,
        total_ms: group.total_ms,
        max_ms: group.max_ms,
        p50_ms: group.p50_ms,
        p99_ms: group.p99_ms,
        top_frame: group.top_frame.as_ref().map(StackFrame::to_string),
        top_frame_polls: group.top_frame_polls,
        worst_stack: group.worst.stack.clone(),
        worst_task: group.worst.task.clone(),
        task_names: group.task_names.clone(),
    }
}

#[test]
fn the_report_and_the_live_view_give_the_same_groups_and_figures() {
    let findings = findings();
    let report = report_json(&findings);
    assert_eq!(report["lines"]["valid"], findings.len());
    let reported: BTreeMap<Option<String>, Figures> = report["slow_polls"]
        .as_array()
        .expect("slow_polls")
        .iter()
        .map(|g| (g["spawned_at"].as_str().map(str::to_owned), from_report(g)))
        .collect();
    let live: BTreeMap<Option<String>, Figures> = live_groups(&findings)
        .iter()
        .map(|g| (g.spawned_at.clone(), from_live(g)))
        .collect();

    // The same groups...
    assert_eq!(
        reported.keys().collect::<Vec<_>>(),
        live.keys().collect::<Vec<_>>()
    );
    // ...with the same figures.
    for (location, figures) in &reported {
        assert_eq!(Some(figures), live.get(location), "group {location:?}");
    }

    // And they are the figures the findings call for, so the agreement is
    // not on something else.
    let handler = &live[&Some(HANDLER_AT.to_owned())];
    // Run 1: task 1 polls 3 and 4, task 2 poll 1 and two unnumbered polls,
    // task 3 poll 2 (unfinished); run 2: task 1 polls 3 and 4, task 2 one
    // unnumbered poll, task 3 poll 2 (which started after run 1's poll 2 was
    // last seen blocked: a poll of its own).
    assert_eq!((handler.count, handler.unfinished), (10, 1));
    assert_eq!(handler.max_ms, 6000.0);
    assert_eq!(
        handler.total_ms,
        1250.0 + 6000.0 + 150.0 + 320.0 + 130.0 + 900.0 + 450.0 + 700.0 + 140.0 + 160.0
    );
    // The worst poll's stack is the one taken while it was blocked (the
    // longest in-progress report with a stack).
    assert_eq!(
        handler.worst_stack,
        [
            frame("std::thread::sleep", "library/std/src/thread/mod.rs", 123),
            frame("app::handler", "src/server.rs", 57)
        ]
    );
    assert_eq!(
        handler.top_frame.as_deref(),
        Some("app::handler (src/server.rs:57)")
    );
    // Task 1 poll 3 in both runs, poll 4 of run 1, task 2 poll 1.
    assert_eq!(handler.top_frame_polls, 4);
    let workers = &live[&Some(WORKER_AT.to_owned())];
    assert_eq!((workers.count, workers.unfinished), (151, 0));
    assert!(workers.p50_ms < workers.p99_ms && workers.p99_ms < workers.max_ms);
    assert_eq!(workers.task_names, ["w-even", "w-odd"]);
    let stuck = &live[&Some(STUCK_AT.to_owned())];
    assert_eq!(
        (stuck.count, stuck.unfinished, stuck.max_ms),
        (1, 1, 1400.0)
    );
    assert!(stuck.task_names.is_empty());
    let taskless = &live[&None];
    assert_eq!((taskless.count, taskless.unfinished), (2, 1));
}

/// What the live view shows beyond the shared figures: why the worst poll
/// has no stack, and that it is still running.
#[test]
fn the_live_view_says_why_the_worst_poll_has_no_stack() {
    let findings = findings();
    let groups = live_groups(&findings);
    let stuck = groups
        .iter()
        .find(|g| g.spawned_at.as_deref() == Some(STUCK_AT))
        .unwrap();
    assert!(stuck.worst.unfinished);
    assert_eq!(
        stuck.worst.stack_unavailable.as_deref(),
        Some("stack capture is off")
    );
}
