//! The real `tokio-console` (0.1.14) attached to a taskscope app: tmux runs
//! it against `grpc_app` (a process under `taskscope::init()`), and
//! `capture-pane` reads the screen as a person would see it: the task list
//! with names, spawn locations and a finished task, the detail view of the
//! task that blocked its worker for 250 ms, pause and resume.
//!
//! It runs when a `tokio-console` binary is found: `TOKIO_CONSOLE=/path/to/it`,
//! or `tokio-console` on `PATH`. Otherwise it says so on stderr and passes
//! without checking anything. To run it:
//!
//! ```sh
//! cargo install tokio-console --version 0.1.14 --locked
//! cargo test -p taskscope-tests --test tokio_console
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use taskscope_tests::scripted::Scripted;
use taskscope_tests::{free_port, location_prefix};

const INSTALL: &str = "cargo install tokio-console --version 0.1.14 --locked";

/// The tokio-console binary: `TOKIO_CONSOLE`, else `tokio-console` on `PATH`.
fn tokio_console() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TOKIO_CONSOLE") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "TOKIO_CONSOLE={} is not a file: point it at a tokio-console binary ({INSTALL})",
            path.display()
        );
        return Some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("tokio-console"))
        .find(|p| p.is_file())
}

struct Tmux {
    socket: String,
    session: &'static str,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("taskscope-tokio-console-{}", std::process::id()),
            session: "console",
        };
        let status = Command::new("tmux")
            .args(["-L", &tmux.socket, "new-session", "-d", "-s", tmux.session])
            .args(["-x", "200", "-y", "50", command])
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

    /// Waits until the screen shows every one of `texts`; returns it.
    fn wait_for(&self, texts: &[&str]) -> String {
        self.wait_until(&format!("{texts:?}"), |s| {
            texts.iter().all(|t| s.contains(t))
        })
    }

    fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            if Instant::now() >= until {
                panic!("tokio-console never showed {what}; the screen:\n{screen}");
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

/// The row of the task list naming `name`, if shown.
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == name))
}

/// The value of percentile `label` (`p99:`) in the detail view, in ms.
fn percentile_ms(screen: &str, label: &str) -> f64 {
    let line = screen
        .lines()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no {label} on the screen:\n{screen}"));
    let value = line.split(label).nth(1).unwrap().trim_start();
    let value: String = value
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '│')
        .collect();
    ms(&value)
}

/// A duration as tokio-console writes it (`270.53ms`, `32µs`, `2s`), in ms.
fn ms(value: &str) -> f64 {
    let (number, scale) = if let Some(n) = value.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix("µs") {
        (n, 1e-3)
    } else if let Some(n) = value.strip_suffix("ns") {
        (n, 1e-6)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1e3)
    } else {
        panic!("{value:?} is not a duration")
    };
    number.parse::<f64>().unwrap() * scale
}

#[test]
fn the_real_tokio_console_shows_a_taskscope_apps_tasks() {
    let Some(console) = tokio_console() else {
        // Straight to the terminal: the test harness hides what a passing test prints.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED tokio_console: no tokio-console binary (neither TOKIO_CONSOLE nor \
             tokio-console on PATH), so the real tokio-console was NOT checked against \
             taskscope. To run it: {INSTALL}, then cargo test -p taskscope-tests --test \
             tokio_console ***\n"
        );
        return;
    };
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut app = Scripted::start(
        env!("CARGO_BIN_EXE_grpc_app"),
        &[("TASKSCOPE_ADDR", &addr), ("GRPC_APP_TASKS", "3")],
    );
    app.send("block 250");
    app.send("finish worker-0");
    let named_at = location_prefix("src/bin/grpc_app.rs", concat!("SPAWN-", "NAMED"));
    let blocker_at = location_prefix("src/bin/grpc_app.rs", concat!("SPAWN-", "BLOCKER"));

    let tmux = Tmux::start(&format!(
        "{} --retain-for 60s http://{addr}",
        console.display()
    ));
    // The task list: names, spawn locations, the finished task, the blocker.
    let screen = tmux.wait_for(&["(CONNECTED)", "worker-1", "blocker", &named_at, &blocker_at]);
    let worker = row(&screen, "worker-1").unwrap();
    assert!(worker.contains(" task "), "kind task: {worker}");
    let done = row(&screen, "worker-0").expect("the finished task is listed");
    assert!(done.contains('⏹'), "worker-0 is shown done: {done}");
    // Done after one poll of 250 ms (more on a loaded machine).
    let screen = tmux.wait_until("the blocker done", |s| {
        row(s, "blocker").is_some_and(|r| r.contains('⏹'))
    });
    let blocker: Vec<&str> = row(&screen, "blocker")
        .unwrap()
        .split_whitespace()
        .collect();
    let at = blocker.iter().position(|w| *w == "blocker").unwrap();
    let (busy, polls) = (ms(blocker[at + 2]), blocker[at + 5]);
    assert!(
        (250.0..2_000.0).contains(&busy) && polls == "1",
        "busy {busy} ms in {polls} polls: {blocker:?}"
    );
    assert!(
        row(&screen, "block_on").is_some(),
        "the runtime's block_on future: {screen}"
    );
    assert!(
        !screen.contains("Resources (") || screen.contains("Resources (0)"),
        "{screen}"
    );

    // The detail view of the blocker: sorted by busy time, lowest first, it
    // is the last row; G selects it, Enter opens it.
    tmux.keys("Right");
    tmux.wait_for(&["Busy▿"]);
    tmux.keys("i");
    tmux.wait_for(&["Busy▵"]);
    tmux.keys("G");
    tmux.keys("Enter");
    tmux.wait_for(&["Name: blocker"]);
    // One poll of 250 ms (more on a loaded machine): every percentile is it.
    let detail = tmux.wait_for(&["p10:", "p99:"]);
    for p in ["p10:", "p50:", "p99:"] {
        let ms = percentile_ms(&detail, p);
        assert!(
            (250.0..2_000.0).contains(&ms),
            "{p} {ms} ms, not the 250 ms poll:\n{detail}"
        );
    }
    assert!(
        detail.contains(&blocker_at),
        "the location in the detail: {detail}"
    );

    // Pause and resume.
    tmux.keys("Escape");
    tmux.wait_for(&["Tasks ("]);
    tmux.keys("Space");
    tmux.wait_for(&["(CONNECTED) PAUSED"]);
    tmux.keys("Space");
    tmux.wait_until("live again", |s| {
        s.contains("(CONNECTED)") && !s.contains("PAUSED") && !s.contains("UNPAUSING")
    });

    // q quits.
    tmux.keys("q");
    let until = Instant::now() + Duration::from_secs(10);
    while tmux.alive() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!tmux.alive(), "tokio-console still running after q");
    assert!(!app.stderr().contains("panicked"), "{}", app.stderr());
}
