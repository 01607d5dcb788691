//! Where tasks wait (Tokio task dumps, taskscope's `taskdump` feature), for
//! `tests/taskdump.rs`: `taskdump_app <scenario> [current|multi]`. Source
//! lines the tests look for carry marker comments.
//!
//! - `shutdown`: `init()`; a task waiting in `recv` and one that lost its
//!   waker are left behind when main's body returns;
//! - `macro`: the same under `#[taskscope::main(flavor = "current_thread")]`;
//! - `lost_waker`, `idle`: the watchdog's leak findings while the app runs
//!   (`idle` needs `TASKSCOPE_IDLE_LIMIT_S=1`);
//! - `task_stacks`: prints `taskscope::task_stacks()`, one task a line;
//! - `stuck`: serves the viewer (`TASKSCOPE_ADDR`) while a task blocks its
//!   thread for 5 s; says `ready` when it does, and `ticked N` (its ticker's
//!   ticks in the 600 ms after it).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Returns `Pending` and forgets the waker: nothing can ever wake it.
struct ForgetsWaker;

impl Future for ForgetsWaker {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// A worker that waits for jobs that never come (its sender is forgotten).
async fn worker(mut jobs: tokio::sync::mpsc::Receiver<u32>) {
    loop {
        let job = jobs.recv().await; // RECV-AWAIT
        let Some(job) = job else { return };
        println!("job {job}");
    }
}

fn spawn_receiver() {
    let (tx, rx) = tokio::sync::mpsc::channel::<u32>(1);
    std::mem::forget(tx);
    tokio::task::Builder::new()
        .name("worker")
        .spawn(worker(rx)) // SPAWN-WORKER
        .unwrap();
}

fn spawn_lost() {
    tokio::task::Builder::new()
        .name("lost")
        .spawn(ForgetsWaker) // SPAWN-LOST
        .unwrap();
}

async fn wait_for(what: impl Fn(&taskscope::Finding) -> bool, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if taskscope::findings().iter().any(&what) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn runtime(multi: bool) -> tokio::runtime::Runtime {
    let mut builder = if multi {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().expect("runtime")
}

#[taskscope::main(flavor = "current_thread")]
async fn under_the_macro() {
    spawn_receiver();
    spawn_lost();
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn scenario(name: &str) {
    match name {
        "shutdown" => {
            spawn_receiver();
            spawn_lost();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        "lost_waker" => {
            spawn_lost();
            let seen = wait_for(|f| f.kind.name() == "leaked_task", Duration::from_secs(5)).await;
            println!("lost_waker seen: {seen}");
        }
        "idle" => {
            spawn_receiver();
            let seen = wait_for(|f| f.kind.name() == "leaked_task", Duration::from_secs(5)).await;
            println!("idle seen: {seen}");
        }
        "task_stacks" => {
            spawn_receiver();
            spawn_lost();
            tokio::time::sleep(Duration::from_millis(20)).await;
            match taskscope::task_stacks().await {
                Ok(tasks) => {
                    for t in tasks {
                        println!(
                            "task {} {:?}{}",
                            t.task.id,
                            t.task.name.as_deref().unwrap_or("-"),
                            t.stack.warning_suffix()
                        );
                    }
                }
                Err(why) => println!("no stacks: {why}"),
            }
        }
        "stuck" => {
            static TICKS: AtomicU32 = AtomicU32::new(0);
            let ticker = tokio::spawn(async {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    TICKS.fetch_add(1, Ordering::Relaxed);
                }
            });
            tokio::task::yield_now().await;
            let stuck = tokio::task::Builder::new()
                .name("stuck")
                .spawn(async {
                    println!("ready");
                    std::thread::sleep(Duration::from_secs(5)); // BLOCK-STUCK
                })
                .unwrap();
            stuck.await.unwrap();
            // The runtime runs its tasks again after the stuck poll.
            let before = TICKS.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(600)).await;
            ticker.abort();
            println!("ticked {}", TICKS.load(Ordering::Relaxed) - before);
        }
        other => {
            eprintln!("unknown scenario {other:?}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().cloned().unwrap_or_default();
    let multi = args.get(1).is_some_and(|f| f == "multi");
    if name == "macro" {
        under_the_macro();
        return;
    }
    let runtime = runtime(multi);
    // As `#[tokio::main]` with `let _guard = taskscope::init();` first: the
    // guard is dropped at the end of the body, inside `block_on`.
    runtime.block_on(async move {
        let _guard = taskscope::init();
        scenario(&name).await;
    });
    // A multi-thread runtime a dump left stuck (Tokio 1.54) would never
    // finish dropping: give it a second, as a careful app does.
    runtime.shutdown_timeout(Duration::from_secs(1));
}
