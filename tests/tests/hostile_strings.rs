//! Strings an app hands taskscope that could hurt the viewer, with a real
//! app (`grpc_app`) and the viewer's client and `dump` as processes:
//!
//! - a task named with 1 MB and a panic with a 5 MB message: both are cut to
//!   4 KiB where taskscope captures them (marked with the length), and the
//!   viewer's Watch (a first viewer and one that joins later) and `dump` keep
//!   working, as does the report file;
//! - a task name and a panic message holding an OSC 52 (write the
//!   clipboard), a CSI (clear the screen), a C1 CSI, BEL, CR and DEL: `dump`
//!   prints them with the control characters made visible, `dump --json`
//!   escapes them and still reads back to the same name.

use std::io::{BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskscope::ServerAddr;
use taskscope_tests::free_port;
use taskscope_viewer::client;
use taskscope_viewer::state::model::{FindingKind, Update};
use tokio::sync::mpsc;

/// The longest any step may take (debug builds on a loaded 2-core machine).
const WAIT: Duration = Duration::from_secs(60);

/// OSC 52 (write "hello" to the clipboard), BEL, CSI 2J (clear the screen),
/// C1 CSI, CR, DEL.
const PAYLOAD: &str = "evil\u{1b}]52;c;aGVsbG8=\u{7}\u{1b}[2J\u{9b}31m\r\u{7f}end";

/// The same, as `dump` shows it.
const SHOWN: &str = "evil\\x1b]52;c;aGVsbG8=\\x07\\x1b[2J\\u{9b}31m\\x0d\\x7fend";

/// `grpc_app`, driven through its stdin.
struct App {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
    addr: String,
}

impl App {
    fn start(report: &Path) -> App {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_grpc_app"))
            .env("TASKSCOPE_ADDR", &addr)
            .env("GRPC_APP_TASKS", "5")
            .env("TASKSCOPE_REPORT", report)
            .env_remove("TASKSCOPE_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start grpc_app");
        let (stderr, _reader) = taskscope_tests::collect_stderr(child.stderr.take().unwrap());
        let mut app = App {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            stderr,
            addr,
        };
        app.expect_line("ready");
        app
    }

    fn server(&self) -> ServerAddr {
        ServerAddr::parse(&self.addr).unwrap()
    }

    fn expect_line(&mut self, want: &str) {
        let stderr = Arc::clone(&self.stderr);
        taskscope_tests::next_line_where(
            &mut self.stdout,
            &format!("grpc_app (waiting for {want:?})"),
            || {
                let text = stderr.lock().unwrap();
                text[text.len().saturating_sub(2_000)..].to_string()
            },
            |line| (line == want).then_some(()),
        );
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        self.expect_line(&format!("ok {command}"));
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// `viewer_proc dump ADDR [--json]`: what `taskscope dump` runs.
fn dump(addr: &str, json: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_viewer_proc"));
    command.args(["dump", addr]).env_remove("TASKSCOPE_TOKEN");
    if json {
        command.arg("--json");
    }
    command.output().expect("run viewer_proc")
}

/// A snapshot from a fresh live-view client: its tasks' names and its
/// findings' messages.
async fn snapshot(addr: &ServerAddr) -> (Vec<String>, Vec<String>) {
    let (tx, mut updates) = mpsc::channel(64);
    let (_requests, requests_rx) = mpsc::channel(8);
    let watch = tokio::spawn(client::watch_with(addr.clone(), None, tx, requests_rx));
    let mut states = Vec::new();
    let got = loop {
        match tokio::time::timeout(WAIT, updates.recv()).await {
            Ok(Some(Update::Snapshot {
                tasks, findings, ..
            })) => {
                let names = tasks.into_iter().filter_map(|t| t.name).collect();
                let panics = findings
                    .into_iter()
                    .filter_map(|f| match f.kind {
                        FindingKind::TaskPanicked { message, .. } => Some(message),
                        _ => None,
                    })
                    .collect();
                break (names, panics);
            }
            Ok(Some(other)) => states.push(format!("{other:?}")),
            other => panic!("no snapshot: {other:?}; before: {states:?}"),
        }
    };
    watch.abort();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_megabyte_name_and_a_five_megabyte_panic_are_cut_and_the_viewer_works() {
    let dir = taskscope_tests::temp_dir("hostile-strings-big");
    let report = dir.join("report.jsonl");
    let mut app = App::start(&report);
    app.send("spawn-long 1048576");
    app.send("panic-long 5242880");
    let name_mark = " … [truncated, 1048581 bytes]";
    let panic_mark = " … [truncated, 5242880 bytes]";

    // The panic reaches the recent findings through the findings thread:
    // wait until a snapshot has it.
    let deadline = std::time::Instant::now() + WAIT;
    while snapshot(&app.server()).await.1.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no panic in the snapshots"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A viewer watching, and another joining while the panic is among the
    // recent findings: both get their snapshot with the cut strings.
    for _ in 0..2 {
        let (names, panics) = snapshot(&app.server()).await;
        let long = names
            .iter()
            .find(|n| n.starts_with("long-"))
            .expect("the long-named task");
        assert!(long.ends_with(name_mark), "{}", &long[long.len() - 60..]);
        assert_eq!(long.len(), 4096 + name_mark.len());
        let panic = panics.first().expect("the panic");
        assert!(
            panic.ends_with(panic_mark),
            "{}",
            &panic[panic.len() - 60..]
        );
        assert_eq!(panic.len(), 4096 + panic_mark.len());
    }

    // `dump` lists it.
    let out = dump(&app.addr, false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(name_mark), "{}", &stdout[..200]);

    // The report file holds the cut message too.
    let deadline = std::time::Instant::now() + WAIT;
    let line = loop {
        let text = std::fs::read_to_string(&report).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("\"task_panicked\"")) {
            break line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no task_panicked in the report"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(line.len() < 8 * 1024, "{} bytes", line.len());
    assert!(line.contains(panic_mark), "{line}");
}

/// Whether `bytes` hold a control character other than a line break.
fn has_control(bytes: &[u8]) -> bool {
    String::from_utf8_lossy(bytes)
        .chars()
        .any(|c| c.is_control() && c != '\n')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_in_task_names_and_panics_never_reach_the_terminal() {
    let dir = taskscope_tests::temp_dir("hostile-strings-escapes");
    let report = dir.join("report.jsonl");
    let mut app = App::start(&report);
    app.send(&format!("spawn-hex {}", hex(PAYLOAD)));
    app.send(&format!("panic-hex {}", hex(PAYLOAD)));

    // The table: the name with its control characters made visible.
    let out = dump(&app.addr, false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !has_control(&out.stdout),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!has_control(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(SHOWN), "{stdout}");

    // JSON: escaped, and the same name when read back.
    let out = dump(&app.addr, true);
    assert!(out.status.success());
    assert!(
        !has_control(&out.stdout),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let tasks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        tasks
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == PAYLOAD),
        "{tasks}"
    );

    // The live view's client gets them as they are (the live view drops
    // control characters when it draws: tested with the screens), once the
    // panic went through the findings thread.
    let deadline = std::time::Instant::now() + WAIT;
    let (names, panics) = loop {
        let (names, panics) = snapshot(&app.server()).await;
        if !panics.is_empty() || std::time::Instant::now() > deadline {
            break (names, panics);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(names.iter().any(|n| n == PAYLOAD), "{names:?}");
    assert!(panics.iter().any(|m| m == PAYLOAD), "{panics:?}");
}
