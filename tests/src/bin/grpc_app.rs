//! An instrumented app driven line by line from stdin, for the end-to-end
//! tests of the viewer protocol (`tests/grpc.rs`). It serves taskscope's viewer
//! server on `TASKSCOPE_ADDR`, starts `GRPC_APP_TASKS` (default 50) named
//! tasks `worker-0`, `worker-1`, ... that wait, prints `ready`, then obeys:
//!
//! - `spawn NAME`: another waiting task named NAME;
//! - `finish NAME`: the task NAME completes;
//! - `block MS`: a task named `blocker` that blocks its worker for MS ms;
//! - `spawn-hex HEX`: a waiting task whose name is the bytes HEX spells
//!   (control characters, say); `spawn-long N`: one named `long-` and N `x`s;
//! - `panic-hex HEX`: a task named `panicker` that panics with the message HEX
//!   spells; `panic-long N`: with a message of N `p`s;
//! - `selfwake N`: a task named `self-waker` that wakes itself from inside
//!   its poll N times (so is polled N + 1 times), then waits like the others
//!   (`finish self-waker` completes it);
//! - `quit` (or end of input): exit.
//!
//! Each command is answered `ok COMMAND` on stdout once done. A task named
//! `parent` waits with its two children, `child-0` and `child-1`.
//!
//! taskscope starts before the runtime exists (as with `init()` in a plain
//! `fn main`), so the runtime's `block_on` future is a task too, and the
//! runtime handle for the metrics is found at the first poll.

use std::collections::HashMap;
use std::time::Duration;

use taskscope_tests::app::{run_instrumented, say, stdin_lines};
use tokio::sync::oneshot;

fn spawn_waiter(name: &str, finish: &mut HashMap<String, oneshot::Sender<()>>) {
    let (tx, rx) = oneshot::channel::<()>();
    tokio::task::Builder::new()
        .name(name)
        .spawn(async move { rx.await.unwrap_or(()) }) // SPAWN-NAMED
        .expect("spawn");
    finish.insert(name.to_string(), tx);
}

/// Ready after waking its own task from inside its poll `.0` times.
struct SelfWake(u32);

impl std::future::Future for SelfWake {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 == 0 {
            return std::task::Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

async fn blocker(ms: u64) {
    // The bug taskscope must show: a blocking call inside a task.
    std::thread::sleep(Duration::from_millis(ms));
}

fn main() {
    run_instrumented(app());
}

/// The text the hex digits spell (UTF-8).
fn unhex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    String::from_utf8(bytes).expect("UTF-8")
}

/// A task that panics with `message`; returns once it did.
async fn panicker(message: String) {
    let task = tokio::task::Builder::new()
        .name("panicker")
        .spawn(async move { std::panic::panic_any(message) })
        .expect("spawn");
    let _ = task.await;
}

async fn family() {
    let children: Vec<_> = (0..2)
        .map(|i| {
            tokio::task::Builder::new()
                .name(&format!("child-{i}"))
                .spawn(std::future::pending::<()>())
                .expect("spawn")
        })
        .collect();
    std::future::pending::<()>().await;
    drop(children);
}

async fn app() {
    tokio::task::Builder::new()
        .name("parent")
        .spawn(family())
        .expect("spawn");
    let count: usize = std::env::var("GRPC_APP_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut finish = HashMap::new();
    for i in 0..count {
        spawn_waiter(&format!("worker-{i}"), &mut finish);
    }

    let mut lines = stdin_lines();
    say("ready");

    while let Some(line) = lines.recv().await {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("spawn"), Some(name)) => spawn_waiter(name, &mut finish),
            (Some("finish"), Some(name)) => {
                if let Some(tx) = finish.remove(name) {
                    let _ = tx.send(());
                }
            }
            (Some("block"), Some(ms)) => {
                let ms = ms.parse().expect("block MS");
                tokio::task::Builder::new()
                    .name("blocker")
                    .spawn(blocker(ms)) // SPAWN-BLOCKER
                    .expect("spawn");
            }
            (Some("spawn-hex"), Some(hex)) => spawn_waiter(&unhex(hex), &mut finish),
            (Some("spawn-long"), Some(n)) => {
                let n = n.parse().expect("spawn-long N");
                spawn_waiter(&format!("long-{}", "x".repeat(n)), &mut finish);
            }
            (Some("panic-hex"), Some(hex)) => panicker(unhex(hex)).await,
            (Some("panic-long"), Some(n)) => {
                panicker("p".repeat(n.parse().expect("panic-long N"))).await;
            }
            (Some("selfwake"), Some(n)) => {
                let n = n.parse().expect("selfwake N");
                let (tx, rx) = oneshot::channel::<()>();
                tokio::task::Builder::new()
                    .name("self-waker")
                    .spawn(async move {
                        SelfWake(n).await;
                        rx.await.unwrap_or(())
                    }) // SPAWN-SELF-WAKER
                    .expect("spawn");
                finish.insert("self-waker".to_string(), tx);
            }
            (Some("quit"), _) => break,
            _ => eprintln!("grpc_app: unknown command {line:?}"),
        }
        say(&format!("ok {line}"));
    }
}
