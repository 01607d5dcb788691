//! `taskscope dump --stacks` and `--tree` as users run them: the real binary
//! against a running app.
//!
//! The app is this test process itself, as in `dump_cli.rs`: taskscope with
//! its server on a free loopback port, and a current-thread runtime on a
//! thread of its own (the runtime taskscope dumps by default) running an
//! "acceptor" task that spawned a "conn" task that waits in `recv`, and a
//! task whose future forgot its waker. With the `taskdump` feature the stacks
//! name the lines; without it, the tasks are listed and one line says how to
//! get them.

use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

const DUMPS: bool = cfg!(all(
    feature = "taskdump",
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

const FILE: &str = "viewer/tests/dump_stacks.rs";

fn marker_line(marker: &str) -> u32 {
    let text = include_str!("dump_stacks.rs");
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(lines.len(), 1, "marker {marker} on exactly one line");
    lines[0] as u32
}

/// Returns `Pending` and forgets its waker.
struct ForgetsWaker;

impl std::future::Future for ForgetsWaker {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::task::Poll::Pending
    }
}

async fn serve_connection(mut requests: tokio::sync::mpsc::Receiver<u32>) {
    loop {
        let request = requests.recv().await; // CONN-RECV
        if request.is_none() {
            return;
        }
    }
}

async fn accept() {
    let (tx, rx) = tokio::sync::mpsc::channel::<u32>(1);
    std::mem::forget(tx);
    tokio::task::Builder::new()
        .name("conn")
        .spawn(serve_connection(rx))
        .unwrap();
    std::future::pending::<()>().await;
}

/// The in-process app's address.
fn app() -> &'static str {
    static APP: OnceLock<String> = OnceLock::new();
    APP.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let server = taskscope::ServerAddr::parse(&addr).unwrap();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                // Inside the runtime: taskscope keeps it as the app's.
                let guard = taskscope::Builder::new()
                    .server_addr(server)
                    .try_init()
                    .expect("taskscope starts");
                std::mem::forget(guard);
                tokio::task::Builder::new()
                    .name("acceptor")
                    .spawn(accept())
                    .unwrap();
                tokio::task::Builder::new()
                    .name("forgetful")
                    .spawn(ForgetsWaker)
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                ready_tx.send(()).unwrap();
                std::future::pending::<()>().await;
            });
        });
        ready.recv().unwrap();
        addr
    })
}

fn dump(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_taskscope"))
        .arg("dump")
        .arg(app())
        .args(args)
        .env_remove("TASKSCOPE_TOKEN")
        .output()
        .expect("run taskscope");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn dump_stacks_prints_each_task_with_where_it_waits() {
    let out = dump(&["--stacks"]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let line = marker_line(concat!("CONN-", "RECV"));
    assert!(stdout.contains("\ntask "), "{stdout}");
    assert!(
        stdout.contains("\"conn\" idle, spawned at viewer/tests/dump_stacks.rs:"),
        "{stdout}"
    );
    if DUMPS {
        assert!(
            stdout.starts_with("task dump: the app's runtime paused "),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!(
                "  waiting at {FILE}:{line}:\n    tokio::sync::mpsc::bounded::Receiver::recv ("
            )),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!(
                "    dump_stacks::serve_connection ({FILE}:{line})"
            )),
            "{stdout}"
        );
        assert!(
            stdout.contains("  waiting in a non-Tokio future (no Tokio primitive on its stack):"),
            "{stdout}"
        );
        assert!(stderr.is_empty(), "{stderr}");
    } else {
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(
                "taskscope dump: no async stacks: taskscope was built without its `taskdump` feature"
            ),
            "{stderr}"
        );
    }
}

#[test]
fn dump_stacks_json_adds_waiting_at_to_each_task() {
    let out = dump(&["--stacks", "--json"]);
    let tasks: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    let conn = tasks
        .iter()
        .find(|t| t["name"] == "conn")
        .unwrap_or_else(|| panic!("no conn in {tasks:#?}"));
    let frames = conn["waiting_at"].as_array().expect("waiting_at");
    if DUMPS {
        let line = marker_line(concat!("CONN-", "RECV"));
        assert_eq!(
            frames[0]["function"],
            "tokio::sync::mpsc::bounded::Receiver::recv"
        );
        assert!(
            frames
                .iter()
                .any(|f| f["file"] == FILE && f["line"] == line),
            "{conn:#}"
        );
        assert!(conn.get("waiting_at_note").is_none(), "{conn:#}");
    } else {
        assert!(frames.is_empty(), "{conn:#}");
        assert!(
            conn["waiting_at_note"]
                .as_str()
                .unwrap()
                .contains("`taskdump` feature"),
            "{conn:#}"
        );
    }
    // Without --stacks, no such field.
    let plain: Vec<Value> = serde_json::from_slice(&dump(&["--json"]).stdout).unwrap();
    assert!(plain.iter().all(|t| t.get("waiting_at").is_none()));
}

#[test]
fn dump_tree_nests_children_under_their_parents() {
    // Works without task dumps: parents are recorded at spawn.
    let stdout = text(&dump(&["--tree"]).stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let acceptor = lines
        .iter()
        .position(|l| l.contains("\"acceptor\" idle"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let conn = lines[acceptor + 1];
    assert!(
        conn.contains("└── ")
            && conn.contains("\"conn\" idle, spawned at viewer/tests/dump_stacks.rs:"),
        "{stdout}"
    );
    let depth = |l: &str| l.find(['├', '└']).unwrap();
    assert!(depth(conn) > depth(lines[acceptor]), "{stdout}");

    // With --stacks: each task's line ends with where it waits.
    let stdout = text(&dump(&["--tree", "--stacks"]).stdout);
    let conn = stdout
        .lines()
        .find(|l| l.contains("\"conn\""))
        .unwrap_or_else(|| panic!("{stdout}"));
    if DUMPS {
        let line = marker_line(concat!("CONN-", "RECV"));
        assert!(
            conn.ends_with(&format!("; waiting at {FILE}:{line}")),
            "{stdout}"
        );
    } else {
        assert!(conn.ends_with("; where it waits is not known"), "{stdout}");
    }
    let tree: Vec<Value> = serde_json::from_slice(&dump(&["--tree", "--json"]).stdout).unwrap();
    let acceptor = tree
        .iter()
        .flat_map(|root| std::iter::once(root).chain(root["children"].as_array().unwrap()))
        .find(|t| t["name"] == "acceptor")
        .unwrap_or_else(|| panic!("{tree:#?}"));
    assert_eq!(acceptor["children"][0]["name"], "conn", "{acceptor:#}");
}
