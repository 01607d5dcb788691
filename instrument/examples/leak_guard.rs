//! `taskscope::LeakGuard` in tests: fails a test that leaves tasks running,
//! listing each one (Go's goleak, for Tokio). Its tests are part of
//! `cargo test -p taskscope` (`tests/examples.rs` includes this file), or alone:
//!
//! ```text
//! cargo test -p taskscope --example leak_guard
//! ```
//!
//! and `main` shows what a failing test would print:
//!
//! ```text
//! cargo run -p taskscope --example leak_guard
//! ```
//!
//! What to look at: `start_session: 1 task(s) spawned during the test still
//! alive after waiting 200ms:` and under it `task N "reconnect-loop" spawned
//! at instrument/examples/leak_guard.rs:40:10: idle, …` — the task
//! `start_session` forgot to stop, with the line that spawned it.

use std::sync::Once;
use std::time::Duration;

/// taskscope started once for the whole test binary (each `#[tokio::test]`
/// has its own runtime; the capture is the process's global subscriber).
fn start_taskscope() {
    static START: Once = Once::new();
    START.call_once(|| {
        let guard = taskscope::Builder::from_env()
            .server_addr(taskscope::ServerAddr::Off)
            .try_init()
            .expect("taskscope starts");
        std::mem::forget(guard);
    });
}

/// Code under test that leaks: a background task nobody stops.
async fn start_session() {
    tokio::task::Builder::new()
        .name("reconnect-loop")
        .spawn(async { std::future::pending::<()>().await }) // leaked
        .expect("spawn reconnect-loop");
}

/// Code under test that cleans up: its helper task ends with it.
async fn handle_request() -> u32 {
    let helper = tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        42
    });
    helper.await.expect("helper ends")
}

#[tokio::main]
async fn main() {
    start_taskscope();
    for (test, leaky) in [("handle_request", false), ("start_session", true)] {
        let guard = taskscope::LeakGuard::new().grace(Duration::from_millis(200));
        if leaky {
            start_session().await;
        } else {
            handle_request().await;
        }
        match guard.check().await {
            Ok(()) => println!("{test}: no task leaked"),
            Err(leaks) => println!("{test}: {leaks}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn handle_request_leaves_no_task_behind() {
        start_taskscope();
        let guard = taskscope::LeakGuard::new();
        assert_eq!(handle_request().await, 42);
        guard.assert_no_leaks().await; // waits up to 500 ms, then panics listing the tasks
    }

    #[tokio::test]
    #[should_panic(expected = "\"reconnect-loop\" spawned at ")]
    async fn start_session_leaks_its_reconnect_loop() {
        start_taskscope();
        let guard = taskscope::LeakGuard::new().grace(Duration::from_millis(100));
        start_session().await;
        guard.assert_no_leaks().await;
    }
}
