//! An instrumented app with one task that blocks its worker with
//! `std::thread::sleep`. Used by the end-to-end tests; also a quick way to see
//! taskscope's warnings: `cargo run -p taskscope-tests --bin slow_app`.
//!
//! `SLOW_APP_SLEEP_MS` sets how long the bad task blocks (default 250);
//! `SLOW_APP_MODE=hooks` uses the runtime-builder path instead of `init()`.

use std::time::Duration;

async fn load_config(sleep: Duration) {
    // The bug taskscope must find: a blocking call inside an async fn.
    std::thread::sleep(sleep);
}

async fn app(sleep: Duration) {
    let mut healthy = Vec::new();
    for i in 0..20u64 {
        healthy.push(tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(1 + i % 3)).await;
                tokio::task::yield_now().await;
            }
        }));
    }
    let slow = tokio::spawn(load_config(sleep)); // SPAWN-SLOW
    slow.await.unwrap();
    for task in healthy {
        task.await.unwrap();
    }
}

fn main() {
    let sleep = Duration::from_millis(
        std::env::var("SLOW_APP_SLEEP_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(250),
    );
    let hooks = std::env::var("SLOW_APP_MODE").is_ok_and(|m| m == "hooks");
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let guard = if hooks {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .init();
        taskscope::Builder::from_env().install_on(&mut builder)
    } else {
        taskscope::init()
    };
    let runtime = builder.build().expect("runtime");
    runtime.block_on(app(sleep));
    drop(runtime);
    drop(guard);
}
