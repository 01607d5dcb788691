//! A real terminal run: tmux starts `taskscope demo`, `capture-pane` reads the
//! screen as a person would see it, `send-keys` switches views.

use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_taskscope");

struct Tmux {
    socket: String,
    session: &'static str,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let socket = format!("taskscope-test-{}", std::process::id());
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
