//! An instrumented app for the tests of the findings sinks under stress and
//! faults (`tests/sink_faults.rs`): floods of findings, report files that
//! cannot be written, shutdown while the report writer is busy. `init()` as in
//! a `#[tokio::main]` app, two workers. It prints `ready`, then obeys one
//! command a line on stdin, answering `ok COMMAND ...` on stdout once done
//! (after `sink_app: done COMMAND` on stderr):
//!
//! - `slow MS`: a task named `blocker` that blocks its worker for MS ms (a
//!   slow poll over a low `TASKSCOPE_SLOW_POLL_MS`); waits until its final
//!   report has been through the sinks, and answers with the number of final
//!   `slow_poll` findings about `blocker` tasks `taskscope::findings()` holds;
//! - `request`: a request that awaits a timer and a spawned task;
//! - `flood N`: N never-awaited futures dropped as fast as two tasks can,
//!   each one finding; answers with a JSON object: `produced`,
//!   `elapsed_ms` (to produce them), `flushed_ms` (until the sinks had them
//!   all, or the flush gave up), `flushed`, `rss_before_kb`, `rss_max_kb`
//!   (VmRSS sampled every millisecond meanwhile), `recent` (the length of
//!   `taskscope::findings()`), `stats`;
//! - `burst N`: the same findings, without waiting for the sinks; answers
//!   with the milliseconds it took;
//! - `stats`: flushes, answers with the pipeline's counters as JSON;
//! - `quit` (or end of input): returns from main; after the guard's flush it
//!   prints `exit-stats {JSON}` (the pipeline's counters, and `guard_drop_ms`:
//!   how long dropping the guard took).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use taskscope_tests::app::run_instrumented_timed;
use tokio::io::AsyncBufReadExt;

fn stats_json() -> serde_json::Value {
    let s = taskscope::pipeline_stats();
    serde_json::json!({
        "submitted": s.submitted,
        "accepted": s.accepted,
        "dropped": s.dropped,
        "processed": s.processed,
        "queued": s.queued(),
        "written": s.written,
        "unwritten": s.unwritten,
        "drop_notices": s.drop_notices,
        "drop_notices_written": s.drop_notices_written,
        "drops_noticed": s.drops_noticed,
    })
}

/// This process's resident set, in KiB (0 where /proc is not there).
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn blocking_work(ms: u64) {
    // The bug taskscope must show: a blocking call inside a task.
    std::thread::sleep(Duration::from_millis(ms));
}

/// The final `slow_poll` findings about the `blocker` tasks of `slow`, in
/// `taskscope::findings()` (other polls may be slow too on a busy machine).
fn final_slow_polls() -> usize {
    taskscope::findings()
        .iter()
        .filter(|f| {
            matches!(
                f.kind,
                taskscope::FindingKind::SlowPoll {
                    in_progress: false,
                    ..
                }
            ) && f.task.as_ref().and_then(|t| t.name.as_deref()) == Some("blocker")
        })
        .count()
}

async fn slow(ms: u64) -> usize {
    let before = final_slow_polls();
    tokio::task::Builder::new()
        .name("blocker")
        .spawn(async move { blocking_work(ms) }) // SPAWN-SINK-SLOW
        .unwrap()
        .await
        .unwrap();
    // The final report waits for the watchdog's stack of the blocked thread
    // (the first one loads the debug info): wait for it, within reason.
    let deadline = Instant::now() + Duration::from_secs(30);
    while final_slow_polls() == before && Instant::now() < deadline {
        taskscope::flush(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    final_slow_polls()
}

async fn request() {
    tokio::time::sleep(Duration::from_millis(2)).await;
    let answer = tokio::spawn(async { 6 * 7 }).await.unwrap();
    assert_eq!(answer, 42);
}

/// N never-awaited findings from two tasks, as fast as they can; returns how long it took.
async fn burst(n: u64) -> Duration {
    let started = Instant::now();
    let producers: Vec<_> = (0..2)
        .map(|i| {
            let count = n / 2 + (i as u64) * (n % 2);
            tokio::spawn(async move {
                for i in 0..count {
                    drop(taskscope::track(async {})); // never awaited: one finding
                    if i % 256 == 255 {
                        // Short polls: the flood is never-awaited findings only.
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    started.elapsed()
}

async fn flood(n: u64) -> serde_json::Value {
    let rss_before_kb = rss_kb();
    let rss_max = Arc::new(AtomicU64::new(rss_before_kb));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (rss_max, done) = (Arc::clone(&rss_max), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                rss_max.fetch_max(rss_kb(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let started = Instant::now();
    let elapsed = burst(n).await;
    let flushed = taskscope::flush(Duration::from_secs(30));
    let flushed_in = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    rss_max.fetch_max(rss_kb(), Ordering::Relaxed);
    serde_json::json!({
        "produced": n,
        "elapsed_ms": elapsed.as_secs_f64() * 1e3,
        "flushed_ms": flushed_in.as_secs_f64() * 1e3,
        "flushed": flushed,
        "rss_before_kb": rss_before_kb,
        "rss_max_kb": rss_max.load(Ordering::Relaxed),
        "recent": taskscope::findings().len(),
        "stats": stats_json(),
    })
}

async fn app() {
    println!("ready");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim().to_string();
        let mut words = line.split_whitespace();
        let answer = match (
            words.next(),
            words.next().and_then(|w| w.parse::<u64>().ok()),
        ) {
            (Some("slow"), Some(ms)) => slow(ms).await.to_string(),
            (Some("request"), _) => {
                request().await;
                String::new()
            }
            (Some("flood"), Some(n)) => flood(n).await.to_string(),
            (Some("burst"), Some(n)) => format!("{}", burst(n).await.as_secs_f64() * 1e3),
            (Some("stats"), _) => {
                let flushed = taskscope::flush(Duration::from_secs(10));
                let mut stats = stats_json();
                stats["flushed"] = flushed.into();
                stats.to_string()
            }
            (Some("quit"), _) => break,
            _ => {
                eprintln!("sink_app: unknown command {line:?}");
                continue;
            }
        };
        // On stderr first: a test that reads this has every log line before it.
        eprintln!("sink_app: done {line}");
        println!("ok {line} {answer}");
    }
}

fn main() {
    let ((), guard_drop) = run_instrumented_timed(app());
    let mut stats = stats_json();
    stats["guard_drop_ms"] = (guard_drop.as_secs_f64() * 1e3).into();
    println!("exit-stats {stats}");
}
