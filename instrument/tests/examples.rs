//! Runs every example of `instrument/examples/` and checks that it prints what
//! its header tells a user to look at: the right finding, naming the right
//! line of the example, and that the header names that same line.
//!
//! `cargo test -p taskscope` builds the examples before it runs any test; the
//! binaries are taken from `target/<profile>/examples/`. Run alone
//! (`cargo test -p taskscope --test examples`), cargo does not build them:
//! then this test fails and says so rather than run stale or missing binaries.

use std::path::{Path, PathBuf};

// The leak guard's example is about tests: its own `#[tokio::test]`s run here,
// with this file's (its `main` is run as a binary below, like the others').
#[allow(dead_code)]
#[path = "../examples/leak_guard.rs"]
mod leak_guard_example;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run of an example printed.
struct Run {
    stdout: String,
    stderr: String,
}

impl Run {
    /// Both streams, for failure messages.
    fn both(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

/// The example's source, `instrument/examples/NAME.rs`.
fn source(name: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.rs"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path, text)
}

/// The example's binary, built by `cargo test` next to this test's own
/// directory (`target/<profile>/deps/..` → `target/<profile>/examples/`).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&bin).and_then(|m| m.modified());
    let Ok(built) = built else {
        panic!(
            "example binary {} is missing: run `cargo test -p taskscope` (it builds the \
             examples before the tests) or `cargo build -p taskscope --examples` first",
            bin.display()
        );
    };
    let (path, _) = source(name);
    let edited = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("the example's mtime");
    assert!(
        edited <= built,
        "example binary {} is older than {}: run `cargo test -p taskscope` (it builds the \
         examples) or `cargo build -p taskscope --examples` first",
        bin.display(),
        path.display()
    );
    bin
}

/// Runs the example with taskscope's settings at their defaults, except the
/// viewer server, which is off (tests never take the default port).
fn run(name: &str) -> Run {
    run_with(name, &[])
}

/// [`run`], with these variables set too.
fn run_with(name: &str, vars: &[(&str, &str)]) -> Run {
    let mut command = Command::new(binary(name));
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("TASKSCOPE_") || key_text == "RUST_LOG" || key_text == "NO_COLOR" {
            command.env_remove(&key);
        }
    }
    command.envs(vars.iter().copied());
    let mut child = command
        .env("TASKSCOPE_ADDR", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start example {name}: {e}"));
    // Only a guard against a hung example (each one ends within seconds).
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait for the example").is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("example {name} did not end within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("the example's output");
    let run = Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        out.status.success(),
        "example {name} failed: {}\n{}",
        out.status,
        run.both()
    );
    run
}

/// The line of the example's source that holds `marker` (a comment on the
/// line taskscope's output must name); checks that the example's header
/// names the same line, so the header tells the truth.
fn marked_line(name: &str, marker: &str) -> String {
    let (path, text) = source(name);
    let mut found = text
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains(marker) && !line.trim_start().starts_with("//"));
    let (index, _) = found
        .next()
        .unwrap_or_else(|| panic!("no line of {} holds {marker:?}", path.display()));
    assert!(
        found.next().is_none(),
        "{marker:?} is on more than one line of {name}.rs"
    );
    let location = format!("instrument/examples/{name}.rs:{}:", index + 1);
    let header: String = text
        .lines()
        .filter(|line| line.starts_with("//!"))
        .map(|line| line.trim_start_matches("//!").trim())
        .collect::<Vec<_>>()
        .join(" ");
    // `path:line:col` or, for a stack frame, `(path:line)`.
    let frame = format!("({})", location.trim_end_matches(':'));
    assert!(
        header.contains(&location) || header.contains(&frame),
        "the header of {name}.rs should name {location} (the line marked {marker:?})"
    );
    location
}

fn assert_has(haystack: &str, needle: &str, run: &Run) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in\n{}",
        run.both()
    );
}

