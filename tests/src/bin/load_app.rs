//! An instrumented app doing steady request work, for the fault-injection
//! tests of the viewer server (`tests/viewer_faults.rs`, `tests/hostile_input.rs`):
//! the app must keep its throughput and its memory whatever viewers do.
//!
//! It serves taskscope's viewer server on `TASKSCOPE_ADDR` (with
//! `TASKSCOPE_TOKEN` if set), keeps `LOAD_APP_IDLE` (default 1,000) named
//! tasks waiting (so snapshots have some size), and runs
//! `LOAD_APP_CONCURRENCY` (default 8) request loops: each spawns a short
//! named task (`request`) that does a little CPU work and yields once, awaits
//! it, and counts one request. Every request is a spawn and an end in the
//! registry, so every delta a viewer gets carries finished tasks.
//!
//! Prints `ready`, then answers stdin commands:
//!
//! - `count`: `count N T` — requests done so far, and the app's own clock
//!   (microseconds since start) when it read the counter;
//! - `quit` (or end of input): exit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use taskscope_tests::app::{run_instrumented, say, stdin_lines};

fn main() {
    run_instrumented(app());
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One request's work: a few microseconds of arithmetic, and one yield.
async fn handle(seed: u64) -> u64 {
    let mut x = seed;
    for i in 0..2_000u64 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i);
    }
    tokio::task::yield_now().await;
    std::hint::black_box(x)
}

async fn request_loop(counter: Arc<AtomicU64>) {
    let mut seed = 0u64;
    loop {
        let request = tokio::task::Builder::new()
            .name("request")
            .spawn(handle(seed))
            .expect("spawn");
        seed = request.await.unwrap_or(seed);
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

async fn app() {
    let start = Instant::now();
    // Waiting on something that can wake them (a lost waker would be a finding).
    let never = Arc::new(tokio::sync::Notify::new());
    for i in 0..env_usize("LOAD_APP_IDLE", 1_000) {
        let never = Arc::clone(&never);
        tokio::task::Builder::new()
            .name(&format!("idle-{i}"))
            .spawn(async move { never.notified().await })
            .expect("spawn");
    }
    let counter = Arc::new(AtomicU64::new(0));
    for _ in 0..env_usize("LOAD_APP_CONCURRENCY", 8) {
        tokio::spawn(request_loop(Arc::clone(&counter)));
    }

    let mut lines = stdin_lines();
    say("ready");
    while let Some(line) = lines.recv().await {
        match line.trim() {
            "count" => {
                let n = counter.load(Ordering::Relaxed);
                let at = start.elapsed().as_micros();
                say(&format!("count {n} {at}"));
            }
            "quit" => break,
            other => eprintln!("load_app: unknown command {other:?}"),
        }
    }
}
