//! Real terminal runs: tmux starts `taskscope demo` (and `taskscope replay` on
//! a recording the test app `record_app` made), `capture-pane` reads the
//! screen as a person would see it, `send-keys` switches views and moves the
//! replay's cursor.

use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_taskscope");

struct Tmux {
    socket: String,
    session: &'static str,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        // One tmux server per test: the tests of this file run at once.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("taskscope-test-{}-{n}", std::process::id());
        let tmux = Tmux {
            socket,
            session: "demo",
        };
        let status = Command::new("tmux")
            .args(["-L", &tmux.socket, "new-session", "-d", "-s", tmux.session])
            .args(["-x", "180", "-y", "50", command])
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux must be installed (.ci/run installs it)");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", self.session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", self.session, keys])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Waits until the screen contains every one of `texts`; returns it.
    fn wait_for(&self, texts: &[&str], within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            let screen = self.screen();
            if texts.iter().all(|t| screen.contains(t)) {
                return screen;
            }
            if Instant::now() >= until {
                panic!("screen never showed {texts:?}; it shows:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["-L", &self.socket, "has-session", "-t", self.session])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

fn demo_line(needle: &str) -> usize {
    let src = include_str!("../src/demo.rs");
    src.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} in demo.rs"))
        + 1
}

#[test]
fn demo_in_a_real_terminal_shows_the_blocking_task_and_switches_views() {
    let tmux = Tmux::start(&format!("{BIN} demo"));
    let reloader = format!(
        "viewer/src/demo.rs:{}:",
        demo_line("named(\"config_reloader\"")
    );

    // The task table, with the demo's blocking task and where it was spawned.
    let screen = tmux.wait_for(
        &["Tasks (", "config_reloader", &reloader],
        Duration::from_secs(20),
    );
    assert!(
        screen.contains("Connected") || screen.contains("pid"),
        "{screen}"
    );

    // 3: slow polls grouped by location, with the stack naming the blocking fn.
    // The stack shown is the selected group's, and the groups come newest
    // first (the demo's stuck poll is reported every second): go through the
    // rows until config_reloader's is selected.
    tmux.keys("3");
    tmux.wait_for(
        &["Slow polls by spawn location", &reloader],
        Duration::from_secs(20),
    );
    let until = Instant::now() + Duration::from_secs(20);
    let mut keys = ["Down", "Down", "g"].iter().cycle();
    while !tmux.screen().contains("load_config_blocking") {
        assert!(
            Instant::now() < until,
            "no stack names load_config_blocking:\n{}",
            tmux.screen()
        );
        tmux.keys(keys.next().unwrap());
        std::thread::sleep(Duration::from_millis(300));
    }

    // 4: problems: never-awaited future, lost waker, panic.
    tmux.keys("4");
    tmux.wait_for(
        &[
            "fetch_user",
            "never awaited",
            "lost waker",
            "payment provider returned 503",
        ],
        Duration::from_secs(20),
    );

    // 5: runtime metrics; ?: help.
    tmux.keys("5");
    tmux.wait_for(
        &["Scheduler", "workers", "global queue"],
        Duration::from_secs(10),
    );
    tmux.keys("?");
    tmux.wait_for(&["pause / resume"], Duration::from_secs(5));

    // q quits: the process ends and the session with it.
    tmux.keys("Escape");
    tmux.keys("q");
    let until = Instant::now() + Duration::from_secs(10);
    while tmux.alive() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!tmux.alive(), "taskscope demo still running after q");
}

/// The test app `record_app` (`tests/src/bin/record_app.rs`), built with
/// cargo beside this binary (a no-op when `cargo test --workspace` built it
/// already).
fn record_app() -> std::path::PathBuf {
    let bin_dir = std::path::Path::new(BIN)
        .parent()
        .expect("the binary's directory");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args([
            "build",
            "--quiet",
            "-p",
            "taskscope-tests",
            "--bin",
            "record_app",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if bin_dir.ends_with("release") {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("run cargo to build the test app");
    assert!(status.success(), "cannot build the test app record_app");
    let app = bin_dir.join(format!("record_app{}", std::env::consts::EXE_SUFFIX));
    assert!(app.exists(), "{} was not built", app.display());
    app
}

/// `M:SS` of the replay's status line: how far the cursor is into the recording.
fn replay_elapsed(screen: &str) -> u64 {
    let status = screen
        .lines()
        .rev()
        .find(|l| l.contains("REPLAY"))
        .unwrap_or_else(|| panic!("no replay status line:\n{screen}"));
    let after = status.split(" UTC  ").nth(1).expect("the recorded time");
    let elapsed = after.split(" / ").next().expect("M:SS / M:SS");
    let (m, s) = elapsed.trim().split_once(':').expect("M:SS");
    m.parse::<u64>().unwrap() * 60 + s.parse::<u64>().unwrap()
}

#[test]
fn replay_of_a_recorded_app_shows_its_slow_task_and_left_goes_back_in_time() {
    let app = record_app();
    let dir = std::env::temp_dir().join(format!("taskscope-replay-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let recording = dir.join("app.rec");
    // The app records with no viewer server at all.
    let run = Command::new(&app)
        .env("TASKSCOPE_RECORD", &recording)
        .env("TASKSCOPE_ADDR", "off")
        .env_remove("RUST_LOG")
        .output()
        .expect("run record_app");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "record_app failed:\n{stderr}");
    assert!(
        stderr.contains("\"recorded_slow\""),
        "the app saw its slow task:\n{stderr}"
    );
    let spawned = {
        let src = include_str!("../../tests/src/bin/record_app.rs");
        let line = src
            .lines()
            .position(|l| l.contains("// SPAWN-RECORDED"))
            .expect("the marker")
            + 1;
        format!("tests/src/bin/record_app.rs:{line}:")
    };

    let tmux = Tmux::start(&format!("{BIN} replay {}", recording.display()));
    tmux.wait_for(
        &["REPLAY", "record_app (pid", "ticker"],
        Duration::from_secs(30),
    );

    // The end of the recording: the slow task, then its slow poll and the
    // stack where it blocked.
    tmux.keys("G");
    let end = tmux.wait_for(
        &[" END ", "recorded_slow", &spawned],
        Duration::from_secs(20),
    );
    let length = replay_elapsed(&end);
    assert!(length >= 11, "the recording holds the app's run:\n{end}");
    tmux.keys("3");
    tmux.wait_for(
        &[
            "Slow polls by spawn location (1 location",
            "recorded_slow",
            "record_app::load_config_blocking",
        ],
        Duration::from_secs(20),
    );

    // ←: ten seconds earlier the slow task was not there yet.
    tmux.keys("Left");
    let back = tmux.wait_for(&["PAUSED", "No slow poll so far"], Duration::from_secs(20));
    assert_eq!(replay_elapsed(&back), length - 10, "{back}");
    assert!(!back.contains("recorded_slow"), "{back}");
    assert!(
        back.contains(" 3 Slow polls │"),
        "no slow poll counted yet:\n{back}"
    );
    tmux.keys("1");
    let tasks = tmux.wait_for(&["Tasks (", "ticker"], Duration::from_secs(20));
    assert!(!tasks.contains("recorded_slow"), "{tasks}");

    // → comes back to it.
    tmux.keys("Right");
    tmux.wait_for(&["recorded_slow"], Duration::from_secs(20));

    tmux.keys("q");
    let until = Instant::now() + Duration::from_secs(10);
    while tmux.alive() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!tmux.alive(), "taskscope replay still running after q");
    let _ = std::fs::remove_dir_all(&dir);
}
