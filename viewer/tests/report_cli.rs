//! `taskscope report` as users run it: the real binary on report files.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;
use taskscope_api::{Finding, FindingKind, LeakReason, StackFrame, TaskRef};

const HANDLER_AT: &str = "src/server.rs:42:5";
const DB_AT: &str = "src/db.rs:17:9";
/// The handler group's top frame: the most frequent *blocking* frame, the
/// innermost frame of the app's own code (`blocking_frame`, as the live view
/// and the warnings name it). Two of its three polls blocked in
/// `std::thread::sleep` called from `app::handler`: the report used to name
/// the innermost frame, `std::thread::sleep`, which says nothing about which
/// of the app's code blocked; `app::handler` is the line to fix.
const TOP_FRAME: &str = "app::handler (src/server.rs:57)";

/// A report file in the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(content: &[u8]) -> TempFile {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "taskscope-report-cli-{}-{}.jsonl",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, content).expect("write the temp report file");
        TempFile(path)
    }

    fn name(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn taskscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskscope"))
        .args(args)
        .output()
        .expect("run taskscope")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
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

fn finding(kind: FindingKind, task: Option<TaskRef>, second: u32) -> Finding {
    Finding {
        v: taskscope_api::SCHEMA_VERSION,
        kind,
        time: format!("2026-11-22T10:00:{second:02}.000Z"),
        task,
    }
}

fn slow(
    task: Option<TaskRef>,
    poll: u64,
    ms: f64,
    in_progress: bool,
    stack: Vec<StackFrame>,
    second: u32,
) -> Finding {
    finding(
        FindingKind::SlowPoll {
            duration_ms: ms,
            threshold_ms: 100,
            thread: "tokio-runtime-worker".into(),
            stack,
            stack_unavailable: None,
            stack_truncated: false,
            in_progress,
            poll,
        },
        task,
        second,
    )
}

fn line(finding: &Finding) -> Vec<u8> {
    let mut line = serde_json::to_vec(finding).expect("serialize a finding");
    line.push(b'\n');
    line
}

/// Valid findings of every kind, with malformed lines between them. Returns
/// the file's bytes and the line numbers of the malformed lines.
fn report_file() -> (Vec<u8>, Vec<usize>) {
    let sleep = frame("std::thread::sleep", "library/std/src/thread/mod.rs", 123);
    let handler = frame("app::handler", "src/server.rs", 57);
    let query = frame("app::db::query", "src/db.rs", 30);
    let handler_task = |id| task(id, Some("handler"), HANDLER_AT);

    let mut lines: Vec<Vec<u8>> = vec![
        // Task 1, poll 3: blocked, warned about twice, then its final report.
        line(&slow(handler_task(1), 3, 100.0, true, vec![sleep.clone(), handler.clone()], 0)),
        line(&slow(handler_task(1), 3, 200.0, true, vec![sleep.clone(), handler.clone()], 1)),
        line(&slow(handler_task(1), 3, 250.0, false, vec![sleep.clone(), handler.clone()], 1)),
        b"this is not JSON\n".to_vec(),
        line(&slow(handler_task(2), 1, 150.0, false, vec![sleep.clone(), handler.clone()], 2)),
        line(&slow(handler_task(2), 2, 600.0, false, vec![query.clone(), handler.clone()], 3)),
        // Truncated: cut short (a full disk, a copy that stopped), then a newline.
        [&line(&slow(handler_task(3), 1, 999.0, false, vec![], 3))[..70], b"\n"].concat(),
        line(&slow(task(4, Some("db"), DB_AT), 1, 120.0, false, vec![query.clone()], 4)),
        b"{\"v\":1,\"kind\":\"mystery\",\"time\":\"2026-11-22T10:00:05.000Z\",\"task\":null}\n".to_vec(),
        line(&finding(
            FindingKind::NeverAwaited { name: "fetch_user".into(), created_at: "src/users.rs:10:5".into() },
            None,
            5,
        )),
        // Hand-written, with a field this version does not know.
        b"{\"v\":1,\"kind\":\"never_awaited\",\"name\":\"fetch_user\",\"created_at\":\"src/users.rs:10:5\",\"time\":\"2026-11-22T10:00:06.000Z\",\"task\":null,\"later\":true}\n".to_vec(),
        b"{\"v\":1,\"kind\":\"slow_poll\",\"time\":\"2026-11-22T10:00:06.\xff\xfeZ\",\"task\":null}\n".to_vec(),
        line(&finding(
            FindingKind::LeakedTask { reason: LeakReason::LostWaker, age_ms: 5_000, idle_ms: 4_000, waiting_at: Vec::new(), waiting_at_note: None },
            task(7, Some("poller"), "src/poll.rs:5:5"),
            7,
        )),
        line(&finding(
            FindingKind::LeakedTask { reason: LeakReason::AliveAtShutdown, age_ms: 9_000, idle_ms: 10, waiting_at: Vec::new(), waiting_at_note: None },
            task(8, None, "src/poll.rs:5:5"),
            8,
        )),
        [b"{\"v\":1,\"kind\":\"never_awaited\",\"name\":\"".to_vec(), vec![b'x'; 2 << 20], b"\n".to_vec()].concat(),
        line(&finding(
            FindingKind::TaskPanicked {
                message: "index out of bounds".into(),
                panicked_at: Some("src/work.rs:99:13".into()),
                joined: Some(false),
            },
            task(9, Some("worker"), "src/main.rs:20:5"),
            9,
        )),
        b"\n".to_vec(),
        b"{\"v\":1,\"kind\":\"findings_dropped\",\"count\":3,\"time\":\"2026-11-22T10:00:10.000Z\",\"task\":null}\n".to_vec(),
        line(&finding(FindingKind::FindingsDropped { count: 4 }, None, 11)),
        // Missing a required field.
        b"{\"v\":1,\"kind\":\"leaked_task\",\"reason\":\"lost_waker\",\"time\":\"2026-11-22T10:00:12.000Z\",\"task\":null}\n".to_vec(),
    ];
    // The last line has no newline, as after a crash.
    let last = lines.len() - 1;
    lines[last].pop();
    let malformed = [4, 7, 9, 12, 15, 20].to_vec();
    (lines.concat(), malformed)
}

#[test]
fn text_report_groups_findings_and_names_malformed_lines() {
    let (content, malformed) = report_file();
    let file = TempFile::new(&content);
    let out = taskscope(&["report", &file.name()]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // Slow polls: the handler location first (3 polls, 1000 ms), then db.
    let handler_row = stdout
        .lines()
        .find(|l| l.starts_with(HANDLER_AT))
        .expect("handler group");
    let db_row = stdout
        .lines()
        .find(|l| l.starts_with(DB_AT))
        .expect("db group");
    assert!(stdout.find(handler_row) < stdout.find(db_row), "{stdout}");
    let cells: Vec<&str> = handler_row.split_whitespace().collect();
    assert_eq!(cells[1], "3", "three polls: {handler_row}");
    assert!(handler_row.contains("1.00s"), "total: {handler_row}");
    assert!(handler_row.contains("600.0ms"), "max: {handler_row}");
    assert!(handler_row.contains(TOP_FRAME), "top frame: {handler_row}");
    assert_eq!(db_row.split_whitespace().nth(1), Some("1"));
    // The worst stack (the 600 ms poll) under its group.
    assert!(
        stdout
            .contains("      app::db::query (src/db.rs:30)\n      app::handler (src/server.rs:57)")
    );
    assert!(stdout.contains("task 2 \"handler\""));

    // Other findings.
    let row = |kind: &str, location: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(kind) && l.contains(location))
            .unwrap_or_else(|| panic!("no {kind} row at {location}:\n{stdout}"))
            .to_string()
    };
    let never = row("never_awaited", "src/users.rs:10:5");
    assert_eq!(never.split_whitespace().nth(2), Some("2"), "{never}");
    assert!(never.contains("fetch_user"));
    let lost = row("leaked_task", "lost_waker");
    assert!(
        lost.contains("src/poll.rs:5:5") && lost.contains("7 \"poller\""),
        "{lost}"
    );
    assert!(row("leaked_task", "alive_at_shutdown").contains("src/poll.rs:5:5"));
    let panicked = row("task_panicked", "src/work.rs:99:13");
    assert!(panicked.contains("9 \"worker\""), "{panicked}");
    assert_eq!(
        row("findings_dropped", "-").split_whitespace().nth(2),
        Some("7")
    );

    assert!(stdout.contains("13 valid lines"), "{stdout}");
    assert!(stdout.contains("6 malformed lines skipped"), "{stdout}");

    // Each malformed line named on stderr, and nothing else but the summary.
    for number in &malformed {
        let prefix = format!("{}:{number}: ", file.name());
        assert!(
            stderr.lines().any(|l| l.starts_with(&prefix)),
            "{prefix} missing:\n{stderr}"
        );
    }
    let expected = [
        (4, "not valid JSON"),
        (7, "truncated JSON"),
        (9, "unknown kind \"mystery\""),
        (12, "invalid UTF-8"),
        (15, "truncated JSON"),
        (20, "missing field `age_ms`"),
    ];
    for (number, reason) in expected {
        let prefix = format!("{}:{number}: ", file.name());
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_default();
        assert!(
            line.contains(reason),
            "line {number} should say {reason:?}: {line}"
        );
    }
    assert_eq!(stderr.lines().count(), malformed.len() + 1, "{stderr}");
    assert!(stderr.contains("6 malformed lines skipped"));
    assert!(stderr.len() < 10_000, "the 2 MB line is not echoed");
}

