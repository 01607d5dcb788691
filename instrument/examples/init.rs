//! `taskscope::init()` as the first line of a `#[tokio::main]` app: the way in
//! that sees the most (task names, wakes, lost wakers), through Tokio's own
//! tracing instrumentation.
//!
//! ```text
//! cargo run -p taskscope --example init
//! ```
//!
//! (From this workspace, whose `.cargo/config.toml` sets `--cfg tokio_unstable`;
//! an app of your own needs the same, see the README.)
//!
//! What to look at:
//! - stderr: `WARN taskscope: Executing task N "load_config" (spawned at
//!   instrument/examples/init.rs:43:10) took 0.250 seconds` — the poll that
//!   blocked a worker thread, the task's name and the line that spawned it;
//! - stdout: the live tasks as `taskscope::dump()` prints them, like
//!   `python -m asyncio ps`: `waiter`, idle, spawned at
//!   instrument/examples/init.rs:37:10, one poll;
//! - with `TASKSCOPE_REPORT=slow-polls.jsonl` set, the same finding as a line of
//!   that file, which `taskscope report slow-polls.jsonl` groups by spawn location;
//! - with an argument (`cargo run -p taskscope --example init -- 60`), the app
//!   stays up that many seconds for `taskscope attach` (the live view) in
//!   another terminal.

use std::time::Duration;

#[tokio::main]
async fn main() {
    // First line of main; keep the guard until main ends: dropping it flushes
    // the findings to the log and the report file.
    let _guard = taskscope::init();

    // A task that waits on a channel: alive and idle until it is told to stop.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let waiter = tokio::task::Builder::new()
        .name("waiter")
        .spawn(async move { stopped.await.ok() }) // listed by dump() below
        .expect("spawn waiter");

    // A task that blocks its worker thread for 250 ms: a slow poll.
    let slow = tokio::task::Builder::new()
        .name("load_config")
        .spawn(async { std::thread::sleep(Duration::from_millis(250)) }) // the warning names this line
        .expect("spawn load_config");
    slow.await.expect("load_config ends");

    println!("Live tasks (taskscope::dump()):");
    taskscope::dump();

    if let Some(seconds) = std::env::args().nth(1).and_then(|s| s.parse().ok()) {
        println!("Up for {seconds} s: `taskscope attach` shows it live.");
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
    stop.send(()).ok();
    waiter.await.expect("waiter ends");
}
