//! An instrumented app for the metrics tests: slow polls at two known lines
//! (three tasks that block once, two that block twice), 200 short tasks at a
//! third, one task that panics and five that never end; then it says
//! `ready` and serves scrapes until stdin ends. The test sets
//! `TASKSCOPE_METRICS_ADDR` and `TASKSCOPE_SLOW_POLL_MS` (every poll of the
//! blocking tasks is slow: they block for `METRICS_APP_BLOCK_MS`, default 80).
//! `METRICS_APP_MODE=hooks` installs taskscope with `install_on` instead of `init()`.

use std::time::Duration;

use taskscope_tests::app::{say, stdin_lines};

fn block() -> Duration {
    Duration::from_millis(
        std::env::var("METRICS_APP_BLOCK_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(80),
    )
}

async fn blocks_once() {
    std::thread::sleep(block());
}

async fn blocks_twice() {
    std::thread::sleep(block());
    tokio::task::yield_now().await;
    std::thread::sleep(block());
}

async fn app() {
    for _ in 0..3 {
        tokio::spawn(blocks_once()).await.unwrap(); // SPAWN-ONCE
    }
    for _ in 0..2 {
        tokio::spawn(blocks_twice()).await.unwrap(); // SPAWN-TWICE
    }
    let quick: Vec<_> = (0..200)
        .map(|_| tokio::spawn(async { tokio::task::yield_now().await })) // SPAWN-QUICK
        .collect();
    for task in quick {
        task.await.unwrap();
    }
    let panicked = tokio::spawn(async { panic!("the metrics app panics once") }); // SPAWN-PANIC
    assert!(panicked.await.is_err());
    let idle: Vec<_> = (0..5)
        .map(|_| tokio::spawn(std::future::pending::<()>())) // SPAWN-IDLE
        .collect();
    // The panic's finding goes through the findings thread: let it arrive
    // (waiting off the runtime's threads, not to block a worker). With the
    // task hooks it is made after the task's last poll, which may come after
    // its `JoinHandle` woke this task: wait until the sinks saw it.
    tokio::task::spawn_blocking(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline
            && !taskscope::findings()
                .iter()
                .any(|f| matches!(f.kind, taskscope::FindingKind::TaskPanicked { .. }))
        {
            taskscope::flush(Duration::from_millis(100));
            std::thread::sleep(Duration::from_millis(10));
        }
        taskscope::flush(Duration::from_secs(3))
    })
    .await
    .unwrap();
    say("ready");
    let mut lines = stdin_lines();
    while let Some(line) = lines.recv().await {
        if line == "quit" {
            break;
        }
    }
    for task in idle {
        task.abort();
    }
}

fn main() {
    let hooks = std::env::var("METRICS_APP_MODE").is_ok_and(|m| m == "hooks");
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let guard = if hooks {
        taskscope::Builder::from_env().install_on(&mut builder)
    } else {
        taskscope::init()
    };
    let runtime = builder.build().expect("runtime");
    runtime.block_on(app());
    drop(runtime);
    drop(guard);
}
