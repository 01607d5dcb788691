//! `taskscope dump` as users run it: the real binary against a running app.
//!
//! The app is this test process itself: it starts taskscope (with its server
//! on a free loopback port) and spawns 50 named tasks, then runs
//! `taskscope dump` (`CARGO_BIN_EXE_taskscope`, which Cargo builds for this
//! test). That needs no other binary, so the test cannot run against a stale
//! build of an app from another crate.

use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// The in-process app: its address and the line its tasks were spawned at.
struct App {
    addr: String,
    spawn_line: u32,
    _runtime: tokio::runtime::Runtime,
}

fn marker_line(marker: &str) -> u32 {
    let text = include_str!("dump_cli.rs");
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(lines.len(), 1, "marker {marker} on exactly one line");
    lines[0] as u32
}

fn spawn_waiter(name: &str) {
    tokio::task::Builder::new()
        .name(name)
        .spawn(std::future::pending::<()>()) // DUMP-WAITER
        .expect("spawn");
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let guard = taskscope::Builder::new()
            .server_addr(taskscope::ServerAddr::parse(&addr).unwrap())
            .try_init()
            .expect("taskscope starts");
        std::mem::forget(guard); // for the whole test process
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            for i in 0..50 {
                spawn_waiter(&format!("dump-waiter-{i}"));
            }
            // Let each reach its first await.
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
        App {
            addr,
            spawn_line: marker_line(concat!("DUMP-", "WAITER")),
            _runtime: runtime,
        }
    })
}

fn dump(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskscope"))
        .arg("dump")
        .args(args)
        .output()
        .expect("run taskscope")
}

#[test]
fn dump_json_lists_the_fifty_named_tasks_with_their_spawn_lines() {
    let app = app();
    let out = dump(&[&app.addr, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tasks: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    let location = format!("viewer/tests/dump_cli.rs:{}:", app.spawn_line);
    for i in 0..50 {
        let name = format!("dump-waiter-{i}");
        let task = tasks
            .iter()
            .find(|t| t["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not in {tasks:#?}"));
        assert!(
            task["spawned_at"].as_str().unwrap().starts_with(&location),
            "{task}"
        );
        assert_eq!(task["state"], "idle", "{task}");
        assert_eq!(task["kind"], "task", "{task}");
        assert_eq!(task["polls"], 1, "{task}");
        assert!(task["id"].as_u64().is_some(), "{task}");
        // The app samples poll timing (its default): busy times are estimates.
        assert_eq!(task["busy_estimated"], true, "{task}");
        for field in ["busy_ms", "idle_ms", "age_ms"] {
            assert!(
                task[field].as_f64().is_some_and(|v| v >= 0.0),
                "{field}: {task}"
            );
        }
    }
    // Only the app's tasks: none of taskscope's own server.
    for task in &tasks {
        let at = task["spawned_at"].as_str().unwrap();
        assert!(
            at.starts_with("viewer/tests/dump_cli.rs:"),
            "not the app's: {task}"
        );
    }
}

#[test]
fn dump_prints_an_aligned_table() {
    let app = app();
    let out = dump(&[&format!("http://{}", app.addr)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].trim_start().starts_with("ID  NAME"), "{text}");
    let rows: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("dump-waiter-"))
        .collect();
    assert_eq!(rows.len(), 50, "{text}");
    let column = |l: &str| l.find("viewer/tests/dump_cli.rs").unwrap();
    assert!(
        rows.iter().all(|r| column(r) == column(rows[0])),
        "aligned:\n{text}"
    );
    // The app samples poll timing (its default): one line on stderr says the
    // table's busy and idle times are estimates, and how to time every poll.
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("taskscope dump: BUSY and IDLE are estimates")
            && stderr.contains("1 in 8")
            && stderr.contains("TASKSCOPE_POLL_TIMING=every"),
        "{stderr}"
    );
}

#[test]
fn dump_against_a_closed_port_fails_naming_the_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = dump(&[&addr, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(stderr.contains("nothing listens"), "{stderr}");
}
