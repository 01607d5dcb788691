//! An instrumented app with one misbehaviour per scenario, for the detector
//! tests: `detect_app <scenario>`. Source lines the tests look for carry
//! marker comments (`// SPAWN-…`, `// TRACK-…`, `// PANIC-…`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use taskscope::TrackExt;

#[inline(never)]
fn sleepy_handler() {
    std::thread::sleep(Duration::from_millis(300)); // BLOCK-SLEEP
}

#[inline(never)]
fn spin_for_a_while() -> u64 {
    let until = Instant::now() + Duration::from_millis(300);
    let mut n = 0u64;
    while Instant::now() < until {
        n = std::hint::black_box(n.wrapping_mul(31).wrapping_add(7));
    }
    n
}

#[inline(never)]
fn stuck_for_five_seconds() {
    std::thread::sleep(Duration::from_secs(5));
}

async fn fetch_user(id: u32) -> u32 {
    tokio::task::yield_now().await;
    id
}

async fn fails_to_start() {
    tokio::task::yield_now().await;
    panic!("config file missing"); // PANIC-HERE
}

/// Returns `Pending` and forgets the waker: nothing can ever wake it.
struct ForgetsWaker;

impl Future for ForgetsWaker {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

async fn wait_for_finding(kind: &str, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if taskscope::findings().iter().any(|f| f.kind.name() == kind) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn healthy() {
    use tokio::sync::{mpsc, oneshot};
    let (tx, mut rx) = mpsc::channel::<u32>(8);
    let consumer = tokio::spawn(async move {
        let mut sum = 0;
        while let Some(v) = rx.recv().await {
            sum += v;
        }
        sum
    });
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let tx = tx.clone();
        set.spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_millis(5), std::future::pending::<()>()).await;
            let (_keep, never) = oneshot::channel::<()>();
            tokio::select! {
                _ = never => {}
                _ = tokio::time::sleep(Duration::from_millis(2)) => {}
            }
            let _ = tx.send(i).await;
            fetch_user(i).tracked().await
        });
    }
    // A few that are aborted while they wait.
    let mut doomed = tokio::task::JoinSet::new();
    for _ in 0..10 {
        doomed.spawn(tokio::time::sleep(Duration::from_secs(60)));
    }
    while set.join_next().await.is_some() {}
    doomed.abort_all();
    while doomed.join_next().await.is_some() {}
    // A tracked future cancelled by a timeout after its first poll: not "never awaited".
    let _ = tokio::time::timeout(
        Duration::from_millis(5),
        tokio::time::sleep(Duration::from_secs(10)).tracked(),
    )
    .await;
    // Graceful shutdown: close the channel, wait for the consumer.
    drop(tx);
    let sum = consumer.await.unwrap();
    println!("healthy done: {sum}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _guard = taskscope::init();
    let scenario = std::env::args().nth(1).unwrap_or_default();
    match scenario.as_str() {
        "sleep" => {
            tokio::spawn(async { sleepy_handler() }).await.unwrap(); // SPAWN-SLEEP
        }
        "spin" => {
            tokio::task::Builder::new()
                .name("spinner")
                .spawn(async { spin_for_a_while() }) // SPAWN-SPIN
                .unwrap()
                .await
                .unwrap();
        }
        "stuck" => {
            let stuck = tokio::spawn(async { stuck_for_five_seconds() }); // SPAWN-STUCK
            stuck.await.unwrap();
        }
        "never_awaited" => {
            let forgotten = fetch_user(1).tracked(); // TRACK-DROPPED
            drop(forgotten);
            let awaited = fetch_user(2).tracked().await; // TRACK-AWAITED
            let cancelled = tokio::time::timeout(
                Duration::from_millis(10),
                tokio::time::sleep(Duration::from_secs(10)).tracked(), // TRACK-CANCELLED
            )
            .await;
            println!("awaited {awaited}, cancelled {}", cancelled.is_err());
        }
        "leak_shutdown" => {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
            tokio::spawn(async move { while rx.recv().await.is_some() {} }); // SPAWN-LEAK
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Main returns while `tx` is alive: the task waits forever.
            std::mem::forget(tx);
        }
        "lost_waker" => {
            tokio::spawn(ForgetsWaker); // SPAWN-LOST
            let seen = wait_for_finding("leaked_task", Duration::from_secs(5)).await;
            println!("lost_waker seen while running: {seen}");
        }
        "panic" => {
            let handle = tokio::spawn(fails_to_start()); // SPAWN-PANIC
            drop(handle);
            // The panic hook may take a while (RUST_BACKTRACE): wait for the report.
            let seen = wait_for_finding("task_panicked", Duration::from_secs(10)).await;
            println!("panic seen: {seen}");
        }
        "healthy" => healthy().await,
        other => {
            eprintln!("unknown scenario {other:?}");
            std::process::exit(2);
        }
    }
}
