//! Support for taskscope's end-to-end tests: run an instrumented app as a real
//! process, read its report file, find source lines by marker comments.

#[cfg(feature = "tracing-capture")]
pub mod app;
pub mod metrics;
pub mod scripted;
pub mod variants;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A fresh, empty directory under the system temp dir for one test.
pub fn temp_dir(test: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "taskscope-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// What an app run left behind.
pub struct Run {
    /// The process output (stdout, stderr, status).
    pub output: Output,
    /// The report lines, parsed (empty when there was no file).
    pub findings: Vec<serde_json::Value>,
}

impl Run {
    /// stderr as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// stdout as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Findings of one kind.
    pub fn of_kind(&self, kind: &str) -> Vec<&serde_json::Value> {
        self.findings.iter().filter(|f| f["kind"] == kind).collect()
    }

    /// The taskscope warnings printed on stderr.
    pub fn warnings(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("taskscope"))
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `bin` with `env` and a report file in a fresh temp dir; waits for it.
pub fn run_app(bin: &str, test: &str, env: &[(&str, &str)]) -> Run {
    let dir = temp_dir(test);
    let report = dir.join("report.jsonl");
    let mut cmd = Command::new(bin);
    cmd.env_remove("RUST_LOG")
        .env("TASKSCOPE_REPORT", &report)
        .env("TASKSCOPE_ADDR", "off");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().expect("run the app");
    let findings = read_report(&report);
    Run { output, findings }
}

/// Every line of a report file, parsed as JSON (panics on a malformed line:
/// taskscope must only write valid lines).
pub fn read_report(path: &Path) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad report line {l:?}: {e}")))
        .collect()
}

/// The 1-based line of `file` (relative to this crate) holding `marker`.
pub fn marker_line(file: &str, marker: &str) -> u32 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).expect("read source");
    let found: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "marker {marker} must be on exactly one line of {file}"
    );
    found[0] as u32
}

/// `tests/<file>:<line>:` — the start of a spawn location in this crate, as
/// the compiler writes it (paths relative to the workspace root).
pub fn location_prefix(file: &str, marker: &str) -> String {
    format!("tests/{file}:{}:", marker_line(file, marker))
}

/// A loopback port nobody listens on right now (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Reads a scripted app's stdout until a line `pick` accepts (its trailing
/// newline trimmed) and returns what `pick` made of it; fails with `app`'s
/// name and its stderr so far if the app ends first.
pub fn next_line_where<R>(
    stdout: &mut impl std::io::BufRead,
    app: &str,
    stderr: impl Fn() -> String,
    mut pick: impl FnMut(&str) -> Option<R>,
) -> R {
    let mut line = String::new();
    loop {
        line.clear();
        let n = stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "{app} ended early; stderr:\n{}", stderr());
        if let Some(found) = pick(line.trim_end()) {
            return found;
        }
    }
}

/// Reads a child's stderr on a thread of its own into a shared string (so the
/// child never blocks on a full pipe); returns the string and the thread.
pub fn collect_stderr(mut pipe: ChildStderr) -> (Arc<Mutex<String>>, JoinHandle<()>) {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (text, reader)
}
