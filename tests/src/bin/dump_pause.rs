//! How long a task dump pauses the app (`BENCHMARKS.md`, "Task dumps"):
//! `dump_pause <tasks> <current|multi> [rounds]`, built with the `taskdump`
//! feature (`cargo run --release -p taskscope-tests --features taskdump --bin
//! dump_pause -- 10000 current 5`).
//!
//! Under `taskscope::init()`, `tasks` idle tasks each wait on a oneshot; a
//! probe task ticks every millisecond. Each round calls
//! `taskscope::task_stacks()` from a task and reports, one line a round:
//! - `pause`: the longest gap between two ticks of the probe across the call
//!   (the runtime runs nothing while Tokio traces; it includes Tokio's wake
//!   and re-poll of every traced task right after), minus the tick;
//! - `total`: the call, resolving every task's stack included (on the
//!   runtime's blocking pool: the runtime runs meanwhile);
//! - `rss`: resident memory after the call, and what the call added.
//!
//! A multi-thread runtime is dumped with `TASKSCOPE_TASKDUMP=multi_thread`
//! set here; a round whose dump does not answer within 2 s is reported as
//! `failed` (Tokio 1.54 can leave a multi-thread runtime stuck).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tasks: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let multi = args.get(1).is_some_and(|f| f == "multi");
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    // SAFETY: set before any other thread exists.
    unsafe {
        std::env::set_var("TASKSCOPE_TASKDUMP", "multi_thread");
        std::env::set_var("TASKSCOPE_ADDR", "off");
        // Slow polls (a dump of 100,000 tasks is one) are not the point here.
        std::env::set_var("TASKSCOPE_SLOW_POLL_MS", "60000");
    }
    let runtime = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("runtime");
    runtime.block_on(async move {
        let _guard = taskscope::init();
        let mut senders = Vec::with_capacity(tasks);
        for _ in 0..tasks {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            senders.push(tx);
            tokio::spawn(async move {
                let _ = rx.await;
            });
        }
        // The probe: the longest gap between two ticks since the last reset.
        let longest = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let probe = {
            let (longest, stop) = (Arc::clone(&longest), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let gap = last.elapsed().as_nanos() as u64;
                    longest.fetch_max(gap, Ordering::Relaxed);
                    last = Instant::now();
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        println!(
            "tasks {tasks} {} rss {} KiB before any dump",
            if multi { "multi" } else { "current" },
            rss_kib()
        );
        for round in 1..=rounds {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let rss_before = rss_kib();
            longest.store(0, Ordering::Relaxed);
            let started = Instant::now();
            let dumped = tokio::spawn(async { taskscope::task_stacks().await })
                .await
                .expect("task_stacks task");
            let total = started.elapsed();
            tokio::time::sleep(Duration::from_millis(5)).await;
            let pause = Duration::from_nanos(longest.load(Ordering::Relaxed))
                .saturating_sub(Duration::from_millis(1));
            match dumped {
                Ok(stacks) => println!(
                    "round {round}: pause {:.2} ms, total {:.1} ms, {} tasks listed, rss {} KiB (+{} KiB)",
                    pause.as_secs_f64() * 1e3,
                    total.as_secs_f64() * 1e3,
                    stacks.len(),
                    rss_kib(),
                    rss_kib().saturating_sub(rss_before)
                ),
                Err(err) => println!("round {round}: failed after {total:?}: {err}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let _ = probe.await;
        // Let the tasks end before the guard's drop: none is left behind.
        drop(senders);
        while taskscope::all_tasks().len() > 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    // A runtime a dump left stuck would never finish dropping.
    runtime.shutdown_timeout(Duration::from_secs(1));
}
