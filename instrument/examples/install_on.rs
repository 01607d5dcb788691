//! `taskscope::Builder::install_on` for an app that builds its own Tokio
//! runtime: the same task hooks as `#[taskscope::main]`, with settings in code.
//!
//! ```text
//! cargo run -p taskscope --example install_on
//! ```
//!
//! What to look at:
//! - stderr: `WARN taskscope: Executing task N (spawned at
//!   instrument/examples/install_on.rs:45:9) took 0.080 seconds` — over the
//!   50 ms threshold this example sets (100 ms by default);
//! - stderr: `task M (spawned at instrument/examples/install_on.rs:49:9)
//!   was destroyed but it is pending!` when the runtime is dropped;
//! - stdout: the same findings as values (`taskscope::findings()`), what a
//!   health check or a test can read in code.
//!
//! `install_on` installs no `tracing` subscriber: the warnings above come from
//! the `fmt` subscriber this example sets up. In an app that has its own
//! subscriber they go wherever it sends events of target `taskscope`.

use std::io::IsTerminal;
use std::time::Duration;

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(tracing::Level::INFO)
        .init();

    let mut runtime_builder = tokio::runtime::Builder::new_multi_thread();
    runtime_builder
        .worker_threads(2)
        .thread_name("app-worker")
        .enable_all();
    // Before `build()`: the hooks are part of the runtime. Settings in code
    // win over the TASKSCOPE_* variables `from_env` reads.
    let guard = taskscope::Builder::from_env()
        .slow_poll_threshold(Duration::from_millis(50))
        .install_on(&mut runtime_builder);
    let runtime = runtime_builder.build().expect("build the runtime");

    runtime.block_on(async {
        // A poll of 80 ms: slow at this example's 50 ms threshold.
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(80)) }) // slow at this example's threshold
            .await
            .expect("the slow task ends");
        // A task that will still be waiting when the runtime goes away.
        tokio::spawn(std::future::pending::<()>()); // pending at shutdown
        tokio::task::yield_now().await;
    });
    // Dropping the runtime drops its pending task: reported as leaked.
    drop(runtime);
    // Dropping the guard waits (3 s at most) for what is still on its way:
    // a slow poll's report waits for its stack to be named, which the first
    // time means reading the binary's debug info.
    drop(guard);

    println!("Findings (taskscope::findings()):");
    for finding in taskscope::findings() {
        println!("  {}: {}", finding.kind.name(), finding.message());
    }
}