/// The stderr line holding `needle`.
fn line_with<'a>(text: &'a str, needle: &str, run: &Run) -> &'a str {
    text.lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line holds {needle:?} in\n{}", run.both()))
}

#[test]
fn init_warns_of_the_slow_task_by_name_and_lists_the_waiter() {
    let slow = marked_line("init", "// the warning names this line");
    let waiter = marked_line("init", "// listed by dump() below");
    let run = run("init");
    let warning = line_with(&run.stderr, "Executing task ", &run);
    assert_has(warning, "WARN taskscope:", &run);
    assert_has(
        warning,
        &format!("\"load_config\" (spawned at {slow}"),
        &run,
    );
    assert_has(warning, ") took 0.", &run);
    assert_has(&run.stdout, "Live tasks (taskscope::dump()):", &run);
    let row = line_with(&run.stdout, &waiter, &run);
    assert_has(row, "waiter", &run);
    assert_has(row, "idle", &run);
    assert!(!run.stdout.contains("load_config"), "{}", run.both());
}

#[test]
fn main_attribute_warns_of_the_slow_poll_and_the_task_left_pending() {
    let slow = marked_line("main_attribute", "// the slow-poll warning names this line");
    let pending = marked_line("main_attribute", "// reported as leaked at shutdown");
    let run = run("main_attribute");
    let warning = line_with(&run.stderr, "Executing task ", &run);
    assert_has(warning, &format!("(spawned at {slow}"), &run);
    assert_has(warning, ") took 0.", &run);
    let leak = line_with(&run.stderr, "was destroyed but it is pending!", &run);
    assert_has(leak, &format!("(spawned at {pending}"), &run);
    let listed = line_with(&run.stdout, &pending, &run);
    assert_has(listed, "name=None", &run);
}

#[test]
fn install_on_reports_at_its_own_threshold_and_the_dropped_task() {
    let slow = marked_line("install_on", "// slow at this example's threshold");
    let pending = marked_line("install_on", "// pending at shutdown");
    let run = run("install_on");
    // An 80 ms poll: under the default 100 ms, over the example's 50 ms.
    let warning = line_with(&run.stderr, "Executing task ", &run);
    assert_has(warning, &format!("(spawned at {slow}"), &run);
    let leak = line_with(&run.stderr, "was destroyed but it is pending!", &run);
    assert_has(leak, &format!("(spawned at {pending}"), &run);
    assert!(
        !run.stderr.contains("\u{1b}["),
        "colours on a pipe:\n{}",
        run.both()
    );
    let slow_value = line_with(&run.stdout, "  slow_poll: Executing task ", &run);
    assert_has(slow_value, &slow, &run);
    let leak_value = line_with(&run.stdout, "  leaked_task: task ", &run);
    assert_has(leak_value, &pending, &run);
}

#[test]
fn layer_sends_the_apps_events_and_taskscopes_through_the_apps_layer() {
    let slow = marked_line("layer", "// the warning names this line");
    let run = run("layer");
    let own = line_with(&run.stderr, "app started", &run);
    assert_has(own, "INFO layer:", &run);
    let warning = line_with(&run.stderr, "Executing task ", &run);
    assert_has(warning, "WARN taskscope:", &run);
    assert_has(warning, &format!("\"handler\" (spawned at {slow}"), &run);
    // The app's fmt layer filters at INFO: none of Tokio's TRACE spans or waker events.
    assert!(!run.stderr.contains("tokio::task::waker"), "{}", run.both());
    assert!(
        !run.stderr.contains("\u{1b}["),
        "colours on a pipe:\n{}",
        run.both()
    );
}

