//! Where each task waits: `taskscope::task_stacks()`, like asyncio's
//! `Task.print_stack()` for every task at once, from one Tokio task dump.
//! Needs the crate's `taskdump` feature (off by default; Linux on x86_64 or
//! aarch64):
//!
//! ```text
//! cargo run -p taskscope --example taskdump --features taskdump
//! ```
//!
//! What to look at, on stdout:
//! - task `"mailbox"` (spawned at instrument/examples/taskdump.rs:45:10) and
//!   its async stack, innermost first: the Tokio primitive it waits in
//!   (`tokio::sync::mpsc::bounded::Receiver::recv`), then the app's frame
//!   `taskdump::next_letter (instrument/examples/taskdump.rs:34)`, the line of
//!   its `.recv().await`;
//! - stderr, as `main` ends: the task reported as left behind, with where it
//!   waits: `task 2 "mailbox" (spawned at ...) was destroyed but it is
//!   pending!; waiting at instrument/examples/taskdump.rs:34`;
//! - without `--features taskdump` (plain `cargo run -p taskscope --example
//!   taskdump`): `No stacks: taskscope was built without its taskdump
//!   feature: add ...`, one line saying how to get them.
//!
//! A dump pauses the runtime while it traces every idle task (about 5 ms at
//! 1,000 tasks in a release build): taskscope takes one only when asked. It
//! dumps current-thread runtimes, like this one, by default; a multi-thread
//! runtime only with `TASKSCOPE_TASKDUMP=multi_thread` (see the README, "Where
//! each task waits"). The same stacks come with `taskscope dump --stacks`, the
//! viewer's Detail view (key `s`), and leak findings (`waiting_at`).

use tokio::sync::mpsc;

/// The app's own async function the task waits in: its line is on the stack.
async fn next_letter(inbox: &mut mpsc::Receiver<String>) -> Option<String> {
    inbox.recv().await // the stack names this line
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _guard = taskscope::init();

    // A task that waits for mail that never comes.
    let (_outbox, mut inbox) = mpsc::channel::<String>(8);
    tokio::task::Builder::new()
        .name("mailbox")
        .spawn(async move { while next_letter(&mut inbox).await.is_some() {} }) // spawned here
        .expect("spawn mailbox");
    // Let it run up to its first `.await`.
    tokio::task::yield_now().await;

    match taskscope::task_stacks().await {
        Ok(tasks) => {
            println!("Where each task waits (taskscope::task_stacks()):");
            for t in tasks {
                let name = t.task.name.as_deref().unwrap_or("-");
                println!(
                    "task {} {name:?} spawned at {}",
                    t.task.id, t.task.spawned_at
                );
                for line in t.stack.lines() {
                    println!("    {line}");
                }
            }
        }
        Err(why) => println!("No stacks: {why}"),
    }
}
