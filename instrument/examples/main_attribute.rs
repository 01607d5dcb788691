//! `#[taskscope::main]` instead of `#[tokio::main]`: Tokio's task hooks on the
//! runtime the attribute builds, the cheapest way to see every task (no task
//! names or wakes), and a stderr subscriber for the warnings.
//!
//! ```text
//! cargo run -p taskscope --example main_attribute
//! ```
//!
//! What to look at:
//! - stderr: `WARN taskscope: Executing task N (spawned at
//!   instrument/examples/main_attribute.rs:40:5) took 0.250 seconds` — no
//!   name on this path, the spawn location is there;
//! - stderr, at the end: `task M (spawned at
//!   instrument/examples/main_attribute.rs:28:5) was destroyed but it is
//!   pending!` — the task the runtime dropped at shutdown while it still waited;
//! - stdout: the tasks `taskscope::all_tasks()` saw (names are `None` here).

use std::time::Duration;

fn load_config() {
    std::thread::sleep(Duration::from_millis(250));
}

#[taskscope::main(worker_threads = 2)]
async fn main() {
    // A task that waits for what never comes: still pending when main
    // returns and the runtime drops it.
    tokio::spawn(std::future::pending::<()>()); // reported as leaked at shutdown
    tokio::task::yield_now().await;

    println!("Tasks seen by taskscope::all_tasks():");
    for task in taskscope::all_tasks() {
        println!(
            "  task {} name={:?} {} spawned at {}, {} poll(s)",
            task.id, task.name, task.state, task.spawned_at, task.polls
        );
    }

    // A task whose only poll blocks its worker thread for 250 ms.
    tokio::spawn(async { load_config() }) // the slow-poll warning names this line
        .await
        .expect("load_config ends");
}