#[test]
fn track_reports_only_the_future_dropped_unpolled() {
    let dropped = marked_line("track", "// reported: never awaited");
    let run = run("track");
    let warning = line_with(&run.stderr, "was never awaited", &run);
    assert_has(
        warning,
        &format!("future send_receipt (created at {dropped}"),
        &run,
    );
    assert_eq!(
        run.stderr.matches("was never awaited").count(),
        1,
        "awaited and cancelled futures are not findings:\n{}",
        run.both()
    );
    assert_has(&run.stdout, "fetched user-7", &run);
    assert!(!run.stdout.contains("receipt sent"), "{}", run.both());
    let value = line_with(&run.stdout, "finding: never_awaited:", &run);
    assert_has(value, &dropped, &run);
}

#[test]
fn leak_guard_lists_the_task_left_behind_with_its_spawn_line() {
    let leaked = marked_line("leak_guard", "// leaked");
    let run = run("leak_guard");
    assert_has(&run.stdout, "handle_request: no task leaked", &run);
    let summary = line_with(&run.stdout, "start_session: ", &run);
    assert_has(
        summary,
        "1 task(s) spawned during the test still alive after waiting",
        &run,
    );
    let task = line_with(&run.stdout, "\"reconnect-loop\"", &run);
    assert_has(task, &format!("spawned at {leaked}"), &run);
    assert_has(task, ": idle, idle for ", &run);
}

/// A loopback port nobody listens on now (the default ports are never used:
/// other tests run at the same time).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

#[test]
fn metrics_shows_the_slow_line_and_the_live_tasks_by_spawn_location() {
    let slow = marked_line("metrics", "// a slow poll");
    let alive = marked_line("metrics", "// three alive");
    let addr = format!("127.0.0.1:{}", free_port());
    let run = run_with("metrics", &[("TASKSCOPE_METRICS_ADDR", &addr)]);
    assert_has(&run.stdout, &format!("From http://{addr}/metrics"), &run);
    // `marked_line` ends with the line's colon; the column follows.
    let series = |metric: &str, location: &str| -> String {
        let prefix = format!("{metric}{{spawned_at=\"{location}");
        line_with(&run.stdout, &prefix, &run).trim().to_string()
    };
    assert!(
        series("taskscope_slow_polls_total", &slow).ends_with("\"} 1"),
        "{}",
        run.both()
    );
    assert!(
        series("taskscope_slow_polls_total", &alive).ends_with("\"} 0"),
        "{}",
        run.both()
    );
    assert!(
        series("taskscope_tasks_alive", &alive).ends_with("\"} 3"),
        "{}",
        run.both()
    );
    assert!(
        series("taskscope_tasks_alive", &slow).ends_with("\"} 0"),
        "{}",
        run.both()
    );
    assert_has(&run.stdout, "taskscope_runtime_workers ", &run);
}

#[test]
fn taskdump_shows_where_the_task_waits_or_how_to_get_it() {
    let waits = marked_line("taskdump", "// the stack names this line");
    let spawned = marked_line("taskdump", "// spawned here");
    let run = run("taskdump");
    // `marked_line` gives `path:line:`; a stack frame is `(path:line)`.
    let waits_frame = format!("({})", waits.trim_end_matches(':'));
    if cfg!(all(
        feature = "taskdump",
        tokio_unstable,
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )) {
        let task = line_with(&run.stdout, "\"mailbox\" spawned at ", &run);
        assert_has(task, &spawned, &run);
        let frame = line_with(&run.stdout, "taskdump::next_letter", &run);
        assert_has(frame, &waits_frame, &run);
        assert_has(
            &run.stdout,
            "tokio::sync::mpsc::bounded::Receiver::recv",
            &run,
        );
        let leak = line_with(&run.stderr, "was destroyed but it is pending!", &run);
        assert_has(
            leak,
            &format!("; waiting at {}", waits.trim_end_matches(':')),
            &run,
        );
    } else {
        let no = line_with(&run.stdout, "No stacks: ", &run);
        assert_has(no, "features = [\"taskdump\"]", &run);
        assert!(!run.stdout.contains(&waits_frame), "{}", run.both());
    }
}