#[test]
fn json_report_has_exact_counts() {
    let (content, _) = report_file();
    let file = TempFile::new(&content);
    let out = taskscope(&["report", "--json", &file.name()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");

    assert_eq!(report["lines"]["valid"], 13);
    assert_eq!(report["lines"]["malformed"], 6);
    assert_eq!(report["files"], serde_json::json!([file.name()]));

    let slow = report["slow_polls"].as_array().unwrap();
    assert_eq!(slow.len(), 2);
    let handler = &slow[0];
    assert_eq!(handler["spawned_at"], HANDLER_AT);
    assert_eq!(handler["count"], 3);
    assert_eq!(handler["total_ms"], 1000.0);
    assert_eq!(handler["max_ms"], 600.0);
    assert_eq!(handler["p50_ms"], 250.0);
    assert_eq!(handler["p99_ms"], 600.0);
    assert_eq!(handler["top_frame"], TOP_FRAME);
    assert_eq!(handler["top_frame_polls"], 2);
    assert_eq!(handler["worst_stack"][0]["function"], "app::db::query");
    assert_eq!(handler["worst_stack"].as_array().unwrap().len(), 2);
    assert_eq!(handler["task_names"], serde_json::json!(["handler"]));
    let db = &slow[1];
    assert_eq!(
        (db["spawned_at"].as_str(), db["count"].as_u64()),
        (Some(DB_AT), Some(1))
    );
    assert_eq!(db["total_ms"], 120.0);
    assert_eq!(db["top_frame"], "app::db::query (src/db.rs:30)");

    let other: Vec<(String, Value, u64)> = report["other"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_owned(),
                o["location"].clone(),
                o["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let at = |s: &str| Value::from(s);
    assert_eq!(
        other,
        [
            ("never_awaited".into(), at("src/users.rs:10:5"), 2),
            ("leaked_task".into(), at("src/poll.rs:5:5"), 1),
            ("leaked_task".into(), at("src/poll.rs:5:5"), 1),
            ("task_panicked".into(), at("src/work.rs:99:13"), 1),
            ("findings_dropped".into(), Value::Null, 7),
        ]
    );
    let leaked = &report["other"][1];
    assert_eq!(leaked["reason"], "lost_waker");
    assert_eq!(leaked["example_task"]["id"], 7);
    assert_eq!(leaked["example_task"]["name"], "poller");
    assert_eq!(report["other"][2]["reason"], "alive_at_shutdown");
    assert_eq!(report["other"][3]["example_task"]["id"], 9);
}

#[test]
fn time_window_keeps_only_findings_inside_it() {
    let (content, _) = report_file();
    let file = TempFile::new(&content);
    // 10:00:02 to 10:00:05 (both included): task 2's polls, the db poll, one never_awaited.
    let out = taskscope(&[
        "report",
        "--json",
        "--since",
        "2026-11-22T10:00:02Z",
        "--until",
        "2026-11-22T11:00:05+01:00",
        &file.name(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["lines"]["valid"], 13);
    assert_eq!(report["lines"]["outside_window"], 9);
    let slow = report["slow_polls"].as_array().unwrap();
    assert_eq!(slow[0]["count"], 2);
    assert_eq!(slow[0]["total_ms"], 750.0);
    assert_eq!(slow[1]["count"], 1);
    assert_eq!(report["other"].as_array().unwrap().len(), 1);
    assert_eq!(report["other"][0]["count"], 1);

    let bad = taskscope(&["report", "--since", "yesterday", &file.name()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("RFC 3339"));
}

#[test]
fn a_missing_file_fails_the_run_but_the_others_are_read() {
    let good = TempFile::new(&line(&slow(
        task(1, Some("h"), HANDLER_AT),
        1,
        150.0,
        false,
        vec![],
        0,
    )));
    let missing = std::env::temp_dir().join(format!(
        "taskscope-no-such-report-{}.jsonl",
        std::process::id()
    ));
    let missing = missing.display().to_string();
    let out = taskscope(&["report", &missing, &good.name()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");
    assert!(stderr.contains("cannot read report file"), "{stderr}");
    assert!(text(&out.stdout).lines().any(|l| l.starts_with(HANDLER_AT)));

    let json = taskscope(&["report", "--json", &missing]);
    assert_eq!(json.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["unreadable"], serde_json::json!([missing]));
}

#[test]
fn a_malformed_address_is_a_usage_error_naming_it() {
    let bad = taskscope(&["attach", "no-port"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("no-port"));
}

/// The lines of `stdout` that start with `prefix`.
fn lines_starting<'a>(stdout: &'a str, prefix: &str) -> Vec<&'a str> {
    stdout.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn other_findings_show_one_row_per_kind_and_location_with_first_last_and_newest() {
    let never = |second| {
        finding(
            FindingKind::NeverAwaited {
                name: "fetch_user".into(),
                created_at: "src/users.rs:10:5".into(),
            },
            task(1, None, "src/main.rs:4:1"),
            second,
        )
    };
    let panic = |id, second| {
        finding(
            FindingKind::TaskPanicked {
                message: format!("provider returned 503 (attempt {id})"),
                panicked_at: Some("src/pay.rs:157:5".into()),
                joined: None,
            },
            task(id, Some("payment_worker"), "src/main.rs:106:18"),
            second,
        )
    };
    let mut content = Vec::new();
    // Ten never-awaited futures from one place, out of order in time (two runs appended).
    for second in [30, 34, 38, 42, 46, 2, 6, 10, 14, 18] {
        content.extend(line(&never(second)));
    }
    for (id, second) in [(100, 5), (101, 11), (102, 59), (103, 17)] {
        content.extend(line(&panic(id, second)));
    }
    content.extend(line(&finding(
        FindingKind::LeakedTask {
            reason: LeakReason::LostWaker,
            age_ms: 600,
            idle_ms: 511,
            waiting_at: Vec::new(),
            waiting_at_note: None,
        },
        task(13, Some("lost_waker"), "src/main.rs:83:5"),
        3,
    )));
    let file = TempFile::new(&content);
    let out = taskscope(&["report", &file.name()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("Other findings: 15 in 3 groups by kind and location"),
        "{stdout}"
    );

    let never_rows = lines_starting(&stdout, "never_awaited");
    assert_eq!(never_rows.len(), 1, "{stdout}");
    let cells: Vec<&str> = never_rows[0].split_whitespace().collect();
    assert_eq!(
        cells[..5],
        [
            "never_awaited",
            "src/users.rs:10:5",
            "10",
            "2026-11-22T10:00:02Z",
            "2026-11-22T10:00:46Z"
        ],
        "{}",
        never_rows[0]
    );
    let after = |row: &str| {
        let at = stdout.find(row).unwrap() + row.len() + 1;
        stdout[at..].lines().next().unwrap_or_default().to_string()
    };
    assert_eq!(
        after(never_rows[0]),
        "    newest: future fetch_user (created at src/users.rs:10:5) was never awaited"
    );

    let panic_rows = lines_starting(&stdout, "task_panicked");
    assert_eq!(panic_rows.len(), 1, "{stdout}");
    let cells: Vec<&str> = panic_rows[0].split_whitespace().collect();
    assert_eq!(
        cells[..5],
        [
            "task_panicked",
            "src/pay.rs:157:5",
            "4",
            "2026-11-22T10:00:05Z",
            "2026-11-22T10:00:59Z"
        ]
    );
    // The newest is the latest in time (task 102), not the last line of the file.
    let newest = after(panic_rows[0]);
    assert!(
        newest.starts_with("    newest: task 102 \"payment_worker\"")
            && newest.ends_with("provider returned 503 (attempt 102)"),
        "{newest}"
    );
    // The example (DETAIL, EXAMPLE TASK) is still the first finding's.
    assert!(
        panic_rows[0].contains("(attempt 100)") && panic_rows[0].contains("100 \"payment_worker\"")
    );
    assert_eq!(lines_starting(&stdout, "leaked_task").len(), 1);

    let json = taskscope(&["report", "--json", &file.name()]);
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    let never = &report["other"][0];
    assert_eq!(never["count"], 10);
    assert_eq!(never["first_seen"], "2026-11-22T10:00:02.000Z");
    assert_eq!(never["last_seen"], "2026-11-22T10:00:46.000Z");
    assert_eq!(
        never["newest"],
        "future fetch_user (created at src/users.rs:10:5) was never awaited"
    );
    let panicked = &report["other"][2];
    assert_eq!(panicked["kind"], "task_panicked");
    assert_eq!(panicked["example"], "provider returned 503 (attempt 100)");
    assert!(
        panicked["newest"]
            .as_str()
            .unwrap()
            .ends_with("(attempt 102)")
    );
}

const REGISTRY: &str = "/home/dev/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
const RUSTC: &str = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library";

/// A blocked poll's stack as captured: the C library and std above the
/// app's two frames, tracing, Tokio and std below; full paths.
fn captured_stack() -> Vec<StackFrame> {
    let tokio = |function: &str, file: &str| {
        frame(
            function,
            &format!("{REGISTRY}/tokio-1.54.1/src/{file}"),
            300,
        )
    };
    vec![
        frame(
            "__GI___clock_nanosleep",
            "./time/../sysdeps/unix/sysv/linux/clock_nanosleep.c",
            48,
        ),
        frame(
            "std::thread::functions::sleep",
            &format!("{RUSTC}/std/src/thread/functions.rs"),
            289,
        ),
        frame(
            "shop::config::load_config_blocking",
            "/srv/build/shop/server/src/config.rs",
            132,
        ),
        frame(
            "shop::config::config_reloader::{{closure}}",
            "/srv/build/shop/server/src/main.rs",
            96,
        ),
        frame(
            "<tracing::instrument::Instrumented<T> as core::future::future::Future>::poll",
            &format!("{REGISTRY}/tracing-0.1.44/src/instrument.rs"),
            321,
        ),
        tokio(
            "tokio::runtime::task::core::Core<T,S>::poll",
            "runtime/task/core.rs",
        ),
        tokio("tokio::runtime::task::raw::poll", "runtime/task/raw.rs"),
        frame(
            "std::panicking::catch_unwind",
            &format!("{RUSTC}/std/src/panicking.rs"),
            544,
        ),
        frame("start_thread", "./nptl/pthread_create.c", 447),
    ]
}

#[test]
fn text_report_folds_the_runtimes_frames_and_full_stacks_shows_them_all() {
    let at = "server/src/main.rs:96:13";
    let file = TempFile::new(&line(&slow(
        task(5, Some("config_reloader"), at),
        1,
        250.0,
        false,
        captured_stack(),
        0,
    )));
    let out = taskscope(&["report", &file.name()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The top frame and the worst stack: the app's frames, relative to its root.
    let row = lines_starting(&stdout, at)[0];
    assert!(
        row.ends_with("shop::config::load_config_blocking (server/src/config.rs:132)"),
        "{row}"
    );
    let expected = "      … 2 runtime frames (libc, std)\n\
                    \x20     shop::config::load_config_blocking (server/src/config.rs:132)\n\
                    \x20     shop::config::config_reloader::{{closure}} (server/src/main.rs:96)\n\
                    \x20     … 5 runtime frames (tracing, tokio, std, libc)\n";
    assert!(stdout.contains(expected), "{stdout}");
    assert!(
        !stdout.contains("registry") && !stdout.contains("/rustc/"),
        "{stdout}"
    );

    let full = taskscope(&["report", "--full-stacks", &file.name()]);
    let stdout = text(&full.stdout);
    assert!(!stdout.contains("runtime frames"), "{stdout}");
    for frame in [
        "      __GI___clock_nanosleep (./time/../sysdeps/unix/sysv/linux/clock_nanosleep.c:48)\n",
        "      std::thread::functions::sleep (std/src/thread/functions.rs:289)\n",
        "      tokio::runtime::task::core::Core<T,S>::poll (tokio-1.54.1/src/runtime/task/core.rs:300)\n",
        "      <tracing::instrument::Instrumented<T> as core::future::future::Future>::poll (tracing-0.1.44/src/instrument.rs:321)\n",
        "      start_thread (./nptl/pthread_create.c:447)\n",
    ] {
        assert!(stdout.contains(frame), "{frame} in:\n{stdout}");
    }

    // The JSON keeps every frame with its full path.
    let json = taskscope(&["report", "--json", &file.name()]);
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    let stack = report["slow_polls"][0]["worst_stack"].as_array().unwrap();
    assert_eq!(stack.len(), captured_stack().len());
    assert_eq!(
        stack[5]["file"],
        format!("{REGISTRY}/tokio-1.54.1/src/runtime/task/core.rs")
    );
    assert_eq!(stack[2]["file"], "/srv/build/shop/server/src/config.rs");
}

/// Whether `bytes` hold a control character other than a line break.
fn has_control(bytes: &[u8]) -> bool {
    String::from_utf8_lossy(bytes)
        .chars()
        .any(|c| c.is_control() && c != '\n')
}

#[test]
fn escape_sequences_anywhere_in_a_report_file_never_reach_the_terminal() {
    // OSC 52 (write the clipboard), BEL, CSI (clear the screen), C1 CSI, CR, DEL.
    const EVIL: &str = "evil\u{1b}]52;c;aGVsbG8=\u{7}\u{1b}[2J\u{9b}31m\r\u{7f}end";
    const SHOWN: &str = "evil\\x1b]52;c;aGVsbG8=\\x07\\x1b[2J\\u{9b}31m\\x0d\\x7fend";
    let at = format!("src/{EVIL}.rs:1:1");
    let victim = task(7, Some(EVIL), &at);
    let blocked = slow(
        victim.clone(),
        1,
        300.0,
        false,
        vec![frame(&format!("app::{EVIL}"), &format!("src/{EVIL}.rs"), 3)],
        0,
    );
    // The worst poll of the group: no stack, and why (from the file).
    let mut unavailable = slow(victim.clone(), 2, 400.0, false, vec![], 1);
    if let FindingKind::SlowPoll {
        stack_unavailable,
        thread,
        ..
    } = &mut unavailable.kind
    {
        *stack_unavailable = Some(EVIL.into());
        *thread = EVIL.into();
    }
    let content = [
        line(&blocked),
        line(&unavailable),
        line(&finding(
            FindingKind::TaskPanicked {
                message: EVIL.into(),
                panicked_at: Some(at.clone()),
                joined: Some(false),
            },
            victim.clone(),
            2,
        )),
        line(&finding(
            FindingKind::NeverAwaited {
                name: EVIL.into(),
                created_at: at.clone(),
            },
            None,
            3,
        )),
        // Corrupt lines whose reasons quote them: an unknown kind, a bad
        // enum value, a line that is not JSON.
        format!("{{\"v\":1,\"kind\":{},\"time\":\"x\",\"task\":null}}\n", serde_json::to_string(EVIL).unwrap()).into_bytes(),
        format!(
            "{{\"v\":1,\"kind\":\"leaked_task\",\"reason\":{},\"idle_ms\":1,\"time\":\"2026-11-22T10:00:04.000Z\",\"task\":null}}\n",
            serde_json::to_string(EVIL).unwrap()
        )
        .into_bytes(),
        format!("{EVIL}\n").into_bytes(),
    ]
    .concat();
    let file = TempFile::new(&content);

    let out = taskscope(&["report", &file.name()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!has_control(&out.stdout), "{stdout:?}");
    assert!(!has_control(&out.stderr), "{stderr:?}");
    // Each of them, made visible: the task name, the spawn location, the
    // frame, the thread, the panic message, the never-awaited name.
    for (what, shown) in [
        (
            "task name",
            format!(
                "7 \"{}\"",
                "evil\\u{1b}]52;c;aGVsbG8=\\u{7}\\u{1b}[2J\\u{9b}31m\\r\\u{7f}end"
            ),
        ),
        ("spawn location", format!("src/{SHOWN}.rs:1:1")),
        ("frame", format!("app::{SHOWN} (src/{SHOWN}.rs:3)")),
        ("thread", format!("thread {SHOWN}")),
        ("stack unavailable", format!("(no stack: {SHOWN})")),
        ("never-awaited name", SHOWN.to_string()),
    ] {
        assert!(stdout.contains(&shown), "{what}: {shown}\n{stdout}");
    }
    // The malformed lines are named, their quotes made visible.
    assert_eq!(
        stderr.lines().filter(|l| l.contains(".jsonl:")).count(),
        3,
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("unknown variant `{SHOWN}`")),
        "serde quotes the value as it is: {stderr}"
    );

    // JSON: escaped, and the same strings when read back.
    let out = taskscope(&["report", &file.name(), "--json"]);
    assert!(!has_control(&out.stdout), "{:?}", text(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["slow_polls"][0]["worst_task"]["name"], EVIL,
        "{report}"
    );
    assert_eq!(report["slow_polls"][0]["spawned_at"], at.as_str());
}
