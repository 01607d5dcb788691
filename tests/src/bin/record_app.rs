//! An instrumented app recorded for `taskscope replay`'s end-to-end test
//! (`viewer/tests/terminal.rs`): run it with `TASKSCOPE_RECORD=PATH` (and
//! `TASKSCOPE_ADDR=off`: the recording needs no viewer server).
//!
//! For `RECORD_APP_QUIET_S` seconds (default 11) only healthy tasks run (a
//! `ticker` and short `request`s); then a task named `recorded_slow` blocks
//! its worker for 1.5 s in `load_config_blocking`, and the app ends a second
//! later. So a replay at its end shows the slow task, and 10 s before the
//! end shows none.

use std::time::Duration;

#[inline(never)]
fn load_config_blocking() {
    // The bug the replay must show: a blocking call inside an async task.
    std::thread::sleep(Duration::from_millis(1_500)); // BLOCK-RECORDED
}

async fn recorded_slow() {
    tokio::task::yield_now().await;
    load_config_blocking();
}

#[tokio::main(worker_threads = 2)]
async fn main() {
    let guard = taskscope::init();
    let quiet = Duration::from_secs(
        std::env::var("RECORD_APP_QUIET_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(11),
    );
    let ticker = tokio::task::Builder::new()
        .name("ticker")
        .spawn(async {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .expect("spawn the ticker");
    let started = tokio::time::Instant::now();
    while started.elapsed() < quiet {
        let request = tokio::task::Builder::new()
            .name("request")
            .spawn(async { tokio::time::sleep(Duration::from_millis(20)).await })
            .expect("spawn a request");
        request.await.expect("a request");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let slow = tokio::task::Builder::new()
        .name("recorded_slow")
        .spawn(recorded_slow()) // SPAWN-RECORDED
        .expect("spawn the slow task");
    slow.await.expect("the slow task");
    tokio::time::sleep(Duration::from_secs(1)).await;
    ticker.abort();
    let _ = ticker.await;
    drop(guard);
}
